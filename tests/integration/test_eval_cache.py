"""The evaluation cache: a second run on the same prompts and seeds gets the pretrained model's rows and grids from
the cache, equal to what sampling gives; a changed key (seeds, scorer weights) or ``--no-cache`` samples again."""

from pathlib import Path

import pandas as pd
import torch
from cli_helpers import TINY_DPOK, run_cli

from bench import evalcache
from bench.scoring import Scorer

SCORERS = "compressibility,oversaturation"


def _train(capsys, tmp_path, tiny_sd, beta: str) -> Path:
    args = ["run", "--model", str(tiny_sd), "--steps", "1", "--results-dir", str(tmp_path / "runs"), "--beta", beta,
            "--lr", "0.05", "--prompts", "a red circle|a blue square"] + TINY_DPOK  # fmt: skip
    code, out, err = run_cli(capsys, args)
    assert code == 0, err
    return Path(out.strip().splitlines()[-1].removeprefix("run folder: "))


def _eval(capsys, run_dir, *extra) -> str:
    code, out, err = run_cli(capsys, ["eval", str(run_dir), "--samples", "3", "--scorers", SCORERS, *extra])
    assert code == 0, err
    return out


def _step0(run_dir: Path) -> pd.DataFrame:
    df = pd.read_parquet(run_dir / "eval.parquet")
    return df[df.step == 0].drop(columns="run").sort_values(["scorer", "prompt", "seed"]).reset_index(drop=True)


def test_a_second_run_reads_the_pretrained_rows_from_the_cache(capsys, tmp_path, tiny_sd, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("BENCH_EVAL_CACHE", str(cache))
    first, second = _train(capsys, tmp_path, tiny_sd, "0.01"), _train(capsys, tmp_path, tiny_sd, "0.5")
    assert "evaluation cache" not in _eval(capsys, first)
    assert len(list(cache.iterdir())) == 1
    assert "12 scores from the evaluation cache" in _eval(capsys, second)
    pd.testing.assert_frame_equal(_step0(first), _step0(second))
    for grid in (first / "samples" / "step0").glob("*.png"):
        assert grid.read_bytes() == (second / "samples" / "step0" / grid.name).read_bytes()
    # what the cache returned is what sampling returns: the same run scored again without it
    cached = _step0(second)
    assert "evaluation cache" not in _eval(capsys, second, "--no-cache")
    pd.testing.assert_frame_equal(cached, _step0(second))
    # other seeds are another entry
    assert "evaluation cache" not in _eval(capsys, second, "--samples", "2")
    assert len(list(cache.iterdir())) == 2


def test_off_writes_nothing(capsys, tmp_path, tiny_sd, monkeypatch):
    monkeypatch.setenv("BENCH_EVAL_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    run = _train(capsys, tmp_path, tiny_sd, "0.01")
    _eval(capsys, run)
    _eval(capsys, run)
    assert evalcache.cache_root() is None and not (tmp_path / "xdg").exists()


class _Weighted(Scorer):
    name = "weighted-test"

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(2, 1)


def test_scorer_weights_are_part_of_the_key(tmp_path):
    scorer = _Weighted()
    before = evalcache.scorer_fingerprint(scorer)
    assert before == evalcache.scorer_fingerprint(scorer)
    with torch.no_grad():
        scorer.net.weight[0, 0] += 1e-6
    after = evalcache.scorer_fingerprint(scorer)
    assert before[:2] == after[:2] and before[2] != after[2]
    assert evalcache.entry_key(tmp_path / "no-such-model", {}, ["a"], 1, 64, [scorer]) is None
