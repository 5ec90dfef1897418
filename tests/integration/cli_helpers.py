"""Run the `bench` CLI in-process and capture its exit code and output."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.cli import main

TINY_DPOK = ["--set", "sampling.num_steps=4", "--samples-per-round", "2", "--batch-size", "2", "--grad-accum", "2",
             "--updates-per-round", "1", "--value-batch-size", "8"]  # fmt: skip
TINY_SFT = ["--set", "sampling.num_steps=4", "--num-samples", "4", "--sample-batch-size", "2", "--batch-size", "2",
            "--updates-per-round", "1"]  # fmt: skip


def run_cli(capsys, args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``bench ARGS``."""
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def bench_subprocess(args: list[str], site, cwd):
    """``bench ARGS`` in a fresh interpreter with ``site`` on PYTHONPATH, so entry points installed there are seen."""
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    code = "import sys; from bench.cli import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True)


@pytest.fixture()
def results(tmp_path):
    return tmp_path / "results"
