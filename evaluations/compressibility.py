"""JPEG compressibility: the negative size of an image saved as JPEG, in kB (DDPO's reward).

Black et al. 2023 (arXiv 2305.13301), section 6.1: images are encoded at quality 95 and the reward is the negative
file size in kilobytes, so flat images score higher. The JPEG encoder only exists per image, so this is the one
place the scorer loops; the conversion to uint8 is done for the whole batch at once.
"""

from __future__ import annotations

import io

import torch
from PIL import Image

from bench.scoring import Scorer, to_uint8

JPEG_QUALITY = 95


class Compressibility(Scorer):
    """Negative JPEG size (kB, quality 95) per image, DDPO's reward; higher (flatter) is better."""

    name = "compressibility"
    version = "1"
    differentiable = False
    higher_is_better = True

    def score(self, images, prompts, metadata=None):
        arrays = to_uint8(images).numpy()
        sizes = []
        for array in arrays:  # one encoder call per image: PIL has no batched JPEG encoder
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="JPEG", quality=JPEG_QUALITY)
            sizes.append(buffer.tell() / 1000.0)
        return -torch.tensor(sizes, dtype=torch.float32, device=images.device)
