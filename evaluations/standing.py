"""Where one run's draw stands: its gold change and its place among committed runs of the same protocol.

A seed is one draw (and so is a machine): a single run's gain says little until it is set beside other seeds of the
same protocol. ``standing_line`` gives the one line `make demo` prints after its table: whether the gold change's
95% interval (paired bootstrap over prompt x seed) excludes 0, and where the change falls among the committed
runs of the same protocol (runs whose configs differ at most by seed and bookkeeping; their changes measured
the same way, from their own eval.parquet).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.stats import paired_difference_ci


def gold_scorer(names: Sequence[str]) -> str:
    """The registered scorer among ``names`` whose ``gold`` attribute is set (the world's ground truth)."""
    from bench.evaluations.runs import gold_scorers

    gold = gold_scorers(names)
    if not gold:
        raise BenchError(f"none of the scored measures {sorted(names)} is a gold measure (Scorer.gold)")
    return gold[0]


def change(evals: pd.DataFrame, scorer: str, split: str = "train") -> tuple[float, float, float]:
    """Paired change, final step vs step 0, of ``scorer`` on ``split``: mean and 95% bootstrap interval."""
    part = evals[(evals.scorer == scorer) & (evals.split == split)]
    if part.empty:
        raise BenchError(f"no {scorer} rows on split {split!r}")
    from bench.evaluations.runs import paired_steps

    joined = paired_steps(part)
    return paired_difference_ci(joined.tuned, joined.base)


def same_protocol(a: Path, b: Path) -> bool:
    """Whether two runs differ at most by seed and bookkeeping (the keys tables never use to tell runs apart) and
    trained the same weights: a re-pretrained model keeps its name ("shapes") but is another protocol. Runs written
    before env.json recorded the weights (no fingerprint) match each other on their config alone, never a run that
    records its weights: theirs may have been any earlier model of the same name."""
    from bench.evaluations.runs import IGNORED_KEYS, flatten, read_config, recorded_fingerprint

    def key(run: Path) -> dict:
        config = read_config(run)
        kept = {k: v for k, v in flatten(config).items() if k.split(".")[0] not in IGNORED_KEYS}
        return {**kept, "method": config.get("method")}

    weights = recorded_fingerprint(a), recorded_fingerprint(b)
    return key(a) == key(b) and weights[0] == weights[1]


def _evals(run: Path) -> pd.DataFrame:
    path = Path(run) / "eval.parquet"
    if not path.is_file():
        raise BenchError(f"{run} has no eval.parquet (run `bench eval` on it first)")
    return pd.read_parquet(path)


def standing_line(run: str | Path, committed: Sequence[str | Path], split: str = "train") -> str:
    """One line: the run's gold change, whether its interval excludes 0, and its rank among ``committed`` runs."""
    evals = _evals(Path(run))
    scorer = gold_scorer(list(evals.scorer.unique()))
    mean, lo, hi = change(evals, scorer, split)
    verdict = "excludes 0 (a gain)" if lo > 0 else "excludes 0 (a loss)" if hi < 0 else "includes 0 (no change shown)"
    line = f"this run: gold ({scorer}) change {mean:+.3f} [{lo:+.3f}, {hi:+.3f}], the interval {verdict}"
    others = [Path(r) for r in committed if Path(r).resolve() != Path(run).resolve()]
    others = [r for r in others if same_protocol(r, Path(run))]
    if not others:
        return line + "; no committed runs of this protocol to compare with"
    means = np.array([change(_evals(r), scorer, split)[0] for r in others])
    below = int((means < mean).sum())
    return (
        f"{line}; {below} of the {len(means)} committed runs of this protocol gained less "
        f"(theirs: {', '.join(f'{m:+.3f}' for m in np.sort(means))}; median {np.median(means):+.3f})"
    )
