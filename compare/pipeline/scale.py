"""The scale of a blood-smear image: how many pixels a cell spans.

Microscopes, objectives and cameras differ, so the same WBC may be 30 px wide
in one lab's images and 170 px in another's, while a model has only seen the
scale of its training data.  :func:`estimate_scale` finds the factor by which
to resize an image so that its cells match the training scale, from (first
that applies):

1. the user's typical WBC diameter (``wbc_diameter``, method ``"wbc-diameter"``);
2. the user's pixel size in micrometres (``pixel_size_um``, ``"pixel-size"``);
3. the red cells of the image (``"red-cells"``): their diameter varies far less
   between people (about 7-8 um) than pixel sizes vary between microscopes,
   and a smear shows hundreds of them;
4. a fitted model (``probe``, ``"wbc-probe"``) run at a few trial scales, for
   crops (one WBC and the cells around it: under :data:`MIN_RULER_SIDE` px a
   side, or too few whole red cells): the trial whose largest WBC comes out
   nearest the training WBC size wins, the image's own scale preferred.

The red-cell measurement is a granulometry of the cell layer by maximal
inscribed disks, which is robust to touching and overlapping cells:

* the cell layer is everything that absorbs light against the image's own
  bright background: the optical density ``OD = sum_c -log((I_c + 1) /
  (bg_c + 1))`` over the three channels, thresholded by Otsu's method, so no
  stain colour is assumed (a yellow background or a bluer stain change ``bg``
  and the OD's spectrum, not the cells' contrast); the black edge of a
  microscope's field of view is left out of both;
* holes (the pale centres of red cells) are filled, and the Euclidean
  distance transform is taken: at the centre of each cell it equals the
  radius of the largest disk that fits inside the cell.  Where two cells
  touch or overlap, the distance at each centre is still that cell's own
  radius (the neck between them is a saddle, not a maximum), which is why no
  solitary cells are needed;
* the local maxima of the distance whose disk lies wholly inside the image
  (cells cut by the border or the field-of-view edge would read too small)
  give one radius per cell (a few per elongated cell), and the peak of their
  area-weighted log-radius distribution is the typical red-cell radius.
  Platelets (a third of a red cell across) and WBCs (twice, and few) fall
  outside the peak.

No operation before measuring has a fixed size in pixels other than 3 x 3
neighbourhoods, so the estimate scales with the image: on the five large
SigTuple images rescaled by 0.5x, 2x and 3x it moves by the same factor within
a few per cent (``benchmarks/scale_accuracy.py``).

:func:`training_scale` says what scale a saved model was trained at;
:func:`estimate_rbc_diameter` and :func:`scale_factor` are the earlier, narrower
entry points, kept as wrappers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from compare.pipeline.memo import ScopedMemo
from stain.normalise import summed_density

__all__ = [
    "SIGTUPLE_RBC_DIAMETER",
    "SIGTUPLE_PIXEL_SIZE_UM",
    "RBC_DIAMETER_UM",
    "MIN_FACTOR",
    "MAX_FACTOR",
    "PROBE_FACTORS",
    "SCALE_TOLERANCE",
    "MIN_RULER_SIDE",
    "TrainingScale",
    "ScaleEstimate",
    "ScaleError",
    "training_scale",
    "remembering_red_cells",
    "forget_red_cell_measurements",
    "estimate_scale",
    "estimate_rbc_diameter",
    "scale_factor",
]

#: Median red-cell equivalent diameter in pixels of the SigTuple images
#: (training patches and large images share one scale): 32.0, 31.0, 30.7, 33.2
#: and 31.0 px on the five large training images.
SIGTUPLE_RBC_DIAMETER = 31.0

#: Mean diameter of a normal red cell in micrometres (the textbook 7.5 um;
#: the normal range is about 6.2-8.2 um, so a pixel size derived from it is
#: good to about 10 %).
RBC_DIAMETER_UM = 7.5

#: Pixel size of the SigTuple images in micrometres, assuming their red cells
#: have the mean diameter :data:`RBC_DIAMETER_UM`; the data set does not state
#: its microscope's pixel size.
SIGTUPLE_PIXEL_SIZE_UM = RBC_DIAMETER_UM / SIGTUPLE_RBC_DIAMETER

#: Resize factors outside this range are clamped and marked not confident: a
#: smear imaged 4x finer or coarser than the training data is more likely a
#: measurement gone wrong than a real microscope.
MIN_FACTOR = 0.25
MAX_FACTOR = 4.0

#: Scale factors within this ratio of 1 are not worth resampling for: the
#: learned segmenters are trained with scale augmentation of about this much.
SCALE_TOLERANCE = 1.15

#: Trial resize factors for the ``probe`` fallback, 1 first, then by cost: the
#: training scale, images 2x and 3x finer (high-magnification crops), 2x coarser.
PROBE_FACTORS = (1.0, 0.5, 1.0 / 3.0, 2.0)
#: Another trial factor replaces 1 only when its WBC is this much nearer
#: (as a ratio) the training diameter: SigTuple's own WBCs vary by +-15 %.
PROBE_PREFERENCE = 1.2
#: A probe whose WBC is within this ratio of the training diameter is trusted.
PROBE_CONFIDENT = 1.35
#: When a probe is given, images smaller than this (px) on either side are
#: measured by it rather than by their red cells: a crop shows too few whole
#: red cells, and those it shows are often cut or crowded around the WBC.
MIN_RULER_SIDE = 300

#: Ratio of a red cell's equivalent (area) diameter to the diameter of the
#: largest disk inscribed in it, which is what the granulometry measures: red
#: cells are slightly oval and the measurement sees the short axis.  Measured
#: on the five large SigTuple images (inscribed diameters 27.8, 28.8, 27.8, 27.8
#: and 30.1 px against :data:`SIGTUPLE_RBC_DIAMETER`).
_EQUIVALENT_PER_INSCRIBED = SIGTUPLE_RBC_DIAMETER / 28.2

#: Largest area, in pixels, looked at when measuring red cells; bigger images
#: are sampled in windows so the cost is bounded whatever the image size.
_MAX_SAMPLE_PIXELS = 1_500_000
_WINDOW = 1024
#: Fewer whole red cells than this in the peak and the red-cell scale is not
#: trusted (a single-WBC crop shows a handful).
_MIN_CELLS = 25
#: Smallest inscribed radius, in pixels, counted: below it the distance
#: transform is too coarse to say anything (a red cell at 0.25x is ~4 px across).
_MIN_RADIUS = 1.5
#: Width (in natural-log units) of the kernel smoothing the radius distribution.
_LOG_BANDWIDTH = 0.08
#: Half-width of the peak (log units): radii within it count as red cells.
_PEAK_HALF_WIDTH = 0.25
#: Red cells are measured in the image block-mean downsampled by the largest
#: step (at most ``_MAX_STEP``) that keeps them this many pixels across: the
#: granulometry costs in proportion to the pixels, and a cell 14 px across
#: still gives its inscribed radius to within a few per cent.  Every shift of
#: the SigTuple scale from 0.5x to 3x is then measured with cells 14-16 px
#: across, so the small bias of a coarse grid is the same for all of them.
_RULER_DIAMETER = 14.0
_MAX_STEP = 8
#: The first, coarse look that finds the step shrinks the image to about
#: ``_COARSE_PIXELS`` pixels, and at least ``_COARSE_STEP`` times; it is taken
#: when the shrunk image keeps ``_COARSE_MIN_SIDE`` px a side.
_COARSE_STEP = 3
_COARSE_PIXELS = 250_000
_COARSE_MIN_SIDE = 100
#: A downsampled measurement under this share of ``_RULER_DIAMETER`` is
#: repeated at full resolution.
_MIN_RULER_FRACTION = 0.7
#: Smallest fraction of the cell layer the peak's cells must cover to be taken as red cells.
_MIN_COVER = 0.25
#: Holes at least this round (inscribed-disk area / hole area) are filled as pale centres.
_MIN_HOLE_ROUNDNESS = 0.4


class ScaleError(ValueError):
    """The scale of an image could not be measured."""


@dataclass(frozen=True)
class TrainingScale:
    """The cell sizes a model was trained at.

    Attributes
    ----------
    wbc_diameter : float
        Median equivalent diameter of the training WBCs, in pixels.
    rbc_diameter : float
        Median red-cell equivalent diameter of the training images, in pixels.
    """

    wbc_diameter: float
    rbc_diameter: float


@dataclass(frozen=True)
class ScaleEstimate:
    """How much to resize one image, and how that was found.

    Attributes
    ----------
    factor : float
        Resize factor to apply to the image (training size / observed size);
        1.0 means the image is at the training scale, above 1 enlarges it.
    method : str
        ``"wbc-diameter"`` or ``"pixel-size"`` (given by the user),
        ``"red-cells"``, ``"wbc-probe"`` (measured), or ``"none"``.
    observed_rbc_diameter : float or None
        Typical red-cell equivalent diameter found in the image, in its own
        pixels, where one was measured (even if not trusted).
    confident : bool
        False when no reliable scale was found; the caller should warn.
    detail : str
        One sentence: how the scale was found, or why it is not trusted.
    """

    factor: float
    method: str
    observed_rbc_diameter: float | None
    confident: bool
    detail: str = ""


def training_scale(model_dir: str | Path) -> TrainingScale:
    """The training scale of a model folder written by ``compare run``.

    A ``scale.json`` (``{"wbc_diameter_px": ..., "rbc_diameter_px": ...}``)
    in the folder wins.  Otherwise the WBC diameter is derived from
    ``instances.json``: :func:`compare.pipeline.instances.tune_instance_params` sets
    ``min_distance`` to 0.6 times the median training WBC radius, so the
    diameter is ``2 * min_distance / 0.6`` (within the rounding of
    ``min_distance`` to whole pixels, under 3 % for SigTuple WBCs); the red-cell
    diameter is the SigTuple one, the only training data the suite knows.

    Parameters
    ----------
    model_dir : str or Path

    Returns
    -------
    TrainingScale
    """
    model_dir = Path(model_dir)
    scale_file = model_dir / "scale.json"
    if scale_file.is_file():
        data = json.loads(scale_file.read_text())
        try:
            return TrainingScale(float(data["wbc_diameter_px"]), float(data["rbc_diameter_px"]))
        except (KeyError, TypeError, ValueError):
            raise ScaleError(f"{scale_file}: expected numbers under 'wbc_diameter_px' and 'rbc_diameter_px'; "
                             "fix or delete the file.") from None
    instances_file = model_dir / "instances.json"
    if not instances_file.is_file():
        raise ScaleError(f"{instances_file}: missing, so the training scale is unknown; "
                         "use a model folder saved by 'compare run'.")
    min_distance = float(json.loads(instances_file.read_text())["min_distance"])
    return TrainingScale(wbc_diameter=2.0 * min_distance / 0.6, rbc_diameter=SIGTUPLE_RBC_DIAMETER)


# -- red cells -----------------------------------------------------------------

def _sample_windows(shape: tuple[int, int]) -> list[tuple[slice, slice]]:
    """Windows spread evenly over an image, at most ``_MAX_SAMPLE_PIXELS`` in all."""
    height, width = shape
    if height * width <= _MAX_SAMPLE_PIXELS:
        return [(slice(0, height), slice(0, width))]
    n = max(1, _MAX_SAMPLE_PIXELS // (_WINDOW * _WINDOW))
    rows = max(1, min(int(np.ceil(np.sqrt(n * height / width))), max(1, height // _WINDOW)))
    cols = max(1, min(int(np.ceil(n / rows)), max(1, width // _WINDOW)))
    wh, ww = min(_WINDOW, height), min(_WINDOW, width)
    ys = np.linspace(0, height - wh, rows).round().astype(int)
    xs = np.linspace(0, width - ww, cols).round().astype(int)
    return [(slice(y, y + wh), slice(x, x + ww)) for y in ys for x in xs]


def cell_layer(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The light-absorbing cells of a smear, whatever its stain colours.

    Parameters
    ----------
    rgb : ndarray, shape (H, W, 3), uint8

    Returns
    -------
    cells : ndarray, shape (H, W), bool
        Pixels whose summed optical density against the image's background is
        above Otsu's threshold, holes filled.
    lit : ndarray, shape (H, W), bool
        Pixels inside the microscope's field of view (False on its black edge).
    """
    from skimage.filters import threshold_otsu

    rgb = np.asarray(rgb, np.uint8)
    # Statistics from a sparse grid are as good as from every pixel and keep
    # the cost to the per-pixel lookups below.
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 40_000)))
    sample = rgb[::step, ::step].reshape(-1, 3).astype(np.int32)
    brightness = sample.sum(axis=1)
    # The plasma is the brightest large class in a smear: even a crowded
    # field leaves more than 5 % of its pixels between cells or in pale centres.
    bright = sample[brightness >= np.percentile(brightness, 95)]
    background = np.median(bright, axis=0).astype(float)
    brightest = rgb.max(axis=2)
    # The black edge of a field of view is far darker than any stained cell
    # (a nucleus keeps one channel above half the background).
    lit = brightest > 0.2 * background.max()
    lit_sample = sample[sample.max(axis=1) > 0.2 * background.max()]
    empty = np.zeros(rgb.shape[:2], bool)
    if len(lit_sample) < 50:
        return empty, lit
    od = summed_density(rgb, background)
    sample_od = summed_density(lit_sample, background)
    # Nuclei are far denser than red cells; clipping them keeps Otsu's split
    # between plasma and red cells rather than between nuclei and the rest.
    sample_od = np.minimum(sample_od, np.percentile(sample_od, 95))
    if sample_od.max() - sample_od.min() < 0.05:
        return empty, lit
    cells = (od > threshold_otsu(sample_od)) & lit
    return _fill_round_holes(cells), lit


def _fill_round_holes(cells: np.ndarray) -> np.ndarray:
    """Fill the holes that look like a red cell's pale centre, not like a gap between touching cells.

    A pale centre is a round hole; the gap enclosed by three touching cells is
    a concave triangle whose inscribed disk covers under half of it (0.47 for
    equal disks, less once the distance transform's half-pixel offset is taken
    off).  Holes of one or two pixels are filled whatever their shape.
    """
    holes = ndi.binary_fill_holes(cells) & ~cells
    labels, n = ndi.label(holes)
    if n == 0:
        return cells
    # Per-hole maximum and area over the hole pixels only: scipy's labelled
    # maximum over the whole image sorts every pixel, most of the cost.
    where = labels > 0
    hole_of = labels[where]
    inscribed = np.zeros(n + 1)
    np.maximum.at(inscribed, hole_of, ndi.distance_transform_edt(holes)[where])
    inscribed = inscribed[1:]
    area = np.bincount(hole_of, minlength=n + 1)[1:].astype(float)
    roundness = np.pi * np.maximum(inscribed - 0.5, 0.0) ** 2 / area
    fill = np.concatenate([[False], (roundness >= _MIN_HOLE_ROUNDNESS) | (area <= 2)])
    return cells | fill[labels]


def _inscribed_disks(rgb: np.ndarray) -> np.ndarray:
    """The largest disks inside each whole cell of one window.

    Returns
    -------
    disks : ndarray, shape (N, 3), float
        Radius, row and column of each local maximum of the distance transform
        whose disk lies inside the window and the field of view.
    area : int
        Pixels of the cell layer.
    """
    cells, lit = cell_layer(rgb)
    if not cells.any():
        return np.zeros((0, 3)), 0
    distance = ndi.distance_transform_edt(cells)
    peaks = (distance == ndi.maximum_filter(distance, size=3)) & (distance >= _MIN_RADIUS)
    # A disk that reaches the image border or the field-of-view edge belongs
    # to a cell that is cut there: its size is unknown, so it is left out.
    height, width = cells.shape
    yy, xx = np.nonzero(peaks)
    radii = distance[yy, xx]
    room = np.minimum(np.minimum(yy + 1, height - yy), np.minimum(xx + 1, width - xx)).astype(float)
    if not lit.all():
        room = np.minimum(room, ndi.distance_transform_edt(lit)[yy, xx])
    keep = radii < room - 1.0
    return np.column_stack([radii[keep], yy[keep], xx[keep]]), int(cells.sum())


def _radius_peak(radii: np.ndarray) -> float:
    """The typical radius: the peak of the area-weighted log-radius density."""
    log_r = np.log(radii)
    grid = np.arange(np.log(_MIN_RADIUS), np.log(max(radii.max(), 2 * _MIN_RADIUS)) + 0.01, 0.01)
    density = np.zeros_like(grid)
    # Area weighting counts each cell by the pixels it covers, as an opening
    # spectrum does; ridge points of small debris then weigh little.
    weights = radii ** 2
    for chunk in np.array_split(np.arange(len(radii)), max(1, len(radii) // 2000)):
        density += (weights[chunk][None, :]
                    * np.exp(-0.5 * ((grid[:, None] - log_r[chunk][None, :]) / _LOG_BANDWIDTH) ** 2)).sum(axis=1)
    return float(np.exp(grid[int(np.argmax(density))]))


def _block_mean(image: np.ndarray, step: int) -> np.ndarray:
    """An RGB image shrunk by an integer ``step``: the mean of each ``step`` x ``step`` block, uint8.

    Rows and columns beyond the last whole block are dropped rather than
    padded, so no block mixes in a fill value that would read as a dark cell.
    Summing rows then columns in 16 bits is four times faster here than
    ``skimage.measure.block_reduce(..., np.mean)``, which sums over both block
    axes at once in floating point; the result is the same block mean.
    """
    if step == 1:
        return image
    height, width = (image.shape[0] // step) * step, (image.shape[1] // step) * step
    total = np.asarray(image[:height, :width], np.uint16)
    total = total.reshape(height // step, step, width, 3).sum(axis=1, dtype=np.uint16)
    total = total.reshape(height // step, width // step, step, 3).sum(axis=2, dtype=np.uint16)
    return ((total + step * step // 2) // (step * step)).astype(np.uint8)


#: Red-cell measurements of recent images, by content digest (see
#: :func:`_measure_red_cells`); kept between blocks, at most 4096.
_RED_CELL_MEMO = ScopedMemo(max_entries=4096, clear_on_close=False)


def remembering_red_cells() -> AbstractContextManager[None]:
    """Within this block, the red-cell measurement of an image is remembered by its pixels and reused.

    For scoring several models on the same images (the ``shift`` protocol of
    ``compare run``): their white-balanced images are the same pixels (the
    backgrounds come from the same training images), so every model after
    the first skips the measurement.  Outside such blocks each image is
    measured afresh, so that predict timings are those of a first sight.
    Hashing the pixels costs 1-10 % of measuring them (30 % on a
    3x-enlarged large image, where the coarse look is cheap).
    """
    return _RED_CELL_MEMO.scope()


def forget_red_cell_measurements() -> None:
    """Empty the memo of :func:`remembering_red_cells`."""
    _RED_CELL_MEMO.clear()


def _measure_red_cells(image: np.ndarray) -> tuple[float | None, int]:
    """:func:`_measure_red_cells_uncached`, from the memo inside :func:`remembering_red_cells`."""
    if not _RED_CELL_MEMO.active:
        return _measure_red_cells_uncached(image)
    image = np.ascontiguousarray(image)
    key = (image.shape, image.dtype.str, hashlib.blake2b(image, digest_size=16).digest())
    return _RED_CELL_MEMO.get(key, lambda: _measure_red_cells_uncached(image))


def _measure_red_cells_uncached(image: np.ndarray) -> tuple[float | None, int]:
    """Typical red-cell equivalent diameter of an image and how many whole cells of that size it shows.

    A first, coarse look (at least ``_COARSE_STEP`` times coarser, for
    images big enough) says how large the red cells are; they are then
    measured at the coarsest step that keeps them ``_RULER_DIAMETER`` px
    across, or at full resolution when the coarse look finds too few.
    """
    step = 1
    height, width = image.shape[:2]
    coarse_step = max(_COARSE_STEP, int(np.ceil(np.sqrt(height * width / _COARSE_PIXELS))))
    if min(height, width) >= coarse_step * _COARSE_MIN_SIDE:
        coarse, coarse_cells = _measure_at_resolution(_block_mean(image, coarse_step))
        if coarse is not None and coarse_cells >= _MIN_CELLS:
            step = int(np.clip(coarse * coarse_step // _RULER_DIAMETER, 1, _MAX_STEP))
            if step >= coarse_step:  # the coarse look already saw the cells large enough
                return coarse * coarse_step, coarse_cells
    diameter, cells = _measure_at_resolution(_block_mean(image, step))
    if step > 1 and (diameter is None or diameter < _MIN_RULER_FRACTION * _RULER_DIAMETER):
        # The coarse look took something larger (merged cells) for the red
        # cells: measure again at full resolution rather than trust cells a
        # few pixels across.
        step = 1
        diameter, cells = _measure_at_resolution(image)
    return (None if diameter is None else diameter * step), cells


def _measure_at_resolution(image: np.ndarray) -> tuple[float | None, int]:
    """:func:`_measure_red_cells` at the image's own resolution, in its pixels."""
    windows = _sample_windows(image.shape[:2])
    disks, areas = zip(*[_inscribed_disks(image[window]) for window in windows])
    radii = np.concatenate([d[:, 0] for d in disks])
    if len(radii) == 0:
        return None, 0
    peak = _radius_peak(radii)
    # Cells, not maxima: an elongated cell has a ridge of maxima, so the
    # maxima near the peak are counted once per square of the peak radius.
    cells = 0
    room = 0.0
    for window, found in zip(windows, disks):
        near = found[np.abs(np.log(found[:, 0] / peak)) < _PEAK_HALF_WIDTH]
        cells += len(np.unique(np.floor(near[:, 1:] / peak).astype(np.int64), axis=0))
        height = window[0].stop - window[0].start
        width = window[1].stop - window[1].start
        room += max(0.0, height - 2 * peak) * max(0.0, width - 2 * peak)
    # No more whole cells than fit, hexagonally packed, with their centres a
    # radius away from the border: a crop around one WBC cannot pass.
    cells = min(cells, int(room / (0.866 * (2 * peak) ** 2)))
    # Red cells are most of a smear's cell layer; where the cells found at
    # the peak cover little of it (a crop filled by one WBC, whose lobes or
    # texture made the peak), the peak is not the red cells.
    if cells * np.pi * (peak * _EQUIVALENT_PER_INSCRIBED) ** 2 < _MIN_COVER * sum(areas):
        cells = min(cells, _MIN_CELLS - 1)
    return 2.0 * peak * _EQUIVALENT_PER_INSCRIBED, cells


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ScaleError(f"{name}: expected an (H, W, 3) RGB image, got shape {image.shape}.")
    return image


# -- the estimate ----------------------------------------------------------------

def _clamped(factor: float, method: str, rbc: float | None, detail: str, confident: bool = True) -> ScaleEstimate:
    if not np.isfinite(factor) or factor <= 0:
        return ScaleEstimate(1.0, "none", rbc, False, f"{detail}; the factor was not a positive number, so none is applied.")
    if factor < MIN_FACTOR or factor > MAX_FACTOR:
        bounded = float(np.clip(factor, MIN_FACTOR, MAX_FACTOR))
        return ScaleEstimate(bounded, method, rbc, False,
                             f"{detail}; the factor {factor:.2f} is outside {MIN_FACTOR}-{MAX_FACTOR:g} "
                             f"and was clamped to {bounded:.2f}.")
    return ScaleEstimate(float(factor), method, rbc, confident, detail)


def _probe_estimate(probe: Callable[[float], Sequence[float]], training: TrainingScale,
                    rbc: float | None, why: str) -> ScaleEstimate:
    """Run the model at the :data:`PROBE_FACTORS` and keep the one whose WBC matches the training size.

    The largest object found at each factor is taken as the WBC (a crop is
    centred on one; WBCs cut by its border come out smaller).  Factor 1 is
    kept unless another factor brings that WBC clearly nearer the training
    diameter (:data:`PROBE_PREFERENCE`); the chosen factor is refined by the
    measured size only when that shrinks the image by more than
    :data:`SCALE_TOLERANCE` (a WBC larger than the training ones), never to
    enlarge it.
    """
    misses: dict[float, tuple[float, float]] = {}  # factor -> (|log ratio|, diameter)
    for factor in PROBE_FACTORS:
        found = np.asarray(probe(float(factor)), float).ravel()
        found = found[np.isfinite(found) & (found > 0)]
        if len(found):
            diameter = float(found.max())
            misses[factor] = (abs(float(np.log(diameter / training.wbc_diameter))), diameter)
        if factor in misses and misses[factor][0] <= np.log(PROBE_PREFERENCE):
            # A WBC within the training sizes' own spread: at factor 1 no other
            # factor could displace it (the rule below); at another factor one
            # still untried would rarely do better, and the factors are tried
            # in order of cost, 2 (four times the pixels) last.
            break
    if not misses:
        return ScaleEstimate(1.0, "none", rbc, False,
                             f"{why}, and the model found no WBC at any trial scale, so the image is used as it is.")
    best = min(misses, key=lambda f: misses[f][0])
    if 1.0 in misses and misses[1.0][0] <= misses[best][0] + np.log(PROBE_PREFERENCE):
        best = 1.0
    miss, diameter = misses[best]
    # The WBC measures diameter / best in the image's own pixels.  The trial
    # factor is refined by that size only towards a smaller image: a WBC that
    # reads too small is far more often half-found than small.  On stains the
    # model has not seen it finds the nucleus and misses the pale cytoplasm,
    # and enlarging the image for that made the scale worse in all 213 such
    # cases of a full run's shift battery, and the segmentation with it
    # (docs/experiments.md, "Probe refinement").
    refined = min(best, best * training.wbc_diameter / diameter)
    factor = best if abs(np.log(refined / best)) <= np.log(SCALE_TOLERANCE) else refined
    detail = (f"{why}; the model's largest WBC measured {diameter:.0f} px at trial factor {best:.2f} "
              f"(training {training.wbc_diameter:.0f} px)")
    return _clamped(factor, "wbc-probe", rbc, detail + ".", confident=bool(miss <= np.log(PROBE_CONFIDENT)))


def estimate_scale(image: np.ndarray, training: TrainingScale, *, wbc_diameter: float | None = None,
                   pixel_size_um: float | None = None, probe: Callable[[float], Sequence[float]] | None = None,
                   name: str = "the image") -> ScaleEstimate:
    """Find the factor that brings an image's cells to the training scale.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        RGB smear or crop.
    training : TrainingScale
        Cell sizes of the model's training data.
    wbc_diameter : float, optional, keyword-only
        The user's typical WBC diameter in this image, in pixels; wins over
        everything else.
    pixel_size_um : float, optional, keyword-only
        The image's pixel size in micrometres; the training pixel size is taken
        as :data:`RBC_DIAMETER_UM` / ``training.rbc_diameter``.
    probe : callable, optional, keyword-only
        ``probe(factor) -> diameters``: the equivalent diameters, in pixels of
        the image resized by ``factor``, of the WBCs a fitted model finds
        there.  Called (up to 4 times) only when the red cells cannot give the
        scale, or the image is smaller than :data:`MIN_RULER_SIDE`.
    name : str, keyword-only
        How messages refer to the image (its file name).

    Returns
    -------
    ScaleEstimate
        Never raises for an unmeasurable image: ``confident`` is then False
        and ``factor`` 1.0 (or the clamped value).

    Raises
    ------
    ValueError
        If ``wbc_diameter`` or ``pixel_size_um`` is not a positive number.
    ScaleError
        If ``image`` is not an RGB array.
    """
    if wbc_diameter is not None:
        if not np.isfinite(wbc_diameter) or wbc_diameter <= 0:
            raise ValueError(f"--wbc-diameter must be a positive number of pixels, not {wbc_diameter}.")
        return _clamped(training.wbc_diameter / float(wbc_diameter), "wbc-diameter", None,
                        f"{name}: WBC diameter given as {wbc_diameter:g} px.")
    if pixel_size_um is not None:
        if not np.isfinite(pixel_size_um) or pixel_size_um <= 0:
            raise ValueError(f"--pixel-size must be a positive number of micrometres, not {pixel_size_um}.")
        training_pixel_um = RBC_DIAMETER_UM / training.rbc_diameter
        return _clamped(float(pixel_size_um) / training_pixel_um, "pixel-size", None,
                        f"{name}: pixel size given as {pixel_size_um:g} um "
                        f"(training {training_pixel_um:.3f} um, assuming {RBC_DIAMETER_UM} um red cells).")
    image = _check_image(image, name)
    rbc, cells = _measure_red_cells(image)
    rbc_factor = training.rbc_diameter / rbc if rbc else None
    small = min(image.shape[:2]) < MIN_RULER_SIDE
    if rbc is not None and cells >= _MIN_CELLS:
        estimate = _clamped(rbc_factor, "red-cells", rbc,
                            f"{name}: red cells {rbc:.1f} px across (training {training.rbc_diameter:.1f} px), "
                            f"from about {cells} whole cells.")
        if probe is None or (estimate.confident and not small):
            return estimate
        why = estimate.detail.rstrip(".")
        if estimate.confident:
            why += f", but the image is under {MIN_RULER_SIDE} px a side"
    else:
        why = f"{name}: only about {cells} whole red cells, too few to measure the scale"
    if probe is not None:
        return _probe_estimate(probe, training, rbc, why)
    return ScaleEstimate(1.0, "none", rbc, False, f"{why}; the image is used as it is.")


# -- earlier entry points ----------------------------------------------------------

def estimate_rbc_diameter(image: np.ndarray, *, name: str = "the image") -> float:
    """Typical red-cell equivalent diameter of a blood-smear image, in pixels.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        RGB smear.
    name : str, keyword-only
        How errors refer to the image (its file name).

    Returns
    -------
    float

    Raises
    ------
    ScaleError
        If too few whole red cells are found (not a smear, a crop around one
        cell, or too blurred to measure).
    """
    image = _check_image(image, name)
    rbc, cells = _measure_red_cells(image)
    if rbc is None or cells < _MIN_CELLS:
        raise ScaleError(f"{name}: only about {cells} whole red cells were found, too few to measure the "
                         "scale; pass --wbc-diameter or --pixel-size instead.")
    return rbc


def scale_factor(image: np.ndarray, training: TrainingScale, *, wbc_diameter: float | None = None,
                 auto: bool = False, name: str = "the image") -> float:
    """The factor by which to resize an image so that its cells match the training scale.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    training : TrainingScale
    wbc_diameter : float, optional, keyword-only
        The user's typical WBC diameter in this image, in pixels.
    auto : bool, keyword-only
        Estimate the scale from the image's red cells.
    name : str, keyword-only
        For error messages.

    Returns
    -------
    float
        1.0 when neither option is given; above 1 enlarges the image.

    Raises
    ------
    ScaleError
        If ``auto`` and the red cells give no reliable scale.
    """
    if wbc_diameter is not None and auto:
        raise ValueError("Give either --wbc-diameter or --auto-scale, not both.")
    if wbc_diameter is not None:
        if not np.isfinite(wbc_diameter) or wbc_diameter <= 0:
            raise ValueError(f"--wbc-diameter must be a positive number of pixels, not {wbc_diameter}.")
        return training.wbc_diameter / float(wbc_diameter)
    if auto:
        estimate = estimate_scale(image, training, name=name)
        if not estimate.confident:
            raise ScaleError(estimate.detail + " Pass --wbc-diameter or --pixel-size instead.")
        return estimate.factor
    return 1.0
