"""Training-pixel sampling for the pixel classifiers, on the feature grid.

Labels are brought to the ``downsample``-times smaller feature grid by block
majority (:func:`coarse_labels`), and :func:`sample_pixels` draws a seeded,
class-balanced sample in which pixels near the WBC boundary are likelier to be
drawn: the boundary is where the classes are hard to tell apart, while the
interior of a red cell is easy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from baselines.features import downsample_mean

__all__ = ["pad_to_multiple", "coarse_labels", "sample_pixels"]


def pad_to_multiple(array: np.ndarray, factor: int) -> np.ndarray:
    """Mirror-pad the bottom and right edges so H and W are multiples of ``factor``."""
    h, w = array.shape[:2]
    ph, pw = (-h) % factor, (-w) % factor
    if ph == 0 and pw == 0:
        return array
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, mode="symmetric")


def coarse_labels(mask: np.ndarray, factor: int) -> np.ndarray:
    """Majority label of each ``factor`` x ``factor`` block, shape (H/f, W/f), bool."""
    return downsample_mean(pad_to_multiple(mask, factor), factor) >= 0.5


def _boundary_band(labels: np.ndarray, width: float) -> np.ndarray:
    """Pixels within ``width`` (coarse px) of the foreground/background boundary."""
    if labels.all() or not labels.any():
        return np.zeros_like(labels)
    inside = ndi.distance_transform_edt(labels)
    outside = ndi.distance_transform_edt(~labels)
    return np.where(labels, inside, outside) <= width


def sample_pixels(
    labels: Sequence[np.ndarray],
    n_samples: int,
    *,
    boundary_width: float,
    boundary_weight: float,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Seeded, class-balanced pixel sampling that favours the boundary.

    Parameters
    ----------
    labels : sequence of ndarray, each (h, w) bool
        Per-image labels on the feature grid.
    n_samples : int
        Total pixels to draw, half per class (fewer if a class has fewer
        pixels; all pixels if there are fewer than ``n_samples``).
    boundary_width : float
        Band half-width in grid pixels.
    boundary_weight : float
        Relative sampling weight of band pixels (1 = uniform within a class).
    rng : numpy.random.Generator

    Returns
    -------
    list of ndarray, int64
        For each image, the flat indices of its drawn pixels, sorted.
    """
    flat = np.concatenate([lab.ravel() for lab in labels])
    weights = np.concatenate(
        [np.where(_boundary_band(lab, boundary_width), boundary_weight, 1.0).ravel() for lab in labels]
    )
    chosen = []
    for cls in (False, True):
        idx = np.flatnonzero(flat == cls)
        take = min(len(idx), n_samples // 2)
        if take == 0:
            continue
        p = weights[idx] / weights[idx].sum()
        chosen.append(rng.choice(idx, size=take, replace=False, p=p))
    picked = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
    offsets = np.cumsum([0] + [lab.size for lab in labels])
    return [picked[(picked >= a) & (picked < b)] - a for a, b in zip(offsets[:-1], offsets[1:])]

