"""Prompt sets through `datasets`: shipped sets, comments dropped, the DrawBench subset DPOK used."""

import pytest

from bench.errors import BenchError
from bench.evaluations.prompt_sets import load_prompt_dataset
from bench.prompts import load_prompts, shipped_file


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "hf")


def test_drawbench_subset_has_183_prompts_in_nine_categories(cache):
    data = load_prompt_dataset("drawbench-dpok", cache_dir=cache)
    assert len(data) == 183 and len(set(data["prompt"])) == 183
    counts = {c: data["category"].count(c) for c in set(data["category"])}
    assert counts == {"Colors": 25, "Conflicting": 10, "Counting": 19, "DALL-E": 20, "Descriptions": 20,
                      "Gary Marcus et al.": 10, "Positional": 20, "Reddit": 38, "Text": 21}  # fmt: skip
    assert data[0] == {"prompt": "A red colored car.", "category": "Colors"}
    # the project's own loader reads the same file (by path: its named sets are .txt only for now)
    assert data["prompt"] == load_prompts(str(shipped_file("drawbench-dpok")))


def test_text_sets_drop_comments(cache, tmp_path):
    data = load_prompt_dataset("occupations-bias-v1", cache_dir=cache)
    assert len(data) == 20 and data[0]["prompt"] == "a photo of a doctor"
    assert load_prompt_dataset("dpok-single", cache_dir=cache)["prompt"] == [
        "A green colored rabbit.", "A cat and a dog.", "Four wolves in the park.", "A dog on the moon."]  # fmt: skip
    path = tmp_path / "mine.jsonl"
    path.write_text('# a comment\n{"prompt": "a cat", "tag": 1}\n\n{"prompt": "a dog", "tag": 2}\n')
    assert load_prompt_dataset(str(path), cache_dir=cache)["tag"] == [1, 2]


def test_bad_specs_are_one_line_errors(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(BenchError, match="no-such-set-xyz"):
        load_prompt_dataset("no-such-set-xyz", cache_dir=cache)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no prompt field"}\n')
    with pytest.raises(BenchError, match='needs a "prompt" field'):
        load_prompt_dataset(str(bad), cache_dir=cache)


def test_load_prompts_routes_dataset_names_through_datasets(monkeypatch, tmp_path):
    from bench.errors import BenchError
    from bench.prompts import load_prompts

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(BenchError, match="prompt set 'someone/prompts' is neither a shipped set, a file, nor"):
        load_prompts("someone/prompts")
    assert load_prompts("drawbench-dpok")[:1] and len(load_prompts("drawbench-dpok")) == 183
