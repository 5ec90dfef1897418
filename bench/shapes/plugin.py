"""The shapes world as a plugin of the suite (``--world shapes``, the default): its model, scorers, prompt sets,
settings and commands. Everything it names lives in this folder (bench/shapes/)."""

from __future__ import annotations

from bench.shapes.paths import HERE, MODEL_NAME, shipped_model
from bench.world import World


class ShapesWorld(World):
    """Coloured shapes on backgrounds: a tiny shipped Stable Diffusion, a gold oracle and a learned proxy reward."""

    name = "shapes"
    summary = "coloured shapes on backgrounds: a tiny shipped SD, a gold oracle, a learned proxy reward (offline, CPU)"
    scorers = {
        "shapes-reward": "bench.shapes.proxy:ShapesReward",
        "shapes-oracle": "bench.shapes.oracle:ShapesOracle",
        "shapes-quality": "bench.shapes.quality:ShapesQuality",
        "shapes-stereotype": "bench.shapes.bias:StereotypeScorer",
        "shapes-colour": "bench.shapes.bias:ShapesColourLabel",
        "shapes-background": "bench.shapes.bias:ShapesBackgroundLabel",
    }
    prompt_dirs = (HERE / "prompts",)
    settings_dir = HERE / "settings"

    def model_path(self, model: str) -> str | None:
        return shipped_model() if model in ("", MODEL_NAME) else None

    def commands(self):
        from bench.shapes.commands import app

        return app
