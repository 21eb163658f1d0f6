"""The scale of a blood-smear image: how many pixels a cell spans.

Microscopes, objectives and cameras differ, so the same WBC may be 30 px wide
in one lab's images and 120 px in another's, while a model has only seen the
scale of its training data.  Red cells make a good ruler: their diameter
varies far less between people (about 7-8 um) than pixel sizes vary between
microscopes, and a smear shows hundreds of them.

:func:`estimate_rbc_diameter` measures the typical red-cell diameter of an
image: the cells (everything darker than the bright plasma in the green
channel, where haemoglobin absorbs) are separated from the background by
Otsu's threshold, holes (the pale centres of red cells) are filled, and the
median equivalent diameter of the solitary, convex components is taken.
Touching cells form non-convex clumps and are left out by a solidity test, so
the median stays a single cell's size.  Only fixed, tiny operations (a 3 x 3
opening) act before measuring, so the estimate scales with the image: on the
five large SigTuple images rescaled by 0.5x and 2x it moves by the same
factor within 2 %.

:func:`training_scale` says what scale a saved model was trained at, and
:func:`scale_factor` turns the user's options into the factor by which an
image is resized before prediction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "SIGTUPLE_RBC_DIAMETER",
    "TrainingScale",
    "training_scale",
    "estimate_rbc_diameter",
    "scale_factor",
    "ScaleError",
]

#: Median red-cell diameter in pixels of the SigTuple images (training
#: patches and large images share one scale), measured with
#: :func:`estimate_rbc_diameter` on the five large training images:
#: 32.0, 31.0, 30.7, 33.2 and 31.0 px.
SIGTUPLE_RBC_DIAMETER = 31.0

#: Largest area, in pixels, looked at when estimating the scale; bigger
#: images are sampled in windows so that the estimate costs the same on a
#: 64 Mpx image as on a 4 Mpx one.
_MAX_SAMPLE_PIXELS = 4_000_000
_WINDOW = 1024
#: Fewer solitary red cells than this and the median is not trusted.
_MIN_CELLS = 10
#: Components under this area are debris, platelets or noise, whatever the scale.
_MIN_CELL_AREA = 20
#: Convex area fraction above which a component is taken as one cell.
_MIN_SOLIDITY = 0.9


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
        Median red-cell diameter of the training images, in pixels.
    """

    wbc_diameter: float
    rbc_diameter: float


def training_scale(model_dir: str | Path) -> TrainingScale:
    """The training scale of a model folder written by ``compare run``.

    A ``scale.json`` (``{"wbc_diameter_px": ..., "rbc_diameter_px": ...}``)
    in the folder wins.  Otherwise the WBC diameter is derived from
    ``instances.json``: :func:`compare.instances.tune_instance_params` sets
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


def _cell_diameters(rgb: np.ndarray) -> np.ndarray:
    """Equivalent diameters of the solitary, convex cells of one window."""
    from skimage.filters import threshold_otsu
    from skimage.measure import regionprops

    rgb = np.asarray(rgb)
    brightest = rgb.max(axis=2)
    # The black edge of a microscope's field of view would otherwise pull
    # Otsu's threshold between "dark" and "everything else".
    lit = brightest > 60
    if lit.sum() < 100:
        return np.zeros(0)
    green = rgb[..., 1]
    values = green[lit]
    if values.min() == values.max():
        return np.zeros(0)
    cells = (green < threshold_otsu(values)) & lit
    cells = ndi.binary_fill_holes(cells)
    cells = ndi.binary_opening(cells)
    labels, _ = ndi.label(cells)
    height, width = labels.shape
    diameters = []
    for region in regionprops(labels):
        if region.area < _MIN_CELL_AREA:
            continue
        y0, x0, y1, x1 = region.bbox
        if y0 == 0 or x0 == 0 or y1 == height or x1 == width:
            continue  # cut by the window: its size is unknown
        if region.solidity < _MIN_SOLIDITY:
            continue  # a clump of touching cells
        diameters.append(region.equivalent_diameter_area)
    return np.asarray(diameters, float)


def estimate_rbc_diameter(image: np.ndarray, *, name: str = "the image") -> float:
    """Typical red-cell diameter of a blood-smear image, in pixels.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        RGB smear.
    name : str, keyword-only
        How errors refer to the image (its file name).

    Returns
    -------
    float
        Median equivalent diameter of the solitary red cells.

    Raises
    ------
    ScaleError
        If fewer than 10 solitary cells are found (not a smear, or one too
        sparse or too blurred to measure).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ScaleError(f"{name}: expected an (H, W, 3) RGB image, got shape {image.shape}.")
    diameters = np.concatenate([_cell_diameters(image[window]) for window in _sample_windows(image.shape[:2])])
    if len(diameters) < _MIN_CELLS:
        raise ScaleError(f"{name}: only {len(diameters)} separate red cells were found, too few to measure the "
                         "scale; pass --wbc-diameter instead of --auto-scale.")
    return float(np.median(diameters))


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
    """
    if wbc_diameter is not None and auto:
        raise ValueError("Give either --wbc-diameter or --auto-scale, not both.")
    if wbc_diameter is not None:
        if not np.isfinite(wbc_diameter) or wbc_diameter <= 0:
            raise ValueError(f"--wbc-diameter must be a positive number of pixels, not {wbc_diameter}.")
        return training.wbc_diameter / float(wbc_diameter)
    if auto:
        return training.rbc_diameter / estimate_rbc_diameter(image, name=name)
    return 1.0
