"""Config parsing and validation: every bad value names its field and the allowed range."""

import dataclasses
from pathlib import Path

import pytest

from bench.config import RunConfig, build, parse_set
from bench.errors import BenchError
from bench.resolve import parse_method_options, resolve_run_config


def resolve(*method_args, sets=(), **common):
    common.setdefault("world", "sd")  # a world whose settings leave the method defaults alone
    common.setdefault("model", "offline/unresolvable")
    return resolve_run_config(None, common, list(sets), list(method_args))


def test_defaults_and_cli_overrides():
    cfg, method_cls, _ = resolve("--beta", "0.05", "--lr=3e-5", sets=["sampling.num_steps=20"], method="dpok", steps=4)
    assert method_cls.name == "dpok"
    assert cfg.hparams.beta == 0.05 and cfg.hparams.lr == 3e-5 and cfg.hparams.alpha == 10.0
    assert cfg.sampling.num_steps == 20 and cfg.steps == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 5


def test_yaml_then_cli_precedence(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: dpok\nsteps: 7\nsampling: {num_steps: 9}\nhparams: {beta: 0.2, alpha: 3}\n")
    cfg, _, _ = resolve_run_config(str(path), {"steps": 2, "model": "x/y"}, ["hparams.alpha=4"], ["--beta", "0.3"])
    assert (cfg.steps, cfg.sampling.num_steps, cfg.hparams.alpha, cfg.hparams.beta) == (2, 9, 4.0, 0.3)


@pytest.mark.parametrize(
    "args, common, message",
    [
        (["--alpha", "-1"], {}, "alpha must be >= 0.0 (got -1.0)"),
        (["--beta", "-0.5"], {}, "beta must be >= 0.0 (got -0.5)"),
        (["--lr", "0"], {}, "lr must be > 0.0 (got 0.0)"),
        (["--ratio-clip", "0"], {}, "ratio_clip must be > 0.0 (got 0.0)"),
        (["--grad-clip", "-1"], {}, "grad_clip must be > 0.0 (got -1.0)"),
        ([], {"steps": 0}, "steps must be >= 1 (got 0)"),
        (["--beta", "abc"], {}, "beta: expected a number, got 'abc'"),
        (["--clip-mode", "foo"], {}, "clip_mode must be one of clamp, ppo (got 'foo')"),
    ],
)
def test_bad_values_name_the_field(args, common, message):
    with pytest.raises(BenchError) as err:
        resolve(*args, **common)
    assert str(err.value) == message


def test_eta_zero_is_refused_for_log_prob_methods_only():
    with pytest.raises(BenchError, match=r"sampling.eta must be > 0 for dpok.*got 0.0"):
        resolve(sets=["sampling.eta=0"])
    cfg, _, _ = resolve(sets=["sampling.eta=0"], method="sft")
    assert cfg.sampling.eta == 0.0


def test_unknown_method_option_suggests_the_closest():
    with pytest.raises(BenchError, match=r"unknown option --betta for method dpok; known: .*did you mean --beta\?"):
        resolve("--betta", "0.1")


def test_unknown_set_key_and_section():
    with pytest.raises(BenchError, match=r"unknown setting sampling.num_step;.*did you mean 'num_steps'"):
        resolve(sets=["sampling.num_step=3"])
    with pytest.raises(BenchError, match="expects section.key=value"):
        parse_set(["sampling.num_steps"])


def test_presets_pin_their_fields():
    cfg, cls, _ = resolve(method="reward-only")
    assert cfg.hparams.beta == 0.0 and cfg.hparams.alpha == 10.0
    cfg, cls, _ = resolve(method="kl-only")
    assert cfg.hparams.alpha == 0.0 and cfg.hparams.beta == 0.01
    with pytest.raises(BenchError, match="beta is fixed at 0.0 by the reward-only preset"):
        resolve("--beta", "0.01", method="reward-only")


def test_method_option_parsing():
    assert parse_method_options(["--a", "1", "--b-c=2"]) == [("a", "1"), ("b_c", "2")]
    with pytest.raises(BenchError, match="needs a value"):
        parse_method_options(["--a"])
    with pytest.raises(BenchError, match="unexpected argument"):
        parse_method_options(["stray"])


def test_build_coerces_types():
    cfg = build(RunConfig, {"steps": "3", "allow_download": "yes", "lora": {"targets": "to_q,to_v"}})
    assert cfg.steps == 3 and cfg.allow_download is True and cfg.lora.targets == ("to_q", "to_v")
    with pytest.raises(BenchError, match="steps: expected an integer, got 2.5"):
        build(RunConfig, {"steps": 2.5})


def _settings_world(tmp_path):
    from bench.registry import WORLDS
    from bench.world import World

    folder = tmp_path / "settings"
    folder.mkdir()
    (folder / "world.yaml").write_text("reward: shapes-reward\nsampling: {num_steps: 20, guidance_scale: 5.0}\n")
    (folder / "dpok.yaml").write_text("steps: 30\nhparams: {lr: 0.0003, beta: 0.02}\n")
    (folder / "sft.yaml").write_text("hparams: {lr: 0.0001}\n")

    class SettingsWorld(World):
        name = "settings-test"
        settings_dir = folder

    WORLDS.clear_plugins()
    WORLDS.add_plugin("tests:SettingsWorld", SettingsWorld)
    return folder


def test_world_settings_sit_under_yaml_and_cli(tmp_path):
    folder = _settings_world(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("steps: 40\n")
    try:
        cfg, _, files = resolve_run_config(
            str(config), {"world": "settings-test", "model": "x/y"}, ["sampling.num_steps=8"], ["--beta", "0.05"]
        )
        assert files == [str(folder / "world.yaml"), str(folder / "dpok.yaml"), str(config)]  # lowest first
        assert (cfg.reward, cfg.sampling.num_steps, cfg.sampling.guidance_scale) == ("shapes-reward", 8, 5.0)
        assert (cfg.steps, cfg.hparams.lr, cfg.hparams.beta, cfg.world) == (40, 0.0003, 0.05, "settings-test")
        cfg, _, files = resolve(method="reward-only", world="settings-test")  # a preset uses dpok's file, not its beta
        assert (cfg.hparams.lr, cfg.hparams.beta, cfg.steps) == (0.0003, 0.0, 30)
        cfg, _, files = resolve(method="sft", world="settings-test")
        assert cfg.hparams.lr == 0.0001 and files[-1] == str(folder / "sft.yaml")
    finally:
        from bench.registry import WORLDS

        WORLDS.clear_plugins()


def test_default_world_is_shapes_with_its_settings():
    cfg, _, files = resolve_run_config(None, {}, [], [])
    assert cfg.world == "shapes" and cfg.model == "shapes" and cfg.reward == "shapes-reward"
    assert [Path(f).name for f in files] == ["world.yaml", "dpok.yaml"]
    assert (cfg.hparams.lr, cfg.hparams.alpha, cfg.sampling.num_steps) == (0.002, 2.0, 20)


@pytest.mark.parametrize("world", ["shapes", "sd"])
def test_shipped_settings_are_valid_and_every_field_is_commented(world):
    from bench.config import read_yaml
    from bench.registry import METHODS
    from bench.world import get_world

    folder = get_world(world).settings_dir
    for path in sorted(Path(folder).glob("*.yaml")):
        data = read_yaml(path)
        hparams = data.pop("hparams", {})
        build(RunConfig, data)  # every run setting is a RunConfig field of a valid value
        if path.stem != "world":
            build(METHODS.get(path.stem).Config, hparams)
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        for line in lines:  # a value on the line says what it is and why, in a comment
            if not line.rstrip().endswith(":"):
                assert " # " in line, f"{path.name}: no comment on {line.strip()!r}"
