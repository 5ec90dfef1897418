"""Data parallel on CPU: two processes (gloo) share one run folder and keep identical LoRA weights."""

import json
import os
import subprocess
import sys

import pytest
from cli_helpers import TINY_DPOK


def test_a_missed_all_reduce_is_caught(tmp_path, tiny_sd):
    (tmp_path / "nosync.py").write_text(
        "import sys\nimport bench.trainer as t\n"
        "t._sync_gradients = lambda accelerator, params: None  # the bug the guard must catch\n"
        "from bench.cli import main\nmain(sys.argv[1:])\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = ["run", "--model", str(tiny_sd), "--steps", "2", "--results-dir", str(tmp_path / "r"), "--prompts",
            "a red circle|a blue square", "--lr", "0.01"] + TINY_DPOK  # fmt: skip
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    out = subprocess.run(launch + [str(tmp_path / "nosync.py")] + args, env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert out.returncode != 0
    assert "error: LoRA weights differ across processes at update 2" in out.stderr


# 3 DDIM steps; every process's buffer holds its round, and the step and the value fit take all of it
def _dp_args(results, samples: int, steps: int = 2) -> list[str]:
    n = samples * 3
    return ["run", "--model", "{tiny_sd}", "--steps", str(steps), "--results-dir", str(results), "--prompts",
            "a red circle|a blue square", "--lr", "0.01", "--set", "sampling.num_steps=3", "--samples-per-round",
            str(samples), "--batch-size", str(n), "--grad-accum", "1", "--updates-per-round", "1", "--buffer-size",
            str(n), "--value-batch-size", str(n), "--value-steps", "2"]  # fmt: skip


def _launch(args, tiny_sd, processes: int, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = [a.replace("{tiny_sd}", str(tiny_sd)) for a in args]
    if processes == 1:
        cmd = [sys.executable, "-m", "bench.cli"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "bench.cli"]  # fmt: skip
    return (
        subprocess.Popen(cmd + args, env=env, **kw)
        if kw.pop("background", False)
        else subprocess.run(cmd + args, env=env, capture_output=True, text=True, timeout=600)
    )


def _lora(results):
    from safetensors.torch import load_file

    (run_dir,) = list(results.iterdir())
    return load_file(run_dir / "lora" / "pytorch_lora_weights.safetensors"), run_dir


def test_two_processes_of_2_samples_train_what_one_of_4_trains(tmp_path, tiny_sd):
    """The round is one global batch: process p samples the p-th slice, so the updates are the same. The two
    processes share one run folder; the trainer gathers a checksum of every process's LoRA before saving it."""
    import torch

    one = _launch(_dp_args(tmp_path / "one", 4), tiny_sd, 1)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _launch(_dp_args(tmp_path / "two", 2), tiny_sd, 2)
    assert two.returncode == 0, two.stderr[-3000:]
    a, run_one = _lora(tmp_path / "one")
    b, run_two = _lora(tmp_path / "two")  # one folder: made by the main process, broadcast to the other
    assert two.stdout.count("run folder:") == 1
    assert json.loads((run_two / "env.json").read_text())["num_processes"] == 2
    assert [json.loads(line)["update"] for line in (run_two / "train.jsonl").read_text().splitlines()] == [1, 2]
    moved = max(v.abs().max().item() for v in a.values())
    assert moved > 1e-3
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-3 * moved
    rows_one = [json.loads(line) for line in (run_one / "train.jsonl").read_text().splitlines()]
    rows_two = [json.loads(line) for line in (run_two / "train.jsonl").read_text().splitlines()]
    # the main process logs its own half's reward; the gradient norm is of the averaged gradient
    assert [r["grad_norm"] for r in rows_two] == pytest.approx([r["grad_norm"] for r in rows_one], rel=1e-3)
    assert torch.is_tensor(a[next(iter(a))])


def test_two_process_run_killed_and_resumed_ends_with_the_same_lora(tmp_path, tiny_sd):
    import signal
    import time

    import psutil
    import torch

    # a buffer of 3 rounds and per-prompt reward statistics: each process's own state matters after a resume
    args = _dp_args(tmp_path / "full", 2, steps=12) + ["--set", "checkpoint_every=1", "--buffer-size", "18",
                                                        "--advantage-scale", "prompt_std"]  # fmt: skip
    full = _launch(args, tiny_sd, 2)
    assert full.returncode == 0, full.stderr[-3000:]
    reference, ref_dir = _lora(tmp_path / "full")

    killed_args = [a if a != str(tmp_path / "full") else str(tmp_path / "killed") for a in args]
    proc = _launch(killed_args, tiny_sd, 2, background=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    run_dir = None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "killed").glob("*/checkpoint/meta.json")) if (tmp_path / "killed").exists() else []
        if found and json.loads(found[0].read_text())["round"] >= 2:
            run_dir = found[0].parent.parent
            break
        time.sleep(0.05)
    # the launcher starts its workers in sessions of their own: kill each of them, then the launcher
    for child in psutil.Process(proc.pid).children(recursive=True):
        child.send_signal(signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_dir is not None, "the run finished or failed before it could be killed"
    assert json.loads((run_dir / "checkpoint" / "meta.json").read_text())["round"] < 12

    resumed = _launch(["run", "--resume", str(run_dir)], tiny_sd, 2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again, _ = _lora(tmp_path / "killed")
    assert reference.keys() == again.keys()
    assert all(torch.equal(reference[k], again[k]) for k in reference)
    rows = lambda d: [json.loads(line) for line in (d / "train.jsonl").read_text().splitlines()]  # noqa: E731
    assert rows(run_dir) == rows(ref_dir)
