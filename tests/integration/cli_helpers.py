"""Run the `bench` CLI in-process and capture its exit code and output."""

from __future__ import annotations

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


@pytest.fixture()
def results(tmp_path):
    return tmp_path / "results"
