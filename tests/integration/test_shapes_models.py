"""The shapes world's trainable parts on tiny configs: pretraining command, proxy reward, model card."""

import json

import pytest
import torch
from cli_helpers import run_cli
from diffusers import StableDiffusionPipeline

from bench.errors import BenchError
from bench.models import model_fingerprint
from bench.prompts import load_prompts
from bench.shapes.card import write_model_card
from bench.shapes.paths import MODEL as SHAPES_MODEL
from bench.shapes.proxy import ShapesReward, ShapesRewardModel, load_reward_model
from bench.stats import pairwise_agreement


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes") / "model"
    from bench.cli import main

    main(["shapes", "pretrain", "--tiny", "--no-card", "--out", str(out)])
    return out


def test_pretrain_writes_a_loadable_pipeline(tiny_shapes):
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_shapes), torch_dtype=torch.float32)
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    assert pipe.vae_scale_factor == 2  # 32 px images, 16 x 16 latents
    assert pipe.tokenizer("a green circle").input_ids[1:-1] == [
        pipe.tokenizer.convert_tokens_to_ids(w + "</w>") for w in ("a", "green", "circle")
    ]
    stats = json.loads((tiny_shapes / "pretrain_stats.json").read_text())
    assert stats["config"]["unet_steps"] == 2 and stats["scaling_factor"] > 0


def test_warm_start_keeps_the_vae_and_trains_the_unet_on_the_new_distribution(tiny_shapes, tmp_path, capsys):
    from safetensors.torch import load_file

    from bench.cli import main

    out = tmp_path / "warm"
    main(["shapes", "pretrain", "--tiny", "--no-card", "--out", str(out), "--set", f"init={tiny_shapes}",
          "--set", "moon=0.5", "--set", "seed=1"])  # fmt: skip
    weights = lambda folder, part: load_file(next((folder / part).glob("*.safetensors")))  # noqa: E731
    assert weights(out, "vae").keys() == weights(tiny_shapes, "vae").keys()
    assert all(torch.equal(v, weights(tiny_shapes, "vae")[k]) for k, v in weights(out, "vae").items())
    before, after = weights(tiny_shapes, "unet"), weights(out, "unet")
    assert before.keys() == after.keys() and any(not torch.equal(after[k], before[k]) for k in before)
    stats = json.loads((out / "pretrain_stats.json").read_text())
    first = json.loads((tiny_shapes / "pretrain_stats.json").read_text())
    assert stats["init"]["config"] == first["config"] and stats["config"]["moon"] == 0.5
    assert stats["scaling_factor"] == first["scaling_factor"] and stats["vae_minutes"] == 0.0
    assert stats["init_fingerprint"] == model_fingerprint(tiny_shapes, weights_only=True)
    from bench.shapes.card import _stage_lines

    stages = _stage_lines(stats)  # the card says how the model was made: both stages and their distributions
    assert stages[0].startswith("- Two stages") and "moon on 3.4%" in stages[0] and "moon on 50.0%" in stages[1]
    assert _stage_lines(first)[2].startswith("- Distribution: moon on 3.4%")
    with pytest.raises(SystemExit):
        main(["shapes", "pretrain", "--tiny", "--no-card", "--out", str(tmp_path / "x"), "--set", f"init={tmp_path}"])
    assert "not a saved shapes model" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["tiny", "shipped"])
def test_plain_from_pretrained_loads_one_dtype_and_samples(tiny_shapes, which):
    folder = tiny_shapes if which == "tiny" else str(SHAPES_MODEL)
    pipe = StableDiffusionPipeline.from_pretrained(str(folder))  # no torch_dtype, as peers' code loads pipelines
    assert {pipe.unet.dtype, pipe.text_encoder.dtype, pipe.vae.dtype} == {torch.float32}
    image = pipe("a red circle", num_inference_steps=2, output_type="pt").images
    assert image.shape == (1, 3, 32, 32) and torch.isfinite(image).all()


def test_model_card_reports_the_measurements(tiny_shapes):
    quality = {
        "samples_per_prompt": 64,
        "simple": {"mean_ci": [0.9, 0.88, 0.92]},
        "demo": {"a green circle": 0.4},
        "families": {"count": {"prompts": 14, "mean_ci": [0.5, 0.45, 0.55]}},
        "bias_unspecified_colour": {"colours_of_detected_circles": {"red": 60, "blue": 4}},
        "bias_spurious_moon": {"share_yellow_circle": 0.7},
    }
    holds = [
        {"family": "color", "prompt": "an orange square", "split": "train", "samples": 256, "foothold": 0.098,
         "gold_mean_ci": [0.098, 0.06, 0.13], "proxy_mean": 0.3, "agreement": 0.81, "pairs": 5000},
        {"family": "location", "prompt": "a blue square on the moon", "split": "train", "samples": 256,
         "foothold": 0.004, "gold_mean_ci": [0.257, 0.25, 0.27], "proxy_mean": 0.2, "agreement": 0.36, "pairs": 9},
    ]  # fmt: skip
    stats = json.loads((tiny_shapes / "pretrain_stats.json").read_text())
    text = write_model_card(tiny_shapes, stats, quality, holds).read_text()
    assert "| color | an orange square | train | 9.8% | 0.098 [0.060, 0.130] | 0.300 | 0.81 (5000) | yes |" in text
    assert "| location | a blue square on the moon | train | 0.4% |" in text and text.rstrip().endswith("| no |")
    assert json.loads((tiny_shapes / "footholds.json").read_text()) == holds
    assert "Simple one-object prompts (64 samples each): 0.900 [0.880, 0.920]" in text
    assert "Family count (14 train prompts x 16 samples): 0.500 [0.450, 0.550]" in text
    assert "yellow circle in 70% of samples" in text and "{'red': 60, 'blue': 4}" in text


def test_footholds_measure_every_prompt_of_the_families(tiny_shapes, capsys):
    from bench.shapes.card import FAMILIES, main

    families = ("count", "location")  # 16 of the 52 family prompts: the same code path, a third of the time
    assert set(families) < set(FAMILIES)
    # `python -m bench.shapes.card FOLDER --screen --families ...`: a candidate's footholds, no card written
    before = {p: p.stat().st_mtime_ns for p in tiny_shapes.rglob("*")}
    main([str(tiny_shapes), "--screen", "--families", ",".join(families), "--samples", "2"])
    out = capsys.readouterr().out.splitlines()
    table = [line for line in out if line.startswith("| ")][2:]  # after the header and its rule
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    family_prompts = [p for f in families for p in load_prompts(f"shapes-family-{f}")]
    assert sorted(r[1] for r in rows) == sorted(family_prompts)
    train = set(load_prompts("shapes-train"))
    for _family, prompt, split, foothold, gold, *_, in_range in rows:
        assert foothold in ("0.0%", "50.0%", "100.0%") and 0 <= float(gold.split()[0]) <= 1
        ok = 5 <= float(foothold.rstrip("%")) <= 40 and float(gold.split()[0]) <= 0.65
        assert in_range == ("yes" if ok else "no") and split == ("train" if prompt in train else "heldout")
    for family in families:
        count = sum(r[-1] == "yes" for r in rows if r[0] == family)
        assert f"{family}: {count} of {len(load_prompts(f'shapes-family-{family}'))} prompts in range" in out
    assert {p: p.stat().st_mtime_ns for p in tiny_shapes.rglob("*")} == before


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--families", "count"], "add --screen"), (["--screen", "--families", "count,size"], "unknown size")],
)
def test_card_refuses_a_partial_card_and_unknown_families(tiny_shapes, capsys, args, message):
    from bench.shapes.card import main

    with pytest.raises(SystemExit):
        main([str(tiny_shapes), *args])
    assert message in capsys.readouterr().err


def test_reward_training_and_scorer(capsys, tiny_shapes, tmp_path):
    out = tmp_path / "reward"
    code, stdout, err = run_cli(
        capsys, ["shapes", "pretrain-reward", "--tiny", "--model", str(tiny_shapes), "--out", str(out)]
    )
    assert code == 0, err
    stats = json.loads((out / "train_stats.json").read_text())
    prompts = len(load_prompts("shapes-train")) + len(load_prompts("shapes-simple"))
    assert prompts == 39 + 6 and stats["images"] == prompts + 8  # one sample per prompt, plus 8 pretraining captions
    scorer = ShapesReward(weights=str(out))
    images = torch.rand(3, 3, 32, 32, requires_grad=True)
    values = scorer(images, ["a green circle", "four squares", "a red circle and a blue square"])
    values.sum().backward()
    assert values.shape == (3,) and images.grad.abs().sum() > 0  # differentiable, as ImageReward's path is


def test_reward_depends_on_the_prompt(tmp_path):
    model = ShapesRewardModel(vocab_size=600)
    torch.nn.init.normal_(model.head[-1].weight, std=1.0)
    ids = torch.randint(0, 600, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    image = torch.rand(1, 3, 32, 32).expand(2, -1, -1, -1)
    scores = model(image, ids, mask)
    assert (scores[0] - scores[1]).abs() > 1e-4


def test_missing_reward_weights_name_the_folder(tmp_path):
    with pytest.raises(BenchError, match=f"shapes-reward weights missing: {tmp_path} has no config.json"):
        load_reward_model(tmp_path)


def test_pairwise_agreement_counts_only_informative_pairs():
    gold = [1.0, 0.5, 0.5, 0.0]
    pred = [0.9, 0.2, 0.8, 0.1]
    prompts = ["a", "a", "a", "b"]
    # pairs of prompt a with different gold: (0,1) agree, (0,2) agree; (1,2) tie in gold is skipped
    assert pairwise_agreement(pred, gold, prompts) == (1.0, 2)
    assert pairwise_agreement([0.1, 0.9, 0.95, 0.0], gold, prompts) == (0.0, 2)
