"""`bench sweep GRID.yaml`: a grid of ordinary runs, each in a folder with a stable name, resumable cell by cell.

A grid file names a study folder, the run options every cell shares, the axes to cross and how to evaluate::

    name: shapes-demo                 # results/<name>/ unless `root` says otherwise
    run: {method: dpok, beta: 0.01, prompts: "four squares", steps: 100}
    axes: {reward: [shapes-reward, shapes-oracle], seed: [0, 1, 2, 3, 4]}
    eval: {samples: 256}              # `bench eval` options; omit to train only

Run options are `bench run` options without the dashes (a method option such as ``beta`` too); ``set`` takes a
list of ``section.key=value`` overrides. An axis value may be a *variant*, a mapping of options that change
together, named by its ``name`` key: ``recipe: [{name: r32, samples_per_round: 32, buffer_size: 640}, ...]``.
Cell folders are named from their axis values (``reward-shapes-oracle_seed-3``) and hold one run folder. A cell
is *done* when its run has trained every round and has ``eval.parquet``; a cell whose run stopped part way is
resumed from its checkpoint (``bench run --resume``), so a sweep stopped at any point continues where it was. Cells
run one after another on this machine, each a `bench` subprocess whose output goes to the cell's ``sweep.log``;
``--status`` says which cells are done, running, failed (with the last error line), trained (not yet evaluated),
partial or missing.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.errors import BenchError

STATES = ("done", "running", "failed", "trained", "partial", "missing")
LOG, FAILED, RUNNING = "sweep.log", "sweep.failed", "sweep.running"  # in each cell's folder


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
        if any(isinstance(v, dict) and not v.get("name") for v in values):
            raise BenchError(f"{path}: axis {key!r}: a variant (a mapping of options) needs a name")
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
        options = dict(grid.run)
        for key, value in values.items():  # a mapping is a variant: several options that change together
            options.update({k: v for k, v in value.items() if k != "name"} if isinstance(value, dict) else {key: value})
        label = {k: v["name"] if isinstance(v, dict) else v for k, v in values.items()}
        name = "_".join(f"{_slug(k)}-{_slug(v)}" for k, v in label.items()) or "run"
        out.append(Cell(name, options, grid.root / name, label))
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


def _alive(pid_file: Path) -> bool:
    """Whether another live process wrote ``pid_file`` (this process's own cell is not 'running' to itself)."""
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return pid != os.getpid()


def state(cell: Cell, grid: Grid) -> str:
    """One of STATES: done (trained and evaluated, or trained when the grid has no eval), running (a sweep process
    is on it now), failed (its last command exited with an error; ``failure`` says how), trained, partial, missing."""
    if (cell.folder / RUNNING).is_file() and _alive(cell.folder / RUNNING):
        return "running"
    run = run_folder(cell)
    if run is not None and _rounds_done(run)[0] >= _rounds_done(run)[1]:
        if not grid.eval or (run / "eval.parquet").is_file():
            return "done"
    if (cell.folder / FAILED).is_file():
        return "failed"
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


def _bench(args: list[str], cell: Cell, echo) -> None:
    """Run ``bench ARGS`` for a cell, its output appended to the cell's sweep.log; a failure is recorded in
    sweep.failed (the command and its last output line) for ``--status``."""
    echo("$ bench " + " ".join(args))
    with open(cell.folder / LOG, "a") as log:
        log.write(f"$ bench {' '.join(args)}\n")
        log.flush()
        done = subprocess.run([sys.executable, "-m", "bench.cli", *args], stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        lines = [line for line in (cell.folder / LOG).read_text().splitlines() if line.strip()]
        last = lines[-1].split("\r")[-1].strip() if lines else ""
        (cell.folder / FAILED).write_text(f"exit {done.returncode}: {last}\n")
        raise BenchError(f"`bench {' '.join(args)}` failed with exit code {done.returncode}: {last}")


def failure(cell: Cell) -> str:
    """The recorded failure of a cell's last command ('' when none)."""
    path = cell.folder / FAILED
    return path.read_text().strip() if path.is_file() else ""


def run_cell(cell: Cell, grid: Grid, echo=print) -> None:
    """Bring one cell to done: start, resume or only evaluate its run (a failed cell is retried from its state)."""
    cell.folder.mkdir(parents=True, exist_ok=True)
    (cell.folder / FAILED).unlink(missing_ok=True)
    (cell.folder / RUNNING).write_text(f"{os.getpid()}\n")
    try:
        current = state(cell, grid)
        if current == "missing":
            _bench(["run", *_option_args(cell.options), "--results-dir", str(cell.folder)], cell, echo)
        elif current == "partial":
            _bench(["run", "--resume", str(run_folder(cell))], cell, echo)
        if grid.eval and state(cell, grid) == "trained":
            _bench(["eval", str(run_folder(cell)), *_option_args(grid.eval, "eval")], cell, echo)
    finally:
        (cell.folder / RUNNING).unlink(missing_ok=True)


def status_lines(grid: Grid) -> list[str]:
    """One line per cell: its state and folder, and for a failed cell its last error line."""
    lines = []
    for c in cells(grid):
        current = state(c, grid)
        lines.append(f"{current:8s} {c.folder}" + (f"  ({failure(c)})" if current == "failed" else ""))
    return lines


def run_grid(grid: Grid, echo=print) -> None:
    """Every cell that is not done (or run by another sweep process now), in order; a failed cell stops the sweep
    with its error, after recording it for ``--status``."""
    todo = [c for c in cells(grid) if state(c, grid) not in ("done", "running")]
    echo(
        f"{grid.name}: {len(cells(grid)) - len(todo)} of {len(cells(grid))} cells done or running; running {len(todo)}"
    )
    for k, cell in enumerate(todo, 1):
        echo(f"[{k}/{len(todo)}] {cell.name} (output: {cell.folder / LOG})")
        run_cell(cell, grid, echo)
