"""Oversaturation measures: reward-optimised diffusion models drift to vivid, clipped colours.

The DPOK paper (Fan et al. 2023, arXiv 2305.16381) reports that supervised fine-tuning, and RL without the KL
term, often yield oversaturated images; it judges this by eye and uses no saturation metric. These three
scorers are this suite's proposal for measuring it, per image, lower is better:

- ``oversaturation``: mean HSV saturation, S = (max - min) / max over the RGB channels of each pixel (S = 0
  for black pixels, as in ``colorsys.rgb_to_hsv``), averaged over pixels.
- ``saturated-share``: share of pixels with S > 0.9.
- ``clipped-share``: share of channel values that become 0 or 255 after the 8-bit rounding images are saved
  with (``bench.scoring.to_uint8``: clamp, x 255, round half to even), i.e. float values below about 0.5/255
  or above about 254.5/255.

Inputs are clamped to [0, 1] first, as saving an image would. Mean saturation is computed on float pixels, not
on an 8-bit HSV conversion, so it is differentiable (almost everywhere); the two shares are counts and are
not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bench.scoring import Scorer

SATURATED_ABOVE = 0.9  # HSV saturation above which a pixel counts as saturated


def hsv_saturation(images: torch.Tensor) -> torch.Tensor:
    """Per-pixel HSV saturation (N, H, W) of NCHW images; 0 where the pixel is black."""
    images = images.clamp(0, 1)
    high = images.amax(dim=1)
    low = images.amin(dim=1)
    # where() on both sides keeps the gradient finite at black pixels.
    safe_high = torch.where(high > 0, high, torch.ones_like(high))
    return torch.where(high > 0, (high - low) / safe_high, torch.zeros_like(high))


class Oversaturation(Scorer):
    """Mean HSV saturation per image, in [0, 1]; lower is better."""

    name = "oversaturation"
    role = "saturation"  # drawn in the report's oversaturation figure
    version = "1"
    differentiable = True
    higher_is_better = False

    def score(
        self, images: torch.Tensor, prompts: Sequence[str], metadata: Sequence[dict] | None = None
    ) -> torch.Tensor:
        return hsv_saturation(images).flatten(1).mean(dim=1)


class SaturatedShare(Scorer):
    """Share of pixels whose HSV saturation exceeds 0.9, in [0, 1]; lower is better."""

    name = "saturated-share"
    version = "1"
    differentiable = False
    higher_is_better = False

    def score(
        self, images: torch.Tensor, prompts: Sequence[str], metadata: Sequence[dict] | None = None
    ) -> torch.Tensor:
        saturated = hsv_saturation(images.detach()) > SATURATED_ABOVE
        return saturated.flatten(1).float().mean(dim=1)


class ClippedShare(Scorer):
    """Share of channel values at 0 or 255 once quantised to 8 bits, in [0, 1]; lower is better."""

    name = "clipped-share"
    version = "1"
    differentiable = False
    higher_is_better = False

    def score(
        self, images: torch.Tensor, prompts: Sequence[str], metadata: Sequence[dict] | None = None
    ) -> torch.Tensor:
        levels = (images.detach().clamp(0, 1) * 255).round()  # as bench.scoring.to_uint8, on the same device
        clipped = (levels <= 0) | (levels >= 255)
        return clipped.flatten(1).float().mean(dim=1)
