"""LoRA saved by a run reproduces the fine-tuned images in a fresh pipeline via load_lora_weights."""

from pathlib import Path

import torch
from cli_helpers import TINY_DPOK, run_cli
from conftest import randomize_lora
from diffusers import DDIMScheduler, StableDiffusionPipeline

from bench.config import SamplingConfig
from bench.models import add_lora, load_pipeline, save_lora
from bench.sampling import PromptCache, rollout

PROMPTS = ["a red circle", "a blue square"]
SEEDS = [7, 8]
SAMPLING = SamplingConfig(num_steps=4, guidance_scale=3.0, eta=1.0)


def _fresh_with_lora(tiny_sd, lora_dir):
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd), safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(lora_dir))
    gens = [torch.Generator().manual_seed(s) for s in SEEDS]
    return pipe(PROMPTS, num_inference_steps=4, guidance_scale=3.0, eta=1.0, generator=gens, output_type="pt").images


def test_rank_and_alpha_survive_the_round_trip(tiny_sd, tmp_path):
    pipe = load_pipeline(str(tiny_sd))
    base = rollout(pipe, PROMPTS, SEEDS, SAMPLING, PromptCache(pipe), reference=False).images
    add_lora(pipe.unet, rank=4, alpha=8.0, targets=("to_q", "to_k", "to_v", "to_out.0"))  # scale alpha/r = 2
    randomize_lora(pipe.unet, scale=0.2)
    ours = rollout(pipe, PROMPTS, SEEDS, SAMPLING, PromptCache(pipe), reference=False).images
    save_lora(pipe.unet, tmp_path / "lora")
    loaded = _fresh_with_lora(tiny_sd, tmp_path / "lora")
    assert (ours - base).abs().max().item() > 1e-2  # the adapter changes the images
    assert (ours - loaded).abs().max().item() <= 1e-5


def test_trained_run_lora_loads_in_a_fresh_pipeline(capsys, tmp_path, tiny_sd):
    args = ["run", "--method", "dpok", "--model", str(tiny_sd), "--steps", "2", "--results-dir", str(tmp_path),
            "--prompts", "|".join(PROMPTS), "--lr", "0.05"] + TINY_DPOK  # fmt: skip
    code, out, err = run_cli(capsys, args)
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1].removeprefix("run folder: "))
    pipe = load_pipeline(str(tiny_sd))
    base = rollout(pipe, PROMPTS, SEEDS, SAMPLING, PromptCache(pipe), reference=False).images
    state = torch.load(run_dir / "checkpoint" / "state.pt", weights_only=False)
    add_lora(pipe.unet, rank=4, alpha=4.0, targets=("to_q", "to_k", "to_v", "to_out.0"))
    result = pipe.unet.load_state_dict(state["lora"], strict=False)
    assert not result.unexpected_keys and len(state["lora"]) > 0
    trained = rollout(pipe, PROMPTS, SEEDS, SAMPLING, PromptCache(pipe), reference=False).images
    loaded = _fresh_with_lora(tiny_sd, run_dir / "lora")
    assert (trained - base).abs().max().item() > 1e-4  # training moved the model
    assert (trained - loaded).abs().max().item() <= 1e-5
