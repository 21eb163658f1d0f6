"""Stain-vector normalisation (Macenko et al., ISBI 2009) after the white balance.

A white balance (:func:`stain.normalise.white_balance`) matches the plasma
background, but not the stains' own hues: a rapid stain's brownish nuclei stay
brown.  Beer-Lambert makes each pixel's optical density (OD) a mix of two stain
vectors, nuclear (haematoxylin-like: methylene blue / azure) and
eosin-like, with per-pixel concentrations.  :func:`estimate_stains` finds an
image's two vectors as the extreme directions of its stained pixels' OD in the
plane of their two main components (robust percentiles of the angle, as
Macenko does), :func:`unmix` gives each pixel's concentrations, and
:func:`normalise_stains` rebuilds the image with a reference's vectors, its
concentration scale and its background, so that another lab's nuclei take the
training images' hue.

Nothing here has a size in pixels; the OD threshold and percentiles are the
published defaults, checked on the SigTuple images (``stain_reference`` of the
training patches: vectors within a few degrees of each other between images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stain.normalise import _as_rgb, background_colour

__all__ = ["StainReference", "estimate_stains", "unmix", "stain_reference", "normalise_stains"]

#: Pixels whose OD is below this in every channel are glass, not stain (Macenko's beta).
_MIN_OD = 0.15
#: Angle percentiles taken as the two stains' directions (Macenko's alpha).
_ANGLE_PERCENTILE = 1.0
#: Percentile of each stain's concentration matched between image and reference.
_CONC_PERCENTILE = 99.0
#: Fewer stained pixels than this (a blank field) and the image is left as it is.
_MIN_PIXELS = 500
#: At most this many pixels are used for the estimate (a regular subsample).
_MAX_SAMPLES = 200_000


@dataclass(frozen=True)
class StainReference:
    """The stains an image is normalised to.

    Attributes
    ----------
    stains : ndarray, shape (2, 3), float64
        Unit OD vectors (rows): nuclear stain first, then the eosin-like one.
    max_conc : ndarray, shape (2,), float64
        The :data:`_CONC_PERCENTILE` th percentile of each stain's concentration.
    background : ndarray, shape (3,), float64
        Plasma background colour, RGB 0-255.
    """

    stains: np.ndarray
    max_conc: np.ndarray
    background: np.ndarray

    def to_dict(self) -> dict:
        return {"stains": np.round(self.stains, 6).tolist(), "max_conc": np.round(self.max_conc, 6).tolist(),
                "background": np.round(self.background, 3).tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "StainReference":
        return cls(np.asarray(data["stains"], np.float64), np.asarray(data["max_conc"], np.float64),
                   np.asarray(data["background"], np.float64))


def _density(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """OD of every pixel against ``background``, shape (H*W, 3), float32, clamped at 0."""
    pixels = image.reshape(-1, 3).astype(np.float32)
    od = np.log(np.float32(background) + 1.0) - np.log(pixels + 1.0)
    return np.maximum(od, 0.0)


def estimate_stains(image: np.ndarray, background: np.ndarray | None = None) -> np.ndarray | None:
    """An image's two stain OD vectors, or None where too little is stained to tell.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    background : ndarray, shape (3,), optional
        Plasma colour; :func:`stain.normalise.background_colour` when omitted.

    Returns
    -------
    ndarray, shape (2, 3), float64, or None
        Unit vectors with non-negative entries: the nuclear stain (the one
        absorbing more red light relative to green) first.
    """
    image = _as_rgb(image, "estimate_stains")
    bg = background_colour(image) if background is None else np.asarray(background, np.float64)
    od = _density(image, bg)
    if len(od) > _MAX_SAMPLES:
        od = od[:: len(od) // _MAX_SAMPLES]
    od = od[(od > _MIN_OD).all(axis=1)].astype(np.float64)
    if len(od) < _MIN_PIXELS:
        return None
    # The plane of the two main directions of the stained pixels' OD.
    _, vectors = np.linalg.eigh(np.cov(od, rowvar=False))
    plane = vectors[:, [2, 1]]
    if plane[:, 0].sum() < 0:
        plane[:, 0] *= -1
    if plane[:, 1].sum() < 0:
        plane[:, 1] *= -1
    projected = od @ plane
    angle = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angle, [_ANGLE_PERCENTILE, 100.0 - _ANGLE_PERCENTILE])
    stains = np.stack([plane @ [np.cos(a), np.sin(a)] for a in (low, high)])
    stains = np.abs(stains) / np.linalg.norm(stains, axis=1, keepdims=True)
    # Nuclear stains (blue / purple / brown) absorb relatively more red than eosin does.
    if stains[0, 0] / max(stains[0, 1], 1e-6) < stains[1, 0] / max(stains[1, 1], 1e-6):
        stains = stains[::-1]
    if abs(float(np.dot(stains[0], stains[1]))) > 0.995:
        return None  # one stain only: the two directions cannot be told apart
    return stains


def unmix(od: np.ndarray, stains: np.ndarray) -> np.ndarray:
    """Least-squares concentrations of two stains, shape (n, 2), float32, for OD rows of shape (n, 3)."""
    unmixing = np.linalg.pinv(np.asarray(stains, np.float64).T).astype(np.float32)  # (2, 3)
    return od @ unmixing.T


def stain_reference(images: Sequence[np.ndarray]) -> StainReference | None:
    """The median stains, concentration scale and background of a set of training images.

    Parameters
    ----------
    images : sequence of ndarray (H, W, 3) uint8

    Returns
    -------
    StainReference or None
        None when no image had two measurable stains.
    """
    stains, conc, backgrounds = [], [], []
    for image in images:
        bg = background_colour(image)
        found = estimate_stains(image, bg)
        if found is None:
            continue
        stains.append(found)
        conc.append(np.percentile(unmix(_density(image, bg), found), _CONC_PERCENTILE, axis=0))
        backgrounds.append(bg)
    if not stains:
        return None
    median = np.median(np.stack(stains), axis=0)
    median /= np.linalg.norm(median, axis=1, keepdims=True)
    return StainReference(median, np.median(np.stack(conc), axis=0), np.median(np.stack(backgrounds), axis=0))


def normalise_stains(image: np.ndarray, reference: StainReference, *, match_concentration: bool = True) -> np.ndarray:
    """Rebuild ``image`` with the reference's stain vectors, concentration scale and background.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    reference : StainReference
    match_concentration : bool, keyword-only
        Also scale each stain's concentration so that its high percentile
        matches the reference's (Macenko); False keeps the image's own.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
        The image unchanged when its stains cannot be estimated
        (:func:`estimate_stains` returns None).
    """
    image = _as_rgb(image, "normalise_stains")
    bg = background_colour(image)
    stains = estimate_stains(image, bg)
    if stains is None:
        return image
    od = _density(image, bg)
    conc = unmix(od, stains)
    if match_concentration:
        sample = conc[:: max(1, len(conc) // _MAX_SAMPLES)]
        scale = reference.max_conc / np.maximum(np.percentile(sample, _CONC_PERCENTILE, axis=0), 1e-6)
        conc *= scale.astype(np.float32)
    rebuilt = np.float32(reference.background + 1.0) * np.exp(-(conc @ reference.stains.astype(np.float32))) - 1.0
    return np.clip(np.rint(rebuilt), 0, 255).astype(np.uint8).reshape(image.shape)
