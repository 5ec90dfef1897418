"""The recompute-free on-policy step trains exactly what recomputing the forward trains (float64, tiny SD)."""

import json

import pytest
import torch

from bench.evaluations.compressibility import Compressibility
from bench.resolve import resolve_run_config
from bench.results import create_run_dir
from bench.trainer import Trainer

PROMPTS = ["a red circle", "a blue square"]
# 2 samples x 3 DDIM steps = 6 transitions a round; the buffer keeps one round and the step draws all 6
ON_POLICY = ["--samples-per-round", "2", "--batch-size", "3", "--grad-accum", "2", "--updates-per-round", "1",
             "--lr", "1e-3"]  # fmt: skip
METHODS = {
    "dpok": ON_POLICY + ["--buffer-size", "6", "--value-steps", "1", "--value-batch-size", "6", "--beta", "0.5"],
    "ddpo": ON_POLICY + ["--stat-min-count", "1"],
}


def _train(tiny_sd, tmp_path, method, graph: str, rounds=2, forbid_recompute=False, parallel="auto"):
    common = {"method": method, "model": str(tiny_sd), "steps": rounds, "seed": 3}
    args = METHODS[method] + ["--on-policy-graph", graph]
    sets = ["sampling.num_steps=3", f"parallel_backward={parallel}"]
    cfg, cls, _ = resolve_run_config(None, common, sets, args)
    run_dir = create_run_dir(tmp_path, f"{method}-{graph}")
    trainer = Trainer(cfg, cls, str(tiny_sd), PROMPTS, Compressibility, run_dir).setup()
    assert trainer.ctx.backward_groups == (2 if parallel == "auto" and torch.get_num_threads() >= 2 else 1)
    trainer.ctx.pipe.to(dtype=torch.float64)  # only the order of float operations differs between the two paths
    if forbid_recompute:

        def no_recompute(*a, **k):
            raise AssertionError("the on-policy step recomputed the forward")

        trainer.ctx.policy.log_prob_and_kl = no_recompute
    start = [p.detach().clone() for p in trainer.params]
    trainer.run()
    update = [p.detach() - s for p, s in zip(trainer.params, start, strict=True)]
    rows = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    return update, rows


@pytest.mark.parametrize("method, parallel", [("dpok", "auto"), ("dpok", "off"), ("ddpo", "auto")])
def test_graph_step_equals_recomputed_step(tiny_sd, tmp_path, method, parallel, two_threads):
    """Side by side (two groups of steps, two threads) or as one backward: the recomputing path's update."""
    kept, rows_kept = _train(tiny_sd, tmp_path, method, "auto", forbid_recompute=True, parallel=parallel)
    recomputed, rows_re = _train(tiny_sd, tmp_path, method, "off")
    assert max(u.abs().max().item() for u in kept) > 1e-4  # the LoRA weights did move
    for a, b in zip(kept, recomputed, strict=True):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)  # Adam: m / sqrt(v) near g = 0
    for a, b in zip(rows_kept, rows_re, strict=True):
        assert a["reward"] == pytest.approx(b["reward"], rel=1e-9)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-6)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-12)
        assert a["ratio"] == 1.0 and a["clipfrac"] == 0.0  # the graph's own forward: p_theta = p_old exactly


def test_a_buffer_larger_than_a_round_recomputes(tiny_sd, tmp_path, monkeypatch):
    """With old transitions in the buffer the ratio is not 1: the graph must not be kept (or used)."""
    import bench.policy

    kept = []
    real = bench.policy.rollout

    def spy(*args, **kwargs):
        kept.append(kwargs.get("keep_graph"))
        return real(*args, **kwargs)

    monkeypatch.setattr(bench.policy, "rollout", spy)
    common = {"method": "dpok", "model": str(tiny_sd), "steps": 2, "seed": 3}
    args = ON_POLICY + ["--buffer-size", "12", "--value-batch-size", "6"]
    cfg, cls, _ = resolve_run_config(None, common, ["sampling.num_steps=3"], args)
    trainer = Trainer(cfg, cls, str(tiny_sd), PROMPTS, Compressibility, create_run_dir(tmp_path, "dpok")).setup()
    trainer.run()
    assert kept == [False, False]
