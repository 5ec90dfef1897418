"""shapes-reward: the shapes world's learned proxy reward, the analog of ImageReward (Xu et al. 2023).

A small image-text model: a CNN over the image whose channels are modulated (FiLM) by a one-layer Transformer
encoding of the prompt's tokens (the shapes model's own CLIP tokenizer), then pooled to one score. It is trained by
``bench shapes pretrain-reward`` (bench/shapes/reward_train.py) to regress gold-oracle labels with deliberate noise
on the pretrained model's own samples, on clean renders of the whole grammar and on images paired with other
captions and with one-edit versions of their own (the analog of BLIP's image-text matching pretraining, with
NegCLIP-style hard negatives), so like a real reward model it is imperfect: its
pairwise agreement with the oracle on held-out samples is in the folder's README.md. Training optimises this
proxy; the gold oracle measures what really happened. Differentiable with respect to the images.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

import bench.shapes as shapes_package
from bench.errors import BenchError
from bench.scoring import Scorer

DEFAULT_DIR = Path(shapes_package.__file__).resolve().parent / "reward"  # shipped inside bench.shapes, installed or not
WEIGHTS = "reward.safetensors"


class FiLMBlock(nn.Module):
    """Conv -> GroupNorm -> text-conditioned scale and shift -> GELU."""

    def __init__(self, c_in: int, c_out: int, text_dim: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.norm = nn.GroupNorm(8, c_out)
        self.film = nn.Linear(text_dim, 2 * c_out)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(text)[:, :, None, None].chunk(2, dim=1)
        return nn.functional.gelu(self.norm(self.conv(x)) * (1 + scale) + shift)


class ShapesRewardModel(nn.Module):
    """score = head(pool(CNN_FiLM(image, text(prompt))))."""

    def __init__(self, vocab_size: int, max_tokens: int = 16, width: int = 64):
        super().__init__()
        self.config = {"vocab_size": vocab_size, "max_tokens": max_tokens, "width": width}
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Parameter(torch.zeros(max_tokens, width))
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.text = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        channels = (32, 64, 64, 128)
        strides = (1, 2, 1, 2)
        self.blocks = nn.ModuleList(
            FiLMBlock(c_in, c_out, width, s)
            for c_in, c_out, s in zip((3,) + channels[:-1], channels, strides, strict=True)
        )
        self.head = nn.Sequential(nn.Linear(2 * channels[-1], 128), nn.GELU(), nn.Linear(128, 1))

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.text(self.embed(ids) + self.position[: ids.shape[1]], src_key_padding_mask=~mask.bool())
        m = mask[..., None].to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1)

    def forward(self, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        text = self.encode_text(ids, mask)
        x = images * 2 - 1
        for block in self.blocks:
            x = block(x, text)
        pooled = torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)
        return self.head(pooled).squeeze(1)


def load_reward_model(folder: str | Path):
    """(model, tokenizer) from a folder holding config.json, reward.safetensors and tokenizer/."""
    from safetensors.torch import load_file
    from transformers import CLIPTokenizer

    folder = Path(folder)
    for needed in ("config.json", WEIGHTS, "tokenizer"):
        if not (folder / needed).exists():
            raise BenchError(
                f"shapes-reward weights missing: {folder} has no {needed} (run `bench shapes pretrain-reward`)"
            )
    model = ShapesRewardModel(**json.loads((folder / "config.json").read_text()))
    model.load_state_dict(load_file(folder / WEIGHTS))
    return model.eval().requires_grad_(False), CLIPTokenizer.from_pretrained(folder / "tokenizer")


class ShapesReward(Scorer):
    """Learned proxy reward of the shapes world (the ImageReward stand-in), about [0, 1]; higher is better."""

    name = "shapes-reward"
    version = "1"
    differentiable = True
    higher_is_better = True

    def __init__(self, device="cpu", weights: str | None = None):
        super().__init__(device)
        self.model, self.tokenizer = load_reward_model(weights or DEFAULT_DIR)
        self.model.to(self.device)

    def tokens(self, prompts) -> tuple[torch.Tensor, torch.Tensor]:
        max_tokens = self.model.config["max_tokens"]
        out = self.tokenizer(
            list(prompts), padding="max_length", max_length=max_tokens, truncation=True, return_tensors="pt"
        )
        return out.input_ids.to(self.device), out.attention_mask.to(self.device)

    def score(self, images, prompts, metadata=None):
        ids, mask = self.tokens(prompts)
        return self.model(images.to(self.device, torch.float32), ids, mask)
