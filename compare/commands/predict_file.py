"""One image file through the model: read it, find its WBCs, measure them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from compare.io.images import read_image
from compare.io.outputs import FileFacts
from compare.pipeline.model import WBCModel
from compare.pipeline.prediction import Prediction

__all__ = ["predict_path"]


def predict_path(model: WBCModel, path: str | Path, *, wbc_diameter: float | None = None,
                 pixel_size_um: float | None = None,
                 map_blocks: Callable | None = None) -> tuple[Prediction, FileFacts]:
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
        See :func:`compare.pipeline.blocks.predict_proba_blocked`.

    Returns
    -------
    prediction : Prediction
        With the nuclei and the cell table.
    facts : FileFacts
        The pixel size used and the seconds it all took.

    Raises
    ------
    DataError
        If the file cannot be read.
    """
    from compare.io.exports import read_pixel_size

    start = time.perf_counter()
    image = read_image(path)
    if pixel_size_um is None and Path(path).suffix.lower() in (".tif", ".tiff"):
        pixel_size_um = read_pixel_size(path)
    prediction = model.predict(image, wbc_diameter=wbc_diameter, pixel_size_um=pixel_size_um, name=str(path),
                               map_blocks=map_blocks)
    return prediction, FileFacts(pixel_size_um=pixel_size_um, seconds=time.perf_counter() - start)
