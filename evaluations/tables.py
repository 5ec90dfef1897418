"""Paper-style tables from run folders: rows are methods, columns scorer x split, cells mean [95% interval].

``build_table`` reads ``eval.parquet`` of every run (see ``evaluations.runs`` for row labels and the pretrained
row) and returns a DataFrame whose columns are a MultiIndex ``(scorer, split, stat)`` with stat in
``mean, lo, hi, n``. The interval is a percentile bootstrap over the images of a cell; where a row pools several
training runs (seeds), it is two-stage (runs, then images: ``bench.stats.cluster_bootstrap_ci``), so it covers the
run-to-run spread too; runs scored on the same (prompt, seed) draws share one draw of them in each resample. A
fixed seed per cell: the same folders give byte-identical Markdown, LaTeX and CSV.

Renderers are written here (no tabulate): ``to_markdown``, ``to_latex`` (booktabs), ``to_csv``, ``to_html``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.evaluations.runs import (
    EVAL_COLUMNS,
    PRETRAINED,
    label_scorers,
    load_eval,
    paired_steps,
    read_configs,
    run_clusters,
    run_labels,
    sorted_runs,
)
from bench.stats import cluster_bootstrap_ci

STATS = ("mean", "lo", "hi", "n")


def build_table(
    run_dirs: Sequence[str | Path],
    splits: Sequence[str] | None = None,
    scorers: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    labels: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per method label (``pretrained`` first), one column group per (scorer, split).

    Args:
        run_dirs: run folders holding config.yaml and eval.parquet.
        splits: prompt splits to show, in this order; default all, sorted.
        scorers: scorers to show, in this order; default all except category-label scorers (``kind = "label"``),
            sorted.
        n_boot: bootstrap resamples per cell.
        seed: bootstrap seed, the same for every cell.
        labels: run folder name -> row label, instead of the labels made from the configs.

    Returns:
        DataFrame indexed by ``method`` (the row label, plus `` [N runs]`` where N > 1 runs are pooled) with
        MultiIndex columns (scorer, split, stat); NaN values (a scorer that does not apply to an image) are left out
        of a cell, and a cell with no values is NaN with n = 0.
    """
    df = load_eval(run_dirs, labels)
    scorers = list(scorers) if scorers else sorted(set(df.scorer) - label_scorers(set(df.scorer)))
    splits = list(splits) if splits else sorted(set(df.split))
    df = df[df.scorer.isin(scorers) & df.split.isin(splits) & df.value.notna()]
    labels = sorted(set(df.label), key=lambda s: (not s.startswith(PRETRAINED), s))
    groups = {}  # (label, scorer, split) -> (values, draws), one of each per training run; pretrained: one model
    for key, part in df.groupby(["label", "scorer", "split"], sort=False):
        runs = [part] if key[0].startswith(PRETRAINED) else [r for _, r in part.groupby("run")]
        groups[key] = run_clusters(runs)
    columns = pd.MultiIndex.from_tuples(
        [(sc, sp, st) for sc in scorers for sp in splits for st in STATS], names=["scorer", "split", "stat"]
    )
    rows = []
    for label in labels:
        row = []
        for sc in scorers:
            for sp in splits:
                clusters, keys = groups.get((label, sc, sp), ([], None))
                ci = cluster_bootstrap_ci(clusters, n_boot=n_boot, seed=seed, keys=keys)
                row += [*ci, sum(len(c) for c in clusters)]
        rows.append(row)
    runs = df.groupby("label").run.nunique()  # a row pooling several seeds says how many: "dpok [3 runs]"
    names = [f"{label} [{runs[label]} runs]" if runs.get(label, 1) > 1 and not label.startswith(PRETRAINED) else label
             for label in labels]  # fmt: skip
    table = pd.DataFrame(rows, index=pd.Index(names, name="method"), columns=columns)
    return table.astype({c: int for c in columns if c[2] == "n"})


def build_change_table(
    run_dirs: Sequence[str | Path],
    splits: Sequence[str] | None = None,
    scorers: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Change over the pretrained model, one row per run and one pooled row per label: the table of a seed study.

    A run's cell is the paired change (its final LoRA minus the pretrained model on the same prompt and evaluation
    seed) with a bootstrap interval over those pairs. Each run is paired with its own step-0 rows, so runs trained
    on different prompts are each compared with the pretrained model on their own prompts. A label's pooled row
    (``label [N runs]``) resamples runs, then the (prompt, seed) pairs, one draw shared by the drawn runs where they
    were scored on the same pairs (``cluster_bootstrap_ci``). Rows are ``label seed S``, sorted by seed, then the
    pooled row; columns as in ``build_table``.
    """
    runs = sorted_runs(run_dirs)
    configs = read_configs(runs)
    labels = run_labels(configs)
    diffs: dict[tuple[str, str, str], np.ndarray] = {}  # (run, scorer, split) -> paired differences
    pairs: dict[tuple[str, str, str], list] = {}  # the same key -> the (prompt, seed) of each difference
    for d in runs:
        path = d / "eval.parquet"
        if not path.is_file():
            raise BenchError(f"{d} has no eval.parquet; run `bench eval {d}` first")
        df = pd.read_parquet(path, columns=EVAL_COLUMNS)
        df = df[df.value.notna()]
        for (scorer, split), part in df.groupby(["scorer", "split"]):
            joined = paired_steps(part, df.step.max())
            diffs[(d.name, scorer, split)] = (joined.tuned - joined.base).to_numpy()
            pairs[(d.name, scorer, split)] = list(joined.index)
    scorers = list(scorers) if scorers else sorted({k[1] for k in diffs} - label_scorers({k[1] for k in diffs}))
    splits = list(splits) if splits else sorted({k[2] for k in diffs})
    columns = pd.MultiIndex.from_tuples(
        [(sc, sp, st) for sc in scorers for sp in splits for st in STATS], names=["scorer", "split", "stat"]
    )
    names, rows = [], []

    def add(name: str, members: list[str]) -> None:
        row = []
        for sc in scorers:
            for sp in splits:
                have = [(m, sc, sp) for m in members if (m, sc, sp) in diffs]
                clusters, keys = [diffs[k] for k in have], [pairs[k] for k in have]
                ci = cluster_bootstrap_ci(clusters, n_boot=n_boot, seed=seed, keys=keys)
                row += [*ci, sum(len(c) for c in clusters)]
        names.append(name)
        rows.append(row)

    for label in sorted(set(labels.values())):
        members = sorted((m for m in labels if labels[m] == label), key=lambda m: (configs[m].get("seed", 0), m))
        for m in members:
            add(f"{label} seed {configs[m].get('seed', '?')}", [m])
        if len(members) > 1:
            add(f"{label} [{len(members)} runs]", members)
    table = pd.DataFrame(rows, index=pd.Index(names, name="method"), columns=columns)
    return table.astype({c: int for c in columns if c[2] == "n"})


def _cell(table: pd.DataFrame, label: str, scorer: str, split: str, digits: int) -> str:
    mean, lo, hi, n = (table.loc[label, (scorer, split, st)] for st in STATS)
    if n == 0:
        return "-"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _groups(table: pd.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys((sc, sp) for sc, sp, _ in table.columns))


def to_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """GitHub Markdown; column headers read ``scorer (split)``."""
    groups = _groups(table)
    head = ["method", *(f"{sc} ({sp})" for sc, sp in groups)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", *["---:"] * len(groups)]) + "|"]
    for label in table.index:
        cells = [label.replace("|", "\\|"), *(_cell(table, label, sc, sp, digits) for sc, sp in groups)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def to_latex(table: pd.DataFrame, digits: int = 3) -> str:
    """A booktabs ``tabular``: scorers as multicolumn headers, splits below them, cells ``mean [lo, hi]``."""
    groups = _groups(table)
    scorers = list(dict.fromkeys(sc for sc, _ in groups))
    top = " & ".join(rf"\multicolumn{{{sum(g[0] == sc for g in groups)}}}{{c}}{{{latex_escape(sc)}}}" for sc in scorers)
    rules, start = [], 2
    for sc in scorers:  # a cmidrule under each scorer's span
        width = sum(g[0] == sc for g in groups)
        rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    lines = [
        rf"\begin{{tabular}}{{l{'r' * len(groups)}}}",
        r"\toprule",
        f" & {top} \\\\",
        " ".join(rules),
        "method & " + " & ".join(latex_escape(sp) for _, sp in groups) + r" \\",
        r"\midrule",
    ]
    for label in table.index:
        cells = [_cell(table, label, sc, sp, digits) for sc, sp in groups]
        lines.append(" & ".join([latex_escape(label), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(table: pd.DataFrame) -> str:
    """Flat CSV, one column per ``scorer/split/stat``, numbers at full precision (``%.10g``)."""
    flat = table.copy()
    flat.columns = ["/".join(c) for c in table.columns]
    return flat.to_csv(float_format="%.10g", lineterminator="\n")


def to_html(table: pd.DataFrame, digits: int = 3) -> str:
    """An HTML ``<table>`` with the same cells as the Markdown table (for the report)."""
    groups = _groups(table)
    head = "".join(f"<th>{html.escape(sc)}<br><small>{html.escape(sp)}</small></th>" for sc, sp in groups)
    body = "".join(
        "<tr><th>" + html.escape(label) + "</th>"
        + "".join(f"<td>{_cell(table, label, sc, sp, digits)}</td>" for sc, sp in groups) + "</tr>"
        for label in table.index
    )  # fmt: skip
    return f'<table class="results"><thead><tr><th>method</th>{head}</tr></thead><tbody>{body}</tbody></table>'


RENDERERS = {"md": to_markdown, "latex": to_latex, "csv": to_csv, "html": to_html}


def render(table: pd.DataFrame, fmt: str) -> str:
    """Render with the renderer named ``fmt`` (md, latex, csv, html).

    Raises:
        ValueError: unknown format.
    """
    if fmt not in RENDERERS:
        raise ValueError(f"unknown table format {fmt!r}; known: {', '.join(RENDERERS)}")
    return RENDERERS[fmt](table)
