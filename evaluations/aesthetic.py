"""LAION aesthetic predictor v2: a linear MLP on L2-normalised CLIP ViT-L/14 image embeddings.

Source: https://github.com/christophschuhmann/improved-aesthetic-predictor (``simple_inference.py``), weights
``sac+logos+ava1-l14-linearMSE.pth`` (a state dict with keys ``layers.{0,2,4,6,7}.{weight,bias}``), trained on
SAC, LAION-Logos and AVA ratings (1-10 scale). Used as the aesthetic reward by DDPO (Black et al. 2023) and as
an evaluation metric in the DPOK paper. The image embedding is OpenAI CLIP's ``encode_image``, which is
transformers' ``CLIPVisionModelWithProjection(...).image_embeds`` (the projected, post-LayerNorm class token).

Departures:
1. CLIP runs from transformers (``openai/clip-vit-large-patch14``) instead of OpenAI's ``clip`` package; same
   weights and computation.
2. ``preprocessing="tensor"`` (the default, differentiable) resizes with torch's antialiased bicubic on float
   images; ``preprocessing="pil"`` follows CLIP's PIL path exactly (see ``clip_preprocess.py``).
3. Files are only looked up locally, never downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from bench.errors import BenchError
from bench.evaluations.clip_preprocess import check_preprocessing, preprocess
from bench.evaluations.reward_mlp import RewardMLP
from bench.scoring import Scorer

WEIGHTS_FILE = "sac+logos+ava1-l14-linearMSE.pth"
WEIGHTS_ENV = "BENCH_AESTHETIC_DIR"
DEFAULT_FOLDER = "~/.cache/bench/aesthetic"
CLIP_REPO = "openai/clip-vit-large-patch14"


def find_weights(weights: str | os.PathLike | None) -> Path:
    """Locate the MLP weights in ``weights``, else $BENCH_AESTHETIC_DIR, else ~/.cache/bench/aesthetic.

    Raises:
        BenchError: one line naming the folder it looked in and the file it needs.
    """
    folder = Path(weights or os.environ.get(WEIGHTS_ENV) or DEFAULT_FOLDER).expanduser()
    if folder.is_file():  # the file itself was given
        return folder
    if not (folder / WEIGHTS_FILE).is_file():
        raise BenchError(
            f"aesthetic predictor weights not found: {WEIGHTS_FILE} is not in {folder} "
            f"(pass weights=<folder> or set {WEIGHTS_ENV})"
        )
    return folder / WEIGHTS_FILE


def load_clip(source: str | os.PathLike):
    """CLIP's vision tower with its projection, from a local folder or the Hugging Face cache only."""
    from transformers import CLIPVisionModelWithProjection

    try:
        return CLIPVisionModelWithProjection.from_pretrained(str(source), local_files_only=True)
    except OSError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BenchError(f"aesthetic: cannot load CLIP from {source} offline: {first_line}") from None


class AestheticScorer(Scorer):
    """Predicted LAION aesthetic rating (about 1-10), higher is better.

    Args:
        device: where the models run.
        weights: folder holding ``sac+logos+ava1-l14-linearMSE.pth``; default $BENCH_AESTHETIC_DIR, then
            ~/.cache/bench/aesthetic.
        clip: CLIP folder or hub id (read from the local cache only); default ``<weights>/clip`` when that
            folder exists, else openai/clip-vit-large-patch14.
        preprocessing: ``"tensor"`` (differentiable) or ``"pil"`` (CLIP's exact PIL path, no gradients).
        dtype: dtype of the CLIP tower; the MLP and the returned scores stay float32.
    """

    name = "aesthetic"
    version = "1"
    role = "quality"  # the paper's image-quality measure (LAION aesthetic predictor)
    differentiable = True
    higher_is_better = True

    def __init__(
        self,
        device: torch.device | str = "cpu",
        weights: str | os.PathLike | None = None,
        clip: str | os.PathLike | None = None,
        preprocessing: str = "tensor",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(device)
        check_preprocessing("aesthetic", preprocessing)
        path = find_weights(weights)
        if clip is None:
            clip = path.parent / "clip" if (path.parent / "clip").is_dir() else CLIP_REPO
        clip_model = load_clip(clip)
        state = torch.load(path, map_location="cpu", weights_only=True)
        mlp = RewardMLP(clip_model.config.projection_dim)
        try:
            mlp.load_state_dict(state)
        except RuntimeError as error:
            first_line = str(error).splitlines()[0]
            raise BenchError(f"{path} does not match the aesthetic MLP: {first_line}") from None
        self._setup(clip_model, mlp, preprocessing, dtype)

    @classmethod
    def from_models(
        cls,
        clip_model: nn.Module,
        mlp: RewardMLP,
        device: torch.device | str = "cpu",
        preprocessing: str = "tensor",
        dtype: torch.dtype = torch.float32,
    ) -> AestheticScorer:
        """Wrap already built models (tests use a tiny random CLIP and MLP)."""
        scorer = cls.without_weights(device)
        scorer._setup(clip_model, mlp, preprocessing, dtype)
        return scorer

    def _setup(self, clip_model: nn.Module, mlp: RewardMLP, preprocessing: str, dtype: torch.dtype) -> None:
        self.clip = clip_model.to(self.device, dtype).eval().requires_grad_(False)
        self.mlp = mlp.to(self.device, torch.float32).eval().requires_grad_(False)
        self.preprocessing = preprocessing
        self.dtype = dtype

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised CLIP image embeddings (N, projection_dim), float32."""
        pixels = preprocess(images, self.clip.config.image_size, self.preprocessing)
        embeds = self.clip(pixel_values=pixels.to(self.device, self.dtype)).image_embeds.float()
        return embeds / embeds.norm(dim=-1, keepdim=True)

    def score(
        self, images: torch.Tensor, prompts: Sequence[str], metadata: Sequence[dict] | None = None
    ) -> torch.Tensor:
        return self.mlp(self.embed(images)).to(images.device)
