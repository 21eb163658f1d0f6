"""Per-image stain normalisation anchored on the nuclei.

After the white balance (:mod:`stain.normalise`) an image's background looks
like the training images', but its stains may not: a rapid stain colours
nuclei brownish-purple and leaves cytoplasm faint.  The darkest lit pixels of
a blood smear are nuclei (see :func:`stain.normalise.stain_direction`), so
their mean optical-density (OD) vector is a stable anchor, unlike the
percentile angles of Macenko's method, which in a field of red cells pick
red-cell and cytoplasm directions as often as the nucleus's.

:func:`anchor_matrix` builds one linear map of OD space that turns the
image's nuclear OD vector into the training images' mean: the smallest
rotation between the two directions and, optionally, a gain that matches
their lengths (clipped, because the nuclei of one 120-px crop may really be
paler than the average).  :func:`apply_density_map` applies it to every
pixel; zero density (the background) stays where the white balance put it::

    OD  = max(0, -log((I + 1) / (I0 + 1)))
    I'  = (I0 + 1) * exp(-max(0, M @ OD)) - 1
"""

from __future__ import annotations

import numpy as np

from stain.normalise import channel_density, darkest_lit_pixels
from tiling.validation import check_image

__all__ = ["GAIN_RANGE", "nucleus_density", "anchor_matrix", "apply_density_map"]

#: Bounds of the density gain of :func:`anchor_matrix`.
GAIN_RANGE = (0.7, 1.6)

#: Pixels per chunk in :func:`apply_density_map`; bounds the float32
#: temporaries to a few tens of megabytes whatever the image size.
_CHUNK = 1 << 20


def nucleus_density(image: np.ndarray, background, *, dark: np.ndarray | None = None) -> np.ndarray | None:
    """Mean OD vector of an image's darkest lit pixels (its nuclei) against ``background``.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        White-balanced RGB image.
    background : array-like, shape (3,)
        Colour of unstained glass (RGB, 0-255) the densities are measured against.
    dark : ndarray, shape (N, 3), optional, keyword-only
        The image's :func:`stain.normalise.darkest_lit_pixels` when already computed.

    Returns
    -------
    ndarray, shape (3,), float64, or None when the image has no lit pixels
        Natural-log optical densities in R, G, B; the length is the nuclei's
        stain strength, the direction their colour.
    """
    if dark is None:
        dark = darkest_lit_pixels(image)
    if dark is None:
        return None
    return channel_density(dark, background).astype(np.float64).mean(axis=0)


def _rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation (3, 3) taking the direction of ``a`` to that of ``b`` (Rodrigues' formula)."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    axis = np.cross(a, b)
    sin, cos = float(np.linalg.norm(axis)), float(np.dot(a, b))
    if sin < 1e-9:
        return np.eye(3)
    k = axis / sin
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + sin * cross + (1.0 - cos) * cross @ cross


def anchor_matrix(observed: np.ndarray | None, reference: np.ndarray, *, rotate: bool = True,
                  gain: bool = True, gain_range: tuple[float, float] = GAIN_RANGE) -> np.ndarray:
    """Linear map of OD space taking an image's nuclear OD vector towards ``reference``.

    Parameters
    ----------
    observed : ndarray, shape (3,), or None
        The image's :func:`nucleus_density`; None (no lit pixels) gives the identity.
    reference : ndarray, shape (3,)
        The training images' mean nuclear OD vector.
    rotate : bool
        Turn the observed direction onto the reference direction.
    gain : bool
        Scale densities by ``|reference| / |observed|``, clipped to ``gain_range``.
    gain_range : (float, float)

    Returns
    -------
    ndarray, shape (3, 3), float64
        ``M`` with ``M @ od`` the anchored density of a pixel.
    """
    matrix = np.eye(3)
    if observed is None or not np.all(np.isfinite(observed)) or np.linalg.norm(observed) < 1e-6:
        return matrix
    reference = np.asarray(reference, np.float64)
    if rotate:
        matrix = _rotation(observed, reference)
    if gain:
        matrix = matrix * float(np.clip(np.linalg.norm(reference) / np.linalg.norm(observed), *gain_range))
    return matrix


def apply_density_map(image: np.ndarray, background, matrix: np.ndarray) -> np.ndarray:
    """Rebuild an RGB image with every pixel's OD mapped by ``matrix``.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    background : array-like, shape (3,)
        Colour of unstained glass, the zero of optical density.
    matrix : ndarray, shape (3, 3)
        From :func:`anchor_matrix`; the identity returns a copy of ``image``.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    image = check_image(np.asarray(image), "apply_density_map's image")
    if np.allclose(matrix, np.eye(3)):
        return image.copy()
    m = np.asarray(matrix, np.float32).T
    if not np.any(m - np.diag(np.diag(m))):
        # A diagonal map (the gain alone, the default anchor) maps each
        # channel's 256 levels on their own: one lookup per pixel instead of
        # a log, a product and an exp, with the same float32 arithmetic.
        levels = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
        table = _rebuild(levels, background, m)
        out = np.empty_like(image)
        for c in range(3):
            np.take(table[:, c], image[..., c], out=out[..., c])
        return out
    flat = image.reshape(-1, 3)
    out = np.empty_like(flat)
    for start in range(0, len(flat), _CHUNK):
        out[start:start + _CHUNK] = _rebuild(flat[start:start + _CHUNK], background, m)
    return out.reshape(image.shape)


def _rebuild(pixels: np.ndarray, background, m: np.ndarray) -> np.ndarray:
    """``pixels`` (N, 3) uint8 with their OD row vectors multiplied by ``m`` (3, 3) float32; (N, 3) uint8."""
    bg1 = np.asarray(background, np.float32).reshape(1, 3) + np.float32(1.0)
    od = np.maximum(channel_density(pixels, background) @ m, 0.0)
    np.exp(-od, out=od)
    od *= bg1
    od -= 1.0
    np.clip(np.rint(od, out=od), 0, 255, out=od)
    return od.astype(np.uint8)
