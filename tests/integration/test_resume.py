"""A run killed with SIGKILL and resumed ends exactly where an uninterrupted run ends."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from bench.checkpoint import load_checkpoint
from bench.errors import BenchError

BENCH = "import sys; from bench.cli import main; main(sys.argv[1:])"


def _args(tiny_sd, results):
    return ["run", "--model", str(tiny_sd), "--steps", "5", "--results-dir", str(results), "--prompts",
            "a red circle|a blue square", "--set", "sampling.num_steps=3", "--set", "checkpoint_every=1",
            "--samples-per-round", "2", "--batch-size", "2", "--grad-accum", "2", "--updates-per-round", "2",
            "--value-batch-size", "8", "--lr", "0.01"]  # fmt: skip


def _bench(args, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", BENCH, *args], env=env, capture_output=True, text=True, **kw)


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_sd):
    """One uninterrupted run of ``_args``, shared by the tests here (those that change it work on a copy)."""
    results = tmp_path_factory.mktemp("uninterrupted")
    full = _bench(_args(tiny_sd, results))
    assert full.returncode == 0, full.stderr
    return next(results.iterdir())


def _copy(run_dir, where):
    return shutil.copytree(run_dir, where / run_dir.name)


def test_sigkill_then_resume_is_bit_identical(tmp_path, tiny_sd, finished):
    reference = finished

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", BENCH, *_args(tiny_sd, tmp_path / "b")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    kill_after = random.Random(os.getpid()).randint(1, 4)  # rounds (2 updates each) done before the kill
    deadline = time.time() + 120
    run_dir = None
    while time.time() < deadline and proc.poll() is None:
        run_dir = next((tmp_path / "b").glob("*"), None) if (tmp_path / "b").exists() else None
        if run_dir and (run_dir / "train.jsonl").exists() and len(_rows(run_dir)) >= 2 * kill_after:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_dir is not None and len(_rows(run_dir)) < 10, "the run finished before it could be killed"

    resumed = _bench(["run", "--resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stderr
    assert _rows(run_dir) == _rows(reference)
    a = load_file(reference / "lora" / "pytorch_lora_weights.safetensors")
    b = load_file(run_dir / "lora" / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(a[k].abs().sum() > 0 for k in a)


def test_corrupt_and_incompatible_checkpoints_are_refused(tmp_path, finished):
    run_dir = _copy(finished, tmp_path)
    state = run_dir / "checkpoint" / "state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(BenchError, match="is corrupt: state.pt does not match its SHA-256"):
        load_checkpoint(run_dir / "checkpoint")
    meta = run_dir / "checkpoint" / "meta.json"
    meta.write_text(meta.read_text().replace('"schema": 1', '"schema": 99'))
    with pytest.raises(BenchError, match="has schema 99; this version of dpok-bench reads schema 1"):
        load_checkpoint(run_dir / "checkpoint")


def test_resume_of_a_finished_run_says_so(tmp_path, finished):
    run_dir = _copy(finished, tmp_path)
    out = _bench(["run", "--resume", str(run_dir)])
    assert out.returncode == 2 and "already finished all 5 rounds; nothing to resume" in out.stderr
    out = _bench(["run", "--resume", str(run_dir), "--steps", "9"])
    assert out.returncode == 2 and "pass no other run options with it" in out.stderr


def test_resume_without_a_checkpoint_restarts_in_place(tmp_path, finished):
    reference = finished
    killed = tmp_path / "b" / reference.name
    killed.mkdir(parents=True)
    (killed / "config.yaml").write_text((reference / "config.yaml").read_text())
    (killed / "train.jsonl").write_text((reference / "train.jsonl").read_text().splitlines()[0] + "\n")
    resumed = _bench(["run", "--resume", str(killed)])  # killed after logging round 1, before its checkpoint
    assert resumed.returncode == 0, resumed.stderr
    assert _rows(killed) == _rows(reference)
