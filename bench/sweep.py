"""`bench sweep GRID.yaml`: a grid of ordinary runs, each in a folder with a stable name, resumable cell by cell.

A grid file names a study folder, the run options every cell shares, the axes to cross and how to evaluate::

    name: shapes-demo                 # results/<name>/ unless `root` says otherwise
    run: {method: dpok, beta: 0.01, prompts: "four squares", steps: 100}
    axes: {reward: [shapes-reward, shapes-oracle], seed: [0, 1, 2, 3, 4]}
    eval: {samples: 256}              # `bench eval` options; omit to train only

Run options are `bench run` options without the dashes (a method option such as ``beta`` too); ``set`` takes a
list of ``section.key=value`` overrides. Cell folders are named from their axis values (``reward-shapes-oracle_seed-3``)
and hold one run folder. A cell is *done* when its run has trained every round and has ``eval.parquet``; a cell
whose run stopped part way is resumed from its checkpoint (``bench run --resume``), so a sweep stopped at any point
continues where it was. Cells run one after another in this process's machine, each a `bench` subprocess.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.errors import BenchError

STATES = ("done", "trained", "partial", "missing")


@dataclass
class Grid:
    name: str
    root: Path
    run: dict
    axes: dict[str, list]
    eval: dict | None = None
    path: Path | None = None


@dataclass
class Cell:
    name: str
    options: dict  # the run options of this cell: the grid's shared ones with its axis values
    folder: Path
    values: dict = field(default_factory=dict)


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"grid file {path} not found")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - {"name", "root", "run", "axes", "eval"}
    if unknown:
        raise BenchError(f"{path}: unknown keys {sorted(unknown)} (name, root, run, axes, eval)")
    if not data.get("name"):
        raise BenchError(f"{path}: a grid needs a name")
    axes = data.get("axes") or {}
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise BenchError(f"{path}: axis {key!r} needs a non-empty list of values")
    root = Path(data.get("root") or Path("results") / data["name"])
    return Grid(data["name"], root, dict(data.get("run") or {}), axes, data.get("eval"), path)


def _slug(value) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in str(value)).strip("-")


def cells(grid: Grid) -> list[Cell]:
    """Every combination of the axes, in the order the axes are written (the last one varies fastest)."""
    keys = list(grid.axes)
    out = []
    for combo in itertools.product(*(grid.axes[k] for k in keys)) if keys else [()]:
        values = dict(zip(keys, combo, strict=True))
        name = "_".join(f"{_slug(k)}-{_slug(v)}" for k, v in values.items()) or "run"
        out.append(Cell(name, {**grid.run, **values}, grid.root / name, values))
    return out


def run_folder(cell: Cell) -> Path | None:
    """The run folder inside a cell's folder (None before the run starts)."""
    runs = sorted(p for p in cell.folder.glob("*") if (p / "config.yaml").is_file()) if cell.folder.is_dir() else []
    if len(runs) > 1:
        raise BenchError(f"{cell.folder} holds {len(runs)} runs; a sweep cell holds one")
    return runs[0] if runs else None


def _rounds_done(run: Path) -> tuple[int, int]:
    steps = int(yaml.safe_load((run / "config.yaml").read_text())["steps"])
    log = run / "train.jsonl"
    rows = log.read_text().splitlines() if log.is_file() else []
    done = json.loads(rows[-1]).get("round", 0) if rows else 0
    return int(done), steps


def state(cell: Cell, grid: Grid) -> str:
    """One of STATES: done (trained and evaluated, or trained when the grid has no eval), trained, partial, missing."""
    run = run_folder(cell)
    if run is None:
        return "missing"
    done, steps = _rounds_done(run)
    if done < steps:
        return "partial"
    if grid.eval and not (run / "eval.parquet").is_file():
        return "trained"
    return "done"


COMMON_OPTIONS = {"method", "model", "prompts", "reward", "steps", "seed", "config", "plugin", "allow_download"}


def _option_args(options: dict, command: str = "run") -> list[str]:
    """``bench run`` arguments: its own options as flags, other RunConfig fields as ``--set``, the rest as method
    options (``beta`` -> ``--beta``)."""
    import dataclasses

    from bench.config import RunConfig

    settings = {f.name for f in dataclasses.fields(RunConfig)} - COMMON_OPTIONS
    args = []
    for key, value in options.items():
        if key == "set":
            for item in value if isinstance(value, list) else [value]:
                args += ["--set", str(item)]
        elif command == "run" and key in settings:
            args += ["--set", f"{key}={value}"]
        elif value is True:
            args += [f"--{key.replace('_', '-')}"]
        else:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def _bench(args: list[str], echo) -> None:
    echo("$ bench " + " ".join(args))
    done = subprocess.run([sys.executable, "-m", "bench.cli", *args], check=False)
    if done.returncode:
        raise BenchError(f"`bench {' '.join(args)}` failed with exit code {done.returncode}")


def run_cell(cell: Cell, grid: Grid, echo=print) -> None:
    """Bring one cell to done: start, resume or only evaluate its run."""
    current = state(cell, grid)
    if current == "missing":
        cell.folder.mkdir(parents=True, exist_ok=True)
        _bench(["run", *_option_args(cell.options), "--results-dir", str(cell.folder)], echo)
    elif current == "partial":
        _bench(["run", "--resume", str(run_folder(cell))], echo)
    if grid.eval and state(cell, grid) == "trained":
        _bench(["eval", str(run_folder(cell)), *_option_args(grid.eval, "eval")], echo)


def status_lines(grid: Grid) -> list[str]:
    """One line per cell: its state and folder."""
    return [f"{state(c, grid):8s} {c.folder}" for c in cells(grid)]


def run_grid(grid: Grid, echo=print) -> None:
    """Every cell that is not done, in order; done cells are skipped."""
    todo = [c for c in cells(grid) if state(c, grid) != "done"]
    echo(f"{grid.name}: {len(cells(grid)) - len(todo)} of {len(cells(grid))} cells done; running {len(todo)}")
    for k, cell in enumerate(todo, 1):
        echo(f"[{k}/{len(todo)}] {cell.name}")
        run_cell(cell, grid, echo)
