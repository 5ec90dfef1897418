"""The shapes world's recommended run settings, shipped as ``bench_recipe.yaml`` beside the model.

`bench run` applies a model folder's recipe under --config, --set and method options (bench/resolve.py), so the
shapes world is the default everywhere while the method Config defaults stay those of the official DPOK code
(tuned for SD v1.5 at 512 px on GPUs). What changes for a 32 px model on two CPU cores, and why:

- sampling: 20 DDIM steps and guidance 5 (the pretrained model's own sampler; 50 steps would cost 2.5x);
- dpok: lr 5e-3 instead of 1e-5 (a 4M-parameter UNet with rank-4 LoRA, and 10 minutes instead of hours); 100
  rounds of 16 samples, each followed by ONE policy step over all 320 transitions of the round (32 x 10; the buffer
  holds that round only), and advantages divided by their prompt's running reward std (``advantage_scale``,
  DDPO's normalisation). Why, as measured on the demo prompts (gold oracle, 64 fresh seeds per prompt):
  - the official shape (several small steps per round from a buffer of two rounds) wasted the data here: after a
    step at lr 2e-3 most transitions' ratios left the 1e-4 clip, so steps 2-8 of a round had clipfrac 0.3-0.9 and a
    tenth of the first step's gradient norm, and the proxy's training curve stayed flat for 300 rounds
    (8 x 32 transitions, lr 2e-3: gold +0.083 [0.041, 0.124], proxy +0.019, the gold gain mostly drift; 300
    rounds: gold +0.045). One step over the whole round keeps every ratio at 1 (clipfrac 0) and the proxy climbs:
    same lr, gold -0.038, proxy +0.040 [0.023, 0.057]; with the hard-negative proxy gold +0.048 [0.005, 0.088];
  - lr 5e-3: gold +0.082 [0.029, 0.135], proxy +0.064 ("four squares" 0.320 -> 0.703, composition 0.594 ->
    0.441); with ``advantage_scale=prompt_std`` gold +0.170 [0.118, 0.221], proxy +0.095, quality +0.078 ("a
    yellow triangle" 0.344 -> 1.000, composition 0.594 -> 0.484 while its proxy rose 0.595 -> 0.630: reward
    over-optimisation). Scaling the advantages by about 1/0.2 also weakens the KL term against them (per-step KL
    0.15-0.2 at the end against 0.03 without).
  Earlier models and proxies: lr 3e-4 barely moved the policy; lr 1.5e-3 to 3e-3 with the official shape gave
  -0.082 to +0.149 depending on lr and seed. With the gold oracle as the reward and the official shape, 40 rounds
  on one prompt changed it by -0.050;
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
            "lr": 5e-3,
            "samples_per_round": 16,
            "updates_per_round": 1,
            "batch_size": 32,
            "grad_accum": 10,
            "buffer_size": 320,
            "advantage_scale": "prompt_std",
        },
        "sft": {"lr": 1e-4, "num_samples": 512, "sample_batch_size": 64, "batch_size": 32, "updates_per_round": 10},
    },
}


def write_recipe(folder: str | Path) -> Path:
    path = Path(folder) / "bench_recipe.yaml"
    header = "# Shapes-world run settings (bench/shapes/recipe.py explains each); under --config, --set and options.\n"
    path.write_text(header + yaml.safe_dump(RECIPE, sort_keys=False))
    return path
