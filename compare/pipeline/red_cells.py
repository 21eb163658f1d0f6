"""The red-cell ruler: the typical red-cell diameter of a smear, in its own pixels.

Red cells vary far less in size between people (about 7-8 um) than pixel
sizes vary between microscopes, and a smear shows hundreds of them, so they
are the ruler :func:`compare.pipeline.scale.estimate_scale` reads an image's
scale from.  The measurement is a granulometry of the cell layer by maximal
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
neighbourhoods, so the measurement scales with the image: on the five large
SigTuple images rescaled by 0.5x, 2x and 3x it moves by the same factor within
a few per cent (``benchmarks/scale_accuracy.py``).
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager

import numpy as np
from scipy import ndimage as ndi

from compare.pipeline.memo import ScopedMemo
from stain.normalise import summed_density

__all__ = [
    "SIGTUPLE_RBC_DIAMETER",
    "MIN_CELLS",
    "cell_layer",
    "measure_red_cells",
    "remembering_red_cells",
    "forget_red_cell_measurements",
]

#: Median red-cell equivalent diameter in pixels of the SigTuple images
#: (training patches and large images share one scale): 32.0, 31.0, 30.7, 33.2
#: and 31.0 px on the five large training images.
SIGTUPLE_RBC_DIAMETER = 31.0

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
MIN_CELLS = 25
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
#: :func:`measure_red_cells`); kept between blocks, at most 4096.
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


def measure_red_cells(image: np.ndarray) -> tuple[float | None, int]:
    """Typical red-cell equivalent diameter of an image, in its pixels, and how many whole cells of that size it shows.

    Inside :func:`remembering_red_cells` the measurement of the same pixels is reused.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8

    Returns
    -------
    diameter : float or None
        None when no cell was found.
    cells : int
        Whole cells near that size; under :data:`MIN_CELLS` the diameter is not to be trusted.
    """
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
        if coarse is not None and coarse_cells >= MIN_CELLS:
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
    """:func:`measure_red_cells` at the image's own resolution, in its pixels."""
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
        cells = min(cells, MIN_CELLS - 1)
    return 2.0 * peak * _EQUIVALENT_PER_INSCRIBED, cells

