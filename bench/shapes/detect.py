"""Reading a shapes-world image back: palette segmentation, connected components, shape class, background.

Used by the gold oracle (evaluations/shapes_oracle.py) and the quality scorer (evaluations/shapes_quality.py).
Images may come from a tiny diffusion model, so every step tolerates blur and noise:

1. each pixel takes its nearest palette colour, or none when farther than ``TOLERANCE`` (RGB distance, 0-255);
2. pixels of the same object colour are joined into 4-connected components (batched label propagation with
   pointer jumping; no scipy);
3. a component is an object when it has at least ``MIN_AREA`` pixels (scaled with the image) and at least two
   interior pixels, so speckle and the one-pixel rings a blurred edge leaves are ignored;
4. its shape is the ideal shape (circle, square, triangle) drawn in its bounding box that overlaps it best (IoU);
   below ``MIN_IOU`` it is a blob, shape None;
5. the background is the background colour with most pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.shapes.grammar import BACKGROUNDS, COLOURS
from bench.shapes.render import DEFAULT_SIZE, PALETTE, shape_masks

TOLERANCE = 80.0  # RGB distance (0-255) beyond which a pixel has no palette colour
MIN_AREA = 10  # pixels at 32 x 32; a 7-pixel triangle has 25
MIN_INTERIOR = 2  # pixels whose four neighbours are in the same component
MIN_IOU = 0.5  # below this overlap with every ideal shape a component is a blob
APEX_LOSS = (0, 1, 2)  # pixels of a triangle's tip that may be missing
MIN_BACKGROUND_SHARE = 0.2  # of all pixels; below it the background is unknown
N_OBJECT_COLOURS = len(COLOURS)


@dataclass
class Components:
    """Connected components of object colours in a batch; one entry per component in every array."""

    label: np.ndarray  # the component's value in the label map (smallest flat index of its pixels)
    image: np.ndarray  # index of the image the component is in
    colour: np.ndarray  # index into COLOURS
    area: np.ndarray  # pixels
    x0: np.ndarray  # bounding box, inclusive pixel indices
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    cx: np.ndarray  # centroid in pixels, measured from the top-left corner of the image
    cy: np.ndarray
    shape: np.ndarray  # index into SHAPES, -1 for a blob (only meaningful where is_object)
    iou: np.ndarray  # overlap with the best ideal shape (0 where not is_object)
    is_object: np.ndarray  # bool: large and thick enough to be an object rather than speckle


@dataclass
class Segmentation:
    """Everything read from a batch of N images of H x W pixels."""

    palette_index: np.ndarray  # (N, H, W) nearest palette row, -1 where no colour is within TOLERANCE
    distance: np.ndarray  # (N, H, W) RGB distance to the nearest palette colour
    background: np.ndarray  # (N,) index into BACKGROUNDS, -1 when unknown
    components: Components


def as_uint8_nhwc(images) -> np.ndarray:
    """Accept float NCHW in [0, 1] (torch or numpy) or uint8 NHWC; return float32 NHWC in 0-255."""
    array = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    if array.dtype == np.uint8:
        return array.astype(np.float32)
    return np.clip(array, 0, 1).transpose(0, 2, 3, 1).astype(np.float32) * 255.0


def label_components(classes: np.ndarray) -> np.ndarray:
    """4-connected components of equal non-negative values in (N, H, W); returns labels, -1 for negatives.

    A component's label is the smallest flat index of its pixels. Each round takes the minimum label over
    same-class neighbours, then jumps every label to its label's label, which merges long chains in few rounds.
    """
    n, h, w = classes.shape
    none = n * h * w
    labels = np.where(classes >= 0, np.arange(none).reshape(n, h, w), none)
    same_x = (classes[:, :, 1:] == classes[:, :, :-1]) & (classes[:, :, 1:] >= 0)
    same_y = (classes[:, 1:, :] == classes[:, :-1, :]) & (classes[:, 1:, :] >= 0)
    while True:
        new = labels.copy()
        pair = np.minimum(labels[:, :, 1:], labels[:, :, :-1])
        new[:, :, 1:] = np.where(same_x, np.minimum(new[:, :, 1:], pair), new[:, :, 1:])
        new[:, :, :-1] = np.where(same_x, np.minimum(new[:, :, :-1], pair), new[:, :, :-1])
        pair = np.minimum(labels[:, 1:, :], labels[:, :-1, :])
        new[:, 1:, :] = np.where(same_y, np.minimum(new[:, 1:, :], pair), new[:, 1:, :])
        new[:, :-1, :] = np.where(same_y, np.minimum(new[:, :-1, :], pair), new[:, :-1, :])
        flat = np.append(new.ravel(), none)  # index `none` maps to itself
        for _ in range(2):
            flat = flat[flat]
        new = flat[:-1].reshape(n, h, w)
        if np.array_equal(new, labels):
            return np.where(new == none, -1, new)
        labels = new


def _interior(labels: np.ndarray) -> np.ndarray:
    """Pixels whose four neighbours exist and share their label."""
    padded = np.pad(labels, ((0, 0), (1, 1), (1, 1)), constant_values=-2)
    core = padded[:, 1:-1, 1:-1]
    return (
        (core >= 0)
        & (padded[:, :-2, 1:-1] == core)
        & (padded[:, 2:, 1:-1] == core)
        & (padded[:, 1:-1, :-2] == core)
        & (padded[:, 1:-1, 2:] == core)
    )


def _components(labels: np.ndarray, palette_index: np.ndarray) -> Components:
    n, h, w = labels.shape
    fg = np.flatnonzero(labels.ravel() >= 0)
    roots, inverse, area = np.unique(labels.ravel()[fg], return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(area)[:-1]]).astype(np.int64)
    ys, xs = (fg % (h * w)) // w, fg % w
    empty = np.zeros(0, np.int64)
    if len(roots) == 0:
        return Components(*(empty,) * 12, is_object=np.zeros(0, bool))
    reduce = lambda op, v: op.reduceat(v[order], starts)  # noqa: E731
    interior = np.bincount(inverse, weights=_interior(labels).ravel()[fg], minlength=len(roots))
    min_area = max(4, round(MIN_AREA * h * w / DEFAULT_SIZE**2))
    return Components(
        label=roots,
        image=roots // (h * w),
        colour=palette_index.ravel()[roots],
        area=area,
        x0=reduce(np.minimum, xs),
        y0=reduce(np.minimum, ys),
        x1=reduce(np.maximum, xs),
        y1=reduce(np.maximum, ys),
        cx=np.bincount(inverse, weights=xs + 0.5) / area,
        cy=np.bincount(inverse, weights=ys + 0.5) / area,
        shape=np.full(len(roots), -1),
        iou=np.zeros(len(roots)),
        is_object=(area >= min_area) & (interior >= MIN_INTERIOR),
    )


def _classify_shapes(comps: Components, labels: np.ndarray) -> None:
    """Fill ``shape`` and ``iou`` of the object components by IoU with ideal shapes in their boxes."""
    idx = np.flatnonzero(comps.is_object)
    if len(idx) == 0:
        return
    n, h, w = labels.shape
    own = labels[comps.image[idx]] == comps.label[idx][:, None, None]
    x0, y0 = comps.x0[idx], comps.y0[idx]
    bw, bh = comps.x1[idx] - x0 + 1, comps.y1[idx] - y0 + 1
    iou = lambda ideal: (ideal & own).sum(axis=(1, 2)) / np.maximum((ideal | own).sum(axis=(1, 2)), 1)  # noqa: E731
    ious = np.stack([iou(shape_masks(np.full(len(idx), s), x0, y0, bw, bh, h, w)) for s in range(2)], axis=1)
    # Blur erases a small triangle's one-pixel apex, so also try triangles whose apex is above the box.
    rows = np.arange(h)[None, :, None] >= y0[:, None, None]
    tri = [iou(shape_masks(np.full(len(idx), 2), x0, y0 - k, bw, bh + k, h, w) & rows) for k in APEX_LOSS]
    ious = np.concatenate([ious, np.max(tri, axis=0)[:, None]], axis=1)
    best = ious.argmax(axis=1)
    comps.iou[idx] = ious.max(axis=1)
    comps.shape[idx] = np.where(comps.iou[idx] >= MIN_IOU, best, -1)


def segment(images) -> Segmentation:
    """Segment a batch (float NCHW in [0, 1] or uint8 NHWC) into palette colours, objects and background."""
    pixels = as_uint8_nhwc(images)
    n, h, w, _ = pixels.shape
    distances = np.sqrt(((pixels[..., None, :] - PALETTE) ** 2).sum(-1))  # (N, H, W, colours)
    nearest = distances.argmin(-1)
    distance = np.take_along_axis(distances, nearest[..., None], -1)[..., 0]
    palette_index = np.where(distance <= TOLERANCE, nearest, -1)
    objects_only = np.where(palette_index < N_OBJECT_COLOURS, palette_index, -1)
    labels = label_components(objects_only)
    comps = _components(labels, palette_index)
    _classify_shapes(comps, labels)
    counts = np.stack([(palette_index == N_OBJECT_COLOURS + b).sum((1, 2)) for b in range(len(BACKGROUNDS))], 1)
    background = np.where(counts.max(1) >= MIN_BACKGROUND_SHARE * h * w, counts.argmax(1), -1)
    return Segmentation(palette_index, distance, background, comps)
