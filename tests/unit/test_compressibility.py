"""The core's weight-free scorer: negative JPEG size in kB."""

import torch

from bench.evaluations.compressibility import Compressibility


def test_flat_images_are_more_compressible_than_noise():
    g = torch.Generator().manual_seed(0)
    flat = torch.full((1, 3, 64, 64), 0.5)
    noise = torch.rand((1, 3, 64, 64), generator=g)
    scores = Compressibility()(torch.cat([flat, noise]), ["a", "b"])
    assert scores.shape == (2,)
    assert scores[0] > scores[1]
    assert -2.0 < scores[0].item() < 0  # a flat 64 px JPEG is well under 2 kB
    assert scores[1].item() < -5.0  # uniform noise at quality 95 is several kB
