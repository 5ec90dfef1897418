"""shapes-quality: how clean a shapes-world image looks, in [0, 1] (the shapes world's aesthetics analog).

It ignores the prompt. A clean render scores 1; the score is the product of three factors, each 1 when clean:

- colour: 1 - mean over pixels of min(d, TOLERANCE) / TOLERANCE, d the RGB distance (0-255) to the nearest
  palette colour, so noise, blur and oversaturation all pull it down;
- shape: the area-weighted mean IoU of the objects with their best ideal shape (1 for an image without objects);
- stray: 1 - min(1, STRAY_WEIGHT * f), f the fraction of pixels that are neither background nor part of an object
  (no palette colour within tolerance, speckle too small to be an object, or a patch of another background).

Segmentation is bench/shapes/detect.py, shared with the shapes-oracle.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.scoring import Scorer
from bench.shapes.detect import N_OBJECT_COLOURS, TOLERANCE, segment

STRAY_WEIGHT = 4.0  # a quarter of the image stray gives 0


def quality_factors(images) -> dict[str, np.ndarray]:
    """The three factors (each of shape (N,)) and their product, under keys colour, shape, stray, quality."""
    seg = segment(images)
    n, h, w = seg.palette_index.shape
    colour = 1.0 - (np.minimum(seg.distance, TOLERANCE) / TOLERANCE).mean(axis=(1, 2))
    comps = seg.components
    objects = comps.is_object
    weights = np.bincount(comps.image[objects], weights=comps.area[objects], minlength=n)
    overlap = np.bincount(comps.image[objects], weights=(comps.area * comps.iou)[objects], minlength=n)
    shape = np.where(weights > 0, overlap / np.maximum(weights, 1), 1.0)
    speckle = np.bincount(comps.image[~objects], weights=comps.area[~objects], minlength=n)
    unknown = (seg.palette_index < 0).sum(axis=(1, 2))
    # Patches of a second background colour are as unclean as speckle.
    is_background = seg.palette_index >= N_OBJECT_COLOURS
    own = seg.palette_index == (N_OBJECT_COLOURS + seg.background)[:, None, None]
    other_background = (is_background & ~own).sum(axis=(1, 2))
    stray = 1.0 - np.minimum(1.0, STRAY_WEIGHT * (speckle + unknown + other_background) / (h * w))
    return {"colour": colour, "shape": shape, "stray": stray, "quality": colour * shape * stray}


class ShapesQuality(Scorer):
    """How clean a shapes-world image looks (palette colours, shapes, no stray pixels), in [0, 1]; prompt-free."""

    name = "shapes-quality"
    version = "1"
    role = "quality"
    differentiable = False
    higher_is_better = True

    def score(self, images, prompts, metadata=None):
        quality = quality_factors(images)["quality"]
        return torch.as_tensor(quality, dtype=torch.float32, device=images.device)
