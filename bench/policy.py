"""The policy a method trains: the pipeline's UNet with LoRA adapters, and the pretrained model beside it.

Methods reach the model only through this object (``ctx.policy``): sample a rollout with the current policy,
score stored transitions (log-probability and KL to the pretrained model, with gradient), predict noise for a
denoising loss, and switch to the reference (adapters off). A new method therefore needs nothing new from the
trainer. The sampler's maths is bench/sampling.py.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from bench.models import reference_policy
from bench.sampling import PromptCache, ddim_mean_std, gaussian_log_prob, guided_eps, kl_estimate, latent_shape, rollout


class Policy:
    """The current policy p_theta (LoRA on) and the pretrained p_pre (LoRA off) of one pipeline."""

    def __init__(self, pipe, sampling, prompts: list[str], accelerator):
        self.pipe, self.sampling, self.prompts, self.accelerator = pipe, sampling, prompts, accelerator
        self.device = accelerator.device
        self.prompt_cache = PromptCache(pipe)
        self.num_train_timesteps = pipe.scheduler.config.num_train_timesteps
        self.latent_numel = int(np.prod(latent_shape(pipe, 1, sampling.height, sampling.width)))
        self.text_dim = pipe.text_encoder.config.hidden_size  # CLIPTextModel's pooled output width

    @contextlib.contextmanager
    def reference(self):
        """Run the pretrained model p_pre inside this block: the same UNet with its adapters off."""
        with reference_policy(self.pipe.unet):
            yield

    def rollout(self, prompt_ids, seeds, *, reference=True, reduction="mean", kl_estimator="mse", keep_graph=False):
        """Sample with the current policy through the shared sampler (adapters on); ``keep_graph`` keeps the
        policy's autograd graph of each step's log-prob and KL for an on-policy update (``Rollout.graph``)."""
        prompts = [self.prompts[i] for i in prompt_ids]
        with self.accelerator.autocast():
            return rollout(
                self.pipe,
                prompts,
                seeds,
                self.sampling,
                self.prompt_cache,
                reference=reference,
                reduction=reduction,
                kl_estimator=kl_estimator,
                keep_graph=keep_graph,
            )

    def _embeddings(self, prompt_ids: torch.Tensor):
        prompts = [self.prompts[i] for i in prompt_ids.tolist()]
        dtype = self.pipe.unet.dtype
        cond, uncond, pooled = self.prompt_cache.get(prompts)
        return cond.to(self.device, dtype), uncond.to(self.device, dtype), pooled.to(self.device)

    def text_features(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        """Pooled text embedding per prompt id (input of value networks)."""
        return self._embeddings(prompt_ids)[2]

    def log_prob_and_kl(self, batch, *, reduction="mean", kl_estimator="mse"):
        """log p_theta(x_{t-1} | x_t, z) and KL_t of stored transitions under the current policy, with gradient
        (KL_t is None for transitions stored without the reference's prediction)."""
        cond, uncond, _ = self._embeddings(batch["prompt_id"])
        s = self.sampling
        x_t = batch["x_t"]
        eps = guided_eps(self.pipe.unet, x_t, batch["timestep"], cond, uncond, s.guidance_scale)
        mean, std = ddim_mean_std(self.pipe.scheduler, eps, batch["timestep"], batch["prev_timestep"], x_t, s.eta)
        log_prob = gaussian_log_prob(batch["x_prev"], mean, std, reduction)
        if "ref_eps" not in batch:  # sampled without the reference (a method with no KL term)
            return log_prob, None
        ref_eps = batch["ref_eps"]
        ref_mean, _ = ddim_mean_std(self.pipe.scheduler, ref_eps, batch["timestep"], batch["prev_timestep"], x_t, s.eta)
        return log_prob, kl_estimate(eps, ref_eps, mean, ref_mean, std, kl_estimator)

    def denoise(self, batch, *, reference: bool = False):
        """Noise prediction at sqrt(a_t) x_0 + sqrt(1 - a_t) noise, and the reference's (no grad) if asked."""
        cond, _, _ = self._embeddings(batch["prompt_id"])
        timestep = batch["timestep"].to(self.device)
        noisy = self.pipe.scheduler.add_noise(batch["x0"], batch["noise"], timestep)
        eps = self.pipe.unet(noisy, timestep, encoder_hidden_states=cond, return_dict=False)[0]
        eps_ref = None
        if reference:
            with torch.no_grad(), reference_policy(self.pipe.unet):
                eps_ref = self.pipe.unet(noisy, timestep, encoder_hidden_states=cond, return_dict=False)[0]
        return eps, eps_ref
