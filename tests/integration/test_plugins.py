"""An out-of-tree method package, found through its entry point, runs with `bench run --method <name>`."""

import json
import textwrap
from pathlib import Path

from cli_helpers import bench_subprocess

PLUGIN = textwrap.dedent(
    '''
    """REINFORCE with a per-batch mean baseline and no KL: a minimal third-party method."""
    from dataclasses import dataclass

    import torch

    from bench.config import param
    from bench.method import Method, OptimConfig


    @dataclass(frozen=True)
    class Config(OptimConfig):
        samples: int = param(2, "trajectories per round", ge=1)


    class PlainPG(Method):
        name = "plain-pg"
        Config = Config
        needs_log_prob = True
        summary = "plugin: REINFORCE with a batch-mean baseline"

        def collect(self, ctx):
            ids, seeds = ctx.round_prompts(self.hp.samples)
            out = ctx.policy.rollout(ids, seeds)
            reward = ctx.reward(out.images, out.prompts).cpu()
            tr = out.transitions()
            sample = tr.pop("sample")
            tr["advantage"] = (reward - reward.mean())[sample]
            tr["prompt_id"] = torch.as_tensor(ids)[sample]
            self.data = tr
            return {"reward": reward.mean().item()}

        def updates(self, ctx):
            for _ in range(self.hp.updates_per_round):
                yield [{k: v.to(ctx.device) for k, v in self.data.items()}]

        def loss(self, batch, ctx):
            log_prob, kl = ctx.policy.log_prob_and_kl(batch)
            loss = -(batch["advantage"] * torch.exp(log_prob - batch["old_log_prob"])).mean()
            return loss, {"kl": kl.mean().item()}
    '''
)


def _install_plugin(site: Path) -> None:
    pkg = site / "bench_plugin_demo"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(PLUGIN)
    dist = site / "bench_plugin_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[bench.methods]\nplain-pg = bench_plugin_demo:PlainPG\nbroken-pg = bench_plugin_demo.missing:Nope\n"
    )


def test_entry_point_method_runs_and_lists(tmp_path, tiny_sd):
    site = tmp_path / "site"
    _install_plugin(site)
    listed = bench_subprocess(["ls", "methods"], site, tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert {"dpok", "reward-only", "kl-only", "sft", "plain-pg", "broken-pg"} <= set(names)
    assert "entry-point/bench-plugin-demo" in names["plain-pg"]
    assert "(broken: " in names["broken-pg"]  # listed with its error; the others still work

    args = ["run", "--method", "plain-pg", "--model", str(tiny_sd), "--steps", "1", "--updates-per-round", "2",
            "--prompts", "a red circle|a blue square", "--set", "sampling.num_steps=3"]  # fmt: skip
    ran = bench_subprocess(args, site, tmp_path)
    assert ran.returncode == 0, ran.stderr
    run_dir = Path(tmp_path, ran.stdout.strip().splitlines()[-1].removeprefix("run folder: "))
    rows = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2]
    assert run_dir.parent == tmp_path / "results" / "runs"  # default results dir under the current directory

    broken = bench_subprocess(["run", "--method", "broken-pg", "--model", str(tiny_sd)], site, tmp_path)
    assert broken.returncode == 2
    assert broken.stderr.strip().startswith("error: method 'bench_plugin_demo.missing:Nope' failed to import")
    assert "Traceback" not in broken.stderr
