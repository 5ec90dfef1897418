"""Table-driven bad inputs: each gives one expected line and exit code, and writes nothing under results/."""

import pytest
from cli_helpers import run_cli


def _matrix(tmp, tiny_sd):
    files = tmp / "files"
    files.mkdir()
    (files / "bad.yaml").write_text("steps: [1, 2\n")
    (files / "list.yaml").write_text("- 1\n- 2\n")
    (files / "types.yaml").write_text("steps: many\n")
    (files / "unknown.yaml").write_text("sampling: {num_step: 3}\n")
    (files / "empty.txt").write_text("# only a comment\n\n")
    (files / "bad.jsonl").write_text('{"prompt": "ok"}\n{"text": "no prompt field"}\n')
    (files / "notpipe").mkdir()
    (files / "run_without_checkpoint").mkdir()
    (files / "run_without_checkpoint" / "config.yaml").write_text("method: dpok\nmodel_path: x\nhparams: {}\n")
    corrupt = files / "corrupt_run"
    (corrupt / "checkpoint").mkdir(parents=True)
    (corrupt / "config.yaml").write_text(f"method: dpok\nmodel_path: {tiny_sd}\nsteps: 3\nhparams: {{}}\n")
    (corrupt / "checkpoint" / "meta.json").write_text("{not json")
    m = ["--model", str(tiny_sd)]
    return [
        # CLI options
        (["--method", "dpko"] + m, "error: unknown method 'dpko'; known: ddpo, dpok, kl-only, reward-only, sft"),
        (["--reward", "imagerewad"] + m, "error: unknown scorer 'imagerewad'"),
        (["--alpha", "-1"] + m, "error: alpha must be >= 0.0 (got -1.0)"),
        (["--beta", "-1"] + m, "error: beta must be >= 0.0 (got -1.0)"),
        (["--lr", "0"] + m, "error: lr must be > 0.0 (got 0.0)"),
        (["--ratio-clip", "-1"] + m, "error: ratio_clip must be > 0.0 (got -1.0)"),
        (["--steps", "0"] + m, "error: steps must be >= 1 (got 0)"),
        (["--set", "sampling.eta=0"] + m, "error: sampling.eta must be > 0 for dpok"),
        (["--set", "sampling.eta=2"] + m, "error: sampling.eta must be <= 1.0 (got 2.0)"),
        (["--set", "sampling.num_steps"] + m, "error: --set expects section.key=value"),
        (["--betta", "0.1"] + m, "error: unknown option --betta for method dpok"),
        (["--method", "reward-only", "--beta", "0.1"] + m, "error: beta is fixed at 0.0 by the reward-only preset"),
        (["--plugin", "no_such_module:X"] + m, "error: plugin 'no_such_module:X' failed to import: ModuleNotFound"),
        # config files
        (["--config", str(files / "missing.yaml")], f"error: config file {files / 'missing.yaml'} does not exist"),
        (["--config", str(files / "bad.yaml")], f"error: config file {files / 'bad.yaml'} is not valid YAML at line"),
        (["--config", str(files / "list.yaml")], f"error: config file {files / 'list.yaml'} must hold a mapping"),
        (["--config", str(files / "types.yaml")] + m, "error: steps: expected an integer, got 'many'"),
        (["--config", str(files / "unknown.yaml")] + m, "error: unknown setting sampling.num_step"),
        # prompt files
        (["--prompts", str(files / "none.txt")] + m, f"error: prompt file {files / 'none.txt'} does not exist"),
        (["--prompts", str(files / "empty.txt")] + m, f"error: --prompts '{files / 'empty.txt'}' holds no prompts"),
        (["--prompts", str(files / "bad.jsonl")] + m, f"error: prompt file {files / 'bad.jsonl'} line 2: expected"),
        (["--prompts", "nosuchset"] + m, "error: unknown prompt set 'nosuchset'; known: "),
        # model folders
        (["--model", str(files / "notpipe")], "error: model '" + str(files / "notpipe") + "' is not a pipeline folder"),
        (["--model", "org/not-cached"], "error: model 'org/not-cached' is neither a pipeline folder"),
        # scorer weights
        (["--reward", "imagereward"] + m, "error: "),
        # run folders
        (["--resume", str(files / "nothing")], "error: --resume " + str(files / "nothing") + ": no run folder"),
        (["--resume", str(files / "run_without_checkpoint")], "error: model 'x' is neither a pipeline folder"),
        (["--resume", str(corrupt)], f"error: checkpoint {corrupt / 'checkpoint'} is corrupt: meta.json is not valid"),
    ]


def test_bad_input_matrix(capsys, tmp_path, tiny_sd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_IMAGEREWARD_DIR", str(tmp_path / "no-weights"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to find offline
    results = tmp_path / "results"
    cases = _matrix(tmp_path, tiny_sd)
    assert len(cases) >= 20
    for args, expected in cases:
        code, out, err = run_cli(capsys, ["run", "--results-dir", str(results)] + args)
        assert (code, err[: len(expected)]) == (2, expected), (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
        assert not results.exists(), args
    assert not (tmp_path / "results" / "runs").exists()


@pytest.mark.parametrize("command", [["table"], ["plot"], ["report"], ["eval"]])
def test_reporting_commands_refuse_non_run_folders(capsys, tmp_path, command):
    code, out, err = run_cli(capsys, command + [str(tmp_path)])
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
