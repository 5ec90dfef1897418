"""Figures from run folders: which are drawn, what data they are drawn from, and reproducible bytes."""

import shutil

import pandas as pd
import pytest
from fake_runs import make_run, make_runs
from PIL import Image

from bench.evaluations.plots import make_plots, measures, proxy_gold_pairs, saturation_points
from bench.evaluations.runs import load_eval


def test_all_figures_are_written_and_reproducible(tmp_path):
    runs = make_runs(tmp_path / "runs")
    paths = make_plots(runs, tmp_path / "a")
    assert [p.name for p in paths] == ["training.png", "proxy_vs_gold.png", "distributions.png", "saturation.png"]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 200 and image.height > 150
            # a blank canvas has one colour; a drawn figure has many
            assert len(image.convert("RGB").getcolors(maxcolors=100_000) or range(100_001)) > 20
    again = make_plots(runs, tmp_path / "b")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]


def test_proxy_gold_pairs_join_the_two_scorers_per_image(tmp_path):
    runs = make_runs(tmp_path)
    evals = load_eval(runs)
    assert measures(runs, set(evals.scorer)) == ("shapes-reward", "shapes-oracle")  # from the configs and scorers
    pairs = proxy_gold_pairs(evals, *measures(runs, set(evals.scorer)))
    # 3 prompts x 4 samples: once for the pretrained model, once per run for the tuned ones
    assert pairs.groupby("label").size().to_dict() == {"pretrained": 12, "dpok (beta=0.01)": 24, "dpok (beta=0.1)": 12}
    raw = pd.read_parquet(runs[1] / "eval.parquet")
    raw = raw[(raw.step == 3)].pivot_table(index=["prompt", "seed"], columns="scorer", values="value")
    mine = pairs[pairs.run == runs[1].name].set_index(["prompt", "seed"]).sort_index()
    assert mine["shapes-reward"].to_numpy() == pytest.approx(raw["shapes-reward"].sort_index().to_numpy())
    assert mine["shapes-oracle"].to_numpy() == pytest.approx(raw["shapes-oracle"].sort_index().to_numpy())


def test_figures_without_data_are_skipped(tmp_path):
    run = make_run(tmp_path, "solo", "sft", 0.0, seed=0, shift=0.1)
    df = pd.read_parquet(run / "eval.parquet")
    df[df.scorer == "shapes-oracle"].to_parquet(run / "eval.parquet", index=False)
    (run / "train.jsonl").write_text("")
    shutil.rmtree(run / "samples")
    assert [p.name for p in make_plots([run], tmp_path / "out")] == ["distributions.png"]


def test_curves_follow_the_snapshots_against_training_samples(tmp_path):
    from bench.evaluations.plots import make_plots, snapshot_curves

    runs = make_runs(tmp_path / "runs")
    assert "curves.png" not in [p.name for p in make_plots(runs, tmp_path / "a")]  # no snapshots: not drawn
    for run in runs:  # add a snapshot at update 2: the mean of steps 0 and 3 per image
        df = pd.read_parquet(run / "eval.parquet")
        mid = df[df.step == 3].assign(step=2)
        mid["value"] = (df[df.step == 0].value.to_numpy() + df[df.step == 3].value.to_numpy()) / 2
        pd.concat([df, mid], ignore_index=True).to_parquet(run / "eval.parquet", index=False)
    curves = snapshot_curves(runs)
    one = curves[(curves.run == runs[0].name) & (curves.scorer == "shapes-oracle")].set_index("step")
    assert list(one.index) == [0, 2, 3] and list(one.samples) == [0, 2, 3]  # no samples_per_round: one per round
    raw = pd.read_parquet(runs[0] / "eval.parquet")
    raw = raw[(raw.scorer == "shapes-oracle") & (raw.split == "train")]
    assert one.value.to_numpy() == pytest.approx(raw.groupby("step").value.mean().to_numpy())
    assert "curves.png" in [p.name for p in make_plots(runs, tmp_path / "b")]


def test_distribution_labels_sit_left_of_the_first_panel_only(tmp_path, monkeypatch):
    """Long row labels wrap and are drawn once, left of the first panel, never over another panel's boxes."""
    import bench.evaluations.plots as plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    runs = make_runs(tmp_path)
    evals = load_eval(runs)
    evals["label"] = evals.label.where(evals.label == "pretrained", evals.label + " with a very long setting name")
    plots.plot_distributions(evals, tmp_path / "d.png")
    (fig,) = figures
    axes = fig.axes
    assert len(axes) > 1
    first = [t.get_text() for t in axes[0].get_yticklabels()]
    assert first[0] == "pretrained" and all(len(line) <= 36 for t in first for line in t.split("\n"))
    fig.canvas.draw()
    for ax in axes[1:]:
        assert not any(t.get_visible() and t.get_text() for t in ax.get_yticklabels())
    left_of_boxes = axes[0].get_window_extent().x0
    assert all(t.get_window_extent().x1 <= left_of_boxes for t in axes[0].get_yticklabels())


def test_saturation_points_are_the_tables_estimate_per_label_and_step(tmp_path):
    """The figure's interval is the tables': a label pooling runs covers their spread; a run and its copy (the same
    images of the same seeds) know no more than the run alone, so the copy leaves the width where it was."""
    import numpy as np

    runs = make_runs(tmp_path / "runs")
    evals = load_eval(runs)
    points = saturation_points(evals, "oversaturation").set_index(["label", "step"])
    assert sorted(points.index) == [("dpok (beta=0.01)", 3), ("dpok (beta=0.1)", 3), ("pretrained", 0)]
    assert points.loc[("dpok (beta=0.01)", 3), "runs"] == 2 and points.loc[("pretrained", 0), "runs"] == 1
    tuned = evals[(evals.scorer == "oversaturation") & (evals.label == "dpok (beta=0.01)")]
    assert points.loc[("dpok (beta=0.01)", 3), "mean"] == pytest.approx(tuned.value.mean(), abs=1e-12)
    assert (points.lo <= points["mean"]).all() and (points["mean"] <= points.hi).all()
    single = runs[1]  # the only beta=0.1 run
    shutil.copytree(single, tmp_path / "runs" / "r9-dpok")
    copied = saturation_points(load_eval([*runs, tmp_path / "runs" / "r9-dpok"]), "oversaturation")
    copied = copied.set_index(["label", "step"]).loc[("dpok (beta=0.1)", 3)]
    alone = points.loc[("dpok (beta=0.1)", 3)]
    assert copied["runs"] == 2 and copied["mean"] == pytest.approx(alone["mean"], abs=1e-12)
    assert (copied.hi - copied.lo) / (alone.hi - alone.lo) == pytest.approx(1.0, abs=0.25)
    assert np.isfinite(points[["lo", "hi"]].to_numpy()).all()
