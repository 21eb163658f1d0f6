"""Pixel and boundary metrics between a true and a predicted mask, per image.

Pure functions on boolean arrays.  Where a ratio has a zero denominator (two
empty masks, or an empty prediction for precision) the score is NaN rather than
0 or 1: it is undefined, and averages over images use ``np.nanmean``.

:func:`dice` is the one Dice of the suite (the evaluator, the summary and the
benchmarks call it); :func:`hd95` and :func:`surface_dice` measure how far the
predicted boundary lies from the true one, in pixels, as MONAI's
``compute_hausdorff_distance(percentile=95)`` and ``compute_surface_dice``
(Nikolov et al., 2021) do.

:func:`nucleus_scores` compares a predicted nucleus and N:C ratio with an
expert's, for data sets whose masks mark the nucleus (CellaVision), and
:func:`border_extras` counts the predicted objects such crops' masks leave
out on purpose, partial neighbouring WBCs cut by the image border, and
:func:`dice_border_apart` is the whole-cell Dice without them.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BOUNDARY_METRICS",
    "NUCLEUS_METRICS",
    "PIXEL_METRICS",
    "SURFACE_TOLERANCE",
    "border_extra_ids",
    "border_extras",
    "boundary",
    "boundary_scores",
    "confusion",
    "dice",
    "dice_border_apart",
    "hd95",
    "nucleus_scores",
    "pixel_scores",
    "safe_divide",
    "surface_dice",
]

#: Names of the scores :func:`pixel_scores` returns, in column order.
PIXEL_METRICS = ("dice", "iou", "precision", "recall")

#: Names of the scores :func:`boundary_scores` returns, in column order.
BOUNDARY_METRICS = ("hd95", "surface_dice")

#: Names of the scores :func:`nucleus_scores` returns, in column order.
NUCLEUS_METRICS = ("nucleus_dice", "nc_true", "nc_pred", "nc_rel_error")

#: Surface-Dice tolerance in pixels: about half the 4-px grid the masks are drawn on.
SURFACE_TOLERANCE = 2.0


def safe_divide(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN where the denominator is 0."""
    return float(numerator) / float(denominator) if denominator else float("nan")


def _check_pair(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.shape != pred.shape:
        raise ValueError(f"The true mask has shape {true.shape} but the prediction {pred.shape}; they must match.")
    if true.ndim != 2:
        raise ValueError(f"Masks must be 2-D (H, W), got {true.ndim} dimensions.")
    return true.astype(bool, copy=False), pred.astype(bool, copy=False)


def confusion(true: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """Pixel counts ``(tp, fp, fn)`` of a prediction against the truth.

    Parameters
    ----------
    true, pred : ndarray, shape (H, W), bool (or 0/1)
    """
    true, pred = _check_pair(true, pred)
    tp = int(np.count_nonzero(true & pred))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(true)) - tp
    return tp, fp, fn


def dice(true: np.ndarray, pred: np.ndarray) -> float:
    """Dice coefficient ``2 |T & P| / (|T| + |P|)`` of two masks.

    Parameters
    ----------
    true, pred : ndarray, shape (H, W), bool (or 0/1)

    Returns
    -------
    float
        In [0, 1]; NaN when both masks are empty (undefined, not perfect).

    Examples
    --------
    >>> a = np.zeros((4, 4), bool); a[:2] = True
    >>> dice(a, a), dice(a, ~a)
    (1.0, 0.0)
    """
    tp, fp, fn = confusion(true, pred)
    return safe_divide(2 * tp, 2 * tp + fp + fn)


def pixel_scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Dice (F1), IoU (Jaccard), precision and recall of the foreground.

    Parameters
    ----------
    true, pred : ndarray, shape (H, W), bool

    Returns
    -------
    dict
        ``{"dice", "iou", "precision", "recall"}`` as floats in [0, 1] or NaN.

    Examples
    --------
    >>> a = np.zeros((4, 4), bool); a[:2] = True
    >>> pixel_scores(a, a)["dice"]
    1.0
    """
    tp, fp, fn = confusion(true, pred)
    return {
        "dice": safe_divide(2 * tp, 2 * tp + fp + fn),  # = dice(true, pred), without a second pass
        "iou": safe_divide(tp, tp + fp + fn),
        "precision": safe_divide(tp, tp + fp),
        "recall": safe_divide(tp, tp + fn),
    }


# -- boundary metrics -------------------------------------------------------------

def boundary(mask: np.ndarray) -> np.ndarray:
    """The inner boundary of a mask: its pixels with a 4-connected background neighbour.

    Pixels on the image border count as boundary (outside the image is
    background), as in MONAI.

    Parameters
    ----------
    mask : ndarray, shape (H, W), bool

    Returns
    -------
    ndarray, shape (H, W), bool
    """
    from scipy import ndimage as ndi

    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndi.binary_erosion(mask, structure=ndi.generate_binary_structure(2, 1), border_value=0)


def _surface_distances(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Distances (px) from each boundary pixel of one mask to the other's boundary, both ways.

    Returns ``(true -> pred, pred -> true)``, or None when a mask is empty.
    Boundaries are found within the bounding box of the two masks (every
    boundary pixel lies inside it), and each boundary pixel's nearest
    boundary pixel of the other mask comes from a k-d tree of boundary
    coordinates: the same Euclidean distances as a distance transform of the
    box, at a cost that grows with the boundary length rather than the area
    (2-6x less on the large images, several WBCs spread over a field).
    """
    from scipy.spatial import cKDTree

    true, pred = _check_pair(true, pred)
    if not true.any() or not pred.any():
        return None
    rows, cols = np.nonzero(true | pred)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    # Outside the box neither mask has a pixel, so cropping leaves each boundary as it is.
    points_t, points_p = np.argwhere(boundary(true[box])), np.argwhere(boundary(pred[box]))
    return cKDTree(points_p).query(points_t)[0], cKDTree(points_t).query(points_p)[0]


def hd95(true: np.ndarray, pred: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance between two mask boundaries, in pixels.

    The larger of the two directed 95th percentiles (true boundary to the
    predicted one, and back), as MONAI's ``compute_hausdorff_distance``
    with ``percentile=95``.  Robust to a few stray pixels, unlike the
    maximum.

    Parameters
    ----------
    true, pred : ndarray, shape (H, W), bool (or 0/1)

    Returns
    -------
    float
        Pixels, >= 0.  NaN when both masks are empty (nothing to compare);
        ``inf`` when exactly one is empty (a missed or invented object has
        no finite boundary distance).  Averages over images should leave
        both out and report the infinite ones as a count.

    Examples
    --------
    >>> a = np.zeros((20, 20), bool); a[5:15, 5:15] = True
    >>> b = np.zeros((20, 20), bool); b[5:15, 7:15] = True
    >>> hd95(a, a), hd95(a, b)
    (0.0, 2.0)
    """
    true, pred = _check_pair(true, pred)
    if not true.any() and not pred.any():
        return float("nan")
    distances = _surface_distances(true, pred)
    if distances is None:
        return float("inf")
    return float(max(np.percentile(d, 95) for d in distances))


def surface_dice(true: np.ndarray, pred: np.ndarray, tolerance: float = SURFACE_TOLERANCE) -> float:
    """Normalised surface Dice: the share of boundary pixels within ``tolerance`` of the other boundary.

    ``(|{t in dT : d(t, dP) <= tol}| + |{p in dP : d(p, dT) <= tol}|) / (|dT| + |dP|)``
    (Nikolov et al., 2021; MONAI's ``compute_surface_dice``), with boundary
    pixels in place of surface elements.

    Parameters
    ----------
    true, pred : ndarray, shape (H, W), bool (or 0/1)
    tolerance : float
        Pixels; a boundary pixel this close to the other boundary counts as
        right.

    Returns
    -------
    float
        In [0, 1].  NaN when both masks are empty; 0.0 when exactly one is.

    Examples
    --------
    >>> a = np.zeros((20, 20), bool); a[5:15, 5:15] = True
    >>> surface_dice(a, a)
    1.0
    """
    true, pred = _check_pair(true, pred)
    if not true.any() and not pred.any():
        return float("nan")
    distances = _surface_distances(true, pred)
    if distances is None:
        return 0.0
    close = sum(int(np.count_nonzero(d <= tolerance)) for d in distances)
    return close / float(sum(d.size for d in distances))


def boundary_scores(true: np.ndarray, pred: np.ndarray, tolerance: float = SURFACE_TOLERANCE) -> dict[str, float]:
    """``{"hd95", "surface_dice"}`` of one image, for a ``per_image.csv`` row.

    Parameters
    ----------
    true, pred : ndarray, shape (H, W), bool (or 0/1)
    tolerance : float
        Surface-Dice tolerance in pixels.

    Returns
    -------
    dict
        See :func:`hd95` and :func:`surface_dice` for the empty-mask values.
    """
    true, pred = _check_pair(true, pred)
    if not true.any() and not pred.any():
        return {"hd95": float("nan"), "surface_dice": float("nan")}
    distances = _surface_distances(true, pred)
    if distances is None:
        return {"hd95": float("inf"), "surface_dice": 0.0}
    close = sum(int(np.count_nonzero(d <= tolerance)) for d in distances)
    return {"hd95": float(max(np.percentile(d, 95) for d in distances)),
            "surface_dice": close / float(sum(d.size for d in distances))}


# -- nucleus and crop counts ------------------------------------------------------

def nucleus_scores(cell: np.ndarray, nucleus: np.ndarray, labels: np.ndarray, nuclei: np.ndarray) -> dict[str, float]:
    """Nucleus Dice and N:C ratio of a prediction against an expert's cell and nucleus masks.

    N:C is the haematology ratio, nucleus area / cytoplasm area (the
    cytoplasm being the whole cell less its nucleus), as the cell table's
    ``nc_ratio`` reports it.  The expert's is that of the cell its mask
    marks; the predicted one is that of the predicted WBC that overlaps the
    marked cell most, with that WBC's nucleus.

    Parameters
    ----------
    cell : ndarray, shape (H, W), bool
        True whole cell (nucleus and cytoplasm).
    nucleus : ndarray, shape (H, W), bool
        True nucleus.
    labels : ndarray, shape (H, W), int
        Predicted WBCs (0 background, 1..n).
    nuclei : ndarray, shape (H, W), int
        Predicted nuclei, each carrying the id of its WBC (0 elsewhere).

    Returns
    -------
    dict
        ``nucleus_dice``: Dice of all predicted nucleus pixels against the
        true nucleus (NaN when both are empty); ``nc_true``; ``nc_pred``
        (0.0 when the matched WBC has no nucleus, NaN when no WBC overlaps
        the cell); ``nc_rel_error`` = ``|nc_pred - nc_true| / nc_true``.

    Examples
    --------
    >>> cell = np.zeros((10, 10), bool); cell[2:8, 2:8] = True
    >>> core = np.zeros((10, 10), bool); core[3:6, 3:6] = True
    >>> scores = nucleus_scores(cell, core, cell.astype(int), core.astype(int))
    >>> scores["nucleus_dice"], scores["nc_true"], scores["nc_rel_error"]
    (1.0, 0.3333333333333333, 0.0)
    """
    cell, pred_cells = _check_pair(cell, np.asarray(labels) > 0)
    nucleus, _ = _check_pair(nucleus, np.asarray(nuclei) > 0)
    labels = np.asarray(labels)
    nuclei = np.asarray(nuclei)
    true_nucleus = np.count_nonzero(nucleus & cell)
    nc_true = safe_divide(true_nucleus, np.count_nonzero(cell) - true_nucleus)
    overlap = np.bincount(labels[cell & pred_cells].ravel().astype(np.int64))
    nc_pred = float("nan")
    if overlap.size > 1 and overlap[1:].any():
        best = int(np.argmax(overlap[1:])) + 1
        pred_nucleus = np.count_nonzero(nuclei == best)
        nc_pred = safe_divide(pred_nucleus, np.count_nonzero(labels == best) - pred_nucleus)
    error = abs(nc_pred - nc_true) / nc_true if nc_true and np.isfinite(nc_pred) else float("nan")
    return {"nucleus_dice": dice(nucleus, nuclei > 0), "nc_true": nc_true, "nc_pred": nc_pred,
            "nc_rel_error": float(error)}


def border_extra_ids(truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The ids of the predicted WBCs that touch the image border and no true WBC pixel.

    In a crop centred on one WBC (CellaVision) the mask marks that WBC only;
    a neighbouring WBC cut by the border is left as background although it is
    a real cell.  Such objects are counted apart (:func:`border_extras`), not
    as false positives, and :func:`dice_border_apart` leaves them out.

    Parameters
    ----------
    truth : ndarray, shape (H, W), bool
        True WBC pixels.
    labels : ndarray, shape (H, W), int
        Predicted WBCs (0 background, 1..n).

    Returns
    -------
    ndarray, shape (k,), int64
        Sorted ids.
    """
    truth, _ = _check_pair(truth, np.asarray(labels) > 0)
    labels = np.asarray(labels)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    touching = np.setdiff1d(edge, [0])
    return np.setdiff1d(touching, labels[truth]).astype(np.int64)


def border_extras(truth: np.ndarray, labels: np.ndarray) -> int:
    """How many predicted WBCs touch the image border and no true WBC pixel (:func:`border_extra_ids`).

    Examples
    --------
    >>> truth = np.zeros((8, 8), bool); truth[3:5, 3:5] = True
    >>> labels = np.zeros((8, 8), int); labels[3:5, 3:5] = 1; labels[0:2, 6:8] = 2
    >>> border_extras(truth, labels)
    1
    """
    return len(border_extra_ids(truth, labels))


def dice_border_apart(truth: np.ndarray, labels: np.ndarray) -> float:
    """Whole-cell Dice with the border extras (:func:`border_extra_ids`) left out of the prediction.

    The Dice of a crop whose mask marks one WBC, where a partial neighbour
    that the border cuts is neither right nor wrong.  Everything else the
    prediction marks counts as in :func:`dice`: a false object inside the
    field, or one on the border that touches the marked cell, still lowers it.

    Parameters
    ----------
    truth : ndarray, shape (H, W), bool
    labels : ndarray, shape (H, W), int

    Returns
    -------
    float

    Examples
    --------
    >>> truth = np.zeros((8, 8), bool); truth[3:5, 3:5] = True
    >>> labels = np.zeros((8, 8), int); labels[3:5, 3:5] = 1; labels[0:2, 6:8] = 2
    >>> round(dice(truth, labels > 0), 2), dice_border_apart(truth, labels)
    (0.67, 1.0)
    """
    labels = np.asarray(labels)
    kept = (labels > 0) & ~np.isin(labels, border_extra_ids(truth, labels))
    return dice(np.asarray(truth, bool), kept)
