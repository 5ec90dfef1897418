"""ImageReward on a tiny random model of the released architecture and a hand-written WordPiece vocabulary."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from bench.errors import BenchError
from bench.evaluations import clip_preprocess
from bench.evaluations.imagereward import ImageRewardScorer, load_tokenizer
from bench.evaluations.imagereward_model import (
    ImageRewardArch,
    ImageRewardModel,
    module_to_official_key,
    official_to_module_key,
)

WORDS = ["a", "red", "blue", "circle", "square", "on", "two", "##s", ",", "."]
PROMPTS = ["A red circle on blue.", "two blue squares", "red"]


def write_vocab(folder, tokens: list[str]) -> None:
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    write_vocab(folder, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])
    return load_tokenizer(folder)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    model = ImageRewardModel(ImageRewardArch.tiny(len(tokenizer)))
    # transformers' init is nearly constant (ViT init range 1e-10); spread weights so inputs move the score.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" not in name and "layer_norm" not in name:
                param.normal_(0, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def scorer(model, tokenizer):
    return ImageRewardScorer.from_model(model, tokenizer, dtype=torch.float64)


def official_keys(vision_depth: int, text_depth: int) -> list[str]:
    """The key list of ``ImageReward.pt`` as BLIP/timm name it, written independently of the mapping."""
    keys = ["blip.visual_encoder." + k for k in ("cls_token", "pos_embed", "patch_embed.proj.weight")]
    keys += ["blip.visual_encoder.patch_embed.proj.bias"]
    for i in range(vision_depth):
        for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            keys += [f"blip.visual_encoder.blocks.{i}.{part}.{w}" for w in ("weight", "bias")]
    keys += ["blip.visual_encoder.norm.weight", "blip.visual_encoder.norm.bias"]
    text = [
        "embeddings.position_ids",
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
    ]
    text += ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for i in range(text_depth):
        for block in ("attention", "crossattention"):
            parts = ["self.query", "self.key", "self.value", "output.dense", "output.LayerNorm"]
            text += [f"encoder.layer.{i}.{block}.{p}.{w}" for p in parts for w in ("weight", "bias")]
        parts = ["intermediate.dense", "output.dense", "output.LayerNorm"]
        text += [f"encoder.layer.{i}.{p}.{w}" for p in parts for w in ("weight", "bias")]
    keys += ["blip.text_encoder." + k for k in text]
    keys += [f"blip.{p}_proj.{w}" for p in ("vision", "text") for w in ("weight", "bias")]
    keys += [f"mlp.layers.{i}.{w}" for i in (0, 2, 4, 6, 7) for w in ("weight", "bias")]
    return keys


def to_official(model: ImageRewardModel) -> dict[str, torch.Tensor]:
    """Write the model's weights under the official names, with the keys the original file also holds."""
    state = {module_to_official_key(k): v.clone() for k, v in model.state_dict().items()}
    arch = model.arch
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(arch.max_positions).expand(1, -1)
    for name, width in (("vision", arch.vision_width), ("text", arch.text_width)):
        state[f"blip.{name}_proj.weight"] = torch.randn(256, width)
        state[f"blip.{name}_proj.bias"] = torch.randn(256)
    return state


def test_official_key_table_matches_the_notes():
    keys = official_keys(24, 12)
    prefixes = ("blip.visual_encoder.", "blip.text_encoder.", "mlp.")
    counts = {p: sum(k.startswith(p) for k in keys) for p in prefixes}
    assert len(keys) == 625 and counts == {"blip.visual_encoder.": 294, "blip.text_encoder.": 317, "mlp.": 10}


def test_full_architecture_has_the_checkpoint_parameter_count():
    with torch.device("meta"):
        model = ImageRewardModel()
    projections = (1024 + 1) * 256 + (768 + 1) * 256  # vision_proj, text_proj: in the file, unused
    assert sum(p.numel() for p in model.parameters()) + projections == 446_665_953
    assert model.visual_encoder.post_layernorm.eps == 1e-6
    cross = model.text_encoder.encoder.layer[0].crossattention.self
    assert (cross.key.in_features, cross.key.out_features, cross.query.in_features) == (1024, 768, 768)


def test_official_checkpoint_loads_with_identical_scores(tmp_path, model, tokenizer, scorer):
    state = to_official(model)
    assert sorted(state) == sorted(official_keys(2, 2))
    assert all(official_to_module_key(module_to_official_key(k)) == k for k in model.state_dict())
    torch.save(state, tmp_path / "ImageReward.pt")
    write_vocab(tmp_path, tokenizer.convert_ids_to_tokens(range(len(tokenizer) - 2)))
    loaded = ImageRewardScorer(weights=str(tmp_path), arch=model.arch, dtype=torch.float64)
    images = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(loaded(images, PROMPTS), scorer(images, PROMPTS), rtol=0, atol=0)


def test_mismatched_checkpoint_is_a_one_line_error(tmp_path, model, tokenizer):
    state = to_official(model)
    del state["blip.visual_encoder.norm.weight"]
    state["blip.itm_head.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "ImageReward.pt")
    write_vocab(tmp_path, tokenizer.convert_ids_to_tokens(range(len(tokenizer) - 2)))
    expected = r"1 missing keys .*post_layernorm.weight.*1 unexpected .*itm_head"
    with pytest.raises(BenchError, match=expected) as err:
        ImageRewardScorer(weights=tmp_path, arch=model.arch)
    assert "\n" not in str(err.value)


def test_missing_weights_name_the_folder_and_file(tmp_path):
    with pytest.raises(BenchError) as err:
        ImageRewardScorer(weights=tmp_path / "nowhere")
    message = str(err.value)
    assert "ImageReward.pt" in message and str(tmp_path / "nowhere") in message and "\n" not in message


def test_tokenization_follows_blip(tokenizer, scorer):
    n = len(tokenizer)
    assert (tokenizer.bos_token, tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids("[ENC]")) == (
        "[DEC]",
        n - 2,
        n - 1,
    )
    ids, mask = scorer.tokenize(["A Red circle, on blue squares.", "red " * 50])
    words = tokenizer.convert_ids_to_tokens(ids[0, :10].tolist())
    assert words == ["[CLS]", "a", "red", "circle", ",", "on", "blue", "square", "##s", "."]
    assert ids.shape == (2, 35) and mask[0].sum() == 11 and mask[1].sum() == 35
    assert ids[1, -1] == tokenizer.sep_token_id and (ids[0, 11:] == tokenizer.pad_token_id).all()


def test_score_is_the_standardised_head_on_the_cls_state(model, tokenizer, scorer):
    images = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    ids, mask = scorer.tokenize(PROMPTS)
    assert (ids[:, 0] == tokenizer.cls_token_id).all()
    pixels = scorer.preprocess(images)
    vision = scorer.model.visual_encoder(pixel_values=pixels).last_hidden_state
    hidden = scorer.model.text_encoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=vision)
    raw = scorer.model.mlp(hidden.last_hidden_state[:, 0])
    scores = scorer(images, PROMPTS)
    assert scores.shape == (3,) and scores.dtype == torch.float32
    expected = (raw - 0.16717362830052426) / 1.0333394966054072
    torch.testing.assert_close(scores, expected.float())
    # BLIP's matching head puts [ENC] at position 0; ImageReward does not, and the difference is not small.
    enc_ids = ids.clone()
    enc_ids[:, 0] = tokenizer.convert_tokens_to_ids("[ENC]")
    assert (scorer.model(pixels, enc_ids, mask) - raw).abs().min() > 1e-2


def test_text_padding_mask_is_applied(scorer):
    images = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    ids, mask = scorer.tokenize(PROMPTS)
    pixels = scorer.preprocess(images)
    garbage = torch.where(mask.bool(), ids, torch.randint_like(ids, 5, 10))
    scores = scorer(images, PROMPTS).double()
    with_mask = (scorer.model(pixels, garbage, mask) - 0.16717362830052426) / 1.0333394966054072
    torch.testing.assert_close(scores, with_mask.float().double())
    without_mask = scorer.model(pixels, ids, torch.ones_like(mask))
    assert (without_mask - scorer.model(pixels, ids, mask)).abs().min() > 1e-3


def test_gradient_reaches_the_images(scorer):
    torch.manual_seed(1)
    images = torch.rand(2, 3, 40, 48, dtype=torch.float64, requires_grad=True)
    scorer(images, PROMPTS[:2]).sum().backward()
    assert images.grad.abs().gt(0).float().mean() > 0.9
    # Finite differences on the float64 pipeline (score() itself returns float32).
    ids, mask = scorer.tokenize(PROMPTS[:2])
    direction = torch.randn_like(images)
    eps = 1e-5
    with torch.no_grad():
        plus = scorer.model(scorer.preprocess(images + eps * direction), ids, mask).sum()
        minus = scorer.model(scorer.preprocess(images - eps * direction), ids, mask).sum()
    numeric = (plus - minus) / (2 * eps) / 1.0333394966054072
    torch.testing.assert_close((images.grad * direction).sum(), numeric, rtol=1e-3, atol=1e-6)


def test_preprocessing_geometry_and_pil_path(model, tokenizer):
    assert clip_preprocess.resized_shape(300, 400, 224) == (224, 298)
    assert clip_preprocess.crop_offsets(225, 227, 224) == (0, 2)  # round(0.5) == 0, round(1.5) == 2
    images = torch.randint(0, 256, (2, 3, 32, 32)).double() / 255
    pil = ImageRewardScorer.from_model(model, tokenizer, preprocessing="pil", dtype=torch.float64)
    tensor = ImageRewardScorer.from_model(model, tokenizer, dtype=torch.float64)
    torch.testing.assert_close(pil(images, PROMPTS[:2]), tensor(images, PROMPTS[:2]), rtol=0, atol=1e-6)
    # RGBA: resize first, then drop alpha (converting first changes the premultiplied resize result).
    rgba = Image.new("RGBA", (64, 48), (200, 10, 10, 0))
    rgba.paste((10, 200, 10, 255), (0, 0, 32, 48))
    expected = rgba.resize((42, 32), Image.Resampling.BICUBIC).crop((5, 0, 37, 32)).convert("RGB")
    out = clip_preprocess.preprocess_pil([rgba], 32)
    pixels = torch.tensor(list(expected.getdata())).T.reshape(1, 3, 32, 32) / 255
    reference = clip_preprocess.normalize(pixels)
    torch.testing.assert_close(out, reference.float())
    converted_first = clip_preprocess.preprocess_pil([rgba.convert("RGB")], 32)
    assert (converted_first - out).abs().max() > 0.1
