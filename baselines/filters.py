"""The filters of :class:`baselines.features.FeatureBank`, each with its reach.

Two kinds, all with symmetric mirroring at the border (``mode="reflect"`` in
:mod:`scipy.ndimage`):

* Gaussian-derivative filters on one channel (``gauss``, ``gradmag``,
  ``log``, ``dog``, ``hessian``, ``structure``), ilastik's set;
* filters of the already Gaussian-smoothed channels (``gradmag_fd``,
  ``log_fd``, ``max``, ``min``, see :data:`SMOOTHED_FILTERS`), which take a
  stack ``(..., h, w)`` of channels and cost a few array passes each.

:data:`FILTERS` gives each filter's function, output suffixes and reach, the
grid pixels beyond which a pixel's response is unaffected; the bank's tile
context is built from those reaches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

__all__ = ["FILTERS", "SMOOTHED_FILTERS", "gaussian_radius"]


def gaussian_radius(sigma: float) -> int:
    """Kernel radius scipy uses for a Gaussian with the default ``truncate=4``."""
    return int(4.0 * sigma + 0.5)


def _gauss(x: np.ndarray, s: float) -> np.ndarray:
    return ndi.gaussian_filter(x, s, mode="reflect")


def _gradient_magnitude(x: np.ndarray, s: float) -> np.ndarray:
    return ndi.gaussian_gradient_magnitude(x, s, mode="reflect")


def _log(x: np.ndarray, s: float) -> np.ndarray:
    # Scale-normalised so responses at different sigmas are comparable.
    return ndi.gaussian_laplace(x, s, mode="reflect") * np.float32(s * s)


def _dog(x: np.ndarray, s: float) -> np.ndarray:
    # ilastik's DoG: G(s) - G(0.66 s).
    return _gauss(x, s) - _gauss(x, 0.66 * s)


def _hessian_eigen(x: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (larger, smaller) of the scale-normalised Hessian."""
    hrr = ndi.gaussian_filter(x, s, order=(2, 0), mode="reflect")
    hcc = ndi.gaussian_filter(x, s, order=(0, 2), mode="reflect")
    hrc = ndi.gaussian_filter(x, s, order=(1, 1), mode="reflect")
    half_trace = 0.5 * (hrr + hcc)
    root = np.sqrt(0.25 * (hrr - hcc) ** 2 + hrc**2)
    scale = np.float32(s * s)
    return (half_trace + root) * scale, (half_trace - root) * scale


def _structure_eigen(x: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (larger, smaller) of the structure tensor (gradient at s/2, window s)."""
    gr = ndi.gaussian_filter(x, 0.5 * s, order=(1, 0), mode="reflect")
    gc = ndi.gaussian_filter(x, 0.5 * s, order=(0, 1), mode="reflect")
    jrr, jcc, jrc = _gauss(gr * gr, s), _gauss(gc * gc, s), _gauss(gr * gc, s)
    half_trace = 0.5 * (jrr + jcc)
    root = np.sqrt(0.25 * (jrr - jcc) ** 2 + jrc**2)
    return half_trace + root, half_trace - root


def _pad1(g: np.ndarray) -> np.ndarray:
    """One pixel of symmetric padding on the last two (spatial) axes (scipy's ``reflect``).

    Slice assignment rather than :func:`numpy.pad`, whose Python overhead
    dominated on a 64 x 64 grid.
    """
    h, w = g.shape[-2:]
    p = np.empty(g.shape[:-2] + (h + 2, w + 2), g.dtype)
    p[..., 1:-1, 1:-1] = g
    p[..., 0, 1:-1], p[..., -1, 1:-1] = g[..., 0, :], g[..., -1, :]
    p[..., :, 0], p[..., :, -1] = p[..., :, 1], p[..., :, -2]
    return p


def _gradmag_fd(smoothed: np.ndarray, s: float) -> np.ndarray:
    """Gradient magnitude of Gaussian-smoothed channels ``(..., h, w)`` by central differences."""
    p = _pad1(smoothed)
    gr = p[..., 2:, 1:-1] - p[..., :-2, 1:-1]
    gc = p[..., 1:-1, 2:] - p[..., 1:-1, :-2]
    return np.float32(0.5) * np.sqrt(gr * gr + gc * gc)


def _log_fd(smoothed: np.ndarray, s: float) -> np.ndarray:
    """Scale-normalised 5-point Laplacian of Gaussian-smoothed channels ``(..., h, w)``."""
    p = _pad1(smoothed)
    lap = p[..., 2:, 1:-1] + p[..., :-2, 1:-1] + p[..., 1:-1, 2:] + p[..., 1:-1, :-2] - np.float32(4) * p[..., 1:-1, 1:-1]
    return lap * np.float32(s * s)


def _window(s: float) -> int:
    """Half-side, in grid pixels, of the square window of ``max`` / ``min`` at scale ``s``."""
    return int(round(4.0 * s))


def _max_fd(smoothed: np.ndarray, s: float) -> np.ndarray:
    """Largest value of Gaussian-smoothed channels ``(..., h, w)`` within ``4 s`` grid px."""
    side = 2 * _window(s) + 1
    return ndi.maximum_filter(smoothed, size=(1,) * (smoothed.ndim - 2) + (side, side), mode="reflect")


def _min_fd(smoothed: np.ndarray, s: float) -> np.ndarray:
    """Smallest value of Gaussian-smoothed channels ``(..., h, w)`` within ``4 s`` grid px."""
    side = 2 * _window(s) + 1
    return ndi.minimum_filter(smoothed, size=(1,) * (smoothed.ndim - 2) + (side, side), mode="reflect")


# Filters computed from the Gaussian-smoothed channel the bank already has for
# ``gauss``: one Gaussian per (channel, sigma) instead of two to four
# derivative-of-Gaussian passes, and all channels smoothed in one scipy call.
# They approximate ``gradmag`` / ``log`` (exact for slowly varying images) at a
# fraction of the cost; the forest does not need the exact operator.
SMOOTHED_FILTERS = {"gradmag_fd": _gradmag_fd, "log_fd": _log_fd, "max": _max_fd, "min": _min_fd}

#: name -> (function returning one array or a tuple of arrays, output suffixes, reach in coarse px)
FILTERS: dict[str, tuple[Callable, tuple[str, ...], Callable[[float], int]]] = {
    "gauss": (_gauss, ("",), gaussian_radius),
    "gradmag": (_gradient_magnitude, ("",), gaussian_radius),
    "log": (_log, ("",), gaussian_radius),
    "dog": (_dog, ("",), gaussian_radius),
    "hessian": (_hessian_eigen, ("_e1", "_e2"), gaussian_radius),
    "structure": (_structure_eigen, ("_e1", "_e2"), lambda s: gaussian_radius(0.5 * s) + gaussian_radius(s)),
    "gradmag_fd": (_gradmag_fd, ("",), lambda s: gaussian_radius(s) + 1),
    "log_fd": (_log_fd, ("",), lambda s: gaussian_radius(s) + 1),
    "max": (_max_fd, ("",), lambda s: gaussian_radius(s) + _window(s)),
    "min": (_min_fd, ("",), lambda s: gaussian_radius(s) + _window(s)),
}
