"""OpenAI CLIP's image preprocessing, as ImageReward and the LAION aesthetic predictor both use it.

Both scorers feed their image encoder what OpenAI's ``clip.load`` preprocess produces (torchvision on PIL
images): ``Resize(size, BICUBIC)`` on the shorter side (the longer side ``int(size * long / short)``),
``CenterCrop(size)`` with offsets ``int(round((H - size) / 2))``, ``convert("RGB")`` (after the resize, which
matters for RGBA), ``/255`` and the CLIP mean/std. Source:
https://github.com/openai/CLIP/blob/main/clip/clip.py (``_transform``) and
https://github.com/THUDM/ImageReward (``ImageReward.py``, same transform without torchvision's tensor path).

Two paths:

- ``preprocess_pil``: the reference path above, re-implemented with PIL only (torchvision is not a
  dependency). Exact for uint8 images; not differentiable.
- ``preprocess_tensor``: the differentiable path for float NCHW tensors in [0, 1]. Departures from the PIL
  path:
  1. resizing is ``torch.nn.functional.interpolate(mode="bicubic", antialias=True)``, whose kernel is PIL's
     (a = -0.5, support scaled when downsampling); PIL however rounds the resized image to uint8, so the two
     paths differ by that rounding: measured on smooth 8-bit images, at most ~1 and on average ~0.3 levels
     of 255;
  2. no 8-bit quantisation and no clipping of bicubic overshoot to [0, 1], so gradients reach every pixel.

At the target size (e.g. 224 x 224 inputs) no resize happens and the two paths agree exactly on 8-bit images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench.errors import BenchError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


PREPROCESSING = ("tensor", "pil")


def check_preprocessing(scorer: str, preprocessing: str) -> None:
    """One-line error for an unknown preprocessing path."""
    if preprocessing not in PREPROCESSING:
        raise BenchError(f"{scorer}: preprocessing must be 'tensor' or 'pil', got {preprocessing!r}")


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Shape after torchvision's ``Resize(size)``: shorter side to ``size``, longer side truncated."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def crop_offsets(height: int, width: int, size: int) -> tuple[int, int]:
    """Top/left offsets of torchvision's ``CenterCrop(size)`` (Python's round, as torchvision does)."""
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """Apply the CLIP mean/std to NCHW pixels in [0, 1]."""
    mean = torch.tensor(CLIP_MEAN, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean) / std


def preprocess_tensor(images: torch.Tensor, size: int) -> torch.Tensor:
    """Differentiable resize + centre crop + CLIP normalisation of float NCHW images in [0, 1]."""
    height, width = images.shape[-2:]
    new_h, new_w = resized_shape(height, width, size)
    if (new_h, new_w) != (height, width):
        # antialias=True is the PIL-like kernel (a = -0.5, widened when downsampling).
        images = F.interpolate(images, (new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    top, left = crop_offsets(new_h, new_w, size)
    return normalize(images[..., top : top + size, left : left + size])


def preprocess_pil(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """The reference path on PIL images of any mode; returns normalised float32 NCHW on the CPU."""
    arrays = []
    for image in images:  # PIL resizes one image at a time
        new_h, new_w = resized_shape(image.height, image.width, size)
        if (new_h, new_w) != (image.height, image.width):
            image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
        top, left = crop_offsets(new_h, new_w, size)
        image = image.crop((left, top, left + size, top + size)).convert("RGB")
        arrays.append(np.asarray(image, dtype=np.uint8))
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    return normalize(pixels)


def preprocess(images: torch.Tensor, size: int, preprocessing: str) -> torch.Tensor:
    """Float NCHW in [0, 1] to CLIP-normalised pixels at ``size``, by the exact PIL path or the tensor one."""
    if preprocessing == "pil":
        from bench.scoring import to_uint8

        return preprocess_pil([Image.fromarray(a) for a in to_uint8(images).numpy()], size)
    return preprocess_tensor(images, size)
