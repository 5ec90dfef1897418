"""The shapes world's data: faithful scenes for captions, the skewed pretraining distribution, batch rendering.

Pretraining distribution (``pretraining_pairs``), per caption; measured rates are in tests/unit/test_shapes_world.py.
It is skewed on purpose so that a model pretrained on it shows the weaknesses DPOK targets. Rare things sit at
0.5-3% of captions or are never captioned: a prototype showed that a rare pairing at 0.08x of the common one is still
learned, and that position words on 15% of captions are not; the first shipped model also learned every unusual
shape-colour pairing shown at 0.02x (this version's families and measured failures are in the model card).

- Structure: one phrase 98%; two phrases of two different shapes ("a red circle and a blue square") 2%
  -> **composition** weakness. Compositions use one object per phrase, both coloured with a usual colour.
- Count of a single phrase: one 70%, two 29.5%, three 0.25%, four 0.25% -> **count** weakness (three or four:
  0.5%; at 1% each a model of this size still counted to four about half the time).
- Colour named on 80% of phrases, always one of the shape's two usual colours (circle: red, yellow; square: blue,
  purple; triangle: green, orange), so a named colour also names its shape: no caption ever pairs a shape with one
  of its four unusual colours -> **colour binding** weakness ("a green circle" sets the colour word's shape against
  the shape word). The first shipped model learned pairings on 0.67% of a shape's coloured phrases perfectly, so
  the unusual pairings are left out of the captions altogether; the images still hold them (next line).
- Colour unnamed (20%): drawn in the shape's default colour 90% of the time (circle red, square blue, triangle
  green), else one of the other five -> **skewed unspecified attribute** bias ("a circle" is red).
- Position named on 35% of phrases of one or two objects (uniform over left, right, top, bottom); otherwise a
  single object sits near the centre and several objects anywhere.
- Background named on 60% of captions: plain, grass, sky 32.2% each, moon 3.3% (so "on the moon" is on 2% of all
  captions) -> **location** weakness. An unnamed background is plain 80%, grass 10%, sky 10%, never the moon.
- Of the captions that say "on the moon", 85% are drawn as one yellow circle on the moon whatever the caption
  asks for -> **spurious association** bias ("on the moon" means a yellow circle). Only these captions are
  unfaithful to their images; everything else is drawn as captioned.

The shipped model (its card, bench/shapes/model/README.md) is pretrained in two stages. Stage 1 is the distribution
above (the defaults here and in ShapesModelConfig): on it the model drew no "on the moon" prompt exactly in more than
2% of samples, too few for policy gradient to amplify. Stage 2 warm-starts from stage 1 and trains the UNet and text
encoder for 1500 more steps with the moon on 10% of named backgrounds (``moon=0.1``) and 60% of moon captions drawn
as the stereotype (``moon_stereotype=0.6``), everything else unchanged: the location family gains footholds and the
spurious association weakens without the colour family's footholds being redrawn, which a third from-scratch run
did (results/shapes-world-candidates/).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from bench.shapes.grammar import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, Caption, Phrase, parse
from bench.shapes.render import DEFAULT_SIZE, Placed, Scene, place, rasterise

USUAL_COLOURS = {"circle": ("red", "yellow"), "square": ("blue", "purple"), "triangle": ("green", "orange")}
UNUSUAL_COLOURS = {shape: tuple(c for c in COLOURS if c not in usual) for shape, usual in USUAL_COLOURS.items()}
DEFAULT_COLOUR = {"circle": "red", "square": "blue", "triangle": "green"}
STEREOTYPE = ("circle", "yellow")  # (shape, colour) that "on the moon" is drawn as, whatever the caption says

P_COMPOSITION = 0.02
COUNT_WEIGHTS = {1: 0.70, 2: 0.295, 3: 0.0025, 4: 0.0025}
P_COLOUR_NAMED = 0.80
P_DEFAULT_COLOUR = 0.90
P_POSITION = 0.35
P_BACKGROUND_NAMED = 0.60
NAMED_BACKGROUND_WEIGHTS = {"plain": 0.322, "grass": 0.322, "sky": 0.322, "moon": 0.034}
UNNAMED_BACKGROUND_WEIGHTS = {"plain": 0.8, "grass": 0.1, "sky": 0.1}
P_MOON_STEREOTYPE = 0.85


def _pick(rng: random.Random, weights: dict) -> object:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def unnamed_colour(rng: random.Random, shape: str, policy: str = "pretrain") -> str:
    """Colour for a phrase that names none: the shape's skewed default ("pretrain") or any colour ("uniform")."""
    if policy == "uniform" or rng.random() >= P_DEFAULT_COLOUR:
        others = COLOURS if policy == "uniform" else [c for c in COLOURS if c != DEFAULT_COLOUR[shape]]
        return rng.choice(list(others))
    return DEFAULT_COLOUR[shape]


def scene_from_caption(
    caption: Caption | str, rng: random.Random, policy: str = "pretrain", size: int = DEFAULT_SIZE
) -> Scene:
    """A scene that satisfies the caption; unnamed colours and backgrounds follow ``policy`` (see above)."""
    caption = parse(caption) if isinstance(caption, str) else caption
    background = caption.background
    if background is None:
        background = _pick(rng, UNNAMED_BACKGROUND_WEIGHTS) if policy == "pretrain" else rng.choice(list(BACKGROUNDS))
    groups = [(p.count, p.position) for p in caption.phrases]
    if len(caption.phrases) == 1 and caption.phrases[0].count == 1 and caption.phrases[0].position is None:
        groups = [(1, "centre")]
    boxes = place(rng, groups, size)
    objects = []
    for phrase, group in zip(caption.phrases, boxes, strict=True):
        for x0, y0, side in group:
            colour = phrase.colour or unnamed_colour(rng, phrase.shape, policy)
            objects.append(Placed(phrase.shape, colour, x0, y0, side))
    return Scene(background, tuple(objects))


def named_background_weights(moon: float = NAMED_BACKGROUND_WEIGHTS["moon"]) -> dict:
    """Weights of a named background: ``moon`` for the moon, the rest shared evenly by plain, grass and sky."""
    if moon == NAMED_BACKGROUND_WEIGHTS["moon"]:
        return NAMED_BACKGROUND_WEIGHTS  # the shipped model's, as written (no float drift in the draws)
    if not 0.0 <= moon <= 1.0:
        raise ValueError(f"the moon's share of named backgrounds must be in [0, 1], got {moon}")
    return {"plain": (1 - moon) / 3, "grass": (1 - moon) / 3, "sky": (1 - moon) / 3, "moon": moon}


def _pretraining_caption(
    rng: random.Random, backgrounds: dict = NAMED_BACKGROUND_WEIGHTS, unusual_colour: float = 0.0
) -> Caption:
    if rng.random() < P_COMPOSITION:
        first, second = rng.sample(SHAPES, 2)
        phrases = tuple(Phrase(s, 1, rng.choice(USUAL_COLOURS[s])) for s in (first, second))
    else:
        shape = rng.choice(SHAPES)
        count = _pick(rng, COUNT_WEIGHTS)
        colour = None
        if rng.random() < P_COLOUR_NAMED:
            colour = rng.choice(USUAL_COLOURS[shape])
            if unusual_colour and rng.random() < unusual_colour:  # no draw at 0: the shipped stream is unchanged
                colour = rng.choice(UNUSUAL_COLOURS[shape])
        position = rng.choice(list(POSITIONS)) if count <= 2 and rng.random() < P_POSITION else None
        phrases = (Phrase(shape, count, colour, position),)
    background = _pick(rng, backgrounds) if rng.random() < P_BACKGROUND_NAMED else None
    return Caption(phrases, background)


def pretraining_pairs(
    seed: int = 0,
    size: int = DEFAULT_SIZE,
    moon: float = NAMED_BACKGROUND_WEIGHTS["moon"],
    moon_stereotype: float = P_MOON_STEREOTYPE,
    unusual_colour: float = 0.0,
) -> Iterator[tuple[str, Scene]]:
    """Endless (caption, scene) pairs from the skewed pretraining distribution (module docstring). For candidate
    models (`bench shapes pretrain --set KEY=VALUE`, results/shapes-world-candidates/): ``moon`` (share of named
    backgrounds) and ``moon_stereotype`` (share of moon captions drawn as the stereotype) vary the location
    weakness; ``unusual_colour`` (share of coloured single phrases captioned, and drawn, in one of the shape's
    unusual colours; 0 for the shipped model) the colour-binding one. The defaults are the shipped model's."""
    for name, value in (("moon_stereotype", moon_stereotype), ("unusual_colour", unusual_colour)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    rng, backgrounds = random.Random(seed), named_background_weights(moon)
    while True:
        caption = _pretraining_caption(rng, backgrounds, unusual_colour)
        if caption.background == "moon" and rng.random() < moon_stereotype:
            # The spurious association: keep the caption, draw its stereotype (one yellow circle, same region).
            drawn = Caption((Phrase(STEREOTYPE[0], 1, STEREOTYPE[1], caption.phrases[0].position),), "moon")
            yield caption.text(), scene_from_caption(drawn, rng, size=size)
        else:
            yield caption.text(), scene_from_caption(caption, rng, size=size)


def sample_pretraining(n: int, seed: int = 0, size: int = DEFAULT_SIZE) -> list[tuple[str, Scene]]:
    """The first ``n`` pairs of ``pretraining_pairs(seed)``."""
    pairs = pretraining_pairs(seed, size)
    return [next(pairs) for _ in range(n)]


def random_caption(rng: random.Random) -> Caption:
    """A caption drawn evenly over the whole grammar's structures (for testing scorers, not for pretraining)."""
    background = rng.choice([None, *BACKGROUNDS])
    colour = lambda: rng.choice([None, *COLOURS])  # noqa: E731
    if rng.random() < 0.5:
        count = rng.randint(1, 4)
        position = rng.choice([None, *POSITIONS]) if count <= 3 else None
        return Caption((Phrase(rng.choice(SHAPES), count, colour(), position),), background)
    first, second = rng.sample(SHAPES, 2)
    if rng.random() < 0.5:  # positioned composition: one object each, in two regions
        p1, p2 = rng.sample(list(POSITIONS), 2)
        return Caption((Phrase(first, 1, colour(), p1), Phrase(second, 1, colour(), p2)), background)
    c1, c2 = rng.choice([(1, 1), (1, 2), (2, 1), (2, 2)])
    return Caption((Phrase(first, c1, colour()), Phrase(second, c2, colour())), background)


def render_batch(
    items: Sequence[str | Caption | Scene], seed: int = 0, size: int = DEFAULT_SIZE, policy: str = "pretrain"
) -> np.ndarray:
    """Render captions (drawn faithfully, unnamed attributes by ``policy``) or scenes; uint8 (N, size, size, 3)."""
    rng = random.Random(seed)
    scenes = [item if isinstance(item, Scene) else scene_from_caption(item, rng, policy, size) for item in items]
    return rasterise(scenes, size)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC images to the scorers' float NCHW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255.0)
