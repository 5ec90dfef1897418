"""The Stable Diffusion world: any StableDiffusionPipeline folder (SD v1.5 in the paper), ImageReward as the
training reward, the aesthetic predictor and oversaturation for judging, and the paper's prompt sets.

Its settings are the method Config defaults, which follow the official DPOK code (tuned on SD v1.5 at 512 px), and
the sampler's defaults (DDIM 50 steps, guidance 7.5, eta 1); ``settings/world.yaml`` adds the reward and prompts.
There is no gold measure here: what the reward says is all a run can be judged by, besides the other scorers.
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import BenchError
from bench.world import World

HERE = Path(__file__).resolve().parent


class StableDiffusionWorld(World):
    """Stable Diffusion pipelines of your own (SD v1.5 in the paper), ImageReward, the paper's prompt sets."""

    name = "sd"
    summary = "Stable Diffusion (a pipeline folder or cached hub id), ImageReward, the paper's prompt sets"
    prompt_dirs = (HERE / "prompts",)
    settings_dir = HERE / "settings"

    def model_path(self, model: str) -> str | None:
        if not model:
            raise BenchError(
                "the sd world has no model of its own: pass --model with a StableDiffusionPipeline folder "
                "(or a hub id in the local cache, e.g. runwayml/stable-diffusion-v1-5)"
            )
        return None
