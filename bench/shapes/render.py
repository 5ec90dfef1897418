"""Rendering: the palette, scene structures, placement of objects and batched rasterisation.

Images are small (32 x 32 by default) so a tiny diffusion model can learn them on a CPU. Shapes are drawn with
hard edges in flat palette colours on a flat background; every object sits in an integer-aligned box of odd side,
which makes the box a detector reads back from a clean render give the exact shape again (the quality scorer
relies on this: a clean render scores 1). Objects never touch: boxes keep a gap of two pixels, so connected
components of a clean render are the objects.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.shapes.grammar import BACKGROUNDS, COLOURS, SHAPES

DEFAULT_SIZE = 32

# Palette (RGB, 0-255). Object colours and background colours are far apart (>= 100 in RGB distance), and the
# midpoint of an object colour and a background colour (a blurred edge) is far from every third colour, so
# nearest-palette segmentation of a slightly blurred image stays right.
OBJECT_RGB = {
    "red": (215, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (245, 225, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "purple": (140, 50, 180),
}
BACKGROUND_RGB = {
    "plain": (240, 240, 230),
    "grass": (150, 200, 110),
    "sky": (135, 190, 240),
    "moon": (60, 60, 70),
}
# Row k of PALETTE is colour k: the six object colours first, then the four backgrounds.
PALETTE = np.array([OBJECT_RGB[c] for c in COLOURS] + [BACKGROUND_RGB[b] for b in BACKGROUNDS], np.float32)

# Object box sides at 32 px (odd, see the module docstring); scaled for other image sizes.
SINGLE_SIDES = (11, 13, 15)
MULTI_SIDES = (7, 9)
GAP = 2  # pixels of background between any two object boxes
MARGIN = 1  # pixels between a box and the image border
# A region's box centres lie within this fraction of the image from its side; the oracle accepts up to 0.4.
REGION_FRACTION = 0.35
CENTRE_JITTER = 2  # pixels an unplaced single object may move from the image centre


@dataclass(frozen=True)
class Placed:
    """One drawn object: ``shape`` of ``colour`` filling the box at (x0, y0) of side ``side`` pixels."""

    shape: str
    colour: str
    x0: int
    y0: int
    side: int


@dataclass(frozen=True)
class Scene:
    """What one image shows: a background and non-touching objects."""

    background: str
    objects: tuple[Placed, ...]


def shape_masks(
    shape_ids: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    w: np.ndarray,
    h: np.ndarray,
    height: int,
    width: int,
) -> np.ndarray:
    """Rasterise K shapes given by their boxes; returns bool (K, height, width).

    A pixel belongs to a shape when its centre does: circles are ellipses inscribed in the box, squares fill it,
    triangles point up with the apex at the top middle and the base on the bottom edge.
    """
    x0, y0, w, h = (np.asarray(a, np.float32)[:, None, None] for a in (x0, y0, w, h))
    shape_ids = np.asarray(shape_ids)[:, None, None]
    xs = np.arange(width, dtype=np.float32)[None, None, :] + 0.5
    ys = np.arange(height, dtype=np.float32)[None, :, None] + 0.5
    u = (xs - x0) / w  # 0..1 across the box
    v = (ys - y0) / h
    inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    circle = (2 * u - 1) ** 2 + (2 * v - 1) ** 2 <= 1
    triangle = np.abs(u - 0.5) <= 0.5 * v
    return inside & np.where(shape_ids == 0, circle, np.where(shape_ids == 1, True, triangle))


def rasterise(scenes: Sequence[Scene], size: int = DEFAULT_SIZE) -> np.ndarray:
    """Draw scenes as uint8 images of shape (N, size, size, 3); one vectorised pass for all objects."""
    backgrounds = np.array([list(BACKGROUNDS).index(s.background) for s in scenes], np.int64)
    images = PALETTE[len(COLOURS) + backgrounds].astype(np.uint8)[:, None, None, :]
    images = np.ascontiguousarray(np.broadcast_to(images, (len(scenes), size, size, 3)))
    objects = [(i, o) for i, s in enumerate(scenes) for o in s.objects]
    if not objects:
        return images
    owner = np.array([i for i, _ in objects])
    shape_ids = np.array([SHAPES.index(o.shape) for _, o in objects])
    colour_ids = np.array([COLOURS.index(o.colour) for _, o in objects])
    x0, y0, side = (np.array([getattr(o, a) for _, o in objects]) for a in ("x0", "y0", "side"))
    masks = shape_masks(shape_ids, x0, y0, side, side, size, size)
    k, rows, cols = np.nonzero(masks)
    images[owner[k], rows, cols] = PALETTE[colour_ids[k]].astype(np.uint8)
    return images


def sides_for(n_objects: int, size: int = DEFAULT_SIZE) -> tuple[int, ...]:
    """Allowed box sides for a scene of ``n_objects`` objects at image size ``size`` (odd, scaled from 32)."""
    base = SINGLE_SIDES if n_objects == 1 else MULTI_SIDES
    return tuple(max(3, 2 * round(s * size / DEFAULT_SIZE / 2 - 0.5) + 1) for s in base)


def box_range(region: str | None, side: int, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Inclusive (x0 range, y0 range) for a box of ``side`` in ``region`` (None: anywhere; "centre")."""
    low, high = MARGIN, size - MARGIN - side
    near = int(np.floor(REGION_FRACTION * size - side / 2))
    far = int(np.ceil((1 - REGION_FRACTION) * size - side / 2))
    centre = int(round(size / 2 - side / 2))
    ranges = {
        None: ((low, high), (low, high)),
        "centre": ((centre - CENTRE_JITTER, centre + CENTRE_JITTER),) * 2,
        "left": ((low, near), (low, high)),
        "right": ((far, high), (low, high)),
        "top": ((low, high), (low, near)),
        "bottom": ((low, high), (far, high)),
    }
    return ranges[region]


def _apart(box: tuple[int, int, int], others: list[tuple[int, int, int]]) -> bool:
    x, y, s = box
    return all(
        x + s + GAP <= ox or ox + os + GAP <= x or y + s + GAP <= oy or oy + os + GAP <= y for ox, oy, os in others
    )


def _line_up(n: int, side: int, region: str | None, size: int) -> list[tuple[int, int, int]] | None:
    """Deterministic fallback: ``n`` boxes evenly spaced along the free axis of the region, or None."""
    (xl, xh), (yl, yh) = box_range(region, side, size)
    along_x = (xh - xl) >= (yh - yl)
    lo, hi = (xl, xh) if along_x else (yl, yh)
    step = side + GAP
    if n > 1 and (hi - lo) < (n - 1) * step:
        return None
    starts = [lo + (hi - lo - (n - 1) * step) // 2 + k * step for k in range(n)]
    mid = ((yl + yh) // 2) if along_x else ((xl + xh) // 2)
    return [(s, mid, side) if along_x else (mid, s, side) for s in starts]


def place(
    rng: random.Random, groups: Sequence[tuple[int, str | None]], size: int = DEFAULT_SIZE, tries: int = 60
) -> list[list[tuple[int, int, int]]]:
    """Place non-touching boxes: one list of (x0, y0, side) per group of (count, region).

    Random placement is tried first with the scene's sides, then with the smallest side; a group that still
    does not fit is lined up along its region.
    """
    n_total = sum(n for n, _ in groups)
    sides = sides_for(n_total, size)
    for attempt_sides in (sides, sides[:1]):
        placed: list[list[tuple[int, int, int]]] = []
        flat: list[tuple[int, int, int]] = []
        for count, region in groups:
            boxes = []
            for _ in range(count):
                for _ in range(tries):
                    side = rng.choice(attempt_sides)
                    (xl, xh), (yl, yh) = box_range(region, side, size)
                    box = (rng.randint(xl, xh), rng.randint(yl, yh), side)
                    if _apart(box, flat):
                        break
                else:
                    box = None
                if box is None:
                    break
                boxes.append(box)
                flat.append(box)
            if len(boxes) < count:
                break
            placed.append(boxes)
        else:
            return placed
    return _fallback(groups, sides[0], size)


def _fallback(groups: Sequence[tuple[int, str | None]], side: int, size: int) -> list[list[tuple[int, int, int]]]:
    placed, flat = [], []
    for count, region in groups:
        boxes = _line_up(count, side, region, size)
        if boxes is None or not all(_apart(b, flat) for b in boxes):
            raise ValueError(f"cannot place {list(groups)} in a {size}px image")
        placed.append(boxes)
        flat.extend(boxes)
    return placed
