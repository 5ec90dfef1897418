"""Supervised reward-weighted fine-tuning (Lee et al. 2023), the DPOK paper's baseline.

Lee et al., "Aligning Text-to-Image Models using Human Feedback", arXiv 2302.12192: draw images from the
pretrained model once, score them, and minimise the reward-weighted negative log-likelihood, which for a diffusion
model is the reward-weighted denoising loss
    L = E_{(x_0, z) ~ D, t, eps} [ w(r) * || eps_theta(sqrt(a_t) x_0 + sqrt(1 - a_t) eps, t, z) - eps ||^2 ].
DPOK (arXiv 2305.16381, Sec. 4.3, Lemma 4.3 and App. E.1) replaces Lee et al.'s pretraining-data term with two KL
substitutes, both options here:
    KL-D (``gamma``): shift the reward, w = max(r + gamma, 0) (the clip keeps the weights non-negative);
    KL-O (``beta``): add beta * || eps_theta - eps_pre ||^2 at the same noisy input, eps_pre from the pretrained
    model (the same UNet with adapters disabled).

Departures:
    1. Training data are the sampler's final latents x_0, not VAE encodings of decoded images; this skips a VAE
       round trip that only adds reconstruction error.
    2. Lee et al. add beta * NLL on a 625K LAION subset; that term is replaced by KL-D/KL-O as in DPOK's SFT arm.
    3. Conditional denoising only (no caption dropout); sampling still uses classifier-free guidance.
    4. Defaults are sized for a CPU run of the shapes world; the DPOK paper's SFT arm drew 20K images once and
       trained 8K steps at batch 128, lr 2e-5 (docs/PAPER.md: read from a summary of the paper, not its
       text): set them with --num-samples etc.
    5. The weights are clipped at 0 for plain SFT too (gamma = 0: w = max(r, 0)), so images with a negative reward
       (about half under ImageReward's standardisation) carry no weight; Lee et al.'s rewards are in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.config import param
from bench.method import Method, OptimConfig


@dataclass(frozen=True)
class SFTConfig(OptimConfig):
    """Reward-weighted fine-tuning; the base optimiser defaults are overridden to the DPOK SFT arm's lr."""

    lr: float = param(2e-5, "AdamW learning rate (DPOK's SFT arm: 2e-5)", gt=0.0)
    grad_accum: int = param(1, "micro-batches accumulated per optimiser step", ge=1)
    batch_size: int = param(16, "images per micro-batch", ge=1)
    num_samples: int = param(256, "images drawn once from the pretrained model (DPOK's SFT arm: 20K)", ge=1)
    sample_batch_size: int = param(16, "images per sampling call while building the dataset", ge=1)
    gamma: float = param(0.0, "KL-D reward shift: weights max(r + gamma, 0) (DPOK tries 0.1, 1, 2, 5)")
    beta: float = param(0.0, "KL-O weight on ||eps_theta - eps_pre||^2 (0: off)", ge=0.0)


def sft_loss(eps_pred, noise, reward, *, gamma, beta, eps_ref=None):
    """Reward-weighted denoising loss with the optional KL-O term (pure: tensors in, scalar and metrics out)."""
    weights = (reward + gamma).clamp(min=0.0).to(eps_pred.dtype)
    per_sample = ((eps_pred - noise) ** 2).flatten(1).mean(1)
    loss = (weights * per_sample).mean()
    metrics = {"denoise": per_sample.mean().item(), "weight": weights.mean().item()}
    if beta > 0:
        kl = ((eps_pred - eps_ref) ** 2).flatten(1).mean(1)
        loss = loss + beta * kl.mean()
        metrics["kl"] = kl.mean().item()
    return loss, metrics


class SFT(Method):
    name = "sft"
    Config = SFTConfig
    needs_log_prob = False
    summary = "supervised reward-weighted fine-tuning on pretrained samples (Lee et al. 2023)"
    checkpointed = ("data",)  # the dataset drawn in round 1

    def __init__(self, hparams: SFTConfig):
        super().__init__(hparams)
        self.data: dict[str, torch.Tensor] = {}

    def collect(self, ctx) -> dict[str, float]:
        if self.data:  # offline: the dataset is drawn once, from the pretrained model, before training
            return self._data_metrics()
        latents, rewards, prompt_ids = [], [], []
        ids, seeds = ctx.round_prompts(self.hp.num_samples)
        for start in range(0, len(ids), self.hp.sample_batch_size):
            part = slice(start, start + self.hp.sample_batch_size)
            rollout = ctx.policy.rollout(ids[part], seeds[part], reference=False)
            latents.append(rollout.latents[:, -1].clone())
            rewards.append(ctx.reward(rollout.images, rollout.prompts).float().cpu())
            prompt_ids.extend(ids[part])
        self.data = {
            "x0": torch.cat(latents).cpu(),
            "reward": torch.cat(rewards),
            "prompt_id": torch.as_tensor(prompt_ids),
        }
        return self._data_metrics()

    def _data_metrics(self) -> dict[str, float]:
        """Reward of the fixed training set (not of fresh samples: SFT draws none after round 1)."""
        reward = self.data["reward"]
        return {"data_reward": reward.mean().item(), "data_reward_std": reward.std().item() if len(reward) > 1 else 0.0}

    def updates(self, ctx):
        n_train, shape = ctx.policy.num_train_timesteps, self.data["x0"].shape[1:]

        def draws(n, generator):  # noise and timesteps for the whole step: accumulation never changes them
            return {"noise": torch.randn((n, *shape), generator=generator),
                    "timestep": torch.randint(n_train, (n,), generator=generator)}  # fmt: skip

        yield from ctx.dataset_steps(self.data, self.hp, draws)

    def loss(self, batch, ctx):
        eps_pred, eps_ref = ctx.policy.denoise(batch, reference=self.hp.beta > 0)
        return sft_loss(
            eps_pred, batch["noise"], batch["reward"], gamma=self.hp.gamma, beta=self.hp.beta, eps_ref=eps_ref
        )
