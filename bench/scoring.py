"""The Scorer contract shared by rewards and evaluation metrics.

A scorer maps a batch of images (float NCHW in [0, 1]) and their prompts to one value per image. It is batched:
``score`` receives the whole batch and never loops over images in Python unless the underlying operation (a JPEG
encoder, say) only exists per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from bench.errors import BenchError


class Scorer:
    """Base class for scorers; subclasses set the class attributes and implement ``score``.

    Attributes:
        name: registry name (lower case, words joined by hyphens).
        version: bumped whenever the numbers a scorer returns could change; stored with every score.
        differentiable: whether gradients flow from the score to the images.
        higher_is_better: direction of the metric (rewards are always higher-is-better).
        gold: the world's ground truth (a gold oracle): reports say whether a run's gain holds by it.
        kind: ``"score"`` (a value to average) or ``"label"`` (a category index; tables leave it out, bias
            measures read it against ``categories``).
        categories: for a label scorer, the categories its indices refer to.
        role: what reports draw it as, besides its column: ``"quality"`` (an image-quality measure, drawn with the
            reward and the gold measure against training samples), ``"saturation"`` (the saturation figure),
            or ``""``.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    differentiable: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True
    gold: ClassVar[bool] = False
    kind: ClassVar[str] = "score"
    categories: ClassVar[tuple[str, ...]] = ()
    role: ClassVar[str] = ""

    def __init__(self, device: torch.device | str = "cpu", **options: Any):
        self.device = torch.device(device)
        if options:
            raise BenchError(f"scorer {self.name!r} takes no options (got {', '.join(sorted(options))})")

    @classmethod
    def without_weights(cls, device: torch.device | str = "cpu") -> Scorer:
        """An instance whose loading ``__init__`` is skipped, for wrapping models built elsewhere (tests)."""
        scorer = cls.__new__(cls)
        Scorer.__init__(scorer, device)
        return scorer

    def score(
        self, images: torch.Tensor, prompts: Sequence[str], metadata: Sequence[dict] | None = None
    ) -> torch.Tensor:
        """Return a float tensor of shape (N,) for N images in [0, 1], NCHW."""
        raise NotImplementedError

    def __call__(self, images, prompts, metadata=None) -> torch.Tensor:
        check_images(images, len(prompts))
        out = self.score(images, prompts, metadata)
        if out.shape != (images.shape[0],):
            raise RuntimeError(f"scorer {self.name!r} returned shape {tuple(out.shape)}, expected ({len(images)},)")
        return out


def check_images(images: torch.Tensor, n_prompts: int) -> None:
    """Validate the image batch against the contract (NCHW, 3 channels, one prompt per image)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be N x 3 x H x W, got shape {tuple(images.shape)}")
    if images.shape[0] != n_prompts:
        raise ValueError(f"{images.shape[0]} images but {n_prompts} prompts")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float NCHW in [0, 1] to uint8 NHWC on the CPU, rounding as PIL does for saved images."""
    return (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
