"""LAION aesthetic predictor on a tiny random CLIP with a matching random MLP."""

from __future__ import annotations

import pytest
import torch

from bench.errors import BenchError
from bench.evaluations.aesthetic import WEIGHTS_FILE, AestheticScorer
from bench.evaluations.reward_mlp import RewardMLP

PROMPTS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def models():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    clip = CLIPVisionModelWithProjection(config).eval()
    mlp = RewardMLP(16)
    with torch.no_grad():
        for param in mlp.parameters():
            param.normal_(0, 0.3)
    return clip, mlp.eval()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, models):
    folder = tmp_path_factory.mktemp("aesthetic")
    models[0].save_pretrained(folder / "clip")
    torch.save(models[1].state_dict(), folder / WEIGHTS_FILE)
    return folder


def test_weights_file_layout(models):
    keys = sorted(models[1].state_dict())
    assert keys == sorted(f"layers.{i}.{w}" for i in (0, 2, 4, 6, 7) for w in ("weight", "bias"))


def test_loaded_scorer_is_the_mlp_on_normalised_clip_embeddings(folder, models):
    clip, mlp = models
    scorer = AestheticScorer(weights=folder)
    images = torch.rand(3, 3, 40, 32)
    scores = scorer(images, PROMPTS)
    from bench.evaluations.clip_preprocess import preprocess_tensor

    embeds = clip(pixel_values=preprocess_tensor(images, 32)).image_embeds
    expected = mlp(embeds / embeds.norm(dim=-1, keepdim=True))
    assert scores.shape == (3,)
    torch.testing.assert_close(scores, expected)
    assert scores.std() > 1e-3  # the images are told apart


def test_embedding_is_l2_normalised(models):
    clip, mlp = models
    scorer = AestheticScorer.from_models(clip, mlp)
    images = torch.rand(2, 3, 32, 32)
    before = scorer(images, PROMPTS[:2])
    with torch.no_grad():
        scorer.clip.visual_projection.weight.mul_(3.0)
    after = scorer(images, PROMPTS[:2])
    with torch.no_grad():
        scorer.clip.visual_projection.weight.div_(3.0)
    torch.testing.assert_close(before, after, rtol=1e-4, atol=1e-4)
    assert scorer.embed(images).norm(dim=-1).sub(1).abs().max() < 1e-5


def test_head_has_no_activations(models):
    mlp = models[1]
    x = torch.randn(4, 16)
    zero = mlp(torch.zeros(1, 16))
    torch.testing.assert_close(mlp(-2.5 * x) - zero, -2.5 * (mlp(x) - zero), rtol=1e-4, atol=1e-4)


def test_gradient_reaches_the_images(models):
    scorer = AestheticScorer.from_models(*models)
    images = torch.rand(2, 3, 48, 40, requires_grad=True)
    scorer(images, PROMPTS[:2]).sum().backward()
    assert images.grad is not None and images.grad.abs().gt(0).float().mean() > 0.9


def test_pil_path_agrees_at_native_size(models):
    images = torch.randint(0, 256, (2, 3, 32, 32)).float() / 255
    pil = AestheticScorer.from_models(*models, preprocessing="pil")(images, PROMPTS[:2])
    tensor = AestheticScorer.from_models(*models)(images, PROMPTS[:2])
    torch.testing.assert_close(pil, tensor)


def test_missing_weights_name_the_folder_and_file(tmp_path):
    with pytest.raises(BenchError) as err:
        AestheticScorer(weights=tmp_path)
    message = str(err.value)
    assert WEIGHTS_FILE in message and str(tmp_path) in message and "\n" not in message


def test_missing_clip_and_bad_mlp_are_one_line_errors(tmp_path, folder, models):
    torch.save(models[1].state_dict(), tmp_path / WEIGHTS_FILE)
    with pytest.raises(BenchError, match="cannot load CLIP from .*nowhere") as err:
        AestheticScorer(weights=tmp_path, clip=tmp_path / "nowhere")
    assert "\n" not in str(err.value)
    torch.save({"layers.0.weight": torch.zeros(3)}, tmp_path / WEIGHTS_FILE)
    with pytest.raises(BenchError, match="does not match the aesthetic MLP"):
        AestheticScorer(weights=tmp_path, clip=folder / "clip")
