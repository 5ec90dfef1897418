"""Bad input: one line on stderr, exit code 2, no traceback, and nothing written under results/."""

import pytest
from cli_helpers import run_cli

from bench.errors import BenchError


def _cases(tiny_sd, tmp_path):
    not_a_pipeline = tmp_path / "empty_model"
    not_a_pipeline.mkdir(exist_ok=True)
    model = ["--model", str(tiny_sd)]
    return [
        (["--method", "dpko"] + model, "error: unknown method 'dpko'; known: ddpo, dpok, kl-only, reward-only, sft"),
        (["--reward", "imagerewrd"] + model, "error: unknown scorer 'imagerewrd'; known: "),
        (["--alpha", "-1"] + model, "error: alpha must be >= 0.0 (got -1.0)"),
        (["--beta", "-0.01"] + model, "error: beta must be >= 0.0 (got -0.01)"),
        (["--lr", "0"] + model, "error: lr must be > 0.0 (got 0.0)"),
        (["--lr", "-1e-5"] + model, "error: lr must be > 0.0 (got -1e-05)"),
        (["--ratio-clip", "0"] + model, "error: ratio_clip must be > 0.0 (got 0.0)"),
        (["--grad-clip", "0"] + model, "error: grad_clip must be > 0.0 (got 0.0)"),
        (["--steps", "0"] + model, "error: steps must be >= 1 (got 0)"),
        (["--set", "sampling.eta=0"] + model, "error: sampling.eta must be > 0 for dpok"),
        (["--model", str(not_a_pipeline)], f"error: model '{not_a_pipeline}' is not a pipeline folder"),
        (["--model", "someone/no-such-model"], "error: model 'someone/no-such-model' is neither a pipeline folder"),
        (["--prompts", "missing.txt"] + model, "error: prompt file missing.txt does not exist"),
    ]


def test_each_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, tiny_sd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "results"
    for args, expected in _cases(tiny_sd, tmp_path):
        code, out, err = run_cli(capsys, ["run", "--results-dir", str(results)] + args)
        assert code == 2, (args, err)
        assert err.startswith(expected), (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
        assert not results.exists(), args
    assert "no hub is reachable offline" in run_cli(capsys, ["run", "--model", "someone/no-such-model"])[2]


def test_debug_shows_the_traceback(capsys, tmp_path):
    with pytest.raises(BenchError, match="unknown method"):
        from bench.cli import main

        main(["--debug", "run", "--method", "nope", "--results-dir", str(tmp_path / "r")])


def test_plugin_option_loads_a_method_from_module_attr(capsys, tmp_path, tiny_sd, monkeypatch):
    (tmp_path / "my_variant.py").write_text(
        "from bench.methods.dpok import DPOK\nMyDPOK = DPOK.preset('dpok-mean', 'DPOK with a mean baseline', "
        "baseline='mean')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = run_cli(capsys, ["ls", "methods", "--plugin", "my_variant:MyDPOK"])
    assert code == 0 and "dpok-mean" in out and "--plugin" in out
    code, out, err = run_cli(capsys, ["run", "--plugin", "my_variant:Missing", "--model", str(tiny_sd)])
    assert code == 2 and err.startswith("error: plugin 'my_variant:Missing': module my_variant has no attribute")


def test_every_scorer_lists_a_description_and_the_gold_one_is_marked(capsys):
    code, out, err = run_cli(capsys, ["ls", "scorers"])
    assert code == 0, err
    rows = [line.split(None, 2) for line in out.strip().splitlines()]
    assert all(len(row) == 3 and len(row[2]) > 20 for row in rows), [r for r in rows if len(r) < 3]
    assert [row[0] for row in rows if row[2].startswith("[gold]")] == ["shapes-oracle"]


def test_run_help_with_a_method_lists_every_option_of_that_method(capsys):
    import dataclasses

    from bench.registry import METHODS

    code, out, err = run_cli(capsys, ["run", "--method", "dpok", "--help"])
    assert code == 0, err
    assert "--world" in out and "Options of method dpok" in out
    for field in dataclasses.fields(METHODS.get("dpok").Config):  # generated from the Config: none is missing
        assert f"--{field.name.replace('_', '-')} " in out
    code, out, err = run_cli(capsys, ["run", "--method", "reward-only", "--help"])
    assert "--beta" in out and "(fixed by this preset)" in out
