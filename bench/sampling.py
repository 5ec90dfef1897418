"""DDIM rollouts that keep what policy-gradient methods need: every step's latents, log-probability and KL.

With eta > 0 each DDIM step is a Gaussian policy N(mu_theta(x_t, t, z), sigma_t^2 I) (DPOK, Lemma 4.1). The
mean follows diffusers' ``DDIMScheduler.step`` operation for operation (epsilon or v prediction, ``clip_sample``),
so with adapters off and the same seeds a rollout reproduces ``StableDiffusionPipeline`` exactly. Noise is drawn
with ``diffusers.utils.torch_utils.randn_tensor`` from one generator per sample, in the pipeline's order.

Estimator options (docs/ARCHITECTURE.md, "The estimator"): log-prob reduced by ``mean`` over latent dims (official
DPOK and DDPO code) or ``sum`` (the true density); KL by ``mse`` of the guided noise predictions (official DPOK
code, ``(noise_pred - old_noise_pred) ** 2`` averaged) or ``closed_form`` ||mu - mu_ref||^2 / (2 sigma_t^2) summed."""

from __future__ import annotations

import contextlib
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from diffusers.utils.torch_utils import randn_tensor

from bench.dist import cpu_halves
from bench.models import reference_model, reference_policy
from bench.timing import phase

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
REDUCTIONS = ("mean", "sum")
KL_ESTIMATORS = ("mse", "closed_form")


def ddim_mean_std(scheduler, eps, timestep, prev_timestep, x_t, eta: float):
    """Mean and std of p(x_{t-1} | x_t) for DDIM with noise level ``eta``.

    ``timestep`` and ``prev_timestep`` are int tensors of shape (B,) (or scalars); a negative previous timestep
    means the final step, which uses ``scheduler.final_alpha_cumprod`` as diffusers does.
    """
    acp = scheduler.alphas_cumprod.to(x_t.device)
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    timestep = torch.as_tensor(timestep, device=x_t.device).reshape(-1)
    prev_timestep = torch.as_tensor(prev_timestep, device=x_t.device).reshape(-1)
    alpha_t = acp[timestep].reshape(shape)
    final = scheduler.final_alpha_cumprod.to(device=x_t.device, dtype=acp.dtype)
    alpha_prev = torch.where(prev_timestep >= 0, acp[prev_timestep.clamp(min=0)], final).reshape(shape)
    beta_t = 1 - alpha_t
    config = scheduler.config
    if config.prediction_type == "epsilon":
        pred_x0 = (x_t - beta_t ** (0.5) * eps) / alpha_t ** (0.5)
        pred_eps = eps
    elif config.prediction_type == "v_prediction":
        pred_x0 = (alpha_t**0.5) * x_t - (beta_t**0.5) * eps
        pred_eps = (alpha_t**0.5) * eps + (beta_t**0.5) * x_t
    else:
        raise ValueError(f"prediction_type {config.prediction_type!r} is not supported (epsilon, v_prediction)")
    if config.clip_sample:
        pred_x0 = pred_x0.clamp(-config.clip_sample_range, config.clip_sample_range)
    variance = ((1 - alpha_prev) / beta_t) * (1 - alpha_t / alpha_prev)
    std = eta * variance ** (0.5)
    direction = (1 - alpha_prev - std**2) ** (0.5) * pred_eps
    mean = alpha_prev ** (0.5) * pred_x0 + direction
    return mean.to(x_t.dtype), std.to(x_t.dtype)


def gaussian_log_prob(x, mean, std, reduction: str = "mean"):
    """log N(x; mean, std^2 I) per sample, reduced over all non-batch dims by ``mean`` or ``sum``."""
    log_prob = -((x.detach() - mean) ** 2) / (2 * std**2) - torch.log(std) - LOG_SQRT_2PI
    dims = tuple(range(1, x.ndim))
    return log_prob.mean(dims) if reduction == "mean" else log_prob.sum(dims)


def kl_estimate(eps, ref_eps, mean, ref_mean, std, estimator: str = "mse"):
    """Per-sample KL(p_theta(x_{t-1}|x_t) || p_ref(x_{t-1}|x_t)) surrogate; see the module docstring."""
    dims = tuple(range(1, eps.ndim))
    if estimator == "mse":
        return ((eps - ref_eps) ** 2).mean(dims)
    return ((mean - ref_mean) ** 2).sum(dims) / (2 * std.reshape(-1) ** 2)


def guided_eps(unet, x_t, timestep, cond, uncond, guidance_scale: float):
    """Classifier-free guided noise prediction as the pipeline computes it, in one batched UNet call."""
    if guidance_scale <= 1.0:
        return unet(x_t, timestep, encoder_hidden_states=cond, return_dict=False)[0]
    timestep = torch.as_tensor(timestep, device=x_t.device)
    if timestep.ndim == 1:
        timestep = torch.cat([timestep, timestep])
    out = unet(torch.cat([x_t, x_t]), timestep, encoder_hidden_states=torch.cat([uncond, cond]), return_dict=False)[0]
    eps_uncond, eps_text = out.chunk(2)
    return eps_uncond + guidance_scale * (eps_text - eps_uncond)


class PromptCache:
    """Text embeddings computed once per prompt: the encoder output for guidance and a pooled vector."""

    def __init__(self, pipe):
        self.pipe = pipe
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._uncond: torch.Tensor | None = None

    @torch.inference_mode()
    def _encode(self, prompts: list[str]) -> torch.Tensor:
        tok = self.pipe.tokenizer
        ids = tok(
            prompts,
            padding="max_length",
            max_length=tok.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        out = self.pipe.text_encoder(ids.input_ids.to(self.pipe.text_encoder.device))
        return out[0], out[1]

    def get(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cond, uncond, pooled) embeddings for a batch of prompts."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if missing:
            hidden, pooled = self._encode(missing)
            for i, p in enumerate(missing):
                self._cache[p] = (hidden[i].clone(), pooled[i].clone())
        if self._uncond is None:
            self._uncond = self._encode([""])[0][0].clone()
        cond = torch.stack([self._cache[p][0] for p in prompts])
        pooled = torch.stack([self._cache[p][1] for p in prompts])
        return cond, self._uncond.expand_as(cond), pooled


@dataclass
class Rollout:
    """A batch of trajectories x_T -> x_0; step k goes from ``latents[:, k]`` to ``latents[:, k + 1]``."""

    prompts: list[str]
    seeds: list[int]
    images: torch.Tensor  # (B, 3, H, W) in [0, 1]
    latents: torch.Tensor  # (B, K + 1, C, h, w)
    timesteps: torch.Tensor  # (K,)
    prev_timesteps: torch.Tensor  # (K,)
    log_probs: torch.Tensor  # (B, K); 0 where the step is deterministic (std 0)
    stds: torch.Tensor  # (K,) the step's standard deviation sigma_t (0 where deterministic)
    ref_eps: torch.Tensor | None  # (B, K, C, h, w) guided reference prediction, or None
    kl: torch.Tensor | None  # (B, K) KL estimate of the sampling policy to the reference
    graph: dict[str, list[torch.Tensor]] | None = None  # keep_graph: per step, (B,) "log_prob" and "kl" with grad

    @property
    def stochastic(self) -> torch.Tensor:
        """(K,) bool: std > 0, so the step is an action with a log-probability."""
        return self.stds > 0

    def transitions(self, min_std: float = 0.0) -> dict[str, torch.Tensor]:
        """Flatten the steps with std > ``min_std`` into per-transition tensors (normal tensors, safe for autograd)."""
        steps = (self.stds > min_std).nonzero().flatten()  # min_std 0 keeps every action (std > 0)
        b = len(self.prompts)
        out = {
            "x_t": self.latents[:, steps],
            "x_prev": self.latents[:, steps + 1],
            "timestep": self.timesteps[steps].expand(b, -1),
            "prev_timestep": self.prev_timesteps[steps].expand(b, -1),
            "old_log_prob": self.log_probs[:, steps],
            "sample": torch.arange(b).unsqueeze(1).expand(-1, len(steps)),
        }
        if self.ref_eps is not None:
            out["ref_eps"] = self.ref_eps[:, steps]
        return {k: v.reshape(-1, *v.shape[2:]).clone() for k, v in out.items()}

    def fresh_graph(self, min_std: float = 0.0) -> FreshGraph | None:
        """The graph-carrying tensors of the transitions ``transitions(min_std)`` returns, or None without a graph."""
        if self.graph is None:
            return None
        steps = (self.stds > min_std).nonzero().flatten().tolist()
        return FreshGraph(
            {key: [per_step[k] for k in steps] for key, per_step in self.graph.items()}, len(self.prompts)
        )


@dataclass
class FreshGraph:
    """A rollout's per-step tensors with autograd history, for the transitions it just stored.

    Transition ``j`` of the rollout (in ``Rollout.transitions`` order) is sample ``j // steps`` at kept step
    ``j % steps``. Steps are separate graphs, so groups of steps back-propagate independently."""

    tensors: dict[str, list[torch.Tensor]]  # key -> one (B,) tensor per kept step
    samples: int

    @property
    def steps(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __len__(self) -> int:
        return self.samples * self.steps

    def gather(self, positions: torch.Tensor, groups: int) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """Split ``positions`` (transition indices of this rollout) into up to ``groups`` sets of whole steps whose
        graphs share nothing; per set, the mask of ``positions`` it holds and its ``<key>_graph`` tensors."""
        sample, step = positions // self.steps, positions % self.steps
        out = []
        for group in torch.arange(self.steps).tensor_split(groups):
            if not len(group):
                continue
            first, last = int(group[0]), int(group[-1])
            mask = (step >= first) & (step <= last)
            if not bool(mask.any()):
                continue
            values = {}
            for key, per_step in self.tensors.items():
                stacked = torch.stack(per_step[first : last + 1], 1)  # (B, steps in group)
                values[f"{key}_graph"] = stacked[sample[mask], step[mask] - first]
            out.append((mask, values))
        return out


def latent_shape(pipe, n: int, height: int | None, width: int | None) -> tuple[int, ...]:
    """(n, C, h, w) of the latents for images of ``height`` x ``width`` (default: the model's own size)."""
    factor = pipe.vae_scale_factor
    height = height or pipe.unet.config.sample_size * factor
    width = width or pipe.unet.config.sample_size * factor
    return (n, pipe.unet.config.in_channels, height // factor, width // factor)


def decode(pipe, latents: torch.Tensor) -> torch.Tensor:
    """Latents to images in [0, 1], as the pipeline's ``output_type="pt"`` path does."""
    image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(image, output_type="pt", do_denormalize=[True] * len(image))


def rollout(
    pipe,
    prompts,
    seeds,
    sampling,
    prompt_cache,
    *,
    reference: bool,
    reduction="mean",
    kl_estimator="mse",
    keep_graph: bool = False,
):
    """Sample one image per (prompt, seed) with DDIM eta > 0, recording each step.

    Args:
        pipe: a StableDiffusionPipeline whose scheduler is a DDIMScheduler.
        prompts, seeds: one prompt and one integer seed per sample.
        sampling: a SamplingConfig (num_steps, guidance_scale, eta, height, width).
        prompt_cache: a PromptCache for ``pipe``.
        reference: also compute the reference policy's (adapters disabled) guided prediction at every step.
        keep_graph: keep the policy's autograd graph of every step's log-probability and KL (``Rollout.graph``),
            so an on-policy update (ratio 1) can back-propagate through the sampling pass instead of recomputing
            it. The samples are the same as without it; the latents themselves carry no gradient (x_t is data).
    """
    with torch.no_grad() if keep_graph else torch.inference_mode():
        return _rollout(pipe, prompts, seeds, sampling, prompt_cache, reference, reduction, kl_estimator, keep_graph)


_REFERENCE_POOL: ThreadPoolExecutor | None = None


def reference_threads(sampling, device) -> int:
    """Torch threads for each of the policy's and the reference's concurrent calls, or 0 to run them in turn."""
    return 0 if sampling.parallel_reference == "off" else cpu_halves(device)


def _reference_call(unet, x_in, t, cond, uncond, guidance_scale, threads):
    torch.set_num_threads(threads)  # this thread's own OpenMP setting
    with torch.no_grad():  # grad mode is per thread
        return guided_eps(unet, x_in, t, cond, uncond, guidance_scale)


def _rollout(pipe, prompts, seeds, sampling, prompt_cache, reference, reduction, kl_estimator, keep_graph):
    global _REFERENCE_POOL
    threads = reference_threads(sampling, pipe.unet.device) if reference else 0
    if not threads:
        return _rollout_steps(pipe, prompts, seeds, sampling, prompt_cache, reference, reduction, kl_estimator,
                              keep_graph, None)  # fmt: skip
    if _REFERENCE_POOL is None:
        _REFERENCE_POOL = ThreadPoolExecutor(1, thread_name_prefix="bench-reference")
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        parallel = (_REFERENCE_POOL, reference_model(pipe.unet), threads)
        return _rollout_steps(pipe, prompts, seeds, sampling, prompt_cache, reference, reduction, kl_estimator,
                              keep_graph, parallel)  # fmt: skip
    finally:
        torch.set_num_threads(saved)


def _rollout_steps(pipe, prompts, seeds, sampling, prompt_cache, reference, reduction, kl_estimator, keep_graph,
                   parallel):  # fmt: skip
    device = pipe.unet.device
    dtype = pipe.unet.dtype
    scheduler = pipe.scheduler
    scheduler.set_timesteps(sampling.num_steps, device=device)
    generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
    cond, uncond, _ = prompt_cache.get(list(prompts))
    cond, uncond = cond.to(device, dtype), uncond.to(device, dtype)
    shape = latent_shape(pipe, len(prompts), sampling.height, sampling.width)
    x = randn_tensor(shape, generator=generators, device=device, dtype=dtype) * scheduler.init_noise_sigma
    step = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    latents, log_probs, ref_list, kls, stds = [x], [], [], [], []
    graph_lp, graph_kl = [], []
    grad = torch.enable_grad if keep_graph else contextlib.nullcontext
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)
        if parallel:
            pool, ref_unet, threads = parallel
            pending = pool.submit(_reference_call, ref_unet, x_in, t, cond, uncond, sampling.guidance_scale, threads)
        with grad(), phase("rollout.policy"):
            eps = guided_eps(pipe.unet, x_in, t, cond, uncond, sampling.guidance_scale)
            mean, std = ddim_mean_std(scheduler, eps, t, t - step, x, sampling.eta)
        if sampling.eta > 0:
            noise = randn_tensor(eps.shape, generator=generators, device=device, dtype=dtype)
            x_prev = mean.detach() + std * noise
        else:
            x_prev = mean.detach()
        stochastic = bool((std > 0).all())
        with grad():
            log_prob = gaussian_log_prob(x_prev, mean, std, reduction) if stochastic else x.new_zeros(len(x))
        log_probs.append(log_prob.detach())
        graph_lp.append(log_prob)
        stds.append(float(std.flatten()[0]) if stochastic else 0.0)
        if reference:
            with phase("rollout.reference"):  # with ``parallel``: the wait for the second thread
                if parallel:
                    ref = pending.result()
                else:
                    with reference_policy(pipe.unet):
                        ref = guided_eps(pipe.unet, x_in, t, cond, uncond, sampling.guidance_scale)
            ref_mean, _ = ddim_mean_std(scheduler, ref, t, t - step, x, sampling.eta)
            ref_list.append(ref)
            with grad():
                kl = kl_estimate(eps, ref, mean, ref_mean, std, kl_estimator) if stochastic else x.new_zeros(len(x))
            kls.append(kl.detach())
            graph_kl.append(kl)
        latents.append(x_prev)
        x = x_prev
    timesteps = scheduler.timesteps.to("cpu").long()
    graph = None
    if keep_graph:
        with torch.enable_grad():  # a cast under no_grad would cut the history
            graph = {"log_prob": [v.float() for v in graph_lp]}
            if reference:
                graph["kl"] = [v.float() for v in graph_kl]
    with phase("rollout.decode"):
        images = decode(pipe, x).float()
    return Rollout(
        prompts=list(prompts),
        seeds=[int(s) for s in seeds],
        images=images,
        latents=torch.stack(latents, 1),
        timesteps=timesteps,
        prev_timesteps=timesteps - step,
        log_probs=torch.stack(log_probs, 1).float(),
        stds=torch.tensor(stds),
        ref_eps=torch.stack(ref_list, 1) if reference else None,
        kl=torch.stack(kls, 1).float() if reference else None,
        graph=graph,
    )
