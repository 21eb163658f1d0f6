"""Per-WBC morphology and the nucleus inside each WBC.

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

from stain.normalise import summed_density

__all__ = [
    "NucleusParams",
    "nucleus_shares",
    "nucleus_labels",
    "lobe_counts",
    "cell_table",
    "MIN_NUCLEUS_FRACTION",
    "drop_without_nucleus",
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
        haematoxylin inside the WBC) for the WBC's own threshold to be used;
        a normal, unimodal spread scores 0.64, the WBCs of the SigTuple
        images 0.79-0.90. Below it the cell is taken as uniform and the
        threshold pooled over all WBCs of the image is used.
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
        if sep < params.min_separability:
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


#: Share of an object's pixels that must be darker than the image's red
#: cells for it to count as a WBC: nuclei cover 34-73 % of the SigTuple WBCs.
MIN_NUCLEUS_FRACTION = 0.08
#: Percentile of the optical density outside the objects taken as "as dark
#: as the red cells get" (platelets are too few to reach it).
_RED_CELL_PERCENTILE = 99.0
#: The second test: an object of which at least :data:`MIN_DENSE_FRACTION`
#: is denser than this percentile of the outside also holds a nucleus.  Where
#: overlapping red cells are as dense as a pale nucleus (a rapid stain on a
#: small crop) the first test fails, but a WBC is still mostly denser than
#: nearly all red-cell pixels, while a clump of red cells is not: on the saved
#: models' predictions of the shifted large images and patches, no object off
#: the true WBCs reached 0.40 (docs/experiments.md, "Nucleus check").
_DENSE_PERCENTILE = 95.0
MIN_DENSE_FRACTION = 0.45
#: Pixels with no channel above this are the black edge of the field of view.
_LIT = 60
#: Width in pixels of the ring around each object left out of the reference.
_RING = 4
#: An object with at least this share of its pixels outside the lit field
#: of view (no channel above :data:`_LIT`) lies on the field-of-view edge: a
#: smear of its dark rim or a cell cut by it, which the annotations leave
#: out.  On the saved models' predictions of the shifted large images and
#: patches no true WBC reached 0.001, and the edge objects held 0.047-0.27
#: (``benchmarks/nucleus_check_objects.py``).
MAX_UNLIT_FRACTION = 0.02
#: The third test, for a WBC whose nucleus is no denser than the red cells
#: around it (a rapid stain's pale nucleus among overlapping red cells): the
#: inside of a WBC is textured (chromatin, lobes, granules), the inside of a
#: red cell or of a clump of them smooth.  An object is kept when its
#: interior texture is at least this share of the red cells' and it is
#: denser than the plasma (:data:`MIN_CELL_DENSITY_RATIO`; see
#: :func:`interior_texture`), in an image where no object passes a density
#: test.  On the committed models' objects that fail both density tests
#: (``benchmarks/nucleus_check_objects.py``) the false ones as dense as cells
#: reach 0.69 and the true WBCs start at 0.86.  Applied to every object that
#: fails them, it also let in fragments and red cells beside a WBC that
#: passed (docs/experiments.md, "Pale nuclei by texture").
MIN_TEXTURE_RATIO = 0.85
#: With the texture test, the object's mean density must be at least this
#: multiple of the median outside all objects: a pale stretch of plasma
#: that takes in the edges of red cells can read as textured (0.90 on the
#: same objects), a WBC is a cell (1.38 and up).
MIN_CELL_DENSITY_RATIO = 1.15
#: Width in pixels of the Laplacian of Gaussian that measures texture.
_TEXTURE_SIGMA = 1.0
#: Pixels inside an object's outline left out of its texture: the outline's
#: own edge would read as texture.
_INTERIOR = 3


def _reference_pixels(labels: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Summed optical density, brightest channel, and the outside pixels the nucleus tests compare with.

    The outside is every lit pixel (some channel above :data:`_LIT`) that is
    more than :data:`_RING` px from every object: an outline drawn a little
    inside the cell would otherwise put WBC pixels into the reference.
    """
    rgb = np.asarray(image)[..., :3]
    density = summed_density(rgb)
    brightest = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    outside = ~ndi.binary_dilation(labels > 0, iterations=_RING) & (brightest > _LIT)
    return density, brightest, outside


def nucleus_shares(labels: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """What share of each object is nucleus-dense, and what share unlit: the numbers :func:`drop_without_nucleus` tests.

    Parameters
    ----------
    labels : ndarray, shape (H, W), int
        Found WBCs, 1..n.
    image : ndarray, shape (H, W, 3), uint8
        The image they were found in.

    Returns
    -------
    (dark, dense, unlit) : three ndarrays, shape (n + 1,), float64, or None
        Per label (index 0 is the background): the share of its pixels
        denser than the 99th and the 95th percentile of the optical density
        outside all objects (pixels on the field-of-view edge's rim left
        out), and the share outside the lit field of view.  None when fewer
        than 100 lit pixels lie outside the objects.
    """
    labels = np.asarray(labels)
    return _nucleus_shares(labels, _reference_pixels(labels, image))


def _nucleus_shares(labels: np.ndarray,
                    pixels: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...] | None:
    """:func:`nucleus_shares` from the image's :func:`_reference_pixels`."""
    n = int(labels.max()) if labels.size else 0
    density, brightest, outside = pixels
    if outside.sum() < 100:
        return None
    reference, dense_reference = np.percentile(density[outside], [_RED_CELL_PERCENTILE, _DENSE_PERCENTILE])
    area = np.maximum(np.bincount(labels.ravel(), minlength=n + 1), 1).astype(float)
    # Dark pixels next to the unlit field-of-view mask are its blurred edge,
    # not a nucleus: a red cell cut by the edge would otherwise pass.
    edge = ndi.binary_dilation(brightest <= _LIT, iterations=_RING)
    dark = np.bincount(labels[(density > reference) & ~edge], minlength=n + 1) / area
    dense = np.bincount(labels[(density > dense_reference) & ~edge], minlength=n + 1) / area
    unlit = np.bincount(labels[brightest <= _LIT], minlength=n + 1) / area
    return dark, dense, unlit


def interior_texture(labels: np.ndarray, image: np.ndarray,
                     which: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """How textured and how dense each object is, relative to the outside of all objects.

    Texture is the mean absolute Laplacian of Gaussian (sigma
    :data:`_TEXTURE_SIGMA` px) of the summed optical density.  An object's
    is taken over its interior (its pixels :data:`_INTERIOR` px or more
    inside its outline, or all of them for an object too thin for that); the
    reference over the outside pixels (lit, away from every object as in
    :func:`nucleus_shares`) denser than the outside's median: the red
    cells, edges included.  Density is the object's mean summed optical
    density over the outside's median.

    Parameters
    ----------
    labels : ndarray, shape (H, W), int
        Found WBCs, 1..n.
    image : ndarray, shape (H, W, 3), uint8
    which : ndarray of int, optional
        The labels to measure (default: all).

    Returns
    -------
    (texture, density) : two ndarrays, shape (n + 1,), float64
        The ratios per label; NaN for labels not measured, for index 0, and
        for every label when the outside holds fewer than 100 lit pixels
        (or 100 denser than their median).
    """
    labels = np.asarray(labels)
    return _interior_texture(labels, _reference_pixels(labels, image), which)


def _interior_texture(labels: np.ndarray, pixels: tuple[np.ndarray, np.ndarray, np.ndarray],
                      which: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`interior_texture` from the image's :func:`_reference_pixels`."""
    n = int(labels.max()) if labels.size else 0
    texture_ratio, density_ratio = np.full(n + 1, np.nan), np.full(n + 1, np.nan)
    density, _, outside = pixels
    if outside.sum() < 100:
        return texture_ratio, density_ratio
    median = float(np.median(density[outside]))
    cells = outside & (density > median)
    if cells.sum() < 100 or median <= 0:
        return texture_ratio, density_ratio
    texture = np.abs(ndi.gaussian_laplace(density.astype(np.float32), _TEXTURE_SIGMA))
    reference = float(texture[cells].mean())
    if reference <= 0:
        return texture_ratio, density_ratio
    boxes = ndi.find_objects(labels)
    for k in (range(1, n + 1) if which is None else np.asarray(which, int)):
        box = boxes[k - 1] if 0 < k <= len(boxes) else None
        if box is None:
            continue
        obj = labels[box] == k
        interior = ndi.binary_erosion(obj, iterations=_INTERIOR)
        texture_ratio[k] = float(texture[box][interior if interior.any() else obj].mean()) / reference
        density_ratio[k] = float(density[box][obj].mean()) / median
    return texture_ratio, density_ratio


def drop_without_nucleus(labels: np.ndarray, image: np.ndarray,
                         min_fraction: float | None = None) -> np.ndarray:
    """Remove the objects of a label image that hold no nucleus, renumbering the rest.

    A WBC's nucleus is darker than any red cell of the same image, whatever
    the stain; the pale clumps of red cells and plasma that a model may
    mistake for WBCs on unfamiliar slides have no such pixels.  Each
    object's pixels are compared with the darkest red-cell pixels of the
    image (a high percentile of the optical density outside all objects,
    in the lit field of view), so the rule adapts to each image.  An object
    holds a nucleus when at least ``min_fraction`` of it is denser than the
    99th percentile of the outside, or at least :data:`MIN_DENSE_FRACTION`
    of it denser than the 95th (a pale nucleus among a few red cells that
    overlap into the same density).  In an image where no object passes
    either density test, an object is also kept when its interior is at
    least :data:`MIN_TEXTURE_RATIO` times as textured as the red cells and
    it is denser than the plasma (:func:`interior_texture`: a pale nucleus
    among red cells as dense as it).  Objects partly outside the lit field
    of view (:data:`MAX_UNLIT_FRACTION`) lie on its edge and are removed
    too.

    Parameters
    ----------
    labels : ndarray, shape (H, W), int
        Found WBCs, 1..n.
    image : ndarray, shape (H, W, 3), uint8
        The image they were found in.
    min_fraction : float, optional
        Smallest share of nucleus-dark pixels that keeps an object;
        default :data:`MIN_NUCLEUS_FRACTION`.

    Returns
    -------
    ndarray, shape (H, W), same dtype as ``labels``
        1..m in the old order, m <= n.
    """
    min_fraction = MIN_NUCLEUS_FRACTION if min_fraction is None else min_fraction
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return labels
    # Density and the outside pixels, computed once for both tests.
    pixels = _reference_pixels(labels, image)
    shares = _nucleus_shares(labels, pixels)
    if shares is None:
        return labels  # nothing to compare with: keep every object
    dark, dense, unlit = shares
    keep = ((dark >= min_fraction) | (dense >= MIN_DENSE_FRACTION)) & (unlit < MAX_UNLIT_FRACTION)
    keep[0] = True
    doubtful = np.flatnonzero(~keep & (unlit < MAX_UNLIT_FRACTION))
    if len(doubtful) and keep.sum() == 1:
        # No object of the image passed a density test: its red cells may be
        # as dense as its nuclei, and texture decides.  Where another object
        # passed, density works in this image (one stain), and a fragment or
        # a red cell that fails it is not let in by its edges.
        texture, density = _interior_texture(labels, pixels, doubtful)
        keep[doubtful] = (texture[doubtful] >= MIN_TEXTURE_RATIO) & (density[doubtful] >= MIN_CELL_DENSITY_RATIO)
    if keep.all():
        return labels
    lut = np.zeros(n + 1, labels.dtype)
    kept = np.flatnonzero(keep[1:]) + 1
    lut[kept] = np.arange(1, len(kept) + 1, dtype=labels.dtype)
    return lut[labels]
