"""`bench paper [--quick] [--tables-only]`: the DPOK paper's experiments on the shapes world, from grid files.

Every ``configs/paper/shapes-*.yaml`` is an ordinary `bench sweep` grid (bench/sweep.py); its cells go to
``results/paper/<study>/`` (``results/paper-quick/`` with ``--quick``, which applies each grid's ``quick`` section:
smaller budgets, fewer seeds). Then the tables and figures are rebuilt from the run folders alone, so
``--tables-only`` on committed run summaries gives the same bytes:

A grid's tables follow the last part of its name (``paper-table1``, ``paper-sd15-table1``: Table 1):

- ``table1`` (Sec. 5.2): one table per family prompt, every arm beside the pretrained model on that prompt; and
  the bias table of the same LoRAs on the bias prompts (every ``eval`` call after the first: one column per scorer
  and split).
- ``table2`` (Sec. 5.5): DPOK on the train split, scored on every split it was evaluated on.
- ``kl`` (Sec. 5.3): the final scores per beta, the final rollout KL, the scores at every snapshot (table, and
  a figure against training samples), and gold against proxy along training (the over-optimisation curve).
- any other grid: one table of all its cells.

Rows are labelled by the cells' axis values (seed and prompt left out), so an arm reads as the grid names it.
Intervals resample runs, then images (evaluations.tables). ``runs.md`` lists per arm its seeds, wall time and
commits. Every output of a quick build says so in its first line.
"""

from __future__ import annotations

import glob
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from bench.evaluations.bias import bias_from_eval
from bench.evaluations.runs import (
    EVAL_COLUMNS,
    PRETRAINED,
    label_scorers,
    load_eval,
    load_training,
    run_clusters,
    update_rounds,
)
from bench.evaluations.tables import STATS, build_table, to_csv, to_latex, to_markdown
from bench.stats import cluster_bootstrap_ci
from bench.sweep import (
    Cell,
    Grid,
    cell_states,
    cells,
    eval_split,
    load_grid,
    run_folder,
    run_grid,
    state,
    status_lines,
)

GRIDS = "configs/paper/shapes-*.yaml"
SPLIT_AXES = ("seed", "prompt")  # axes that a row pools (seeds) or that a table is split by (prompts)
QUICK_NOTE = "Quick check (`bench paper --quick`): small budgets and one seed; not the paper's protocol."
N_BOOT = 2000


def study_name(grid: Grid) -> str:
    return grid.name.removeprefix("paper-")


def load_grids(pattern: str, out: Path, quick: bool) -> list[Grid]:
    """The paper's grids, each rooted at ``out/<study>``."""
    files = sorted(glob.glob(pattern))
    if not files:
        raise BenchError(f"no grid files match {pattern}")
    names = {f: load_grid(f).name for f in files}
    grids = [load_grid(f, quick=quick, root=out / names[f].removeprefix("paper-")) for f in files]
    names = [g.name for g in grids]
    if len(set(names)) < len(names):
        raise BenchError(f"{pattern}: two grids share a name ({', '.join(sorted(names))}); each needs its own")
    return grids


def done_cells(grid: Grid) -> list[tuple[Cell, Path]]:
    return [(c, run_folder(c)) for c in cells(grid) if state(c, grid) == "done"]


def finished(grid: Grid) -> tuple[list[tuple[Cell, Path]], dict[str, str]]:
    """The grid's done cells with their run folders, and each run's row label."""
    done = done_cells(grid)
    return done, {run.name: arm_label(c) for c, run in done}


def arm_label(cell: Cell) -> str:
    """The row label of a cell: its axis values but seed and prompt (``dpok``, ``beta=0.01``)."""
    parts = [(k, v) for k, v in cell.values.items() if k not in SPLIT_AXES]
    if len(parts) == 1 and parts[0][0] == "arm":
        return str(parts[0][1])
    shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in parts)
    return shown or str(cell.options.get("method", "run"))


def _write(out: Path, stem: str, table: pd.DataFrame, title: str, quick: bool) -> list[Path]:
    """A table as Markdown (with its title), CSV and LaTeX."""
    out.mkdir(parents=True, exist_ok=True)
    head = (f"{QUICK_NOTE}\n\n" if quick else "") + f"{title}\n\n"
    files = {f"{stem}.md": head + to_markdown(table), f"{stem}.csv": to_csv(table), f"{stem}.tex": to_latex(table)}
    if quick:
        files[f"{stem}.csv"] = f"# {QUICK_NOTE}\n" + files[f"{stem}.csv"]
        files[f"{stem}.tex"] = f"% {QUICK_NOTE}\n" + files[f"{stem}.tex"]
    paths = []
    for name, text in files.items():
        (out / name).write_text(text if text.endswith("\n") else text + "\n")
        paths.append(out / name)
    return paths


def _eval_scorers(grid: Grid, k: int = 0) -> list[str] | None:
    scorers = grid.eval[k].get("scorers") if len(grid.eval) > k else None
    return [s.strip() for s in str(scorers).split(",")] if scorers else None


def _eval_split(grid: Grid, k: int) -> str:
    return eval_split(grid.eval[k])


def _prompt_of(cell: Cell) -> str:
    return str(cell.options.get("prompts", ""))


def _family(cell: Cell) -> str:
    value = cell.values.get("prompt", "")
    return str(value) if value else _prompt_of(cell)


def table1(grid: Grid, out: Path, quick: bool) -> list[Path]:
    done, labels = finished(grid)
    written = []
    families = list(dict.fromkeys(_family(c) for c, _ in done))
    for family in families:
        runs = [run for c, run in done if _family(c) == family]
        prompt = next(_prompt_of(c) for c, _ in done if _family(c) == family)
        table = build_table(runs, splits=[_eval_split(grid, 0)], scorers=_eval_scorers(grid), n_boot=N_BOOT,
                            labels=labels)  # fmt: skip
        title = f"Table 1, {family}: '{prompt}', one LoRA per prompt; mean [95% interval: runs, then images]"
        written += _write(out / "tables", f"table1-{family}", table, title, quick)
    if len(grid.eval) > 1:
        written += bias_table(grid, [run for _, run in done], labels, out, quick)
    return written


def bias_table(grid: Grid, runs: list[Path], labels: dict, out: Path, quick: bool) -> list[Path]:
    """Scores on the bias prompts of every eval call after the first (the stereotype rate, oversaturation) and, per
    category scorer, the total variation distance of its categories from uniform per prompt (0: no preference),
    with an interval that resamples runs, then prompts (one draw of prompts shared by the drawn runs). One column
    per scorer and split."""
    evals = load_eval(runs, labels)
    calls, scored = {}, set(evals.split)  # split -> the scorers its call asked for (all it scored when it names none)
    for k in range(1, len(grid.eval)):
        split = _eval_split(grid, k)
        if split in scored:
            calls[split] = _eval_scorers(grid, k) or sorted(set(evals[evals.split == split].scorer))
    if not calls:
        return []
    splits = list(calls)
    asked = {(scorer, split) for split, scorers in calls.items() for scorer in scorers}
    categorical = sorted(label_scorers(set(evals.scorer)))
    scores = [s for s in dict.fromkeys(s for scorers in calls.values() for s in scorers) if s not in categorical]
    table = build_table(runs, splits=splits, scorers=scores, n_boot=N_BOOT, labels=labels)
    table = table[[c for c in table.columns if (c[0], c[1]) in asked]]  # a scorer only in its own call's split
    known = set(evals.label)  # a row pooling runs reads "label [N runs]" (build_table)
    bare = [name if name in known else name.rsplit(" [", 1)[0] for name in table.index]
    for split in splits:
        for scorer in (c for c in categorical if c in calls[split]):
            bias = bias_from_eval(evals[evals.split == split], scorer).dropna(subset=["tv_bias"])
            cells = []
            for label in bare:
                part = bias[bias.label == label]
                clusters, keys = run_clusters([g for _, g in part.groupby("run")], "tv_bias", ("prompt",))
                cells.append([*cluster_bootstrap_ci(clusters, n_boot=N_BOOT, seed=0, keys=keys), int(len(part))])
            for k, stat in enumerate(("mean", "lo", "hi", "n")):
                table[(f"{scorer} tv-bias", split, stat)] = [c[k] for c in cells]
    table = table.astype({c: int for c in table.columns if c[2] == "n"})
    where = ", ".join(f"'{s}'" for s in splits)
    title = (
        f"Bias and oversaturation on {where} before and after, per arm (Table 1's LoRAs); tv-bias: distance "
        "of a category scorer's categories from uniform per prompt, mean [95% interval: runs, then prompts]"
    )
    return _write(out / "tables", "bias", table, title, quick)


def table2(grid: Grid, out: Path, quick: bool) -> list[Path]:
    done, labels = finished(grid)
    splits = [_eval_split(grid, k) for k in range(len(grid.eval))]
    table = build_table([run for _, run in done], splits=splits, scorers=_eval_scorers(grid), n_boot=N_BOOT,
                        labels=labels)  # fmt: skip
    title = f"Table 2, multi-prompt: trained on '{grid.run.get('prompts')}', scored on {', '.join(splits)}"
    return _write(out / "tables", "table2", table, title, quick)


def final_kl(runs: list[Path], labels: dict, last: int = 10) -> pd.DataFrame:
    """Per label: the rollout KL of the last ``last`` rounds, mean over runs, with its runs' min and max."""
    train = load_training(runs)
    key = "kl_rollout" if "kl_rollout" in train else "kl"
    rows = []
    for run, part in train.groupby("run"):
        tail = part[part["round"] > part["round"].max() - last]
        rows.append({"label": labels.get(run, run), "run": run, "kl": float(tail[key].mean())})
    df = pd.DataFrame(rows)
    summary = df.groupby("label").kl.agg(["mean", "min", "max", "count"]).reset_index()
    return summary.rename(columns={"count": "runs"})


def snapshot_table(runs: list[Path], labels: dict, scorers: list[str] | None, split: str) -> pd.DataFrame:
    """Scores at every evaluated point of training (the pretrained model, each snapshot, the final LoRA), in
    ``build_table``'s layout: one row per label and training round (``beta=0, round 50 [3 runs]``), the interval
    resampling runs, then images. The pretrained row counts each image once (every run re-scores the same model on
    the same seeds)."""
    frames = []
    for run in runs:
        df = pd.read_parquet(run / "eval.parquet", columns=EVAL_COLUMNS)
        df = df[(df.split == split) & df.value.notna()]
        rounds = update_rounds(run)
        df["round"] = [0 if s == 0 else int(rounds.get(s, s)) for s in df.step]
        df["run"], df["label"] = run.name, labels.get(run.name, run.name)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    scorers = scorers or sorted(set(df.scorer) - label_scorers(set(df.scorer)))
    df = df[df.scorer.isin(scorers)]
    base = df[df["round"] == 0].drop_duplicates(["prompt", "seed", "scorer", "scorer_version"])
    groups = {PRETRAINED: {sc: [part] for sc, part in base.groupby("scorer")}}
    tuned = df[df["round"] > 0]
    for (label, rnd), part in sorted(tuned.groupby(["label", "round"]), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        n = part.run.nunique()
        name = f"{label}, round {rnd}" + (f" [{n} runs]" if n > 1 else "")
        groups[name] = {sc: [r for _, r in p.groupby("run")] for sc, p in part.groupby("scorer")}
    columns = pd.MultiIndex.from_tuples([(sc, split, st) for sc in scorers for st in STATS],
                                        names=["scorer", "split", "stat"])  # fmt: skip
    rows = []
    for clusters in groups.values():
        row = []
        for sc in scorers:
            values, keys = run_clusters(clusters.get(sc, []))  # one frame per run
            row += [*cluster_bootstrap_ci(values, n_boot=N_BOOT, seed=0, keys=keys), sum(len(v) for v in values)]
        rows.append(row)
    table = pd.DataFrame(rows, index=pd.Index(list(groups), name="method"), columns=columns)
    return table.astype({c: int for c in columns if c[2] == "n"})


def kl_study(grid: Grid, out: Path, quick: bool) -> list[Path]:
    from bench.evaluations.plots import measures, plot_curves, plot_gold_vs_proxy, snapshot_curves

    done, labels = finished(grid)
    runs = [run for _, run in done]
    table = build_table(runs, splits=[_eval_split(grid, 0)], scorers=_eval_scorers(grid), n_boot=N_BOOT,
                        labels=labels)  # fmt: skip
    written = _write(out / "tables", "kl", table, "KL ablation: final LoRA per beta", quick)
    kl = final_kl(runs, labels)
    lines = ([QUICK_NOTE, ""] if quick else []) + [
        "Final rollout KL per beta (mean of the last 10 rounds of train.jsonl; mean over runs, min and max)", "",
        "| arm | runs | KL mean | min | max |", "|---|---:|---:|---:|---:|",
        *[f"| {r.label} | {r.runs} | {r['mean']:.4f} | {r['min']:.4f} | {r['max']:.4f} |" for _, r in kl.iterrows()],
    ]  # fmt: skip
    (out / "tables" / "kl-final.md").write_text("\n".join(lines) + "\n")
    csv = kl.to_csv(index=False, float_format="%.6f", lineterminator="\n")
    (out / "tables" / "kl-final.csv").write_text((f"# {QUICK_NOTE}\n" if quick else "") + csv)
    written += [out / "tables" / "kl-final.md", out / "tables" / "kl-final.csv"]
    steps = snapshot_table(runs, labels, _eval_scorers(grid), _eval_split(grid, 0))
    title = "KL ablation: scores along training (pretrained, every snapshot, final LoRA) per beta"
    written += _write(out / "tables", "kl-steps", steps, title, quick)
    curves = snapshot_curves(runs, labels)
    evals_scored = set(curves.scorer) if not curves.empty else set()
    proxy, gold = measures(runs, evals_scored)
    for made in (
        plot_curves(curves, out / "plots" / "kl-curves.png", [m for m in (proxy, gold) if m], quick=quick),
        plot_gold_vs_proxy(curves, out / "plots" / "kl-gold-vs-proxy.png", proxy, gold, quick=quick),
    ):
        if made is not None:
            written.append(made)
    return written


def generic(grid: Grid, out: Path, quick: bool) -> list[Path]:
    done, labels = finished(grid)
    table = build_table([run for _, run in done], n_boot=N_BOOT, labels=labels)
    return _write(out / "tables", study_name(grid), table, f"{grid.name}: every cell", quick)


BUILDERS: dict[str, Callable[[Grid, Path, bool], list[Path]]] = {"table1": table1, "table2": table2, "kl": kl_study}


def builder(grid: Grid) -> Callable[[Grid, Path, bool], list[Path]]:
    """A grid's tables by the last part of its name: paper-table1 and paper-sd15-table1 both make Table 1."""
    return BUILDERS.get(grid.name.rsplit("-", 1)[-1], generic) if grid.name.startswith("paper-") else generic


def runs_table(grids: list[Grid], out: Path, quick: bool) -> Path:
    """Per study and arm: seeds done, wall time of training (timing.jsonl), and the commits the runs came from."""
    head = ["| study | arm | seeds | runs | training wall time (min) | commits |", "|---|---|---|---:|---:|---|"]
    lines = ([QUICK_NOTE, ""] if quick else []) + head
    total = 0.0
    for grid in grids:
        arms: dict[str, list[tuple[Cell, Path]]] = {}
        for cell, run in done_cells(grid):
            arms.setdefault(arm_label(cell), []).append((cell, run))
        for arm, members in arms.items():
            seeds = sorted({int(c.options.get("seed", 0)) for c, _ in members})
            wall = sum(_wall_s(run) for _, run in members)
            total += wall
            commits = sorted({_commit(run) for _, run in members})
            lines.append(f"| {study_name(grid)} | {arm} | {', '.join(map(str, seeds))} | {len(members)} | "
                         f"{wall / 60:.1f} | {', '.join(commits)} |")  # fmt: skip
    lines += ["", f"Training wall time of every run above: {total / 3600:.2f} h (evaluation not included)."]
    path = out / "tables" / "runs.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _wall_s(run: Path) -> float:
    """Training wall time from timing.jsonl, whose clock starts again at each resume: the sum of its segments."""
    path = run / "timing.jsonl"
    times = (
        [json.loads(line)["time_s"] for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    )
    total, last = 0.0, 0.0
    for t in times:
        if t < last:  # a resumed process started its clock at 0
            total += last
        last = t
    return total + last


def _commit(run: Path) -> str:
    path = run / "env.json"
    git = json.loads(path.read_text()).get("git") if path.is_file() else None
    return str(git)[:10] if git else "?"


def build_outputs(grids: list[Grid], out: Path, quick: bool) -> list[Path]:
    """Every table and figure of the grids' finished cells, from their run folders only (what an earlier build
    wrote into tables/ and plots/ is removed first, so the folder never mixes builds)."""
    import shutil

    for folder in ("tables", "plots"):
        shutil.rmtree(out / folder, ignore_errors=True)
    written = []
    for grid in grids:
        if not done_cells(grid):
            continue
        written += builder(grid)(grid, out, quick)
    written.append(runs_table(grids, out, quick))
    return written


def paper_status(pattern: str = GRIDS, out: str | Path | None = None, quick: bool = False) -> list[str]:
    """``bench sweep --status`` for each of the paper's grids where ``bench paper`` puts its cells: a heading with
    the counts of each state, then one line per cell."""
    lines = []
    for grid in load_grids(pattern, _out(out, quick), quick):
        states = cell_states(grid)
        counts = Counter(current for _, current in states)
        summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
        lines += [f"== {study_name(grid)} ({grid.root}): {len(states)} cells, {summary}", *status_lines(grid, states)]
    return lines


def _out(out: str | Path | None, quick: bool) -> Path:
    return Path(out or ("results/paper-quick" if quick else "results/paper"))


def run_paper(pattern: str = GRIDS, out: str | Path | None = None, quick: bool = False, tables_only: bool = False,
              executor: str = "local", jobs: int | None = None, echo=print) -> list[Path]:  # fmt: skip
    """Run the paper's grids (unless ``tables_only``), then write their tables and figures under ``out``."""
    out = _out(out, quick)
    grids = load_grids(pattern, out, quick)
    if quick and jobs is None and executor == "local":  # tiny cells spend most of their time starting up: one a core
        from bench.sweep import machine_cores

        jobs = machine_cores()
    failures = []
    if not tables_only:
        for grid in grids:
            try:
                run_grid(grid, echo=echo, executor=executor, jobs=jobs)
            except BenchError as exc:  # tables of what did finish are still written
                failures.append(str(exc))
    written = build_outputs(grids, out, quick)
    for path in written:
        echo(f"wrote {path}")
    if failures:
        raise BenchError("; ".join(failures))
    return written
