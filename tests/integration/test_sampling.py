"""The log-prob sampler against diffusers and against the Gaussian it claims to be."""

import torch
from conftest import randomize_lora

from bench.config import SamplingConfig
from bench.models import add_lora
from bench.sampling import (
    PromptCache,
    ddim_mean_std,
    gaussian_log_prob,
    guided_eps,
    kl_estimate,
    reference_threads,
    rollout,
)

PROMPTS = ["a red circle", "a blue square and a green circle", "four cat on the moon"]
SEEDS = [3, 11, 42]
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def test_rollout_matches_pipeline_output(tiny_pipe):
    sampling = SamplingConfig(num_steps=6, guidance_scale=4.0, eta=1.0)
    gens = [torch.Generator().manual_seed(s) for s in SEEDS]
    expected = tiny_pipe(PROMPTS, num_inference_steps=6, guidance_scale=4.0, eta=1.0, generator=gens, output_type="pt")
    # adapters present but off: the reference policy must be the pretrained pipeline
    add_lora(tiny_pipe.unet, 4, 4.0, TARGETS)
    randomize_lora(tiny_pipe.unet)
    tiny_pipe.unet.disable_adapters()
    ours = rollout(tiny_pipe, PROMPTS, SEEDS, sampling, PromptCache(tiny_pipe), reference=False)
    assert ours.images.shape == expected.images.shape
    assert (ours.images - expected.images).abs().max().item() <= 1e-5
    tiny_pipe.unet.enable_adapters()
    adapted = rollout(tiny_pipe, PROMPTS, SEEDS, sampling, PromptCache(tiny_pipe), reference=False)
    assert (adapted.images - expected.images).abs().max().item() > 1e-3  # the comparison above can fail


def _one_step(pipe, eta=1.0):
    sampling = SamplingConfig(num_steps=5, guidance_scale=3.0, eta=eta)
    out = rollout(pipe, PROMPTS, SEEDS, sampling, PromptCache(pipe), reference=True, reduction="sum")
    return sampling, out


def test_log_prob_equals_torch_normal(tiny_pipe):
    add_lora(tiny_pipe.unet, 4, 4.0, TARGETS)
    randomize_lora(tiny_pipe.unet)
    sampling, out = _one_step(tiny_pipe)
    cond, uncond, _ = PromptCache(tiny_pipe).get(PROMPTS)
    k = 2
    x_t, x_prev = out.latents[:, k], out.latents[:, k + 1]
    t, prev = out.timesteps[k], out.prev_timesteps[k]
    with torch.no_grad():
        eps = guided_eps(tiny_pipe.unet, x_t, t, cond, uncond, sampling.guidance_scale)
        mean, std = ddim_mean_std(tiny_pipe.scheduler, eps, t, prev, x_t, sampling.eta)
    normal = torch.distributions.Normal(mean, std.expand_as(mean))
    expected_mean = normal.log_prob(x_prev).mean(dim=(1, 2, 3))
    expected_sum = normal.log_prob(x_prev).sum(dim=(1, 2, 3))
    torch.testing.assert_close(gaussian_log_prob(x_prev, mean, std, "mean"), expected_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gaussian_log_prob(x_prev, mean, std, "sum"), expected_sum, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(out.log_probs[:, k], expected_sum, rtol=1e-5, atol=1e-3)  # what the rollout stored


def test_kl_zero_with_zero_adapter(tiny_pipe):
    add_lora(tiny_pipe.unet, 4, 4.0, TARGETS)  # B = 0 at initialisation: the policy is p_pre
    for estimator in ("mse", "closed_form"):
        out = rollout(
            tiny_pipe,
            PROMPTS,
            SEEDS,
            SamplingConfig(num_steps=4, guidance_scale=3.0),
            PromptCache(tiny_pipe),
            reference=True,
            kl_estimator=estimator,
        )
        assert out.kl.abs().max().item() == 0.0


def test_closed_form_kl_matches_monte_carlo(tiny_pipe):
    add_lora(tiny_pipe.unet, 4, 4.0, TARGETS)
    randomize_lora(tiny_pipe.unet, scale=0.2)
    sampling, out = _one_step(tiny_pipe)
    scheduler = tiny_pipe.scheduler
    k = 1
    x_t, t, prev = out.latents[:, k], out.timesteps[k], out.prev_timesteps[k]
    cond, uncond, _ = PromptCache(tiny_pipe).get(PROMPTS)
    with torch.no_grad():
        eps = guided_eps(tiny_pipe.unet, x_t, t, cond, uncond, sampling.guidance_scale)
        mean, std = ddim_mean_std(scheduler, eps, t, prev, x_t, sampling.eta)
        ref_eps = out.ref_eps[:, k]
        ref_mean, _ = ddim_mean_std(scheduler, ref_eps, t, prev, x_t, sampling.eta)
    exact = kl_estimate(eps, ref_eps, mean, ref_mean, std, "closed_form")
    gen = torch.Generator().manual_seed(0)
    draws = mean + std * torch.randn((4000, *mean.shape), generator=gen)
    log_ratio = gaussian_log_prob(draws.flatten(0, 1), mean.repeat(4000, 1, 1, 1), std, "sum") - gaussian_log_prob(
        draws.flatten(0, 1), ref_mean.repeat(4000, 1, 1, 1), std, "sum"
    )
    monte_carlo = log_ratio.view(4000, len(PROMPTS)).mean(0)
    assert exact.min().item() > 0.5  # a KL big enough for a 5% comparison to mean something
    assert ((monte_carlo - exact).abs() / exact).max().item() < 0.05


def test_stored_transition_ratio_is_one(tiny_pipe):
    add_lora(tiny_pipe.unet, 4, 4.0, TARGETS)
    randomize_lora(tiny_pipe.unet)
    sampling = SamplingConfig(num_steps=5, guidance_scale=3.0, eta=1.0)
    cache = PromptCache(tiny_pipe)
    out = rollout(tiny_pipe, PROMPTS, SEEDS, sampling, cache, reference=True)
    tr = out.transitions()
    prompts = [PROMPTS[i] for i in tr["sample"].tolist()]
    cond, uncond, _ = cache.get(prompts)
    eps = guided_eps(tiny_pipe.unet, tr["x_t"], tr["timestep"], cond, uncond, sampling.guidance_scale)
    mean, std = ddim_mean_std(tiny_pipe.scheduler, eps, tr["timestep"], tr["prev_timestep"], tr["x_t"], sampling.eta)
    ratio = torch.exp(gaussian_log_prob(tr["x_prev"], mean, std, "mean") - tr["old_log_prob"])
    assert len(ratio) == len(PROMPTS) * 5
    assert (ratio - 1).abs().max().item() <= 1e-6
    assert eps.requires_grad  # re-evaluation is differentiable: it is what the loss uses


def test_eta_zero_steps_are_not_actions(tiny_pipe):
    out = rollout(
        tiny_pipe, PROMPTS[:1], SEEDS[:1], SamplingConfig(num_steps=3, eta=0.0), PromptCache(tiny_pipe), reference=False
    )
    assert not out.stochastic.any()
    assert len(out.transitions()["x_t"]) == 0


def test_min_std_leaves_out_the_near_deterministic_steps(tiny_pipe):
    sampling = SamplingConfig(num_steps=5, guidance_scale=3.0, eta=1.0)
    out = rollout(tiny_pipe, PROMPTS, SEEDS, sampling, PromptCache(tiny_pipe), reference=False)
    stds = out.stds.tolist()
    assert len(stds) == 5 and min(stds) > 0
    _, std = ddim_mean_std(tiny_pipe.scheduler, out.latents[:, 0], out.timesteps[:1], out.prev_timesteps[:1],
                           out.latents[:, 0], sampling.eta)  # fmt: skip
    assert abs(std.flatten()[0].item() - stds[0]) < 1e-6  # the recorded std is the sampler's sigma_t
    threshold = sorted(stds)[1]  # keeps the steps strictly above the two smallest stds
    kept = out.transitions(min_std=threshold)
    assert len(kept["x_t"]) == len(PROMPTS) * 3
    assert set(kept["timestep"].tolist()) == {int(t) for t, s in zip(out.timesteps, stds, strict=True) if s > threshold}
    assert len(out.transitions()["x_t"]) == len(PROMPTS) * 5  # the default trains every stochastic step


def test_reference_beside_the_policy_equals_the_reference_after_it(tiny_pipe, two_threads):
    """parallel_reference=auto (a second thread, half the cores each) samples and scores what =off does."""
    add_lora(tiny_pipe.unet, 4, 4.0, TARGETS)
    randomize_lora(tiny_pipe.unet)
    outs = {}
    for mode in ("auto", "off"):
        sampling = SamplingConfig(num_steps=4, guidance_scale=3.0, eta=1.0, parallel_reference=mode)
        assert reference_threads(sampling, "cpu") == (1 if mode == "auto" else 0)  # the two paths do differ
        outs[mode] = rollout(tiny_pipe, PROMPTS, SEEDS, sampling, PromptCache(tiny_pipe), reference=True)
    assert outs["auto"].kl.abs().max().item() > 1e-4  # the adapted policy differs from the reference
    for field in ("images", "log_probs", "kl"):
        torch.testing.assert_close(getattr(outs["auto"], field), getattr(outs["off"], field), atol=1e-6, rtol=1e-5)
