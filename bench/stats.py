"""Statistics shared by evaluation, tables and the model cards (no torch import: tables stay light)."""

from __future__ import annotations

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
    alpha = (1 - level) / 2
    return float(values.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_difference_ci(after, before, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of after - before over matched (prompt, seed) pairs, with a bootstrap interval over the pairs."""
    return bootstrap_ci(np.asarray(after, float) - np.asarray(before, float), n_boot=n_boot, seed=seed)
