"""shapes-oracle: the gold scorer of the shapes world, the fraction of a prompt's clauses an image satisfies.

The prompt is parsed with the shapes grammar (bench/shapes/grammar.py) and the image is read with
``bench.shapes.detect.find_objects``: the background is the image's own (its border's median colour), an object is
any connected region that differs from it, and the object's colour (one of the six, or ``"off-palette"`` when it is
near none of them) and shape (IoU with ideal shapes) are then read. A lime triangle drawn for "a yellow triangle" is
a triangle of the wrong colour: count right, colour wrong. Version 1 read objects only in the six object colours and
took any pixel near a background colour for background, so that triangle vanished (docs/ORACLE.md).
Clauses, each worth the same:

- for every phrase: ``count`` (exactly that many objects of its shape), ``colour`` when named (at least one object
  of the shape, all of that colour), ``position`` when named (at least one object of the shape, every box centre
  in the region: left of 0.4 of the width, right of 0.6, above 0.4 of the height, below 0.6);
- ``background`` when named (the image's background reads as the named one);
- ``no_extra``: every object has a shape the prompt names (blobs and unasked shapes fail it), so an image cannot
  satisfy every prompt by drawing everything.

The score is satisfied clauses / clauses, in [0, 1]; ``details`` gives every clause, ``detect`` the objects and
background (for bias measurement: the colour drawn when none is asked, what "on the moon" turns into).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bench.scoring import Scorer
from bench.shapes.detect import OFF_PALETTE, find_objects
from bench.shapes.grammar import BACKGROUNDS, COLOURS, SHAPES, Caption, parse

OFF_PALETTE_NAME = "off-palette"  # the colour of an object near none of the six object colours

# Centroid bounds of the regions, as fractions of the image side; renders put region centres within 0.35.
REGION_BOUNDS = {
    "left": lambda x, y: x < 0.4,
    "right": lambda x, y: x > 0.6,
    "top": lambda x, y: y < 0.4,
    "bottom": lambda x, y: y > 0.6,
}


def detections(images) -> list[dict]:
    """Per image: ``{"background": name or None, "objects": [{shape, colour, rgb, x, y, area, iou}, ...]}``.

    ``shape`` is None for a blob; ``colour`` is one of the grammar's colours or ``OFF_PALETTE_NAME``, ``rgb`` the
    median colour of the object's core; ``x`` and ``y`` are the centre of its bounding box as fractions of the width
    and height (the box, not the centroid, because a triangle's centroid sits low in its box).
    """
    seg = find_objects(images)
    _, h, w = seg.palette_index.shape
    comps = seg.components
    keep = np.flatnonzero(comps.is_object)
    per_image: list[list[dict]] = [[] for _ in range(len(seg.background))]
    for k in keep:  # only a handful of objects per image: building the dicts is the cheap part
        per_image[comps.image[k]].append(
            {
                "shape": SHAPES[comps.shape[k]] if comps.shape[k] >= 0 else None,
                "colour": COLOURS[comps.colour[k]] if comps.colour[k] != OFF_PALETTE else OFF_PALETTE_NAME,
                "rgb": [round(float(c)) for c in seg.colour_rgb[k]],
                "x": float((comps.x0[k] + comps.x1[k] + 1) / 2 / w),
                "y": float((comps.y0[k] + comps.y1[k] + 1) / 2 / h),
                "area": int(comps.area[k]),
                "iou": float(comps.iou[k]),
            }
        )
    names = list(BACKGROUNDS)
    return [
        {"background": names[b] if b >= 0 else None, "objects": objs}
        for b, objs in zip(seg.background, per_image, strict=True)
    ]


def judge(caption: Caption, found: dict) -> list[dict]:
    """The clauses of ``caption`` checked against one image's detections."""
    clauses = []
    for phrase in caption.phrases:
        objs = [o for o in found["objects"] if o["shape"] == phrase.shape]
        text = phrase.text()
        clauses.append(
            {"clause": "count", "phrase": text, "want": phrase.count, "got": len(objs), "ok": len(objs) == phrase.count}
        )
        if phrase.colour:
            colours = sorted({o["colour"] for o in objs})
            ok = colours == [phrase.colour]
            clauses.append({"clause": "colour", "phrase": text, "want": phrase.colour, "got": colours, "ok": ok})
        if phrase.position:
            inside = [REGION_BOUNDS[phrase.position](o["x"], o["y"]) for o in objs]
            ok = bool(inside) and all(inside)
            clauses.append({"clause": "position", "phrase": text, "want": phrase.position, "got": inside, "ok": ok})
    if caption.background:
        got = found["background"]
        clauses.append(
            {"clause": "background", "want": caption.background, "got": got, "ok": got == caption.background}
        )
    named = {p.shape for p in caption.phrases}
    extra = [o["shape"] for o in found["objects"] if o["shape"] not in named]
    clauses.append({"clause": "no_extra", "want": [], "got": extra, "ok": not extra})
    return clauses


class ShapesOracle(Scorer):
    """Gold truth of the shapes world: the fraction of the prompt's clauses the image satisfies, in [0, 1]."""

    name = "shapes-oracle"
    version = "2"  # 2: objects are read against the image's own background (off-palette objects count)
    differentiable = False
    higher_is_better = True
    gold = True

    def score(self, images, prompts, metadata=None):
        scores = [d["score"] for d in self.details(images, prompts)]
        return torch.tensor(scores, dtype=torch.float32, device=images.device)

    def details(self, images: torch.Tensor, prompts: Sequence[str]) -> list[dict]:
        """Per image: ``{"prompt", "score", "clauses": [...], "background", "objects"}``.

        Raises:
            ValueError: a prompt is not a caption of the shapes grammar.
        """
        out = []
        for prompt, found in zip(prompts, detections(images), strict=True):
            clauses = judge(parse(prompt), found)
            score = sum(c["ok"] for c in clauses) / len(clauses)
            out.append({"prompt": prompt, "score": score, "clauses": clauses, **found})
        return out

    def detect(self, images: torch.Tensor) -> list[dict]:
        """Objects and background of each image, without a prompt (see ``detections``)."""
        return detections(images)
