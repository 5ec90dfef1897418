"""`bench shapes pretrain-reward`: train the proxy reward on the pretrained model's own samples.

Data: images sampled from the shipped shapes model (DDIM 20 steps, eta 1, guidance 5) for every train-split and
simple prompt plus captions drawn from the pretraining distribution, labelled by the gold oracle with documented
noise: label = clip(oracle + N(0, ``label_noise``^2), 0, 1), and a share ``label_flip`` of labels replaced by a
uniform draw (annotators disagree, as ImageReward's raters did). A random ``holdout`` share of images is kept
out of training to measure the proxy's pairwise agreement with the oracle (pairs of samples of the same prompt
whose oracle scores differ).

ImageReward is BLIP, pretrained on web image-text pairs with matching negatives, then fine-tuned on people's
rankings of generated images. The proxy's analog of that pretraining: clean renders of ``renders`` captions drawn
evenly over the grammar (every colour on every shape, every count and background), and every training image paired
again with ``mismatched`` other captions of the pool and with ``hard_negatives`` one-edit versions of its own
caption (``grammar.edit_caption``: another shape, colour, count, position or background, or a composition's colours
swapped); each such pair is labelled by the same noisy oracle. Measured on clean renders scored for "a yellow
triangle" (16 each):

- trained on the model's samples alone, it learned little but each prompt's mean score (correlation with the
  oracle on the pretrained model's samples of that prompt -0.09; held-out agreement 0.665) and scored a green
  triangle above a yellow one (0.63 against 0.44);
- with renders and random other captions: yellow triangle 0.73, green triangle 0.35, but a yellow circle 0.58
  (oracle 0): colour without shape; "three squares and a circle" 0.59 against "four squares" 0.61; held-out 0.721;
- with the hard negatives too (shipped): yellow triangle 0.71, green triangle 0.65, yellow circle 0.29, yellow
  square 0.24; "three squares and a circle" 0.67 against 0.75; held-out agreement 0.665, correlation 0.797.
  DPOK, one policy step per round at lr 2e-3 (bench/shapes/settings/dpok.yaml): gold -0.038 with the proxy before,
  +0.048 with this one.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.config import param
from bench.prompts import load_prompts
from bench.shapes.card import SHAPES_SAMPLING
from bench.shapes.grammar import edit_caption, parse
from bench.shapes.proxy import WEIGHTS, ShapesRewardModel
from bench.shapes.world import pretraining_pairs
from bench.stats import pairwise_agreement

DATA_SEED_BASE = 500_000_000  # apart from training (hashed) and evaluation (1_000_000_007 + i) seeds


@dataclass(frozen=True)
class RewardTrainConfig:
    samples_per_prompt: int = param(32, "samples per train-split and simple prompt")
    pretraining_captions: int = param(600, "extra single samples of pretraining-distribution captions")
    label_noise: float = param(0.1, "std of Gaussian noise added to oracle labels", ge=0.0)
    label_flip: float = param(0.1, "share of labels replaced by a uniform draw", ge=0.0, le=1.0)
    renders: int = param(2000, "clean renders of captions drawn evenly over the grammar, added to training", ge=0)
    mismatched: int = param(1, "extra pairings of each training image with another caption (matching negatives)", ge=0)
    hard_negatives: int = param(1, "extra pairings of each training image with its caption edited once", ge=0)
    holdout: float = param(0.2, "share of images kept out of training for agreement", gt=0.0, lt=1.0)
    epochs: int = param(40, "training epochs", ge=1)
    batch_size: int = param(128, "batch size", ge=1)
    lr: float = param(2e-3, "AdamW learning rate", gt=0.0)
    seed: int = param(0, "seed")


def sample_dataset(pipe, cfg: RewardTrainConfig, progress=None):
    """Images of the pretrained model and their prompts (fixed data seeds)."""
    from bench.evaluate import generate

    prompts = [
        p for p in load_prompts("shapes-train") + load_prompts("shapes-simple") for _ in range(cfg.samples_per_prompt)
    ]
    prompts += [c for c, _ in itertools.islice(pretraining_pairs(cfg.seed + 11), cfg.pretraining_captions)]
    seeds = [DATA_SEED_BASE + i for i in range(len(prompts))]
    return generate(pipe, prompts, seeds, SHAPES_SAMPLING, progress=progress), prompts


def mismatched_prompts(prompts: list[str], seed: int) -> list[str]:
    """For each prompt, another prompt drawn from the distinct prompts of the list."""
    pool = sorted(set(prompts))
    rng = random.Random(seed)
    paired = []
    for own in prompts:
        other = rng.choice(pool)
        while other == own and len(pool) > 1:
            other = rng.choice(pool)
        paired.append(other)
    return paired


def edited_prompts(prompts: list[str], seed: int) -> list[str]:
    """For each prompt, the prompt with one attribute changed (``grammar.edit_caption``)."""
    rng = random.Random(seed)
    return [edit_caption(parse(p), rng).text() for p in prompts]


def training_pairs(images: torch.Tensor, prompts: list[str], labels: torch.Tensor, cfg: RewardTrainConfig):
    """The proxy's training pairs: the model's samples with their own labels, clean renders of ``cfg.renders``
    captions drawn evenly over the grammar, and every image again with ``cfg.mismatched`` other captions of the pool
    and with ``cfg.hard_negatives`` one-edit versions of its own caption, each new pair labelled by the noisy oracle.
    Returns (images, prompts, labels)."""
    from bench.shapes.world import random_caption, render_batch, to_tensor

    rng = random.Random(cfg.seed + 16)
    captions = [random_caption(rng).text() for _ in range(cfg.renders)]
    rendered = to_tensor(render_batch(captions, seed=cfg.seed + 17, policy="uniform"))
    pool_images, pool_prompts = torch.cat([images, rendered]), prompts + captions
    # One pass over the pool per extra caption: ``mismatched`` passes with other captions, then ``hard_negatives``
    # passes with one-edit captions.
    passes = [mismatched_prompts(pool_prompts, cfg.seed + 15 + k) for k in range(cfg.mismatched)]
    passes += [edited_prompts(pool_prompts, cfg.seed + 30 + k) for k in range(cfg.hard_negatives)]
    new_images = torch.cat([rendered] + [pool_images] * len(passes))
    new_prompts = captions + [p for pass_prompts in passes for p in pass_prompts]
    new_labels = noisy_labels(oracle_scores(new_images, new_prompts), cfg, offset=1)
    return torch.cat([images, new_images]), prompts + new_prompts, torch.cat([labels, new_labels])


def oracle_scores(images: torch.Tensor, prompts: list[str], batch: int = 256) -> torch.Tensor:
    from bench.shapes.oracle import ShapesOracle

    oracle = ShapesOracle()
    return torch.cat([oracle(images[i : i + batch], prompts[i : i + batch]) for i in range(0, len(images), batch)])


def noisy_labels(gold: torch.Tensor, cfg: RewardTrainConfig, offset: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(cfg.seed + 12 + 1000 * offset)
    labels = (gold + cfg.label_noise * torch.randn(gold.shape, generator=gen)).clamp(0, 1)
    flip = torch.rand(gold.shape, generator=gen) < cfg.label_flip
    return torch.where(flip, torch.rand(gold.shape, generator=gen), labels)


def fit(model, images, ids, mask, labels, cfg: RewardTrainConfig, log=None):
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = cfg.epochs * max(1, len(images) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    gen = torch.Generator().manual_seed(cfg.seed + 13)
    model.train()
    step = 0
    for _ in range(cfg.epochs):
        order = torch.randperm(len(images), generator=gen)
        for start in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size):
            b = order[start : start + cfg.batch_size]
            loss = torch.nn.functional.mse_loss(model(images[b], ids[b], mask[b]), labels[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if log:
                log(step, steps, loss.item())
    return model.eval()


def train_shapes_reward(model_dir, out, cfg: RewardTrainConfig, progress=None, log=None) -> dict:
    """Sample, label, train and save the proxy reward into ``out``; returns measured numbers."""
    from safetensors.torch import save_file

    from bench.models import load_pipeline

    out = Path(out)
    start = time.time()
    torch.manual_seed(cfg.seed)
    pipe = load_pipeline(str(model_dir))
    images, prompts = sample_dataset(pipe, cfg, progress)
    gold = oracle_scores(images, prompts)
    labels = noisy_labels(gold, cfg)
    rng = random.Random(cfg.seed + 14)
    held = set(rng.sample(range(len(images)), int(cfg.holdout * len(images))))
    train = torch.tensor([i for i in range(len(images)) if i not in held])
    test = torch.tensor(sorted(held))
    train_images, train_prompts, train_labels = training_pairs(images[train], [prompts[i] for i in train.tolist()],
                                                               labels[train], cfg)  # fmt: skip
    max_tokens = pipe.tokenizer.model_max_length

    def tokens(texts):
        return pipe.tokenizer(texts, padding="max_length", max_length=max_tokens, truncation=True, return_tensors="pt")

    train_tok = tokens(train_prompts)
    model = ShapesRewardModel(vocab_size=len(pipe.tokenizer), max_tokens=max_tokens)
    fit(model, train_images, train_tok.input_ids, train_tok.attention_mask, train_labels, cfg, log)
    test_prompts = [prompts[i] for i in test.tolist()]
    test_tok = tokens(test_prompts)
    with torch.no_grad():
        pred = model(images[test], test_tok.input_ids, test_tok.attention_mask)
    agreement, pairs = pairwise_agreement(pred.tolist(), gold[test].tolist(), test_prompts)
    label_agreement, _ = pairwise_agreement(labels[test].tolist(), gold[test].tolist(), test_prompts)
    out.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), out / WEIGHTS)
    (out / "config.json").write_text(json.dumps(model.config) + "\n")
    shutil.copytree(Path(model_dir) / "tokenizer", out / "tokenizer", dirs_exist_ok=True)
    stats = {
        "config": dataclasses.asdict(cfg),
        "images": len(images),
        "training_pairs": len(train_images),
        "heldout_images": len(test),
        "heldout_pairs": pairs,
        "pairwise_agreement_with_oracle": agreement,
        "pairwise_agreement_of_noisy_labels": label_agreement,
        "heldout_correlation": float(np.corrcoef(pred.numpy(), gold[test].numpy())[0, 1]),
        "parameters": sum(p.numel() for p in model.parameters()),
        "minutes": (time.time() - start) / 60,
        "oracle_version": _oracle_version(),
    }
    (out / "train_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    (out / "README.md").write_text(_card(stats))
    return stats


def _card(stats: dict) -> str:
    cfg = stats["config"]
    return f"""# shapes-reward: the shapes world's proxy reward (ImageReward stand-in)

- Command: `bench shapes pretrain-reward` (seed {cfg["seed"]}), after `bench shapes pretrain`.
- Data: {stats["images"]} images sampled from the shipped shapes model (DDIM 20 steps, eta 1, guidance 5):
  {cfg["samples_per_prompt"]} per train-split and simple prompt, plus {cfg["pretraining_captions"]}
  pretraining captions. The matching "pretraining" (bench/shapes/reward_train.py explains it): {cfg["renders"]} clean
  renders of captions drawn evenly over the grammar, and every training image paired again with {cfg["mismatched"]}
  other caption(s) and with {cfg["hard_negatives"]} one-edit version(s) of its own caption (hard negatives);
  {stats["training_pairs"]} training pairs in all.
- Labels: gold oracle + N(0, {cfg["label_noise"]}^2), clipped to [0, 1]; {cfg["label_flip"]:.0%} replaced by U(0, 1).
- Model: CNN with FiLM text conditioning, {stats["parameters"]:,} parameters;
  {cfg["epochs"]} epochs, AdamW lr {cfg["lr"]}.
- Held-out ({stats["heldout_images"]} images, {stats["heldout_pairs"]} same-prompt pairs with different oracle scores):
  pairwise agreement with the oracle {stats["pairwise_agreement_with_oracle"]:.3f} (the noisy labels themselves:
  {stats["pairwise_agreement_of_noisy_labels"]:.3f}); correlation with the oracle {stats["heldout_correlation"]:.3f}.
- Wall time on 2 CPU cores: {stats["minutes"]:.1f} min.
- Oracle: labels and held-out agreement from shapes-oracle version {stats.get("oracle_version", "1")}.{_stale(stats)}
"""


def _oracle_version() -> str:
    from bench.shapes.oracle import ShapesOracle

    return ShapesOracle.version


def _stale(stats: dict) -> str:
    """A note when the proxy was trained on labels of an older oracle than the current one (not retrained)."""
    if stats.get("oracle_version", "1") == _oracle_version():
        return ""
    return f""" The current oracle is version {_oracle_version()} (docs/ORACLE.md).
  The proxy's agreement with it on the pretrained model's samples, per prompt of every family over 256 evaluation
  seeds, is in the shapes model's card (foothold table)."""
