"""Data parallel on CPU: two processes (gloo) share one run folder and keep identical LoRA weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

from cli_helpers import TINY_DPOK


def test_two_processes_one_run_folder(tmp_path, tiny_sd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = ["run", "--model", str(tiny_sd), "--steps", "2", "--results-dir", str(tmp_path), "--prompts",
            "a red circle|a blue square", "--lr", "0.01"] + TINY_DPOK  # fmt: skip
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "bench.cli"]
    out = subprocess.run(launch + args, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    folders = list(tmp_path.iterdir())
    assert len(folders) == 1  # created by the main process, broadcast to the other
    assert out.stdout.count("run folder:") == 1
    run_dir = Path(folders[0])
    assert json.loads((run_dir / "env.json").read_text())["num_processes"] == 2
    rows = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2]
    # the trainer gathers a checksum of every process's LoRA weights before saving and stops if they differ
    assert (run_dir / "lora" / "pytorch_lora_weights.safetensors").is_file()


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
