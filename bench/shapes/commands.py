"""The shapes world's own commands, mounted as ``bench shapes ...``: pretrain the model, train the proxy reward,
probe a reward against the oracle."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from bench.clitools import build_scorer, quiet_libraries, register_plugins
from bench.errors import BenchError
from bench.shapes.paths import model_folder

app = typer.Typer(help="The shapes world: pretrain its model and proxy reward, probe a reward.", no_args_is_help=True)


@app.command("pretrain", help="Pretrain the shapes world's tiny Stable Diffusion (about 50 minutes on 2 cores).")
def pretrain_cmd(
    out: str = typer.Option(None, "--out", help="output folder (default: the shipped bench/shapes/model)"),
    set_: list[str] = typer.Option([], "--set", help="override a ShapesModelConfig field: key=value"),
    tiny: bool = typer.Option(False, "--tiny", help="a few steps of a tiny config (for tests)"),
    card_only: bool = typer.Option(False, "--card-only", help="only re-measure and rewrite the model card"),
    card: bool = typer.Option(True, "--card/--no-card", help="measure the model and write its model card"),
) -> None:
    from bench.config import build, parse_set, to_dict
    from bench.shapes.paths import MODEL
    from bench.shapes.pretrain import TINY, ShapesModelConfig

    base = to_dict(TINY if tiny else ShapesModelConfig())
    cfg = build(ShapesModelConfig, base | dict(parse_set(set_)))
    quiet_libraries()
    _pretrain(Path(out) if out else MODEL, cfg, card_only, card)


@app.command("pretrain-reward", help="Train the shapes world's proxy reward on the model's own samples.")
def pretrain_reward_cmd(
    out: str = typer.Option(None, "--out", help="output folder (default: the shipped bench/shapes/reward)"),
    set_: list[str] = typer.Option([], "--set", help="override a RewardTrainConfig field: key=value"),
    tiny: bool = typer.Option(False, "--tiny", help="a few steps of a tiny config (for tests)"),
    model: str = typer.Option("shapes", "--model", help="the pipeline whose samples it learns from"),
) -> None:
    from bench.config import build, parse_set
    from bench.shapes.proxy import DEFAULT_DIR
    from bench.shapes.reward_train import RewardTrainConfig, train_shapes_reward

    values = (
        {"samples_per_prompt": 1, "pretraining_captions": 8, "renders": 16, "epochs": 1, "batch_size": 8}
        if tiny
        else {}
    )
    cfg = build(RewardTrainConfig, values | dict(parse_set(set_)))
    model_dir = model_folder(model)
    quiet_libraries()
    stats = train_shapes_reward(model_dir, Path(out) if out else DEFAULT_DIR, cfg)
    agreement = stats["pairwise_agreement_with_oracle"]
    typer.echo(f"shapes reward: {out or DEFAULT_DIR} (held-out pairwise agreement with the oracle {agreement:.3f})")


def _pretrain(out: Path, cfg, card_only: bool, card: bool = True) -> None:
    import json
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.results import write_json
    from bench.shapes.pretrain import pretrain

    stats_path = out / "pretrain_stats.json"
    if not card_only:
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
        ]
        with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True)) as progress:
            tasks: dict = {}

            def log(stage: str, step: int, total: int, loss: float) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total, loss=loss)
                progress.update(tasks[stage], completed=step, loss=loss)

            start = time.time()
            stats = pretrain(out, cfg, log)
            stats["total_minutes"] = (time.time() - start) / 60
            stats["command"] = " ".join(["bench", *sys.argv[1:]]) if sys.argv[0].endswith("bench") else None
        write_json(stats_path, stats)
    if not stats_path.is_file():
        raise BenchError(f"{stats_path} is missing: run `bench shapes pretrain` without --card-only first")
    if card or card_only:
        from bench.shapes.card import write_model_card

        write_model_card(out, json.loads(stats_path.read_text()))
    typer.echo(f"shapes model: {out}")


@app.command("probe-reward", help="How well a reward can steer training on each prompt, against the oracle.")
def probe_reward_cmd(
    reward: str = typer.Option("shapes-reward", "--reward", help="the reward scorer to probe"),
    prompts: str = typer.Option("shapes-demo", "--prompts", help="prompts of the shapes grammar: set, file or 'a|b'"),
    model: str = typer.Option("shapes", "--model", help="the pipeline whose samples are scored"),
    samples: int = typer.Option(64, "--samples", help="samples per prompt (evaluation seeds)", min=2),
    edits: int = typer.Option(8, "--edits", help="near misses (one-edit captions) rendered per prompt", min=1),
    plugin: list[str] = typer.Option([], "--plugin", help="also load a scorer from module:attr"),
) -> None:
    from bench.models import load_pipeline
    from bench.prompts import load_prompts
    from bench.registry import SCORERS
    from bench.shapes.grammar import parse
    from bench.shapes.oracle import ShapesOracle
    from bench.shapes.probe import format_table, probe_prompt

    register_plugins(plugin)
    prompt_list = load_prompts(prompts, world="shapes")
    for prompt in prompt_list:  # every prompt must be of the shapes grammar; checked before any sampling
        try:
            parse(prompt)
        except ValueError as exc:
            raise BenchError(f"probe-reward needs prompts of the shapes grammar: {exc}") from None
    scorer = build_scorer(SCORERS.get(reward))
    quiet_libraries()
    pipe, oracle = load_pipeline(model_folder(model), device=scorer.device), ShapesOracle()
    rows = []
    for i, prompt in enumerate(prompt_list):
        typer.echo(f"[{i + 1}/{len(prompt_list)}] {prompt}", err=True)
        rows.append(probe_prompt(pipe, scorer, oracle, prompt, samples=samples, edits=edits))
    typer.echo(format_table(rows))
