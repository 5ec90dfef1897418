"""Oversaturation scorers on hand-made images."""

from __future__ import annotations

import colorsys

import pytest
import torch

from bench.evaluations.oversaturation import ClippedShare, Oversaturation, SaturatedShare


def image(*pixels: tuple[float, float, float]) -> torch.Tensor:
    """A 1 x 3 x 1 x P image from RGB pixels."""
    return torch.tensor(pixels, dtype=torch.float32).T.reshape(1, 3, 1, len(pixels))


@pytest.mark.parametrize("cls", [Oversaturation, SaturatedShare, ClippedShare])
def test_constructible_and_lower_is_better(cls):
    scorer = cls(device="cpu")
    assert scorer.name and scorer.higher_is_better is False
    assert scorer(torch.full((2, 3, 4, 4), 0.5), ["a", "b"]).shape == (2,)


def test_mean_saturation_on_hand_made_pixels():
    pixels = image((0.5, 0.25, 0.25), (1.0, 0.0, 0.0), (0.4, 0.4, 0.4), (0.0, 0.0, 0.0))
    assert Oversaturation()(pixels, ["p"]).item() == pytest.approx((0.5 + 1.0 + 0.0 + 0.0) / 4)


def test_mean_saturation_matches_colorsys():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 5, 7)
    expected = [
        sum(colorsys.rgb_to_hsv(*images[n, :, i, j].tolist())[1] for i in range(5) for j in range(7)) / 35
        for n in range(2)
    ]
    torch.testing.assert_close(Oversaturation()(images, ["a", "b"]), torch.tensor(expected))


def test_saturation_rises_monotonically_as_an_image_is_saturated():
    torch.manual_seed(0)
    base = 0.3 + 0.4 * torch.rand(1, 3, 16, 16)
    grey = base.mean(dim=1, keepdim=True)
    gains = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0]
    batch = torch.cat([grey + g * (base - grey) for g in gains])
    prompts = ["p"] * len(gains)
    mean = Oversaturation()(batch, prompts)
    assert mean[0] == 0 and (mean.diff() > 0).all()
    saturated, clipped = SaturatedShare()(batch, prompts), ClippedShare()(batch, prompts)
    assert (saturated.diff() >= 0).all() and (clipped.diff() >= 0).all()
    assert saturated[3] == 0 and saturated[-1] > 0.3 and clipped[3] == 0 and clipped[-1] > 0.3


def test_saturated_share_threshold():
    pixels = image((1.0, 0.05, 0.5), (1.0, 0.11, 0.5), (0.2, 0.0, 0.1), (0.5, 0.5, 0.5))
    assert SaturatedShare()(pixels, ["p"]).item() == pytest.approx(2 / 4)  # S = 0.95, 0.89, 1.0, 0.0


def test_clipped_share_counts_channel_values_that_round_to_the_ends():
    # 0.001 * 255 rounds to 0 and 0.999 * 255 to 255; 0.003 and 0.997 round to 1 and 254; -0.2 and 1.3 clamp.
    pixels = image((0.0, 0.001, 0.003), (1.0, 0.999, 0.997), (-0.2, 1.3, 0.5))
    assert ClippedShare()(pixels, ["p"]).item() == pytest.approx(6 / 9)


def test_mean_saturation_gradient_is_finite_at_black_pixels():
    images = torch.zeros(1, 3, 2, 2)
    images[0, :, 0, 0] = torch.tensor([0.8, 0.4, 0.2])
    images.requires_grad_(True)
    Oversaturation()(images, ["p"]).sum().backward()
    assert torch.isfinite(images.grad).all()
    # dS/dlow = -1/high at the coloured pixel, averaged over 4 pixels.
    assert images.grad[0, 2, 0, 0].item() == pytest.approx(-1 / 0.8 / 4)
