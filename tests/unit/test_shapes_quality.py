"""shapes-quality: clean renders score 1, and blur, noise, oversaturation, speckle and patches all score lower."""

import random

import pytest
import torch
import torch.nn.functional as F

from bench.shapes import random_caption, render_batch, to_tensor
from bench.shapes.quality import ShapesQuality, quality_factors
from bench.shapes.render import BACKGROUND_RGB, OBJECT_RGB, Placed, Scene, rasterise


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of NCHW images (5 taps, edges replicated)."""
    taps = torch.exp(-(torch.arange(-2, 3.0) ** 2) / (2 * sigma**2))
    taps = (taps / taps.sum()).repeat(3, 1, 1, 1)
    images = F.conv2d(F.pad(images, (2, 2, 0, 0), mode="replicate"), taps.view(3, 1, 1, 5), groups=3)
    return F.conv2d(F.pad(images, (0, 0, 2, 2), mode="replicate"), taps.view(3, 1, 5, 1), groups=3)


def add_noise(images: torch.Tensor, std: float) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    return (images + std * noise).clamp(0, 1)


def oversaturate(images: torch.Tensor, factor: float = 1.6) -> torch.Tensor:
    grey = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).unsqueeze(1)
    return (grey + factor * (images - grey)).clamp(0, 1)


@pytest.fixture(scope="module")
def renders():
    rng = random.Random(0)
    prompts = [random_caption(rng).text() for _ in range(100)]
    return prompts, to_tensor(render_batch(prompts, seed=1, policy="uniform"))


def test_clean_renders_score_one(renders):
    prompts, images = renders
    scores = ShapesQuality()(images, prompts)
    assert scores.shape == (100,) and torch.allclose(scores, torch.ones(100))


@pytest.mark.parametrize(
    ("name", "degrade", "mean_below"),
    [
        ("blur", lambda x: blur(x, 0.7), 0.9),  # measured mean 0.83
        (
            "noise",
            lambda x: (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1),
            0.8,
        ),
        ("oversaturated", oversaturate, 0.75),  # measured mean 0.67
    ],
)
def test_degraded_images_score_below_their_clean_versions(renders, name, degrade, mean_below):
    prompts, images = renders
    scores = ShapesQuality()(degrade(images), prompts)
    assert (scores < 0.99).all(), name
    assert scores.mean() < mean_below and scores.min() >= 0.0


def one_square(background="grass"):
    return rasterise([Scene(background, (Placed("square", "blue", 8, 8, 13),))]).copy()


def test_speckle_and_background_patches_lower_the_stray_factor():
    speckled, patched = one_square(), one_square()
    for k in range(16):  # isolated pixels of object colours: 16 / 1024 of the image
        speckled[0, 2 + (k % 2) * 26, 1 + 2 * k] = OBJECT_RGB["red"]
    patched[0, 0:4, 0:4] = BACKGROUND_RGB["sky"]  # a 16-pixel patch of another background
    for image in (speckled, patched):
        factors = quality_factors(image)
        assert factors["colour"][0] == pytest.approx(1.0) and factors["shape"][0] == pytest.approx(1.0)
        assert factors["stray"][0] == pytest.approx(1 - 4 * 16 / 1024)


def test_misshapen_object_lowers_the_shape_factor():
    image = one_square()
    image[0, 8:12, 8:12] = BACKGROUND_RGB["grass"]  # bite a 4 x 4 corner out of the 13 x 13 square
    factors = quality_factors(image)
    assert factors["shape"][0] == pytest.approx((169 - 16) / 169)  # best ideal: the square in the same box
    assert factors["quality"][0] < 0.91
