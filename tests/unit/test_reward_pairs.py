import random

import torch

from bench.shapes.grammar import edit_caption, parse
from bench.shapes.reward_train import (
    RewardTrainConfig,
    edited_prompts,
    mismatched_prompts,
    oracle_scores,
    training_pairs,
)
from bench.shapes.world import random_caption, render_batch, to_tensor


def test_mismatched_prompts_never_pair_an_image_with_its_own_prompt():
    prompts = ["a red circle", "four squares", "a red circle", "a yellow triangle"] * 5
    paired = mismatched_prompts(prompts, seed=3)
    assert len(paired) == len(prompts)
    assert all(p != q for p, q in zip(prompts, paired, strict=True))
    assert set(paired) <= set(prompts)


def test_training_pairs_label_renders_and_swaps_with_the_oracle():
    cfg = RewardTrainConfig(renders=40, mismatched=1, hard_negatives=0, label_noise=0.0, label_flip=0.0)
    samples = torch.rand(4, 3, 32, 32)  # stand-ins for the model's samples, with their own labels
    labels = torch.tensor([0.1, 0.2, 0.3, 0.4])
    images, prompts, out = training_pairs(samples, ["a red circle"] * 4, labels, cfg)
    assert len(images) == len(prompts) == len(out) == 4 + 40 + (4 + 40)
    assert torch.equal(images[:4], samples) and torch.equal(out[:4], labels)
    rendered = out[4:44]
    assert (rendered == 1.0).float().mean() >= 0.95  # clean renders of their own captions satisfy them
    swapped = out[44:]
    assert swapped.mean() < 0.6  # another caption: mostly unsatisfied
    assert all(p != "a red circle" for p in prompts[44:48])
    assert torch.equal(images[48:], images[4:44])  # each render is paired again with another caption


def _differences(a, b) -> set[str]:
    diff = {"background"} if a.background != b.background else set()
    for i, (p, q) in enumerate(zip(a.phrases, b.phrases, strict=True)):
        diff |= {
            f"{field}{i}"
            for field in ("shape", "count", "colour", "position")
            if getattr(p, field) != getattr(q, field)
        }
    return diff


def test_edit_caption_changes_exactly_one_attribute():
    rng = random.Random(0)
    seen = set()
    for _ in range(2000):
        caption = random_caption(rng)
        edited = edit_caption(caption, rng)
        assert parse(edited.text()) == edited != caption
        diff = _differences(caption, edited)
        if diff == {"colour0", "colour1"}:  # a composition's colours swapped
            a, b = edited.phrases
            assert (a.colour, b.colour) == (caption.phrases[1].colour, caption.phrases[0].colour)
            seen.add("swap")
        elif len(diff) == 2:  # a count raised to four drops the position the grammar's samplers never pair with it
            (i,) = {d[-1] for d in diff}
            assert diff == {f"count{i}", f"position{i}"} and edited.phrases[int(i)].count == 4
            seen.add("count")
        else:
            (only,) = diff
            seen.add(only.rstrip("01"))
            if only.startswith("shape") and len(edited.phrases) == 2:
                assert edited.phrases[0].shape != edited.phrases[1].shape
    assert seen == {"shape", "colour", "count", "position", "background", "swap"}


def test_hard_negatives_are_near_misses_the_oracle_labels():
    rng = random.Random(5)
    captions = [random_caption(rng).text() for _ in range(200)]
    images = to_tensor(render_batch(captions, seed=1, policy="uniform"))
    edited = edited_prompts(captions, seed=2)
    assert all(e != c for e, c in zip(edited, captions, strict=True))
    hard = oracle_scores(images, edited)
    swapped = oracle_scores(images, mismatched_prompts(captions, seed=2))
    # One edit leaves most clauses satisfied (a removed colour or an added background that the render happens to
    # have can leave all of them), unlike another caption of the pool; a clean render satisfies its own caption.
    assert 0.5 < hard.mean() < 0.9 and swapped.mean() < 0.4
    assert (hard < 1).float().mean() > 0.8

    cfg = RewardTrainConfig(renders=8, mismatched=0, hard_negatives=1, label_noise=0.0, label_flip=0.0)
    samples, labels = images[:4], torch.ones(4)
    _, prompts, out = training_pairs(samples, captions[:4], labels, cfg)
    assert len(prompts) == 4 + 8 + (4 + 8)
    assert prompts[12:16] == edited_prompts(captions[:4], seed=cfg.seed + 30)
    assert torch.equal(out[12:16], oracle_scores(samples, prompts[12:16]))
