"""DPOK and SFT losses on hand-made tensors."""

import pytest
import torch

from bench.method import lr_factor
from bench.methods.dpok import dpok_loss
from bench.methods.sft import sft_loss


def _tensors(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, generator=g, requires_grad=True)
    old = (theta.detach() + torch.randn(n, generator=g) * 1e-5).clone()
    log_prob = theta * 1.0  # a differentiable stand-in for log p_theta
    kl = (theta - 0.3) ** 2
    adv = torch.randn(n, generator=g)
    return theta, log_prob, old, kl, adv


def test_beta_zero_is_the_clipped_policy_gradient_alone():
    theta, log_prob, old, kl, adv = _tensors()
    loss, metrics = dpok_loss(log_prob, old, adv, kl, alpha=10.0, beta=0.0, ratio_clip=1e-4)
    ratio = torch.exp(log_prob - old).clamp(1 - 1e-4, 1 + 1e-4)
    expected = (-10.0 * adv * ratio).mean()
    torch.testing.assert_close(loss, expected)
    assert metrics["kl"] == pytest.approx(kl.mean().item())  # logged, not optimised


def test_alpha_zero_gradient_is_the_kl_gradient():
    theta, log_prob, old, kl, adv = _tensors()
    loss, _ = dpok_loss(log_prob, old, adv, kl, alpha=0.0, beta=0.01, ratio_clip=1e-4)
    (grad,) = torch.autograd.grad(loss, theta, retain_graph=True)
    (kl_grad,) = torch.autograd.grad((0.01 * kl).mean(), theta)
    torch.testing.assert_close(grad, kl_grad)
    assert grad.abs().sum() > 0


def test_clamped_ratio_has_no_gradient_outside_the_band():
    theta = torch.zeros(2, requires_grad=True)
    old = torch.tensor([0.0, -1.0])  # second transition: ratio e^1, far outside [1 - eps, 1 + eps]
    adv = torch.ones(2)
    loss, metrics = dpok_loss(theta, old, adv, torch.zeros(2), alpha=1.0, beta=0.0, ratio_clip=0.1)
    (grad,) = torch.autograd.grad(loss, theta)
    assert grad[0].item() == pytest.approx(-0.5)  # d/dtheta of -A * exp(theta - old) / 2 at ratio 1
    assert grad[1].item() == 0.0
    assert metrics["clipfrac"] == 0.5


def test_ppo_mode_keeps_the_pessimistic_gradient():
    theta = torch.zeros(1, requires_grad=True)
    old = torch.tensor([-0.5])  # ratio e^0.5 > 1 + eps with a negative advantage: PPO keeps the unclipped term
    adv = -torch.ones(1)
    loss, _ = dpok_loss(theta, old, adv, torch.zeros(1), alpha=1.0, beta=0.0, ratio_clip=0.1, clip_mode="ppo")
    (grad,) = torch.autograd.grad(loss, theta)
    assert grad.item() == pytest.approx(torch.exp(torch.tensor(0.5)).item(), rel=1e-5)
    clamped, _ = dpok_loss(theta, old, adv, torch.zeros(1), alpha=1.0, beta=0.0, ratio_clip=0.1)
    assert torch.autograd.grad(clamped, theta)[0].item() == 0.0


def test_sft_weights_follow_the_reward():
    eps_pred = torch.zeros(3, 2, 2, 2, requires_grad=True)
    noise = torch.ones(3, 2, 2, 2)
    reward = torch.tensor([2.0, 0.5, -1.0])
    loss, metrics = sft_loss(eps_pred, noise, reward, gamma=0.0, beta=0.0)
    (grad,) = torch.autograd.grad(loss, eps_pred)
    per_sample = grad.abs().flatten(1).sum(1)
    # weights max(r, 0) = (2, 0.5, 0): gradients scale with them, the negative reward is clipped to no weight
    assert per_sample[0] / per_sample[1] == pytest.approx(4.0)
    assert per_sample[2].item() == 0.0
    assert metrics["weight"] == pytest.approx(2.5 / 3)
    shifted, _ = sft_loss(eps_pred, noise, reward, gamma=2.0, beta=0.0)  # KL-D: weights (4, 2.5, 1)
    assert shifted.item() == pytest.approx((4 + 2.5 + 1) / 3)


def test_sft_kl_o_term():
    eps_pred = torch.full((2, 1, 2, 2), 0.5, requires_grad=True)
    noise = torch.full((2, 1, 2, 2), 0.5)
    eps_ref = torch.zeros(2, 1, 2, 2)
    loss, metrics = sft_loss(eps_pred, noise, torch.ones(2), gamma=0.0, beta=0.1, eps_ref=eps_ref)
    assert loss.item() == pytest.approx(0.1 * 0.25)
    assert metrics["kl"] == pytest.approx(0.25)


def test_prompt_stats_are_running_means_and_stds_per_prompt():
    from bench.methods.dpok import DPOK, DPOKConfig

    method = DPOK(DPOKConfig(baseline="mean", advantage_scale="prompt_std"))
    gen = torch.Generator().manual_seed(0)
    seen: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(3):  # three rounds, two prompts in a mixed order
        ids = [0, 1, 1, 0, 1]
        rewards = torch.rand(5, generator=gen) * torch.tensor([1.0, 5.0, 5.0, 1.0, 5.0])
        for pid, r in zip(ids, rewards.tolist(), strict=True):
            seen[pid].append(r)
        mean, std, count = method._prompt_stats(ids, rewards)
        assert count.tolist() == [len(seen[pid]) for pid in ids]
        for k, pid in enumerate(ids):  # the stats of every reward so far, this round's included
            history = torch.tensor(seen[pid], dtype=torch.float64)
            assert mean[k].item() == pytest.approx(history.mean().item(), abs=1e-6)
            assert std[k].item() == pytest.approx(history.std().item(), abs=1e-6)


def test_dpok_resumes_a_checkpoint_from_before_advantage_scale():
    from bench.methods.dpok import DPOK, DPOKConfig

    method = DPOK(DPOKConfig(baseline="mean"))
    old = {"capacity": 8, "data": {"reward": torch.tensor([0.5, 0.7]), "baseline": torch.zeros(2)}}
    method.load_state_dict({"buffer": old, "prompt_mean": {0: (0.6, 2)}})
    assert method.prompt_stats == {0: (2, 0.6, 0.0)}
    assert torch.equal(method.buffer.data["scale"], torch.ones(2))
    mean, _, _ = method._prompt_stats([0], torch.tensor([0.9]))
    assert mean.item() == pytest.approx((0.6 * 2 + 0.9) / 3)


def test_prompt_std_floor_keeps_a_constant_reward_prompt_from_dominating():
    from bench.methods.dpok import DPOK, DPOKConfig

    method = DPOK(DPOKConfig(advantage_scale="prompt_std"))
    ids = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    rewards = torch.tensor([0.1, 0.5, 0.9, 0.2, 0.4, 0.6, 0.25, 0.25, 0.25])  # prompt 2 never varies
    _, std, _ = method._prompt_stats(ids, rewards)
    assert std[-1].item() == 0.0
    assert method._std_floor() == pytest.approx(0.1 * 0.2)  # a tenth of the median std (0.4, 0.2, 0)
    single = DPOK(DPOKConfig(advantage_scale="prompt_std"))
    single._prompt_stats([0, 0], torch.tensor([0.3, 0.3]))
    assert single._std_floor() == 1e-6


def test_a_prompt_with_few_rewards_takes_the_rounds_pooled_mean_and_std():
    """Many prompts, few samples each (Table 2: 40 prompts, 16 samples a round): a prompt seen once has std 0, which
    the floor would have turned into a tenth of the typical std, so its advantage weighed 10x; until a prompt has
    stat_min_count rewards it takes the round's, as DDPO's tracker does. One prompt a round is unchanged."""
    from bench.methods.dpok import DPOK, DPOKConfig

    rewards = torch.tensor([0.1, 0.5, 0.9, 0.3])
    mean, std = DPOK(DPOKConfig(advantage_scale="prompt_std"))._round_stats([0, 1, 2, 3], rewards)
    assert torch.allclose(mean, rewards.mean().expand(4)) and torch.allclose(std, rewards.std().expand(4))
    before = DPOK(DPOKConfig(advantage_scale="prompt_std", stat_min_count=1))  # the rule the runs before used
    mean, std = before._round_stats([0, 1, 2, 3], rewards)
    assert torch.equal(mean, rewards) and torch.equal(std, torch.zeros(4))
    gen = torch.Generator().manual_seed(1)
    single, own = DPOK(DPOKConfig(advantage_scale="prompt_std")), DPOK(DPOKConfig(stat_min_count=1))
    for _ in range(3):  # 16 samples of one prompt a round: the prompt's own statistics from the first round on
        r = torch.rand(16, generator=gen)
        ours, theirs = single._round_stats([7] * 16, r), own._round_stats([7] * 16, r)
        assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_value_fit_takes_one_step_on_the_mean_loss_or_one_per_batch():
    """The official code accumulates its 5 value batches (each loss / 5) into one AdamW step; value_update=steps
    (the shapes world's) takes one per batch."""
    from types import SimpleNamespace

    from bench.methods.dpok import DPOK, DPOKConfig

    class Accel:
        def backward(self, loss):
            loss.backward()

    class Value(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 1)

        def forward(self, x, t, z):
            return self.lin(x).squeeze(1) + 0 * t + 0 * z

    ctx = SimpleNamespace(permutation=torch.randperm, device="cpu", accelerator=Accel(),
                          policy=SimpleNamespace(text_features=lambda ids: torch.zeros(len(ids))))  # fmt: skip
    for update, steps in (("accumulate", 1), ("steps", 5)):
        method = DPOK(DPOKConfig(value_update=update, value_batch_size=4))
        method.value = Value()
        method.value_opt = torch.optim.AdamW(method.value.parameters(), lr=1e-3)
        method.buffer.add({"x_t": torch.randn(8, 3), "timestep": torch.zeros(8), "reward": torch.rand(8),
                           "prompt_id": torch.zeros(8, dtype=torch.long)})  # fmt: skip
        method._fit_value(ctx)
        assert method.value_opt.state[method.value.lin.weight]["step"].item() == steps, update


def test_a_stored_run_config_without_a_later_setting_gets_the_value_that_reproduces_it():
    from bench.config import stored_values
    from bench.methods.dpok import DPOKConfig

    old = stored_values(DPOKConfig, {"alpha": 2.0})
    assert old["value_update"] == "steps" and old["value_weight_decay"] == 0.0 and old["stat_min_count"] == 1
    assert stored_values(DPOKConfig, {"value_update": "accumulate"})["value_update"] == "accumulate"
    assert DPOKConfig().value_update == "accumulate" and DPOKConfig().value_weight_decay == 0.01


def test_lr_schedules_start_at_one_and_decay_towards_zero():
    assert [lr_factor("constant", k, 4) for k in range(4)] == [1.0] * 4
    assert [lr_factor("linear", k, 4) for k in range(4)] == [1.0, 0.75, 0.5, 0.25]
    cosine = [lr_factor("cosine", k, 100) for k in range(100)]
    assert cosine[0] == 1.0 and cosine[50] == pytest.approx(0.5) and 0 < cosine[-1] < 1e-3
    assert all(a > b for a, b in zip(cosine, cosine[1:], strict=False))
