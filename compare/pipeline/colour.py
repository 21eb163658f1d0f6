"""The colour stage: an image brought to the training images' colours, and how far its stain is from theirs.

Every image (training and new) is white-balanced so that its plasma
background has the training images' background colour
(:func:`stain.normalise.white_balance`).  For the learned segmenters its
optical density is then scaled so that its nuclei are as densely stained as
the training images' (:mod:`stain.anchor`); those are also trained with stain
augmentation, so what these two steps leave is covered.  The darkest lit
pixels of the balanced image (its nuclei, :func:`stain.normalise.darkest_lit_pixels`)
give both the anchor's stain map and the colour check: an image whose nuclear
stain direction lies further from the training images' mean than
:attr:`ColourReference.warning_deg` carries a warning.

:func:`to_training_colours` is the stage :meth:`compare.pipeline.model.WBCModel.predict`
runs once per image; :func:`fit_background`, :func:`fit_nucleus_reference`
and :func:`fit_stain_direction` learn the :class:`ColourReference` from the
training images, and :func:`fit_stain_copies` draws their stain-augmented copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stain.anchor import anchor_matrix, apply_density_map, nucleus_density
from stain.normalise import angle_deg, background_colour, darkest_lit_pixels, stain_direction, white_balance

__all__ = [
    "STAIN_ANCHORS",
    "STAIN_DIRECTION_VERSION",
    "ColourReference",
    "Colour",
    "to_training_colours",
    "fit_background",
    "fit_nucleus_reference",
    "fit_stain_copies",
    "fit_stain_direction",
]

#: Values of ``WBCModel(stain_anchor=...)``: which parts of
#: :func:`stain.anchor.anchor_matrix` (turn, gain) are applied.
STAIN_ANCHORS = ("none", "rotate", "gain", "rotate+gain")
#: Version of :func:`stain.normalise.stain_direction`'s definition stored in
#: ``model.json``; a model saved with another has no colour check.
STAIN_DIRECTION_VERSION = 3
#: Smallest angle, in degrees, between an image's nuclear stain colour and the
#: training images' mean that may warn (see :func:`fit_stain_direction`).
_MIN_COLOUR_WARNING_DEG = 10.0
#: The warning angle is this multiple of the 95th percentile of the training
#: images' own angles.  Measured (``stain.normalise.stain_direction`` of the
#: white-balanced images, field-of-view rim left out): the 169 SigTuple
#: training images 95 % within 10.9 degrees (limit 13.6), its 61 unlabelled
#: test images within 15.1; the rapid-stain look at 13.6-16.4 (5th-95th
#: percentile over every 4th training image), the camera look at 11.1-26.5.
_COLOUR_WARNING_MARGIN = 1.25


@dataclass(frozen=True)
class ColourReference:
    """The training images' colours, as a fitted model holds them.

    Attributes
    ----------
    normalise : bool
        White-balance images to ``background``; False leaves them as they are.
    background : ndarray, shape (3,), float64
        Training background colour that images are balanced to.
    nucleus_reference : ndarray, shape (3,), float64, or None
        Mean nuclear optical-density vector of the balanced training images
        that images are anchored to; None when no anchor is applied.
    anchor : str
        One of :data:`STAIN_ANCHORS`.
    stain_direction : ndarray, shape (3,), float64
        Mean stain direction of the balanced training images.
    warning_deg : float
        Stain-direction angle beyond which an image carries a warning
        (infinite: no check).
    """

    normalise: bool
    background: np.ndarray
    nucleus_reference: np.ndarray | None
    anchor: str
    stain_direction: np.ndarray
    warning_deg: float


@dataclass(frozen=True)
class Colour:
    """One image in the training colours: what the colour stage hands on.

    Attributes
    ----------
    balanced : ndarray, shape (H, W, 3), uint8
        The white-balanced image (the image itself when colour is not normalised).
    background : ndarray, shape (3,), float64
        The background colour it was balanced to, the zero of optical density.
    stain_map : ndarray, shape (3, 3), float64, or None
        The optical-density map that anchors its nuclear stain
        (:func:`stain.anchor.anchor_matrix`); None when no anchor is applied.
    warnings : tuple of str
        The colour check's warning, when its stain is unlike the training images'.
    """

    balanced: np.ndarray
    background: np.ndarray
    stain_map: np.ndarray | None
    warnings: tuple[str, ...] = ()

    def anchored(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels`` (the balanced image or a resize of it, (h, w, 3) uint8) with the stain map applied.

        The map is per pixel, so it holds at any scale of the image; without
        an anchor ``pixels`` come back as they are.
        """
        if self.stain_map is None:
            return pixels
        return apply_density_map(pixels, self.background, self.stain_map)


def _stain_map(balanced: np.ndarray, dark: np.ndarray | None, background: np.ndarray,
               nucleus_reference: np.ndarray | None, anchor: str) -> np.ndarray | None:
    """The (3, 3) optical-density map that anchors a white-balanced image's nuclear stain; None when off."""
    if nucleus_reference is None:
        return None
    return anchor_matrix(nucleus_density(balanced, background, dark=dark), nucleus_reference,
                         rotate="rotate" in anchor, gain="gain" in anchor)


def to_training_colours(image: np.ndarray, reference: ColourReference) -> Colour:
    """The colour stage: white balance, stain map and colour check of one image.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    reference : ColourReference

    Returns
    -------
    Colour
    """
    balanced = white_balance(image, reference.background) if reference.normalise else image
    darkest = darkest_lit_pixels(balanced)  # its nuclei: for the stain map and the colour check
    stain_map = _stain_map(balanced, darkest, reference.background, reference.nucleus_reference, reference.anchor)
    warnings: tuple[str, ...] = ()
    direction = stain_direction(balanced, dark=darkest)
    if direction is not None:
        angle = angle_deg(direction, reference.stain_direction)
        if angle > reference.warning_deg:
            warning = (f"stain colours unlike the training images ({angle:.0f} degrees from them, "
                       f"{reference.warning_deg:.0f} allowed)")
            warnings = (warning,)
    return Colour(balanced=balanced, background=reference.background, stain_map=stain_map, warnings=warnings)


# -- fitting ---------------------------------------------------------------------

def fit_background(images: Sequence[np.ndarray],
                   normalise: bool) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray | None]]:
    """The training background colour, the white-balanced images and their darkest lit pixels.

    Parameters
    ----------
    images : sequence of ndarray, shape (H, W, 3), uint8
    normalise : bool
        False: the background is white and the images stay as they are.

    Returns
    -------
    background : ndarray, shape (3,), float64
    balanced : list of ndarray, shape (H, W, 3), uint8
    darkest : list of ndarray, shape (N, 3), uint8, or None
    """
    if normalise:
        background = np.median(np.stack([background_colour(im) for im in images]), axis=0)
        balanced = [white_balance(im, background) for im in images]
    else:
        background, balanced = np.full(3, 255.0), list(images)
    return background, balanced, [darkest_lit_pixels(im) for im in balanced]


def fit_nucleus_reference(balanced: Sequence[np.ndarray], darkest: Sequence[np.ndarray | None],
                          background: np.ndarray, normalise: bool,
                          anchor: str) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """The nuclear stain reference (None without an anchor) and the anchored training images.

    Parameters
    ----------
    balanced, darkest, background
        From :func:`fit_background`.
    normalise : bool
    anchor : str
        One of :data:`STAIN_ANCHORS`.

    Returns
    -------
    nucleus_reference : ndarray, shape (3,), float64, or None
    anchored : list of ndarray, shape (H, W, 3), uint8
    """
    reference = None
    if normalise and anchor != "none":
        vectors = [v for v in (nucleus_density(im, background, dark=d) for im, d in zip(balanced, darkest))
                   if v is not None]
        reference = np.mean(vectors, axis=0) if vectors else None
    colours = [Colour(im, background, _stain_map(im, d, background, reference, anchor))
               for im, d in zip(balanced, darkest)]
    return reference, [c.anchored(c.balanced) for c in colours]


def fit_stain_direction(balanced: Sequence[np.ndarray],
                        darkest: Sequence[np.ndarray | None]) -> tuple[np.ndarray, float]:
    """Mean stain direction of the white-balanced training images, and the angle that earns a warning.

    Returns
    -------
    direction : ndarray, shape (3,), float64
        Unit optical-density vector.
    warning_deg : float
        :data:`_COLOUR_WARNING_MARGIN` times the 95th percentile of the
        images' own angles to it, at least :data:`_MIN_COLOUR_WARNING_DEG`.
    """
    directions = [v for v in (stain_direction(im, dark=d) for im, d in zip(balanced, darkest)) if v is not None]
    mean = np.mean(directions, axis=0)
    mean = mean / np.linalg.norm(mean)
    angles = [angle_deg(d, mean) for d in directions]
    spread = _COLOUR_WARNING_MARGIN * float(np.percentile(angles, 95)) if angles else 0.0
    return mean, max(_MIN_COLOUR_WARNING_DEG, spread)


def fit_stain_copies(anchored: Sequence[np.ndarray], copies: int, strength: float,
                     random_state: int) -> list[np.ndarray]:
    """``copies`` stain-augmented versions of every anchored training image, drawn from the model's seed.

    Other labs' stains (:func:`stain.augment.random_stain`), for segmenters
    that learn colours without augmenting.

    Returns
    -------
    list of ndarray, shape (H, W, 3), uint8
        All images' first copy, then all images' second, and so on.
    """
    from stain.augment import random_stain

    rng = np.random.default_rng(random_state)
    return [random_stain(im, rng, strength=strength) for _ in range(copies) for im in anchored]
