"""Every shipped experiment config parses and validates (catches configs that rot as the code moves)."""

from pathlib import Path

import pytest

from bench.resolve import resolve_run_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"sd15-dpok-single.yaml", "sd15-sft.yaml", "sd15-dpok-drawbench.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates(path):
    cfg, method_cls, _ = resolve_run_config(str(path), {}, [], [])
    assert cfg.method == method_cls.name
    assert cfg.steps >= 1 and cfg.hparams.lr > 0


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.name.startswith("sd15-")], ids=lambda p: p.name)
def test_stable_diffusion_recipes_take_no_shapes_setting(path):
    """A recipe for SD v1.5 resolves in the sd world: the shapes world's settings (its lr, advantage scaling,
    buffer) must not leak in under it."""
    cfg, _, files = resolve_run_config(str(path), {}, [], [])
    assert cfg.world == "sd"
    assert not any("shapes" in Path(f).parts for f in files), files


GRIDS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*/*.yaml"))


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
@pytest.mark.parametrize("path", GRIDS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_cell_of_a_shipped_grid_resolves(path, quick, monkeypatch):
    """Every cell of every sweep and paper grid builds a valid run config (options, presets' fixed settings)."""
    from bench.sweep import cells, load_grid, resolve_cell

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    grid = load_grid(path, quick=quick)
    for cell in cells(grid):
        cfg = resolve_cell(cell)
        assert cfg.steps >= 1, cell.name
