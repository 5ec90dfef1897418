"""Where the shapes world keeps what it ships: its folder, the pretrained model, and the model's name."""

from __future__ import annotations

from pathlib import Path

from bench.errors import BenchError

HERE = Path(__file__).resolve().parent
MODEL = HERE / "model"  # the shipped tiny Stable Diffusion (`bench shapes pretrain` writes it)
MODEL_NAME = "shapes"  # --model shapes (the world's default) means MODEL


def shipped_model() -> str:
    """The shipped model's folder, or a clear error when it is missing."""
    if not (MODEL / "model_index.json").is_file():
        raise BenchError(
            f"the shipped shapes model is missing ({MODEL} has no model_index.json); "
            "run `bench shapes pretrain` or pass --model PATH"
        )
    return str(MODEL)


def model_folder(model: str = MODEL_NAME) -> str:
    """``shapes`` (the shipped model) or any pipeline folder, as a local folder."""
    from bench.models import resolve_model

    return shipped_model() if model in ("", MODEL_NAME) else resolve_model(model)
