"""The one training loop every method shares: collect, score, method loss, AdamW step.

Per round: ``method.collect(ctx)`` gathers data (an online method rolls out the current policy),
``method.auxiliary`` fits any auxiliary model (a value baseline), then for each optimiser step that
``method.updates(ctx)`` yields, the micro-batches' losses are back-propagated (each divided by the number of
micro-batches), gradients are averaged across processes, the norm is clipped, and AdamW steps the LoRA weights at
the round's learning rate (``lr`` times the ``lr_schedule`` factor, a function of the round alone, so a resumed run
continues the schedule). One row per optimiser step goes to ``train.jsonl``. Devices and mixed precision come from
accelerate.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from bench.checkpoint import load_checkpoint, save_checkpoint
from bench.config import RunConfig, to_dict
from bench.dist import cpu_halves, use_cpu
from bench.errors import BenchError
from bench.method import lr_factor
from bench.models import add_lora, load_pipeline, model_fingerprint, save_lora
from bench.policy import Policy
from bench.results import append_jsonl, env_info, replace_dir, write_json, write_text, write_yaml
from bench.timing import phase


class TrainContext:
    """What a method may use besides the model: the reward, the round's prompts and data-order randomness (in step
    across processes), the run's config; ``policy`` is the model (bench/policy.py)."""

    def __init__(self, config: RunConfig, accelerator, pipe, scorer, prompts: list[str]):
        self.config, self.accelerator, self.pipe, self.scorer = config, accelerator, pipe, scorer
        self.prompts = prompts
        self.device = accelerator.device
        self.process = accelerator.process_index
        # one data-order stream for all processes (seeded as process 0's): each takes its own slice of the round
        self.generator = torch.Generator().manual_seed(_derive_seed(config.seed, 0, "data"))
        self.sample_counter = 0
        self.round = 0
        #: what a method needs of the model: rollouts, log-probs and KL of stored transitions, denoising, the reference
        self.policy = Policy(pipe, config.sampling, prompts, accelerator)
        split = config.parallel_backward == "auto" and config.mixed_precision == "no" and cpu_halves(self.device)
        #: how many disjoint parts an on-policy step's graph is split into (the trainer runs them side by side)
        self.backward_groups = 2 if split else 1

    def round_prompts(self, n: int) -> tuple[list[int], list[int]]:
        """``n`` prompt ids (each prompt equally often, in a random order) and fresh per-sample seeds.

        With several processes the round is one global batch of ``n`` x processes samples, drawn as one process
        would draw it, and process ``p`` takes the ``p``-th slice: 2 processes x 8 sample what 1 x 16 samples."""
        world = self.accelerator.num_processes
        total = n * world
        reps = math.ceil(total / len(self.prompts))
        order = torch.cat([torch.randperm(len(self.prompts), generator=self.generator) for _ in range(reps)])
        first = self.process * n
        ids = order[first : first + n].tolist()
        seeds = [_derive_seed(self.config.seed, 0, self.sample_counter + first + i) for i in range(n)]
        self.sample_counter += total
        return ids, seeds

    def gather_round(self, prompt_ids: list[int], values: torch.Tensor) -> tuple[list[int], torch.Tensor]:
        """The whole round's prompt ids and per-sample values over every process, in the order one process holding
        the round would have them (process p's slice p-th); this process's own slice starts at ``process x n``."""
        if self.accelerator.num_processes == 1:
            return list(prompt_ids), values
        ids = self.accelerator.gather(torch.as_tensor(prompt_ids, device=self.device))
        gathered = self.accelerator.gather(values.to(self.device))
        return ids.cpu().tolist(), gathered.cpu()

    def buffer_steps(self, buffer, fresh, hp) -> Iterator[list[dict[str, torch.Tensor]]]:
        """The round's ``hp.updates_per_round`` optimiser steps over a transition buffer, each of
        ``hp.batch_size`` x ``hp.grad_accum`` transitions drawn without replacement (with replacement when the buffer
        is smaller), in micro-batches of ``hp.batch_size``.

        ``fresh`` (a ``FreshGraph`` or None) holds the graph-carrying tensors of the buffer's newest transitions, from
        the rollout that sampled them. When every transition of the first step is fresh (the ratio is exactly 1
        there), that step back-propagates through the rollout's own forward instead of recomputing it: its
        micro-batches are ``self.backward_groups`` sets of whole denoising steps (disjoint graphs, which the trainer may
        back-propagate side by side), together the step's transitions. The random draws are the same either way.
        """
        per_step = hp.batch_size * hp.grad_accum
        for _ in range(hp.updates_per_round):
            order = self.permutation(len(buffer))
            if len(order) < per_step:  # a small buffer is reused within the step rather than failing
                order = order[self.randint(len(order), per_step)]
            step = order[:per_step]
            first_fresh = len(buffer) - len(fresh) if fresh is not None else None
            if fresh is not None and bool((step >= first_fresh).all()):
                groups = fresh.gather(step - first_fresh, self.backward_groups)
                yield [buffer.gather(step[mask], self.device) | values for mask, values in groups]
            else:
                yield [buffer.gather(idx, self.device) for idx in chunk(step, hp.batch_size)]
            fresh = None

    def dataset_steps(self, data: dict[str, torch.Tensor], hp, draws=None) -> Iterator[list[dict[str, torch.Tensor]]]:
        """The round's ``hp.updates_per_round`` optimiser steps over a fixed dataset (one tensor per field, one row
        per item), each of ``hp.batch_size`` x ``hp.grad_accum`` items in a random order (repeated when the dataset
        is smaller), in micro-batches of ``hp.batch_size``. ``draws(n, generator)`` gives per-item random tensors
        for the whole step (noise, timesteps) at once, after the order: accumulation never changes what is drawn."""
        per_step = hp.batch_size * hp.grad_accum
        n = len(next(iter(data.values())))
        for _ in range(hp.updates_per_round):
            idx = torch.randperm(n, generator=self.generator)
            idx = idx[torch.arange(per_step) % n]
            extra = draws(per_step, self.generator) if draws else {}
            parts = [chunk(idx, hp.batch_size), *(chunk(v, hp.batch_size) for v in extra.values())]
            yield [
                {**{k: v[i].to(self.device) for k, v in data.items()},
                 **{k: v.to(self.device) for k, v in zip(extra, rest, strict=True)}}
                for i, *rest in zip(*parts, strict=True)
            ]  # fmt: skip

    def permutation(self, n: int) -> torch.Tensor:
        """A random order of this process's ``n`` items (buffer entries).

        One process draws ``randperm(n)``. With several, each draws the permutation of all ``n`` x processes items
        that one process holding them all would draw, and keeps its own items in that order: the data-order stream
        stays in step with a single-process run, so later rounds draw the same prompts."""
        world = self.accelerator.num_processes
        if world == 1:
            return torch.randperm(n, generator=self.generator)
        order = torch.randperm(n * world, generator=self.generator)
        first = self.process * n
        return order[(order >= first) & (order < first + n)] - first

    def randint(self, n: int, size: int) -> torch.Tensor:
        """``size`` random indices into this process's ``n`` items, in step across processes like ``permutation``."""
        world = self.accelerator.num_processes
        if world == 1:
            return torch.randint(n, (size,), generator=self.generator)
        draw = torch.randint(n * world, (size * world,), generator=self.generator)
        return draw[self.process * size : (self.process + 1) * size] % n

    @torch.no_grad()
    def reward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        with phase("reward"):
            values = self.scorer(images.to(self.device), prompts).float()
        if not torch.isfinite(values).all():
            raise NonFinite(f"the reward {self.config.reward!r} returned a non-finite value")
        return values


def chunk(indices: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Split one optimiser step's indices into micro-batches of ``size``."""
    return list(torch.split(indices, size))


class NonFinite(Exception):
    """A NaN or inf reward, loss or gradient."""


def _derive_seed(*parts) -> int:
    words = [p if isinstance(p, int) else int.from_bytes(str(p).encode()[:8], "little") for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def _sync_gradients(accelerator, params) -> None:
    """Average LoRA gradients over processes (data parallel without wrapping the UNet in DDP)."""
    if accelerator.num_processes == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = accelerator.reduce(torch.cat([g.flatten() for g in grads]), reduction="mean")
    offset = 0
    for p, g in zip(params, grads, strict=True):
        p.grad = flat[offset : offset + g.numel()].view_as(g)
        offset += g.numel()


TRACKERS = ("tensorboard", "wandb", "mlflow")
TRACKING = "tracking"  # a run folder's subfolder for the trackers' own files (git-ignored)


def check_trackers(names) -> tuple[str, ...]:
    """The trackers of ``--log-with``, each checked to be known and installed (no side effects)."""
    import importlib.util

    names = tuple(names)
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise BenchError(f"--log-with: unknown {', '.join(unknown)}; known: {', '.join(TRACKERS)}")
    modules = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}
    for name in names:
        if not any(importlib.util.find_spec(m) for m in modules[name]):
            extra = " (or tensorboardX)" if name == "tensorboard" else ""
            raise BenchError(f"--log-with {name} needs the {name} package{extra}: pip install {modules[name][-1]}")
    return names


def offline_trackers(names, run_dir: Path) -> None:
    """Keep the trackers offline and in the run folder: wandb in offline mode writing to ``tracking/``, mlflow's
    store in ``tracking/mlruns``, unless the user's environment already says otherwise."""
    if "wandb" in names:
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str((run_dir / TRACKING).resolve()))
    if "mlflow" in names:
        os.environ.setdefault("MLFLOW_TRACKING_URI", (run_dir / TRACKING / "mlruns").resolve().as_uri())


def _flat(config: dict, prefix: str = "") -> dict:
    """A nested config as one level of dotted keys with scalar values (what tensorboard's hparams accept)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, int | float | str | bool) else str(value)
    return out


def _scalars(row: dict) -> dict:
    return {k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}


@dataclasses.dataclass
class Trainer:
    """Runs ``config.steps`` rounds of ``method`` and writes the run folder."""

    config: RunConfig
    method_cls: type
    model_path: str
    prompts: list[str]
    scorer_cls: object  # a Scorer class, or an instance
    run_dir: Path
    progress: object = None  # a callable(round, total, metrics) for the CLI's progress bar
    log_with: tuple[str, ...] = ()  # live view through accelerate's trackers (see ``trackers``); off by default

    def setup(self):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        trackers = check_trackers(self.log_with)
        offline_trackers(trackers, self.run_dir)
        self.accelerator = Accelerator(
            mixed_precision=self.config.mixed_precision,
            cpu=use_cpu(),
            log_with=list(trackers) or None,
            project_dir=str(self.run_dir / TRACKING) if trackers else None,
        )
        set_seed(self.config.seed)
        pipe = load_pipeline(self.model_path, self.accelerator.device)
        if self.config.gradient_checkpointing:
            pipe.unet.enable_gradient_checkpointing()
        lora = self.config.lora
        self.params = add_lora(pipe.unet, lora.rank, lora.alpha, lora.targets)
        hp = self.config.hparams
        self.optimizer = torch.optim.AdamW(self.params, lr=hp.lr, weight_decay=hp.weight_decay)
        scorer = self.scorer_cls
        if isinstance(scorer, type):  # a class: build it here (the CLI passes an instance it already checked)
            scorer = scorer(device=self.accelerator.device)
        self.ctx = TrainContext(self.config, self.accelerator, pipe, scorer, self.prompts)
        self.method = self.method_cls(hp)
        self.method.setup(self.ctx)
        self.update = 0
        self.start_round = 0
        self._pool = None
        if self.accelerator.is_main_process and not (self.run_dir / "config.yaml").exists():
            write_yaml(self.run_dir / "config.yaml", to_dict(self.config) | {"model_path": self.model_path})
            write_json(
                self.run_dir / "env.json",
                env_info(str(self.accelerator.device), self.accelerator.num_processes)
                | {"model_fingerprint": model_fingerprint(self.model_path, weights_only=True)},
            )
        if self.log_with:
            self.accelerator.init_trackers(self.run_dir.name, config=_flat(to_dict(self.config)))
        return self

    def step(self, micro_batches) -> dict:
        """One optimiser step over ``micro_batches`` (gradient accumulation)."""
        self.optimizer.zero_grad(set_to_none=True)
        if len(micro_batches) > 1 and all("log_prob_graph" in b for b in micro_batches):
            return self._finish_step(self._parallel_backward(micro_batches))
        sums: dict[str, float] = {}
        for batch in micro_batches:
            with self.accelerator.autocast():
                loss, metrics = self.method.loss(batch, self.ctx)
            if not torch.isfinite(loss):
                raise NonFinite("non-finite loss")
            self.accelerator.backward(loss / len(micro_batches))
            for k, v in {"loss": loss.item(), **metrics}.items():
                sums[k] = sums.get(k, 0.0) + v / len(micro_batches)
        return self._finish_step(sums)

    def _parallel_backward(self, micro_batches) -> dict:
        """Micro-batches whose graphs share nothing (groups of an on-policy step's denoising steps), each
        back-propagated in its own thread with half the CPU threads; gradients summed in a fixed order, weighted by
        size so the total is the mean over all the step's transitions."""
        sizes = [len(b["log_prob_graph"]) for b in micro_batches]
        total = sum(sizes)
        threads = max(1, torch.get_num_threads() // len(micro_batches))

        def work(batch, weight):
            torch.set_num_threads(threads)  # this thread's own OpenMP setting
            loss, metrics = self.method.loss(batch, self.ctx)
            if not torch.isfinite(loss):
                raise NonFinite("non-finite loss")
            grads = torch.autograd.grad(loss * weight, self.params, allow_unused=True)
            return {"loss": loss.item(), **metrics}, grads

        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(len(micro_batches), thread_name_prefix="bench-backward")
        futures = [self._pool.submit(work, b, n / total) for b, n in zip(micro_batches, sizes, strict=True)]
        results = [f.result() for f in futures]
        sums: dict[str, float] = {}
        for (metrics, _), n in zip(results, sizes, strict=True):
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v * n / total
        for i, p in enumerate(self.params):
            parts = [grads[i] for _, grads in results if grads[i] is not None]
            p.grad = sum(parts[1:], parts[0]) if parts else None
        return sums

    def _finish_step(self, sums: dict) -> dict:
        _sync_gradients(self.accelerator, self.params)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.hparams.grad_clip)
        if not torch.isfinite(grad_norm):
            raise NonFinite("non-finite gradient")
        self.optimizer.step()
        return {**sums, "grad_norm": grad_norm.item()}

    def _fail(self, exc: Exception, round_: int) -> BenchError:
        done = self.start_round
        where = f"last good checkpoint: {self.run_dir / 'checkpoint'} (round {done})" if done else "no checkpoint yet"
        return BenchError(f"{exc} at update {self.update + 1} (round {round_ + 1}); stopped, {where}")

    def run(self) -> Path:
        """Rounds ``start_round + 1 .. steps``; checkpoints every ``checkpoint_every`` rounds, at the end, and when
        SIGTERM or Ctrl-C arrives (after finishing the current round, so the checkpoint is exact). The trackers of
        ``log_with`` are closed however the rounds end."""
        try:
            return self._rounds()
        finally:
            if self.log_with:
                self.accelerator.end_training()

    def _rounds(self) -> Path:
        start = time.time()
        hp = self.config.hparams
        with _StopSignals() as stop:
            for round_ in range(self.start_round, self.config.steps):
                self.ctx.round = round_
                for group in self.optimizer.param_groups:
                    group["lr"] = hp.lr * lr_factor(hp.lr_schedule, round_, self.config.steps)
                try:
                    with phase("collect"):
                        collected = self.method.collect(self.ctx)
                    with phase("auxiliary"):
                        collected |= self.method.auxiliary(self.ctx)
                    rows = []
                    for micro_batches in self.method.updates(self.ctx):
                        with phase("update"):
                            metrics = self.step(micro_batches)
                        self.update += 1
                        rows.append({"round": round_ + 1, "update": self.update, **collected, **metrics,
                                     "lr": self.optimizer.param_groups[0]["lr"]})  # fmt: skip
                except NonFinite as exc:
                    raise self._fail(exc, round_) from None
                if self.log_with:  # the same rows, live; train.jsonl stays the record
                    for row in rows:
                        self.accelerator.log(_scalars(row), step=row["update"])
                if self.accelerator.is_main_process:
                    append_jsonl(self.run_dir / "train.jsonl", rows)
                    append_jsonl(self.run_dir / "timing.jsonl", [{"round": round_ + 1, "time_s": time.time() - start}])
                if self.progress:
                    self.progress(round_ + 1, self.config.steps, rows[-1] if rows else collected)
                every = self.config.checkpoint_every
                if (every and (round_ + 1) % every == 0) or stop.requested or round_ + 1 == self.config.steps:
                    self.save()
                    self.start_round = round_ + 1
                snap = self.config.snapshot_every
                if snap and (round_ + 1) % snap == 0 and round_ + 1 < self.config.steps:
                    self.snapshot()
                if stop.requested:
                    raise BenchError(
                        f"stopped by a signal after round {round_ + 1}; resume with --resume {self.run_dir}"
                    )
        return self.run_dir

    def _check_in_sync(self) -> None:
        """Data parallel: every process must hold the same LoRA weights (a missed all-reduce shows up here)."""
        if self.accelerator.num_processes == 1:
            return
        total = torch.stack([p.detach().double().sum() for p in self.params]).sum().reshape(1)
        gathered = self.accelerator.gather(total.to(self.accelerator.device))
        if not torch.allclose(gathered, gathered[0].expand_as(gathered), rtol=1e-6, atol=1e-9):
            raise BenchError(f"LoRA weights differ across processes at update {self.update}: {gathered.tolist()}")

    def save(self) -> None:
        """Write lora/ and checkpoint/ (each swapped in atomically)."""
        self._check_in_sync()
        local = self._process_state()
        ranks = None
        if self.accelerator.num_processes > 1:  # every process's buffer, statistics and generators
            from accelerate.utils import gather_object

            ranks = gather_object([local])
        if not self.accelerator.is_main_process:
            return
        unet = self.ctx.pipe.unet
        replace_dir(self.run_dir / "lora", lambda tmp: save_lora(unet, tmp))
        state = {
            "update": self.update,
            "round": self.ctx.round + 1,
            "lora": {n: p.detach().cpu() for n, p in unet.named_parameters() if "lora_" in n},
            "optimizer": self.optimizer.state_dict(),
            **local,
            "num_processes": self.accelerator.num_processes,
        }
        if ranks is not None:
            state["ranks"] = ranks
        save_checkpoint(self.run_dir / "checkpoint", state)

    def snapshot(self) -> None:
        """Keep this update's LoRA in snapshots/update-K/ (training curves on fresh seeds, `bench eval --snapshots`)."""
        if self.accelerator.is_main_process:
            folder = self.run_dir / "snapshots" / f"update-{self.update:05d}"
            folder.parent.mkdir(exist_ok=True)
            replace_dir(folder, lambda tmp: save_lora(self.ctx.pipe.unet, tmp))

    def _process_state(self) -> dict:
        """What differs between data-parallel processes: the method's state (buffer, statistics) and RNGs."""
        return {
            "method": self.method.state_dict(),
            "generator": self.ctx.generator.get_state(),
            "sample_counter": self.ctx.sample_counter,
            "torch_rng": torch.get_rng_state(),
        }

    def restore(self) -> None:
        """Continue from ``checkpoint/``: weights, optimizer, method state, RNGs; drop rows logged after it.
        Without a checkpoint (killed during the first interval) the run restarts from round 1 in its folder."""
        if not (self.run_dir / "checkpoint").exists():
            self._truncate_logs({"update": 0, "round": 0})
            return
        state = load_checkpoint(self.run_dir / "checkpoint")
        unet = self.ctx.pipe.unet
        missing = set(state["lora"]) - {n for n, _ in unet.named_parameters()}
        if missing:
            raise BenchError(f"checkpoint {self.run_dir / 'checkpoint'} does not match this model's LoRA layers")
        with torch.no_grad():
            for name, p in unet.named_parameters():
                if name in state["lora"]:
                    p.copy_(state["lora"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        world = self.accelerator.num_processes
        saved = state.get("num_processes", 1)
        if saved != world:
            raise BenchError(
                f"checkpoint {self.run_dir / 'checkpoint'} was written by {saved} process(es); resume it with "
                f"{saved}, not {world} (each process's buffer and generators are its own)"
            )
        local = state["ranks"][self.accelerator.process_index] if world > 1 else state
        self.method.load_state_dict(local["method"])
        self.ctx.generator.set_state(local["generator"])
        self.ctx.sample_counter = local["sample_counter"]
        torch.set_rng_state(local["torch_rng"])
        self.update, self.start_round = state["update"], state["round"]
        self._truncate_logs(state)

    def _truncate_logs(self, state: dict) -> None:
        if not self.accelerator.is_main_process:
            return
        for name, key in (("train.jsonl", "update"), ("timing.jsonl", "round")):
            path = self.run_dir / name
            if path.exists():
                rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
                keep = [r for r in rows if r[key] <= state[key]]
                write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


class _StopSignals:
    """Turn SIGTERM and the first Ctrl-C into a request to stop after the current round (main thread only)."""

    def __enter__(self):
        self.requested = False
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second signal aborts at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        return False
