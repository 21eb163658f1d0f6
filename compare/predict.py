"""``compare predict``: locate, delineate and count WBCs in your own images.

For every input image (files, or folders of images) the output folder gets

``masks/NAME.png``
    the label image: 0 background, 1..n one label per WBC (8-bit PNG, 16-bit
    when there are more than 255 WBCs);
``overlays/NAME.png``
    the image with each WBC's boundary drawn and its number beside it;
``instances.csv``
    one row per WBC: ``image, id, centroid_x, centroid_y, area_px,
    equivalent_diameter_px, bbox_x0, bbox_y0, bbox_x1, bbox_y1,
    mean_probability`` (pixels of the original image; ``x1``/``y1``
    exclusive; ``id`` is the WBC's value in the mask and its number in the
    overlay);
``counts.csv``
    one row per image: ``image, path, wbc_count, width, height, scale,
    seconds``.

``NAME`` is the input's file stem made safe (:func:`compare.io.safe_stem`);
two inputs with the same stem get ``NAME``, ``NAME-2``, ... in input order.

The model is a folder saved by ``compare run`` (``models/NAME/``: the
segmenter's files, ``instances.json`` with the instance settings tuned on the
training masks, ``segmenter.json`` naming the registry entry, ``.complete``).
Without ``--model`` the committed ``results/models/unet`` is used: the U-Net
of the default run (8 MB), which on the large labelled images finds and
counts all 11 WBCs exactly with the best Dice of the committed models (see
``results/summary.md``).  ``results/models/threshold`` (no learning beyond
one radius, fastest) also counts them exactly; the random forest and SVM
models are too large to commit, so ``compare run`` makes them locally.

Memory stays bounded on images of any size: images above
:data:`WHOLE` x :data:`WHOLE` pixels are predicted in :data:`BLOCK` x
:data:`BLOCK` blocks, each block
read with a mirrored margin of :data:`BLOCK_MARGIN` pixels that is cut off
again, so no segmenter ever sees more than one block at once (the learned
segmenters tile again inside a block).

With ``--scheduler ADDRESS`` images are spread over a Dask distributed
cluster, one task per image; a worker loads the model once and keeps it.  An
image larger than :data:`WHOLE` pixels a side is spread block by block
instead, and its instances are separated here.  The
input paths and the model folder must be readable by the workers (shared
storage); results come back to this machine and are written here, so they
equal a local run's.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from compare.data import IMAGE_SUFFIXES, DataError, list_images, read_image
from compare.instances import InstanceParams, separate_and_measure
from compare.io import atomic_path, inside, safe_stem, write_text_atomic
from compare.scale import ScaleError, TrainingScale, scale_factor, training_scale

__all__ = [
    "WHOLE",
    "BLOCK",
    "BLOCK_MARGIN",
    "INSTANCE_COLUMNS",
    "COUNT_COLUMNS",
    "Model",
    "ImageResult",
    "default_model_dir",
    "load_model",
    "collect_inputs",
    "output_names",
    "predict_proba_blocked",
    "separate_and_measure",
    "predict_labels",
    "overlay_image",
    "instance_rows",
    "predict_path",
    "predict",
    "main",
]

#: Images up to this many pixels on both sides are predicted whole, exactly as
#: ``compare run`` predicts them (every shipped image is smaller).
WHOLE = 2048
#: Side of the blocks a larger image is predicted in, in pixels: small enough
#: that a segmenter's per-pixel working memory (the threshold baseline's Lab
#: conversion is ~100 bytes a pixel) stays near 150 MB a block.
BLOCK = 1024
#: Mirrored margin read around each block and discarded, in pixels: wider than
#: the reach of the segmenters' filters and receptive fields, so block seams
#: do not show.
BLOCK_MARGIN = 96

INSTANCE_COLUMNS = ("image", "id", "centroid_x", "centroid_y", "area_px", "equivalent_diameter_px",
                    "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "mean_probability")
COUNT_COLUMNS = ("image", "path", "wbc_count", "width", "height", "scale", "seconds")


@dataclass
class Model:
    """A fitted segmenter with the settings prediction needs.

    Attributes
    ----------
    name : str
        Registry name of the segmenter.
    folder : Path
    segmenter : object
        Has ``predict_proba(image) -> (H, W) float32``.
    params : InstanceParams
        Instance settings chosen on the training masks.
    scale : TrainingScale
        Cell sizes of the training images.
    """

    name: str
    folder: Path
    segmenter: Any
    params: InstanceParams
    scale: TrainingScale


@dataclass
class ImageResult:
    """What prediction found in one image.

    Attributes
    ----------
    labels : ndarray, shape (H, W), uint16 or int32
        0 background, 1..n one per WBC, at the image's own size.
    instances : list of dict
        One row per WBC (keys of :data:`INSTANCE_COLUMNS` except ``image``).
    width, height : int
    scale : float
        Factor the image was resized by before prediction.
    seconds : float
        Wall time of reading, scaling, prediction and instance separation.
    """

    labels: np.ndarray
    instances: list[dict] = field(default_factory=list)
    width: int = 0
    height: int = 0
    scale: float = 1.0
    seconds: float = 0.0


def default_model_dir() -> Path:
    """The committed default model: ``results/models/unet`` (see the module notes)."""
    return Path(__file__).resolve().parent.parent / "results" / "models" / "unet"


def load_model(folder: str | Path | None) -> Model:
    """Load a model folder saved by ``compare run``.

    Parameters
    ----------
    folder : str, Path or None
        None loads :func:`default_model_dir`.

    Raises
    ------
    FileNotFoundError
        If the folder, its ``.complete`` marker or ``segmenter.json`` is missing.
    """
    from compare.segmenters import load_segmenter

    default = folder is None
    folder = default_model_dir() if default else Path(folder)
    if not folder.is_dir():
        hint = ("the default U-Net is missing from this copy; train it with "
                "'python -m compare run --segmenters unet --protocols large' or pass --model"
                if default else "pass a folder saved by 'compare run' (RUN/models/NAME)")
        raise FileNotFoundError(f"{folder}: no such model folder; {hint}.")
    info_file = folder / "segmenter.json"
    if not info_file.is_file():
        raise FileNotFoundError(f"{info_file}: missing, so {folder} is not a model saved by 'compare run'; "
                                "pass --model RUN/models/NAME.")
    if not (folder / ".complete").is_file():
        raise FileNotFoundError(f"{folder}: the model was not saved completely (no .complete marker); "
                                "run 'compare run' again for it.")
    try:
        name = str(json.loads(info_file.read_text())["segmenter"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{info_file}: not the JSON 'compare run' writes (no \"segmenter\" name); "
                         "save the model again with 'compare run'.") from None
    return Model(name=name, folder=folder, segmenter=load_segmenter(name, folder),
                 params=InstanceParams.from_json(folder / "instances.json"), scale=training_scale(folder))


# -- inputs and names ---------------------------------------------------------

def collect_inputs(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files and folders into image files.

    Parameters
    ----------
    paths : iterable of str or Path
        Image files (any name: unreadable ones fail later, by name) or
        folders (their image files, not recursively, in natural order).

    Returns
    -------
    files : list of Path
        In the order given, each file once.
    errors : list of (str, str)
        ``(path, message)`` for inputs that do not exist or empty folders.
    """
    files: list[Path] = []
    errors: list[tuple[str, str]] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                found = list_images(path)
            except DataError:
                errors.append((str(path), f"{path}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})."))
                continue
        elif path.exists():
            found = [path]
        else:
            errors.append((str(path), f"{path}: no such file or folder; check the path."))
            continue
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files, errors


def output_names(files: Sequence[Path]) -> list[str]:
    """A distinct, safe output stem for every input file.

    The first file with a stem keeps it; later ones get ``-2``, ``-3``, ...
    Names are compared without case, so outputs do not overwrite each other
    on case-insensitive file systems either.

    Examples
    --------
    >>> output_names([Path("a/x.jpg"), Path("b/x.png"), Path("../../y.jpg")])
    ['x', 'x-2', 'y']
    """
    taken: set[str] = set()
    names = []
    for f in files:
        stem = safe_stem(f.stem)
        name, n = stem, 1
        while name.lower() in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name.lower())
        names.append(name)
    return names


# -- prediction of one image --------------------------------------------------

def predict_proba_blocked(segmenter: Any, image: np.ndarray, *, whole: int | None = None, block: int | None = None,
                          margin: int = BLOCK_MARGIN, map_blocks: Callable | None = None) -> np.ndarray:
    """``segmenter.predict_proba`` with bounded memory on any image size.

    Images no larger than ``whole`` on both sides go to the segmenter whole,
    so the result is exactly what ``compare run`` computes.  Larger images
    are cut into ``block`` x ``block`` blocks; each is predicted with
    ``margin`` mirrored pixels around it, and only its core is kept.

    Parameters
    ----------
    segmenter : object with ``predict_proba``
    image : ndarray, shape (H, W, 3), uint8
    whole, block : int, optional, keyword-only
        Default :data:`WHOLE` and :data:`BLOCK` (read at call time).
    margin : int, keyword-only
    map_blocks : callable, optional, keyword-only
        ``map_blocks(crops) -> probs``: takes an iterator of block crops
        ``(h, w, 3) uint8`` and yields their ``(h, w)`` probabilities in the
        same order, e.g. computed on a cluster.  Default: ``predict_proba``
        here, one block at a time.

    Returns
    -------
    ndarray, shape (H, W), float32
    """
    from tiling import read_tile, tile_grid

    whole = WHOLE if whole is None else whole
    block = BLOCK if block is None else block
    height, width = image.shape[:2]
    if height <= whole and width <= whole:
        return np.asarray(segmenter.predict_proba(image), dtype=np.float32)
    out = np.empty((height, width), np.float32)
    # Blocks overlap only where the last row/column is shifted back to the
    # edge; writing the cores over each other there needs no blending,
    # because the margin already gives every core its true surroundings.
    tiles = tile_grid((height, width), block, 0)
    crops = (read_tile(image, t, margin) for t in tiles)  # lazy: one block in memory at a time
    probs = map(segmenter.predict_proba, crops) if map_blocks is None else map_blocks(crops)
    for t, prob in zip(tiles, probs):
        prob = np.asarray(prob, dtype=np.float32)
        out[t.y0:t.y1, t.x0:t.x1] = prob[margin:margin + t.y1 - t.y0, margin:margin + t.x1 - t.x0]
        del prob
    return out


def _resize_rgb(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Anti-aliased resize of an RGB image to ``(H, W)``.

    Pillow's Lanczos filter widens its support with the reduction factor, so
    downscaling is anti-aliased, and it works on 8-bit data, so memory stays at
    one copy of the image instead of a float64 one.
    """
    from PIL import Image

    resized = Image.fromarray(image).resize((shape[1], shape[0]), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.uint8)


def _nearest(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label image (labels are never mixed)."""
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0]).astype(np.intp), labels.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1]).astype(np.intp), labels.shape[1] - 1)
    return labels[rows[:, None], cols[None, :]]


def _compact(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 1..n keeping their order, dropping any that vanished."""
    present = np.bincount(labels.ravel())
    present[0] = 0
    if (present[1:] > 0).all():
        return labels
    lut = np.zeros(len(present), labels.dtype)
    keep = np.flatnonzero(present)
    lut[keep] = np.arange(1, len(keep) + 1, dtype=labels.dtype)
    return lut[labels]


def predict_labels(model: Model, image: np.ndarray, *, factor: float = 1.0,
                   map_blocks: Callable | None = None) -> tuple[np.ndarray, dict[int, float]]:
    """Label the WBCs of one image.

    Parameters
    ----------
    model : Model
    image : ndarray, shape (H, W, 3), uint8
    factor : float, keyword-only
        Resize factor to the training scale; the labels are mapped back to
        the image's own size.
    map_blocks : callable, optional, keyword-only
        See :func:`predict_proba_blocked`.

    Returns
    -------
    labels : ndarray, shape (H, W), uint16 (int32 beyond 65,535 WBCs)
        0 background, 1..n one per WBC, in raster order.
    mean_probability : dict of int to float
        Mean foreground probability of each WBC, on the grid it was predicted on.
    """
    height, width = image.shape[:2]
    work = image
    if factor != 1.0:
        shape = (max(1, round(height * factor)), max(1, round(width * factor)))
        work = _resize_rgb(image, shape)
    prob = predict_proba_blocked(model.segmenter, work, map_blocks=map_blocks)
    del work
    labels, means = separate_and_measure(prob, model.params)
    del prob
    n = len(means)
    if factor != 1.0:
        labels = _nearest(labels, (height, width))
        present = np.flatnonzero(np.bincount(labels.ravel(), minlength=n + 1)[1:]) + 1
        if len(present) != n:
            # A cell too small to survive the mapping back is dropped; the
            # rest keep their order, renumbered 1..m.
            labels = _compact(labels)
            means = {i: means[int(k)] for i, k in enumerate(present, start=1)}
    return labels, means


def overlay_image(image: np.ndarray, labels: np.ndarray, *, strip: int = 1024):
    """The picture of :func:`compare.overlay.draw_overlay` (outlines and numbers), drawn with less memory.

    ``draw_overlay`` copies the image and erodes and dilates the whole label
    map at once (about 20 bytes a pixel).  Here the outlines are drawn in
    place, ``strip`` rows at a time with a halo as wide as the line, which
    gives the same pixels; the numbers are then written with the same font,
    size and position.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        Drawn on in place when writeable.
    labels : ndarray, shape (H, W), int
    strip : int, keyword-only
        Rows per strip.

    Returns
    -------
    PIL.Image.Image
        RGB, ready to save.
    """
    from PIL import Image, ImageDraw, ImageFont

    from compare.overlay import PRED_COLOUR, boundaries

    height, width = labels.shape
    line = max(1, round(min(height, width) / 300))
    # Arrays read through Pillow are read-only; copy only those.
    image = np.require(image, np.uint8, ["W", "C"])
    for y0 in range(0, height, strip):
        y1 = min(height, y0 + strip)
        top, bottom = max(0, y0 - line), min(height, y1 + line)
        edge = boundaries(labels[top:bottom], line)[y0 - top:y0 - top + (y1 - y0)]
        image[y0:y1][edge] = PRED_COLOUR
    pil = Image.fromarray(image)
    boxes = ndi.find_objects(labels)
    if boxes:
        draw = ImageDraw.Draw(pil)
        size = max(12, min(height, width) // 25)
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1 has a fixed-size default font
            font = ImageFont.load_default()
        for index, box in enumerate(boxes, start=1):
            if box is None:
                continue
            x = min(box[1].stop + 2, width - size)
            draw.text((x, max(box[0].start, 0)), str(index), fill=PRED_COLOUR, font=font, stroke_width=2,
                      stroke_fill=(0, 0, 0))
    return pil


def instance_rows(labels: np.ndarray, mean_probability: dict[int, float]) -> list[dict]:
    """One row per WBC of a label image, in original-image pixels.

    Parameters
    ----------
    labels : ndarray, shape (H, W), int
    mean_probability : dict of int to float

    Returns
    -------
    list of dict
        Keys of :data:`INSTANCE_COLUMNS` except ``image``.
    """
    rows = []
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        ys, xs = np.nonzero(labels[box] == index)
        area = int(len(ys))
        rows.append({
            "id": index,
            "centroid_x": round(float(xs.mean()) + box[1].start, 2),
            "centroid_y": round(float(ys.mean()) + box[0].start, 2),
            "area_px": area,
            "equivalent_diameter_px": round(2.0 * float(np.sqrt(area / np.pi)), 2),
            "bbox_x0": box[1].start,
            "bbox_y0": box[0].start,
            "bbox_x1": box[1].stop,
            "bbox_y1": box[0].stop,
            "mean_probability": round(mean_probability.get(index, float("nan")), 4),
        })
    return rows


def predict_path(model: Model, path: str | Path, *, wbc_diameter: float | None = None,
                 auto_scale: bool = False, map_blocks: Callable | None = None) -> ImageResult:
    """Read one image file and find its WBCs.

    Raises
    ------
    DataError
        If the file cannot be read.
    ScaleError
        If ``auto_scale`` cannot measure the image.
    """
    start = time.perf_counter()
    image = read_image(path)
    factor = scale_factor(image, model.scale, wbc_diameter=wbc_diameter, auto=auto_scale, name=str(path))
    labels, means = predict_labels(model, image, factor=factor, map_blocks=map_blocks)
    rows = instance_rows(labels, means)
    return ImageResult(labels=labels, instances=rows, width=image.shape[1], height=image.shape[0],
                       scale=round(factor, 4), seconds=time.perf_counter() - start)


# -- Dask ---------------------------------------------------------------------

_WORKER_MODELS: dict[str, Model] = {}
_WORKER_LOCK = threading.Lock()


def _worker_predict(model_dir: str, path: str, wbc_diameter: float | None, auto_scale: bool) -> ImageResult:
    """The task run on a Dask worker: load the model once per worker, predict one image."""
    with _WORKER_LOCK:
        model = _WORKER_MODELS.get(model_dir)
        if model is None:
            model = _WORKER_MODELS[model_dir] = load_model(model_dir)
    return predict_path(model, path, wbc_diameter=wbc_diameter, auto_scale=auto_scale)


def _worker_block(model_dir: str, crop: np.ndarray) -> np.ndarray:
    """The task run on a Dask worker for one block of a huge image."""
    with _WORKER_LOCK:
        model = _WORKER_MODELS.get(model_dir)
        if model is None:
            model = _WORKER_MODELS[model_dir] = load_model(model_dir)
    return np.asarray(model.segmenter.predict_proba(crop), dtype=np.float32)


def _cluster_map_blocks(client: Any, model_dir: str) -> Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]]:
    """A ``map_blocks`` that predicts blocks on the cluster, in order.

    At most two blocks per worker thread are in flight, so neither this
    machine nor the cluster holds more than a few blocks of a huge image.
    """
    from collections import deque

    window = max(2, 2 * sum(client.nthreads().values()))

    def map_blocks(crops: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        pending: deque = deque()
        for crop in crops:
            pending.append(client.submit(_worker_block, model_dir, crop, pure=False))
            if len(pending) >= window:
                future = pending.popleft()
                yield future.result()
                future.release()
        while pending:
            future = pending.popleft()
            yield future.result()
            future.release()

    return map_blocks


def _image_size(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` from the file's header, or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except Exception:  # read_image will report the problem properly
        return None


def _distributed_results(address: str, model: Model, files: Sequence[Path], wbc_diameter: float | None,
                         auto_scale: bool) -> Iterator[tuple[int, ImageResult | BaseException]]:
    """Yield ``(index, result or exception)`` as the cluster finishes images.

    Images up to :data:`WHOLE` pixels a side are one task each.  A larger one
    is spread over the cluster block by block, while this machine assembles
    its probability map and separates the instances (the one step that needs
    the whole image).
    """
    from distributed import Client, as_completed

    with Client(address) as client:
        model_arg = str(model.folder.resolve())
        futures = {}
        huge = []
        for i, f in enumerate(files):
            size = _image_size(f)
            if size is not None and max(size) > WHOLE:
                huge.append(i)
                continue
            futures[client.submit(_worker_predict, model_arg, str(f.resolve()), wbc_diameter, auto_scale,
                                  pure=False, key=f"wbc-predict-{i}-{safe_stem(f.stem)}")] = i
        map_blocks = _cluster_map_blocks(client, model_arg)
        for i in huge:
            try:
                yield i, predict_path(model, files[i], wbc_diameter=wbc_diameter, auto_scale=auto_scale,
                                      map_blocks=map_blocks)
            except Exception as exc:  # one image's failure is reported, the rest go on
                yield i, exc
        for future in as_completed(futures):
            index = futures[future]
            try:
                yield index, future.result()
            except Exception as exc:
                yield index, exc
            future.release()


# -- the command --------------------------------------------------------------

def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    write_text_atomic(path, buffer.getvalue())


def _error_message(path: Path, exc: BaseException) -> str:
    if isinstance(exc, (DataError, ScaleError)):
        return str(exc)
    return f"{path}: prediction failed ({type(exc).__name__}: {exc})."


def predict(paths: Sequence[str | Path], *, model_dir: str | Path | None = None, out: str | Path = "predictions",
            wbc_diameter: float | None = None, auto_scale: bool = False, scheduler: str | None = None,
            show_progress: bool = True) -> tuple[list[dict], list[dict], list[tuple[str, str]]]:
    """Predict masks, overlays and CSV rows for images and folders of images.

    Parameters
    ----------
    paths : sequence of str or Path
        Image files and folders of images.
    model_dir : str, Path or None, keyword-only
        A model folder saved by ``compare run``; None uses the default U-Net.
    out : str or Path, keyword-only
        Output folder (created).
    wbc_diameter : float, optional, keyword-only
        Typical WBC diameter in these images, in pixels.
    auto_scale : bool, keyword-only
        Estimate each image's scale from its red cells.
    scheduler : str, optional, keyword-only
        Address of a Dask distributed scheduler; None runs here.
    show_progress : bool, keyword-only

    Returns
    -------
    counts : list of dict
        One row per image that succeeded (:data:`COUNT_COLUMNS`).
    instances : list of dict
        One row per WBC (:data:`INSTANCE_COLUMNS`).
    errors : list of (str, str)
        ``(input path, message)`` for every input that failed.
    """
    from compare.overlay import save_label_png
    from compare.progress import progress

    if wbc_diameter is not None and auto_scale:
        raise ValueError("Give either --wbc-diameter or --auto-scale, not both.")
    if wbc_diameter is not None and (not np.isfinite(wbc_diameter) or wbc_diameter <= 0):
        raise ValueError(f"--wbc-diameter must be a positive number of pixels, not {wbc_diameter}.")
    out = Path(out)
    # Load here even with a cluster: a wrong --model fails at once, and the
    # training scale is checked before any work is sent out.
    model = load_model(model_dir)
    files, errors = collect_inputs(paths)
    names = output_names(files)
    out.mkdir(parents=True, exist_ok=True)

    if scheduler is None:
        def local() -> Iterable[tuple[int, ImageResult | BaseException]]:
            for i, f in enumerate(files):
                try:
                    yield i, predict_path(model, f, wbc_diameter=wbc_diameter, auto_scale=auto_scale)
                except Exception as exc:  # one bad image must not stop the others
                    yield i, exc
        results = local()
    else:
        results = _distributed_results(scheduler, model, files, wbc_diameter, auto_scale)

    counts: dict[int, dict] = {}
    instances: dict[int, list[dict]] = {}
    failed: dict[int, tuple[str, str]] = {}
    bar = progress(results, desc="predict", unit="img") if show_progress else results
    if show_progress and hasattr(bar, "total"):
        bar.total = len(files)
    for index, result in bar:
        path, name = files[index], names[index]
        if isinstance(result, BaseException):
            failed[index] = (str(path), _error_message(path, result))
            continue
        try:
            mask_file = inside(out, out / "masks" / f"{name}.png")
            overlay_file = inside(out, out / "overlays" / f"{name}.png")
            save_label_png(mask_file, result.labels)
            # The overlay needs the pixels; reading again here keeps them off
            # the wire when a cluster did the prediction.
            picture = overlay_image(read_image(path), result.labels)
            atomic_path(overlay_file, lambda p: picture.save(p, format="PNG"))
            del picture
        except Exception as exc:
            failed[index] = (str(path), _error_message(path, exc))
            continue
        counts[index] = {"image": name, "path": str(path), "wbc_count": len(result.instances),
                         "width": result.width, "height": result.height, "scale": result.scale,
                         "seconds": round(result.seconds, 3)}
        instances[index] = [{"image": name, **row} for row in result.instances]

    count_rows = [counts[i] for i in sorted(counts)]
    instance_rows_all = [row for i in sorted(instances) for row in instances[i]]
    _write_csv(out / "counts.csv", COUNT_COLUMNS, count_rows)
    _write_csv(out / "instances.csv", INSTANCE_COLUMNS, instance_rows_all)
    errors = errors + [failed[i] for i in sorted(failed)]
    return count_rows, instance_rows_all, errors


def main(args: argparse.Namespace) -> int:
    """Run ``compare predict`` from parsed arguments; returns the exit code.

    0 when every image was predicted, 1 when any input failed (the others are
    still written).
    """
    counts, _, errors = predict(args.paths, model_dir=args.model, out=args.out,
                                wbc_diameter=args.wbc_diameter, auto_scale=args.auto_scale,
                                scheduler=args.scheduler)
    for row in counts:
        print(f"{row['image']}: {row['wbc_count']} WBC{'s' if row['wbc_count'] != 1 else ''}")
    total = sum(r["wbc_count"] for r in counts)
    print(f"{total} WBCs in {len(counts)} image(s); masks, overlays, counts.csv and instances.csv are in {args.out}/.")
    if errors:
        print(f"{len(errors)} input(s) failed; the others are complete:", file=sys.stderr)
        for path, message in errors:
            print(f"  {path}: {message}" if not message.startswith(path) else f"  {message}", file=sys.stderr)
        return 1
    return 0
