"""The measure stage: per-WBC measurements and the nucleus inside each WBC.

:func:`measure_cells` is the stage :meth:`compare.pipeline.model.WBCModel.predict`
ends with: the found WBCs brought back to the image's own size, their nuclei
and one table row each, measured on the image as it was given.

:func:`cell_table` measures every WBC of a label image with
:func:`skimage.measure.regionprops_table` (size, shape, mean colour), in
pixels and, when the pixel size is known, in micrometres; the column names
carry the unit (``_px``, ``_um``, ``_um2``).

:func:`nucleus_labels` finds the nucleus of each WBC from the stain: the
haematoxylin channel of :func:`skimage.color.rgb2hed` (the colour
deconvolution of Ruifrok and Johnston; in Romanowsky-stained smears it
follows the dark purple of the nucleus) is thresholded by Otsu's method
inside each WBC, opened with a small disk to drop specks, and its small
holes are filled. When a WBC's haematoxylin is not bimodal enough for its
own threshold to mean anything (Otsu's separability below
``min_separability``), the threshold pooled over all WBCs of the image is
used instead. :func:`lobe_counts` counts the nucleus pieces of meaningful
size left after a further small opening, which cuts the thin chromatin
bridges between the lobes of a segmented neutrophil; lobes that touch along
a wide front count as one.

The nucleus step is checked on synthetic cells with a known nucleus; it is
not validated against expert nucleus masks (the SigTuple data have none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.color import rgb2hed
from skimage.filters import threshold_otsu
from skimage.measure import regionprops_table
from skimage.morphology import disk

from compare.pipeline.blocks import compact_labels, resize_labels, resize_prob

__all__ = [
    "NucleusParams",
    "MeasuredCells",
    "measure_cells",
    "nucleus_labels",
    "lobe_counts",
    "cell_table",
]

_SIZE_COLUMNS = {
    # px column -> (um column, power of the pixel size)
    "area_px": ("area_um2", 2),
    "perimeter_px": ("perimeter_um", 1),
    "equivalent_diameter_px": ("equivalent_diameter_um", 1),
    "major_axis_px": ("major_axis_um", 1),
    "minor_axis_px": ("minor_axis_um", 1),
    "nucleus_area_px": ("nucleus_area_um2", 2),
}


@dataclass(frozen=True)
class NucleusParams:
    """Settings of the nucleus step.

    Attributes
    ----------
    min_separability : float
        Smallest Otsu separability (between-class over total variance of the
        haematoxylin inside the WBC) for the WBC's own threshold to be used
        outright; a normal, unimodal spread scores 0.64, the WBCs of the
        SigTuple images 0.79-0.90.
    min_coherent_separability : float
        A WBC whose separability lies between this and ``min_separability``
        still keeps its own threshold when the pixels above it form solid
        regions (``min_coherence``).  A nucleus that fills most of its cell
        (a lymphocyte) makes a lopsided split that scores 0.58-0.69 although
        it is real, and so does noise; what tells them apart is that noise
        split in two is speckle.
    min_coherence : float
        Share of the above-threshold pixels that survive an opening with a
        disk of ``opening_radius``: 0.96-0.99 for the real nuclei of the
        odd-numbered CellaVision images that score below
        ``min_separability``, 0.27 for a uniform synthetic cell's noise.
        Below it the cell is taken as uniform and the threshold pooled over
        all WBCs of the image is used (docs/experiments.md, "Nucleus of
        lymphocytes").
    min_pooled_separability : float
        The same for the pooled threshold; below it no nucleus is reported
        for that WBC (its nucleus columns are 0 / NaN).
    opening_radius : int
        Radius in px of the disk that opens the thresholded nucleus (drops
        specks of one or two pixels).
    max_hole_fraction : float
        Holes in the thresholded nucleus up to this fraction of the WBC area
        are filled (pale spots in the chromatin); larger ones are cytoplasm
        enclosed by a ring-shaped nucleus and stay out.
    min_piece_fraction : float
        Nucleus pieces smaller than this fraction of the WBC area are dropped.
    lobe_opening_fraction : float
        Radius of the disk that separates lobes, as a fraction of the WBC's
        equivalent diameter (0.04 gives 2 px for a 55 px WBC).
    min_lobe_fraction : float
        A separated piece counts as a lobe when it holds at least this
        fraction of the nucleus area.
    """

    min_separability: float = 0.72
    min_coherent_separability: float = 0.5
    min_coherence: float = 0.8
    min_pooled_separability: float = 0.72
    opening_radius: int = 1
    max_hole_fraction: float = 0.02
    min_piece_fraction: float = 0.01
    lobe_opening_fraction: float = 0.04
    min_lobe_fraction: float = 0.08


def _check(labels: np.ndarray, image: np.ndarray) -> None:
    if labels.ndim != 2:
        raise ValueError(f"The label image must be 2-D (H, W); got shape {labels.shape}.")
    if image.shape[:2] != labels.shape or image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"The image must be (H, W, 3) RGB matching the labels {labels.shape}; got {image.shape}.")


def _haematoxylin(rgb: np.ndarray) -> np.ndarray:
    """Haematoxylin optical density of an (h, w, 3) uint8 crop, float64."""
    return rgb2hed(np.ascontiguousarray(rgb[..., :3]))[..., 0]


def _otsu(values: np.ndarray) -> tuple[float, float]:
    """Otsu threshold of ``values`` and its separability.

    The separability is Otsu's eta, the between-class variance over the total
    variance (0 to 1). A cell with a dark nucleus in pale cytoplasm scores
    0.8-0.9 on the SigTuple images; a uniform cell whose values are only
    noise scores about 0.64 (the value for a normal distribution).
    """
    if values.size < 2 or np.ptp(values) <= 0:
        return float("inf"), 0.0
    t = float(threshold_otsu(values))
    high, low = values[values > t], values[values <= t]
    if high.size == 0 or low.size == 0:
        return t, 0.0
    p = high.size / values.size
    return t, float(p * (1.0 - p) * (high.mean() - low.mean()) ** 2 / values.var())


def _coherence(mask: np.ndarray, radius: int) -> float:
    """Share of ``mask``'s pixels left by an opening with a disk of ``radius`` (1.0 for solid regions)."""
    total = np.count_nonzero(mask)
    if total == 0 or radius <= 0:
        return 1.0 if total else 0.0
    opened = ndi.binary_opening(np.pad(mask, radius), disk(radius))[radius:-radius, radius:-radius]
    return np.count_nonzero(opened) / total


def _fill(mask: np.ndarray, opening_radius: int, min_area: float, max_hole: float) -> np.ndarray:
    if opening_radius > 0:
        r = opening_radius
        # Padded so that the opening does not treat the crop edge as background.
        mask = ndi.binary_opening(np.pad(mask, r), disk(r))[r:-r, r:-r]
    # Fill pale spots in the chromatin, but keep the cytoplasm that a ring
    # or band shaped nucleus encloses.
    holes, n = ndi.label(ndi.binary_fill_holes(mask) & ~mask)
    if n:
        small = np.bincount(holes.ravel()) <= max_hole
        small[0] = False
        mask = mask | small[holes]
    pieces, n = ndi.label(mask)
    if n:
        sizes = np.bincount(pieces.ravel())
        keep = sizes >= min_area
        keep[0] = False
        mask = keep[pieces]
    return mask


def nucleus_labels(labels: np.ndarray, image: np.ndarray, params: NucleusParams | None = None) -> np.ndarray:
    """The nucleus of each WBC, labelled with the id of its WBC.

    Parameters
    ----------
    labels : ndarray, shape (H, W), int
        WBC label image (0 = background).
    image : ndarray, shape (H, W, 3), uint8
        The RGB image the labels were found on.
    params : NucleusParams, optional

    Returns
    -------
    ndarray, shape (H, W), same dtype as ``labels``
        Nucleus pixels carry the id of the WBC they lie in; every other pixel
        is 0. A nucleus never leaves its WBC.
    """
    labels = np.asarray(labels)
    image = np.asarray(image)
    _check(labels, image)
    params = params or NucleusParams()
    out = np.zeros_like(labels)
    boxes = ndi.find_objects(labels.astype(np.intp, copy=False)) if labels.size else []
    cells = [(i, box) for i, box in enumerate(boxes, start=1) if box is not None]
    if not cells:
        return out
    crops = []
    for index, box in cells:
        cell = labels[box] == index
        h = _haematoxylin(image[box])
        crops.append((index, box, cell, h))
    pooled = np.concatenate([h[cell] for _, _, cell, h in crops])
    pooled_t, pooled_sep = _otsu(pooled)
    for index, box, cell, h in crops:
        values = h[cell]
        t, sep = _otsu(values)
        if sep < params.min_separability and not (sep >= params.min_coherent_separability
                                                   and _coherence((h > t) & cell, params.opening_radius)
                                                   >= params.min_coherence):
            # A nearly uniform cell: its own Otsu split would cut noise.
            if pooled_sep < params.min_pooled_separability:
                continue
            t = pooled_t
        nucleus = (h > t) & cell
        nucleus = _fill(nucleus, params.opening_radius, params.min_piece_fraction * values.size,
                        params.max_hole_fraction * values.size) & cell
        out[box][nucleus] = index
    return out


def lobe_counts(labels: np.ndarray, nuclei: np.ndarray, params: NucleusParams | None = None) -> dict[int, int]:
    """Number of nucleus lobes of each WBC.

    The nucleus of each WBC is opened with a disk of radius
    ``lobe_opening_fraction`` times the WBC's equivalent diameter (at least
    1 px), which cuts thin bridges between lobes; the pieces holding at least
    ``min_lobe_fraction`` of the nucleus area are counted. Lobes that touch
    along a wide front stay one piece (no distance-transform split).

    Parameters
    ----------
    labels : ndarray, shape (H, W), int
        WBC label image.
    nuclei : ndarray, shape (H, W), int
        Output of :func:`nucleus_labels` for ``labels``.
    params : NucleusParams, optional

    Returns
    -------
    dict of int to int
        WBC id to lobe count (0 when no nucleus was found).
    """
    params = params or NucleusParams()
    labels = np.asarray(labels)
    nuclei = np.asarray(nuclei)
    counts: dict[int, int] = {}
    for index, box in enumerate(ndi.find_objects(labels.astype(np.intp, copy=False)), start=1):
        if box is None:
            continue
        nucleus = nuclei[box] == index
        area = int(nucleus.sum())
        if area == 0:
            counts[index] = 0
            continue
        diameter = 2.0 * np.sqrt(float((labels[box] == index).sum()) / np.pi)
        radius = max(1, int(round(params.lobe_opening_fraction * diameter)))
        # Padded so that the opening does not treat the crop edge as background.
        opened = ndi.binary_opening(np.pad(nucleus, radius), disk(radius))
        pieces, n = ndi.label(opened)
        sizes = np.bincount(pieces.ravel())[1:]
        counts[index] = max(1, int((sizes >= params.min_lobe_fraction * area).sum()))
    return counts


def cell_table(labels: np.ndarray, image: np.ndarray, *, pixel_size_um: float | None = None,
               probability: np.ndarray | None = None, nucleus_labels: np.ndarray | None = None,
               params: NucleusParams | None = None) -> pd.DataFrame:
    """One row of morphology per WBC.

    Parameters
    ----------
    labels : ndarray, shape (H, W), int
        WBC label image (0 = background).
    image : ndarray, shape (H, W, 3), uint8
        The RGB image.
    pixel_size_um : float, optional
        Side of one pixel in micrometres; when given, the sizes are also
        reported in um / um^2.
    probability : ndarray, shape (H, W), float, optional
        WBC probability map; adds ``mean_probability``.
    nucleus_labels : ndarray, shape (H, W), int, optional
        Nuclei labelled by WBC id; computed with :func:`nucleus_labels`
        when not given.
    params : NucleusParams, optional
        Settings of the nucleus step (lobe count).

    Returns
    -------
    pandas.DataFrame
        One row per WBC, sorted by ``id``. Columns: ``id``, ``centroid_x``,
        ``centroid_y`` (px), ``bbox_x0``, ``bbox_y0``, ``bbox_x1``,
        ``bbox_y1`` (px, end exclusive), ``area_px``, ``perimeter_px``,
        ``equivalent_diameter_px``, ``major_axis_px``, ``minor_axis_px``,
        ``eccentricity``, ``circularity``, ``solidity``, ``mean_r``,
        ``mean_g``, ``mean_b``, [``mean_probability``], ``nucleus_area_px``,
        ``nc_ratio``, ``lobe_count``, then with a pixel size ``area_um2``,
        ``perimeter_um``, ``equivalent_diameter_um``, ``major_axis_um``,
        ``minor_axis_um``, ``nucleus_area_um2``.

    Notes
    -----
    ``perimeter_px`` is scikit-image's Crofton perimeter (4 directions),
    which estimates the length of the underlying smooth outline; with it
    ``circularity`` = 4 pi area / perimeter^2 is close to 1 for a digital
    disk and lower for elongated or ragged cells. The 8-neighbour
    ``perimeter`` would score a disk about 0.9.

    ``nc_ratio`` is the haematology N:C ratio, nucleus area / cytoplasm
    area, where the cytoplasm is the WBC area minus the nucleus area; it is
    NaN when no nucleus was found and infinite when the nucleus fills the
    cell.
    """
    labels = np.asarray(labels)
    image = np.asarray(image)
    _check(labels, image)
    if pixel_size_um is not None and not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise ValueError(f"The pixel size must be a positive number of micrometres; got {pixel_size_um}.")
    if probability is not None and np.shape(probability) != labels.shape:
        raise ValueError(f"The probability map {np.shape(probability)} must match the labels {labels.shape}.")
    lab = labels.astype(np.int64, copy=False)
    props = ["label", "centroid", "bbox", "area", "perimeter_crofton", "equivalent_diameter_area",
             "axis_major_length", "axis_minor_length", "eccentricity", "solidity"]
    table = regionprops_table(lab, properties=props)
    colour = regionprops_table(lab, intensity_image=image[..., :3], properties=["label", "intensity_mean"])
    area = np.asarray(table["area"], dtype=float)
    perimeter = np.asarray(table["perimeter_crofton"], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        circularity = np.where(perimeter > 0, 4.0 * np.pi * area / perimeter**2, np.nan)
    df = pd.DataFrame({
        "id": np.asarray(table["label"], dtype=np.int64),
        "centroid_x": table["centroid-1"],
        "centroid_y": table["centroid-0"],
        "bbox_x0": table["bbox-1"],
        "bbox_y0": table["bbox-0"],
        "bbox_x1": table["bbox-3"],
        "bbox_y1": table["bbox-2"],
        "area_px": area.astype(np.int64),
        "perimeter_px": perimeter,
        "equivalent_diameter_px": table["equivalent_diameter_area"],
        "major_axis_px": table["axis_major_length"],
        "minor_axis_px": table["axis_minor_length"],
        "eccentricity": table["eccentricity"],
        "circularity": circularity,
        "solidity": table["solidity"],
        "mean_r": colour["intensity_mean-0"],
        "mean_g": colour["intensity_mean-1"],
        "mean_b": colour["intensity_mean-2"],
    })
    if probability is not None:
        df["mean_probability"] = regionprops_table(
            lab, intensity_image=np.asarray(probability, dtype=float), properties=["intensity_mean"])["intensity_mean"]
    nuclei = _nuclei(labels, image, params) if nucleus_labels is None else np.asarray(nucleus_labels)
    if nuclei.shape != labels.shape:
        raise ValueError(f"The nucleus labels {nuclei.shape} must match the WBC labels {labels.shape}.")
    n_area = np.bincount(nuclei.astype(np.int64, copy=False).ravel(), minlength=int(lab.max(initial=0)) + 1)
    df["nucleus_area_px"] = n_area[df["id"].to_numpy()].astype(np.int64)
    cytoplasm = df["area_px"] - df["nucleus_area_px"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(df["nucleus_area_px"] > 0, df["nucleus_area_px"] / cytoplasm.astype(float), np.nan)
    df["nc_ratio"] = ratio
    lobes = lobe_counts(labels, nuclei, params)
    df["lobe_count"] = df["id"].map(lambda i: lobes.get(int(i), 0)).astype(np.int64)
    if pixel_size_um is not None:
        for px_col, (um_col, power) in _SIZE_COLUMNS.items():
            df[um_col] = df[px_col].astype(float) * float(pixel_size_um) ** power
    return df.sort_values("id").reset_index(drop=True)


# ``cell_table`` takes a ``nucleus_labels`` argument, which hides the function
# of that name inside it.
_nuclei = nucleus_labels


@dataclass(frozen=True)
class MeasuredCells:
    """What the measure stage hands on, at the image's own size.

    Attributes
    ----------
    labels : ndarray, shape (H, W), uint16 (int32 beyond 65,535 WBCs)
        0 background, 1..n one per WBC.
    probability : ndarray, shape (H, W), float32
        WBC probability.
    nuclei : ndarray, shape (H, W), same dtype as ``labels``, or None
        Each WBC's nucleus labelled with the WBC's id (:func:`nucleus_labels`);
        None when the cells were not measured.
    cells : pandas.DataFrame
        :func:`cell_table`, or the ``id`` column alone when not measured.
    """

    labels: np.ndarray
    probability: np.ndarray
    nuclei: np.ndarray | None
    cells: pd.DataFrame


def measure_cells(labels: np.ndarray, probability: np.ndarray, image: np.ndarray, *, factor: float,
                  pixel_size_um: float | None = None, cells: bool = True) -> MeasuredCells:
    """The measure stage: WBCs found at the working scale, back at the image's size and measured there.

    Parameters
    ----------
    labels : ndarray, shape (h, w), int
        WBCs found at the working scale, 1..n.
    probability : ndarray, shape (h, w), float32
        WBC probability at the working scale.
    image : ndarray, shape (H, W, 3), uint8
        The image as given: the colours the table reports.
    factor : float, keyword-only
        The resize factor from the image to the working scale; 1.0 leaves
        the labels as they are.
    pixel_size_um : float, optional, keyword-only
        Adds micrometre columns (:func:`cell_table`).
    cells : bool, keyword-only
        Find the nuclei and measure every WBC; False leaves the table with
        the ``id`` column only, which is faster.

    Returns
    -------
    MeasuredCells
    """
    if factor != 1.0:
        # A cell too small to survive the mapping back is dropped; the rest
        # keep their order, renumbered 1..m.
        shape = image.shape[:2]
        labels = compact_labels(resize_labels(labels, shape))
        probability = resize_prob(probability, shape)
    if not cells:
        return MeasuredCells(labels=labels, probability=probability, nuclei=None,
                             cells=pd.DataFrame({"id": np.arange(1, int(labels.max()) + 1)}))
    nuclei = nucleus_labels(labels, image)
    table = cell_table(labels, image, pixel_size_um=pixel_size_um, probability=probability, nucleus_labels=nuclei)
    return MeasuredCells(labels=labels, probability=probability, nuclei=nuclei, cells=table)


