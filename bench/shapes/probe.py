"""`bench shapes probe-reward`: how well a reward can steer training on each prompt, measured against the gold oracle.

Policy-gradient training (DPOK) moves a prompt's samples towards the ones its reward ranks higher. Two things
decide whether that raises the truth, and this module measures both per prompt:

1. Does the reward order the pretrained model's own samples like the oracle? Pairwise agreement over the pairs
   of samples (evaluation seeds) whose oracle scores differ: 0.5 is chance, and at chance the gradient follows
   noise.
2. Does the reward score a correct image above its near misses? Clean renders of the prompt (oracle 1) against
   clean renders of one-edit versions of it (``grammar.edit_caption``: another colour, shape, count, position or
   background, or a composition's colours swapped), all scored for the prompt itself; only renders the oracle
   scores below 1 count as misses. A miss that the reward scores above the correct render is a direction in which
   the reward rises and the truth falls.
"""

from __future__ import annotations

import random

import torch

from bench.evaluate import sample
from bench.shapes.card import SHAPES_SAMPLING
from bench.shapes.grammar import edit_caption, parse
from bench.shapes.world import render_batch, to_tensor
from bench.stats import pairwise_agreement

RENDER_SEED = 7


def near_misses(prompt: str, n: int, seed: int = 0) -> list[str]:
    """Up to ``n`` distinct one-edit versions of ``prompt`` (fewer if the grammar allows fewer)."""
    rng, caption, found = random.Random(seed), parse(prompt), []
    for _ in range(20 * n):
        text = edit_caption(caption, rng).text()
        if text not in found:
            found.append(text)
        if len(found) == n:
            break
    return found


def _renders(caption: str, prompt: str, reward, oracle, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(oracle, reward) scores for ``prompt`` of ``n`` clean renders of ``caption``; None if ``caption`` cannot be
    drawn at this size (more objects than fit: "four circles and four squares")."""
    try:
        images = to_tensor(render_batch([caption] * n, seed=RENDER_SEED, policy="uniform"))
    except ValueError:
        return None
    prompts = [prompt] * n
    return oracle(images, prompts).cpu(), reward(images, prompts).cpu()


@torch.no_grad()
def probe_prompt(pipe, reward, oracle, prompt: str, samples: int = 64, renders: int = 16, edits: int = 8) -> dict:
    """The measurements of the module docstring for one prompt of the shapes grammar."""
    images, prompts, _ = sample(pipe, [prompt], samples, SHAPES_SAMPLING)
    gold, scores = oracle(images, prompts).cpu(), reward(images, prompts).cpu()
    agreement, pairs = pairwise_agreement(scores.tolist(), gold.tolist(), prompts)
    drawn = _renders(prompt, prompt, reward, oracle, renders)
    correct = drawn[1].mean().item() if drawn is not None else float("nan")
    misses = []
    for text in near_misses(prompt, edits):
        scored = _renders(text, prompt, reward, oracle, renders)
        if scored is None:
            continue
        miss_gold, miss_reward = scored
        wrong = miss_gold < 1
        if wrong.any():
            misses.append((miss_reward[wrong].mean().item(), miss_gold[wrong].mean().item(), text))
    best = max(misses, default=(float("nan"), float("nan"), ""))
    return {
        "prompt": prompt,
        "samples_gold": gold.mean().item(),
        "samples_reward": scores.mean().item(),
        "agreement": agreement,
        "pairs": pairs,
        "correct_reward": correct,
        "best_miss": best[2],
        "best_miss_gold": best[1],
        "best_miss_reward": best[0],
    }


def format_table(rows: list[dict]) -> str:
    lines = [
        "| prompt | samples: gold | samples: reward | agreement (pairs) | correct render: reward "
        "| best-scored near miss | its gold | its reward |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['prompt']} | {r['samples_gold']:.3f} | {r['samples_reward']:.3f} | {r['agreement']:.2f} "
            f"({r['pairs']}) | {r['correct_reward']:.3f} | {r['best_miss']} | {r['best_miss_gold']:.3f} "
            f"| {r['best_miss_reward']:.3f} |"
        )
    return "\n".join(lines)
