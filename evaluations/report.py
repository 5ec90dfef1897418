"""One static HTML page per set of runs: the results tables, the figures, and sample grids per prompt and method.

The page references its images by relative path inside ``<stem>_files/`` next to the HTML file (figures are drawn
there, grids are copied there), so the output folder can be moved or served as is. A small inline script records,
on the ``<body>`` element, how many images loaded and whether any script or resource error fired; the report test
reads these back from headless Chromium, and they are harmless to a human reader.
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bench.evaluations.plots import make_plots
from bench.evaluations.runs import PRETRAINED, load_eval, sorted_runs
from bench.evaluations.tables import build_table, to_html
from bench.results import write_text

CHECK_SCRIPT = """
window.reportErrors = [];
window.addEventListener("error", (e) => {
  window.reportErrors.push(String(e.message || (e.target && (e.target.src || e.target.href)) || "error"));
}, true);  // capture: resource errors do not bubble
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const bad = images.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.getAttribute("src"));
  const d = document.body.dataset;
  d.images = images.length;
  d.imagesBroken = bad.length;
  d.brokenSrc = bad.join(" ");
  d.tables = document.querySelectorAll("table.results").length;
  d.errors = window.reportErrors.length;
  d.checked = "yes";
});
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table.results { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
table.results th, table.results td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
table.results tbody th { text-align: left; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 100%; image-rendering: pixelated; }
.plots img { max-width: 48em; }
.grid img { width: 32em; }
"""


def slug(prompt: str) -> str:
    """The file stem ``bench eval`` gives a prompt's grid (see ``bench.evaluate.run_evaluation``)."""
    return "".join(c if c.isalnum() else "_" for c in prompt)[:60]


def grid_sources(evals: pd.DataFrame, run_dirs: Sequence[Path]) -> dict[tuple[str, str], list[tuple[str, Path]]]:
    """(split, prompt) -> [(caption, grid path)] for every label that has a grid, pretrained first."""
    folders = {d.name: d for d in run_dirs}
    shown = evals[["label", "run", "step", "split", "prompt"]].drop_duplicates()
    shown = shown.sort_values(["split", "prompt", "label", "run"], key=_pretrained_first, kind="stable")
    out: dict[tuple[str, str], list[tuple[str, Path]]] = {}
    for row in shown.itertuples():
        path = folders[row.run] / "samples" / f"step{row.step}" / f"{row.split}-{slug(row.prompt)}.png"
        if path.is_file():
            caption = row.label if row.label.startswith(PRETRAINED) else f"{row.label} · {row.run}"
            out.setdefault((row.split, row.prompt), []).append((caption, path))
    return out


def _pretrained_first(column: pd.Series) -> pd.Series:
    # sort key: the pretrained rows lead each prompt's grids, then methods alphabetically
    return column.map(lambda s: ("0" if s.startswith(PRETRAINED) else "1") + s) if column.name == "label" else column


def _img(src: str, alt: str, caption: str) -> str:
    return (f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")  # fmt: skip


def write_report(run_dirs: Sequence[str | Path], out_html: str | Path, n_boot: int = 2000) -> Path:
    """Write the report page and its ``<stem>_files/`` folder (replaced if present); returns the page path.

    Raises:
        BenchError: a folder has no config.yaml or no eval.parquet.
    """
    out_html = Path(out_html)
    runs = sorted_runs(run_dirs)
    assets = out_html.parent / f"{out_html.stem}_files"
    if assets.is_dir():
        shutil.rmtree(assets)  # only the folder this function owns: stale grids of a removed run must go
    table, evals = build_table(runs, n_boot=n_boot), load_eval(runs)
    parts = [f"<h1>Results: {len(runs)} runs</h1>", "<p>Runs: " + ", ".join(html.escape(d.name) for d in runs) + "</p>"]
    parts.append(
        "<h2>Tables</h2><p>Mean [95% bootstrap interval] over samples; a row pooling N training runs (seeds) "
        "resamples the runs, then the samples (one draw of the evaluation seeds for all drawn runs where they "
        "share them).</p>"
    )
    for split in dict.fromkeys(table.columns.get_level_values("split")):
        parts.append(
            f"<h3>{html.escape(split)}</h3>" + to_html(table.loc[:, table.columns.get_level_values(1) == split])
        )
    parts.append('<h2>Figures</h2><div class="plots">')
    for path in make_plots(runs, assets / "plots"):
        parts.append(_img(path.relative_to(out_html.parent).as_posix(), path.stem, path.stem.replace("_", " ")))
    parts.append("</div><h2>Samples</h2>")
    for (split, prompt), grids in grid_sources(evals, runs).items():
        parts.append(f'<h3>{html.escape(prompt)} <small>({html.escape(split)})</small></h3><div class="grid">')
        for i, (caption, source) in enumerate(grids):
            target = assets / "grids" / f"{split}-{slug(prompt)}-{i}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            parts.append(_img(target.relative_to(out_html.parent).as_posix(), f"{prompt}: {caption}", caption))
        parts.append("</div>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>dpok-bench report</title>'
        f"<style>{STYLE}</style><script>{CHECK_SCRIPT}</script></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
    write_text(out_html, page)
    return out_html
