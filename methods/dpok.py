"""DPOK: online policy gradient over the denoising chain with a per-step KL penalty to the pretrained model.

Fan et al., "DPOK: Reinforcement Learning for Fine-tuning Text-to-Image Diffusion Models", NeurIPS 2023,
arXiv 2305.16381. Defaults follow the official code (google-research/google-research, folder ``dpok``,
``train_online_pg.py``), with which the paper's hyperparameters were tuned.

Objective (Eq. 8), over prompts z and trajectories x_{0:T} of the fine-tuned policy p_theta:
    min  -alpha E[r(x_0, z)] + beta sum_t E[ KL(p_theta(x_{t-1} | x_t, z) || p_pre(x_{t-1} | x_t, z)) ]
Gradient (Eq. 9): alpha E[-r sum_t grad log p_theta(x_{t-1} | x_t, z)] + beta sum_t E[grad KL_t].

One round (Algorithm 1 with App. A.5 and A.6, in the official code's order):
    1. roll out m = ``samples_per_round`` trajectories with the current policy (DDIM, eta > 0, guidance) and
       score x_0 with the reward; every step's log-probability and the reference's prediction are kept;
    2. push each transition (x_t, x_{t-1}, t, log p_old, r, z) into a FIFO buffer of ``buffer_size``;
    3. fit the value baseline V(x_t, t, z) to r by MSE on ``value_steps`` batches of ``value_batch_size``, their
       mean loss in one AdamW step (A.5; official code);
    4. ``updates_per_round`` optimiser steps, each over ``batch_size`` x ``grad_accum`` buffer transitions, on
           loss = mean( -alpha * (r - V) / s * clamp(p_theta / p_old, 1 - eps, 1 + eps) + beta * KL_t )   (A.6)
       with the gradient norm clipped at ``grad_clip``; s = 1 (the paper's) unless ``advantage_scale`` (departure 11).

Departures from the paper:
    1. KL_t defaults to the official code's mean squared difference of the guided noise predictions, which drops
       the closed form's factor c_t^2 / (2 sigma_t^2); ``kl_estimator=closed_form`` gives
       ||mu_theta - mu_pre||^2 / (2 sigma_t^2) summed over latent dims, the exact Gaussian KL.
    2. log p is averaged over latent dims (official code, and DDPO's); ``logprob_reduction=sum`` is the true
       log-density. The ratio clip eps therefore acts on a per-dimension scale by default.
    3. The loss averages over sampled transitions instead of summing over a trajectory's T steps: the gradient
       is Eq. 9's divided by T (the official code does the same; alpha, beta and lr were tuned with it).
    4. A minibatch is batch_size x grad_accum = 4 x 12 = 48 transitions (official code); the paper says 32.
    5. The ratio is clamped (official code), so its gradient is zero outside [1 - eps, 1 + eps];
       ``clip_mode=ppo`` uses PPO's min(ratio A, clamp(ratio) A) instead.
Departures from the official code:
    6. The reference policy is the same UNet with its LoRA adapters disabled, not a second frozen UNet copy; its
       prediction is computed once per transition at rollout time and stored.
    7. V takes the text encoder's pooled output and a sinusoidal timestep embedding (bench/value.py); the official
       ``ValueMulti`` takes ImageReward's CLIP text embedding and per-timestep gains over 50 steps.
    8. Transitions are drawn without replacement within one optimiser step; a step whose sigma_t is 0 (the last
       step when the scheduler sets alpha to one) is not an action and is not stored.
    9. ``samples_per_round`` is per process, like the official ``g_batch_size`` per GPU.
    10. Rewards are used as the scorer returns them; ImageReward's fixed standardisation
        (r - 0.16717) / 1.03334 is applied by the ``imagereward`` scorer itself, as the official ``utils.py`` does.
    11. ``baseline=mean`` (a per-prompt running mean of rewards) and ``baseline=none`` are options for ablations;
        ``advantage_scale=prompt_std`` divides each advantage by its prompt's running reward std (DDPO's per-prompt
        normalisation, Black et al. 2023, arXiv 2305.13301), so that prompts trained together weigh the same; the
        std is floored at a tenth of the median over prompts (DDPO adds 1e-6 to it and subtracts the mean, which is
        0/0-safe; with a learned V a constant-reward prompt would divide V's error by ~0). As in DDPO, a prompt with
        fewer than ``stat_min_count`` (16) rewards so far takes the round's pooled mean and std instead of its own.
    12. ``min_std`` (default 0: every stochastic step, as the official code) leaves the steps whose sampling std
        sigma_t is at most it out of the buffer and the loss; they are still sampled. With the mean log-prob, a step's
        gradient scales with c_t / sigma_t (c_t = d mu / d eps), so a near-deterministic step can carry most of the
        gradient's norm: on the shapes model (DDIM 20 steps, one prompt, gold-oracle reward) the step t = 51 -> 1
        (sigma 0.041) had 5-20x the policy-gradient norm of every other step, and two halves of 64 trajectories each
        agreed on its direction with cosine 0.09 (-0.3 to +0.4 on the other steps, most positive on the early ones).
    13. ``on_policy_graph=auto`` (default): when the buffer keeps no more than one round's transitions, the rollout
        keeps the policy's autograd graph, and the round's first optimiser step, whose transitions are then all
        fresh (ratio exactly 1), back-propagates through the sampling pass instead of recomputing the forward. The
        step's micro-batches are groups of whole denoising steps (one group, or two that the trainer back-propagates
        in two CPU threads), weighted by size: the same mean. Transitions, loss and gradient equal the
        recomputing path's up to float rounding (tests/integration/test_on_policy_graph.py); memory grows with
        samples x steps. The official code always recomputes; ``on_policy_graph=off`` does too.
    14. ``value_update=steps`` takes one AdamW step of V per value batch (5 per round, each on 256 transitions)
        instead of the official one step on their mean loss, and ``value_weight_decay=0`` drops AdamW's default
        0.01; the shapes world's settings (bench/shapes/settings/dpok.yaml) choose both, as every shapes result
        committed before 2026-12-07 ran them. The defaults are the official code's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.buffer import TransitionBuffer
from bench.config import param
from bench.method import Method, OptimConfig
from bench.sampling import KL_ESTIMATORS, REDUCTIONS
from bench.timing import phase
from bench.value import ValueNetwork


@dataclass(frozen=True)
class DPOKConfig(OptimConfig):
    """DPOK hyperparameters; defaults are the official code's single-prompt settings."""

    alpha: float = param(10.0, "reward weight alpha (Eq. 8; official --reward_weight 10)", ge=0.0)
    beta: float = param(0.01, "KL weight beta (Eq. 8; official --kl_weight 0.01)", ge=0.0)
    samples_per_round: int = param(10, "m: trajectories sampled per round per process (--g_batch_size 10)", ge=1)
    buffer_size: int = param(1000, "FIFO buffer of transitions (official code: 1000)", ge=1)
    ratio_clip: float = param(1e-4, "eps: importance ratio clipped to [1 - eps, 1 + eps] (App. A.6; 1e-4)", gt=0.0)
    clip_mode: str = param("clamp", "clamp the ratio (official) or ppo min(rA, clip(r)A)", choices=("clamp", "ppo"))
    baseline: str = param(
        "value", "advantage baseline: learned V (A.5), per-prompt mean, or none", choices=("value", "mean", "none")
    )
    advantage_scale: str = param(
        "none", "divide advantages by 1 or by the prompt's running reward std", choices=("none", "prompt_std")
    )
    value_steps: int = param(5, "MSE batches of V before each round's policy steps (--v_step 5)", ge=0)
    value_batch_size: int = param(256, "transitions per value batch (official: 256)", ge=1)
    value_lr: float = param(1e-4, "AdamW learning rate of V (official: 1e-4)", gt=0.0)
    value_update: str = param(
        "accumulate",
        "accumulate: one optimiser step of V on the value_steps batches' mean loss (official); steps: one per batch",
        choices=("accumulate", "steps"),
        before="steps",
    )
    value_weight_decay: float = param(0.01, "AdamW weight decay of V (official: AdamW's default)", ge=0.0, before=0.0)
    stat_min_count: int = param(
        16,
        "advantage_scale and baseline=mean: a prompt's own running statistics once it has this many rewards, the "
        "round's pooled ones before that (DDPO's min_count 16)",
        ge=1,
        before=1,
    )
    min_std: float = param(
        0.0, "steps whose sampling std sigma_t is at most this are not trained (0: every stochastic step)", ge=0.0
    )
    logprob_reduction: str = param("mean", "log-prob over latent dims: mean (official) or sum", choices=REDUCTIONS)
    kl_estimator: str = param(
        "mse", "per-step KL: mse of noise predictions (official) or closed_form", choices=KL_ESTIMATORS
    )
    on_policy_graph: str = param(
        "auto",
        "auto: when the buffer holds one round, keep the rollout's graph and train the round's first step from it "
        "(no recomputed forward; memory grows with samples x steps); off: always recompute",
        choices=("auto", "off"),
    )


def _sample_std(count: int, m2: float) -> float:
    """Sample std from Welford's count and sum of squared deviations (0 for fewer than two values)."""
    return (m2 / (count - 1)) ** 0.5 if count > 1 else 0.0


def dpok_loss(log_prob, old_log_prob, advantage, kl, *, alpha, beta, ratio_clip, clip_mode="clamp"):
    """DPOK's per-transition loss averaged over a batch (pure: tensors in, scalar and metrics out).

    Args:
        log_prob: log p_theta(x_{t-1} | x_t, z) under the current policy, with gradient.
        old_log_prob: the same under the policy that sampled the transition (no gradient).
        advantage: r - baseline, no gradient.
        kl: per-transition KL estimate to the reference policy, with gradient.
    """
    ratio = torch.exp(log_prob - old_log_prob)
    clipped = ratio.clamp(1.0 - ratio_clip, 1.0 + ratio_clip)
    if clip_mode == "clamp":
        policy_term = -advantage * clipped
    else:
        policy_term = torch.maximum(-advantage * ratio, -advantage * clipped)
    loss = (alpha * policy_term + beta * kl).mean()
    metrics = {
        "pg": policy_term.mean().item(),
        "kl": kl.mean().item(),
        "ratio": ratio.mean().item(),
        "clipfrac": ((ratio - 1.0).abs() > ratio_clip).float().mean().item(),
    }
    return loss, metrics


class DPOK(Method):
    name = "dpok"
    Config = DPOKConfig
    needs_log_prob = True
    summary = "online policy gradient + per-step KL to the pretrained model (Fan et al. 2023)"
    checkpointed = ("buffer", "prompt_stats", "value", "value_opt")  # restored exactly on --resume

    def __init__(self, hparams: DPOKConfig):
        super().__init__(hparams)
        self.buffer = TransitionBuffer(hparams.buffer_size)
        self.value: ValueNetwork | None = None
        self.value_opt: torch.optim.Optimizer | None = None
        self.prompt_stats: dict[int, tuple[int, float, float]] = {}  # prompt id -> (count, mean, sum of sq. dev.)
        self.fresh = None  # this round's graph-carrying log-probs and KLs (a FreshGraph)

    def setup(self, ctx) -> None:
        if self.hp.baseline == "value":
            self.value = ValueNetwork(ctx.policy.latent_numel, ctx.policy.text_dim).to(ctx.device)
            self.value_opt = torch.optim.AdamW(
                self.value.parameters(), lr=self.hp.value_lr, weight_decay=self.hp.value_weight_decay
            )
            self.value, self.value_opt = ctx.accelerator.prepare(self.value, self.value_opt)

    def _keeps_graph(self, ctx) -> bool:
        """Departure 13: the round's first step can reuse the rollout's graph only if every transition it draws is
        fresh (ratio exactly 1), which holds when the buffer keeps no more than one round's transitions."""
        per_round = self.hp.samples_per_round * ctx.config.sampling.num_steps
        return (
            self.hp.on_policy_graph == "auto" and self.hp.alpha + self.hp.beta > 0 and self.hp.buffer_size <= per_round
        )

    def collect(self, ctx) -> dict[str, float]:
        hp = self.hp
        prompt_ids, seeds = ctx.round_prompts(hp.samples_per_round)
        keep_graph = self._keeps_graph(ctx)
        rollout = ctx.policy.rollout(
            prompt_ids, seeds, reduction=hp.logprob_reduction, kl_estimator=hp.kl_estimator, keep_graph=keep_graph
        )
        rewards = ctx.reward(rollout.images, rollout.prompts).float().cpu()
        transitions = rollout.transitions(min_std=hp.min_std)
        self.fresh = rollout.fresh_graph(hp.min_std)
        sample = transitions.pop("sample")
        transitions["reward"] = rewards[sample]
        transitions["prompt_id"] = torch.as_tensor(prompt_ids)[sample]
        # running per-prompt statistics over the whole round (all processes), so 2 x 8 samples scale as 1 x 16 do;
        # a prompt with fewer than stat_min_count rewards so far takes the round's pooled ones (DDPO's tracker)
        first, n = ctx.process * len(prompt_ids), len(prompt_ids)
        mean, std = self._round_stats(*ctx.gather_round(prompt_ids, rewards))
        mean, std = mean[first : first + n], std[first : first + n]
        transitions["baseline"] = (mean if hp.baseline == "mean" else torch.zeros_like(mean))[sample]
        scale = std.clamp(min=self._std_floor()) if hp.advantage_scale == "prompt_std" else torch.ones_like(std)
        transitions["scale"] = scale[sample]
        self.buffer.add(transitions)
        metrics = {
            "reward": rewards.mean().item(),
            "reward_std": rewards.std().item() if len(rewards) > 1 else 0.0,
        }
        metrics["kl_rollout"] = rollout.kl[:, rollout.stochastic].sum(1).mean().item()
        return metrics

    def auxiliary(self, ctx) -> dict[str, float]:
        """Step 3 of the round: fit the value baseline before the policy steps (App. A.5)."""
        if self.value is None or self.hp.alpha <= 0:
            return {}
        with phase("value"):
            return {"value_loss": self._fit_value(ctx)}

    def _round_stats(self, prompt_ids, rewards) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sample's baseline mean and scale std: its prompt's running ones (:meth:`_prompt_stats`), or the round's
        pooled ones while the prompt has fewer than ``stat_min_count`` rewards (DDPO's per-prompt tracker)."""
        mean, std, count = self._prompt_stats(prompt_ids, rewards)
        few = count < self.hp.stat_min_count
        if few.any():
            pooled_std = rewards.std().item() if len(rewards) > 1 else 0.0
            mean = torch.where(few, rewards.mean().item(), mean)
            std = torch.where(few, pooled_std, std)
        return mean, std

    def _prompt_stats(self, prompt_ids, rewards) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each sample's prompt's running reward mean, std and count over every round so far, this one included
        (Welford)."""
        for pid, r in zip(prompt_ids, rewards.tolist(), strict=True):
            count, mean, m2 = self.prompt_stats.get(pid, (0, 0.0, 0.0))
            delta = r - mean
            mean += delta / (count + 1)
            self.prompt_stats[pid] = (count + 1, mean, m2 + delta * (r - mean))
        stats = [self.prompt_stats[pid] for pid in prompt_ids]
        mean = torch.tensor([m for _, m, _ in stats])
        std = torch.tensor([_sample_std(n, m2) for n, _, m2 in stats])
        return mean, std, torch.tensor([n for n, _, _ in stats])

    def _std_floor(self) -> float:
        """A tenth of the median per-prompt reward std: a prompt whose rewards (nearly) never vary would otherwise
        divide its baseline's error by ~0 and outweigh every other prompt."""
        stds = sorted(_sample_std(n, m2) for n, _, m2 in self.prompt_stats.values() if n > 1)
        return max(0.1 * stds[len(stds) // 2], 1e-6) if stds else 1e-6

    def _fit_value(self, ctx) -> float:
        """App. A.5: regress V(x_t, t, z) on the final reward before the policy steps, on ``value_steps`` random
        batches: their mean loss in one optimiser step (``value_update=accumulate``, the official code's) or one
        step per batch (``steps``, departure 14)."""
        losses = []
        accumulate = self.hp.value_update == "accumulate"
        self.value_opt.zero_grad()
        for _ in range(self.hp.value_steps):
            n = min(self.hp.value_batch_size, len(self.buffer))
            idx = ctx.permutation(len(self.buffer))[:n]
            batch = self.buffer.gather(idx, ctx.device)
            pred = self.value(batch["x_t"], batch["timestep"], ctx.policy.text_features(batch["prompt_id"]))
            loss = torch.nn.functional.mse_loss(pred, batch["reward"].to(pred.dtype))
            ctx.accelerator.backward(loss / self.hp.value_steps if accumulate else loss)
            if not accumulate:
                self.value_opt.step()
                self.value_opt.zero_grad()
            losses.append(loss.item())
        if accumulate and losses:
            self.value_opt.step()
            self.value_opt.zero_grad()
        return sum(losses) / max(len(losses), 1)

    def updates(self, ctx):
        fresh, self.fresh = self.fresh, None  # the rollout's graph serves the first step at most, then is freed
        yield from ctx.buffer_steps(self.buffer, fresh, self.hp)

    def loss(self, batch, ctx):
        hp = self.hp
        if "log_prob_graph" in batch:  # on-policy: the rollout's own forward, so p_theta = p_old exactly
            log_prob = batch["log_prob_graph"]
            kl = batch["kl_graph"]
        else:
            log_prob, kl = ctx.policy.log_prob_and_kl(
                batch, reduction=hp.logprob_reduction, kl_estimator=hp.kl_estimator
            )
        if self.value is not None:
            with torch.no_grad():
                baseline = self.value(batch["x_t"], batch["timestep"], ctx.policy.text_features(batch["prompt_id"]))
        else:
            baseline = batch["baseline"]
        advantage = ((batch["reward"] - baseline) / batch["scale"]).to(log_prob.dtype)
        return dpok_loss(
            log_prob,
            batch["old_log_prob"],
            advantage,
            kl,
            alpha=hp.alpha,
            beta=hp.beta,
            ratio_clip=hp.ratio_clip,
            clip_mode=hp.clip_mode,
        )

    def load_state_dict(self, state):
        if "prompt_stats" in state:
            super().load_state_dict(state)
            return
        # a checkpoint from before advantage_scale: running means only, its transitions unscaled
        stats = {pid: (n, mean, 0.0) for pid, (mean, n) in state["prompt_mean"].items()}
        super().load_state_dict({**state, "prompt_stats": stats})
        if self.buffer.data:
            self.buffer.data["scale"] = torch.ones(len(self.buffer))


RewardOnly = DPOK.preset("reward-only", "DPOK ablation without the KL term (beta = 0)", beta=0.0)
# LoRA starts with B = 0, so the policy starts at the reference, where the KL term and its gradient are exactly 0:
# without a reward the preset never moves (every kl-only run in results/paper/ is the pretrained model bit for bit).
KLOnly = DPOK.preset("kl-only", "DPOK ablation without the reward term (alpha = 0)", alpha=0.0)
