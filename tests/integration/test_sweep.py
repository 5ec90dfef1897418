"""`bench sweep`: a grid of ordinary runs in stable folders, skipped when done, resumed when stopped part way."""

from __future__ import annotations

import shutil

import pytest
import yaml

from bench.errors import BenchError
from bench.sweep import cells, load_grid, restrict, run_folder, state
from tests.integration.cli_helpers import TINY_DPOK, run_cli


def _grid(tmp_path, tiny_sd, **extra):
    grid = {
        "name": "tiny",
        "root": str(tmp_path / "study"),
        "run": {"method": "dpok", "model": str(tiny_sd), "reward": "compressibility", "prompts": "a red circle",
                "steps": 2, "checkpoint_every": 1, "snapshot_every": 1, "set": TINY_DPOK[1:2],
                **dict(zip([a.lstrip("-").replace("-", "_") for a in TINY_DPOK[2::2]], TINY_DPOK[3::2], strict=True))},
        "axes": {"seed": [0, 1]},
        "eval": {"samples": 2, "snapshots": True},
        **extra,
    }  # fmt: skip
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def test_cells_are_named_from_their_axis_values(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(
        yaml.safe_dump({"name": "g", "run": {"steps": 3}, "axes": {"reward": ["a-b", "c"], "seed": [0, 1]}})
    )
    grid = load_grid(path)
    names = [c.name for c in cells(grid)]
    assert names == ["reward-a-b_seed-0", "reward-a-b_seed-1", "reward-c_seed-0", "reward-c_seed-1"]
    assert cells(grid)[3].options == {"steps": 3, "reward": "c", "seed": 1}
    assert all(state(c, grid) == "missing" for c in cells(grid))


def test_a_variant_axis_changes_several_options_together(tmp_path):
    path = tmp_path / "g.yaml"
    variants = [{"name": "small", "lr": 0.001}, {"name": "wide", "samples_per_round": 32, "buffer_size": 640}]
    path.write_text(yaml.safe_dump({"name": "g", "run": {"lr": 0.005}, "axes": {"recipe": variants, "seed": [0]}}))
    grid = load_grid(path)
    assert [(c.name, c.options) for c in cells(grid)] == [
        ("recipe-small_seed-0", {"lr": 0.001, "seed": 0}),
        ("recipe-wide_seed-0", {"lr": 0.005, "samples_per_round": 32, "buffer_size": 640, "seed": 0}),
    ]
    path.write_text(yaml.safe_dump({"name": "g", "axes": {"recipe": [{"lr": 1}]}}))
    with pytest.raises(BenchError, match="needs a name"):
        load_grid(path)


def test_only_runs_a_grid_in_parts_under_the_same_cell_names(tmp_path):
    path = tmp_path / "g.yaml"
    arms = [{"name": "dpok", "method": "dpok"}, {"name": "sft", "method": "sft"}, {"name": "kl-only", "method": "x"}]
    path.write_text(yaml.safe_dump({"name": "g", "axes": {"arm": arms, "prompt": ["a", "b"], "seed": [0, 1, 2]}}))
    grid = load_grid(path)
    whole = {c.name: (c.options, c.folder) for c in cells(grid)}
    part = cells(restrict(grid, ["arm=kl-only,dpok", "seed=2"]))
    assert [c.name for c in part] == ["arm-dpok_prompt-a_seed-2", "arm-dpok_prompt-b_seed-2",
                                      "arm-kl-only_prompt-a_seed-2", "arm-kl-only_prompt-b_seed-2"]  # fmt: skip
    assert all(whole[c.name] == (c.options, c.folder) for c in part)
    assert restrict(grid, None) is grid
    for bad, message in [("arm", "AXIS=VALUE"), ("beta=0", "no axis 'beta'"), ("arm=ppo", "no value 'ppo'")]:
        with pytest.raises(BenchError, match=message):
            restrict(grid, [bad])


@pytest.mark.parametrize(
    ("content", "message"),
    [({"run": {}}, "needs a name"), ({"name": "x", "axes": {"seed": []}}, "non-empty list"),
     ({"name": "x", "grid": {}}, "unknown keys")],
)  # fmt: skip
def test_bad_grid_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(BenchError, match=message):
        load_grid(path)


def test_sweep_runs_evaluates_and_marks_a_stopped_cell_partial(capsys, tmp_path, tiny_sd, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _grid(tmp_path, tiny_sd)
    code, out, err = run_cli(capsys, ["sweep", str(path)])
    assert code == 0, err
    grid = load_grid(path)
    assert [state(c, grid) for c in cells(grid)] == ["done", "done"]
    first = run_folder(cells(grid)[0])
    assert (first / "snapshots" / "update-00001").is_dir()  # every round but the last
    import pandas as pd

    evals = pd.read_parquet(first / "eval.parquet")
    assert sorted(evals.step.unique()) == [0, 1, 2]  # pretrained, the snapshot, the final LoRA
    # A cell stopped part way (its last round and its evaluation gone) is partial. Running the sweep again resumes
    # it: test_sweep_engines.py kills a real sweep for that, and test_resume.py covers a run without a checkpoint.
    second = run_folder(cells(grid)[1])
    rows = (second / "train.jsonl").read_text().splitlines()
    (second / "train.jsonl").write_text(rows[0] + "\n")
    (second / "eval.parquet").unlink()
    shutil.rmtree(second / "checkpoint")
    assert state(cells(grid)[1], grid) == "partial"
    code, out, err = run_cli(capsys, ["sweep", str(path), "--status"])
    assert code == 0 and out.split()[0::2] == ["done", "partial"]
    code, out, err = run_cli(capsys, ["sweep", str(path), "--dry-run"])
    assert code == 0 and out.splitlines() == [f"would run {cells(grid)[1].folder} (partial)"], out  # not the done one
    # The grid changes after its cells ran: their runs are stale, neither done nor touched, and say what differs.
    changed = yaml.safe_load(path.read_text())
    changed["run"]["beta"] = 0.5
    path.write_text(yaml.safe_dump(changed, sort_keys=False))
    logs = [(run_folder(c) / "train.jsonl").read_text() for c in cells(grid)]
    code, out, err = run_cli(capsys, ["sweep", str(path), "--status"])
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["stale", "stale"], out
    assert "(hparams.beta: the run's 0.01, the grid's 0.5)" in out, out
    code, out, err = run_cli(capsys, ["sweep", str(path)])
    assert code == 2 and "2 of 2 cells failed" in err and "move that run folder out of the cell" in err, err
    assert [(run_folder(c) / "train.jsonl").read_text() for c in cells(grid)] == logs
    changed["run"].pop("beta")  # the grid's settings back; then other weights under the same model name
    path.write_text(yaml.safe_dump(changed, sort_keys=False))
    assert [state(c, grid) for c in cells(grid)] == ["done", "partial"]
    import json

    env = run_folder(cells(grid)[0]) / "env.json"
    env.write_text(json.dumps({**json.loads(env.read_text()), "model_fingerprint": "0123456789abcdef"}))
    code, out, err = run_cli(capsys, ["sweep", str(path), "--status"])
    assert out.splitlines()[0].startswith("stale") and "model weights: the run's '01234567'" in out, out


def test_standing_line_places_a_run_among_committed_ones(capsys, tmp_path):
    from tests.fake_runs import make_run

    runs = [make_run(tmp_path, f"r{k}", "dpok", 0.01, seed=k, shift=s) for k, s in enumerate([0.1, 0.2, 0.3, 0.0])]
    code, out, err = run_cli(capsys, ["standing", str(runs[1]), "--against", str(tmp_path / "r*")])
    assert code == 0, err
    assert (
        "the interval excludes 0 (a gain)" in out and "2 of the 3 committed runs of this protocol gained less" in out
    )  # shifts 0.1, 0.0 below 0.2
    code, out, err = run_cli(capsys, ["standing", str(runs[3])])
    assert "includes 0" in out and "no committed runs" in out
    other = make_run(tmp_path / "other", "r9", "dpok", 0.1, seed=9, shift=0.5)  # another beta: another protocol
    code, out, err = run_cli(capsys, ["standing", str(runs[1]), "--against", str(tmp_path / "r*"), "--against",
                                      str(other)])  # fmt: skip
    assert "2 of the 3 committed runs" in out and "+0.5" not in out
    import json  # a run of re-pretrained weights (same model name, same config) is another protocol too

    (runs[0] / "env.json").write_text(json.dumps({"model_fingerprint": "another model's weights"}))
    code, out, err = run_cli(capsys, ["standing", str(runs[1]), "--against", str(tmp_path / "r*")])
    assert "1 of the 2 committed runs" in out, out  # runs[1] records no weights (written before env.json did): it
    # matches the other runs without a fingerprint on their config alone (+0.029, +0.280), never runs[0]
    for run in runs[1:3]:
        (run / "env.json").write_text(json.dumps({"model_fingerprint": "the shipped weights"}))
    code, out, err = run_cli(capsys, ["standing", str(runs[1]), "--against", str(tmp_path / "r*")])
    assert "0 of the 1 committed runs of this protocol gained less (theirs: +0.280;" in out, out  # runs[3] has none


def test_failed_cells_do_not_stop_the_others_and_status_shows_their_errors(capsys, tmp_path, tiny_sd):
    path = _grid(tmp_path, tiny_sd)
    grid = yaml.safe_load(path.read_text())
    grid["run"]["no_such_option"] = 1
    path.write_text(yaml.safe_dump(grid))
    code, out, err = run_cli(capsys, ["sweep", str(path)])
    assert code == 2 and "2 of 2 cells failed (seed-0: " in err
    assert "unknown option --no-such-option for method dpok" in err
    code, out, err = run_cli(capsys, ["sweep", str(path), "--status"])
    lines = out.strip().splitlines()
    assert all(line.startswith("failed") and "exit 2: error: unknown option --no-such-option" in line for line in lines)
    assert len(lines) == 2  # the second cell ran after the first failed


def test_the_weights_fingerprint_ignores_the_model_card(tmp_path, tiny_sd):
    from bench.models import model_fingerprint

    model = tmp_path / "model"
    shutil.copytree(tiny_sd, model)
    before = model_fingerprint(model, weights_only=True), model_fingerprint(model)
    (model / "README.md").write_text("re-measured card\n")  # a card rewrite is the same model
    assert model_fingerprint(model, weights_only=True) == before[0] and model_fingerprint(model) != before[1]
    (model / "unet" / "config.json").write_text((model / "unet" / "config.json").read_text() + " ")
    assert model_fingerprint(model, weights_only=True) != before[0]  # other files are the model
