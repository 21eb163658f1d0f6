"""Auto-context features: a stage-1 probability map seen at several scales.

Used by :class:`baselines.pixel.PixelClassifierSegmenter` with
``auto_context=True`` (see its Notes).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from baselines.filters import gaussian_radius

__all__ = ["CONTEXT_FILTERS", "context_features", "context_reach"]


#: Filters :func:`context_features` can apply to a probability map.
CONTEXT_FILTERS = ("gauss", "max", "min")


def context_features(prob: np.ndarray, sigmas: tuple[float, ...], filters: tuple[str, ...] = ("gauss",)) -> np.ndarray:
    """Auto-context features of a coarse-grid probability map.

    ilastik's auto-context feeds a second classifier the first one's
    prediction seen at several scales: a pixel whose neighbourhood is mostly
    "WBC" is likely WBC even where its own colour is ambiguous (pale
    cytoplasm next to the nucleus), and an isolated speck is likely not.

    Parameters
    ----------
    prob : ndarray, shape (h, w), float
        Stage-1 foreground probability on the feature grid.
    sigmas : tuple of float
        Scales in grid pixels.  ``gauss`` smooths with a Gaussian of that
        sigma; ``max`` / ``min`` take the extreme over a square of side
        ``2 * round(sigma) + 1`` (a cheap "is there WBC / background
        nearby" cue).
    filters : tuple of str
        Subset of :data:`CONTEXT_FILTERS`.

    Returns
    -------
    ndarray, shape (h, w, 1 + len(filters) * len(sigmas)), float32
        The raw probability first, then each filter at each sigma.
    """
    unknown = [f for f in filters if f not in CONTEXT_FILTERS]
    if unknown:
        raise ValueError(f"Unknown context filters {unknown}; known ones are {list(CONTEXT_FILTERS)}.")
    prob = np.ascontiguousarray(prob, dtype=np.float32)
    out = np.empty(prob.shape + (1 + len(filters) * len(sigmas),), np.float32)
    out[..., 0] = prob
    k = 1
    for filt in filters:
        for s in sigmas:
            if filt == "gauss":
                out[..., k] = ndi.gaussian_filter(prob, s, mode="reflect")
            else:
                size = 2 * int(round(s)) + 1
                func = ndi.maximum_filter if filt == "max" else ndi.minimum_filter
                out[..., k] = func(prob, size=size, mode="reflect")
            k += 1
    return out


def context_reach(sigmas: tuple[float, ...], filters: tuple[str, ...] = ("gauss",)) -> int:
    """Grid pixels beyond which :func:`context_features` ignores the map."""
    reach = 0
    for filt in filters:
        for s in sigmas:
            reach = max(reach, gaussian_radius(s) if filt == "gauss" else int(round(s)))
    return reach
