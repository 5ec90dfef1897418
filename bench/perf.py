"""`bench perf`: where a DPOK round's time and memory go, every figure a ratio measured within one run.

The workload is the shapes demo recipe of commit 60c05b5 (4 demo prompts, 16 samples a round, 20 DDIM steps,
guidance 5, eta 1, LoRA r4, one policy step over all 320 transitions in micro-batches of 32, value baseline,
beta 0.01), spelled out as options so that later recipe changes do not move it. Sections:

- ``sampling``: the pipeline's own ``__call__`` against the suite's rollout, without and with the reference,
  and keeping the policy's graph (the on-policy step), at the same batch, steps, guidance and eta;
- ``round``: one training round split into phases, against its floor (one sampling pass of the policy, one of
  the reference, the backward of the trained transitions) and the update against the bare UNet passes it needs;
- ``memory``: peak resident memory (CUDA max allocated on a GPU) per phase, LoRA against the full UNet and
  gradient checkpointing on and off;
- ``scaling``: rollout time against batch and against denoising steps;
- ``processes``: 2 processes against 1 at equal total batch (``torch.distributed.run``, gloo), whole runs;
- ``baseline``: the same runs through another install's interpreter (``--baseline PYTHON``), interleaved.

Times are medians over repeats; the first call of each kind is a warm-up and is not counted.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.timing import PeakMemory, record

DEMO_PROMPTS = "shapes-demo"
#: the workload's sampler (the sampling section reads its steps from here when it runs: a test shortens them)
SAMPLING = {"num_steps": 20, "guidance_scale": 5.0, "eta": 1.0}
#: the 60c05b5 demo recipe as explicit options (the shipped recipe may change; this workload does not)
WORKLOAD = {
    "common": {"method": "dpok", "model": "shapes", "prompts": DEMO_PROMPTS, "reward": "shapes-reward"},
    "sets": [f"sampling.{key}={value}" for key, value in SAMPLING.items()],
    "method": {"beta": 0.01, "alpha": 2.0, "lr": 0.005, "samples_per_round": 16, "updates_per_round": 1,
               "batch_size": 32, "grad_accum": 10, "buffer_size": 320, "advantage_scale": "prompt_std"},
}  # fmt: skip
MB = 2**20


def workload_method(quick: bool) -> dict:
    """The method options a section trains and times with: the workload's, or with ``--quick`` half its samples
    (and its buffer and micro-batch with them), so the quick report runs in about half the time."""
    method = dict(WORKLOAD["method"])
    if quick:
        for key in ("samples_per_round", "batch_size", "buffer_size"):
            method[key] = max(1, method[key] // 2)
    return method


def workload_cli(steps: int, results_dir: str, **method_over) -> list[str]:
    """The workload as `bench run` arguments (understood by 60c05b5 as well as by this version)."""
    args = ["run", "--steps", str(steps), "--results-dir", results_dir]
    for key, value in WORKLOAD["common"].items():
        args += [f"--{key}", str(value)]
    for item in WORKLOAD["sets"]:
        args += ["--set", item]
    for key, value in {**WORKLOAD["method"], **method_over}.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each callable, called in turn within each repeat so that drift hits all alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in times.items()}


class Bench:
    """The shared pipeline, prompts and sampler settings of one `bench perf` run."""

    def __init__(self, device, quick: bool):
        from bench.config import SamplingConfig
        from bench.models import add_lora, load_pipeline
        from bench.prompts import load_prompts
        from bench.resolve import resolve_model_path
        from bench.sampling import PromptCache

        self.quick = quick
        self.method = workload_method(quick)
        self.device = torch.device(device)
        self.model_path = resolve_model_path("shapes", WORKLOAD["common"]["model"])
        self.pipe = load_pipeline(self.model_path, self.device)
        self.params = add_lora(self.pipe.unet, 4, 4.0, ("to_q", "to_k", "to_v", "to_out.0"))
        self.cache = PromptCache(self.pipe)
        base = load_prompts(DEMO_PROMPTS)
        self.prompts = [base[i % len(base)] for i in range(self.method["samples_per_round"])]
        self.sampling = SamplingConfig(**SAMPLING)

    def generators(self, n: int):
        return [torch.Generator("cpu").manual_seed(i) for i in range(n)]

    def pipeline_call(self, prompts, steps: int, reference: bool = False):
        from bench.models import reference_policy

        ctx = reference_policy(self.pipe.unet) if reference else contextlib.nullcontext()
        with ctx:
            return self.pipe(
                list(prompts),
                num_inference_steps=steps,
                guidance_scale=self.sampling.guidance_scale,
                eta=self.sampling.eta,
                generator=self.generators(len(prompts)),
                output_type="pt",
            ).images

    def rollout(self, prompts, steps: int | None = None, reference=True, keep_graph: bool = False, backward=False):
        import dataclasses

        from bench.sampling import rollout

        sampling = dataclasses.replace(self.sampling, num_steps=steps or self.sampling.num_steps)
        out = rollout(self.pipe, list(prompts), list(range(len(prompts))), sampling, self.cache,
                      reference=reference, keep_graph=keep_graph)  # fmt: skip
        if backward:
            (torch.stack(out.graph["log_prob"]).mean() + torch.stack(out.graph["kl"]).mean()).backward()
            for p in self.params:
                p.grad = None
        return out

    def transitions(self, n: int):
        """``n`` stored-transition inputs like a round's: latents, timesteps and the prompts' embeddings."""
        gen = torch.Generator("cpu").manual_seed(0)
        self.pipe.scheduler.set_timesteps(self.sampling.num_steps)
        ts = self.pipe.scheduler.timesteps
        x_t = torch.randn(n, 4, 16, 16, generator=gen).to(self.device)
        t = ts[torch.randint(len(ts), (n,), generator=gen)].to(self.device)
        cond, uncond, _ = self.cache.get([self.prompts[i % len(self.prompts)] for i in range(n)])
        return x_t, t, cond.to(self.device).clone(), uncond.to(self.device).clone()

    def bare_passes(self, n: int, micro: int) -> dict[str, float]:
        """Seconds for the guided UNet on ``n`` transitions in micro-batches: no-grad forward, forward with
        grad, forward + backward (a mean-squared loss on the prediction)."""
        from bench.sampling import guided_eps

        x_t, t, cond, uncond = self.transitions(n)
        g = self.sampling.guidance_scale

        def run(mode: str):
            for i in range(0, n, micro):
                sl = slice(i, i + micro)
                with torch.inference_mode() if mode == "nograd" else contextlib.nullcontext():
                    eps = guided_eps(self.pipe.unet, x_t[sl], t[sl], cond[sl], uncond[sl], g)
                if mode == "fwdbwd":
                    eps.square().mean().backward()
            for p in self.params:
                p.grad = None

        return _interleaved({m: (lambda m=m: run(m)) for m in ("nograd", "grad", "fwdbwd")}, 1 if self.quick else 3)


def section_sampling(b: Bench) -> dict:
    reps, steps = (1 if b.quick else 4), b.sampling.num_steps  # after a warm-up call each
    t = _interleaved(
        {
            "pipeline": lambda: b.pipeline_call(b.prompts, steps),
            "pipeline_reference": lambda: b.pipeline_call(b.prompts, steps, reference=True),
            "rollout": lambda: b.rollout(b.prompts, reference=False),
            "rollout_reference": lambda: b.rollout(b.prompts, reference=True),
            "rollout_graph": lambda: b.rollout(b.prompts, reference=True, keep_graph=True),
        },
        reps,
    )
    return {
        "seconds": t,
        "batch": len(b.prompts),
        "steps": steps,
        "rollout_vs_pipeline": t["rollout"] / t["pipeline"],
        "rollout_reference_vs_pipeline": t["rollout_reference"] / t["pipeline"],
        "rollout_graph_vs_rollout_reference": t["rollout_graph"] / t["rollout_reference"],
    }


def time_rounds(common: dict, sets: list[str], method_args: list[str], model_path: str, prompts: list[str]):
    """Train in-process (run folder in a temporary directory). Returns one row per round, its wall seconds
    (``round``, counted from the end of setup) and its seconds per phase, and the run's ``PeakMemory``."""
    from bench.registry import SCORERS
    from bench.resolve import resolve_run_config
    from bench.trainer import Trainer

    cfg, method_cls, _ = resolve_run_config(None, common, list(sets), method_args)
    per_round: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp, record() as rec:
        last = {"t": 0.0, "seconds": {}}

        def progress(done, total, metrics):
            now = time.perf_counter()
            seconds = dict(rec["seconds"])
            row = {k: v - last["seconds"].get(k, 0.0) for k, v in seconds.items()}
            row["round"] = now - last["t"]
            per_round.append(row)
            last.update(t=now, seconds=seconds)

        trainer = Trainer(cfg, method_cls, model_path, prompts, SCORERS.get(cfg.reward), Path(tmp), progress)
        trainer.setup()
        with PeakMemory() as peak:
            last["t"] = time.perf_counter()
            trainer.run()
    return per_round, peak


def _rounds(b: Bench, rounds: int, **method_over) -> dict:
    """Train ``rounds`` + 1 rounds of the workload in-process; per-phase medians over all but the first."""
    method_args = []
    for key, value in {**b.method, **method_over}.items():
        method_args += [f"--{key.replace('_', '-')}", str(value)]
    common = dict(WORKLOAD["common"], steps=rounds + 1)
    per_round, _ = time_rounds(common, WORKLOAD["sets"], method_args, b.model_path, _prompt_list())
    measured = per_round[1:]
    for row in measured:  # per round, then the median: a difference of medians can come out negative
        row["other"] = row["round"] - sum(row.get(k, 0.0) for k in LEAVES)
    keys = sorted({k for row in measured for k in row})
    return {k: statistics.median(row.get(k, 0.0) for row in measured) for k in keys}


def _prompt_list():
    from bench.prompts import load_prompts

    return load_prompts(DEMO_PROMPTS)


LEAVES = ("rollout.policy", "rollout.reference", "rollout.decode", "reward", "value", "update")


def section_round(b: Bench) -> dict:
    rounds = 1 if b.quick else 5  # measured, after a first round left out
    graph = _rounds(b, rounds)
    recompute = _rounds(b, rounds, on_policy_graph="off")
    n = b.method["samples_per_round"] * 20
    bare = b.bare_passes(n, b.method["batch_size"])
    samp = _interleaved(
        {
            "policy": lambda: b.pipeline_call(b.prompts, 20),
            "reference": lambda: b.pipeline_call(b.prompts, 20, reference=True),
        },
        1 if b.quick else 3,
    )
    backward = bare["fwdbwd"] - bare["grad"]
    floor = samp["policy"] + samp["reference"] + backward
    return {
        "phases_on_policy_graph": graph,
        "phases_recompute": recompute,
        "bare_unet": bare | {"backward": backward},
        "floor": {
            "policy_sampling": samp["policy"],
            "reference_sampling": samp["reference"],
            "backward": backward,
            "total": floor,
        },  # fmt: skip
        "round_vs_floor": graph["round"] / floor,
        "recompute_round_vs_floor": recompute["round"] / floor,
        "update_vs_bare_fwdbwd": recompute["update"] / bare["fwdbwd"],
        "graph_update_vs_bare_backward": graph["update"] / backward,
        "transitions": n,
    }


def section_memory(b: Bench) -> dict:
    out = {}
    for name, fn in (
        ("rollout", lambda: b.rollout(b.prompts, reference=True)),
        ("rollout_graph_and_backward", lambda: b.rollout(b.prompts, reference=True, keep_graph=True, backward=True)),
    ):
        with PeakMemory() as peak:
            fn()
        out[name] = _mem(peak)
    unet = b.pipe.unet
    for full in (False, True):
        for checkpointing in (False, True):
            if full:
                unet.requires_grad_(True)
            if checkpointing:
                unet.enable_gradient_checkpointing()
            with PeakMemory() as peak:
                b.bare_passes(b.method["batch_size"], b.method["batch_size"])
            out[f"update_micro_batch_{'full_unet' if full else 'lora'}_{'gc' if checkpointing else 'no_gc'}"] = _mem(
                peak
            )
            unet.disable_gradient_checkpointing()
            unet.requires_grad_(False)
            for p in b.params:
                p.requires_grad_(True)
    return out


def _mem(peak: PeakMemory) -> dict:
    out = {"peak_rss_mb": peak.peak_rss / MB, "rss_growth_mb": (peak.peak_rss - peak.rss_start) / MB}
    if peak.peak_device is not None:
        out["device_max_allocated_mb"] = peak.peak_device / MB
    return out


def section_scaling(b: Bench) -> dict:
    batches = (4, 8) if b.quick else (4, 8, 16, 32)
    steps = (10, 20) if b.quick else (10, 20, 40)
    base = b.prompts
    by_batch = {n: _median_time(lambda n=n: b.rollout([base[i % len(base)] for i in range(n)]), 1) for n in batches}
    by_steps = {k: _median_time(lambda k=k: b.rollout(base, steps=k), 1) for k in steps}
    return {
        "rollout_seconds_by_batch": by_batch,
        "per_sample_seconds_by_batch": {n: t / n for n, t in by_batch.items()},
        "rollout_seconds_by_steps": by_steps,
        "per_step_seconds_by_steps": {k: t / k for k, t in by_steps.items()},
    }


def section_options(b: Bench, compile_too: bool = False) -> dict:
    """The guided UNet at the workload's micro-batch (no-grad forward; forward+backward) under each speed option,
    interleaved with the default so that drift hits all alike.

    ``autocast_bf16`` is timed, never used by a method: on the 2-core CPU of results/perf (avx512_bf16), in two
    runs, its forward took 0.64-0.79x and its forward+backward 0.99-1.07x of fp32, and its noise prediction differed
    from fp32's by 2.4% (relative norm), against importance ratios clipped at 1 +- 1e-4: a timing figure, not an
    option."""
    from diffusers.models.attention_processor import AttnProcessor
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from bench.sampling import guided_eps

    unet = b.pipe.unet
    x_t, t, cond, uncond = b.transitions(b.method["batch_size"])
    g = b.sampling.guidance_scale

    def passes(model=unet, x=x_t, no_grad=torch.inference_mode):
        def forward():
            with no_grad():
                guided_eps(model, x, t, cond, uncond, g)

        def fwdbwd():
            guided_eps(model, x, t, cond, uncond, g).square().mean().backward()
            for p in b.params:
                p.grad = None

        return forward, fwdbwd

    @contextlib.contextmanager
    def channels_last():
        unet.to(memory_format=torch.channels_last)
        yield
        unet.to(memory_format=torch.contiguous_format)

    @contextlib.contextmanager
    def classic_attention():
        saved = unet.attn_processors
        unet.set_attn_processor(AttnProcessor())
        yield
        unet.set_attn_processor(saved)

    @contextlib.contextmanager
    def threads(n):
        saved = torch.get_num_threads()
        torch.set_num_threads(n)
        yield
        torch.set_num_threads(saved)

    variants = {
        "default": contextlib.nullcontext,
        "channels_last": channels_last,
        "attention_processor_classic": classic_attention,
        "sdpa_math_backend": lambda: sdpa_kernel(SDPBackend.MATH),
        # bf16 autocast: a speed figure only; the log-probability ratios of a clipped update need fp32 (docstring)
        "autocast_bf16": lambda: torch.autocast(b.device.type, dtype=torch.bfloat16),
        "one_thread": lambda: threads(1),
    }
    reps = 2 if b.quick else 5
    out: dict = {}
    for kind in ("forward", "fwdbwd"):
        fns = {}
        for name, ctx in variants.items():
            fn = passes()[0 if kind == "forward" else 1]

            def call(ctx=ctx, fn=fn):
                with ctx():
                    fn()

            fns[name] = call
        fns["no_grad_instead_of_inference_mode"] = passes(no_grad=torch.no_grad)[0] if kind == "forward" else None
        out[kind] = _interleaved({k: v for k, v in fns.items() if v is not None}, reps)
    if compile_too:
        start = time.perf_counter()
        compiled = torch.compile(unet)
        forward, _ = passes(model=compiled)
        forward()
        seconds = time.perf_counter() - start
        out["compile"] = {"compile_seconds_forward": seconds, "forward": _median_time(forward, reps),
                          "default_forward": out["forward"]["default"]}  # fmt: skip
    out["vs_default"] = {kind: {k: v / out[kind]["default"] for k, v in out[kind].items()} for kind in
                         ("forward", "fwdbwd")}  # fmt: skip
    return out


def _run_rounds(python: list[str], args: list[str], env_over: dict, cwd: str) -> list[float]:
    """Seconds per round of a `bench run` subprocess, from its timing.jsonl (the first round left out)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **env_over}
    out = subprocess.run([*python, *args], env=env, capture_output=True, text=True, cwd=cwd, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(python)} {' '.join(args[:2])} failed: {out.stderr.strip().splitlines()[-1:]}")
    results = Path(args[args.index("--results-dir") + 1])
    timing = sorted(results.glob("*/timing.jsonl"), key=lambda p: p.stat().st_mtime)[-1]
    times = [json.loads(line)["time_s"] for line in timing.read_text().splitlines()]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def section_processes(quick: bool) -> dict:
    rounds = 2 if quick else 6  # the first left out
    m = WORKLOAD["method"]
    with tempfile.TemporaryDirectory() as tmp:
        one = _run_rounds([sys.executable, "-m", "bench.cli"], workload_cli(rounds, f"{tmp}/one"), {}, tmp)
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                  "bench.cli"]  # fmt: skip
        half = {"samples_per_round": m["samples_per_round"] // 2, "batch_size": m["batch_size"] // 2,
                "buffer_size": m["buffer_size"] // 2}  # fmt: skip
        two = _run_rounds(launch, workload_cli(rounds, f"{tmp}/two", **half), {"OMP_NUM_THREADS": "1"}, tmp)
    one_s, two_s = statistics.median(one), statistics.median(two)
    return {
        "one_process_round_s": one_s,
        "two_processes_round_s": two_s,
        "two_vs_one": two_s / one_s,
        "total_samples_per_round": m["samples_per_round"],
        "threads": {"one": torch.get_num_threads(), "two": "1 each"},
    }


def section_baseline(python: str, quick: bool) -> dict:
    """This install's round against another install's (``python``) on the same workload, runs interleaved A B A B.

    12 rounds a run (3 with ``--quick``): with 6, the rounds after the first still carry warm-up (two runs gave 0.791
    and 0.727). Each pair's ratio is reported beside the pooled medians.
    """
    rounds = 3 if quick else 12
    repeats = 1 if quick else 2
    this, other, pairs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            base_i = _run_rounds([python, "-m", "bench.cli"], workload_cli(rounds, f"{tmp}/base{i}"), {}, tmp)
            this_i = _run_rounds([sys.executable, "-m", "bench.cli"], workload_cli(rounds, f"{tmp}/this{i}"), {}, tmp)
            other += base_i
            this += this_i
            pairs.append(statistics.median(this_i) / statistics.median(base_i))
        # from the runs' own folder: `python -c` puts the current folder first, which may hold this checkout
        version = subprocess.run([python, "-c", "import bench, pathlib; print(pathlib.Path(bench.__file__).parent)"],
                                 capture_output=True, text=True, cwd=tmp).stdout.strip()  # fmt: skip
    return {
        "baseline_python": python,
        "baseline_package": version,
        "baseline_round_s": statistics.median(other),
        "this_round_s": statistics.median(this),
        "this_vs_baseline": statistics.median(this) / statistics.median(other),
        "pair_ratios": pairs,
        "rounds_measured": {"baseline": len(other), "this": len(this)},
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device).replace(" ", "-").lower()
    import platform

    return f"cpu-{os.cpu_count()}core-{platform.machine()}"


TRL_KEYS = ("trl_seconds_per_sample", "suite_ddpo_seconds_per_sample", "trl_vs_ddpo")


def trl_section(out_dir: Path, device: str) -> dict | None:
    """Every TRL comparison run on this device (trl-<device>-*.json, written by scripts/perf_vs_trl.sh in a venv of
    its own), each with its figures; the goal figure ``trl_vs_ddpo`` is the lowest ratio of them (the runs differ
    by more than their own spread, so the worst one is the claim)."""
    runs, version = [], None
    for path in sorted(out_dir.glob(f"trl-{device}-*.json")):
        data = json.loads(path.read_text())
        version = version or data["trl_version"]
        runs.append({"file": path.name} | {k: data[k] for k in TRL_KEYS} | {"rounds_measured": data["rounds_measured"]})
    if not runs:
        return None
    return {"trl_version": version, "runs": runs, "trl_vs_ddpo": min(r["trl_vs_ddpo"] for r in runs)}


def run_perf(quick: bool, baseline: str | None, out_dir: Path, device: str, sections: tuple[str, ...], log) -> Path:
    """Run the chosen sections and write ``<device>-<date>.json`` and ``.md`` into ``out_dir``."""
    from bench.results import env_info, write_json, write_text

    start = time.time()
    b = Bench(device, quick)
    # "workload": what this run measured with (--quick halves it); "recipe": the 60c05b5 recipe it stands for
    report = {"quick": quick, "workload": WORKLOAD | {"method": b.method}, "recipe": dict(WORKLOAD["method"]),
              "env": env_info(str(b.device), 1), "sections": {}}  # fmt: skip
    steps = {
        "sampling": lambda: section_sampling(b),
        "round": lambda: section_round(b),
        "memory": lambda: section_memory(b),
        "scaling": lambda: section_scaling(b),
        "options": lambda: section_options(b, compile_too="compile" in sections),
        "processes": lambda: section_processes(quick),
    }
    if baseline:
        steps["baseline"] = lambda: section_baseline(baseline, quick)
    for name, fn in steps.items():
        if name not in sections and not (name == "baseline" and baseline):
            continue
        log(f"perf: {name} ...")
        t0 = time.time()
        report["sections"][name] = fn()
        report["sections"][name]["section_seconds"] = time.time() - t0
    trl = trl_section(out_dir, device_name(b.device))
    if trl:
        report["sections"]["trl"] = trl
    report["wall_seconds"] = time.time() - start
    stamp = datetime.date.today().isoformat()
    stem = f"{device_name(b.device)}-{stamp}{'-quick' if quick else ''}"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / f"{stem}.json", report)
    from bench.perf_report import markdown

    write_text(out_dir / f"{stem}.md", markdown(report))
    return out_dir / f"{stem}.json"
