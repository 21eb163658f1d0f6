"""The outline stage: each WBC's edge moved out to the colour edge within the segmenter's uncertain band.

A segmenter trained on one lab's stain marks a WBC by the colours it
learned: where another lab's cytoplasm is paler, its probability there
falls between clear background and clear cell, and the outline at the
instance threshold follows the nucleus rather than the membrane.  The
membrane is still an edge in the image: plasma on one side, cytoplasm on
the other.  This stage lets each found WBC grow into the pixels of that
uncertain band, up to the strongest colour edge:

* the pixels whose probability is below :data:`OUTLINE_LOW` are background
  for certain; each WBC as the instance stage found it is cell for certain;
* a watershed of the colour gradient (the Sobel magnitude of the image in
  CIELAB, smoothed by :data:`OUTLINE_SIGMA` pixels, summed over L*, a*
  and b*) floods from both, so the pixels in between go to the side they
  reach first, and the outline settles on the largest colour change
  between them.

Where the segmenter does not see the cytoplasm at all, its probability there
is as low as the plasma's and the band holds nothing of it.
:func:`outline_cells`, the stage as the pipeline runs it, then adds the
cytoplasm that :mod:`compare.pipeline.plasma_contrast` tells by its colour:
its inside as cell for certain, a margin round its edge to the band.

A WBC only ever grows (its own pixels are its markers), into pixels
connected to it through the band, never across another WBC, and no new
object is made.  On the training lab the band is a pixel or two wide and
the outline hardly moves.  How the two constants were chosen, and what
the stage gains and costs on SigTuple, the synthetic shifts and the
CellaVision crops, is in ``docs/experiments.md`` ("The outline grown to
the colour edge").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.color import rgb2lab
from skimage.filters import gaussian, sobel
from skimage.segmentation import watershed

from compare.pipeline.plasma_contrast import COLOUR_SIGMA, plasma_contrast_cells

__all__ = ["OUTLINE_LOW", "OUTLINE_SIGMA", "colour_gradient", "grow_to_edges", "outline_cells"]

#: Probability below which a pixel is background for certain: the outer edge
#: of the band a WBC may grow into.
OUTLINE_LOW = 0.2

#: Smoothing of the image, in pixels at the working scale, before its
#: gradient is taken: granules and camera noise make edges of their own.
OUTLINE_SIGMA = 2.0


def colour_gradient(image: np.ndarray, sigma: float = OUTLINE_SIGMA) -> np.ndarray:
    """Summed Sobel magnitude of the smoothed L*, a*, b* channels.

    Parameters
    ----------
    image : ndarray, shape (h, w, 3), uint8
        RGB image.
    sigma : float
        Gaussian smoothing, in pixels, before the gradient.

    Returns
    -------
    ndarray, shape (h, w), float64
    """
    lab = rgb2lab(image)
    return sum(sobel(gaussian(lab[..., channel], sigma)) for channel in range(3))


def grow_to_edges(labels: np.ndarray, probability: np.ndarray, image: np.ndarray, *,
                  low: float = OUTLINE_LOW, sigma: float = OUTLINE_SIGMA, high: float | None = None,
                  also: np.ndarray | None = None) -> np.ndarray:
    """Grow each WBC through its uncertain band up to the strongest colour edge (or settle it there, with ``high``).

    Parameters
    ----------
    labels : ndarray, shape (h, w), int
        WBCs found by the instance stage, 0 background.
    probability : ndarray, shape (h, w), float
        The segmenter's WBC probability at the same scale.
    image : ndarray, shape (h, w, 3), uint8
        The image at the same scale.
    low : float, keyword-only
        Probability below which a pixel stays background.
    sigma : float, keyword-only
        Smoothing of the gradient, in pixels.
    high : float or None, keyword-only
        When given, a WBC's own pixels below this probability join the band
        too, so its outline may also move in to an edge (a WBC with no
        pixel at ``high`` or above keeps all of its own).  None: WBCs only
        grow.
    also : ndarray, shape (h, w), bool, optional, keyword-only
        Pixels that join the band whatever their probability (for instance
        :func:`compare.pipeline.plasma_contrast.plasma_contrast_band`).

    Returns
    -------
    ndarray, shape (h, w), same dtype as ``labels``
        The same WBCs with the same ids; without ``high`` each a superset
        of what it was.
    """
    if labels.shape != probability.shape or image.shape[:2] != labels.shape:
        raise ValueError(f"grow_to_edges: labels {labels.shape}, probability {probability.shape} and "
                         f"image {image.shape[:2]} must have the same height and width.")
    found = labels
    if high is not None:  # the WBCs' cores become the markers, the rest of them band
        labels = np.where(probability >= high, found, 0)
        coreless = np.isin(found, np.setdiff1d(np.unique(found), np.unique(labels)))
        labels[coreless] = found[coreless]  # a WBC with no pixel at ``high`` is kept whole
    band = (probability >= low) & (labels == 0)
    if also is not None:
        band |= also & (labels == 0)
    if not labels.any() or not band.any():
        return found
    # Each connected piece of cell-or-band is grown on its own, in its own
    # bounding box: the cost follows the WBCs, not the image's size.
    pieces, _ = ndi.label(band | (labels > 0))
    # Context kept around each box, so the smoothing sees the neighbourhood it would on the whole image.
    margin = int(np.ceil(4 * sigma)) + 1
    grown = labels.copy()  # with ``high``: the cores, each band pixel then won by a core or by the outside
    height, width = labels.shape
    for index, box in enumerate(ndi.find_objects(pieces), start=1):
        if box is None:
            continue
        rows = slice(max(box[0].start - margin, 0), min(box[0].stop + margin, height))
        cols = slice(max(box[1].start - margin, 0), min(box[1].stop + margin, width))
        piece = pieces[rows, cols] == index
        cells = np.where(piece, labels[rows, cols], 0)
        if not cells.any() or not (piece & (cells == 0)).any():
            continue  # band pixels that touch no WBC stay background
        outside = int(cells.max()) + 1
        markers = np.where(piece, cells, outside)
        markers[piece & (cells == 0)] = 0
        flooded = watershed(colour_gradient(image[rows, cols], sigma), markers=markers)
        won = piece & (cells == 0) & (flooded != outside)
        grown[rows, cols][won] = flooded[won]
    return grown


def outline_cells(labels: np.ndarray, probability: np.ndarray, image: np.ndarray, *,
                  max_diameter: float, uncertain: bool = True, by_colour: bool = True) -> np.ndarray:
    """The outline stage: each WBC grown through its uncertain band and through the cytoplasm its colour shows.

    :func:`compare.pipeline.plasma_contrast.plasma_contrast_cells` finds
    the pale cytoplasm that the segmenter does not see but whose colour is
    neither plasma nor red cell.  Its inside, more than twice the colour
    smoothing from its edge, is taken as cell for certain (with the
    watershed left to decide it, the nucleus edge would outweigh a pale
    membrane and the plasma would flood it); a margin of that width on
    either side of its edge joins the uncertain band, and
    :func:`grow_to_edges` puts the outline on the strongest colour edge in
    the band.

    Parameters
    ----------
    labels : ndarray, shape (h, w), int
        WBCs found by the instance stage, 0 background.
    probability : ndarray, shape (h, w), float
        The segmenter's WBC probability at the same scale.
    image : ndarray, shape (h, w, 3), uint8
        The image at the same scale.
    max_diameter : float, keyword-only
        The widest WBC, in pixels at this scale, that colour may grow a
        WBC to.
    uncertain : bool, keyword-only
        Grow through the segmenter's uncertain band as well; False: only
        through what colour adds, for a segmenter whose probability is
        soft around every cell on its own lab.
    by_colour : bool, keyword-only
        Grow through the cytoplasm told by its colour as well.

    Returns
    -------
    ndarray, shape (h, w), same dtype as ``labels``
        The same WBCs with the same ids, each a superset of what it was
        (``labels`` itself when both ``uncertain`` and ``by_colour`` are off).
    """
    if not (uncertain or by_colour):
        return labels
    low = OUTLINE_LOW if uncertain else np.inf  # no probability reaches it: no uncertain band
    coloured = (plasma_contrast_cells(labels, probability, image, max_diameter=max_diameter, low=OUTLINE_LOW)
                if by_colour else labels)
    gained = (coloured > 0) & (labels == 0)
    if not gained.any():
        return grow_to_edges(labels, probability, image, low=low)
    margin = int(np.ceil(2 * COLOUR_SIGMA))
    sure = gained & ndi.binary_erosion(coloured > 0, iterations=margin)
    markers = np.where(sure, coloured, labels)
    also = ndi.binary_dilation(gained, iterations=margin) & ~sure
    return grow_to_edges(markers, probability, image, low=low, also=also)
