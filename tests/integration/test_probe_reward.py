"""`bench shapes probe-reward`: a reward's per-prompt agreement with the oracle and its near misses."""

from __future__ import annotations

import pytest
import torch
from cli_helpers import run_cli

from bench.models import load_pipeline
from bench.scoring import Scorer
from bench.shapes.grammar import parse
from bench.shapes.oracle import ShapesOracle
from bench.shapes.paths import MODEL as SHAPES_MODEL
from bench.shapes.probe import near_misses, probe_prompt


class Inverted(Scorer):
    """1 - oracle: a reward that orders every pair the wrong way."""

    name = "inverted-oracle"

    def __init__(self, device="cpu"):
        super().__init__(device)
        self.oracle = ShapesOracle()

    def score(self, images, prompts, metadata=None):
        return 1 - self.oracle(images, prompts)


@pytest.fixture(scope="module")
def shapes_pipe():
    return load_pipeline(str(SHAPES_MODEL))


def test_near_misses_are_distinct_one_edit_captions():
    misses = near_misses("a red circle and a blue square", 6)
    assert len(misses) == len(set(misses)) == 6
    assert "a red circle and a blue square" not in misses
    for text in misses:
        parse(text)  # each is a caption of the grammar


def test_the_oracle_as_its_own_reward_agrees_everywhere(shapes_pipe):
    oracle = ShapesOracle()
    row = probe_prompt(shapes_pipe, oracle, oracle, "four squares", samples=8, renders=4, edits=3)
    assert row["pairs"] > 0 and row["agreement"] == 1.0
    assert row["correct_reward"] == 1.0 and row["best_miss_gold"] < 1.0
    assert row["best_miss_reward"] == row["best_miss_gold"]  # the reward of a miss is its gold score here
    inverted = probe_prompt(shapes_pipe, Inverted(), oracle, "four squares", samples=8, renders=4, edits=3)
    assert inverted["agreement"] == 0.0 and inverted["pairs"] == row["pairs"]
    assert inverted["best_miss_reward"] > inverted["correct_reward"] == 0.0  # a miss outscores the truth


def test_cli_prints_one_row_per_prompt(capsys):
    code, out, err = run_cli(
        capsys,
        ["shapes", "probe-reward", "--prompts", "a yellow triangle|four squares", "--samples", "4", "--edits", "2"],
    )
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| a yellow triangle") or line.startswith("| four")]
    assert len(rows) == 2
    assert torch.isfinite(torch.tensor(float(rows[0].split("|")[2]))).item()  # samples' gold mean, a number


def test_cli_rejects_prompts_outside_the_grammar(capsys):
    code, _, err = run_cli(capsys, ["shapes", "probe-reward", "--prompts", "a photo of a cat", "--samples", "2"])
    assert code == 2 and "shapes grammar" in err


def test_captions_too_crowded_to_draw_are_skipped_not_fatal(shapes_pipe):
    # Eight objects do not fit in 32 px: the correct render is missing (nan); near misses that fit are scored.
    oracle = ShapesOracle()
    row = probe_prompt(shapes_pipe, oracle, oracle, "four circles and four squares", samples=2, renders=2, edits=8)
    assert row["correct_reward"] != row["correct_reward"]  # nan
    assert row["best_miss"] and row["best_miss_gold"] < 1.0
