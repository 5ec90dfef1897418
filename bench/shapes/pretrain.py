"""`bench shapes pretrain`: train the shapes world's tiny Stable Diffusion from scratch, offline, on CPU.

Stages: (1) a factor-2 AutoencoderKL on rendered scenes (32 px RGB -> 16 x 16 x 4 latents), half from the skewed
pretraining distribution and half from the whole grammar, so rare scenes still reconstruct; its latent scaling
factor is set to 1 / std of the latents, as for SD. (2) A CLIPTextModel and a UNet2DConditionModel trained
jointly on the pretraining distribution (bench/shapes/world.py) with the epsilon-prediction loss, caption dropout
for classifier-free guidance, and an EMA of the weights. The result is saved with ``save_pretrained`` (fp16
safetensors, to stay small) together with the tokenizer the project writes from the grammar and a DDIM scheduler,
so ``StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32)`` loads it like SD v1.5.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.config import param
from bench.errors import BenchError
from bench.shapes.grammar import grammar_words
from bench.shapes.render import rasterise
from bench.shapes.tokenizer import write_clip_tokenizer
from bench.shapes.world import (
    NAMED_BACKGROUND_WEIGHTS,
    P_MOON_STEREOTYPE,
    pretraining_pairs,
    random_caption,
    scene_from_caption,
)


@dataclass(frozen=True)
class ShapesModelConfig:
    """Sizes and budgets of the shapes model; the defaults are the shipped model's."""

    image_size: int = param(32, "image side in pixels")
    vae_channels: tuple[int, ...] = param((32, 64), "AutoencoderKL block widths (2 blocks: factor-2 latents)")
    latent_channels: int = param(4, "latent channels, as SD")
    unet_channels: tuple[int, ...] = param((32, 64, 128), "UNet block widths; cross-attention off the top level")
    text_hidden: int = param(64, "CLIP text width = UNet cross-attention width")
    text_layers: int = param(2, "CLIP text layers")
    max_tokens: int = param(16, "tokenizer max length (the longest shipped prompt is 15 tokens)")
    vae_steps: int = param(1500, "VAE optimiser steps")
    vae_batch: int = param(64, "VAE batch size")
    vae_lr: float = param(1e-3, "VAE AdamW learning rate")
    vae_kl: float = param(1e-6, "weight of the VAE's KL term (SD uses a tiny one too)")
    unet_steps: int = param(6000, "UNet + text encoder optimiser steps")
    unet_batch: int = param(64, "UNet batch size")
    unet_lr: float = param(3e-4, "UNet + text encoder AdamW learning rate")
    caption_dropout: float = param(0.1, "share of captions replaced by '' (for guidance)")
    ema_decay: float = param(0.999, "EMA decay of the saved UNet and text encoder weights")
    seed: int = param(0, "seed for data and initialisation")
    moon: float = param(NAMED_BACKGROUND_WEIGHTS["moon"], "share of named backgrounds that are the moon (world.py)")
    moon_stereotype: float = param(P_MOON_STEREOTYPE, "share of moon captions drawn as one yellow circle")
    unusual_colour: float = param(0.0, "share of coloured phrases captioned in an unusual colour for the shape")
    init: str = param("", "warm start from this model folder: VAE kept, UNet + text encoder trained on ('': none)")


TINY = ShapesModelConfig(
    vae_channels=(8, 16), unet_channels=(16, 32, 32), text_hidden=16, vae_steps=2, vae_batch=4, unet_steps=2,
    unet_batch=4,
)  # fmt: skip


def build_components(cfg: ShapesModelConfig, tokenizer):
    """Untrained VAE, text encoder, UNet and the DDIM scheduler (SD v1.5's noise schedule)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(cfg.seed)
    n = len(cfg.vae_channels)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=cfg.vae_channels, layers_per_block=1,
        latent_channels=cfg.latent_channels, norm_num_groups=8, sample_size=cfg.image_size,
    )  # fmt: skip
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=cfg.text_hidden * 4,
            num_hidden_layers=cfg.text_layers, num_attention_heads=4, max_position_embeddings=cfg.max_tokens,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )  # fmt: skip
    levels = len(cfg.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=cfg.image_size // 2 ** (n - 1), in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
        block_out_channels=cfg.unet_channels, layers_per_block=1,
        # self-attention at the top resolution dominates CPU time, so the top level is convolution only
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        cross_attention_dim=cfg.text_hidden, attention_head_dim=8,
        norm_num_groups=16 if min(cfg.unet_channels) >= 16 else 8,
    )  # fmt: skip
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )  # fmt: skip
    return vae, text_encoder, unet, scheduler


def _images(scenes, size: int) -> torch.Tensor:
    """Scenes -> float NCHW in [-1, 1] (the VAE's range)."""
    array = rasterise(scenes, size)
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _vae_batch(pairs, rng: random.Random, n: int, size: int) -> torch.Tensor:
    half = n // 2
    scenes = [next(pairs)[1] for _ in range(half)]
    scenes += [scene_from_caption(random_caption(rng), rng, "uniform", size) for _ in range(n - half)]
    return _images(scenes, size)


def _pairs(cfg: ShapesModelConfig, seed: int):
    """The pretraining stream for ``seed`` with the config's image size and distribution settings."""
    return pretraining_pairs(seed, cfg.image_size, cfg.moon, cfg.moon_stereotype, cfg.unusual_colour)


def train_vae(vae, cfg: ShapesModelConfig, log) -> dict:
    """Reconstruction (MSE + L1) plus a tiny KL; returns the final losses and the latent scaling factor."""
    pairs, rng = _pairs(cfg, cfg.seed + 1), random.Random(cfg.seed + 2)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    vae.train()
    recent = []
    for step in range(cfg.vae_steps):
        x = _vae_batch(pairs, rng, cfg.vae_batch, cfg.image_size)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        rec = F.mse_loss(recon, x) + F.l1_loss(recon, x)
        loss = rec + cfg.vae_kl * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        recent = (recent + [rec.item()])[-50:]
        log("vae", step + 1, cfg.vae_steps, float(np.mean(recent)))
    vae.eval()
    with torch.no_grad():
        x = _vae_batch(pairs, rng, 512, cfg.image_size)
        latents = vae.encode(x).latent_dist.sample()
        error = (vae.decode(latents).sample - x).abs().mean().item()
    scale = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scale)
    return {"vae_recon_l1": error, "scaling_factor": scale}


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1.0 - decay)


def train_diffusion(vae, text_encoder, unet, scheduler, tokenizer, cfg: ShapesModelConfig, log):
    """Joint text-encoder + UNet training; returns EMA copies of both and the final loss."""
    pairs, rng = _pairs(cfg, cfg.seed + 3), random.Random(cfg.seed + 4)
    vae.requires_grad_(False)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.0)
    warmup = max(1, cfg.unet_steps // 30)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    unet.train()
    text_encoder.train()
    gen = torch.Generator().manual_seed(cfg.seed + 5)
    recent = []
    for step in range(cfg.unet_steps):
        batch = [next(pairs) for _ in range(cfg.unet_batch)]
        captions = ["" if rng.random() < cfg.caption_dropout else c for c, _ in batch]
        with torch.no_grad():
            x0 = vae.encode(_images([s for _, s in batch], cfg.image_size)).latent_dist.sample(gen)
            x0 = x0 * vae.config.scaling_factor
        ids = tokenizer(captions, padding="max_length", max_length=cfg.max_tokens, truncation=True, return_tensors="pt")
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=gen)
        pred = unet(scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=text_encoder(ids.input_ids)[0]).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        _ema_update(ema_unet, unet, cfg.ema_decay if step > warmup else 0.0)
        _ema_update(ema_text, text_encoder, cfg.ema_decay if step > warmup else 0.0)
        recent = (recent + [loss.item()])[-100:]
        log("unet", step + 1, cfg.unet_steps, float(np.mean(recent)))
    return ema_unet.eval(), ema_text.eval(), {"unet_loss": float(np.mean(recent))}


def _load_as_float32(folder: Path) -> None:
    """Make a plain ``from_pretrained(folder)`` load the text encoder in float32 like the UNet and VAE.

    transformers loads a model in the dtype its config.json names (float16 after the save above) while diffusers
    loads its models in float32, so without this the pipeline's first call fails on mixed dtypes. The weights stay
    float16 on disk and are cast on load.
    """
    path = folder / "text_encoder" / "config.json"
    config = json.loads(path.read_text())
    for key in ("dtype", "torch_dtype"):
        if key in config:
            config[key] = "float32"
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _quiet():
    """Silence diffusers' notice about casting to fp16 (nothing in these models must stay fp32)."""
    import contextlib

    from diffusers.utils import logging

    @contextlib.contextmanager
    def scope():
        level = logging.get_verbosity()
        logging.set_verbosity_error()
        try:
            yield
        finally:
            logging.set_verbosity(level)

    return scope()


def load_components(folder: str | Path):
    """VAE, text encoder, UNet and scheduler of a saved shapes model, in float32 and trainable (a warm start)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = Path(folder)
    if not (folder / "unet").is_dir():
        raise BenchError(f"warm start: {folder} is not a saved shapes model (no unet/ folder)")
    kwargs = {"torch_dtype": torch.float32}
    return (
        AutoencoderKL.from_pretrained(folder / "vae", **kwargs),
        CLIPTextModel.from_pretrained(folder / "text_encoder", **kwargs),
        UNet2DConditionModel.from_pretrained(folder / "unet", **kwargs),
        DDIMScheduler.from_pretrained(folder / "scheduler"),
    )


def pretrain(out: str | Path, cfg: ShapesModelConfig, log=lambda *a: None) -> dict:
    """Train every stage and save the pipeline to ``out``; returns the measured numbers for the model card.

    With ``cfg.init`` the VAE, text encoder and UNet are read from that folder first (it may be ``out`` itself)
    and only the diffusion stage runs, on this config's distribution; the stats keep the first model's own under
    ``init`` so the card can describe both stages.
    """
    from diffusers import StableDiffusionPipeline

    from bench.models import model_fingerprint

    out = Path(out)
    torch.manual_seed(cfg.seed)
    stats: dict = {"config": dataclasses.asdict(cfg)}
    if cfg.init:
        components = load_components(cfg.init)  # read everything before out/ is written (out may be init)
        init_stats = Path(cfg.init) / "pretrain_stats.json"
        stats["init"] = json.loads(init_stats.read_text()) if init_stats.is_file() else {}
        stats["init_fingerprint"] = model_fingerprint(cfg.init, weights_only=True)  # which weights it started from
    tokenizer = write_clip_tokenizer(out / "tokenizer", grammar_words(), max_length=cfg.max_tokens)
    if cfg.init:
        vae, text_encoder, unet, scheduler = components
        for key in ("vae_recon_l1", "scaling_factor"):
            if key in stats["init"]:
                stats[key] = stats["init"][key]
        stats["vae_minutes"] = 0.0
    else:
        vae, text_encoder, unet, scheduler = build_components(cfg, tokenizer)
        start = time.time()
        stats.update(train_vae(vae, cfg, log))
        stats["vae_minutes"] = (time.time() - start) / 60
    start = time.time()
    unet, text_encoder, diffusion = train_diffusion(vae, text_encoder, unet, scheduler, tokenizer, cfg, log)
    stats.update(diffusion)
    stats["unet_minutes"] = (time.time() - start) / 60
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    with _quiet():
        pipe.to(dtype=torch.float16)  # halves the shipped size; every component loads back as float32
        pipe.save_pretrained(out, safe_serialization=True)
    _load_as_float32(Path(out))
    stats["parameters"] = {
        name: sum(p.numel() for p in module.parameters())
        for name, module in (("vae", vae), ("text_encoder", text_encoder), ("unet", unet))
    }
    return stats
