"""Seconds per sample of TRL 0.23.1's DDPOTrainer and of the suite's `ddpo` at identical work, in one process.

Run through scripts/perf_vs_trl.sh (a venv that has trl==0.23.1 beside the project's packages). Identical work:
the shipped shapes model, the 4 demo prompts, 16 samples a round (TRL: sample_batch_size 16, one batch per
epoch), 20 DDIM steps, guidance 5, eta 1, LoRA rank 4 on to_q/to_k/to_v/to_out.0, the shapes-reward scorer,
every timestep trained once, one optimiser step per round (TRL: train_batch_size 16, gradient accumulation 1, so
one step after 16 samples x 20 timesteps; the suite: batch 16 x accumulation 20 = 320 transitions), one inner
epoch, fp32. TRL samples without a graph and recomputes every forward to train; the suite keeps the rollout's
graph for that on-policy step. The two alternate in blocks, so drift hits both; the first rounds of each block
(--warmup, 2) are a warm-up and are not counted, for both: the suite's second round still runs about 1.4x its
steady state (measured 2026-12-07), and blocks of 4 rounds with only the first left out gave 1.56 and 1.31 on two
days. Writes results/perf/trl-<device>-<date>[-n].json (every round's seconds kept, warm-up included), never
over an earlier run.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

SAMPLES, STEPS, GUIDANCE = 16, 20, 5.0


def trl_rounds(model_path: str, prompts: list[str], reward, rounds: int) -> list[float]:
    from accelerate import PartialState
    from trl import DDPOConfig, DDPOTrainer, DefaultDDPOStableDiffusionPipeline

    PartialState(cpu=True)  # TRL logs through accelerate before its trainer creates the state

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = DefaultDDPOStableDiffusionPipeline(model_path, use_lora=True)
    pipe.sd_pipeline.to(torch.float32)  # the shipped text encoder is stored in float16
    cycle = itertools.cycle(prompts)
    with tempfile.TemporaryDirectory() as tmp:
        config = DDPOConfig(
            num_epochs=rounds, sample_num_steps=STEPS, sample_eta=1.0, sample_guidance_scale=GUIDANCE,
            sample_batch_size=SAMPLES, sample_num_batches_per_epoch=1, train_batch_size=SAMPLES,
            train_gradient_accumulation_steps=1, train_num_inner_epochs=1, train_timestep_fraction=1.0,
            mixed_precision="no", train_cfg=True, per_prompt_stat_tracking=True, log_with=None,
            save_freq=10**9, project_kwargs={"project_dir": tmp}, train_learning_rate=3e-4,
        )  # fmt: skip
        trainer = DDPOTrainer(config, lambda images, p, meta: (reward(images, list(p)), {}),
                              lambda: (next(cycle), {}), pipe)  # fmt: skip
        times = []
        for epoch in range(rounds):
            start = time.perf_counter()
            trainer.step(epoch, epoch)
            times.append(time.perf_counter() - start)
    return times


def suite_rounds(rounds: int) -> list[float]:
    from bench.perf import time_rounds
    from bench.prompts import load_prompts
    from bench.shapes.paths import model_folder

    method = ["--samples-per-round", str(SAMPLES), "--batch-size", str(SAMPLES), "--grad-accum", str(STEPS),
              "--updates-per-round", "1", "--lr", "3e-4"]  # fmt: skip
    sets = [f"sampling.num_steps={STEPS}", f"sampling.guidance_scale={GUIDANCE}", "sampling.eta=1.0"]
    common = {"method": "ddpo", "model": "shapes", "prompts": "shapes-demo", "reward": "shapes-reward",
              "steps": rounds}  # fmt: skip
    per_round, _ = time_rounds(common, sets, method, model_folder("shapes"), load_prompts("shapes-demo"))
    return [row["round"] for row in per_round]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per block, warm-up included")
    parser.add_argument("--warmup", type=int, default=2, help="rounds at the start of each block not counted")
    parser.add_argument("--blocks", type=int, default=2, help="alternating blocks of each")
    parser.add_argument("--out", default="results/perf")
    args = parser.parse_args()
    if args.rounds <= args.warmup:
        parser.error(f"--rounds ({args.rounds}) must exceed --warmup ({args.warmup})")

    import trl

    from bench.perf import TRL_KEYS, device_name
    from bench.prompts import load_prompts
    from bench.registry import SCORERS
    from bench.results import env_info, write_json
    from bench.shapes.paths import model_folder

    scorer = SCORERS.get("shapes-reward")(device="cpu")
    prompts = load_prompts("shapes-demo")
    trl_all, suite_all = [], []
    start = time.time()
    for block in range(args.blocks):
        print(f"block {block + 1}/{args.blocks}: TRL", flush=True)
        trl_all.append(trl_rounds(model_folder("shapes"), prompts, scorer, args.rounds))
        print(f"block {block + 1}/{args.blocks}: suite ddpo", flush=True)
        suite_all.append(suite_rounds(args.rounds))
    trl_t = [t for block in trl_all for t in block[args.warmup :]]
    suite_t = [t for block in suite_all for t in block[args.warmup :]]
    trl_s, suite_s = statistics.median(trl_t) / SAMPLES, statistics.median(suite_t) / SAMPLES
    result = {
        "trl_version": trl.__version__,
        "work": {
            "samples_per_round": SAMPLES,
            "ddim_steps": STEPS,
            "guidance": GUIDANCE,
            "eta": 1.0,
            "lora_rank": 4,
            "timesteps_trained": STEPS,
            "optimiser_steps_per_round": 1,
            "precision": "fp32",
        },  # fmt: skip
        "trl_seconds_per_sample": trl_s,
        "suite_ddpo_seconds_per_sample": suite_s,
        "trl_vs_ddpo": trl_s / suite_s,
        "rounds_measured": {"trl": len(trl_t), "suite": len(suite_t)},
        "warmup_rounds_per_block": args.warmup,
        "round_seconds": {"trl": trl_all, "suite": suite_all},  # per block, warm-up rounds included
        "wall_seconds": time.time() - start,
        "env": env_info("cpu", 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"trl-{device_name(torch.device('cpu'))}-{datetime.date.today().isoformat()}"
    path = out / f"{stem}.json"
    for n in itertools.count(2):  # a second run on the same day is kept beside the first (bench perf lists both)
        if not path.exists():
            break
        path = out / f"{stem}-{n}.json"
    write_json(path, result)
    print(json.dumps({k: result[k] for k in TRL_KEYS}))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
