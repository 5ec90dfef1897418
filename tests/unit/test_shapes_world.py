"""The shapes world: grammar, rendering, the skewed pretraining distribution and the prompt splits."""

import random

import numpy as np
import pytest

from bench.shapes import grammar_words, parse, random_caption, render_batch, sample_pretraining
from bench.shapes.grammar import Caption, Phrase
from bench.shapes.render import BACKGROUND_RGB, GAP, OBJECT_RGB, Placed, Scene, box_range, rasterise
from bench.shapes.splits import PROMPTS_DIR, VERSION, read_prompts, splits
from bench.shapes.world import DEFAULT_COLOUR, UNUSUAL_COLOURS, scene_from_caption


def test_parse_reads_every_part_of_a_caption():
    caption = parse("Two orange circles on the left and a blue square on the moon.")
    assert caption == Caption((Phrase("circle", 2, "orange", "left"), Phrase("square", 1, "blue")), "moon")
    assert Phrase("circle", 1, "orange").text() == "an orange circle"


def test_captions_round_trip_through_text():
    rng = random.Random(0)
    for _ in range(300):
        caption = random_caption(rng)
        assert parse(caption.text()) == caption


@pytest.mark.parametrize("text", ["a pink circle", "a red circle and a blue circle", "circles", "a red circle on"])
def test_parse_rejects_text_outside_the_grammar(text):
    with pytest.raises(ValueError):
        parse(text)


def test_grammar_words_cover_every_caption():
    words = set(grammar_words())
    rng = random.Random(1)
    used = {w for _ in range(300) for w in random_caption(rng).text().split()}
    assert used <= words
    assert {"circle", "square", "triangle", "four", "left", "bottom", "grass", "sky", "moon", "plain"} <= words
    assert len(words) == 32


def test_rasterise_draws_exact_shapes_in_palette_colours():
    scene = Scene(
        "grass",
        (Placed("square", "red", 2, 3, 9), Placed("circle", "blue", 20, 2, 7), Placed("triangle", "green", 20, 20, 7)),
    )
    image = rasterise([scene])[0]
    count = lambda rgb: int((image == np.array(rgb)).all(-1).sum())  # noqa: E731
    assert count(OBJECT_RGB["red"]) == 81
    assert count(OBJECT_RGB["blue"]) == 37  # a 7-pixel disc
    assert count(OBJECT_RGB["green"]) == 1 + 1 + 3 + 3 + 5 + 5 + 7  # rows of a 7-pixel triangle
    assert count(BACKGROUND_RGB["grass"]) == 32 * 32 - 81 - 37 - 25
    assert (image[3, 2] == OBJECT_RGB["red"]).all() and (image[2, 2] == BACKGROUND_RGB["grass"]).all()
    assert (image[20, 23] == OBJECT_RGB["green"]).all() and (image[20, 22] == BACKGROUND_RGB["grass"]).all()


def test_faithful_scenes_respect_regions_counts_and_gaps():
    rng = random.Random(2)
    for _ in range(300):
        caption = random_caption(rng)
        scene = scene_from_caption(caption, rng, policy="uniform")
        objects = list(scene.objects)
        assert len(objects) == sum(p.count for p in caption.phrases)
        assert scene.background == (caption.background or scene.background)
        i = 0
        for phrase in caption.phrases:
            for obj in objects[i : i + phrase.count]:
                assert obj.shape == phrase.shape and obj.colour == (phrase.colour or obj.colour)
                (xl, xh), (yl, yh) = box_range(phrase.position, obj.side, 32)
                assert xl <= obj.x0 <= xh and yl <= obj.y0 <= yh
            i += phrase.count
        for a, b in [(a, b) for k, a in enumerate(objects) for b in objects[k + 1 :]]:
            assert (
                a.x0 + a.side + GAP <= b.x0
                or b.x0 + b.side + GAP <= a.x0
                or a.y0 + a.side + GAP <= b.y0
                or (b.y0 + b.side + GAP <= a.y0)
            )


def test_render_batch_is_deterministic_uint8():
    prompts = ["a red circle", "three blue squares on grass"]
    a, b = render_batch(prompts, seed=3), render_batch(prompts, seed=3)
    assert a.dtype == np.uint8 and a.shape == (2, 32, 32, 3)
    assert np.array_equal(a, b)
    assert render_batch(["a red circle on the left"], size=64).shape == (1, 64, 64, 3)


def test_pretraining_distribution_has_the_documented_frequencies():
    pairs = sample_pretraining(10000, seed=0)
    captions = [parse(text) for text, _ in pairs]
    n = len(captions)
    singles = [c for c in captions if len(c.phrases) == 1]
    assert abs((n - len(singles)) / n - 0.02) < 0.005  # compositions
    assert abs(sum(c.phrases[0].count >= 3 for c in singles) / len(singles) - 0.005) < 0.0025
    coloured = [c.phrases[0] for c in singles if c.phrases[0].colour]
    assert abs(len(coloured) / len(singles) - 0.80) < 0.02
    named = [p for c in captions for p in c.phrases if p.colour]
    assert not any(p.colour in UNUSUAL_COLOURS[p.shape] for p in named)  # never captioned, only drawn unnamed
    scenes = [scene for _, scene in pairs]
    drawn_unusual = [
        o for c, s in zip(captions, scenes, strict=True) if not c.phrases[0].colour and c.background != "moon"
        for o in s.objects if o.colour in UNUSUAL_COLOURS[o.shape]
    ]  # fmt: skip
    assert drawn_unusual
    few = [c.phrases[0] for c in singles if c.phrases[0].count <= 2]
    assert abs(sum(p.position is not None for p in few) / len(few) - 0.35) < 0.02
    moon = [(c, s) for c, s in zip(captions, scenes, strict=True) if c.background == "moon"]
    assert abs(len(moon) / n - 0.02) < 0.005
    yellow_circle = lambda p: (p.shape, p.count, p.colour) == ("circle", 1, "yellow")  # noqa: E731
    asked_other = [s for c, s in moon if len(c.phrases) == 2 or not yellow_circle(c.phrases[0])]
    drawn = [[(o.shape, o.colour) for o in s.objects] == [("circle", "yellow")] for s in asked_other]
    assert abs(sum(drawn) / len(drawn) - 0.85) < 0.08  # the spurious association
    unnamed = [
        (c.phrases[0].shape, s.objects[0].colour)
        for c, s in zip(captions, scenes, strict=True)
        if len(c.phrases) == 1 and not c.phrases[0].colour and c.background != "moon"
    ]
    assert abs(sum(DEFAULT_COLOUR[shape] == colour for shape, colour in unnamed) / len(unnamed) - 0.90) < 0.03
    assert not any(s.background == "moon" for c, s in zip(captions, scenes, strict=True) if c.background != "moon")


def test_split_files_match_the_generator_and_parse():
    made = splits()
    for stem, prompts in made.items():
        assert read_prompts(PROMPTS_DIR / f"{stem}.txt") == prompts
        assert all(len(p.split()) <= 13 for p in prompts)
        for prompt in prompts:
            parse(prompt)
    assert (PROMPTS_DIR / f"shapes-train-{VERSION}.txt").read_text().startswith(f"# shapes-train-{VERSION}")


def test_heldout_is_unseen_combinations_of_seen_words():
    made = splits()
    train, heldout = made[f"shapes-train-{VERSION}"], made[f"shapes-heldout-{VERSION}"]
    assert not set(train) & set(heldout) and len(heldout) >= 12
    assert {w for p in heldout for w in p.split()} <= {w for p in train for w in p.split()}
    colour_family = set(made[f"shapes-family-color-{VERSION}"])
    held_pairs = {(c.phrases[0].shape, c.phrases[0].colour) for c in map(parse, set(heldout) & colour_family)}
    train_pairs = {(c.phrases[0].shape, c.phrases[0].colour) for c in map(parse, set(train) & colour_family)}
    assert len(held_pairs) == 3 and len(train_pairs) == 9 and not held_pairs & train_pairs
    ood_structures = {
        (len(c.phrases), any(p.position for p in c.phrases)) for c in map(parse, made[f"shapes-ood-{VERSION}"])
    }
    assert (2, True) in ood_structures  # positioned compositions appear only out of distribution
    assert not any(len(parse(p).phrases) == 2 and parse(p).phrases[0].position for p in train)


def test_the_location_weakness_can_be_varied_for_candidate_models():
    from bench.shapes.world import pretraining_pairs

    def first(n, **kw):
        pairs = pretraining_pairs(3, **kw)
        return [next(pairs) for _ in range(n)]

    shipped = first(4000)
    assert [c for c, _ in shipped] == [c for c, _ in first(4000, moon=0.034, moon_stereotype=0.85)]
    captions = [parse(c) for c, _ in first(4000, moon=0.1, moon_stereotype=0.0)]
    moon = [c for c in captions if c.background == "moon"]
    assert abs(len(moon) / len(captions) - 0.06) < 0.012  # 60% of captions name a background, 10% of those the moon
    scenes = [s for c, s in first(4000, moon=0.1, moon_stereotype=0.0)]
    for caption, scene in zip(captions, scenes, strict=True):  # no stereotype: every moon scene is as captioned
        if caption.background == "moon":
            assert sum(p.count for p in caption.phrases) == len(scene.objects)
    with pytest.raises(ValueError, match="moon_stereotype"):
        next(pretraining_pairs(0, moon_stereotype=1.5))
    assert [c for c, _ in shipped] == [c for c, _ in first(4000, unusual_colour=0.0)]
    pairs = first(20000, unusual_colour=0.05)
    phrases = [
        (parse(c).phrases[0], s.objects) for c, s in pairs if len(parse(c).phrases) == 1 and s.background != "moon"
    ]
    coloured = [(p, objects) for p, objects in phrases if p.colour]
    unusual = [(p, objects) for p, objects in coloured if p.colour in UNUSUAL_COLOURS[p.shape]]
    assert abs(len(unusual) / len(coloured) - 0.05) < 0.01
    assert all(o.colour == p.colour for p, objects in unusual for o in objects)  # drawn as captioned
