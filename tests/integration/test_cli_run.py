"""`bench run` end to end on a tiny random Stable Diffusion: every method writes a complete run folder."""

import json
from pathlib import Path

import pytest
import yaml
from cli_helpers import TINY_DPOK, TINY_SFT, run_cli
from safetensors.torch import load_file

TINY_DDPO = ["--set", "sampling.num_steps=4", "--samples-per-round", "2", "--batch-size", "4", "--grad-accum", "2",
             "--stat-min-count", "2"]  # fmt: skip


@pytest.mark.parametrize(
    "method, extra",
    [
        ("dpok", ["--beta", "0.01"] + TINY_DPOK),
        ("reward-only", TINY_DPOK + ["--lr-schedule", "linear"]),
        ("kl-only", TINY_DPOK),
        ("sft", TINY_SFT),
        ("ddpo", TINY_DDPO),
    ],
)
def test_run_writes_a_complete_run_folder(capsys, tmp_path, tiny_sd, method, extra):
    results = tmp_path / "results"
    args = ["run", "--method", method, "--model", str(tiny_sd), "--reward", "compressibility", "--steps", "3",
            "--results-dir", str(results), "--prompts", "a red circle|a blue square"] + extra  # fmt: skip
    code, out, err = run_cli(capsys, args)
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1].removeprefix("run folder: "))
    assert run_dir.parent == results and run_dir.is_dir()
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "env.json", "train.jsonl", "lora", "checkpoint"}
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["method"] == method and config["steps"] == 3
    env = json.loads((run_dir / "env.json").read_text())
    assert env["packages"]["torch"] and env["device"] == "cpu"
    from bench.models import model_fingerprint  # the weights it trained, so runs of another model never pool

    assert env["model_fingerprint"] == model_fingerprint(tiny_sd, weights_only=True)
    rows = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3]  # one update per round here
    assert all("loss" in r and "grad_norm" in r for r in rows)
    reward_key = "data_reward" if method == "sft" else "reward"  # sft scores its fixed dataset once
    assert all(isinstance(r[reward_key], float) for r in rows)
    lr = config["hparams"]["lr"]
    if method == "reward-only":
        assert config["hparams"]["beta"] == 0.0
        assert [r["lr"] for r in rows] == pytest.approx([lr, lr * 2 / 3, lr / 3])  # linear decay over 3 rounds
    else:
        assert all(r["lr"] == lr for r in rows)
    if method == "ddpo":  # no KL, no reference: the PPO loss of the fresh round at ratio 1
        assert all("kl" not in r and r["ratio"] == 1.0 and r["clipfrac"] == 0.0 for r in rows)
    if method == "kl-only":
        assert config["hparams"]["alpha"] == 0.0
        assert all(r["loss"] == pytest.approx(0.01 * r["kl"]) for r in rows)
    weights = load_file(run_dir / "lora" / "pytorch_lora_weights.safetensors")
    assert weights and all(".lora" in k for k in weights)
    assert (run_dir / "checkpoint" / "state.pt").is_file()
