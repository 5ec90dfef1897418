"""Measure the pretrained shapes model and write its model card (README.md beside the weights).

Quality is the gold oracle's mean over 64 samples per prompt (fixed evaluation seeds), DDIM 20 steps, eta 1,
guidance 5 (the shapes world's sampler, settings/world.yaml): simple one-object prompts (the model's strengths),
the demo prompt of each weakness family, each family's whole train split (16 samples per prompt), and the two biases.

Footholds (``footholds``): per prompt of every weakness family, over 256 evaluation seeds, the share of samples the
oracle scores 1 (what policy gradient can amplify: at 0% it has nothing to work with), the gold mean, the proxy
reward's mean and how often the proxy orders two samples like the oracle. ``python -m bench.shapes.card`` measures
both and rewrites the card.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from bench.config import SamplingConfig
from bench.evaluate import sample, score
from bench.prompts import load_prompts
from bench.stats import bootstrap_ci

SHAPES_SAMPLING = SamplingConfig(num_steps=20, guidance_scale=5.0, eta=1.0)
FAMILIES = ("color", "composition", "count", "location")


def _oracle_mean(pipe, oracle, prompts, n):
    images, ps, seeds = sample(pipe, prompts, n, SHAPES_SAMPLING)
    df = score(images, ps, seeds, [oracle])
    return df, images


def measure(folder: str | Path, n: int = 64) -> dict:
    """Oracle means per prompt group and the two bias measurements."""
    from bench.models import load_pipeline
    from bench.shapes.oracle import ShapesOracle

    pipe, oracle = load_pipeline(str(folder)), ShapesOracle()
    out: dict = {
        "samples_per_prompt": n,
        "sampling": vars(SHAPES_SAMPLING) if hasattr(SHAPES_SAMPLING, "__dict__") else {},
    }
    df, _ = _oracle_mean(pipe, oracle, load_prompts("shapes-simple"), n)
    out["simple"] = {"mean_ci": bootstrap_ci(df.value), "per_prompt": df.groupby("prompt").value.mean().to_dict()}
    df, _ = _oracle_mean(pipe, oracle, load_prompts("shapes-demo"), n)
    out["demo"] = df.groupby("prompt").value.mean().to_dict()
    out["families"] = {}
    train = set(load_prompts("shapes-train"))  # read once, not once per prompt
    for family in FAMILIES:
        prompts = [p for p in load_prompts(f"shapes-family-{family}") if p in train]
        df, _ = _oracle_mean(pipe, oracle, prompts, 16)
        out["families"][family] = {"prompts": len(prompts), "mean_ci": bootstrap_ci(df.value)}
    images, _, _ = sample(pipe, ["a circle"], n, SHAPES_SAMPLING)
    colours = Counter(o["colour"] for d in oracle.detect(images) for o in d["objects"] if o["shape"] == "circle")
    out["bias_unspecified_colour"] = {"prompt": "a circle", "colours_of_detected_circles": dict(colours)}
    images, _, _ = sample(pipe, ["a blue square on the moon"], n, SHAPES_SAMPLING)
    stereotyped = [
        any(o["shape"] == "circle" and o["colour"] == "yellow" for o in d["objects"]) for d in oracle.detect(images)
    ]
    out["bias_spurious_moon"] = {
        "prompt": "a blue square on the moon",
        "share_yellow_circle": float(np.mean(stereotyped)),
    }
    return out


FOOTHOLD_RANGE = (0.05, 0.40)  # per-sample success a trained prompt should have in the pretrained model
FOOTHOLD_MAX_GOLD = 0.65  # and the most gold mean it may start from, so there is room to gain


def footholds(pipe, n: int = 256, progress=None, families: tuple[str, ...] = FAMILIES) -> list[dict]:
    """Per family prompt (train split first, then held-out): foothold, gold mean [interval], proxy, agreement."""
    from bench.shapes.oracle import ShapesOracle
    from bench.shapes.proxy import ShapesReward
    from bench.stats import pairwise_agreement

    oracle, proxy, train = ShapesOracle(), ShapesReward(), set(load_prompts("shapes-train"))
    rows = []
    for family in families:
        prompts = load_prompts(f"shapes-family-{family}")
        for prompt in sorted(prompts, key=lambda p: p not in train):
            images, ps, seeds = sample(pipe, [prompt], n, SHAPES_SAMPLING)
            gold, reward = oracle(images, ps).double().numpy(), proxy(images, ps).double().numpy()
            agreement, pairs = pairwise_agreement(reward.tolist(), gold.tolist(), ps)
            rows.append(
                {
                    "family": family,
                    "prompt": prompt,
                    "split": "train" if prompt in train else "heldout",
                    "samples": n,
                    "foothold": float((gold == 1).mean()),
                    "gold_mean_ci": bootstrap_ci(gold),
                    "proxy_mean": float(reward.mean()),
                    "agreement": agreement,
                    "pairs": pairs,
                }
            )
            if progress:
                progress(rows[-1])
    return rows


def foothold_ok(row: dict) -> bool:
    """Whether a prompt meets the foothold rule (FOOTHOLD_RANGE, FOOTHOLD_MAX_GOLD)."""
    low, high = FOOTHOLD_RANGE
    return low <= row["foothold"] <= high and row["gold_mean_ci"][0] <= FOOTHOLD_MAX_GOLD


def foothold_table(rows: list[dict]) -> list[str]:
    """Markdown table of ``footholds`` rows."""
    lines = [
        "| family | prompt | split | foothold (oracle = 1) | gold mean [95% interval] | proxy mean | "
        "proxy-oracle agreement (pairs) | in range |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['prompt']} | {r['split']} | {r['foothold']:.1%} | {_fmt(r['gold_mean_ci'])} | "
            f"{r['proxy_mean']:.3f} | {r['agreement']:.2f} ({r['pairs']}) | {'yes' if foothold_ok(r) else 'no'} |"
        )
    return lines


def _fmt(ci) -> str:
    mean, lo, hi = ci
    return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def _distribution(cfg: dict) -> str:
    """The pretraining-distribution settings of a config, as the card states them."""
    from bench.shapes.world import NAMED_BACKGROUND_WEIGHTS, P_MOON_STEREOTYPE

    moon = cfg.get("moon", NAMED_BACKGROUND_WEIGHTS["moon"])
    stereotype = cfg.get("moon_stereotype", P_MOON_STEREOTYPE)
    return (
        f"moon on {moon:.1%} of named backgrounds, {stereotype:.0%} of moon captions drawn as one yellow circle, "
        f"{cfg.get('unusual_colour', 0.0):.1%} of coloured phrases in an unusual colour"
    )


def _stage_lines(stats: dict) -> list[str]:
    """How the model was made: one from-scratch stage, or a warm-started stage on top of an earlier model."""
    cfg, init = stats["config"], stats.get("init")
    command = stats.get("command") or "bench shapes pretrain"
    diffusion = (
        f"UNet + text encoder on {cfg['unet_steps']} x {cfg['unet_batch']} pretraining pairs (lr {cfg['unet_lr']}) "
        f"with {cfg['caption_dropout']:.0%} caption dropout, EMA {cfg['ema_decay']}"
    )
    if init is None:
        return [
            f"- Command: `{command}` (seed {cfg['seed']}; reproducible from it).",
            f"- Data: rendered on the fly; VAE on {cfg['vae_steps']} x {cfg['vae_batch']} scenes (half pretraining "
            f"distribution, half the whole grammar), {diffusion}.",
            f"- Distribution: {_distribution(cfg)}.",
            f"- Wall time on 2 CPU cores: VAE {stats['vae_minutes']:.1f} min, UNet {stats['unet_minutes']:.1f} min, "
            f"total {stats.get('total_minutes', 0):.1f} min.",
        ]
    first = init.get("config", {})
    return [
        "- Two stages. Stage 1, from scratch: "
        f"`{init.get('command') or 'bench shapes pretrain'}` (seed {first.get('seed', '?')}), VAE on "
        f"{first.get('vae_steps', '?')} x {first.get('vae_batch', '?')} scenes, UNet + text encoder on "
        f"{first.get('unet_steps', '?')} x {first.get('unet_batch', '?')} pairs; distribution: "
        f"{_distribution(first)}; {init.get('total_minutes', 0):.1f} min.",
        f"- Stage 2, a warm start from stage 1's weights (fingerprint {str(stats.get('init_fingerprint'))[:8]}; "
        f"its VAE kept): `{command}` (seed {cfg['seed']}), "
        f"{diffusion}; distribution: {_distribution(cfg)}; {stats['unet_minutes']:.1f} min.",
        f"- Wall time on 2 CPU cores, both stages: {init.get('total_minutes', 0) + stats['unet_minutes']:.1f} min.",
    ]


def write_model_card(
    folder: str | Path, stats: dict, quality: dict | None = None, holds: list[dict] | None = None
) -> Path:
    """Measure (unless given) and write README.md, quality.json and footholds.json into the model folder."""
    folder = Path(folder)
    quality = quality or measure(folder)
    (folder / "quality.json").write_text(json.dumps(quality, indent=2, default=str) + "\n")
    if holds is None:
        from bench.models import load_pipeline

        holds = footholds(load_pipeline(str(folder)))
    (folder / "footholds.json").write_text(json.dumps(holds, indent=2) + "\n")
    size_mb = sum(p.stat().st_size for p in folder.rglob("*.safetensors")) / 2**20
    lines = [
        "# Shapes world: tiny Stable Diffusion",
        "",
        "A StableDiffusionPipeline (AutoencoderKL + CLIPTextModel + UNet2DConditionModel + DDIM) pretrained from "
        "scratch by the project on the shapes world's skewed pretraining distribution (bench/shapes/world.py). "
        "Load it with `StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32)`; weights are "
        "stored in fp16 to stay small.",
        "",
        *_stage_lines(stats),
        f"- Parameters: {stats['parameters']}; safetensors on disk {size_mb:.1f} MB.",
        f"- VAE reconstruction L1 (images in [-1, 1]): {stats['vae_recon_l1']:.4f}; latent scaling factor "
        f"{stats['scaling_factor']:.4f}; final diffusion loss {stats['unet_loss']:.4f}.",
        "",
        f"## Measured quality (gold oracle, DDIM {SHAPES_SAMPLING.num_steps} steps, eta {SHAPES_SAMPLING.eta}, "
        f"guidance {SHAPES_SAMPLING.guidance_scale}; mean [95% bootstrap interval])",
        "",
        f"- Simple one-object prompts ({quality['samples_per_prompt']} samples each): "
        + _fmt(quality["simple"]["mean_ci"]),
    ]
    for family, row in quality["families"].items():
        lines.append(f"- Family {family} ({row['prompts']} train prompts x 16 samples): {_fmt(row['mean_ci'])}")
    lines.append(
        f"- Demo prompts ({quality['samples_per_prompt']} samples each): "
        + "; ".join(f"{p!r} {v:.3f}" for p, v in quality["demo"].items())
    )
    colours = quality["bias_unspecified_colour"]["colours_of_detected_circles"]
    lines.append(f"- Bias, unspecified colour: 'a circle' -> detected circle colours {colours}")
    share = quality["bias_spurious_moon"]["share_yellow_circle"]
    lines.append(
        f"- Bias, spurious association: 'a blue square on the moon' has a yellow circle in {share:.0%} of samples"
    )
    low, high = FOOTHOLD_RANGE
    lines += [
        "",
        f"## Footholds ({holds[0]['samples'] if holds else 0} evaluation seeds per prompt, oracle "
        f"{quality.get('oracle_version', '?')})",
        "",
        "Policy gradient can only amplify what the model sometimes draws. A prompt trained on in the demo or the paper "
        f"experiments needs a foothold (share of samples the oracle scores 1) of {low:.0%}-{high:.0%} and a gold mean "
        f"of at most {FOOTHOLD_MAX_GOLD}; 'in range' says which do.",
        "",
        *foothold_table(holds),
    ]
    (folder / "README.md").write_text("\n".join(lines) + "\n")
    return folder / "README.md"


def main(argv=None) -> None:
    """``python -m bench.shapes.card [FOLDER]``: re-measure the shipped model and rewrite its card."""
    import argparse
    import sys

    from bench.models import load_pipeline
    from bench.shapes.oracle import ShapesOracle
    from bench.shapes.paths import model_folder

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", nargs="?", default=None, help="model folder (default: the shipped shapes model)")
    parser.add_argument("--samples", type=int, default=256, help="evaluation seeds per prompt for the footholds")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated families to measure")
    parser.add_argument(
        "--screen", action="store_true", help="footholds only, printed as a table: no quality, no card written"
    )
    args = parser.parse_args(argv)
    families = tuple(f.strip() for f in args.families.split(",") if f.strip())
    if unknown := sorted(set(families) - set(FAMILIES)):
        parser.error(f"--families: unknown {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    if set(families) != set(FAMILIES) and not args.screen:
        parser.error("a model card covers every family: add --screen to measure some of them only")
    folder = Path(args.folder or model_folder("shapes"))

    def show(row):
        print(f"{row['prompt']:<45} foothold {row['foothold']:6.1%}  gold {row['gold_mean_ci'][0]:.3f}  "
              f"agreement {row['agreement']:.2f}", file=sys.stderr, flush=True)  # fmt: skip

    if args.screen:  # a candidate model, before it is worth a card
        holds = footholds(load_pipeline(str(folder)), args.samples, progress=show, families=families)
        print("\n".join(foothold_table(holds)))
        for family in families:
            rows = [r for r in holds if r["family"] == family]
            print(f"{family}: {sum(map(foothold_ok, rows))} of {len(rows)} prompts in range")
        return
    stats = json.loads((folder / "pretrain_stats.json").read_text())
    quality = {**measure(folder), "oracle_version": ShapesOracle.version}
    holds = footholds(load_pipeline(str(folder)), args.samples, progress=show)
    print(write_model_card(folder, stats, quality, holds))


if __name__ == "__main__":
    main()
