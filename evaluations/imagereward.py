"""ImageReward as a scorer: the project's own implementation, loading the official ``ImageReward.pt``.

Xu et al. 2023, "ImageReward: Learning and Evaluating Human Preferences for Text-to-Image Generation" (arXiv
2304.05977); official code https://github.com/THUDM/ImageReward (image-reward 1.5, ``ImageReward.score``). The
DPOK paper's training reward. The package itself cannot be a dependency (torchvision, OpenAI ``clip``, timm
0.6.13, transformers 4 helpers, hub downloads); ``imagereward_model.py`` rebuilds the network on transformers'
BLIP modules and maps the official key names.

Pipeline, as the original: CLIP preprocessing to 224 px, bert-base-uncased WordPiece with ``[DEC]`` as bos and
``[ENC]`` as an extra special token (``padding="max_length"``, ``truncation=True``, ``max_length=35``), the
multimodal text encoder's [CLS] state, the linear head, then the official standardisation
``(raw - 0.16717362830052426) / 1.0333394966054072``.

Departures:
1. ``preprocessing="tensor"`` (the default, differentiable) resizes with torch's antialiased bicubic on float
   images and skips 8-bit rounding; see ``clip_preprocess.py`` (about 0.3 levels of 255 on average).
   ``preprocessing="pil"`` quantises to uint8 and follows the original's PIL path exactly, without gradients.
2. Weights and tokenizer files are only looked up locally (never downloaded); see ``ImageRewardScorer``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from bench.errors import BenchError
from bench.evaluations.clip_preprocess import check_preprocessing, preprocess
from bench.evaluations.imagereward_model import (
    ImageRewardArch,
    ImageRewardModel,
    build_from_state_dict,
    standardise,
)
from bench.scoring import Scorer

WEIGHTS_FILE = "ImageReward.pt"
WEIGHTS_ENV = "BENCH_IMAGEREWARD_DIR"
HUB_REPO = "THUDM/ImageReward"
TOKENIZER_REPOS = ("google-bert/bert-base-uncased", "bert-base-uncased")
MAX_TEXT_LENGTH = 35  # tokens, as ImageReward.score


def find_weights(weights: str | os.PathLike | None) -> Path:
    """Locate ``ImageReward.pt``: in ``weights``, else $BENCH_IMAGEREWARD_DIR, else image-reward's own
    download folder (~/.cache/ImageReward), else the Hugging Face cache (THUDM/ImageReward); never downloads.

    Raises:
        BenchError: one line naming where it looked and the file it needs.
    """
    if weights is not None or os.environ.get(WEIGHTS_ENV):
        folder = Path(weights if weights is not None else os.environ[WEIGHTS_ENV]).expanduser()
        if folder.is_file():  # the file itself was given
            return folder
        if (folder / WEIGHTS_FILE).is_file():
            return folder / WEIGHTS_FILE
        raise BenchError(f"ImageReward weights not found: {WEIGHTS_FILE} is not in {folder}")
    legacy = Path("~/.cache/ImageReward").expanduser()
    if (legacy / WEIGHTS_FILE).is_file():
        return legacy / WEIGHTS_FILE
    cached = _hub_cached(HUB_REPO, WEIGHTS_FILE)
    if cached is not None:
        return cached
    raise BenchError(
        f"ImageReward weights not found: {WEIGHTS_FILE} is not in {legacy} nor in the Hugging Face cache "
        f"({HUB_REPO}); pass weights=<folder> or set {WEIGHTS_ENV}"
    )


def find_tokenizer(folder: Path) -> Path:
    """Find bert-base-uncased's ``vocab.txt``: beside the weights or in ``tokenizer/`` there, else cached."""
    for candidate in (folder, folder / "tokenizer"):
        if (candidate / "vocab.txt").is_file():
            return candidate
    for repo in TOKENIZER_REPOS:
        cached = _hub_cached(repo, "vocab.txt")
        if cached is not None:
            return cached.parent
    raise BenchError(
        f"ImageReward tokenizer not found: vocab.txt (bert-base-uncased) is not in {folder}, "
        f"{folder / 'tokenizer'} nor in the Hugging Face cache"
    )


def _hub_cached(repo: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id=repo, filename=filename)
    return Path(path) if isinstance(path, str) else None


def load_tokenizer(folder: str | os.PathLike):
    """bert-base-uncased WordPiece plus BLIP's special tokens (``init_tokenizer`` in BLIP's ``blip.py``)."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(str(folder))
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


class ImageRewardScorer(Scorer):
    """ImageReward (standardised), higher is better.

    Args:
        device: where the model runs.
        weights: folder holding ``ImageReward.pt`` (and optionally bert-base-uncased's ``vocab.txt``, directly
            or in ``tokenizer/``); default $BENCH_IMAGEREWARD_DIR, then the caches (see ``find_weights``).
        preprocessing: ``"tensor"`` (differentiable) or ``"pil"`` (the original's exact path, no gradients).
        dtype: parameter dtype; scores are returned as float32.
        arch: network sizes; the default is the released model.
    """

    name = "imagereward"
    version = "1"
    differentiable = True
    higher_is_better = True

    def __init__(
        self,
        device: torch.device | str = "cpu",
        weights: str | os.PathLike | None = None,
        preprocessing: str = "tensor",
        dtype: torch.dtype = torch.float32,
        arch: ImageRewardArch | None = None,
    ):
        super().__init__(device)
        check_preprocessing("imagereward", preprocessing)
        path = find_weights(weights)
        tokenizer = load_tokenizer(find_tokenizer(path.parent))
        arch = arch or ImageRewardArch()
        if len(tokenizer) != arch.vocab_size:
            raise BenchError(f"imagereward: tokenizer has {len(tokenizer)} tokens, model {arch.vocab_size}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model, missing, unexpected = build_from_state_dict(arch, state)
        if missing or unexpected:
            raise BenchError(
                f"{path} does not match ImageReward: {len(missing)} missing keys (e.g. {missing[:3]}), "
                f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
            )
        self._setup(model, tokenizer, preprocessing, dtype)

    @classmethod
    def from_model(
        cls,
        model: ImageRewardModel,
        tokenizer,
        device: torch.device | str = "cpu",
        preprocessing: str = "tensor",
        dtype: torch.dtype = torch.float32,
    ) -> ImageRewardScorer:
        """Wrap an already built model and tokenizer (tests use a tiny random one)."""
        scorer = cls.without_weights(device)
        scorer._setup(model, tokenizer, preprocessing, dtype)
        return scorer

    def _setup(self, model: ImageRewardModel, tokenizer, preprocessing: str, dtype: torch.dtype) -> None:
        self.model = model.to(self.device, dtype).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.preprocessing = preprocessing
        self.dtype = dtype

    def tokenize(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), each (N, 35), as ImageReward.score tokenizes."""
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=MAX_TEXT_LENGTH,
            return_tensors="pt",
        )
        return tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Float NCHW in [0, 1] to CLIP-normalised pixels at the model's resolution."""
        return preprocess(images, self.model.arch.image_size, self.preprocessing).to(self.device, self.dtype)

    def score(
        self, images: torch.Tensor, prompts: Sequence[str], metadata: Sequence[dict] | None = None
    ) -> torch.Tensor:
        input_ids, attention_mask = self.tokenize(prompts)
        raw = self.model(self.preprocess(images), input_ids, attention_mask)
        return standardise(raw.float()).to(images.device)
