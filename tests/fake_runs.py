"""Tiny fake run folders (config.yaml, train.jsonl, eval.parquet, sample grids) written with pandas, for the
table, plot and report tests. Values come from a seeded generator, so every test sees the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

PROMPTS = {"train": ["a red circle", "a blue square"], "heldout": ["a green triangle"]}
SCORERS = ("shapes-oracle", "shapes-reward", "oversaturation")


def slug(prompt: str) -> str:
    """The grid file stem bench.evaluate uses for a prompt."""
    return "".join(c if c.isalnum() else "_" for c in prompt)[:60]


def make_run(root: Path, name: str, method: str, beta: float, seed: int, shift: float, samples: int = 4) -> Path:
    """A run folder whose tuned scores are the pretrained ones plus ``shift`` (plus noise)."""
    run = root / name
    (run / "lora").mkdir(parents=True)
    config = {"method": method, "model": "shapes", "prompts": "shapes-train", "reward": "shapes-reward",
              "steps": 3, "seed": seed, "sampling": {"num_steps": 10, "guidance_scale": 3.0},
              "lora": {"rank": 4}, "hparams": {"beta": beta, "alpha": 10.0}}  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    rng = np.random.default_rng(seed)
    rows = [{"round": u, "update": u, "reward": 0.1 * u + shift, "kl": 0.01 * u * (1 + beta), "loss": -0.1 * u}
            for u in range(1, 4)]  # fmt: skip
    (run / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = []
    for step in (0, 3):
        base_rng = np.random.default_rng(99)  # the pretrained model's scores are the same in every run
        for split, prompts in PROMPTS.items():
            for prompt in prompts:
                for s in range(samples):
                    for scorer in SCORERS:
                        value = base_rng.uniform(0, 1) + (shift + rng.normal(0, 0.05) if step else 0.0)
                        records.append((name, step, split, prompt, 1_000_000_007 + s, scorer, "1", value))
                (run / "samples" / f"step{step}").mkdir(parents=True, exist_ok=True)
                colour = (40 * step + 50, 120, 200 if split == "train" else 30)
                Image.new("RGB", (32, 16), colour).save(run / "samples" / f"step{step}" / f"{split}-{slug(prompt)}.png")
    columns = ["run", "step", "split", "prompt", "seed", "scorer", "scorer_version", "value"]
    pd.DataFrame(records, columns=columns).to_parquet(run / "eval.parquet", index=False)
    return run


def make_runs(root: Path) -> list[Path]:
    """Two DPOK runs with different beta, and a second seed of the first (pooled with it in tables)."""
    return [
        make_run(root, "r1-dpok", "dpok", 0.01, seed=0, shift=0.2),
        make_run(root, "r2-dpok", "dpok", 0.1, seed=1, shift=0.05),
        make_run(root, "r3-dpok", "dpok", 0.01, seed=2, shift=0.25),
    ]
