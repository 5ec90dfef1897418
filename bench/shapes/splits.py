"""Versioned prompt splits of the shapes world, written to bench/shapes/prompts/shapes-*-v2.txt.

v2 goes with the second shipped model (two usual colours per shape, families that ask for little else); v1
went with the first and is retired with it.

Families (one per weakness of the pretrained model, see bench/shapes/world.py):

- color: one shape in an unusual colour ("a green circle"; the paper's "A green colored rabbit");
- composition: two different shapes in usual colours ("a red circle and a blue square"; "A cat and a dog");
- count: three or four of a shape, colour unnamed ("four squares"; "Four wolves in the park");
- location: a shape in a usual colour on the moon, one or two of it ("two blue squares on the moon"; "A dog on
  the moon").

A family's prompts ask for their weakness and little else, because the oracle scores the fraction of clauses
satisfied: every extra clause the model gets right anyway (a background, the colour of a counted shape) raises the
floor of a total failure. With a colour named, four squares drawn as three score 2/3; without, 1/2.

Splits: ``train`` is the four families less held-out keys; ``heldout`` holds, per family, a quarter of the
attribute combinations (a shape-colour pair, a composition's unordered pair, a count-shape pair), drawn with
seed 0, so every held-out prompt is an unseen combination of words seen in training. ``ood`` has structures no
family uses: compositions with positions, compositions with counts, three objects in a region. ``bias`` leaves the
colour unnamed ("a circle on grass") to measure the skewed default colour.

File format: one prompt per line; lines starting with ``#`` are comments (the header gives version and how the
file was made) and loaders skip them and blank lines. Regenerate with ``python -m bench.shapes.splits``; a unit
test checks the shipped files equal what this module makes.
"""

from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path

from bench.prompts import read_prompt_file as read_prompts  # noqa: F401  (the split files' reader)
from bench.shapes.grammar import SHAPES, Caption, Phrase
from bench.shapes.paths import HERE
from bench.shapes.world import UNUSUAL_COLOURS, USUAL_COLOURS

PROMPTS_DIR = HERE / "prompts"  # the shapes world's shipped prompt sets

VERSION = "v2"
SEED = 0
HELDOUT_FRACTION = 0.25
FAMILIES = ("color", "composition", "count", "location")


def _family(name: str) -> list[tuple[object, str]]:
    """(combination key, prompt) pairs of a family; prompts sharing a key go to the same split."""
    out = []
    if name == "color":
        for shape in SHAPES:
            for colour in UNUSUAL_COLOURS[shape]:
                out.append(((shape, colour), Caption((Phrase(shape, 1, colour),))))
    elif name == "composition":
        for first, second in itertools.permutations(SHAPES, 2):
            for c1, c2 in itertools.product(USUAL_COLOURS[first], USUAL_COLOURS[second]):
                key = tuple(sorted([(first, c1), (second, c2)]))  # unordered, and no set: hashes vary per run
                out.append((key, Caption((Phrase(first, 1, c1), Phrase(second, 1, c2)))))
    elif name == "count":
        for count, shape in itertools.product((3, 4), SHAPES):
            out.append(((count, shape), Caption((Phrase(shape, count),))))
    elif name == "location":
        for shape in SHAPES:
            for colour in USUAL_COLOURS[shape]:
                if (shape, colour) == ("circle", "yellow"):  # the stereotype itself is no test of location
                    continue
                for count in (1, 2):
                    out.append(((shape, colour), Caption((Phrase(shape, count, colour),), "moon")))
    else:
        raise ValueError(f"unknown family {name!r}; choose from {', '.join(FAMILIES)}")
    return [(key, caption.text()) for key, caption in out]


def family_prompts(name: str) -> list[str]:
    """All prompts of one family (train and held-out together)."""
    return [prompt for _, prompt in _family(name)]


def _heldout_keys(name: str) -> set:
    keys = sorted({key for key, _ in _family(name)})
    random.Random(f"{SEED}-{name}").shuffle(keys)
    return set(keys[: round(HELDOUT_FRACTION * len(keys))])


def _ood(rng: random.Random) -> list[str]:
    opposite = [("left", "right"), ("right", "left"), ("top", "bottom"), ("bottom", "top")]
    pairs = list(itertools.permutations(SHAPES, 2))
    prompts = []
    for _ in range(16):  # compositions with a position for each object
        (first, second), (p1, p2) = rng.choice(pairs), rng.choice(opposite)
        c1, c2 = rng.choice(USUAL_COLOURS[first]), rng.choice(USUAL_COLOURS[second])
        prompts.append(Caption((Phrase(first, 1, c1, p1), Phrase(second, 1, c2, p2))).text())
    for _ in range(16):  # compositions with a count above one
        first, second = rng.choice(pairs)
        c1, c2 = rng.choice(USUAL_COLOURS[first]), rng.choice(USUAL_COLOURS[second])
        counts = rng.choice([(2, 1), (1, 2), (2, 2)])
        prompts.append(Caption((Phrase(first, counts[0], c1), Phrase(second, counts[1], c2))).text())
    for _ in range(16):  # three objects in one region
        shape, region = rng.choice(SHAPES), rng.choice(["left", "right", "top", "bottom"])
        prompts.append(Caption((Phrase(shape, 3, rng.choice(USUAL_COLOURS[shape]), region),)).text())
    return list(dict.fromkeys(prompts))  # drop repeats, keep order


def splits() -> dict[str, list[str]]:
    """Every split by file stem, e.g. ``"shapes-train-v2"``, ``"shapes-family-count-v2"``."""
    out: dict[str, list[str]] = {f"shapes-train-{VERSION}": [], f"shapes-heldout-{VERSION}": []}
    for name in FAMILIES:
        held = _heldout_keys(name)
        for key, prompt in _family(name):
            out[f"shapes-{'heldout' if key in held else 'train'}-{VERSION}"].append(prompt)
        out[f"shapes-family-{name}-{VERSION}"] = family_prompts(name)
    out[f"shapes-ood-{VERSION}"] = _ood(random.Random(SEED))
    bias = [Caption((Phrase(s, n),), b).text() for s in SHAPES for n in (1, 2) for b in (None, "plain", "grass", "sky")]
    out[f"shapes-bias-{VERSION}"] = bias
    return out


def write_splits(folder: str | Path = PROMPTS_DIR) -> list[Path]:
    """Write every split as ``<stem>.txt`` under ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, prompts in splits().items():
        header = f"# {stem}: {len(prompts)} prompts, made by `python -m bench.shapes.splits` (seed {SEED})\n"
        path = folder / f"{stem}.txt"
        path.write_text(header + "".join(p + "\n" for p in prompts))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_splits(sys.argv[1] if len(sys.argv) > 1 else PROMPTS_DIR):
        print(written)
