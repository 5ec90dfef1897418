"""Statistics shared by evaluation, tables and the model cards (no torch import: tables stay light)."""

from __future__ import annotations

import itertools

import numpy as np


def bootstrap_ci(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and a percentile bootstrap interval over ``values``.

    Resamples are drawn in chunks so that a cell of DrawBench size (183 prompts x 64 samples) never holds
    n_boot x n indices at once; one ``integers`` call per chunk draws the same stream as one big call.
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // len(values))
    means = np.concatenate(
        [values[rng.integers(0, len(values), (min(chunk, n_boot - i), len(values)))].mean(1)
         for i in range(0, n_boot, chunk)]
    )  # fmt: skip
    return _percentile_interval(values, means, level)


def _percentile_interval(values, means, level: float) -> tuple[float, float, float]:
    """The mean of ``values`` and the central ``level`` interval of the bootstrap ``means``."""
    alpha = (1 - level) / 2
    return float(np.mean(values)), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def cluster_bootstrap_ci(
    clusters, n_boot: int = 2000, seed: int = 0, level: float = 0.95, keys=None
) -> tuple[float, float, float]:
    """Mean over all values and a two-stage percentile bootstrap interval: resample the clusters (training runs of
    one method, which differ by seed) with replacement, then the images.

    Pooling the images of several training seeds into one flat bootstrap would treat them as independent and
    leave out how much the outcome varies from run to run (in a world with a gold measure, one seed's gold change can be
    +0.02 and another's +0.18). One cluster is exactly :func:`bootstrap_ci` (same numbers, same stream).

    ``keys`` (one sequence per cluster, as long as it) names the evaluation draw of each value, e.g. its (prompt,
    seed). Where the clusters share draws (every run of a study is scored on the same evaluation seeds), the design
    is crossed, and each resample draws the runs, then one set of draws shared by all of them: the images of one
    seed are alike from run to run, and resampling them run by run would count the evaluation seeds' spread as if
    each run had its own (three copies of one model would get an interval sqrt(3) narrower than the model's own). A
    draw that a run lacks (an image left out as NaN) is left out of that run's part of a resample. Resampling runs
    and draws independently counts their interaction in both stages, so the interval errs wide, as the two-stage
    one does. Without keys, when a cluster names a draw twice, or when a cluster holds at most half of all the
    clusters' draws (runs on different prompts), the images are resampled within each drawn cluster.
    """
    clusters = list(clusters)
    given = list(keys) if keys is not None else [None] * len(clusters)
    kept = [(np.asarray(c, dtype=float), k) for c, k in zip(clusters, given, strict=True) if len(c)]
    clusters = [c for c, _ in kept]
    if len(clusters) <= 1:
        return bootstrap_ci(clusters[0] if clusters else [], n_boot=n_boot, seed=seed, level=level)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(clusters), (n_boot, len(clusters)))
    means = np.empty(n_boot)
    crossed = _crossed(kept) if keys is not None else None
    if crossed is not None:  # runs x draws, one column per evaluation draw (NaN: a draw the run lacks)
        n, complete = crossed.shape[1], not np.isnan(crossed).any()
        for b, pick in enumerate(picks):
            drawn = crossed[pick][:, rng.integers(0, n, n)]
            means[b] = drawn.mean() if complete else np.nanmean(drawn)
    else:
        for b, pick in enumerate(picks):
            drawn = [clusters[c][rng.integers(0, len(clusters[c]), len(clusters[c]))] for c in pick]
            means[b] = sum(d.sum() for d in drawn) / sum(len(d) for d in drawn)
    return _percentile_interval(np.concatenate(clusters), means, level)


def _crossed(kept: list[tuple[np.ndarray, object]]) -> np.ndarray | None:
    """The clusters as a runs x draws matrix over every draw any of them holds (first seen, first column; NaN where
    a run lacks one), or None when a cluster names a draw twice or holds at most half of all the draws.

    Raises:
        ValueError: a cluster's keys are not as many as its values (a caller's bug, not a design to fall back on).
    """
    order: dict = {}
    rows = []
    for values, keys in kept:
        names = [_hashable(k) for k in keys]
        if len(names) != len(values):
            raise ValueError(f"cluster_bootstrap_ci: {len(values)} values but {len(names)} keys")
        if len(set(names)) != len(names):
            return None
        rows.append([order.setdefault(k, len(order)) for k in names])
    if min(len(r) for r in rows) * 2 <= len(order):  # runs on (mostly) different draws are not crossed
        return None
    matrix = np.full((len(kept), len(order)), np.nan)
    for row, ((values, _), cols) in enumerate(zip(kept, rows, strict=True)):
        matrix[row, cols] = values
    return matrix


def _hashable(key):
    return tuple(key) if isinstance(key, (list, np.ndarray)) else key


def paired_difference_ci(after, before, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of after - before over matched (prompt, seed) pairs, with a bootstrap interval over the pairs."""
    return bootstrap_ci(np.asarray(after, float) - np.asarray(before, float), n_boot=n_boot, seed=seed)


def pairwise_agreement(pred, gold, prompts) -> tuple[float, int]:
    """Share of same-prompt pairs with different oracle scores that the proxy orders like the oracle."""
    by_prompt: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        by_prompt.setdefault(p, []).append(i)
    agree = total = 0
    for idx in by_prompt.values():
        for i, j in itertools.combinations(idx, 2):
            if gold[i] != gold[j]:
                total += 1
                agree += (pred[i] > pred[j]) == (gold[i] > gold[j])
    return (agree / total if total else float("nan")), total
