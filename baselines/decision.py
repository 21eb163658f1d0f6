"""Decision-threshold and class-prior adjustments of a probability map.

A pixel classifier trained on a class-balanced sample learns a 50/50 prior;
:func:`to_prior` shifts its odds back to the true foreground fraction, and
:func:`move_threshold` remaps probabilities so that a threshold learned out of
fold becomes 0.5, the threshold the instance stage applies.
"""

from __future__ import annotations

import numpy as np

__all__ = ["THRESHOLD_GRID", "to_prior", "move_threshold"]


def to_prior(prob: np.ndarray, sampled: float, true: float) -> np.ndarray:
    """Bayes prior shift: rescale the odds from the sampled to the true class prior.

    ``p' / (1 - p') = p / (1 - p) * [true / (1 - true)] / [sampled / (1 - sampled)]``.
    """
    ratio = (true / (1.0 - true)) / (sampled / (1.0 - sampled))
    prob = prob.astype(np.float32, copy=False)
    return prob * ratio / (prob * ratio + (1.0 - prob))


#: Candidate decision thresholds for ``threshold_folds`` tuning.
THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.3 + 0.025 * i, 3) for i in range(21))  # 0.3 ... 0.8


def move_threshold(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Monotone piecewise-linear map of [0, 1] onto itself sending ``threshold`` to 0.5.

    So ``move_threshold(p, t) >= 0.5`` exactly where ``p >= t`` (up to
    float rounding), and 0 and 1 stay fixed.
    """
    if threshold == 0.5:
        return prob
    t = np.float32(threshold)
    low = prob * (np.float32(0.5) / t)
    high = np.float32(0.5) + (prob - t) * (np.float32(0.5) / (np.float32(1) - t))
    return np.where(prob < t, low, high).astype(np.float32, copy=False)
