"""DDPO-IS's loss and per-prompt advantages on hand-made tensors."""

import math

import pytest
import torch

from bench.methods.ddpo import PerPromptStats, ddpo_loss


def test_ppo_clip_takes_the_pessimistic_side():
    old = torch.zeros(4)
    # ratios e^0.1 (above 1 + eps) and e^-0.1 (below 1 - eps) for positive and negative advantages
    log_prob = torch.tensor([0.1, -0.1, 0.1, -0.1], requires_grad=True)
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    loss, metrics = ddpo_loss(log_prob, old, adv, ratio_clip=0.01)
    r_hi, r_lo = math.exp(0.1), math.exp(-0.1)
    # per transition max(-A r, -A clip(r)): A>0, r high -> clipped (-1.01); A>0, r low -> unclipped (-r_lo);
    # A<0, r high -> unclipped (r_hi); A<0, r low -> clipped (0.99)
    expected = (-1.01 - r_lo + r_hi + 0.99) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # the clipped entries carry no gradient; the unclipped ones carry -A r / 4
    assert log_prob.grad.tolist() == pytest.approx([0.0, -r_lo / 4, r_hi / 4, 0.0], rel=1e-6)
    assert metrics["clipfrac"] == 1.0


def test_ratio_one_gives_the_plain_policy_gradient():
    log_prob = torch.zeros(3, requires_grad=True)
    adv = torch.tensor([2.0, -1.0, 0.5])
    loss, metrics = ddpo_loss(log_prob, log_prob.detach(), adv, ratio_clip=1e-4)
    loss.backward()
    assert log_prob.grad.tolist() == pytest.approx((-adv / 3).tolist())
    assert metrics["ratio"] == 1.0 and metrics["clipfrac"] == 0.0


def test_per_prompt_stats_use_the_batch_until_a_prompt_has_enough_rewards():
    stats = PerPromptStats(size=4, min_count=3)
    rewards = torch.tensor([1.0, 3.0, 10.0, 14.0])
    adv = stats.advantages([0, 0, 1, 1], rewards)
    batch = rewards
    assert adv.tolist() == pytest.approx(((rewards - batch.mean()) / (batch.std() + 1e-6)).tolist(), rel=1e-5)
    # prompt 0 now has 4 rewards (1, 3, 5, 7) >= 3: its own mean 4 and std; prompt 1 has 3: its own too
    adv = stats.advantages([0, 0, 1], torch.tensor([5.0, 7.0, 12.0]))
    own0 = torch.tensor([1.0, 3.0, 5.0, 7.0])
    own1 = torch.tensor([10.0, 14.0, 12.0])
    assert adv[0].item() == pytest.approx(((5.0 - own0.mean()) / (own0.std() + 1e-6)).item(), rel=1e-5)
    assert adv[2].item() == pytest.approx(((12.0 - own1.mean()) / (own1.std() + 1e-6)).item(), abs=1e-6)
    # the window keeps the last 4: after two more rewards prompt 0 holds (5, 7, 9, 11)
    stats.advantages([0, 0], torch.tensor([9.0, 11.0]))
    assert list(stats.rewards[0]) == [5.0, 7.0, 9.0, 11.0]
    restored = PerPromptStats(size=4, min_count=3)
    restored.load_state_dict(stats.state_dict())
    assert list(restored.rewards[0]) == [5.0, 7.0, 9.0, 11.0] and restored.rewards[0].maxlen == 4
