"""One image file through the model: read it, find its WBCs, measure them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from compare.io.images import read_image
from compare.pipeline.model import WBCModel
from compare.pipeline.scale import ScaleEstimate

__all__ = ["ImageResult", "predict_path"]


@dataclass
class ImageResult:
    """What prediction found in one image file.

    Attributes
    ----------
    labels : ndarray, shape (H, W), uint16 or int32
        0 background, 1..n one per WBC, at the image's own size.
    nuclei : ndarray, shape (H, W), same dtype as ``labels``, or None
        Each WBC's nucleus, labelled with the WBC's id.
    cells : pandas.DataFrame
        One row per WBC (:func:`compare.pipeline.measure.cell_table`).
    width, height : int
    scale : ScaleEstimate
    pixel_size_um : float or None
        Given, or read from the file's metadata.
    warnings : list of str
    seconds : float
        Wall time of reading, scaling, prediction and measuring.
    """

    labels: np.ndarray
    nuclei: np.ndarray | None
    cells: pd.DataFrame
    width: int
    height: int
    scale: ScaleEstimate
    pixel_size_um: float | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def predict_path(model: WBCModel, path: str | Path, *, wbc_diameter: float | None = None,
                 pixel_size_um: float | None = None, map_blocks: Callable | None = None) -> ImageResult:
    """Read one image file, find its WBCs and measure them.

    Parameters
    ----------
    model : WBCModel
    path : str or Path
    wbc_diameter : float, optional, keyword-only
        Typical WBC diameter in pixels (overrides the scale estimate).
    pixel_size_um : float, optional, keyword-only
        Pixel size in micrometres; when None it is read from TIFF / OME
        metadata where the file has it.
    map_blocks : callable, optional, keyword-only
        See :func:`compare.pipeline.model.predict_proba_blocked`.

    Raises
    ------
    DataError
        If the file cannot be read.
    """
    from compare.io.exports import read_pixel_size
    from compare.pipeline.measure import cell_table, nucleus_labels

    start = time.perf_counter()
    image = read_image(path)
    if pixel_size_um is None and Path(path).suffix.lower() in (".tif", ".tiff"):
        pixel_size_um = read_pixel_size(path)
    prediction = model.predict(image, wbc_diameter=wbc_diameter, pixel_size_um=pixel_size_um, name=str(path),
                               map_blocks=map_blocks, cells=False)
    nuclei = nucleus_labels(prediction.labels, image)
    cells = cell_table(prediction.labels, image, pixel_size_um=pixel_size_um, probability=prediction.probability,
                       nucleus_labels=nuclei)
    return ImageResult(labels=prediction.labels, nuclei=nuclei, cells=cells, width=image.shape[1],
                       height=image.shape[0], scale=prediction.scale, pixel_size_um=pixel_size_um,
                       warnings=prediction.warnings, seconds=time.perf_counter() - start)
