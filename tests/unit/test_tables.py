"""Tables from run folders: numbers recomputed independently from eval.parquet with pandas."""

import io

import numpy as np
import pandas as pd
import pytest
from fake_runs import make_run, make_runs

from bench.evaluations.runs import run_labels
from bench.evaluations.tables import build_table, to_csv, to_latex, to_markdown
from bench.stats import bootstrap_ci, cluster_bootstrap_ci


def independent(run_dirs) -> pd.DataFrame:
    """Mean and n per (label, scorer, split), straight from the parquet files."""
    labels = {"r1-dpok": "dpok (beta=0.01)", "r2-dpok": "dpok (beta=0.1)", "r3-dpok": "dpok (beta=0.01)"}
    df = pd.concat([pd.read_parquet(d / "eval.parquet") for d in run_dirs], ignore_index=True)
    tuned = df[df.step == 3].assign(label=df.run.map(labels))
    base = df[(df.step == 0) & (df.run == "r1-dpok")].assign(label="pretrained")  # identical in every run
    return pd.concat([base, tuned]).groupby(["label", "scorer", "split"]).value.agg(["mean", "count"])


def test_numbers_match_a_pandas_recomputation(tmp_path):
    runs = make_runs(tmp_path)
    table = build_table(runs, n_boot=500)
    expected = independent(runs)
    assert list(table.index) == ["pretrained", "dpok (beta=0.01) [2 runs]", "dpok (beta=0.1)"]
    for (label, scorer, split), row in expected.iterrows():
        label = label + " [2 runs]" if label == "dpok (beta=0.01)" else label
        assert table.loc[label, (scorer, split, "mean")] == pytest.approx(row["mean"], abs=1e-12)
        assert table.loc[label, (scorer, split, "n")] == row["count"]
    # pooled seeds: beta=0.01 has two runs x 2 prompts x 4 samples on train; pretrained counted once, not 3 times
    assert table.loc["dpok (beta=0.01) [2 runs]", ("shapes-oracle", "train", "n")] == 16
    assert table.loc["pretrained", ("shapes-oracle", "train", "n")] == 8
    # two pooled runs scored on the same (prompt, seed) draws: the two-stage bootstrap with seed 0, runs with
    # replacement, then one draw of the (prompt, seed) columns shared by the drawn runs
    per_run = []
    for d in (runs[0], runs[2]):
        values = pd.read_parquet(d / "eval.parquet")
        values = values[(values.step == 3) & (values.scorer == "shapes-reward") & (values.split == "heldout")]
        per_run.append(values.sort_values(["prompt", "seed"]).value.to_numpy())
    rng = np.random.default_rng(0)
    picks = rng.integers(0, 2, (500, 2))
    matrix = np.vstack(per_run)  # runs x (prompt, seed)
    means = [matrix[pick][:, rng.integers(0, 4, 4)].mean() for pick in picks]
    lo, hi = np.quantile(means, [0.025, 0.975])
    cell = table.loc["dpok (beta=0.01) [2 runs]", ("shapes-reward", "heldout")]
    assert cell["mean"] == pytest.approx(np.concatenate(per_run).mean(), abs=1e-12)
    assert (cell["lo"], cell["hi"]) == pytest.approx((lo, hi), abs=1e-12)
    # one run (beta=0.1): the plain percentile bootstrap over its images
    values = pd.read_parquet(runs[1] / "eval.parquet")
    values = values[(values.step == 3) & (values.scorer == "shapes-reward") & (values.split == "heldout")]
    values = values.sort_values(["prompt", "seed"]).value.to_numpy()
    means = values[np.random.default_rng(0).integers(0, len(values), (500, len(values)))].mean(1)
    single = table.loc["dpok (beta=0.1)", ("shapes-reward", "heldout")]
    assert (single["lo"], single["hi"]) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), abs=1e-12)
    assert cell["lo"] < cell["mean"] < cell["hi"]


def test_pooled_seeds_widen_the_interval_by_their_spread():
    """Two training runs that disagree (0.1 and 0.5, little noise within each): a flat bootstrap over their pooled
    images would report a narrow interval around 0.3; the two-stage one covers both outcomes."""
    rng = np.random.default_rng(1)
    runs = [0.1 + rng.normal(0, 0.02, 256), 0.5 + rng.normal(0, 0.02, 256)]
    mean, lo, hi = cluster_bootstrap_ci(runs)
    _, flat_lo, flat_hi = bootstrap_ci(np.concatenate(runs))
    assert mean == pytest.approx(0.3, abs=0.01) and flat_hi - flat_lo < 0.05
    assert lo < 0.12 and hi > 0.48
    assert cluster_bootstrap_ci([runs[0]]) == bootstrap_ci(runs[0])


def test_runs_scored_on_the_same_seeds_share_one_draw_of_them():
    """Three copies of one model, scored on the same 256 evaluation seeds: pooled, they know no more than one copy,
    so their interval is the model's own width (a draw of images per run would shrink it by about sqrt(3)). The
    keys may come in any order per run; a run that lost an image stays crossed; runs scored on other draws fall back to
    a draw per run."""
    rng = np.random.default_rng(2)
    values, keys = rng.normal(0.5, 0.2, 256), [("a square", s) for s in range(256)]
    _, one_lo, one_hi = bootstrap_ci(values)
    order = rng.permutation(256)
    copies, copy_keys = [values, values, values[order]], [keys, keys, [keys[i] for i in order]]
    mean, lo, hi = cluster_bootstrap_ci(copies, keys=copy_keys)
    _, flat_lo, flat_hi = cluster_bootstrap_ci(copies)  # no keys: a draw of images per run
    assert mean == pytest.approx(values.mean(), abs=1e-12)
    assert (hi - lo) / (one_hi - one_lo) == pytest.approx(1.0, abs=0.1)
    assert (flat_hi - flat_lo) / (one_hi - one_lo) == pytest.approx(1 / np.sqrt(3), abs=0.1)
    # a copy that lost one image (NaN, left out) is still crossed with the others, the missing draw left out of it
    _, lo_gap, hi_gap = cluster_bootstrap_ci([values, values, values[1:]], keys=[keys, keys, keys[1:]])
    assert (hi_gap - lo_gap) / (one_hi - one_lo) == pytest.approx(1.0, abs=0.1)
    # runs on other draws (another prompt), or a run naming a draw twice: resampled within each run, as without keys
    other = [keys, keys, [("a circle", s) for s in range(256)]]
    assert cluster_bootstrap_ci(copies, keys=other) == (mean, flat_lo, flat_hi)
    twice = [keys, keys, keys[:-1] + keys[:1]]
    assert cluster_bootstrap_ci(copies, keys=twice) == (mean, flat_lo, flat_hi)
    with pytest.raises(ValueError, match="256 values but 255 keys"):
        cluster_bootstrap_ci(copies, keys=[keys, keys, keys[1:]])
    assert cluster_bootstrap_ci([values], keys=[keys]) == bootstrap_ci(values)


def test_output_is_byte_identical_and_order_free(tmp_path):
    runs = make_runs(tmp_path)
    first = build_table(runs, n_boot=200)
    again = build_table(list(reversed(runs)) + [runs[0]], n_boot=200)
    for render in (to_markdown, to_latex, to_csv):
        assert render(first) == render(again)


def test_selection_and_renderers(tmp_path):
    runs = make_runs(tmp_path)
    table = build_table(runs, splits=["heldout"], scorers=["shapes-reward", "oversaturation"], n_boot=200)
    assert [c for c in table.columns.droplevel(2).unique()] == [("shapes-reward", "heldout"),
                                                                ("oversaturation", "heldout")]  # fmt: skip
    md = to_markdown(table).splitlines()
    assert md[0] == "| method | shapes-reward (heldout) | oversaturation (heldout) |"
    mean, lo, hi = (table.loc["dpok (beta=0.1)", ("oversaturation", "heldout", s)] for s in ("mean", "lo", "hi"))
    assert md[4] == f"| dpok (beta=0.1) | {table.iloc[2, 0]:.3f} [{table.iloc[2, 1]:.3f}, {table.iloc[2, 2]:.3f}] " \
                    f"| {mean:.3f} [{lo:.3f}, {hi:.3f}] |"  # fmt: skip
    tex = to_latex(table)
    assert r"\multicolumn{1}{c}{shapes-reward}" in tex and r"dpok (beta=0.01) [2 runs] & " in tex
    assert tex.count(r"\\") == 2 + 3  # two header rows, three method rows
    back = pd.read_csv(io.StringIO(to_csv(table)), index_col=0)
    assert back.loc["pretrained", "oversaturation/heldout/mean"] == pytest.approx(
        table.loc["pretrained", ("oversaturation", "heldout", "mean")], rel=1e-9
    )


def test_labels_show_only_settings_that_differ():
    configs = {
        "a": {"method": "dpok", "seed": 0, "hparams": {"beta": 0.01, "alpha": 10.0}, "lora": {"rank": 4}},
        "b": {"method": "dpok", "seed": 1, "hparams": {"beta": 0.0, "alpha": 10.0}, "lora": {"rank": 8}},
        "c": {"method": "sft", "seed": 0, "hparams": {"gamma": 0.5}, "lora": {"rank": 4}},
    }
    assert run_labels(configs) == {
        "a": "dpok (beta=0.01, lora.rank=4)",
        "b": "dpok (beta=0, lora.rank=8)",
        "c": "sft (lora.rank=4)",
    }


def test_change_table_pairs_each_run_with_its_own_pretrained_rows(tmp_path):
    from bench.evaluations.tables import build_change_table

    runs = make_runs(tmp_path)  # shifts: r1 +0.2 (seed 0), r2 +0.05 (beta 0.1, seed 1), r3 +0.25 (seed 2)
    table = build_change_table(runs, n_boot=500)
    assert list(table.index) == [
        "dpok (beta=0.01) seed 0", "dpok (beta=0.01) seed 2", "dpok (beta=0.01) [2 runs]", "dpok (beta=0.1) seed 1"
    ]  # fmt: skip
    for run, label in [(runs[0], "dpok (beta=0.01) seed 0"), (runs[1], "dpok (beta=0.1) seed 1")]:
        df = pd.read_parquet(run / "eval.parquet")
        part = df[(df.scorer == "shapes-oracle") & (df.split == "train")]
        want = part[part.step == 3].value.to_numpy() - part[part.step == 0].value.to_numpy()  # same prompt/seed order
        assert table.loc[label, ("shapes-oracle", "train", "mean")] == pytest.approx(want.mean())
        assert table.loc[label, ("shapes-oracle", "train", "n")] == len(want)
    pooled = table.loc["dpok (beta=0.01) [2 runs]", ("shapes-oracle", "train")]
    seeds = [table.loc[f"dpok (beta=0.01) seed {k}", ("shapes-oracle", "train", "mean")] for k in (0, 2)]
    assert pooled["mean"] == pytest.approx(np.mean(seeds))  # equal numbers of pairs per run
    assert pooled["lo"] < min(seeds) + 0.01 and pooled["hi"] > max(seeds) - 0.01  # covers the run-to-run spread


def test_each_arm_has_the_pretrained_row_of_its_own_prompts(tmp_path):
    """Arms trained on different prompt sets: one pretrained row per set, never one averaged over both."""
    import pandas as pd
    import yaml

    a = make_run(tmp_path, "a", "dpok", 0.01, seed=0, shift=0.1)
    b = make_run(tmp_path, "b", "dpok", 0.01, seed=1, shift=0.1)
    config = yaml.safe_load((b / "config.yaml").read_text()) | {"prompts": "four squares"}
    (b / "config.yaml").write_text(yaml.safe_dump(config))
    rows = pd.read_parquet(b / "eval.parquet")
    rows["prompt"] = "four squares, " + rows.prompt  # other prompts, still one per original
    rows.loc[rows.step == 0, "value"] += 1.0  # the other prompt's pretrained model scores far apart
    rows.to_parquet(b / "eval.parquet", index=False)
    table = build_table([a, b], splits=["train"], scorers=["shapes-oracle"])
    names = list(table.index)
    assert names[:2] == ["pretrained (prompts=four squares)", "pretrained (prompts=shapes-train)"]
    for run, name in ((a, names[1]), (b, names[0])):
        evals = pd.read_parquet(run / "eval.parquet")
        base = evals[(evals.step == 0) & (evals.split == "train") & (evals.scorer == "shapes-oracle")]
        assert table.loc[name, ("shapes-oracle", "train", "mean")] == pytest.approx(base.value.mean())
    same = build_table(make_runs(tmp_path / "same"), splits=["train"])
    assert [n for n in same.index if n.startswith("pretrained")] == ["pretrained"]  # one prompt set: one row


def test_runs_of_two_pretrained_weights_never_share_a_row(tmp_path):
    """A re-pretrained model keeps its name: runs on other weights (env.json's fingerprint, or none recorded) get
    their own arm and pretrained rows, each beside its own base model."""
    import json

    import pandas as pd

    old = make_run(tmp_path, "old", "dpok", 0.01, seed=0, shift=0.1)  # written before env.json held the weights
    new = make_run(tmp_path, "new", "dpok", 0.01, seed=1, shift=0.3)
    (new / "env.json").write_text(json.dumps({"model_fingerprint": "f251641f" + "0" * 56}))
    rows = pd.read_parquet(new / "eval.parquet")
    rows.loc[rows.step == 0, "value"] += 1.0  # the new base model scores far apart on the same prompts and seeds
    rows.to_parquet(new / "eval.parquet", index=False)
    table = build_table([old, new], splits=["train"], scorers=["shapes-oracle"])
    assert list(table.index) == ["pretrained (weights=f251641f)", "pretrained (weights=unrecorded)",
                                 "dpok (weights=f251641f)", "dpok (weights=unrecorded)"]  # fmt: skip
    for run, name in ((old, "pretrained (weights=unrecorded)"), (new, "pretrained (weights=f251641f)")):
        evals = pd.read_parquet(run / "eval.parquet")
        base = evals[(evals.step == 0) & (evals.split == "train") & (evals.scorer == "shapes-oracle")]
        assert table.loc[name, ("shapes-oracle", "train", "mean")] == pytest.approx(base.value.mean())
    (old / "env.json").write_text((new / "env.json").read_text())  # the same weights: one arm, one base row
    assert list(build_table([old, new], splits=["train"]).index) == ["pretrained", "dpok [2 runs]"]
