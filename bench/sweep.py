"""`bench sweep GRID.yaml`: a grid of ordinary runs, each in a folder with a stable name, resumable cell by cell.

A grid file names a study folder, the run options every cell shares, the axes to cross and how to evaluate::

    name: shapes-demo                 # results/<name>/ unless `root` says otherwise
    run: {method: dpok, beta: 0.01, prompts: "four squares", steps: 100}
    axes: {reward: [shapes-reward, shapes-oracle], seed: [0, 1, 2, 3, 4]}
    eval: {samples: 256}              # `bench eval` options; omit to train only, or a list: one call each
    quick: {run: {steps: 10}, eval: {samples: 32}, axes: {seed: [0]}}   # what --quick changes (optional;
                                      # its eval: a mapping for every call, or a list with one per call)

Run options are `bench run` options without the dashes (a method option such as ``beta`` too); ``set`` takes a
list of ``section.key=value`` overrides. An axis value may be a *variant*, a mapping of options that change
together, named by its ``name`` key: ``recipe: [{name: r32, samples_per_round: 32, buffer_size: 640}, ...]``.
Cell folders are named from their axis values (``reward-shapes-oracle_seed-3``) and hold one run folder. A cell
is *done* when its run has trained every round and ``eval.parquet`` holds every split the ``eval`` calls score
(a call's ``split``, else its ``prompts``, else ``train``, as `bench eval` names them); a cell whose run stopped part
way is resumed from its checkpoint (``bench run --resume``), so a sweep stopped at any point continues where it was.
Each cell is a `bench` subprocess whose output goes to the cell's ``sweep.log``; ``--status`` says which cells are done,
running, failed (with the last error line), trained (not yet evaluated), partial, missing, or stale: the cell holds a
run of other settings (or other model weights) than the grid now resolves to, which is neither counted as done nor
overwritten. A failed or stale cell does not stop the others; the sweep exits with an error that lists them once the
rest have run. ``--only AXIS=VALUE[,VALUE]`` (repeatable) runs part of a grid, e.g. one arm on every prompt first:
the same cells under the same names, so the rest of the grid runs later without redoing them.

Where the cells run (``--executor``):

- ``local`` (default): a pool of ``--jobs`` cells at a time on this machine (default: one per two cores), each
  run's torch threads set to the cores divided by the jobs, so the pool never oversubscribes the machine.
- ``slurm``: one array job of the cells through submitit, at most ``--jobs`` at a time; ``resources`` and
  ``resources.slurm`` of the grid file give its sbatch options. ``--dry-run`` prints the sbatch script instead.
- ``ray``: one Ray task per cell on the cluster at ``--ray-address`` (default: a local instance), with
  ``resources.cpus`` / ``resources.gpus`` per task.

Resources, all optional (each engine reads what it knows)::

    resources: {cpus: 8, gpus: 1, mem_gb: 32, timeout_min: 240, slurm: {partition: gpu, account: lab}}

Every engine runs the same :func:`run_cell` in the grid file's working folder, so run folders, skipping and
resuming do not depend on where a cell ran. Slurm and Ray nodes need the project installed at the same path.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.errors import BenchError

STATES = ("done", "running", "failed", "trained", "partial", "missing", "stale")
# Run settings that say where a run is kept and how it is watched, not what it trains: a cell's run may differ in
# these from what the grid asks for now and still count as the grid's.
BOOKKEEPING = frozenset({"results_dir", "model_path", "checkpoint_every", "allow_download", "log_with", "eval_scorers"})
EXECUTORS = ("local", "slurm", "ray")
LOG, FAILED, RUNNING = "sweep.log", "sweep.failed", "sweep.running"  # in each cell's folder


@dataclass
class Grid:
    name: str
    root: Path
    run: dict
    axes: dict[str, list]
    eval: list[dict] = field(default_factory=list)  # `bench eval` calls, one per split
    path: Path | None = None
    resources: dict = field(default_factory=dict)


@dataclass
class Cell:
    name: str
    options: dict  # the run options of this cell: the grid's shared ones with its axis values
    folder: Path
    values: dict = field(default_factory=dict)


def load_grid(path: str | Path, quick: bool = False, root: str | Path | None = None) -> Grid:
    """Read and check a grid file (see the module docstring). ``quick`` applies its ``quick`` section: run options
    and eval options merged over the grid's, axes replaced; ``root`` puts the cells elsewhere."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"grid file {path} not found")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - {"name", "root", "run", "axes", "eval", "resources", "quick"}
    if unknown:
        raise BenchError(f"{path}: unknown keys {sorted(unknown)} (name, root, run, axes, eval, resources, quick)")
    if not data.get("name"):
        raise BenchError(f"{path}: a grid needs a name")
    evals = data.get("eval")
    evals = [evals] if isinstance(evals, dict) else list(evals or [])
    if quick:
        fast = data.get("quick") or {}
        bad = set(fast) - {"run", "eval", "axes"}
        if bad:
            raise BenchError(f"{path}: quick: unknown keys {sorted(bad)} (run, eval, axes)")
        data["run"] = dict(data.get("run") or {}) | dict(fast.get("run") or {})
        data["axes"] = dict(data.get("axes") or {}) | dict(fast.get("axes") or {})
        fast_eval = fast.get("eval") or {}  # a mapping for every call, or a list: one per call
        if isinstance(fast_eval, list) and len(fast_eval) != len(evals):
            raise BenchError(f"{path}: quick: eval lists {len(fast_eval)} calls; the grid has {len(evals)}")
        evals = [e | dict(f or {}) for e, f in zip(evals, fast_eval if isinstance(fast_eval, list) else
                                                     [fast_eval] * len(evals), strict=True)]  # fmt: skip
    axes = data.get("axes") or {}
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise BenchError(f"{path}: axis {key!r} needs a non-empty list of values")
        if any(isinstance(v, dict) and not v.get("name") for v in values):
            raise BenchError(f"{path}: axis {key!r}: a variant (a mapping of options) needs a name")
    if not all(isinstance(e, dict) for e in evals):
        raise BenchError(f"{path}: eval takes `bench eval` options, or a list of them")
    splits = [eval_split(e) for e in evals]
    if len(set(splits)) < len(splits):  # a cell is done when each split is scored: two calls must differ in it
        raise BenchError(f"{path}: two eval calls write the same split ({', '.join(splits)}); give each a split")
    resources = dict(data.get("resources") or {})
    bad = set(resources) - RESOURCE_KEYS
    if bad:
        raise BenchError(f"{path}: unknown resources {sorted(bad)} ({', '.join(sorted(RESOURCE_KEYS))})")
    root = Path(root or data.get("root") or Path("results") / data["name"])
    return Grid(data["name"], root, dict(data.get("run") or {}), axes, evals, path, resources)


def restrict(grid: Grid, only: list[str] | None) -> Grid:
    """The grid with some axes cut to the values ``only`` names (``["arm=dpok,sft", "seed=0"]``): the cells of the
    result are the original grid's cells with those values, under the same names and folders, so a grid can be run
    in parts in any order. An axis value is named as in its cell folders (a variant by its ``name``)."""
    if not only:
        return grid
    axes = dict(grid.axes)
    for item in only:
        key, sep, names = item.partition("=")
        key = key.strip()
        if not sep or not names.strip():
            raise BenchError(f"--only {item!r}: write AXIS=VALUE[,VALUE...]")
        if key not in axes:
            raise BenchError(f"--only {item!r}: the grid has no axis {key!r} (axes: {', '.join(grid.axes) or 'none'})")
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        known = {str(v["name"] if isinstance(v, dict) else v): v for v in grid.axes[key]}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise BenchError(f"--only {item!r}: axis {key!r} has no value {', '.join(map(repr, unknown))} "
                             f"(values: {', '.join(known)})")  # fmt: skip
        axes[key] = [v for name, v in known.items() if name in wanted]  # in the grid's order
    return dataclasses.replace(grid, axes=axes)


def eval_split(options: dict) -> str:
    """The split a `bench eval` call with these options writes (its own rule: --split, else --prompts, else train)."""
    return str(options.get("split") or options.get("prompts") or "train")


def missing_evals(run: Path, grid: Grid) -> list[dict]:
    """The grid's eval calls whose split the run's eval.parquet does not hold yet."""
    if not grid.eval:
        return []
    path = run / "eval.parquet"
    if not path.is_file():
        return list(grid.eval)
    import pandas as pd

    have = set(pd.read_parquet(path, columns=["split"]).split)
    return [e for e in grid.eval if eval_split(e) not in have]


RESOURCE_KEYS = {"cpus", "gpus", "mem_gb", "timeout_min", "slurm"}


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


def _claim_text() -> str:
    return f"{socket.gethostname()} {os.getpid()}\n"


def _alive(pid_file: Path, grid: Grid | None = None) -> bool:
    """Whether another live process holds the cell. The file says ``host pid``: on this host the process is
    checked; a cell claimed on another host (a slurm or ray worker) counts as running until the grid's
    ``resources.timeout_min`` (default 240) has passed since the claim."""
    try:
        words = pid_file.read_text().split()
        host, pid = words[:2] if len(words) > 1 else (socket.gethostname(), words[0])  # older claims: a pid alone
        pid, age = int(pid), time.time() - pid_file.stat().st_mtime
    except (OSError, ValueError):
        return False
    if host != socket.gethostname():
        limit = float((grid.resources if grid else {}).get("timeout_min") or 240) * 60
        return age < limit
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def drift(cell: Cell, run: Path) -> dict[str, tuple]:
    """Where the run in a cell's folder differs from what the grid asks for now, as {setting: (the run's value,
    the grid's)}: its config.yaml against the cell's config as `bench run` would resolve it today (settings files
    included; BOOKKEEPING left out), and the weights' fingerprint in its env.json against the model's now. A setting
    only one side has is left out (a RunConfig field added since the run defaults to the old behaviour), and so are
    the weights of a run written before env.json recorded them or of a model not on this machine."""
    from bench.config import to_dict
    from bench.evaluations.runs import flatten, read_config, recorded_fingerprint
    from bench.resolve import resolve_model_path

    have = flatten(read_config(run))
    config = resolve_cell(cell)
    want = flatten(to_dict(config))
    out = {
        k: (have[k], want[k]) for k in sorted(have.keys() & want.keys()) if k not in BOOKKEEPING and have[k] != want[k]
    }
    recorded = recorded_fingerprint(run)
    if recorded:
        try:
            now = _fingerprint(resolve_model_path(config.world, config.model))
        except BenchError:  # the model is not on this machine (a hub name, weights elsewhere): nothing to compare
            now = None
        if now and now != recorded:
            out["model weights"] = (recorded[:8], now[:8])
    return out


@functools.lru_cache(maxsize=8)
def _fingerprint(model_path: str) -> str | None:
    """The weights fingerprint of a local model folder, read once per process (a sweep's model does not change)."""
    from bench.models import model_fingerprint

    return model_fingerprint(model_path, weights_only=True)


def describe_drift(changes: dict[str, tuple]) -> str:
    """``prompts: the run's 'a', the grid's 'b'; ...`` for a stale cell's status line and error."""
    return "; ".join(f"{k}: the run's {a!r}, the grid's {b!r}" for k, (a, b) in changes.items())


def state(cell: Cell, grid: Grid) -> str:
    """One of STATES: done (trained and evaluated, or trained when the grid has no eval), running (a sweep process
    is on it now), failed (its last command exited with an error; ``failure`` says how), trained, partial, missing,
    or stale: its folder holds a run of other settings or weights than the grid now asks for (``drift`` says which),
    which a sweep neither counts as done nor touches."""
    if (cell.folder / RUNNING).is_file() and _alive(cell.folder / RUNNING, grid):
        return "running"
    run = run_folder(cell)
    if run is not None and drift(cell, run):
        return "stale"
    if run is not None and _rounds_done(run)[0] >= _rounds_done(run)[1]:
        if not missing_evals(run, grid):
            return "done"
    if (cell.folder / FAILED).is_file():
        return "failed"
    if run is None:
        return "missing"
    done, steps = _rounds_done(run)
    if done < steps:
        return "partial"
    if missing_evals(run, grid):
        return "trained"
    return "done"


COMMON_OPTIONS = {"method", "model", "prompts", "reward", "steps", "seed", "config", "plugin", "allow_download"}


def _option_parts(options: dict, command: str = "run") -> list[tuple[str, list[str]]]:
    """Each option as (key, its ``bench`` arguments), in order: its own options as flags, other RunConfig fields
    as ``--set``, the rest as method options (``beta`` -> ``--beta``)."""
    from bench.config import RunConfig

    settings = {f.name for f in dataclasses.fields(RunConfig)} - COMMON_OPTIONS
    parts = []
    for key, value in options.items():
        if key == "set":
            parts += [("set", ["--set", str(item)]) for item in (value if isinstance(value, list) else [value])]
        elif isinstance(value, list) and command == "run" and key == "plugin":  # a repeatable option
            parts += [(key, ["--plugin", str(item)]) for item in value]
        elif command == "run" and key in settings:
            parts.append(("set", ["--set", f"{key}={value}"]))
        elif value is True:
            parts.append((key, [f"--{key.replace('_', '-')}"]))
        else:
            parts.append((key, [f"--{key.replace('_', '-')}", str(value)]))
    return parts


def _option_args(options: dict, command: str = "run") -> list[str]:
    """``bench run`` (or ``bench eval``) arguments for ``options`` (see :func:`_option_parts`)."""
    return [arg for _, args in _option_parts(options, command) for arg in args]


def resolve_cell(cell: Cell):
    """The cell's run config as `bench run` would build it (settings files, options, method options), without
    running anything: a bad option or a preset's fixed setting is found before a grid starts."""
    from bench.clitools import register_plugins
    from bench.resolve import resolve_run_config

    options = {k: v for k, v in cell.options.items() if k != "log_with"}
    register_plugins([options["plugin"]] if isinstance(options.get("plugin"), str) else options.get("plugin") or [])
    parts = _option_parts({k: v for k, v in options.items() if k not in COMMON_OPTIONS | {"plugin"}})
    sets = [args[1] for key, args in parts if key == "set"]
    method_args = [arg for key, args in parts if key != "set" for arg in args]
    common = {k: options.get(k) for k in COMMON_OPTIONS - {"config", "plugin"}}
    return resolve_run_config(options.get("config"), common, sets, method_args)[0]


_CHILDREN: set[subprocess.Popen] = set()  # the `bench` commands running now, stopped cleanly with the sweep
STOP_WAIT_S = 300  # how long a stopped command may take to finish its round and checkpoint


def stop_children() -> None:
    """SIGTERM every running `bench` command (each finishes its round and checkpoints), then wait for them."""
    for proc in list(_CHILDREN):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in list(_CHILDREN):
        try:
            proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()


def _bench(args: list[str], cell: Cell, echo, env: dict | None = None) -> None:
    """Run ``bench ARGS`` for a cell, its output appended to the cell's sweep.log; a failure is recorded in
    sweep.failed (the command and its last output line) for ``--status``. ``env`` is added to the environment."""
    echo("$ bench " + " ".join(args))
    with open(cell.folder / LOG, "a") as log:
        log.write(f"$ bench {' '.join(args)}\n")
        log.flush()
        command = [sys.executable, "-m", "bench.cli", *args]
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        _CHILDREN.add(proc)
        try:
            code = proc.wait()
        except BaseException:  # Ctrl-C or SIGTERM in this thread: let the command checkpoint, then stop
            stop_children()
            raise
        finally:
            _CHILDREN.discard(proc)
    if code:
        lines = [line for line in (cell.folder / LOG).read_text().splitlines() if line.strip()]
        last = lines[-1].split("\r")[-1].strip() if lines else ""
        (cell.folder / FAILED).write_text(f"exit {code}: {last}\n")
        raise BenchError(f"`bench {' '.join(args)}` failed with exit code {code}: {last}")


def cell_env(threads: int | None = None, gpus: str | None = None) -> dict:
    """Environment of a cell's commands: its torch threads, and the GPUs it may see."""
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}
    return env | ({"CUDA_VISIBLE_DEVICES": gpus} if gpus is not None else {})


def failure(cell: Cell) -> str:
    """The recorded failure of a cell's last command ('' when none)."""
    path = cell.folder / FAILED
    return path.read_text().strip() if path.is_file() else ""


def run_cell(cell: Cell, grid: Grid, echo=print, env: dict | None = None) -> None:
    """Bring one cell to done: start, resume or only evaluate its run (a failed cell is retried from its state).
    A cell another live process holds is left to it."""
    cell.folder.mkdir(parents=True, exist_ok=True)
    claim = cell.folder / RUNNING
    if claim.is_file() and _alive(claim, grid):
        echo(f"{cell.name}: held by {claim.read_text().strip()}; left to it")
        return
    claim.write_text(_claim_text())
    (cell.folder / FAILED).unlink(missing_ok=True)
    try:
        current = state(cell, grid)
        if current == "stale":
            run = run_folder(cell)
            raise BenchError(
                f"{run} was run with other settings than the grid's ({describe_drift(drift(cell, run))}); move that "
                "run folder out of the cell to run it again, or give the grid its settings back"
            )
        if current == "missing":
            _bench(["run", *_option_args(cell.options), "--results-dir", str(cell.folder)], cell, echo, env)
        elif current == "partial":
            live = ["--log-with", str(cell.options["log_with"])] if cell.options.get("log_with") else []
            _bench(["run", "--resume", str(run_folder(cell)), *live], cell, echo, env)
        if state(cell, grid) == "trained":
            for options in missing_evals(run_folder(cell), grid):
                _bench(["eval", str(run_folder(cell)), *_option_args(options, "eval")], cell, echo, env)
    finally:
        if claim.is_file() and claim.read_text() == _claim_text():  # only our own claim
            claim.unlink()


def cell_states(grid: Grid) -> list[tuple[Cell, str]]:
    """Every cell of the grid with its state (one of STATES)."""
    return [(c, state(c, grid)) for c in cells(grid)]


def status_lines(grid: Grid, states: list[tuple[Cell, str]] | None = None) -> list[str]:
    """One line per cell: its state and folder, and for a failed cell its last error line (``states``: from
    ``cell_states``, when the caller has them already)."""

    def why(cell: Cell, current: str) -> str:
        if current == "failed":
            return f"  ({failure(cell)})"
        return f"  ({describe_drift(drift(cell, run_folder(cell)))})" if current == "stale" else ""

    return [f"{current:8s} {c.folder}{why(c, current)}"
            for c, current in (states if states is not None else cell_states(grid))]  # fmt: skip


def machine_cores() -> int:
    """The cores this process may use (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus() -> int:
    """CUDA devices this process can see (0 without torch's CUDA)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def local_plan(grid: Grid, jobs: int | None, cells_left: int | None = None) -> tuple[int, int]:
    """(cells at a time, torch threads per cell) for the local pool: ``resources.cpus`` threads per cell when the
    grid says, else two; never more threads in all than the machine has cores, nor more jobs than cells left, nor
    (when cells ask for ``resources.gpus`` and the machine has GPUs) more cells than its GPUs can hold."""
    cores = machine_cores()
    if jobs is None:
        jobs = max(1, cores // int(grid.resources.get("cpus") or 2))
    if jobs < 1:
        raise BenchError(f"--jobs must be at least 1, got {jobs}")
    per_cell, gpus = int(grid.resources.get("gpus") or 0), visible_gpus()
    if per_cell and gpus:
        jobs = min(jobs, max(1, gpus // per_cell))
    jobs = min(jobs, cells_left) if cells_left else jobs
    return jobs, max(1, cores // jobs)


def _cell_job(cell: Cell, grid: Grid, cwd: str, threads: int | None) -> str:
    """What a slurm or ray worker runs: one cell, in the sweep's working folder; returns the cell's final state."""
    os.chdir(cwd)
    try:
        run_cell(cell, grid, echo=lambda line: print(line, flush=True), env=cell_env(threads))
    except BenchError as exc:
        return f"failed: {exc}"
    return state(cell, grid)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else '(no message)'}"


def _run_local(todo: list[Cell], grid: Grid, jobs: int | None, echo) -> list[tuple[Cell, str]]:
    jobs, threads = local_plan(grid, jobs, len(todo))
    echo(f"local: {jobs} at a time, {threads} torch threads each ({machine_cores()} cores)")
    per_cell, gpus = int(grid.resources.get("gpus") or 0), visible_gpus()
    slots: queue.Queue = queue.Queue()  # each running cell takes a slot: its own GPUs, when cells ask for GPUs
    for k in range(jobs):
        ids = range(k * per_cell, (k + 1) * per_cell) if per_cell and gpus else None
        slots.put(",".join(map(str, ids)) if ids is not None else None)

    def one(cell: Cell, echo_cell) -> None:
        slot = slots.get()
        try:
            env = cell_env(threads if jobs > 1 else None, slot)  # one job alone keeps torch's own default
            run_cell(cell, grid, echo_cell, env)
        finally:
            slots.put(slot)

    failed = []
    if jobs == 1:  # in this process, the cell's commands echoed as they start
        for k, cell in enumerate(todo, 1):
            echo(f"[{k}/{len(todo)}] {cell.name} (output: {cell.folder / LOG})")
            try:
                one(cell, echo)
            except BenchError as exc:
                echo(f"failed: {cell.name}: {exc}")
                failed.append((cell, str(exc)))
        return failed
    from concurrent.futures import ThreadPoolExecutor, as_completed

    pool = ThreadPoolExecutor(jobs, thread_name_prefix="bench-sweep")  # each cell is its own subprocess
    try:
        futures = {pool.submit(one, cell, lambda _line: None): cell for cell in todo}
        echo(f"queued {len(todo)} cells (each cell's output: its folder's {LOG})")
        for k, future in enumerate(as_completed(futures), 1):
            cell = futures[future]
            try:
                future.result()
                echo(f"[{k}/{len(todo)}] {cell.name}: {state(cell, grid)}")
            except Exception as exc:  # noqa: BLE001 - one cell's error is reported; the others go on
                why = str(exc) if isinstance(exc, BenchError) else _first_line(exc)
                echo(f"[{k}/{len(todo)}] {cell.name}: failed: {why}")
                failed.append((cell, why))
    except BaseException:  # Ctrl-C or SIGTERM: start nothing new, let the running commands checkpoint
        pool.shutdown(wait=False, cancel_futures=True)
        stop_children()
        raise
    pool.shutdown(wait=True)
    return failed


def _for_workers(grid: Grid, todo: list[Cell]) -> tuple[Grid, list[Cell]]:
    """The grid with its root made absolute and its cells to do, for workers that may start in another folder."""
    grid = dataclasses.replace(grid, root=grid.root.resolve())
    names = {t.name for t in todo}
    return grid, [c for c in cells(grid) if c.name in names]


def slurm_executor(grid: Grid, jobs: int | None, cluster: str | None = "slurm"):
    """A submitit executor for the grid's cells (``cluster`` "local" runs them as local processes, for tests)."""
    try:
        import submitit
    except ImportError:
        raise BenchError("--executor slurm needs submitit: pip install 'dpok-bench[slurm]'") from None
    res = grid.resources
    executor = submitit.AutoExecutor(folder=grid.root.resolve() / ".submitit" / "%j", cluster=cluster)
    params = {
        "name": f"bench-{grid.name}",
        "timeout_min": int(res.get("timeout_min") or 240),
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": int(res.get("cpus") or 2),
        "gpus_per_node": int(res.get("gpus") or 0),
    }
    if res.get("mem_gb"):
        params["mem_gb"] = float(res["mem_gb"])
    if jobs:
        params["slurm_array_parallelism"] = jobs
    params |= {f"slurm_{k}": v for k, v in (res.get("slurm") or {}).items()}
    executor.update_parameters(**params)
    return executor


def sbatch_script(grid: Grid, todo: list[Cell], jobs: int | None) -> str:
    """The sbatch script ``--executor slurm`` submits for ``todo`` (one array task per cell)."""
    inner = slurm_executor(grid, jobs)._executor
    inner.parameters["map_count"] = len(todo)
    try:
        return inner._make_submission_file_text(inner._submitit_command_str, "dry-run")
    finally:
        del inner.parameters["map_count"]


def _run_slurm(todo, grid, jobs, echo, cluster="slurm") -> list[tuple[Cell, str]]:
    grid, todo = _for_workers(grid, todo)
    executor = slurm_executor(grid, jobs, cluster)
    threads = int(grid.resources.get("cpus") or 2)
    n = len(todo)
    submitted = executor.map_array(_cell_job, todo, [grid] * n, [os.getcwd()] * n, [threads] * n)
    echo(f"{cluster}: submitted {n} cells as job {submitted[0].job_id.split('_')[0]} (logs: {grid.root / '.submitit'})")
    failed = []
    for k, (cell, job) in enumerate(zip(todo, submitted, strict=True), 1):
        try:
            final = job.result()
        except Exception as exc:  # the job itself died (node failure, time limit): submitit re-raises its error
            final = f"failed: job {job.job_id}: {_first_line(exc)}"
        echo(f"[{k}/{n}] {cell.name}: {final}")
        if final != "done":
            failed.append((cell, final))
    return failed


def _run_ray(todo, grid, jobs, echo, address=None) -> list[tuple[Cell, str]]:
    try:
        import ray
    except ImportError:
        raise BenchError("--executor ray needs ray: pip install 'dpok-bench[ray]'") from None
    grid, todo = _for_workers(grid, todo)
    cpus, gpus = int(grid.resources.get("cpus") or 2), float(grid.resources.get("gpus") or 0)
    started = not ray.is_initialized()
    if started:
        kwargs = {"address": address} if address else {"num_cpus": machine_cores()}
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **kwargs)
    try:
        have = ray.cluster_resources()
        if cpus > have.get("CPU", 0) or gpus > have.get("GPU", 0):  # a task no node can hold would wait forever
            has = f"{have.get('CPU', 0):g} and {have.get('GPU', 0):g}"
            raise BenchError(f"ray: a cell asks for {cpus} CPUs and {gpus:g} GPUs; the cluster has {has}")
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_cell_job)
        refs = {task.remote(cell, grid, os.getcwd(), cpus): cell for cell in todo}
        echo(f"ray: submitted {len(refs)} cells, {cpus} CPUs and {gpus:g} GPUs each")
        failed, pending, k = [], list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            cell, k = refs[ready[0]], k + 1
            try:
                final = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - the task's worker died
                final = f"failed: {_first_line(exc)}"
            echo(f"[{k}/{len(refs)}] {cell.name}: {final}")
            if final != "done":
                failed.append((cell, final))
    finally:
        if started:
            ray.shutdown()
    return failed


def check_executor(executor: str) -> None:
    if executor not in EXECUTORS:
        raise BenchError(f"--executor: unknown {executor!r}; known: {', '.join(EXECUTORS)}")


def pending(grid: Grid, states: list[tuple[Cell, str]] | None = None) -> list[Cell]:
    """The cells a sweep would run now: neither done nor held by a live process (``states``: from ``cell_states``,
    when the caller has them already)."""
    return [
        c for c, current in (states if states is not None else cell_states(grid)) if current not in ("done", "running")
    ]


def run_grid(grid: Grid, echo=print, executor: str = "local", jobs: int | None = None, **engine) -> None:
    """Every cell that is not done (or run by another sweep process now), on ``executor``; failed cells are listed
    in one error at the end, in grid order, after the others have run (each also recorded for ``--status``).
    SIGTERM stops the sweep as Ctrl-C does: nothing new starts, running commands checkpoint first."""
    check_executor(executor)
    states = cell_states(grid)
    todo = pending(grid, states)
    count = {name: sum(current == name for _, current in states) for name in STATES}
    held = f", {count['running']} run by another sweep now" if count["running"] else ""
    resumed = count["partial"] + count["trained"]  # trained: only its evaluation is left
    notes = [f"{resumed} resumed from their checkpoint or evaluation"] if resumed else []
    notes += [f"{count['failed']} failed before, retried from their state"] if count["failed"] else []
    echo(f"{grid.name}: {count['done']} of {len(states)} cells done{held}; running {len(todo)}"
         + (f" ({'; '.join(notes)})" if notes else ""))  # fmt: skip
    if not todo:
        return
    run = {"local": _run_local, "slurm": _run_slurm, "ray": _run_ray}[executor]
    try:
        with _sigterm_as_interrupt():
            failed = run(todo, grid, jobs, echo, **engine)
    except KeyboardInterrupt:  # the running commands have checkpointed (stop_children); nothing new started
        where = grid.path or grid.name
        raise BenchError(f"sweep stopped by a signal; run `bench sweep {where}` again to continue") from None
    if failed:
        order = {c.name: k for k, c in enumerate(cells(grid))}
        failed.sort(key=lambda item: order.get(item[0].name, 0))
        listed = "; ".join(f"{cell.name}: {why}" for cell, why in failed)
        raise BenchError(f"{len(failed)} of {len(todo)} cells failed ({listed}); `bench sweep --status` shows them")


class _sigterm_as_interrupt:
    """In the main thread, SIGTERM raises KeyboardInterrupt, so a killed sweep stops its commands cleanly."""

    def __enter__(self):
        self.old = None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
        return False
