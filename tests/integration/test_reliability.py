"""Reliability: atomic writes under injected failures, non-finite guard, concurrent runs and readers."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import TINY_DPOK, run_cli

from bench.results import append_jsonl, atomic_write, create_run_dir, replace_dir, write_text

NAN_SCORER = '''
import torch
from bench.scoring import Scorer

class LateNaN(Scorer):
    """Finite for the first round, NaN afterwards."""
    name = "late-nan"
    calls = 0

    def score(self, images, prompts, metadata=None):
        LateNaN.calls += 1
        value = float("nan") if LateNaN.calls > 1 else 0.5
        return torch.full((len(images),), value)
'''


def test_failed_writes_leave_the_previous_version(tmp_path):
    path = tmp_path / "config.yaml"
    write_text(path, "old: 1\n")

    def boom(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, boom)
    assert path.read_text() == "old: 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temporary file left behind

    append_jsonl(tmp_path / "train.jsonl", [{"update": 1}])
    folder = tmp_path / "lora"
    replace_dir(folder, lambda tmp: (tmp / "weights").write_text("v1"))

    def half_dir(tmp):
        (tmp / "weights").write_text("v2-partial")
        raise RuntimeError("killed mid-save")

    with pytest.raises(RuntimeError):
        replace_dir(folder, half_dir)
    assert (folder / "weights").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "lora", "train.jsonl"]


def test_nan_reward_stops_with_the_update_and_keeps_the_checkpoint(capsys, tmp_path, tiny_sd, monkeypatch):
    (tmp_path / "nan_plugin.py").write_text(NAN_SCORER)
    monkeypatch.syspath_prepend(str(tmp_path))
    results = tmp_path / "results"
    args = ["run", "--plugin", "nan_plugin:LateNaN", "--reward", "late-nan", "--model", str(tiny_sd), "--steps", "3",
            "--results-dir", str(results), "--prompts", "a red circle", "--set", "checkpoint_every=1"]  # fmt: skip
    args += TINY_DPOK
    code, out, err = run_cli(capsys, args)
    run_dir = next(results.iterdir())
    assert code == 2
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (  # after the progress bar's last state
        f"error: the reward 'late-nan' returned a non-finite value at update 2 (round 2); stopped, "
        f"last good checkpoint: {run_dir / 'checkpoint'} (round 1)"
    )
    meta = json.loads((run_dir / "checkpoint" / "meta.json").read_text())
    assert meta["round"] == 1 and meta["update"] == 1
    assert [json.loads(line)["update"] for line in (run_dir / "train.jsonl").read_text().splitlines()] == [1]


def test_runs_started_together_never_share_a_folder(tmp_path):
    barrier = threading.Barrier(8)
    made = []

    def start():
        barrier.wait()
        made.append(create_run_dir(tmp_path, "dpok"))

    threads = [threading.Thread(target=start) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(set(made)) == 8 and all(p.is_dir() for p in made)


def test_two_cli_runs_at_once_in_one_results_folder(tmp_path, tiny_sd):
    code = "import sys; from bench.cli import main; main(sys.argv[1:])"
    args = ["run", "--model", str(tiny_sd), "--steps", "1", "--results-dir", str(tmp_path), "--prompts", "a red circle"]
    procs = [subprocess.Popen([sys.executable, "-c", code, *args, *TINY_DPOK], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    folders = {Path(o.strip().splitlines()[-1].removeprefix("run folder: ")) for o in outs}
    assert len(folders) == 2 and all((f / "lora").is_dir() for f in folders)


def test_reader_never_sees_a_half_written_parquet(tmp_path):
    path = tmp_path / "eval.parquet"
    frames = [pd.DataFrame({"value": [float(i)] * 20000, "scorer": ["x"] * 20000}) for i in range(2)]
    atomic_write(path, lambda tmp: frames[0].to_parquet(tmp))
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            atomic_write(path, lambda tmp, f=frames[i % 2]: f.to_parquet(tmp))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(200):
            df = pd.read_parquet(path)  # would raise on a truncated file
            assert len(df) == 20000 and df.value.nunique() == 1
    finally:
        stop.set()
        thread.join()
