"""Reading a shapes-world image back: segmentation, connected components, shape class, background.

Two segmentations share the components and the shape classifier:

- ``find_objects`` (the gold oracle, bench/shapes/oracle.py): an object is any connected region that differs
  from the image's own background. The background is read first (the median colour of the image's border); every
  pixel then takes the nearest of that observed background and the six object colours, or *off-palette* when none is
  within ``TOLERANCE``. An object is a connected region of non-background pixels, its colour read from its core
  (the nearest object colour, or off-palette), so a lime triangle on a plain background is a triangle of the
  wrong colour, never part of the background because lime is near the grass colour. A region without a shape that
  holds solid parts of two object colours is touching objects, and is split by colour.
- ``segment`` (the quality scorer, bench/shapes/quality.py): the palette segmentation below, which scores
  how clean an image looks against the whole palette (unchanged since shapes-quality version 1).

Images may come from a tiny diffusion model, so every step of ``segment`` tolerates blur and noise:

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
OFF_PALETTE = N_OBJECT_COLOURS  # class of find_objects' pixels and objects near no object colour
MAX_ASPECT = 1.5  # a region whose box is longer than this times its width is not one shape (find_objects)


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
    interior: np.ndarray  # pixels whose four neighbours are in the component


@dataclass
class Segmentation:
    """Everything read from a batch of N images of H x W pixels."""

    palette_index: np.ndarray  # (N, H, W) nearest palette row, -1 where no colour is within TOLERANCE
    distance: np.ndarray  # (N, H, W) RGB distance to the nearest palette colour
    background: np.ndarray  # (N,) index into BACKGROUNDS, -1 when unknown
    components: Components
    observed_background: np.ndarray | None = None  # (N, 3) RGB the image's background was read as (find_objects)
    colour_rgb: np.ndarray | None = None  # (components, 3) median RGB of each component's core (find_objects)


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
        return Components(*(empty,) * 12, is_object=np.zeros(0, bool), interior=empty)
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
        interior=interior,
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


def _border_median(pixels: np.ndarray) -> np.ndarray:
    """(N, 3) median colour of each image's outermost ring of pixels: renders keep objects off the border."""
    border = np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, 1:-1, 0], pixels[:, 1:-1, -1]], axis=1)
    return np.median(border, axis=1)


def _core_colours(labels: np.ndarray, comps: Components, pixels: np.ndarray) -> np.ndarray:
    """(K, 3) median RGB over each object's interior pixels (all its pixels when it has none); 0 for non-objects."""
    interior = _interior(labels)
    out = np.zeros((len(comps.label), 3), np.float32)
    for k in np.flatnonzero(comps.is_object):  # a handful per image
        image, label = comps.image[k], comps.label[k]
        own = labels[image] == label
        core = own & interior[image]
        out[k] = np.median(pixels[image][core if core.any() else own], axis=0)
    return out


def find_objects(images) -> Segmentation:
    """Segment a batch against each image's own background (see the module docstring); used by the oracle.

    ``palette_index`` holds each pixel's class: an object colour (0-5), ``OFF_PALETTE``, or -1 for the background;
    ``distance`` the RGB distance to that class's colour (to the observed background for -1). ``background`` names
    the background palette colour nearest to the observed one, -1 when none is within ``TOLERANCE``. A component's
    ``colour`` is an object colour or ``OFF_PALETTE``; ``colour_rgb`` says what it looks like.
    """
    pixels = as_uint8_nhwc(images)
    n, h, w, _ = pixels.shape
    observed = _border_median(pixels)
    backgrounds = PALETTE[N_OBJECT_COLOURS:]
    to_backgrounds = np.sqrt(((observed[:, None, :] - backgrounds[None]) ** 2).sum(-1))
    background = np.where(to_backgrounds.min(1) <= TOLERANCE, to_backgrounds.argmin(1), -1)
    candidates = np.concatenate(
        [np.broadcast_to(PALETTE[:N_OBJECT_COLOURS], (n, N_OBJECT_COLOURS, 3)), observed[:, None, :]], axis=1
    )  # (N, 7, 3): the object colours, then this image's background
    distances = np.sqrt(((pixels[:, :, :, None, :] - candidates[:, None, None]) ** 2).sum(-1))
    nearest = distances.argmin(-1)
    distance = np.take_along_axis(distances, nearest[..., None], -1)[..., 0]
    classes = np.where(distance <= TOLERANCE, np.where(nearest == N_OBJECT_COLOURS, -1, nearest), OFF_PALETTE)
    labels = _objects_or_regions(classes)
    comps = _components(labels, classes)
    colour_rgb = _core_colours(labels, comps, pixels)
    # A region's colour is read from its core: the object colour nearest to it, when that is also its nearest colour
    # of the whole palette and within TOLERANCE; else off-palette (e.g. lime, nearer to the grass colour than to
    # yellow or green, or a patch of sky-blue on a plain background).
    to_palette = np.sqrt(((colour_rgb[:, None, :] - PALETTE[None]) ** 2).sum(-1))
    best = to_palette.argmin(1)
    ok = (best < N_OBJECT_COLOURS) & (to_palette.min(1, initial=np.inf) <= TOLERANCE)
    read = np.where(ok, best, OFF_PALETTE)
    comps.colour = np.where(comps.is_object, read, comps.colour)
    _classify_shapes(comps, labels)
    return Segmentation(classes, distance, background, comps, observed, colour_rgb)


def _objects_or_regions(classes: np.ndarray) -> np.ndarray:
    """Labels of the objects: connected regions that differ from the background, split by colour where needed.

    A region is one object when it has a shape (IoU with an ideal shape at least ``MIN_IOU``) in a box about as wide
    as it is tall (shapes are drawn in square boxes), whatever colours its pixels take: a lime triangle with a
    yellowish tip, a square shading from blue to purple, a blue square with its blurred rim. A blob or an elongated
    region that holds solid components (``is_object``) of two or more object colours is touching objects (or objects
    a blurred bridge joins): its same-colour components are the objects, the pixels between them dropped.
    """
    regions = label_components(np.where(classes >= 0, 0, -1))
    whole = _components(regions, classes)
    _classify_shapes(whole, regions)
    by_colour = label_components(np.where(classes < OFF_PALETTE, classes, -1))
    parts = _components(by_colour, classes)
    solid = np.flatnonzero(parts.is_object)
    parent = regions.ravel()[parts.label[solid]]
    pairs = np.unique(np.stack([parent, parts.colour[solid]], 1), axis=0)
    parents, colours = np.unique(pairs[:, 0], return_counts=True)
    side_x, side_y = whole.x1 - whole.x0 + 1, whole.y1 - whole.y0 + 1
    elongated = np.maximum(side_x, side_y) > MAX_ASPECT * np.minimum(side_x, side_y)
    blobs = whole.label[whole.is_object & ((whole.shape < 0) | elongated)]
    split = np.isin(regions, np.intersect1d(parents[colours >= 2], blobs))
    return np.where(split, by_colour, regions)
