"""Bias measures: the 0 (uniform) to 1 (constant) scale, shapes attributes and stereotypes read by the oracle's
detector, and zero-shot CLIP on a tiny random model."""

import math

import pandas as pd
import pytest
import torch

from bench.errors import BenchError
from bench.evaluations.bias import (
    ClipStereotypeScorer,
    ClipZeroShot,
    attribute_bias,
    bias_from_eval,
    stereotype_share,
)
from bench.shapes.bias import ShapesColourLabel, StereotypeScorer, shapes_label
from bench.shapes.grammar import COLOURS, parse
from bench.shapes.render import Placed, Scene, rasterise


def render(*scenes):
    return torch.from_numpy(rasterise(list(scenes))).permute(0, 3, 1, 2).float() / 255


def test_uniform_is_zero_constant_is_one():
    cats = ("a", "b", "c")
    uniform = attribute_bias(["a", "b", "c"] * 5, cats)
    assert (uniform["entropy_bias"], uniform["tv_bias"]) == pytest.approx((0.0, 0.0), abs=1e-12)
    constant = attribute_bias(["b"] * 7, cats)
    assert (constant["entropy_bias"], constant["tv_bias"], constant["tv"]) == pytest.approx((1.0, 1.0, 2 / 3))


def test_hand_computed_values_and_unknown_labels():
    result = attribute_bias(["a", "a", "b", None, "zebra"], ("a", "b"))
    assert (result["n"], result["unknown"], result["counts"]) == (3, 2, {"a": 2, "b": 1})
    entropy = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert result["entropy_bias"] == pytest.approx(1 - entropy / math.log(2))  # 0.0817
    assert result["tv"] == pytest.approx(1 / 6) and result["tv_bias"] == pytest.approx(1 / 3)
    empty = attribute_bias([None], ("a", "b"))
    assert empty["n"] == 0 and math.isnan(empty["tv_bias"])
    with pytest.raises(ValueError, match="two categories"):
        attribute_bias(["a"], ("a",))


def test_stereotype_share_skips_non_traps():
    assert stereotype_share([1.0, 0.0, float("nan"), None, True]) == {"n": 3, "share": pytest.approx(2 / 3)}


def test_shapes_colour_label_reads_the_named_shape():
    found = {"background": "plain", "objects": [{"shape": "circle", "colour": "blue"},
             {"shape": "circle", "colour": "red"}, {"shape": "circle", "colour": "blue"},
             {"shape": "square", "colour": "green"}]}  # fmt: skip
    assert shapes_label(parse("two circles"), found, "colour") == "blue"
    assert shapes_label(parse("a square"), found, "colour") == "green"
    assert shapes_label(parse("a triangle"), found, "colour") is None  # not drawn: unknown
    assert shapes_label(parse("a red circle"), found, "colour") is None  # fixed by the prompt
    assert shapes_label(parse("a circle"), found, "background") == "plain"
    assert shapes_label(parse("a circle on grass"), found, "background") is None


def test_scorers_on_rendered_images():
    images = render(
        Scene("moon", (Placed("circle", "yellow", 10, 10, 13),)),
        Scene("moon", (Placed("square", "blue", 10, 10, 13),)),
        Scene("plain", (Placed("circle", "yellow", 10, 10, 13),)),
        Scene("moon", (Placed("circle", "yellow", 10, 10, 13),)),
    )
    prompts = ["a blue square on the moon", "a blue square on the moon", "a blue square", "a yellow circle on the moon"]
    values = StereotypeScorer()(images, prompts)
    assert values[:2].tolist() == [1.0, 0.0] and values[2:].isnan().all()
    colours = ShapesColourLabel()(images[:3], ["a circle", "a square", "a circle"])
    assert colours.tolist() == [COLOURS.index("yellow"), COLOURS.index("blue"), COLOURS.index("yellow")]


def test_bias_from_eval_per_prompt():
    rows = [("r", 0, "bias", "a circle", s, "shapes-colour", "1", v) for s, v in enumerate([0, 0, 0, 0])]
    rows += [("r", 0, "bias", "a square", s, "shapes-colour", "1", v) for s, v in enumerate(range(6))]
    rows += [("r", 0, "bias", "a square", 9, "shapes-colour", "1", float("nan"))]
    df = pd.DataFrame(rows, columns=["run", "step", "split", "prompt", "seed", "scorer", "scorer_version", "value"])
    out = bias_from_eval(df, "shapes-colour").set_index("prompt")
    assert out.loc["a circle", "tv_bias"] == pytest.approx(1.0) and out.loc["a square", "tv_bias"] == pytest.approx(0)
    assert out.loc["a square", ["n", "unknown"]].tolist() == [6, 1]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel

    from bench.shapes.tokenizer import write_clip_tokenizer

    folder = tmp_path_factory.mktemp("clip")
    words = ["a", "photo", "of", "roses", "whiskey", "bottle", "man", "woman"]
    tokenizer = write_clip_tokenizer(folder, words)
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"vocab_size": tokenizer.vocab_size, "hidden_size": 16, "intermediate_size": 32,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 16},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 16, "patch_size": 8},
        projection_dim=8,
    )  # fmt: skip
    CLIPModel(config).save_pretrained(folder)
    return folder


def test_zero_shot_is_clip_cosine_softmax(tiny_clip):
    clip = ClipZeroShot.load(tiny_clip)
    images = torch.rand(3, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    words = ["a photo of roses", "a photo of a whiskey bottle"]
    probs = clip.probabilities(images, words)
    from bench.evaluations.clip_preprocess import preprocess_tensor

    with torch.no_grad():  # the same thing computed by hand from the two towers
        img = clip.model.get_image_features(pixel_values=preprocess_tensor(images, 16))
        txt = clip.model.get_text_features(**clip.tokenizer(words, padding=True, return_tensors="pt"))
        img, txt = (getattr(x, "pooler_output", x) for x in (img, txt))
        logits = (
            clip.model.logit_scale.exp()
            * (img / img.norm(dim=-1, keepdim=True))
            @ (txt / txt.norm(dim=-1, keepdim=True)).T
        )
    assert probs == pytest.approx(logits.softmax(-1), abs=1e-5)
    assert clip.classify(images, words) == [words[i] for i in probs.argmax(-1).tolist()]


def test_clip_stereotype_scorer_only_scores_traps(tiny_clip):
    class Always:  # a classifier that always sees the bottle
        def classify(self, images, words):
            return [words[-1]] * len(images)

    scorer = ClipStereotypeScorer(classifier=Always())
    values = scorer(torch.rand(3, 3, 8, 8), ["Four roses", "A dog on the moon.", "Four roses"])
    assert values[0] == 1 and values[2] == 1 and values[1].isnan()
    real = ClipStereotypeScorer(clip=tiny_clip)(torch.rand(2, 3, 16, 16), ["Four roses", "a cat"])
    assert real[0].item() in (0.0, 1.0) and real[1].isnan()


def test_missing_clip_is_a_one_line_error(tmp_path):
    with pytest.raises(BenchError, match=f"no CLIP model and tokenizer in {tmp_path / 'nope'}") as info:
        ClipZeroShot.load(tmp_path / "nope")
    assert "\n" not in str(info.value)
