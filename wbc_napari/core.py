"""The plugin's work without Qt: checking the image, finding, measuring, exporting, saving.

Everything here calls the public API of :mod:`compare` only (``load_model``,
``WBCModel.predict``, ``nucleus_labels``, ``cell_table``,
``PredictionWriter``), so the plugin measures and writes exactly what
``compare predict`` does.  The functions take plain arrays, so they can run in
a worker thread and be tested without a display.  The model itself runs in a
separate process (:func:`run_in_model_process`); measuring and writing need
no TensorFlow and run in napari's.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "JOBS",
    "InputError",
    "WBCResult",
    "export",
    "find_wbcs",
    "get_model",
    "load_model",
    "measure",
    "rgb_image",
    "run_in_model_process",
    "safe_name",
    "save_training_data",
    "stop_model_process",
    "training_mask",
]


class InputError(ValueError):
    """Input the widget cannot use, with what to do about it; shown in the viewer, never raised to napari."""


@dataclass
class WBCResult:
    """What was found (and maybe corrected) in one image.

    Its attributes are the ones :meth:`compare.PredictionWriter.write` reads
    (of the prediction and of the file's facts), so Export hands it over as
    it is.

    Attributes
    ----------
    labels : ndarray, shape (H, W), int
        0 background, 1..n one per WBC.
    nuclei : ndarray, shape (H, W), int, or None
        Each WBC's nucleus, labelled with its WBC's id.
    cells : pandas.DataFrame
        One row per WBC, the columns of ``instances.csv``.
    width, height : int
    scale : ScaleEstimate
        The resize factor the model used and how it was found.
    pixel_size_um : float or None
    warnings : list of str
        Reasons not to trust the count (stain unlike training, no reliable scale).
    seconds : float
        Wall time of prediction and measurement.
    probability : ndarray, shape (H, W), float, or None
        The model's WBC probability (for the ``mean_probability`` column).
    """

    labels: np.ndarray
    nuclei: np.ndarray | None
    cells: pd.DataFrame
    width: int
    height: int
    scale: Any
    pixel_size_um: float | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    probability: np.ndarray | None = None


# -- the image ------------------------------------------------------------------

def rgb_image(data: Any, *, rgb: bool, name: str, multiscale: bool = False) -> tuple[np.ndarray, str | None]:
    """The (H, W, 3) uint8 RGB pixels of an image layer, or a message saying why not.

    Parameters
    ----------
    data : array-like or list of array-like
        The layer's data.
    rgb : bool
        Whether napari shows the layer as RGB(A).
    name : str
        The layer's name, for messages.
    multiscale : bool
        A pyramid: its first (full-resolution) level is used.

    Returns
    -------
    image : ndarray, shape (H, W, 3), uint8
    note : str or None
        What was converted (alpha dropped, bit depth), for the user.

    Raises
    ------
    InputError
        A greyscale image or stack, several planes, or pixels that are not numbers.
    """
    if multiscale:
        data = data[0]
    image = np.asarray(data)
    notes = []
    if not rgb:
        # The model finds WBCs by their stain colours, so a single channel cannot be segmented honestly.
        what = "a greyscale image" if image.ndim == 2 else f"a stack of greyscale planes {image.shape}"
        raise InputError(f"'{name}' is {what}, not an RGB image; WBCs are found by their stain colours, "
                         "so open the colour (RGB) image of the smear.")
    if image.ndim != 3:
        raise InputError(f"'{name}' has {image.ndim - 1} dimensions besides colour {image.shape}; "
                         "pick one 2-D RGB image (H x W x 3).")
    if image.shape[2] == 4:
        # RGBA from screenshots and some slide exports: the alpha says nothing about the stain.
        image = image[..., :3]
        notes.append("its alpha channel was dropped (RGBA to RGB)")
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number):
        raise InputError(f"'{name}' holds {image.dtype} pixels; open an 8-bit RGB image.")
    if image.dtype != np.uint8:
        image, note = _to_uint8(image)
        notes.append(note)
    if min(image.shape[:2]) < 16:
        raise InputError(f"'{name}' is {image.shape[1]} x {image.shape[0]} px; too small to hold a WBC.")
    note = f"'{name}': " + "; ".join(notes) + "." if notes else None
    return np.ascontiguousarray(image), note


def _to_uint8(image: np.ndarray) -> tuple[np.ndarray, str]:
    values = image.astype(np.float64)
    top = float(np.nanmax(values)) if values.size else 0.0
    if np.issubdtype(image.dtype, np.floating) and top <= 1.0:
        factor = 255.0  # floats in [0, 1], as scikit-image writes them
    elif top <= 255:
        factor = 1.0
    else:
        factor = 255.0 / top  # 12- or 16-bit camera data: keep its range, the model white-balances anyway
    out = np.clip(np.nan_to_num(values * factor), 0, 255).round().astype(np.uint8)
    return out, f"{image.dtype} pixels converted to 8 bits"


def safe_name(text: str) -> str:
    """A file stem made from a layer name (letters, digits, ``.``, ``_``, ``-``).

    Examples
    --------
    >>> safe_name("slide 1/a:b")
    'slide_1_a_b'
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")
    return stem[:120] or "image"


# -- the model, in its own process ----------------------------------------------------

_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()
_PROCESS: Any = None
_PROCESS_LOCK = threading.Lock()


def get_model(folder: str | Path | None = None) -> Any:
    """The :class:`compare.WBCModel` of ``folder`` (None: the committed default), loaded once per folder.

    Called in the model process (see :func:`run_in_model_process`); loading
    the U-Net imports TensorFlow (seconds), so every model loaded is kept.

    Raises
    ------
    InputError
        If the folder does not exist or is not a model saved by ``compare run``.
    """
    import compare

    if folder is not None and str(folder).strip() == "":
        folder = None
    key = "" if folder is None else str(Path(folder).expanduser().resolve())
    with _MODELS_LOCK:  # two callers must not load the same model twice
        if key not in _MODELS:
            if folder is not None and not Path(key).is_dir():
                raise InputError(f"{folder}: no such model folder; choose a folder saved by 'compare run' "
                                 "(results/models/NAME) or leave the model empty for the default U-Net.")
            try:
                _MODELS[key] = compare.load_model(None if folder is None else Path(key))
            except (FileNotFoundError, ValueError) as exc:  # compare's ModelFormatError is a ValueError
                raise InputError(f"Not a model folder: {exc}") from exc
        return _MODELS[key]


def _load_job(folder: str | None) -> str:
    get_model(folder)
    return folder or "the committed default U-Net"


def _predict_job(folder: str | None, image: np.ndarray, wbc_diameter: float | None, pixel_size_um: float | None,
                 name: str) -> dict[str, Any]:
    model = get_model(folder)
    # cells=False: the table is measured in napari's process with the nuclei, as compare predict does.
    prediction = model.predict(image, wbc_diameter=wbc_diameter, pixel_size_um=pixel_size_um, name=name,
                               cells=False)
    return {"labels": prediction.labels, "probability": prediction.probability, "scale": prediction.scale,
            "warnings": list(prediction.warnings)}


#: What the model process runs, by name (see :mod:`wbc_napari.model_process`).
JOBS = {"load": _load_job, "predict": _predict_job}


def run_in_model_process(job: str, *args: Any) -> Any:
    """Run ``JOBS[job](*args)`` in the plugin's model process and return its value (blocking).

    The process (:mod:`wbc_napari.model_process`) is started on first use
    and kept, with its loaded models, until napari exits: TensorFlow must
    not be loaded into napari's own process (it crashes with the Mesa OpenGL
    driver on Linux).

    Raises
    ------
    InputError
        As raised by the job (e.g. a folder that is not a model).
    RuntimeError
        If the model process died (e.g. out of memory); the next call starts a new one.
    """
    global _PROCESS
    from wbc_napari.model_process import ModelProcess

    with _PROCESS_LOCK:
        if _PROCESS is None:
            _PROCESS = ModelProcess()
    return _PROCESS.call(job, *args)


def stop_model_process() -> None:
    """End the model process and free its memory; the next Find WBCs starts a new one."""
    global _PROCESS
    with _PROCESS_LOCK:
        process, _PROCESS = _PROCESS, None
    if process is not None:
        process.close()


def load_model(folder: str | Path | None = None) -> str:
    """Load the model of ``folder`` (None: the default) into the model process; returns what was loaded."""
    return run_in_model_process("load", None if folder is None else str(folder))


# -- finding and measuring -------------------------------------------------------------

def find_wbcs(image: np.ndarray, *, folder: str | Path | None = None, wbc_diameter: float | None = None,
              pixel_size_um: float | None = None, name: str = "the image") -> WBCResult:
    """Find, delineate and measure the WBCs of one image, as ``compare predict`` does.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    folder : str or Path, optional
        A model folder saved by ``compare run``; None for the committed default U-Net.
    wbc_diameter : float, optional
        Typical WBC diameter in pixels; overrides the scale estimate.
    pixel_size_um : float, optional
        Pixel size in micrometres; overrides the scale estimate and adds the
        micrometre columns.
    name : str
        How warnings name the image.

    Returns
    -------
    WBCResult

    Raises
    ------
    InputError
        If ``folder`` is not a model.
    """
    start = time.perf_counter()
    found = run_in_model_process("predict", None if folder is None else str(folder), image, wbc_diameter,
                                 pixel_size_um, name)
    result = WBCResult(labels=found["labels"], nuclei=None, cells=pd.DataFrame(), width=int(image.shape[1]),
                       height=int(image.shape[0]), scale=found["scale"], pixel_size_um=pixel_size_um,
                       warnings=found["warnings"], probability=found["probability"])
    result = measure(result, image)
    result.seconds = time.perf_counter() - start
    return result


def measure(result: WBCResult, image: np.ndarray, labels: np.ndarray | None = None) -> WBCResult:
    """Nuclei and cell table of (edited) labels, numbered 1..n.

    Parameters
    ----------
    result : WBCResult
        Scale, pixel size, warnings and probability are kept.
    image : ndarray, shape (H, W, 3), uint8
    labels : ndarray, shape (H, W), int, optional
        The edited labels; default ``result.labels``.

    Returns
    -------
    WBCResult
        With ``labels`` renumbered 1..n in their old order (an erased cell
        leaves no gap, so ids, table rows and exported files agree), and new
        ``nuclei`` and ``cells``.
    """
    import compare

    labels = _sequential(np.asarray(result.labels if labels is None else labels))
    if labels.shape != image.shape[:2]:
        raise InputError(f"The WBC labels are {labels.shape[1]} x {labels.shape[0]} px but the image is "
                         f"{image.shape[1]} x {image.shape[0]}; run Find WBCs again.")
    probability = result.probability if result.probability is not None and \
        np.shape(result.probability) == labels.shape else None
    nuclei = compare.nucleus_labels(labels, image)
    cells = compare.cell_table(labels, image, pixel_size_um=result.pixel_size_um, probability=probability,
                               nucleus_labels=nuclei)
    return replace(result, labels=labels, nuclei=nuclei, cells=cells)


def _sequential(labels: np.ndarray) -> np.ndarray:
    if labels.ndim != 2:
        raise InputError(f"The WBC labels have shape {labels.shape}; expected one 2-D label image.")
    if labels.size and labels.min() < 0:
        labels = np.where(labels < 0, 0, labels)  # napari never paints negatives, but a script could
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if len(ids) == 0 or ids[-1] == len(ids):
        return labels if labels.dtype.kind in "iu" else labels.astype(np.int32)
    lookup = np.zeros(int(ids[-1]) + 1, dtype=np.int32)
    lookup[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lookup[labels]


# -- writing ---------------------------------------------------------------------------

def export(folder: str | Path, name: str, source: str, image: np.ndarray, result: WBCResult, *,
           rois: bool = False, geojson: bool = False, tiff: bool = False) -> dict[str, Any]:
    """Write for one image what ``compare predict`` writes, into ``folder``.

    Other images exported into the same folder keep their rows: the tables
    are rebuilt from every image's part, as after ``predict --resume``.

    Parameters
    ----------
    folder : str or Path
    name : str
        Output stem (``masks/NAME.png``, ...).
    source : str
        The image's file, for ``counts.csv``.
    image : ndarray, shape (H, W, 3), uint8
    result : WBCResult
        Measured (see :func:`measure`).
    rois, geojson, tiff : bool, keyword-only
        Also write the ImageJ ROI zip, the QuPath GeoJSON, the label TIFF.

    Returns
    -------
    dict
        The image's ``counts.csv`` row.
    """
    import compare

    writer = compare.PredictionWriter(Path(folder), compare.ExportOptions(rois=rois, geojson=geojson, tiff=tiff),
                                      resume=True)
    # The writer reads the prediction's labels, nuclei, cells, scale, warnings, and the file's facts
    # (pixel_size_um, seconds): a WBCResult carries both; compare.FileFacts is used when it is public.
    facts_type = getattr(compare, "FileFacts", None)
    facts = facts_type(pixel_size_um=result.pixel_size_um, seconds=result.seconds) if facts_type else result
    return writer.write(name, Path(source), image, result, facts)


def training_mask(labels: np.ndarray) -> np.ndarray:
    """The binary training mask of a label image (255 = WBC), touching WBCs kept apart.

    The ``images/`` + ``masks/`` layout stores foreground only, and
    ``compare score`` counts its connected components as the true WBCs; so
    where two WBCs touch, the pixels of the higher id next to a lower id
    (8-neighbourhood) are left out, a one-pixel gap that keeps them two.
    """
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    above = np.int64(labels.max()) + 1 if labels.size else 1  # background counts as higher than every id
    lowest = ndi.minimum_filter(np.where(labels > 0, labels.astype(np.int64), above), size=3)
    seam = (labels > 0) & (lowest < labels)
    return np.where((labels > 0) & ~seam, 255, 0).astype(np.uint8)


def save_training_data(folder: str | Path, name: str, image: np.ndarray, labels: np.ndarray) -> tuple[Path, Path]:
    """Write ``folder/images/NAME.png`` and ``folder/masks/NAME.png`` (WBC white, 255).

    This is the layout ``compare fit`` and ``compare score`` read; saving the
    same name again replaces it (a later correction of the same image).

    Returns
    -------
    (Path, Path)
        The image and the mask file.

    Raises
    ------
    InputError
        If ``images/`` already holds this name with another suffix (the
        loader would see two images of one name).
    """
    from PIL import Image

    folder = Path(folder)
    files = {"images": np.asarray(image, dtype=np.uint8), "masks": training_mask(labels)}
    for sub in files:  # checked before writing anything, so a refusal leaves no half pair behind
        clash = sorted(p for p in (folder / sub).glob(f"{name}.*") if p.suffix.lower() != ".png")
        if clash:
            raise InputError(f"{clash[0]} already exists under another suffix; remove it or choose another folder.")
    paths = []
    for sub, pixels in files.items():
        target = folder / sub / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written to a temporary file and renamed, so an interrupted save never leaves half a PNG to train on.
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".png", dir=target.parent)
        os.close(fd)
        try:
            Image.fromarray(pixels).save(tmp, format="PNG")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        paths.append(target)
    return paths[0], paths[1]
