"""Deterministic colour "looks" imitating other laboratories' smears (colour only, no resizing).

Each look works in optical-density (OD) space, where stains add: the image is
converted to ``OD = -log10(I / I0)`` with ``I0`` the image's own plasma
background (:func:`stain.normalise.background_colour`), split into
haematoxylin-like, eosin-like and residual concentrations with
scikit-image's HED stain matrix, and rebuilt with changed stain vectors and
concentrations under a new background ``I0'``::

    I' = I0' * 10 ** -(c_H * s_H * v_H' + c_E * s_E * v_E' + c_R * v_R)

With unchanged vectors, scales and background this gives the input back
(up to rounding), so every change below is a named, physical one:

* :func:`rapid_stain` -- a rapid (Diff-Quik-like) stain on a yellowish
  background: brownish-purple nuclei, faint red cells, lower contrast.
* :func:`cellavision` -- a bright, neutral high-magnification image: pale
  lilac cytoplasm (weak stain attenuated), crisp violet nuclei.
* :func:`camera` -- a consumer-camera field: bluer haematoxylin, bluish
  white point, vignetting, slight sensor noise (the only random part, fixed by
  ``seed``).

The shape of the image never changes.
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb_from_hed

from stain.normalise import background_colour

__all__ = ["to_density", "from_density", "restain", "rapid_stain", "cellavision", "camera", "LOOKS"]

#: scikit-image's stain OD vectors (rows: haematoxylin, eosin, DAB used here as a residual).
_STAINS = np.asarray(rgb_from_hed, dtype=np.float64)
_UNMIX = np.linalg.inv(_STAINS)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def to_density(image: np.ndarray, background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stain concentrations of an RGB image relative to its background.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    background : ndarray, shape (3,), optional
        ``I0``; estimated with :func:`background_colour` when omitted.

    Returns
    -------
    conc : ndarray, shape (H, W, 3), float32
        Concentrations of (haematoxylin, eosin, residual), unmixed with the
        HED matrix; exact, so :func:`from_density` inverts it.
    background : ndarray, shape (3,), float64
    """
    bg = background_colour(image) if background is None else np.asarray(background, np.float64)
    od = -np.log10(np.maximum(image.astype(np.float32), 1.0) / bg.astype(np.float32))
    # Pixels brighter than the background would get negative density; clamping
    # them to 0 treats them as unstained glass.
    od = np.maximum(od, 0.0)
    return od @ _UNMIX.astype(np.float32), bg


def from_density(conc: np.ndarray, background, stains: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 image from concentrations, stain OD vectors and a background.

    Parameters
    ----------
    conc : ndarray, shape (H, W, 3)
    background : array-like, shape (3,)
        Background colour ``I0'`` (RGB, 0-255).
    stains : ndarray, shape (3, 3), optional
        Stain OD vectors as rows; the HED matrix when omitted.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    m = _STAINS if stains is None else np.asarray(stains, np.float64)
    od = conc @ m.astype(np.float32)
    out = np.asarray(background, np.float32) * np.power(np.float32(10.0), -od)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def restain(image: np.ndarray, *, haematoxylin=None, eosin=None, scale_h: float = 1.0, scale_e: float = 1.0,
            pale: float = 0.0, background=None, gamma: float = 1.0, contrast: float = 1.0) -> np.ndarray:
    """Rebuild ``image`` with other stain vectors, concentrations and background.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    haematoxylin, eosin : array-like, shape (3,), optional
        New OD directions (absorption in R, G, B); normalised to the length of
        the originals.  Unchanged when omitted.
    scale_h, scale_e : float
        Concentration multipliers (stain strength).
    pale : float
        0 keeps weak stain as it is; towards 1 it attenuates weakly stained
        pixels (cytoplasm, plasma haze) more than strongly stained nuclei:
        every concentration is multiplied by ``1 - pale * exp(-total / 0.25)``.
    background : array-like, shape (3,), optional
        New background colour; the image's own when omitted.
    gamma, contrast : float
        Applied last on intensities in 0-1: ``I ** gamma`` and a stretch by
        ``contrast`` about the background (contrast < 1 flattens).

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    conc, bg = to_density(image)
    stains = _STAINS.copy()
    if haematoxylin is not None:
        stains[0] = _unit(haematoxylin) * np.linalg.norm(_STAINS[0])
    if eosin is not None:
        stains[1] = _unit(eosin) * np.linalg.norm(_STAINS[1])
    conc = conc * np.float32([scale_h, scale_e, 1.0])
    if pale:
        total = np.maximum(conc[..., :2], 0).sum(axis=-1, keepdims=True)
        conc = conc * (1.0 - pale * np.exp(-total / 0.25)).astype(np.float32)
    target = bg if background is None else np.asarray(background, np.float64)
    out = from_density(conc, target, stains).astype(np.float32) / 255.0
    if contrast != 1.0:
        # Stretch the optical density rather than the intensity, so the
        # background stays where it was put.
        ref = np.float32(target / 255.0)
        od = -np.log(np.maximum(out, 1e-3) / ref)
        out = ref * np.exp(-od * np.float32(contrast))
    if gamma != 1.0:
        out = np.power(np.clip(out, 0, 1), np.float32(gamma))
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def rapid_stain(image: np.ndarray) -> np.ndarray:
    """Imitate a rapid stain on a yellow background (lab A).

    Brownish-purple nuclei (haematoxylin direction absorbing more blue), red
    cells at 45 % of their eosin, a yellow background and slightly reduced
    contrast.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    return restain(image, haematoxylin=(0.58, 0.75, 0.40), eosin=(0.15, 0.80, 0.58), scale_h=0.95,
                   scale_e=0.45, background=(232, 218, 150), contrast=0.85)


def cellavision(image: np.ndarray) -> np.ndarray:
    """Imitate a CellaVision-style high-magnification image (lab B).

    Near-white neutral background, pale lilac cytoplasm (weak stain
    attenuated, eosin turned towards lilac), violet nuclei kept strong.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    return restain(image, haematoxylin=(0.55, 0.80, 0.24), eosin=(0.25, 0.90, 0.35), scale_h=1.05,
                   scale_e=0.8, pale=0.55, background=(246, 244, 248), gamma=0.95)


def camera(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """Imitate a consumer camera on a microscope (lab C).

    Bluer haematoxylin (absorbing mostly red), a bluish white point,
    vignetting (darker corners, centre offset drawn from ``seed``), slight
    contrast gain and sensor noise (sd 2.5 grey levels, drawn from ``seed``).

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    seed : int
        Fixes the vignetting centre and the noise.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    rng = np.random.default_rng(seed)
    out = restain(image, haematoxylin=(0.82, 0.55, 0.12), eosin=(0.22, 0.95, 0.25), scale_h=1.1, scale_e=0.9,
                  background=(214, 226, 240), contrast=1.1).astype(np.float32)
    h, w = out.shape[:2]
    cy, cx = (0.5 + rng.uniform(-0.1, 0.1, 2)) * (h, w)
    yy, xx = np.ogrid[:h, :w]
    r2 = ((yy - cy) / h) ** 2 + ((xx - cx) / w) ** 2
    out *= (1.0 - 0.35 * r2).astype(np.float32)[..., None]
    out += rng.normal(0.0, 2.5, out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


#: Name -> look taking ``(image, seed)``; the deterministic looks ignore the seed.
LOOKS = {
    "rapid": lambda image, seed=0: rapid_stain(image),
    "cellavision": lambda image, seed=0: cellavision(image),
    "camera": camera,
}
