"""Score a pipeline (pretrained, or with a run's LoRA) on prompts with fixed evaluation seeds.

Evaluation seeds live in their own range, far from the training seeds, so "fresh seeds" are fresh, and every
method is scored on the same seeds. Rows are one per image x scorer, the layout of ``eval.parquet``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench import evalcache
from bench.sampling import PromptCache, rollout
from bench.stats import bootstrap_ci, paired_difference_ci

SAMPLE_BATCH = 64  # images per sampling batch in `bench eval` (part of the evaluation cache's key)
EVAL_SEED_BASE = 1_000_000_007  # training seeds come from SeedSequence hashing; this range is kept for evaluation


def eval_seeds(n: int) -> list[int]:
    """The i-th evaluation sample of every prompt uses seed EVAL_SEED_BASE + i, whatever the method."""
    return [EVAL_SEED_BASE + i for i in range(n)]


def generate(pipe, prompts: list[str], seeds: list[int], sampling, batch_size: int = 64, progress=None):
    """One image per (prompt, seed), sampled in batches of ``batch_size``; float NCHW in [0, 1] on the CPU."""
    cache, images = PromptCache(pipe), []
    for start in range(0, len(prompts), batch_size):
        part = slice(start, start + batch_size)
        images.append(rollout(pipe, prompts[part], seeds[part], sampling, cache, reference=False).images.cpu())
        if progress:
            progress(min(start + batch_size, len(prompts)), len(prompts))
    return torch.cat(images)


def sample(pipe, prompts: list[str], n: int, sampling, batch_size: int = 64, progress=None):
    """``n`` images per prompt on the evaluation seeds; returns (images, prompt per image, seed per image)."""
    all_prompts = [p for p in prompts for _ in range(n)]
    all_seeds = [s for _ in prompts for s in eval_seeds(n)]
    return generate(pipe, all_prompts, all_seeds, sampling, batch_size, progress), all_prompts, all_seeds


def score(images, prompts, seeds, scorers, batch_size: int = 256) -> pd.DataFrame:
    """One row per image x scorer: prompt, seed, the scorer's name and version, value."""
    frames = []
    for scorer in scorers:
        values = torch.cat(
            [
                scorer(images[i : i + batch_size], prompts[i : i + batch_size]).cpu()
                for i in range(0, len(images), batch_size)
            ]
        )
        frames.append(
            pd.DataFrame(
                {"prompt": prompts, "seed": seeds, "scorer": scorer.name, "scorer_version": scorer.version,
                 "value": values.double().numpy()}
            )
        )  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def save_grid(images: torch.Tensor, path, columns: int = 8) -> None:
    """Save up to ``columns`` x 2 images as one PNG grid."""
    from PIL import Image

    from bench.scoring import to_uint8

    images = images[: columns * 2]
    arrays = to_uint8(images).numpy()
    rows = -(-len(arrays) // columns)
    h, w = arrays.shape[1:3]
    grid = np.zeros((rows * h, columns * w, 3), dtype=np.uint8)
    for i, a in enumerate(arrays):
        grid[(i // columns) * h : (i // columns + 1) * h, (i % columns) * w : (i % columns + 1) * w] = a
    Image.fromarray(grid).resize((columns * w * 4, rows * h * 4), Image.NEAREST).save(path)


def before_after_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per scorer: base and trained means with 95% intervals, and the paired difference (same prompt and seed)."""
    from bench.evaluations.runs import paired_steps

    rows = []
    final = df.step.max()
    for scorer, part in df.groupby("scorer", sort=False):
        joined = paired_steps(part, final)
        rows.append(
            {"scorer": scorer, "base": bootstrap_ci(joined.base), "tuned": bootstrap_ci(joined.tuned),
             "change": paired_difference_ci(joined.tuned, joined.base), "n": len(joined)}
        )  # fmt: skip
    return pd.DataFrame(rows)


def format_ci(ci) -> str:
    mean, lo, hi = ci
    return f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _load_run(run_dir: Path) -> dict:
    from bench.errors import BenchError
    from bench.evaluations.runs import read_config

    config = read_config(run_dir)
    if not (run_dir / "lora").is_dir():
        raise BenchError(f"{run_dir} is not a finished run folder (expected config.yaml and lora/)")
    return config


def snapshot_steps(run_dir: Path) -> dict[int, Path]:
    """The LoRA snapshots a run kept (``snapshot_every``), by update."""
    folders = sorted((Path(run_dir) / "snapshots").glob("update-*"))
    return {int(f.name.split("-")[1]): f for f in folders if (f / "pytorch_lora_weights.safetensors").is_file()}


def run_evaluation(
    run_dir: Path, prompts, split, samples: int, scorers, echo=print, snapshots: bool = False, use_cache: bool = True
) -> pd.DataFrame:
    """Sample the pretrained model (step 0) and the run's LoRA (its last update) on the same evaluation seeds,
    score both, write ``eval.parquet`` and sample grids, and print the before/after table. With ``snapshots``,
    the LoRA snapshots kept during training are scored too (rows with their update as ``step``). The pretrained
    model's rows come from the evaluation cache (``bench.evalcache``) when this machine has scored the same model,
    sampler, prompts, seeds and scorers before, unless ``use_cache`` is False."""
    import json

    from bench.config import SamplingConfig, build, to_dict
    from bench.models import load_pipeline
    from bench.prompts import load_prompts
    from bench.registry import SCORERS
    from bench.results import atomic_write

    cfg = _load_run(run_dir)
    spec = prompts or cfg["prompts"]
    split = split or ("train" if prompts is None else spec)
    prompt_list = load_prompts(spec, cfg.get("world") or None)
    names = scorers.split(",") if scorers else [cfg["reward"], *cfg.get("eval_scorers", [])]
    scorer_objs = [SCORERS.get(name.strip())() for name in dict.fromkeys(names)]
    sampling = build(SamplingConfig, cfg["sampling"])
    rows = (run_dir / "train.jsonl").read_text().splitlines()
    final_step = json.loads(rows[-1])["update"] if rows else 0
    frames = []
    loras = {**(snapshot_steps(run_dir) if snapshots else {}), final_step: run_dir / "lora"}
    grid_names = [f"{split}-{''.join(c if c.isalnum() else '_' for c in prompt)[:60]}.png" for prompt in prompt_list]
    key = None
    if use_cache and evalcache.cache_root() is not None:
        key = evalcache.entry_key(cfg["model_path"], to_dict(sampling), prompt_list, samples, SAMPLE_BATCH, scorer_objs)
    for step in (0, *sorted(s for s in loras if s)):
        folder = run_dir / "samples" / f"step{step}"
        folder.mkdir(parents=True, exist_ok=True)
        cached = evalcache.load(key) if step == 0 and key is not None else None
        if cached is not None:  # the pretrained model's rows and grids from an earlier run on this machine
            scored, grids = cached
            frames.append(scored.assign(run=run_dir.name, step=0, split=split))
            for i, name in enumerate(grid_names):
                shutil.copyfile(grids / f"{i}.png", folder / name)
            echo(f"pretrained model: {len(scored)} scores from the evaluation cache ({evalcache.cache_root()})")
            continue
        pipe = load_pipeline(cfg["model_path"])
        if step:
            pipe.load_lora_weights(str(loras[step]))
        images, ps, seeds = sample(pipe, prompt_list, samples, sampling, SAMPLE_BATCH)
        scored = score(images, ps, seeds, scorer_objs)
        frames.append(scored.assign(run=run_dir.name, step=step, split=split))
        for i, name in enumerate(grid_names):
            save_grid(images[i * samples : (i + 1) * samples], folder / name)
        if step == 0 and key is not None:
            evalcache.store(key, scored, [folder / name for name in grid_names])
    new = pd.concat(frames, ignore_index=True)
    path = run_dir / "eval.parquet"
    if path.exists():  # keep other splits and scorers; replace what was just re-measured
        old = pd.read_parquet(path)
        keep = ~old.set_index(["step", "split", "scorer"]).index.isin(new.set_index(["step", "split", "scorer"]).index)
        new = pd.concat([old[keep], new], ignore_index=True)
    columns = ["run", "step", "split", "prompt", "seed", "scorer", "scorer_version", "value"]
    atomic_write(path, lambda tmp: new[columns].to_parquet(tmp, index=False))
    table = before_after_table(new[new.split == split])
    echo(f"{split}: {len(prompt_list)} prompts x {samples} fresh seeds; mean [95% bootstrap interval]")
    echo(f"{'scorer':16s} {'pretrained':>24s} {'fine-tuned':>24s} {'change (paired)':>24s}")
    for row in table.itertuples():
        echo(f"{row.scorer:16s} {format_ci(row.base):>24s} {format_ci(row.tuned):>24s} {format_ci(row.change):>24s}")
    return table
