"""Statistics for the summary and the report: bootstrap intervals, paired tests."""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_ci"]


def bootstrap_ci(values, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean over images.

    Parameters
    ----------
    values : array_like, shape (n,)
        Per-image scores; NaN entries (undefined scores) are left out.
    n_boot : int, keyword-only
        Resamples.
    level : float, keyword-only
        Coverage, e.g. 0.95.
    seed : int, keyword-only
        Seed of the resampling, so intervals are reproducible.

    Returns
    -------
    (float, float)
        Lower and upper bound; NaN for no values, the value itself for one.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)
