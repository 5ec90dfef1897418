"""The `bench` command line: run, ls.

Errors in user input print one line (``error: ...``) and exit with code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from bench.errors import BenchError

EXAMPLES = """
Examples:

  bench run --method dpok --beta 0.01 --model path/to/pipeline --reward compressibility --steps 3

  bench run --config configs/dpok-shapes.yaml --set sampling.num_steps=20 --lr 1e-5

  bench ls methods
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


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _register_plugins(plugins: list[str]) -> None:
    from bench.method import Method
    from bench.registry import METHODS, SCORERS, import_target

    for target in plugins:
        obj = import_target(target, "plugin")
        registry = METHODS if isinstance(obj, type) and issubclass(obj, Method) else SCORERS
        registry.add_plugin(target)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Fine-tune a model with a method; method options (e.g. --beta 0.01) follow the common ones.",
    epilog="Method options: see `bench ls methods --verbose`.",
)
def run(
    ctx: typer.Context,
    method: str = typer.Option(None, "--method", help="method name (default dpok); see `bench ls methods`"),
    model: str = typer.Option(None, "--model", help="pipeline folder or hub id (default: the shapes model)"),
    prompts: str = typer.Option(None, "--prompts", help="prompt set name, file, or prompts separated by '|'"),
    reward: str = typer.Option(None, "--reward", help="reward scorer; see `bench ls scorers`"),
    steps: int = typer.Option(None, "--steps", help="training rounds"),
    seed: int = typer.Option(None, "--seed", help="random seed"),
    results_dir: str = typer.Option(None, "--results-dir", help="where run folders go (default results/runs)"),
    config: str = typer.Option(None, "--config", help="YAML config file"),
    set_: list[str] = typer.Option([], "--set", help="override a setting: section.key=value (repeatable)"),
    plugin: list[str] = typer.Option([], "--plugin", help="load a method or scorer from module:attr"),
    allow_download: bool = typer.Option(None, "--allow-download", help="allow hub downloads of --model"),
) -> None:
    from bench.models import resolve_model
    from bench.prompts import load_prompts
    from bench.registry import SCORERS
    from bench.resolve import resolve_run_config

    _register_plugins(plugin)
    common = {
        "method": method,
        "model": model,
        "prompts": prompts,
        "reward": reward,
        "steps": steps,
        "seed": seed,
        "results_dir": results_dir,
        "allow_download": allow_download,
    }
    cfg, method_cls = resolve_run_config(config, common, set_, list(ctx.args))
    # Everything that can be checked is checked before the run folder exists: nothing is written on bad input.
    scorer_cls = SCORERS.get(cfg.reward)
    prompt_list = load_prompts(cfg.prompts)
    model_path = resolve_model(cfg.model, cfg.allow_download)
    _quiet_libraries()
    _train(cfg, method_cls, model_path, prompt_list, scorer_cls)


def _train(cfg, method_cls, model_path, prompt_list, scorer_cls) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.results import create_run_dir
    from bench.trainer import Trainer

    console = Console(stderr=True)
    run_dir = create_run_dir(cfg.results_dir, cfg.method)
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

        trainer = Trainer(cfg, method_cls, model_path, prompt_list, scorer_cls, run_dir, progress=report)
        trainer.setup()
        progress.update(task, stats="collecting")
        trainer.run()
    typer.echo(f"run folder: {run_dir}")


@app.command("ls", help="List registered methods or scorers (built-ins, entry points, --plugin).")
def ls(
    kind: str = typer.Argument(..., help="methods or scorers"),
    plugin: list[str] = typer.Option([], "--plugin", help="also load module:attr"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show each method's options"),
) -> None:
    from bench.config import fields_help
    from bench.registry import METHODS, SCORERS

    _register_plugins(plugin)
    registries = {"methods": METHODS, "scorers": SCORERS}
    if kind not in registries:
        raise BenchError(f"unknown kind {kind!r}; use methods or scorers")
    registry = registries[kind]
    for name in registry.names():
        try:
            obj = registry.get(name)
            line = getattr(obj, "summary", "") or (obj.__doc__ or "").strip().split("\n")[0]
        except BenchError as exc:  # one broken plugin is reported, the others still list
            obj, line = None, f"(broken: {exc})"
        typer.echo(f"{name:18s} {registry.source(name):28s} {line}")
        if verbose and obj is not None and hasattr(obj, "Config") and kind == "methods":
            for field_name, help_text, default in fields_help(obj.Config):
                typer.echo(f"    --{field_name.replace('_', '-'):22s} {help_text} [default {default}]")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors with exit code 2, tracebacks only with --debug."""
    import click

    from bench.registry import METHODS, SCORERS

    METHODS.clear_plugins()
    SCORERS.clear_plugins()
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("BENCH_DEBUG") == "1"
    try:
        app(args=args, standalone_mode=False, prog_name="bench")
    except BenchError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
