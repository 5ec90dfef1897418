"""DDPO-IS: policy gradient over the denoising chain with a PPO-clipped importance ratio and no KL.

Black et al., "Training Diffusion Models with Reinforcement Learning", ICLR 2024, arXiv 2305.13301 (Sec. 4.3,
the importance-sampling estimator DDPO_IS). Defaults follow the authors' code (kvablack/ddpo-pytorch,
``config/base.py`` and ``scripts/train.py``) and TRL's ``DDPOConfig``, which ports it.

One round:
    1. roll out m = ``samples_per_round`` trajectories with the current policy (DDIM, eta > 0, guidance); score
       x_0; keep every step's log-probability. No reference policy is run: DDPO has no KL term.
    2. advantages A = (r - mean) / (std + 1e-6), per prompt over its last ``stat_buffer`` rewards once it has
       ``stat_min_count`` of them, over the round's batch before that (ddpo-pytorch's PerPromptStatTracker),
       then clipped to [-``adv_clip_max``, ``adv_clip_max``];
    3. ``updates_per_round`` optimiser steps over the round's transitions, each on
           loss = mean( max(-A * ratio, -A * clamp(ratio, 1 - eps, 1 + eps)) ),  ratio = p_theta / p_old
       with the gradient norm clipped at ``grad_clip``.

Departures from the authors' code:
    1. A step draws ``batch_size`` x ``grad_accum`` transitions at random from the round (without replacement);
       ddpo-pytorch takes ``train.batch_size`` samples and accumulates over every one of their timesteps (in a
       per-sample shuffled order). The number of UNet passes per sample is the same.
    2. The first step of a round, when every transition it draws is fresh (ratio exactly 1), back-propagates
       through the rollout's own forward instead of recomputing it (``on_policy_graph``); ddpo-pytorch and TRL
       sample without a graph and recompute every forward. The loss and its gradient are the same.
    3. The log-probability is averaged over latent dims (as ddpo-pytorch does) unless ``logprob_reduction=sum``.
    4. The same DDIM sampler, LoRA adapters and trainer as every method here (bench/sampling.py, bench/trainer.py).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch

from bench.buffer import TransitionBuffer
from bench.config import param
from bench.method import Method, OptimConfig
from bench.sampling import REDUCTIONS


@dataclass(frozen=True)
class DDPOConfig(OptimConfig):
    """DDPO-IS hyperparameters; defaults are ddpo-pytorch's (config/base.py) and TRL's DDPOConfig."""

    lr: float = param(3e-4, "AdamW learning rate of the LoRA weights (ddpo-pytorch train.learning_rate 3e-4)", gt=0.0)
    grad_clip: float = param(1.0, "clip the global gradient norm (ddpo-pytorch train.max_grad_norm 1.0)", gt=0.0)
    samples_per_round: int = param(16, "trajectories sampled per round per process", ge=1)
    updates_per_round: int = param(1, "optimiser steps per round (ddpo-pytorch: one per batch x inner epoch)", ge=1)
    ratio_clip: float = param(1e-4, "eps of PPO's clipped ratio (ddpo-pytorch train.clip_range 1e-4)", gt=0.0)
    adv_clip_max: float = param(5.0, "advantages clipped to [-this, this] (train.adv_clip_max 5)", gt=0.0)
    stat_buffer: int = param(16, "rewards kept per prompt for its mean and std (per_prompt_stat_tracking)", ge=1)
    stat_min_count: int = param(16, "per-prompt statistics once a prompt has this many rewards; batch before", ge=1)
    logprob_reduction: str = param("mean", "log-prob over latent dims: mean (ddpo-pytorch) or sum", choices=REDUCTIONS)
    on_policy_graph: str = param(
        "auto",
        "auto: keep the rollout's graph and train the round's first step from it (no recomputed forward); off",
        choices=("auto", "off"),
    )


def ddpo_loss(log_prob, old_log_prob, advantage, *, ratio_clip):
    """PPO's clipped surrogate per transition, averaged (pure: tensors in, scalar and metrics out)."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantage * ratio
    clipped = -advantage * ratio.clamp(1.0 - ratio_clip, 1.0 + ratio_clip)
    loss = torch.maximum(unclipped, clipped).mean()
    metrics = {
        "ratio": ratio.mean().item(),
        "clipfrac": ((ratio - 1.0).abs() > ratio_clip).float().mean().item(),
        "approx_kl": (0.5 * (log_prob - old_log_prob) ** 2).mean().item(),
    }
    return loss, metrics


class PerPromptStats:
    """Each prompt's last ``size`` rewards; advantages against them, or against the batch for new prompts."""

    def __init__(self, size: int, min_count: int):
        self.size, self.min_count = size, min_count
        self.rewards: dict[int, deque] = {}

    def advantages(self, prompt_ids: list[int], rewards: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(rewards)
        ids = torch.as_tensor(prompt_ids)
        for pid in dict.fromkeys(prompt_ids):
            mask = ids == pid
            history = self.rewards.setdefault(pid, deque(maxlen=self.size))
            history.extend(rewards[mask].tolist())
            ref = torch.tensor(list(history)) if len(history) >= self.min_count else rewards
            std = ref.std() if len(ref) > 1 else torch.tensor(0.0)
            out[mask] = (rewards[mask] - ref.mean()) / (std + 1e-6)
        return out

    def state_dict(self) -> dict:
        return {pid: list(v) for pid, v in self.rewards.items()}

    def load_state_dict(self, state: dict) -> None:
        self.rewards = {pid: deque(v, maxlen=self.size) for pid, v in state.items()}


class DDPO(Method):
    name = "ddpo"
    Config = DDPOConfig
    needs_log_prob = True
    summary = "DDPO-IS: PPO-clipped policy gradient, per-prompt advantages, no KL (Black et al. 2023)"
    checkpointed = ("stats",)  # each prompt's recent rewards

    def __init__(self, hparams: DDPOConfig):
        super().__init__(hparams)
        self.stats = PerPromptStats(hparams.stat_buffer, hparams.stat_min_count)
        self.buffer: TransitionBuffer | None = None
        self.fresh = None  # this round's graph-carrying log-probs (a FreshGraph)

    def setup(self, ctx) -> None:
        # on-policy: the buffer holds exactly one round's transitions
        self.buffer = TransitionBuffer(self.hp.samples_per_round * ctx.config.sampling.num_steps)

    def collect(self, ctx) -> dict[str, float]:
        hp = self.hp
        prompt_ids, seeds = ctx.round_prompts(hp.samples_per_round)
        rollout = ctx.policy.rollout(prompt_ids, seeds, reference=False, reduction=hp.logprob_reduction,
                                     keep_graph=hp.on_policy_graph == "auto")  # fmt: skip
        rewards = ctx.reward(rollout.images, rollout.prompts).float().cpu()
        advantages = self.stats.advantages(prompt_ids, rewards).clamp(-hp.adv_clip_max, hp.adv_clip_max)
        transitions = rollout.transitions()
        self.fresh = rollout.fresh_graph()
        sample = transitions.pop("sample")
        transitions["advantage"] = advantages[sample]
        transitions["prompt_id"] = torch.as_tensor(prompt_ids)[sample]
        self.buffer.data = {}  # on-policy: last round's transitions are not reused
        self.buffer.add(transitions)
        return {"reward": rewards.mean().item(), "reward_std": rewards.std().item() if len(rewards) > 1 else 0.0}

    def updates(self, ctx):
        fresh, self.fresh = self.fresh, None
        yield from ctx.buffer_steps(self.buffer, fresh, self.hp)

    def loss(self, batch, ctx):
        hp = self.hp
        if "log_prob_graph" in batch:
            log_prob = batch["log_prob_graph"]
        else:
            log_prob, _ = ctx.policy.log_prob_and_kl(batch, reduction=hp.logprob_reduction)
        advantage = batch["advantage"].to(log_prob.dtype)
        return ddpo_loss(log_prob, batch["old_log_prob"], advantage, ratio_clip=hp.ratio_clip)
