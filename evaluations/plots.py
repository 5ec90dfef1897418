"""Seaborn figures from run folders, saved as PNG (Agg backend: no display, same pixels on any machine).

- ``training.png``: reward and KL per optimiser update, one line per method label (train.jsonl).
- ``proxy_vs_gold.png``: the proxy reward against the gold measure per image, pretrained vs each tuned method:
  over-optimisation shows as proxy gains without gold gains.
- ``distributions.png``: per scorer, the distribution of per-image scores per method (box plots).
- ``saturation.png``: mean of the saturation measure per method at each evaluated step, with the tables' 95%
  interval (runs resampled, then images).
- ``curves.png``: proxy, gold and quality on the evaluation seeds against the training samples drawn, from the LoRA
  snapshots (``snapshot_every`` and ``bench eval --snapshots``); one line per label, the band resampling runs.
  Over-optimisation shows as the proxy rising while gold stalls or falls.

Which scorer is which comes from the runs, never from a name written here: the proxy is the reward the runs
trained on (or their world's, for runs trained on the gold measure), gold, quality and saturation are scorer
attributes (``evaluations.runs``). A figure whose data is missing (no train.jsonl rows, no gold measure...) is
skipped, not drawn empty.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: tables and plots run headless, in tests and on servers

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.evaluations.runs import (  # noqa: E402
    EVAL_COLUMNS,
    PRETRAINED,
    gold_scorers,
    label_scorers,
    load_eval,
    load_training,
    proxy_scorer,
    read_config,
    read_configs,
    role_scorers,
    run_clusters,
    run_labels,
    sorted_runs,
    update_rounds,
)
from bench.stats import cluster_bootstrap_ci  # noqa: E402

# No timestamps or version strings in the files: the same runs give the same bytes.
PNG_METADATA = {"Software": None}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata=PNG_METADATA)
    plt.close(fig)
    return path


def _order(labels) -> list[str]:
    return sorted(set(labels), key=lambda s: (not s.startswith(PRETRAINED), s))


def plot_training(train: pd.DataFrame, path: Path) -> Path | None:
    """Reward and KL against the update index, one line per label (seeds pooled into a band)."""
    metrics = [m for m in ("reward", "kl") if m in train and train[m].notna().any()]
    if train.empty or not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        sns.lineplot(data=train, x="update", y=metric, hue="label", hue_order=_order(train.label), ax=ax,
                     errorbar=("ci", 95), n_boot=500, seed=0)  # fmt: skip
        ax.set_title(f"{metric} during training")
    return _save(fig, path)


def proxy_gold_pairs(evals: pd.DataFrame, proxy: str | None, gold: str | None) -> pd.DataFrame:
    """One row per image scored by both the proxy and the gold scorer: label, run, split, prompt, seed, both values."""
    keys = ["label", "run", "split", "prompt", "seed"]
    if proxy is None or gold is None or proxy == gold:
        return pd.DataFrame(columns=keys)
    both = evals[evals.scorer.isin([proxy, gold]) & evals.value.notna()]
    pairs = both.pivot_table(index=keys, columns="scorer", values="value", aggfunc="first")
    if proxy not in pairs or gold not in pairs:
        return pd.DataFrame(columns=[*keys, proxy, gold])
    return pairs[[proxy, gold]].dropna().reset_index().rename_axis(columns=None)


def plot_proxy_vs_gold(evals: pd.DataFrame, path: Path, proxy: str | None, gold: str | None) -> Path | None:
    """Per-image proxy vs gold scatter, one colour per label, with each label's mean as a large marker."""
    pairs = proxy_gold_pairs(evals, proxy, gold)
    if pairs.empty:
        return None
    order = _order(pairs.label)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    sns.scatterplot(data=pairs, x=proxy, y=gold, hue="label", hue_order=order, alpha=0.35, s=14, ax=ax)
    means = pairs.groupby("label")[[proxy, gold]].mean().reindex(order).reset_index()
    sns.scatterplot(data=means, x=proxy, y=gold, hue="label", hue_order=order, s=160, marker="X",
                    edgecolor="black", legend=False, ax=ax)  # fmt: skip
    ax.set(xlabel=f"proxy ({proxy})", ylabel=f"gold ({gold})", title="proxy reward vs gold measure")
    return _save(fig, path)


def plot_distributions(evals: pd.DataFrame, path: Path) -> Path | None:
    """One panel per scorer: box plots of per-image scores per label."""
    evals = evals[~evals.scorer.isin(label_scorers(set(evals.scorer))) & evals.value.notna()]
    scorers = sorted(set(evals.scorer))
    if not scorers:
        return None
    order = _order(evals.label)
    wrapped = {label: textwrap.fill(label, 36) for label in order}  # long labels wrap instead of running over boxes
    evals = evals.assign(label=evals.label.map(wrapped))
    height = 0.3 * sum(w.count("\n") + 1 for w in wrapped.values()) + 0.25 * len(order) + 2
    fig, axes = plt.subplots(1, len(scorers), figsize=(3.5 * len(scorers), height), squeeze=False, sharey=True)
    for k, (ax, scorer) in enumerate(zip(axes[0], scorers, strict=True)):
        sns.boxplot(data=evals[evals.scorer == scorer], x="value", y="label", order=[wrapped[o] for o in order],
                    ax=ax, fliersize=2)  # fmt: skip
        ax.set(title=scorer, xlabel="score per image", ylabel="")
        ax.tick_params(axis="y", labelleft=k == 0)  # the labels once, left of the first panel only
    fig.tight_layout()
    return _save(fig, path)


def saturation_points(evals: pd.DataFrame, scorer: str, n_boot: int = 500) -> pd.DataFrame:
    """Per label and evaluated step, over every split evaluated: mean of ``scorer`` and its 95% interval, estimated
    as in the tables (runs resampled, then images, one draw of the (split, prompt, seed) draws for runs scored on the
    same ones: ``cluster_bootstrap_ci``)."""
    rows = []
    part = evals[(evals.scorer == scorer) & evals.value.notna()]
    for (label, step), cell in part.groupby(["label", "step"]):
        # the pretrained row is one model (load_eval keeps each of its images once), as in build_table
        runs = [cell] if label.startswith(PRETRAINED) else [r for _, r in cell.groupby("run")]
        values, keys = run_clusters(runs, draw=("split", "prompt", "seed"))
        mean, lo, hi = cluster_bootstrap_ci(values, n_boot=n_boot, seed=0, keys=keys)
        rows.append({"label": label, "step": int(step), "mean": mean, "lo": lo, "hi": hi, "runs": len(runs)})
    return pd.DataFrame(rows, columns=["label", "step", "mean", "lo", "hi", "runs"])


def plot_saturation(evals: pd.DataFrame, path: Path) -> Path | None:
    """Mean of the saturation measure (``role = "saturation"``; lower is better) per label at each evaluated step,
    with the tables' interval (``saturation_points``), labels side by side at each step."""
    measures = role_scorers(set(evals.scorer), "saturation")
    points = saturation_points(evals, measures[0]) if measures else pd.DataFrame()
    if points.empty:
        return None
    steps, order = sorted(set(points.step)), _order(points.label)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    colours = sns.color_palette(n_colors=len(order))
    for i, label in enumerate(order):
        mine = points[points.label == label].sort_values("step")
        shift = (i - (len(order) - 1) / 2) * 0.3 / max(1, len(order) - 1)  # dodge, as seaborn's pointplot
        x = [steps.index(s) + shift for s in mine.step]
        # clipped at 0: a constant cell's bootstrap means may round an ulp past the reported mean
        yerr = [(mine["mean"] - mine.lo).clip(lower=0), (mine.hi - mine["mean"]).clip(lower=0)]
        ax.errorbar(x, mine["mean"], yerr=yerr, fmt="-o", capsize=3, color=colours[i], label=label)
    ax.set_xticks(range(len(steps)), [str(s) for s in steps])
    ax.set(xlabel="step", ylabel=f"mean {measures[0]}", title=f"{measures[0]} (step 0 = pretrained)")
    ax.legend(fontsize="small")
    return _save(fig, path)


def snapshot_curves(run_dirs: Sequence[str | Path], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Per run, scorer and evaluated step (pretrained, snapshots, final): the mean score on the evaluation seeds of
    the training split, and the training samples drawn by then (rounds from train.jsonl x samples_per_round).
    ``labels`` (run folder name -> label) replaces the labels made from the configs."""
    runs = sorted_runs(run_dirs)
    configs = read_configs(runs)
    labels = run_labels(configs) | (labels or {})
    frames = []
    for d in runs:
        path = d / "eval.parquet"
        if not path.is_file():
            continue
        df = pd.read_parquet(path, columns=EVAL_COLUMNS)
        df = df[(df.split == "train") & df.value.notna()]
        rounds = update_rounds(d)
        per_round = (configs[d.name].get("hparams") or {}).get("samples_per_round", 1)
        means = df.groupby(["scorer", "step"]).value.mean().reset_index()
        means["samples"] = [0 if s == 0 else rounds.get(s, s) * per_round for s in means.step]
        means["run"], means["label"] = d.name, labels[d.name]
        frames.append(means)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plot_curves(curves: pd.DataFrame, path: Path, measures: Sequence[str], quick: bool = False) -> Path | None:
    """``measures`` (proxy, gold, quality) against training samples, one line per label; drawn when a run has
    snapshots."""
    if curves.empty or curves.groupby("run").step.nunique().max() < 3:
        return None
    scorers = [sc for sc in dict.fromkeys(measures) if sc in set(curves.scorer)]
    if not scorers:
        return None
    fig, axes = plt.subplots(1, len(scorers), figsize=(4.5 * len(scorers), 3.5), squeeze=False)
    order = _order(curves.label)
    for ax, scorer in zip(axes[0], scorers, strict=True):
        sns.lineplot(data=curves[curves.scorer == scorer], x="samples", y="value", hue="label", hue_order=order,
                     marker="o", errorbar=("ci", 95), n_boot=500, seed=0, ax=ax)  # fmt: skip
        title = f"{scorer} on evaluation seeds"
        ax.set(title=("quick check: " if quick else "") + title, xlabel="training samples", ylabel="mean score")
    return _save(fig, path)


def plot_gold_vs_proxy(curves: pd.DataFrame, path: Path, proxy: str | None, gold: str | None,
                       quick: bool = False) -> Path | None:  # fmt: skip
    """Along training: the gold measure against the proxy at each evaluated step (pretrained, snapshots, final), one
    line per label (mean over its runs). Where the proxy keeps rising while gold stalls or falls, the line bends
    right: reward over-optimisation, which only a world with a gold measure can draw."""
    if curves.empty or proxy is None or gold is None or curves.groupby("run").step.nunique().max() < 3:
        return None
    both = curves[curves.scorer.isin([proxy, gold])]
    wide = both.pivot_table(index=["label", "run", "samples"], columns="scorer", values="value").reset_index()
    if proxy not in wide or gold not in wide:
        return None
    means = wide.groupby(["label", "samples"])[[proxy, gold]].mean().reset_index().sort_values(["label", "samples"])
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for label in _order(means.label):
        part = means[means.label == label]
        ax.plot(part[proxy], part[gold], marker="o", label=label)
    start = means[means.samples == means.samples.min()][[proxy, gold]].mean()
    ax.scatter([start[proxy]], [start[gold]], s=120, marker="*", color="black", zorder=3, label="pretrained")
    title = "gold against proxy along training (mean over seeds)"
    ax.set(xlabel=f"proxy ({proxy})", ylabel=f"gold ({gold})", title=("quick check: " if quick else "") + title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def measures(run_dirs: Sequence[str | Path], scored: set[str]) -> tuple[str | None, str | None]:
    """The proxy (from the runs' configs) and the gold measure (a ``gold`` scorer) among the ``scored`` ones."""
    configs = [read_config(d) for d in sorted_runs(run_dirs)]
    golds = gold_scorers(scored)
    return proxy_scorer(configs, scored), (golds[0] if golds else None)


def make_plots(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Draw every figure the runs have data for into ``out_dir``; returns the PNG paths written.

    Raises:
        BenchError: a folder has no config.yaml or no eval.parquet.
    """
    out_dir = Path(out_dir)
    evals, train = load_eval(run_dirs), load_training(run_dirs)
    proxy, gold = measures(run_dirs, set(evals.scorer))
    quality = role_scorers(set(evals.scorer), "quality")
    sns.set_theme(style="whitegrid", context="notebook")
    made = [
        plot_training(train, out_dir / "training.png"),
        plot_proxy_vs_gold(evals, out_dir / "proxy_vs_gold.png", proxy, gold),
        plot_distributions(evals, out_dir / "distributions.png"),
        plot_saturation(evals, out_dir / "saturation.png"),
        plot_curves(snapshot_curves(run_dirs), out_dir / "curves.png", [m for m in (proxy, gold, *quality) if m]),
    ]
    return [p for p in made if p is not None]
