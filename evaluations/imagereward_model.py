"""ImageReward's network on transformers' BLIP modules, and the mapping from the official checkpoint's key
names.

Xu et al. 2023, "ImageReward: Learning and Evaluating Human Preferences for Text-to-Image Generation" (arXiv
2304.05977); official code https://github.com/THUDM/ImageReward (image-reward 1.5, ``ImageReward.py`` and
``models/BLIP``). The official ``ImageReward.pt`` is the plain ``state_dict()`` of ``ImageReward(blip, mlp)``:

- ``blip.visual_encoder``: BLIP's timm-style ViT-L/16 at 224 px (LayerNorm eps 1e-6, exact GELU, final norm);
  transformers' ``BlipVisionModel`` has the same computation under other names (table in ``_KEY_MAP``).
- ``blip.text_encoder``: BLIP's "med" BERT with a cross-attention block in every layer; transformers'
  ``BlipTextModel(add_pooling_layer=False)`` with ``is_decoder=True`` in its config (that flag is what builds
  the cross-attention blocks) uses the same names. We call it with ``is_decoder=False`` (the default of its
  ``forward``), i.e. bidirectional self-attention as ImageReward's ``mode="multimodal"``.
- ``blip.vision_proj`` / ``blip.text_proj``: unused for scoring, dropped on load.
- ``mlp``: the linear head (``evaluations/reward_mlp.py``), same names.

Departures: none in the computation. The non-persistent ``position_ids`` buffer of the text embeddings is
rebuilt rather than read from the file (it is ``arange`` in both).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bench.evaluations.reward_mlp import RewardMLP

# Official standardisation of the raw head output (ImageReward.py, ``self.mean`` and ``self.std``).
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072


@dataclass(frozen=True)
class ImageRewardArch:
    """Sizes of the network; the defaults are the released model's (ViT-L/16 at 224 px + BERT-base)."""

    image_size: int = 224  # input side in pixels, after resize and centre crop
    patch_size: int = 16  # ViT patch side in pixels
    vision_width: int = 1024  # ViT hidden size; also the cross-attention key/value input width
    vision_depth: int = 24  # ViT blocks
    vision_heads: int = 16
    vision_mlp: int = 4096  # ViT feed-forward width
    text_width: int = 768  # BERT hidden size; the head's input size
    text_depth: int = 12  # BERT layers, each self-attention + cross-attention + feed-forward
    text_heads: int = 12
    text_mlp: int = 3072  # BERT feed-forward width
    vocab_size: int = 30524  # bert-base-uncased (30522) + [DEC] + [ENC]
    max_positions: int = 512  # BERT absolute position embeddings

    @classmethod
    def tiny(cls, vocab_size: int) -> ImageRewardArch:
        """A random-weight stand-in of the same architecture for tests (runs in milliseconds on a CPU)."""
        return cls(32, 16, 48, 2, 4, 64, 32, 2, 4, 64, vocab_size, 40)

    def vision_config(self):
        from transformers import BlipVisionConfig

        return BlipVisionConfig(
            hidden_size=self.vision_width,
            intermediate_size=self.vision_mlp,
            num_hidden_layers=self.vision_depth,
            num_attention_heads=self.vision_heads,
            image_size=self.image_size,
            patch_size=self.patch_size,
            layer_norm_eps=1e-6,  # BLIP's ViT; transformers' default 1e-5 moves scores
            hidden_act="gelu",  # exact erf GELU, as timm's nn.GELU
        )

    def text_config(self):
        from transformers import BlipTextConfig

        return BlipTextConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.text_width,
            encoder_hidden_size=self.vision_width,
            intermediate_size=self.text_mlp,
            num_hidden_layers=self.text_depth,
            num_attention_heads=self.text_heads,
            max_position_embeddings=self.max_positions,
            layer_norm_eps=1e-12,
            hidden_act="gelu",
            is_decoder=True,  # builds the cross-attention blocks; forward() still runs bidirectionally
            # Generation-only ids; None keeps transformers from validating them against a tiny vocabulary.
            bos_token_id=None,
            eos_token_id=None,
            sep_token_id=None,
            pad_token_id=0,
        )


class ImageRewardModel(nn.Module):
    """BLIP image encoder + image-grounded text encoder + linear head; ``forward`` returns the raw reward."""

    def __init__(self, arch: ImageRewardArch = ImageRewardArch()):
        super().__init__()
        from transformers import BlipTextModel, BlipVisionModel

        self.arch = arch
        self.visual_encoder = BlipVisionModel(arch.vision_config())
        self.text_encoder = BlipTextModel(arch.text_config(), add_pooling_layer=False)
        self.mlp = RewardMLP(arch.text_width)

    def features(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The head's input: the multimodal text encoder's state at position 0 ([CLS], not [ENC]), no pooling.

        Args:
            pixels: (N, 3, S, S) CLIP-normalised images.
            input_ids: (N, L) token ids starting with [CLS].
            attention_mask: (N, L), 1 for real tokens, 0 for padding.
        """
        image_embeds = self.visual_encoder(pixel_values=pixels).last_hidden_state
        # The image mask is all ones in the original, which is the same as passing none.
        text = self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds
        ).last_hidden_state
        return text[:, 0, :]

    def forward(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Raw (unstandardised) reward, shape (N,)."""
        return self.mlp(self.features(pixels, input_ids, attention_mask))


def standardise(raw: torch.Tensor) -> torch.Tensor:
    """The official standardisation of the raw head output."""
    return (raw - REWARD_MEAN) / REWARD_STD


# One table for both directions: (official name, module name), matched as key prefixes; "{n}" is a number
# carried across and a trailing "$" means the whole key. Dropped official keys are not used by scoring.
_KEY_MAP: list[tuple[str, str]] = [
    ("blip.visual_encoder.cls_token$", "visual_encoder.embeddings.class_embedding$"),
    ("blip.visual_encoder.pos_embed$", "visual_encoder.embeddings.position_embedding$"),
    ("blip.visual_encoder.patch_embed.proj.", "visual_encoder.embeddings.patch_embedding."),
    ("blip.visual_encoder.blocks.{n}.norm{n}.", "visual_encoder.encoder.layers.{n}.layer_norm{n}."),
    ("blip.visual_encoder.blocks.{n}.attn.qkv.", "visual_encoder.encoder.layers.{n}.self_attn.qkv."),
    ("blip.visual_encoder.blocks.{n}.attn.proj.", "visual_encoder.encoder.layers.{n}.self_attn.projection."),
    ("blip.visual_encoder.blocks.{n}.mlp.fc{n}.", "visual_encoder.encoder.layers.{n}.mlp.fc{n}."),
    ("blip.visual_encoder.norm.", "visual_encoder.post_layernorm."),
    ("blip.text_encoder.", "text_encoder."),
    ("mlp.", "mlp."),
]
_DROPPED = [r"blip\.text_encoder\.embeddings\.position_ids$", r"blip\.(vision|text)_proj\."]


def _rule(source: str, target: str) -> tuple[str, str]:
    """A (regex, replacement) pair from two templates of ``_KEY_MAP``."""
    pattern = re.escape(source.rstrip("$")).replace(r"\{n\}", r"(\d+)") + ("$" if source.endswith("$") else "")
    groups = iter(range(1, 10))
    return pattern, re.sub(r"\{n\}", lambda _: f"\\g<{next(groups)}>", target.rstrip("$"))


_RULES: list[tuple[str, str | None]] = [(p, None) for p in _DROPPED] + [_rule(o, m) for o, m in _KEY_MAP]
_INVERSE_RULES: list[tuple[str, str]] = [_rule(m, o) for o, m in _KEY_MAP]


def _apply(rules, key: str) -> str | None:
    for pattern, replacement in rules:
        match = re.match(pattern, key)
        if match:
            return None if replacement is None else match.expand(replacement) + key[match.end() :]
    raise KeyError(key)


def official_to_module_key(key: str) -> str | None:
    """Map an ``ImageReward.pt`` key to this module's name; None for keys that scoring does not use.

    Raises:
        KeyError: for a key no rule knows (a different checkpoint layout).
    """
    return _apply(_RULES, key)


def module_to_official_key(key: str) -> str:
    """Map one of this module's state-dict keys to its name in ``ImageReward.pt``."""
    name = _apply(_INVERSE_RULES, key)
    assert name is not None
    return name


def convert_official_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename an official state dict; returns (renamed, keys no rule knows)."""
    renamed, unknown = {}, []
    for key, value in state.items():
        try:
            name = official_to_module_key(key)
        except KeyError:
            unknown.append(key)
            continue
        if name is not None:
            renamed[name] = value
    return renamed, unknown


def build_from_state_dict(
    arch: ImageRewardArch, state: dict[str, torch.Tensor]
) -> tuple[ImageRewardModel, list[str], list[str]]:
    """Build the model on the meta device and assign the official weights (no random init of 447M parameters).

    Returns:
        (model, missing keys, unexpected keys); the model is only usable when both lists are empty.
    """
    renamed, unknown = convert_official_state_dict(state)
    with torch.device("meta"):
        model = ImageRewardModel(arch)
    result = model.load_state_dict(renamed, strict=False, assign=True)
    # Non-persistent buffer, not in any state dict: rebuild it off the meta device.
    embeddings = model.text_encoder.embeddings
    embeddings.position_ids = torch.arange(arch.max_positions).expand((1, -1))
    return model, list(result.missing_keys), list(result.unexpected_keys) + unknown
