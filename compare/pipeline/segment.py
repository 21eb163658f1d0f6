"""The segment stage: the WBC probability of an image in the training colours, at the scale chosen for it.

The white-balanced image is resized by the scale stage's factor, then its
nuclear stain is anchored (after resizing: the map is per pixel, so a 3x
image is anchored at 1x), and the segmenter reads it in bounded-memory blocks
(:func:`compare.pipeline.blocks.predict_proba_blocked`).  When the scale
stage's probe already segmented the image at its own scale and that is the
scale kept, its probability map is used as it is.

A segmenter whose registry entry asks for it (``views_when_shrunk``, the
U-Nets) reads an image shrunk to :data:`VIEWS_MAX_FACTOR` or below in its
eight dihedral views, averaged (its ``with_views("d4")``, for the U-Net
:mod:`unet.views`): a crop of a large cell, shrunk to the training scale,
is a small image where the network's answer still depends on the cell's
orientation, and averaging takes that dependence out.  The probe's trial
maps are read in one view only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from compare.pipeline.blocks import predict_proba_blocked, resize_rgb, scaled_shape
from compare.pipeline.colour import Colour

__all__ = ["VIEWS_MAX_FACTOR", "Segmentation", "segment"]

#: At this resize factor or below, a ``views_when_shrunk`` segmenter reads the
#: working image in its eight dihedral views: the image then has a quarter of
#: the pixels of the one given or fewer, so the eight reads cost at most two
#: at its own size (the bound :data:`unet.segmenter.FLIPS_MAX_ZOOM` puts on a
#: fine-tuned network's views).
VIEWS_MAX_FACTOR = 0.5


@dataclass(frozen=True)
class Segmentation:
    """What the segment stage hands on, at the working scale.

    Attributes
    ----------
    image : ndarray, shape (h, w, 3), uint8
        The white-balanced image at the working scale, not anchored: the
        nucleus check was tuned on white-balanced colours, and the anchor's
        gain would move its dark limits.
    probability : ndarray, shape (h, w), float32
        WBC probability.
    factor : float
        The resize factor from the image's own size (1.0: none).
    """

    image: np.ndarray
    probability: np.ndarray
    factor: float


def segment(colour: Colour, factor: float, segmenter: Any, *, at_own_scale: np.ndarray | None = None,
            map_blocks: Callable | None = None, views: bool = False) -> Segmentation:
    """The segment stage.

    Parameters
    ----------
    colour : Colour
        The colour stage's result.
    factor : float
        The scale stage's applied factor (:attr:`compare.pipeline.scale.ScaleChoice.applied`).
    segmenter : object with ``predict_proba``
    at_own_scale : ndarray, shape (H, W), float32, optional, keyword-only
        The probability the scale stage's probe computed at factor 1; used
        when ``factor`` is 1 and no ``map_blocks`` is given.
    map_blocks : callable, optional, keyword-only
        See :func:`compare.pipeline.blocks.predict_proba_blocked`.
    views : bool, keyword-only
        Read the image in its eight dihedral views, averaged, when ``factor``
        is at most :data:`VIEWS_MAX_FACTOR` (the registry's
        ``views_when_shrunk``); the segmenter must then have
        ``with_views(tta)``, returning itself predicting with those views.
        Such an image is read here even when ``map_blocks`` is given.

    Returns
    -------
    Segmentation
    """
    work = colour.balanced
    if factor != 1.0:
        work = resize_rgb(work, scaled_shape(work.shape, factor))
    if factor == 1.0 and at_own_scale is not None and map_blocks is None:
        prob = at_own_scale
    elif views and factor <= VIEWS_MAX_FACTOR:
        # Read here, not by map_blocks: a cluster's workers hold the segmenter
        # as it is, and a shrunk image has a quarter of the pixels or fewer.
        prob = predict_proba_blocked(segmenter.with_views("d4"), colour.anchored(work))
    else:
        prob = predict_proba_blocked(segmenter, colour.anchored(work), map_blocks=map_blocks)
    return Segmentation(image=work, probability=prob, factor=factor)
