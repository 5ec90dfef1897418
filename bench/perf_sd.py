"""`bench perf --sd15`: DPOK on Stable Diffusion v1.5's architecture at 512 px, with random weights (no download).

The UNet, VAE, text encoder and scheduler are built from SD v1.5's published configs (``unet/config.json``,
``vae/config.json``, ``text_encoder/config.json``, ``scheduler/scheduler_config.json`` of the v1.5 release); the
tokenizer is a small CLIP BPE tokenizer written here (77 tokens, as CLIP's), since CLIP's vocabulary is a
download. Speed and memory depend on the architecture and the sizes, not on the weights' values.

On CPU one configuration runs (batch 1, 2 denoising steps, gradient checkpointing, fp32): its round time by phase
and peak resident memory. On an accelerator a grid runs: batch 1, 4, 8 x fp16, bf16 x gradient checkpointing on,
off, at 50 DDIM steps (the paper's), reporting images per second and the device's max allocated memory.
Every cell trains all of its round's transitions once (micro-batches of the batch size), recomputing the forward
(``on_policy_graph=off``: the graph of 50 steps at 512 px does not fit), beta 0.01, value baseline.
"""

from __future__ import annotations

import contextlib
import datetime
import tempfile
import time
from pathlib import Path

import torch

SD15_UNET = {"sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
             "block_out_channels": (320, 640, 1280, 1280), "attention_head_dim": 8, "cross_attention_dim": 768,
             "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                  "DownBlock2D"),
             "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
             "norm_num_groups": 32, "act_fn": "silu", "flip_sin_to_cos": True, "freq_shift": 0}  # fmt: skip
SD15_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
            "block_out_channels": (128, 256, 512, 512), "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4, "norm_num_groups": 32, "sample_size": 512,
            "scaling_factor": 0.18215}  # fmt: skip
SD15_TEXT = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
             "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 768}  # fmt: skip
SD15_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": False,
                  "set_alpha_to_one": False, "steps_offset": 1, "num_train_timesteps": 1000}  # fmt: skip
WORDS = ["a", "photo", "of", "cat", "dog", "green", "red", "rabbit", "on", "the", "moon", "four", "roses"]


def write_sd15(folder: Path, unet=SD15_UNET, vae=SD15_VAE, text=SD15_TEXT, seed: int = 0) -> Path:
    """Save a random-weight pipeline of SD v1.5's architecture (or of the given configs) to ``folder``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from bench.shapes.tokenizer import write_clip_tokenizer

    torch.manual_seed(seed)
    tokenizer = write_clip_tokenizer(folder / "tokenizer_src", WORDS, max_length=text["max_position_embeddings"])
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**vae),
        text_encoder=CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), **text, **ids)),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**unet),
        scheduler=DDIMScheduler(**SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder / "pipe")
    return folder / "pipe"


@contextlib.contextmanager
def fresh_accelerator_state():
    """accelerate keeps one mixed-precision setting per process and refuses another; the grid times fp16, bf16 and
    fp32 cells in one process, so each cell starts from a clean state and leaves one (the process group stays)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    try:
        yield
    finally:
        AcceleratorState._reset_state()


def dpok_round(model_path: str, *, batch: int, steps: int, checkpointing: bool, precision: str, rounds: int = 2):
    """Time ``rounds`` DPOK rounds (the first a warm-up) on ``model_path``; phases and peak memory of the last."""
    from bench.perf import time_rounds

    method = ["--samples-per-round", str(batch), "--batch-size", str(batch), "--grad-accum", str(steps),
              "--buffer-size", str(batch * steps), "--updates-per-round", "1", "--on-policy-graph", "off",
              "--value-batch-size", str(batch * steps), "--beta", "0.01"]  # fmt: skip
    sets = [f"sampling.num_steps={steps}", "sampling.guidance_scale=7.5", "sampling.eta=1.0",
            f"gradient_checkpointing={str(checkpointing).lower()}", f"mixed_precision={precision}"]  # fmt: skip
    prompts = ["a photo of a cat", "a green rabbit"]
    common = {"method": "dpok", "model": model_path, "prompts": "|".join(prompts), "reward": "compressibility",
              "steps": rounds}  # fmt: skip
    with fresh_accelerator_state():
        per_round, peak = time_rounds(common, sets, method, model_path, prompts)
    last = per_round[-1]
    out = {"batch": batch, "steps": steps, "gradient_checkpointing": checkpointing, "precision": precision,
           "phases_s": last, "images_per_s": batch / last["round"], "peak_rss_mb": peak.peak_rss / 2**20}  # fmt: skip
    if peak.peak_device is not None:
        out["device_max_allocated_mb"] = peak.peak_device / 2**20
    return out


def sd15_cells(device_type: str, quick: bool) -> list[dict]:
    """The configurations `bench perf --sd15` times: one on CPU; on an accelerator batch x precision x checkpointing."""
    if device_type == "cpu":
        return [dict(batch=1, steps=2, checkpointing=True, precision="no")]
    batches = (1, 4) if quick else (1, 4, 8)
    return [dict(batch=b, steps=50, checkpointing=gc, precision=p)
            for p in ("fp16", "bf16") for gc in (True, False) for b in batches]  # fmt: skip


def _now() -> float:
    return time.time()


#: `bench perf --sd15` on an accelerator stops starting cells after this many seconds (the issue's 8-minute script)
ACCELERATOR_BUDGET_S = 450.0


def run_sd15(out_dir: Path, device: str, quick: bool, echo, model_path: str | None = None,
             budget_s: float | None = None) -> Path:  # fmt: skip
    """Write ``sd15-<device>-<date>.json`` (on an accelerator ``gpu-<device>-sd15-<date>.json``) and ``.md`` into
    ``out_dir``, again after every cell, so a run stopped from outside keeps the cells it finished. ``budget_s``
    (default: none on CPU, ``ACCELERATOR_BUDGET_S`` elsewhere): a cell is not started when the time so far plus its
    estimate (the last cell's time at its batch, else the last cell's scaled by batch) would pass it; it is reported
    as not run."""
    from bench.perf import device_name

    dev = torch.device(device)
    budget_s = budget_s if budget_s is not None else (None if dev.type == "cpu" else ACCELERATOR_BUDGET_S)
    start = _now()
    today = datetime.date.today().isoformat()
    stem = f"sd15-{device_name(dev)}-{today}" if dev.type == "cpu" else f"gpu-{device_name(dev)}-sd15-{today}"
    results: list[dict] = []
    took: dict[int, float] = {}  # batch -> seconds of the last cell at that batch that ran
    last_batch: int | None = None  # the batch of the last cell that ran
    with tempfile.TemporaryDirectory() as tmp:
        if model_path is None:
            echo("sd15: building SD v1.5's architecture with random weights ...")
            model_path = str(write_sd15(Path(tmp)))
        for cell in sd15_cells(dev.type, quick):
            # the last cell at this batch, else the last cell scaled by batch (sampling and update grow with it)
            scaled = took[last_batch] * cell["batch"] / last_batch if last_batch else 0.0
            estimate = took.get(cell["batch"], scaled)
            if budget_s is not None and _now() - start + estimate > budget_s:
                echo(f"sd15: {cell}: not run (about {estimate:.0f} s more would pass the {budget_s:.0f} s budget)")
                results.append(cell | {"error": f"not run: over the {budget_s:.0f} s budget"})
                continue
            echo(f"sd15: {cell}")
            began = _now()
            try:
                results.append(dpok_round(model_path, **cell))
                took[cell["batch"]], last_batch = _now() - began, cell["batch"]
            except torch.OutOfMemoryError as exc:  # a cell that does not fit is reported, the others still run
                results.append(cell | {"error": f"out of memory: {str(exc).splitlines()[0]}"})
                torch.cuda.empty_cache()
            _write_sd15(out_dir, stem, dev, results, quick, _now() - start, budget_s)
    return _write_sd15(out_dir, stem, dev, results, quick, _now() - start, budget_s)


def _write_sd15(out_dir: Path, stem: str, dev, results: list[dict], quick: bool, wall: float, budget_s) -> Path:
    from bench.perf import device_name
    from bench.results import env_info, write_json, write_text

    report = {"device": device_name(dev), "env": env_info(str(dev), 1), "cells": results, "quick": quick,
              "budget_s": budget_s, "wall_seconds": wall}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / f"{stem}.json", report)
    lines = [f"# bench perf --sd15 on {report['device']}", "", "SD v1.5 architecture, random weights, 512 px. "
             f"{report['wall_seconds']:.0f} s in all"
             + (f" (no cell started past {budget_s:.0f} s)." if budget_s is not None else "."), "",
             "| batch | steps | grad. ckpt | precision | round s | images/s | peak RSS MB | device max MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in results:
        if "error" in r:
            lines.append(f"| {r['batch']} | {r['steps']} | {r['checkpointing']} | {r['precision']} | {r['error']} |||")
            continue
        lines.append(f"| {r['batch']} | {r['steps']} | {r['gradient_checkpointing']} | {r['precision']} | "
                     f"{r['phases_s']['round']:.2f} | {r['images_per_s']:.3f} | {r['peak_rss_mb']:.0f} | "
                     f"{r.get('device_max_allocated_mb', 0):.0f} |")  # fmt: skip
    write_text(out_dir / f"{stem}.md", "\n".join(lines) + "\n")
    return out_dir / f"{stem}.json"
