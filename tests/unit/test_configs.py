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
