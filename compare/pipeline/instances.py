"""From a probability map to counted, separated WBCs.

The recipe (scikit-image's watershed docstring, adapted):

1. threshold the probability map, fill holes, drop objects smaller than the
   minimum WBC area (platelets, stain specks, field-edge fragments);
2. a connected component larger than ``split_area`` (too big for one cell) is
   split: the peaks of its distance transform, at least ``min_distance``
   apart, seed a watershed on the negated distance, so touching WBCs come
   apart along the neck between them;
3. a split is kept only if every piece is itself at least ``min_area`` (an
   irregular single cell is not cut into slivers);
4. a piece that is far more elongated or less convex than any WBC of the
   training masks (``max_elongation``, ``min_solidity``) is dropped: that is
   the thin, curved strip a pixel classifier can leave along the dark edge
   of the field of view.

The parameters come from the training masks (:func:`tune_instance_params`),
not from hand tuning, and are saved with each model.  Matching the result
to the truth is :mod:`compare.evaluation.matching`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "InstanceParams",
    "tune_instance_params",
    "median_wbc_diameter",
    "clean_mask",
    "label_truth",
    "separate_instances",
    "separate_and_measure",
]


@dataclass(frozen=True)
class InstanceParams:
    """Settings of the instance stage; saved in each model's manifest.

    Attributes
    ----------
    threshold : float
        Probability at or above which a pixel is foreground.
    min_area : int
        Objects (and watershed pieces) smaller than this, in pixels, are not WBCs.
    split_area : int
        Only components at least this large are considered for splitting.
    min_distance : int
        Minimum distance in pixels between two watershed markers.
    max_elongation : float
        Pieces whose major / minor axis ratio (of the ellipse with the same
        second moments) exceeds this are not WBCs; 0 disables the check.
    min_solidity : float
        Pieces whose area over convex-hull area is below this are not WBCs;
        0 disables the check.
    """

    threshold: float = 0.5
    min_area: int = 800
    split_area: int = 5000
    min_distance: int = 15
    max_elongation: float = 0.0
    min_solidity: float = 0.0


def label_truth(mask: np.ndarray, min_area: int = 20) -> np.ndarray:
    """Label a true mask's WBCs as its connected components.

    Components below ``min_area`` pixels are JPEG noise in the SigTuple masks,
    not cells, and are dropped.

    Returns
    -------
    ndarray, shape (H, W), int32
        0 background, 1..n instances.
    """
    labels, n = ndi.label(np.asarray(mask, bool))
    if n:
        areas = np.bincount(labels.ravel())
        small = areas < min_area
        small[0] = False
        if small.any():
            labels[small[labels]] = 0
            labels, _ = ndi.label(labels > 0)
    return labels.astype(np.int32)


def median_wbc_diameter(masks: Sequence[np.ndarray]) -> float:
    """Median equivalent diameter, in pixels, of the WBCs (connected components) of ``masks``.

    Each component is one WBC, so a mask with several WBCs counts each; those
    cut by the image border are left out unless a mask has no other.
    """
    diameters: list[float] = []
    for mask in masks:
        labels = label_truth(mask)
        areas = np.bincount(labels.ravel())[1:]
        if not len(areas):
            continue
        border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])).tolist())
        whole = [a for i, a in enumerate(areas, start=1) if i not in border and a > 0]
        diameters.extend(2.0 * np.sqrt(np.asarray(whole or areas[areas > 0], float) / np.pi))
    if not diameters:
        raise ValueError("fit: every training mask is empty; at least one image must show a WBC.")
    return float(np.median(diameters))


def tune_instance_params(masks: Sequence[np.ndarray], *, threshold: float = 0.5) -> InstanceParams:
    """Derive the instance settings from training masks.

    The smallest genuine WBCs set the minimum area (half the 2nd percentile of
    true WBC areas: platelets are an order of magnitude smaller), the largest
    set the area above which a component must hold two cells (1.3 x the 98th
    percentile), and the typical radius sets the marker spacing (0.6 x the
    median equivalent radius: two touching cells' centres are about two radii
    apart, while one cell's distance map has a single broad peak).  The
    shape limits leave a wide margin around the WBCs' own shapes: elongation
    up to 1.7 x the most elongated whole WBC (at least 3), solidity down to
    0.85 x the least convex one.  On the SigTuple masks (172 whole WBCs:
    elongation <= 1.77, solidity >= 0.747) that is 3.0 and 0.635, while every
    segmenter's correctly found WBCs measured elongation <= 1.93 and
    solidity >= 0.725, and the svm's two field-edge strips on
    54A84627F362 measured (4.83, 0.743) and (2.62, 0.577).

    Parameters
    ----------
    masks : sequence of ndarray, shape (H, W), bool
        Training masks; each connected component is one WBC.  Components
        touching the image border are cut and are left out of the statistics.

    Returns
    -------
    InstanceParams
    """
    areas, elongations, solidities = [], [], []
    for mask in masks:
        labels = label_truth(mask)
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        counts = np.bincount(labels.ravel())
        for i, box in enumerate(ndi.find_objects(labels), start=1):
            if box is None or i in border or counts[i] == 0:
                continue
            areas.append(int(counts[i]))
            elongation, solidity = _shape(labels[box] == i)
            elongations.append(elongation)
            solidities.append(solidity)
    if not areas:
        raise ValueError("No whole WBC in the training masks (all empty or touching the border); "
                         "cannot tune the instance stage.")
    areas_arr = np.asarray(areas, float)
    radius = np.sqrt(np.median(areas_arr) / np.pi)
    return InstanceParams(
        threshold=float(threshold),
        min_area=int(0.5 * np.percentile(areas_arr, 2)),
        split_area=int(1.3 * np.percentile(areas_arr, 98)),
        min_distance=max(2, int(round(0.6 * radius))),
        max_elongation=round(max(3.0, 1.7 * max(elongations)), 3),
        min_solidity=round(0.85 * min(solidities), 3),
    )


def _shape(piece: np.ndarray) -> tuple[float, float]:
    """Elongation (major / minor axis of the moment ellipse) and solidity of one object.

    Parameters
    ----------
    piece : ndarray, shape (h, w), bool
        One connected object, cropped to its bounding box.

    Returns
    -------
    (float, float)
    """
    from skimage.measure import regionprops

    props = regionprops(piece.astype(np.uint8))[0]
    elongation = props.axis_major_length / max(props.axis_minor_length, 1.0)
    return float(elongation), float(props.solidity)


def _plausible(piece: np.ndarray, params: InstanceParams) -> bool:
    """Whether a piece's shape is within the limits of ``params`` (always, if they are off)."""
    if not (params.max_elongation or params.min_solidity):
        return True
    elongation, solidity = _shape(piece)
    if params.max_elongation and elongation > params.max_elongation:
        return False
    return not (params.min_solidity and solidity < params.min_solidity)


def clean_mask(prob: np.ndarray, params: InstanceParams = InstanceParams()) -> np.ndarray:
    """Foreground after thresholding, hole filling and removal of small objects.

    Parameters
    ----------
    prob : ndarray, shape (H, W), float
        Foreground probability.
    params : InstanceParams

    Returns
    -------
    ndarray, shape (H, W), bool
    """
    prob = np.asarray(prob)
    if prob.ndim != 2:
        raise ValueError(f"A probability map must be 2-D (H, W), got shape {prob.shape}.")
    mask = ndi.binary_fill_holes(prob >= params.threshold)
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    areas = np.bincount(labels.ravel())
    keep = areas >= params.min_area
    keep[0] = False
    return keep[labels]


def _split_component(component: np.ndarray, params: InstanceParams) -> list[np.ndarray]:
    """Split one component's crop by a distance-transform watershed, or keep it whole."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    # Pad so that the distance transform sees background around the crop.
    padded = np.pad(component, 1)
    distance = ndi.distance_transform_edt(padded)
    peaks = peak_local_max(
        distance,
        min_distance=params.min_distance,
        threshold_abs=params.min_distance * 0.5,
        labels=padded.astype(np.int32),
        exclude_border=False,
    )
    if len(peaks) < 2:
        return [component]
    markers = np.zeros(padded.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    pieces = watershed(-distance, markers, mask=padded)[1:-1, 1:-1]
    areas = np.bincount(pieces.ravel(), minlength=len(peaks) + 1)[1:]
    if (areas < params.min_area).any():
        return [component]
    return [pieces == i for i in range(1, len(peaks) + 1)]


def _pieces(prob: np.ndarray, params: InstanceParams) -> list[tuple[int, tuple[slice, slice], np.ndarray, float]]:
    """Every WBC as ``(first raster index, bounding box, mask in the box, mean probability)``.

    Only one full-size int32 map (the connected components) exists at a time;
    each component is split on its own bounding-box crop, so memory stays
    near 5 bytes a pixel even on 64 Mpx images.
    """
    width = prob.shape[1]
    foreground = ndi.binary_fill_holes(prob >= params.threshold)
    components, _ = ndi.label(foreground)
    del foreground
    areas = np.bincount(components.ravel())
    pieces = []
    for index, box in enumerate(ndi.find_objects(components), start=1):
        if box is None or areas[index] < params.min_area:
            continue
        component = components[box] == index
        parts = _split_component(component, params) if areas[index] >= params.split_area else [component]
        crop_prob = prob[box]
        for piece in parts:
            if not _plausible(piece, params):
                continue
            row = int(np.argmax(piece.any(axis=1)))
            col = int(np.argmax(piece[row]))
            first = (box[0].start + row) * width + box[1].start + col
            pieces.append((first, box, piece, float(crop_prob[piece].mean())))
    return sorted(pieces, key=lambda p: p[0])


def separate_and_measure(prob: np.ndarray, params: InstanceParams = InstanceParams()
                         ) -> tuple[np.ndarray, dict[int, float]]:
    """Label each WBC, splitting touching cells, and measure its mean probability.

    Parameters
    ----------
    prob : ndarray, shape (H, W), float in [0, 1]
    params : InstanceParams

    Returns
    -------
    labels : ndarray, shape (H, W), uint16 (int32 beyond 65,535 WBCs)
        0 background, 1..n one label per WBC, numbered in raster order of
        their first pixel.
    mean_probability : dict of int to float
        Mean of ``prob`` over each WBC, by label.
    """
    prob = np.asarray(prob)
    if prob.ndim != 2:
        raise ValueError(f"A probability map must be 2-D (H, W), got shape {prob.shape}.")
    pieces = _pieces(prob, params)
    labels = np.zeros(prob.shape, np.uint16 if len(pieces) < 2 ** 16 else np.int32)
    means: dict[int, float] = {}
    for new_label, (_, box, piece, mean) in enumerate(pieces, start=1):
        labels[box][piece] = new_label
        means[new_label] = mean
    return labels, means


def separate_instances(prob: np.ndarray, params: InstanceParams = InstanceParams()) -> np.ndarray:
    """Label each WBC in a probability map, splitting touching cells.

    Parameters
    ----------
    prob : ndarray, shape (H, W), float in [0, 1]
    params : InstanceParams

    Returns
    -------
    ndarray, shape (H, W), int32
        0 background, 1..n one label per WBC, numbered in raster order of
        their first pixel.

    Examples
    --------
    Two touching disks come apart:

    >>> yy, xx = np.mgrid[:80, :140]
    >>> two = ((yy - 40) ** 2 + (xx - 45) ** 2 < 30 ** 2) | ((yy - 40) ** 2 + (xx - 95) ** 2 < 30 ** 2)
    >>> p = InstanceParams(min_area=100, split_area=3000, min_distance=15)
    >>> int(separate_instances(two.astype(float), p).max())
    2
    """
    return separate_and_measure(prob, params)[0].astype(np.int32)


