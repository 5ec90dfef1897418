"""The `bench` command line: run, pretrain, eval, table, plot, report, standing, sweep, probe-reward, perf, ls.

Errors in user input print one line (``error: ...``) and exit with code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from bench.clitools import build_scorer, quiet_libraries, register_plugins
from bench.errors import BenchError

EXAMPLES = """
Examples:

  bench run --method dpok --beta 0.01        (the shipped shapes world: model, reward, prompts)

  bench run --world sd --model path/to/sd-v1-5 --prompts dpok-single --steps 2000

  bench eval results/runs/<run_id> --samples 64

  bench table results/runs/* --format latex

  bench ls methods --verbose
"""

app = typer.Typer(
    help="dpok-bench: fine-tune text-to-image diffusion models with RL and compare methods.\n" + EXAMPLES,
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode=None,
)
_state = {"debug": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show full tracebacks")) -> None:
    _state["debug"] = debug or os.environ.get("BENCH_DEBUG") == "1"


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Fine-tune a model with a method; method options (e.g. --beta 0.01) follow the common ones.",
    epilog="Method options: `bench run --method NAME --help`, or `bench ls methods --verbose`.",
)
def run(
    ctx: typer.Context,
    method: str = typer.Option(None, "--method", help="method name (default dpok); see `bench ls methods`"),
    world: str = typer.Option(None, "--world", help="world name (default shapes); see `bench ls worlds`"),
    model: str = typer.Option(None, "--model", help="pipeline folder or hub id (default: the world's model)"),
    prompts: str = typer.Option(None, "--prompts", help="prompt set name, file, or prompts separated by '|'"),
    reward: str = typer.Option(None, "--reward", help="reward scorer; see `bench ls scorers`"),
    steps: int = typer.Option(None, "--steps", help="training rounds"),
    seed: int = typer.Option(None, "--seed", help="random seed"),
    results_dir: str = typer.Option(None, "--results-dir", help="where run folders go (default results/runs)"),
    config: str = typer.Option(None, "--config", help="YAML config file"),
    set_: list[str] = typer.Option([], "--set", help="override a setting: section.key=value (repeatable)"),
    plugin: list[str] = typer.Option([], "--plugin", help="load a method, scorer or world from module:attr"),
    allow_download: bool = typer.Option(None, "--allow-download", help="allow hub downloads of --model"),
    resume: str = typer.Option(None, "--resume", help="continue a run (its folder or id) with its own config"),
    log_with: str = typer.Option(
        None, "--log-with", help="live view: tensorboard, wandb or mlflow (comma-separated; offline; train.jsonl stays)"
    ),
) -> None:
    from bench.prompts import load_prompts
    from bench.registry import SCORERS
    from bench.resolve import resolve_model_path, resolve_run_config

    register_plugins(plugin)
    trackers = tuple(x.strip() for x in (log_with or "").split(",") if x.strip())
    if resume:
        others = [method, world, model, prompts, reward, steps, seed, config, allow_download]
        _resume(resume, results_dir, others, set_, ctx.args, trackers)
        return
    common = {
        "method": method,
        "world": world,
        "model": model,
        "prompts": prompts,
        "reward": reward,
        "steps": steps,
        "seed": seed,
        "results_dir": results_dir,
        "allow_download": allow_download,
    }
    cfg, method_cls, applied = resolve_run_config(config, common, set_, list(ctx.args))
    # Everything that can be checked is checked before the run folder exists: nothing is written on bad input.
    prompt_list = load_prompts(cfg.prompts, cfg.world)
    model_path = resolve_model_path(cfg.world, cfg.model, cfg.allow_download)
    scorer = build_scorer(SCORERS.get(cfg.reward))
    shown = ", ".join(_shown(f) for f in applied) or "none (defaults)"
    typer.echo(
        f"world {cfg.world}, method {cfg.method}; settings, lowest first: {shown}; then --set, options", err=True
    )
    if trackers:
        from bench.trainer import check_trackers

        check_trackers(trackers)  # a missing package is an error before the run folder exists
    quiet_libraries()
    _train(cfg, method_cls, model_path, prompt_list, scorer, trackers=trackers)


def _shown(path: str) -> str:
    """A settings file as the user can find it: relative to the current folder, or to the installed package."""
    import bench

    full = Path(path).resolve()
    for base in (Path.cwd(), Path(bench.__file__).resolve().parent.parent):
        if full.is_relative_to(base):
            return str(full.relative_to(base))
    return str(path)


def _resume(resume, results_dir, others, sets, extra, trackers=()) -> None:
    from bench.prompts import load_prompts
    from bench.registry import SCORERS
    from bench.resolve import config_from_run, find_run

    if any(v is not None for v in others) or sets or extra:
        raise BenchError("--resume continues a run with its own config; pass no other run options with it")
    run_dir = find_run(resume, results_dir)
    cfg, method_cls, model_path = config_from_run(run_dir)
    scorer = build_scorer(SCORERS.get(cfg.reward))
    prompt_list = load_prompts(cfg.prompts, cfg.world or None)
    quiet_libraries()
    _train(cfg, method_cls, model_path, prompt_list, scorer, run_dir=run_dir, trackers=trackers)


def _train(cfg, method_cls, model_path, prompt_list, scorer, run_dir=None, trackers=()) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.dist import finish, process_state, shared_run_dir
    from bench.trainer import Trainer

    main_process = process_state().is_main_process
    console = Console(stderr=True, quiet=not main_process)  # one progress bar, from the main process
    resuming = run_dir is not None
    run_dir = run_dir or shared_run_dir(cfg.results_dir, cfg.method)
    columns = [
        TextColumn(f"[bold]{cfg.method}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
    ]
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("rounds", total=cfg.steps, stats="loading model")

        def report(done: int, total: int, metrics: dict) -> None:
            stats = " ".join(f"{k} {metrics[k]:.4g}" for k in ("reward", "data_reward", "kl", "loss") if k in metrics)
            progress.update(task, completed=done, stats=stats)

        trainer = Trainer(cfg, method_cls, model_path, prompt_list, scorer, run_dir, progress=report, log_with=trackers)
        trainer.setup()
        if resuming:
            trainer.restore()
            progress.update(task, completed=trainer.start_round)
        progress.update(task, stats="collecting")
        trainer.run()
    finish()
    if main_process:
        typer.echo(f"run folder: {run_dir}")


@app.command("eval", help="Score a run's pretrained and fine-tuned models on fixed evaluation seeds (eval.parquet).")
def eval_cmd(
    run_dir: str = typer.Argument(..., help="a run folder"),
    prompts: str = typer.Option(None, "--prompts", help="prompt set, file or 'a|b' (default: the run's prompts)"),
    split: str = typer.Option(None, "--split", help="name stored with the rows (default: the prompts' name)"),
    samples: int = typer.Option(64, "--samples", help="samples per prompt", min=1),
    scorers: str = typer.Option(
        None, "--scorers", help="comma-separated scorers (default: the run's reward and eval_scorers)"
    ),
    snapshots: bool = typer.Option(False, "--snapshots", help="also score the LoRA snapshots (snapshot_every)"),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="sample the pretrained model even if this machine's evaluation cache has it"
    ),
) -> None:
    from bench.evaluate import run_evaluation

    quiet_libraries()
    run_evaluation(
        Path(run_dir), prompts, split, samples, scorers, echo=typer.echo, snapshots=snapshots, use_cache=not no_cache
    )


def _runs(runs: list[str]) -> list[Path]:
    paths = [Path(r) for r in runs]
    for path in paths:
        if not (path / "config.yaml").is_file():
            raise BenchError(f"{path} is not a run folder (no config.yaml)")
    return paths


@app.command("table", help="Paper-style table (mean and 95% bootstrap interval) rebuilt from run folders.")
def table_cmd(
    runs: list[str] = typer.Argument(..., help="run folders (after `bench eval`)"),
    fmt: str = typer.Option("md", "--format", help="md, latex, csv or html"),
    split: str = typer.Option(None, "--split", help="comma-separated splits (default: all)"),
    scorers: str = typer.Option(None, "--scorers", help="comma-separated scorers (default: all)"),
    out: str = typer.Option(None, "--out", help="write to this file instead of printing"),
    change: bool = typer.Option(
        False, "--change", help="change over the pretrained model: one row per run (seed), then each pooled row"
    ),
) -> None:
    from bench.evaluations.tables import build_change_table, build_table, render
    from bench.results import write_text

    if fmt not in ("md", "latex", "csv", "html"):
        raise BenchError(f"--format must be one of md, latex, csv, html (got {fmt!r})")
    splits = split.split(",") if split else None
    build = build_change_table if change else build_table
    table = build(_runs(runs), splits, scorers.split(",") if scorers else None)
    text = render(table, fmt)
    if out:
        write_text(out, text)
        typer.echo(f"table: {out}")
    else:
        typer.echo(text, nl=False)


@app.command("plot", help="Seaborn figures (training curves, proxy vs gold, distributions) from run folders.")
def plot_cmd(
    runs: list[str] = typer.Argument(..., help="run folders"),
    out: str = typer.Option("results/plots", "--out", help="output folder for the PNG files"),
) -> None:
    from bench.evaluations.plots import make_plots

    for path in make_plots(_runs(runs), out):
        typer.echo(str(path))


@app.command("report", help="One static HTML page with the tables, plots and sample grids of run folders.")
def report_cmd(
    runs: list[str] = typer.Argument(..., help="run folders (after `bench eval`)"),
    out: str = typer.Option("results/report.html", "--out", help="output HTML file"),
) -> None:
    from bench.evaluations.report import write_report

    typer.echo(f"report: {write_report(_runs(runs), out)}")


@app.command("standing", help="Where a run's gold change stands: its interval, and its rank among committed runs.")
def standing_cmd(
    run_dir: str = typer.Argument(..., help="a run folder (after `bench eval`)"),
    against: list[str] = typer.Option([], "--against", help="committed run folders or glob patterns (repeatable)"),
    split: str = typer.Option("train", "--split", help="evaluation split to compare"),
) -> None:
    import glob

    from bench.evaluations.standing import standing_line

    # Patterns may also match files and cell folders: of what they match, the run folders (config.yaml) count.
    matched = {p for pattern in against for p in (glob.glob(pattern) or [pattern])}
    committed = sorted(Path(p) for p in matched if (Path(p) / "config.yaml").is_file())
    typer.echo(standing_line(Path(run_dir), committed, split))


@app.command("sweep", help="Run a grid of runs (methods x settings x seeds) in stable folders; resumable cell by cell.")
def sweep_cmd(
    grid_file: str = typer.Argument(..., help="grid YAML (see bench/sweep.py)"),
    status: bool = typer.Option(
        False, "--status", help="print each cell's state (done, running, failed, stale, missing...)"
    ),
    executor: str = typer.Option("local", "--executor", help="local (a process pool here), slurm (submitit) or ray"),
    jobs: int = typer.Option(
        None, "--jobs", help="cells at a time (local: default one per 2 cores; slurm: array parallelism)"
    ),
    ray_address: str = typer.Option(None, "--ray-address", help="ray: the cluster's address (default: start one)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print what would run (slurm: the sbatch script)"),
    root: str = typer.Option(None, "--root", help="the cells' folder instead of the grid's own root"),
    only: list[str] = typer.Option(
        None, "--only", help="AXIS=VALUE[,VALUE]: only the cells with these values (repeatable; a grid in parts)"
    ),
) -> None:
    from bench.sweep import check_executor, load_grid, pending, restrict, run_grid, sbatch_script, state, status_lines

    grid = restrict(load_grid(grid_file, root=root), only)
    if status:
        for line in status_lines(grid):
            typer.echo(line)
        return
    check_executor(executor)
    if dry_run:
        from bench.sweep import resolve_cell

        todo = pending(grid)
        for cell in todo:  # every cell's config is built and checked; nothing runs
            try:
                resolve_cell(cell)
            except BenchError as exc:
                raise BenchError(f"cell {cell.name}: {exc}") from None
        if executor == "slurm" and todo:
            typer.echo(sbatch_script(grid, todo, jobs), nl=False)
        for cell in todo:
            typer.echo(f"would run {cell.folder} ({state(cell, grid)})")
        return
    engine = {"address": ray_address} if executor == "ray" else {}
    run_grid(grid, echo=typer.echo, executor=executor, jobs=jobs, **engine)


@app.command("paper", help="The DPOK paper's experiments on the shapes world: configs/paper grids, then tables.")
def paper_cmd(
    quick: bool = typer.Option(False, "--quick", help="each grid's quick section (minutes; labelled quick)"),
    tables_only: bool = typer.Option(False, "--tables-only", help="rebuild the tables and figures; run nothing"),
    grids: str = typer.Option("configs/paper/shapes-*.yaml", "--grids", help="grid files (a glob pattern)"),
    out: str = typer.Option(None, "--out", help="output folder (default results/paper, or results/paper-quick)"),
    executor: str = typer.Option("local", "--executor", help="local, slurm or ray (see `bench sweep`)"),
    jobs: int = typer.Option(None, "--jobs", help="cells at a time (see `bench sweep`; --quick: one per core)"),
    status: bool = typer.Option(False, "--status", help="print each grid's cells and their state; run nothing"),
) -> None:
    from bench.paper import paper_status, run_paper

    if status:
        for line in paper_status(grids, out, quick=quick):
            typer.echo(line)
        return
    quiet_libraries()
    run_paper(grids, out, quick=quick, tables_only=tables_only, executor=executor, jobs=jobs, echo=typer.echo)


PERF_SECTIONS = ("sampling", "round", "memory", "scaling", "options", "processes")
PERF_EXTRA = ("compile",)  # torch.compile of the UNet (minutes on 2 cores): only when asked for


@app.command("perf", help="Time and memory of a DPOK round by phase, as ratios measured in one run (results/perf/).")
def perf_cmd(
    quick: bool = typer.Option(
        False, "--quick", help="fewer repeats and sizes, no processes section (under 3 minutes on 2 cores)"
    ),
    baseline: str = typer.Option(
        None, "--baseline", help="python of another dpok-bench install: time the same workload through it too"
    ),
    sections: str = typer.Option(
        None,
        "--sections",
        help=f"comma-separated sections to run (default: {','.join(PERF_SECTIONS)}; with --quick all but processes, "
        "whose two fresh launches take longer than the rest)",
    ),
    device: str = typer.Option(None, "--device", help="torch device (default: accelerate's)"),
    sd15: bool = typer.Option(
        False, "--sd15", help="instead: one DPOK update of SD v1.5's architecture, random weights"
    ),
    out: str = typer.Option("results/perf", "--out", help="output folder"),
    budget_s: float = typer.Option(
        None, "--budget-s", help="--sd15: start no cell past this many seconds (default: 450 on a GPU, none on CPU)"
    ),
) -> None:
    if sections is None:
        sections = ",".join(s for s in PERF_SECTIONS if not (quick and s == "processes"))
    chosen = tuple(x.strip() for x in sections.split(",") if x.strip())
    unknown = sorted(set(chosen) - set(PERF_SECTIONS) - set(PERF_EXTRA))
    if unknown:
        known = ", ".join(PERF_SECTIONS + PERF_EXTRA)
        raise BenchError(f"--sections: unknown {', '.join(unknown)}; known: {known}")
    quiet_libraries()
    from bench.dist import process_state

    device = device or str(process_state().device)
    if budget_s is not None and (not sd15 or not budget_s > 0 or budget_s == float("inf")):  # NaN fails "> 0"
        raise BenchError("--budget-s: a positive number of seconds, with --sd15")
    if sd15:
        from bench.perf_sd import run_sd15

        path = run_sd15(Path(out), device, quick, echo=lambda m: typer.echo(m, err=True), budget_s=budget_s)
    else:
        from bench.perf import run_perf

        path = run_perf(quick, baseline, Path(out), device, chosen, lambda m: typer.echo(m, err=True))
    typer.echo(f"perf: {path} and {path.with_suffix('.md')}")


@app.command("ls", help="List registered methods, scorers or worlds (built-ins, entry points, --plugin).")
def ls(
    kind: str = typer.Argument(..., help="methods, scorers or worlds"),
    plugin: list[str] = typer.Option([], "--plugin", help="also load module:attr"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show each method's options"),
) -> None:
    from bench.registry import METHODS, SCORERS, WORLDS

    register_plugins(plugin)
    registries = {"methods": METHODS, "scorers": SCORERS, "worlds": WORLDS}
    if kind not in registries:
        raise BenchError(f"unknown kind {kind!r}; use methods, scorers or worlds")
    registry = registries[kind]
    for name in registry.names():
        try:
            obj = registry.get(name)
            line = getattr(obj, "summary", "") or (obj.__doc__ or "").strip().split("\n")[0]
        except BenchError as exc:  # one broken plugin is reported, the others still list
            obj, line = None, f"(broken: {exc})"
        if kind == "scorers" and obj is not None and getattr(obj, "gold", False):
            line = f"[gold] {line}"
        typer.echo(f"{name:18s} {registry.source(name):28s} {line}")
        if verbose and obj is not None and hasattr(obj, "Config") and kind == "methods":
            for line in method_option_lines(obj):
                typer.echo(line)


def method_option_lines(method_cls) -> list[str]:
    """One line per option of a method, generated from its Config dataclass: name, help, default, pinned."""
    from bench.config import fields_help

    lines = []
    for field_name, help_text, default in fields_help(method_cls.Config):
        pinned = " (fixed by this preset)" if field_name in getattr(method_cls, "fixed", {}) else ""
        lines.append(f"    --{field_name.replace('_', '-'):22s} {help_text} [default {default}]{pinned}")
    return lines


def _method_help(args: list[str]) -> str | None:
    """``bench run --method NAME --help``: the method named, when the run's help is asked for with one."""
    if not args or args[0] != "run" or not ({"--help", "-h"} & set(args)):
        return None
    for i, arg in enumerate(args):
        if arg == "--method" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--method="):
            return arg.split("=", 1)[1]
    return None


def _click_modules() -> tuple:
    """click itself and typer's vendored copy (typer >= 0.2x raises its own click's exceptions)."""
    import click

    modules = [click]
    try:
        from typer import _click

        modules.append(_click)
    except ImportError:
        pass
    return tuple(modules)


_mounted: set[str] = set()


def _mount_world_commands() -> None:
    """Each world's own commands as ``bench <world> ...`` (a world that fails to import mounts nothing)."""
    from bench.registry import WORLDS
    from bench.world import get_world

    for name in WORLDS.names():
        if name in _mounted or name in {c.name for c in app.registered_commands}:
            continue
        try:
            commands = get_world(name).commands()
        except BenchError:
            continue
        if commands is not None:
            app.add_typer(commands, name=name, help=f"The {name} world's own commands.")
        _mounted.add(name)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors with exit code 2, tracebacks only with --debug."""
    from bench.registry import METHODS, SCORERS, WORLDS

    for registry in (METHODS, SCORERS, WORLDS):
        registry.clear_plugins()
    _mount_world_commands()
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("BENCH_DEBUG") == "1"
    clicks = _click_modules()
    exits = (typer.Exit, *(m.exceptions.Exit for m in clicks if hasattr(m.exceptions, "Exit")))
    usage = tuple(m.ClickException for m in clicks)
    aborts = (typer.Abort, *(m.exceptions.Abort for m in clicks if hasattr(m.exceptions, "Abort")))
    try:
        method = _method_help(args)
        if method is not None:  # the common options, then every option of that method from its Config
            from bench.registry import METHODS

            method_cls = METHODS.get(method)
            try:
                app(args=["run", "--help"], standalone_mode=False, prog_name="bench")
            except exits:
                pass
            typer.echo(f"\nOptions of method {method} (defaults before the world's settings; `bench ls methods`):")
            for line in method_option_lines(method_cls):
                typer.echo(line)
            return
        app(args=args, standalone_mode=False, prog_name="bench")
    except BenchError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    except exits as exc:
        raise SystemExit(exc.exit_code) from None
    except usage as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except aborts:
        typer.echo("aborted", err=True)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
