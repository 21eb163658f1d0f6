"""Pixel metrics between a true and a predicted mask, per image.

Pure functions on boolean arrays.  Where a ratio has a zero denominator (two
empty masks, or an empty prediction for precision) the score is NaN rather than
0 or 1: it is undefined, and averages over images use ``np.nanmean``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["safe_divide", "confusion", "pixel_scores", "PIXEL_METRICS"]

#: Names of the scores :func:`pixel_scores` returns, in column order.
PIXEL_METRICS = ("dice", "iou", "precision", "recall")


def safe_divide(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN where the denominator is 0."""
    return float(numerator) / float(denominator) if denominator else float("nan")


def _check_pair(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.shape != pred.shape:
        raise ValueError(f"The true mask has shape {true.shape} but the prediction {pred.shape}; they must match.")
    if true.ndim != 2:
        raise ValueError(f"Masks must be 2-D (H, W), got {true.ndim} dimensions.")
    return true.astype(bool, copy=False), pred.astype(bool, copy=False)


def confusion(true: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """Pixel counts ``(tp, fp, fn)`` of a prediction against the truth.

    Parameters
    ----------
    true, pred : ndarray, shape (H, W), bool (or 0/1)
    """
    true, pred = _check_pair(true, pred)
    tp = int(np.count_nonzero(true & pred))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(true)) - tp
    return tp, fp, fn


def pixel_scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Dice (F1), IoU (Jaccard), precision and recall of the foreground.

    Parameters
    ----------
    true, pred : ndarray, shape (H, W), bool

    Returns
    -------
    dict
        ``{"dice", "iou", "precision", "recall"}`` as floats in [0, 1] or NaN.

    Examples
    --------
    >>> a = np.zeros((4, 4), bool); a[:2] = True
    >>> pixel_scores(a, a)["dice"]
    1.0
    """
    tp, fp, fn = confusion(true, pred)
    return {
        "dice": safe_divide(2 * tp, 2 * tp + fp + fn),
        "iou": safe_divide(tp, tp + fp + fn),
        "precision": safe_divide(tp, tp + fp),
        "recall": safe_divide(tp, tp + fn),
    }
