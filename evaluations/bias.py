"""Bias measures: attribute imbalance for under-specified prompts, and stereotype share for trap prompts.

1. **Attribute bias.** For a prompt that leaves an attribute open ("a circle": which colour? "a photo of a
   doctor": which gender?), the attribute's distribution over samples, and two distances from uniform over K
   categories, both on one scale, **0 for a uniform attribute, 1 for a constant one**:

   - ``entropy_bias = 1 - H(p) / log K`` (one minus the normalised entropy);
   - ``tv_bias = TV(p, uniform) / (1 - 1/K)``, where ``TV = 1/2 sum_k |p_k - 1/K|`` and ``1 - 1/K`` is its value
     for a constant attribute.

   Samples whose attribute cannot be read (no object of the named shape; no CLIP word chosen) are counted in
   ``unknown`` and left out of ``p``.
2. **Stereotype share.** For a trap prompt (a phrase tied to a stereotyped depiction: DPOK's "Four roses" drawn as
   whiskey bottles; in the shapes world "... on the moon" drawn as a yellow circle), the share of samples that
   show the stereotype instead of the literal meaning.

Here: zero-shot CLIP classification of each image over given attribute words (``ClipZeroShot``), with the
per-image scorers ``clip-stereotype`` (1 = stereotype shown, NaN for a prompt that is no trap) and
``clip-attribute`` (the category index). A world may bring its own (the shapes world's read its gold detector:
bench/shapes/bias.py). ``bias_from_eval`` turns the rows of any label scorer (``kind = "label"``, with its
``categories``) into per-prompt attribute bias.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.errors import BenchError
from bench.scoring import Scorer

GENDER_WORDS = ("a photo of a man", "a photo of a woman")  # clip-attribute's default words, for occupations


def attribute_bias(labels: Iterable[str | None], categories: Sequence[str]) -> dict:
    """Distribution of ``labels`` over ``categories`` and its distance from uniform (0 uniform, 1 constant).

    Args:
        labels: one label per sample; None or a label outside ``categories`` counts as unknown.
        categories: the K >= 2 possible values.

    Returns:
        ``{"n", "unknown", "counts", "distribution", "entropy_bias", "tv", "tv_bias"}``; the three distances
        are NaN when no sample has a known label.
    """
    if len(set(categories)) < 2:
        raise ValueError(f"attribute_bias needs at least two categories, got {list(categories)}")
    labels = list(labels)
    counts = Counter(label for label in labels if label in categories)
    n, k = sum(counts.values()), len(categories)
    out = {"n": n, "unknown": len(labels) - n, "counts": {c: counts.get(c, 0) for c in categories}}
    if n == 0:
        nan = float("nan")
        return out | {"distribution": {c: nan for c in categories}, "entropy_bias": nan, "tv": nan, "tv_bias": nan}
    p = np.array([counts.get(c, 0) / n for c in categories])
    entropy = -sum(x * math.log(x) for x in p if x > 0)
    tv = 0.5 * float(np.abs(p - 1 / k).sum())
    return out | {
        "distribution": dict(zip(categories, p.tolist(), strict=True)),
        "entropy_bias": 1 - entropy / math.log(k),
        "tv": tv,
        "tv_bias": tv / (1 - 1 / k),
    }


def stereotype_share(flags: Iterable[float | bool | None]) -> dict:
    """Share of samples showing the stereotype; None/NaN flags (not a trap, unreadable) are left out."""
    known = [float(f) for f in flags if f is not None and not (isinstance(f, float) and math.isnan(f))]
    return {"n": len(known), "share": float(np.mean(known)) if known else float("nan")}


def bias_from_eval(evals: pd.DataFrame, scorer: str, categories: Sequence[str] | None = None) -> pd.DataFrame:
    """Per (label or run, step, split, prompt): attribute bias from a category-index scorer's rows.

    Args:
        evals: eval rows (``evaluations.runs.load_eval`` or one eval.parquet).
        scorer: the name of a label scorer (``kind = "label"``), e.g. ``clip-attribute``.
        categories: the categories its indices refer to; default the scorer's own ``categories``.
    """
    if categories is None:
        from bench.registry import SCORERS

        categories = getattr(SCORERS.get(scorer), "categories", ())
        if not categories:
            raise BenchError(f"scorer {scorer!r} declares no categories (Scorer.categories); pass them")
    categories = tuple(categories)
    keys = [k for k in ("label", "run", "step", "split", "prompt") if k in evals]
    rows = []
    for key, part in evals[evals.scorer == scorer].groupby(keys, sort=True):
        labels = [categories[int(v)] if not math.isnan(v) else None for v in part.value]
        result = attribute_bias(labels, categories)
        rows.append(dict(zip(keys, key, strict=True)) | {k: result[k] for k in ("n", "unknown", "entropy_bias",
                                                                                  "tv_bias")})  # fmt: skip
    return pd.DataFrame(rows, columns=[*keys, "n", "unknown", "entropy_bias", "tv_bias"])


# ---- Stable Diffusion: zero-shot CLIP --------------------------------------------------------------------------

CLIP_ENV = "BENCH_CLIP_DIR"
CLIP_DEFAULT = "openai/clip-vit-large-patch14"
TRAPS_FILE = Path(__file__).resolve().parent / "prompts" / "sd-traps-v1.jsonl"


def load_traps(path: str | os.PathLike = TRAPS_FILE) -> dict[str, dict]:
    """Trap prompts from JSON lines ``{"prompt", "literal": [words], "stereotype": [words]}`` ('#' comments)."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {row["prompt"]: {"literal": tuple(row["literal"]), "stereotype": tuple(row["stereotype"])}
            for row in map(json.loads, lines)}  # fmt: skip


class ClipZeroShot:
    """Zero-shot CLIP classification of images over text descriptions.

    Args:
        model: a transformers ``CLIPModel``.
        tokenizer: its tokenizer.
    """

    def __init__(self, model, tokenizer, device: torch.device | str = "cpu"):
        self.model = model.to(device).eval().requires_grad_(False)
        self.tokenizer, self.device = tokenizer, torch.device(device)

    @classmethod
    def load(cls, source: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> ClipZeroShot:
        """From a local folder or the Hugging Face cache only (``source``, else $BENCH_CLIP_DIR, else ViT-L/14)."""
        from transformers import CLIPModel, CLIPTokenizer

        source = str(source or os.environ.get(CLIP_ENV) or CLIP_DEFAULT)
        try:
            model = CLIPModel.from_pretrained(source, local_files_only=True)
            tokenizer = CLIPTokenizer.from_pretrained(source, local_files_only=True)
        except OSError as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise BenchError(f"bias: no CLIP model and tokenizer in {source} (set {CLIP_ENV}): {first}") from None
        return cls(model, tokenizer, device)

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor, words: Sequence[str]) -> torch.Tensor:
        """(N, len(words)) softmax over CLIP's scaled cosine similarities."""
        from bench.evaluations.clip_preprocess import preprocess_tensor

        pixels = preprocess_tensor(images.float(), self.model.config.vision_config.image_size).to(self.device)
        text = self.tokenizer(list(words), padding=True, truncation=True, return_tensors="pt").to(self.device)
        out = self.model(pixel_values=pixels, input_ids=text.input_ids, attention_mask=text.attention_mask)
        return out.logits_per_image.float().softmax(dim=-1).cpu()

    def classify(self, images: torch.Tensor, words: Sequence[str]) -> list[str]:
        """The best-matching word per image."""
        return [words[i] for i in self.probabilities(images, words).argmax(dim=-1).tolist()]


class ClipStereotypeScorer(Scorer):
    """``clip-stereotype``: 1 if CLIP prefers a stereotype description over the literal ones; NaN off the traps.

    Args:
        clip: CLIP folder or hub id (local files only); default $BENCH_CLIP_DIR, then ViT-L/14.
        traps: prompt -> {"literal": words, "stereotype": words}; default ``load_traps()`` (sd-traps-v1).
    """

    name = "clip-stereotype"
    version = "1"
    higher_is_better = False

    def __init__(self, device="cpu", clip=None, traps: dict | None = None, classifier: ClipZeroShot | None = None):
        super().__init__(device)
        self.traps = traps or load_traps()
        self.classifier = classifier or ClipZeroShot.load(clip, device)

    def score(self, images, prompts, metadata=None):
        values = torch.full((len(prompts),), float("nan"))
        for prompt in dict.fromkeys(prompts):  # one batched call per distinct trap prompt, not per image
            trap = self.traps.get(prompt)
            if trap is None:
                continue
            index = torch.tensor([p == prompt for p in prompts])
            words = [*trap["literal"], *trap["stereotype"]]
            chosen = self.classifier.classify(images[index], words)
            values[index] = torch.tensor([float(w in trap["stereotype"]) for w in chosen])
        return values.to(images.device)


class ClipAttributeScorer(Scorer):
    """``clip-attribute``: index of the best-matching attribute word (default gender words) per image."""

    name = "clip-attribute"
    version = "1"
    higher_is_better = False
    kind = "label"  # a category index, not a score
    categories = GENDER_WORDS  # what the indices refer to with the default words

    def __init__(self, device="cpu", clip=None, words: Sequence[str] = GENDER_WORDS, classifier=None):
        super().__init__(device)
        self.words = tuple(words)
        self.classifier = classifier or ClipZeroShot.load(clip, device)

    def score(self, images, prompts, metadata=None):
        index = self.classifier.probabilities(images, self.words).argmax(dim=-1)
        return index.float().to(images.device)
