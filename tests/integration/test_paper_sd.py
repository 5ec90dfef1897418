"""The Stable Diffusion grids of configs/paper (sd15-*.yaml) dry-run: one update of every distinct method in each,
with its recipe's settings, on a tiny random SD of the same architecture (the weights and ImageReward are swapped
for the tiny model and a weight-free reward; the sizes are cut to seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bench.sweep import _option_args, cells, load_grid
from tests.integration.cli_helpers import run_cli

GRIDS = sorted((Path(__file__).resolve().parents[2] / "configs" / "paper").glob("sd15-*.yaml"))
TINY = {
    "sft": {"num_samples": 2, "sample_batch_size": 2, "batch_size": 2, "grad_accum": 1, "updates_per_round": 1},
    "dpok": {"samples_per_round": 2, "batch_size": 2, "grad_accum": 2, "updates_per_round": 1, "buffer_size": 4,
             "value_batch_size": 4},
}  # fmt: skip


def _method(options: dict) -> str:
    if options.get("method"):
        return str(options["method"])
    return str(yaml.safe_load(Path(options["config"]).read_text())["method"])


def test_there_are_stable_diffusion_grids():
    assert {p.name for p in GRIDS} == {"sd15-table1.yaml", "sd15-table2.yaml", "sd15-kl.yaml"}


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.stem)
def test_each_method_of_a_stable_diffusion_grid_runs_one_update(capsys, tmp_path, tiny_sd, path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the grids name their recipes from the project root
    grid = load_grid(path)
    assert grid.resources.get("gpus", 0) >= 1 and grid.eval, "a cluster grid says what a cell needs"
    firsts = {}
    for cell in cells(grid):
        firsts.setdefault(_method(cell.options), cell)
    for method, cell in firsts.items():
        tiny = TINY["sft" if method == "sft" else "dpok"]
        options = cell.options | {"model": str(tiny_sd), "reward": "compressibility", "steps": 1} | tiny
        options.pop("snapshot_every", None)
        args = ["run", *_option_args(options), "--set", "sampling.num_steps=2", "--results-dir", str(tmp_path)]
        code, out, err = run_cli(capsys, args)
        assert code == 0, f"{cell.name}: {err}"
        assert "world sd" in err and "shapes" not in err.split("settings, lowest first:")[1].split(";")[0]
    assert len(list(tmp_path.iterdir())) == len(firsts)
