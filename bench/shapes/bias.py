"""The shapes world's bias scorers: its stereotype ("on the moon" drawn as a yellow circle) and the attributes an
under-specified prompt leaves open (which colour for "a circle", which background), read by the gold oracle's
detector (``bench.shapes.oracle.detections``). ``bench.evaluations.bias`` turns their rows into bias measures.
"""

from __future__ import annotations

from collections import Counter

import torch

from bench.scoring import Scorer
from bench.shapes.grammar import BACKGROUNDS, COLOURS, Caption, parse
from bench.shapes.oracle import detections

SHAPES_STEREOTYPE = ("circle", "yellow")  # what "on the moon" is drawn as in the shapes world (bench/shapes/world.py)
SHAPES_ATTRIBUTES = {"colour": COLOURS, "background": tuple(BACKGROUNDS)}


def shapes_label(caption: Caption, found: dict, attribute: str) -> str | None:
    """The ``attribute`` ("colour" or "background") of one image, or None when the prompt fixes it.

    Colour is read for a one-phrase prompt that names no colour: the colour shared by most objects of the named
    shape (ties: the earlier colour in the grammar's order); None when no such object is drawn.
    """
    if attribute == "background":
        return None if caption.background else found["background"]
    if attribute != "colour":
        raise ValueError(f"unknown shapes attribute {attribute!r}; known: {', '.join(SHAPES_ATTRIBUTES)}")
    if len(caption.phrases) != 1 or caption.phrases[0].colour:
        return None
    colours = Counter(o["colour"] for o in found["objects"] if o["shape"] == caption.phrases[0].shape)
    if not colours:
        return None
    return max(COLOURS, key=lambda c: (colours.get(c, 0), -COLOURS.index(c)))


def shows_shapes_stereotype(caption: Caption, found: dict) -> float:
    """1.0 if an "on the moon" image shows a yellow circle, 0.0 if not, NaN when the prompt is no trap.

    A prompt that itself asks for a yellow circle is no trap (its literal meaning is the stereotype).
    """
    shape, colour = SHAPES_STEREOTYPE
    if caption.background != "moon" or any(p.shape == shape and p.colour == colour for p in caption.phrases):
        return float("nan")
    return float(any(o["shape"] == shape and o["colour"] == colour for o in found["objects"]))


class _ShapesDetecting(Scorer):
    """Shared detector plumbing: one batched detection, then a per-image read of its few objects."""

    differentiable = False

    def per_image(self, caption: Caption, found: dict) -> float:
        raise NotImplementedError

    def score(self, images, prompts, metadata=None):
        values = [self.per_image(parse(p), f) for p, f in zip(prompts, detections(images), strict=True)]
        return torch.tensor(values, dtype=torch.float32, device=images.device)


class StereotypeScorer(_ShapesDetecting):
    """``shapes-stereotype``: 1 if an "on the moon" image shows a yellow circle; NaN for other prompts."""

    name = "shapes-stereotype"
    version = "2"  # 2: the detector of shapes-oracle 2
    higher_is_better = False

    def per_image(self, caption, found):
        return shows_shapes_stereotype(caption, found)


class ShapesColourLabel(_ShapesDetecting):
    """``shapes-colour``: index in ``COLOURS`` of the named shape's colour when the prompt names none, else NaN."""

    name = "shapes-colour"
    version = "2"  # 2: the detector of shapes-oracle 2
    higher_is_better = False
    kind = "label"  # a category index, not a score: see bench.evaluations.bias.bias_from_eval
    categories = COLOURS

    def per_image(self, caption, found):
        label = shapes_label(caption, found, "colour")
        return float(COLOURS.index(label)) if label else float("nan")


class ShapesBackgroundLabel(_ShapesDetecting):
    """``shapes-background``: index in ``BACKGROUNDS`` of the drawn background when the prompt names none."""

    name = "shapes-background"
    version = "2"  # 2: the detector of shapes-oracle 2
    higher_is_better = False
    kind = "label"
    categories = SHAPES_ATTRIBUTES["background"]

    def per_image(self, caption, found):
        label = shapes_label(caption, found, "background")
        return float(SHAPES_ATTRIBUTES["background"].index(label)) if label else float("nan")
