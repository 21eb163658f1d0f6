"""Cytoplasm told by its colour alone: the pixels around a WBC that are unlike the plasma and unlike the red cells.

A segmenter trained on one lab's stain can be blind to another lab's pale
cytoplasm: its probability there is as low as on the plasma, so the outline
stage's uncertain band (:mod:`compare.pipeline.outline`) holds nothing to
grow into and the outline stays on the nucleus.  The cytoplasm is still
unlike the plasma: a little darker, redder and bluer.  So are the red cells,
which is why colour alone cannot draw the cell where red cells touch it.
:func:`plasma_contrast_cells` therefore takes, around each WBC, the pixels
whose colour is further from the plasma's than the plasma's own spread
allows, drops those nearer in colour to the red cells of the same
neighbourhood than to the plasma, and keeps what is connected to the WBC
only where the result is still one plausible cell:

* **the plasma** is the brighter half of the pixels near the WBC that the
  segmenter calls background for certain (below ``low``) and that lie
  clear of every WBC; its colour is their median, its spread their
  distances' median plus :data:`PLASMA_SPREAD` robust deviations;
* **the red cells** are the parts unlike the plasma in the neighbourhood
  that do not touch a WBC; where they cover at least
  :data:`MIN_RED_SHARE` of the WBC's area their median colour is the
  reference a pixel must be further from than from the plasma;
* **a cytoplasm missed**: what colour adds must be at least
  :data:`MIN_GAIN` of the WBC's area; smaller gains would only move an
  outline the segmenter drew;
* **one plausible cell**: the WBC with what it gains, holes filled, must
  be no wider than the largest WBC the scale stage accepts as whole
  (``max_diameter``), at least :data:`MIN_SOLIDITY` solid, and clear of
  the neighbourhood's edge unless the WBC already touches the image's
  border.  Otherwise the WBC gains nothing from colour.

The smoothed colour puts the cell's edge within a pixel or two of the
membrane; the outline stage (:func:`compare.pipeline.outline.outline_cells`)
keeps the inside of what colour adds as cell for certain and leaves that
margin to the watershed of the colour gradient, which puts the outline on
the membrane.  How the constants were chosen and what the band gains and
costs is in ``docs/experiments.md`` ("Pale cytoplasm told by its colour").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.color import rgb2lab
from skimage.measure import regionprops
from skimage.morphology import disk

__all__ = [
    "COLOUR_SIGMA",
    "MIN_CONTRAST",
    "MIN_RED_SHARE",
    "MIN_SOLIDITY",
    "PLASMA_SPREAD",
    "plasma_contrast_cells",
]

#: Robust deviations (1.4826 x MAD) of the plasma's colour distances above
#: their median at which a pixel stops being plasma.
PLASMA_SPREAD = 4.0

#: ... and never closer than this CIELAB distance: a flat, noiseless plasma
#: has no spread to speak of.
MIN_CONTRAST = 4.0

#: Red cells of the neighbourhood that cover less than this share of the
#: WBC's area are too few to give their colour.
MIN_RED_SHARE = 0.2

#: Area over convex-hull area below which the grown cell has run along
#: something that is not its own cytoplasm.
MIN_SOLIDITY = 0.85

#: Colour adds to a WBC only where it finds at least this share of the WBC's
#: area missing: it is for a cytoplasm the segmenter does not see, not for
#: moving an outline the segmenter drew, which on its own lab it draws
#: better (on SigTuple, colour would add up to 0.13 of a WBC, from red cells
#: touching it; docs/experiments.md).
MIN_GAIN = 0.15

#: Smoothing of the image, in pixels at the working scale, before colours
#: are compared: granules and camera noise are not the cell's colour.
COLOUR_SIGMA = 1.5


#: The opening that removes thin rims (2 px radius at the working scale).
_DISK = disk(2).astype(bool)


def _smoothed_lab(image: np.ndarray, sigma: float) -> np.ndarray:
    lab = rgb2lab(image)
    return np.stack([ndi.gaussian_filter(lab[..., channel], sigma) for channel in range(3)], axis=-1)


def plasma_contrast_cells(labels: np.ndarray, probability: np.ndarray, image: np.ndarray, *,
                          max_diameter: float, low: float = 0.2, sigma: float = COLOUR_SIGMA) -> np.ndarray:
    """Each WBC as far as its colour shows it: the WBC and the cytoplasm its colour says it has.

    Parameters
    ----------
    labels : ndarray, shape (h, w), int
        WBCs found by the instance stage, 0 background.
    probability : ndarray, shape (h, w), float
        The segmenter's WBC probability at the same scale.
    image : ndarray, shape (h, w, 3), uint8
        The image at the same scale.
    max_diameter : float, keyword-only
        Equivalent diameter, in pixels, beyond which a WBC with what it
        gains is not one cell; also sets how far around the WBC is looked
        at (the neighbourhood reaches that far past its bounding box).
    low : float, keyword-only
        Probability below which a pixel is background for certain (the
        outline stage's :data:`compare.pipeline.outline.OUTLINE_LOW`).
    sigma : float, keyword-only
        Smoothing of the colours, in pixels.

    Returns
    -------
    ndarray, shape (h, w), same dtype as ``labels``
        ``labels`` with each WBC that passes the tests grown by the pixels
        its colour adds (within ``sigma`` or so of the membrane: the
        colours are smoothed); the others as they were.
    """
    if labels.shape != probability.shape or image.shape[:2] != labels.shape:
        raise ValueError(f"plasma_contrast_cells: labels {labels.shape}, probability {probability.shape} and "
                         f"image {image.shape[:2]} must have the same height and width.")
    cells_by_colour = labels.copy()
    reach = int(np.ceil(max_diameter))
    height, width = labels.shape
    # Plasma is taken a few pixels clear of every WBC: the smoothed colour of
    # its rim is neither.
    clear = max(int(np.ceil(3 * sigma)), 1)
    for label, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        rows = slice(max(box[0].start - reach, 0), min(box[0].stop + reach, height))
        cols = slice(max(box[1].start - reach, 0), min(box[1].stop + reach, width))
        cells = labels[rows, cols]
        own = cells == label
        plasma = (probability[rows, cols] < low) & ~ndi.binary_dilation(cells > 0, iterations=clear)
        if plasma.sum() < own.sum() // 4 or plasma.sum() < 16:
            continue  # no plasma to compare with: a crop filled by its cell
        lab = _smoothed_lab(image[rows, cols], sigma)
        lightness = lab[..., 0][plasma]
        plasma &= lab[..., 0] >= np.median(lightness)  # the brighter half: red cells are darker
        colour = np.median(lab[plasma], axis=0)
        distance = np.linalg.norm(lab - colour, axis=-1)
        spread = distance[plasma]
        centre = np.median(spread)
        limit = max(MIN_CONTRAST, centre + PLASMA_SPREAD * 1.4826 * np.median(np.abs(spread - centre)))
        unlike = distance > limit
        parts, _ = ndi.label(unlike)
        touching = np.unique(parts[ndi.binary_dilation(cells > 0, iterations=2)])
        red = (parts > 0) & ~np.isin(parts, touching)
        red_like = np.zeros_like(unlike)
        if red.sum() >= MIN_RED_SHARE * own.sum():
            red_like = np.linalg.norm(lab - np.median(lab[red], axis=0), axis=-1) < distance
        # An opening drops what is too thin to be cytoplasm: the smoothed
        # rims of red cells, half plasma, read as neither and would ring
        # them or run along them.
        unlike = ndi.binary_opening(unlike & (cells == 0) & ~red_like, _DISK)
        grown, _ = ndi.label(unlike | own)
        cell = np.isin(grown, np.unique(grown[own]))
        # Holes are filled, except those holding red: a red cell's smoothed
        # rim, half plasma, reads as neither and can ring it.
        holes, _ = ndi.label(ndi.binary_fill_holes(cell) & ~cell)
        cell |= (holes > 0) & ~np.isin(holes, np.unique(holes[red_like]))
        if (cell & (cells > 0) & ~own).any():
            continue  # reaches another WBC
        # The neighbourhood's edges inside the image are never the cell's;
        # the image's border is, where the WBC itself touches it.
        edges = ((cell[0], own[0], rows.start == 0), (cell[-1], own[-1], rows.stop == height),
                 (cell[:, 0], own[:, 0], cols.start == 0), (cell[:, -1], own[:, -1], cols.stop == width))
        if any(grown_edge.any() and not (at_border and own_edge.any()) for grown_edge, own_edge, at_border in edges):
            continue  # runs out of the neighbourhood
        if (cell & ~own).sum() < MIN_GAIN * own.sum():
            continue  # an outline to adjust, not a cytoplasm missed
        diameter = np.sqrt(4 * cell.sum() / np.pi)
        if diameter > max_diameter or regionprops(cell.astype(np.uint8))[0].solidity < MIN_SOLIDITY:
            continue
        gained = cells_by_colour[rows, cols]
        gained[cell & (gained == 0)] = label
    return cells_by_colour
