"""Config parsing and validation: every bad value names its field and the allowed range."""

import dataclasses

import pytest

from bench.config import RunConfig, build, parse_set
from bench.errors import BenchError
from bench.resolve import parse_method_options, resolve_run_config


def resolve(*method_args, sets=(), **common):
    common.setdefault("model", "offline/unresolvable")  # no model folder, so no recipe: plain defaults
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


def test_model_recipe_sits_under_yaml_and_cli(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_index.json").write_text("{}")
    (model / "bench_recipe.yaml").write_text(
        "reward: shapes-reward\nsampling: {num_steps: 20, guidance_scale: 5.0}\n"
        "hparams: {dpok: {lr: 0.0003, beta: 0.02}, sft: {lr: 0.0001}}\n"
    )
    cfg, _, recipe = resolve("--beta", "0.05", sets=["sampling.num_steps=8"], model=str(model))
    assert recipe == str(model / "bench_recipe.yaml")
    assert (cfg.reward, cfg.sampling.num_steps, cfg.sampling.guidance_scale) == ("shapes-reward", 8, 5.0)
    assert (cfg.hparams.lr, cfg.hparams.beta) == (0.0003, 0.05)
    cfg, _, _ = resolve(method="reward-only", model=str(model))  # the preset inherits dpok's recipe, not its beta
    assert (cfg.hparams.lr, cfg.hparams.beta) == (0.0003, 0.0)
    cfg, _, _ = resolve(method="sft", model=str(model))
    assert cfg.hparams.lr == 0.0001


def test_shipped_recipe_is_the_one_recipe_py_writes():
    import yaml

    from bench.models import SHAPES_MODEL
    from bench.shapes.recipe import RECIPE

    assert yaml.safe_load((SHAPES_MODEL / "bench_recipe.yaml").read_text()) == RECIPE
