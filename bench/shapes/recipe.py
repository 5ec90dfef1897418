"""The shapes world's recommended run settings, shipped as ``bench_recipe.yaml`` beside the model.

`bench run` applies a model folder's recipe under --config, --set and method options (bench/resolve.py), so the
shapes world is the default everywhere while the method Config defaults stay those of the official DPOK code
(tuned for SD v1.5 at 512 px on GPUs). What changes for a 32 px model on two CPU cores, and why:

- sampling: 20 DDIM steps and guidance 5 (the pretrained model's own sampler; 50 steps would cost 2.5x);
- dpok: lr 2e-3 instead of 1e-5 (a 4M-parameter UNet with rank-4 LoRA, and 10 minutes instead of hours);
  100 rounds of 16 samples and 8 policy steps of 8 x 4 transitions take about 8 minutes on 2 cores. Gold oracle
  change on the demo prompts, 64 fresh seeds per prompt:
  - first shipped model: lr 3e-4 barely moved the policy (KL 0.003 after 20 rounds); lr 2e-3 x 100 rounds +0.149
    [0.106, 0.196]; x 110 rounds +0.054 (a KL spike near update 810); lr 3e-3 x 110 rounds -0.028;
  - current model, proxy before its matching pretraining: lr 2e-3 +0.124 [0.076, 0.169], with --seed 1 +0.064
    [0.021, 0.104]; lr 3e-3 -0.007 [-0.048, 0.030]; lr 1.5e-3 -0.082 [-0.120, -0.046];
  - current model and proxy: lr 2e-3 +0.083 [0.041, 0.124] (the README's ``make demo``; proxy +0.019); with
    --min-std 0.05 --value-lr 1e-3 -0.020 [-0.059, 0.020]; x 300 rounds (23.5 min) +0.045 [-0.005, 0.096].
  Short of +0.15 and not robust: the proxy reward's training curve stays flat, over 300 rounds too, so the
  policy gradient is mostly noise here (about 400 samples per prompt in 100 rounds; the paper used 20,000 per
  prompt). With the gold oracle as the reward, 40 rounds on one prompt changed it by -0.050 [-0.125, 0.028];
- sft: the same sampler, 512 pretrained samples, lr 1e-4.
"""

from __future__ import annotations

from pathlib import Path

import yaml

RECIPE = {
    "reward": "shapes-reward",
    "prompts": "shapes-demo",
    "eval_scorers": ["shapes-oracle", "shapes-quality"],
    "steps": 100,
    "sampling": {"num_steps": 20, "guidance_scale": 5.0, "eta": 1.0},
    "hparams": {
        "dpok": {
            "lr": 2e-3,
            "samples_per_round": 16,
            "updates_per_round": 8,
            "batch_size": 8,
            "grad_accum": 4,
            "buffer_size": 640,
        },
        "sft": {"lr": 1e-4, "num_samples": 512, "sample_batch_size": 64, "batch_size": 32, "updates_per_round": 10},
    },
}


def write_recipe(folder: str | Path) -> Path:
    path = Path(folder) / "bench_recipe.yaml"
    header = "# Shapes-world run settings (bench/shapes/recipe.py explains each); under --config, --set and options.\n"
    path.write_text(header + yaml.safe_dump(RECIPE, sort_keys=False))
    return path
