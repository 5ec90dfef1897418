"""Shared fixtures: a tiny random Stable Diffusion built from configs, saved as a pipeline folder."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("BENCH_EVAL_CACHE", "off")  # tests never read or fill the user's cache; test_eval_cache sets one

import pytest  # noqa: E402
import torch  # noqa: E402

# `make test` runs the suite in pytest-xdist workers, one per core: each worker's torch gets its share of the cores,
# so the workers never oversubscribe them. Tests of the two-thread paths (the reference beside the policy, two
# backward groups side by side) ask for them with the `two_threads` fixture.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    torch.set_num_threads(max(1, torch.get_num_threads() // _WORKERS))

WORDS = ["a", "red", "blue", "green", "circle", "square", "and", "the", "on", "moon", "four", "cat", "dog"]


def build_tiny_pipeline(folder, seed: int = 0):
    """Write a tiny random StableDiffusionPipeline (all components built from configs) to ``folder``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from bench.shapes.tokenizer import write_clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    )
    tokenizer = write_clip_tokenizer(folder / "tokenizer_src", WORDS, max_length=12)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=12,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder / "pipe")
    return folder / "pipe"


@pytest.fixture()
def two_threads():
    """Two torch threads for one test (the paths that split them in halves), then the worker's own setting."""
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """Path to a tiny random pipeline folder (16 px images, 8x8x4 latents)."""
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture()
def tiny_pipe(tiny_sd):
    """A freshly loaded tiny pipeline (DDIM, frozen, no adapters)."""
    from bench.models import load_pipeline

    return load_pipeline(str(tiny_sd))


def randomize_lora(unet, scale: float = 0.2, seed: int = 0) -> None:
    """Give every LoRA weight a random value so the adapted policy differs visibly from the reference."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
