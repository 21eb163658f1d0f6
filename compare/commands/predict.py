"""``compare predict``: locate, delineate, count and measure WBCs in your own images.

Every image goes through a fitted :class:`compare.pipeline.model.WBCModel`: white
balance to the training colours, the image's own scale estimated and brought
to the training scale, the segmenter, instance separation, then per-cell
morphology with the nucleus of each WBC (:mod:`compare.pipeline.measure`).  What is
written per image, and how an interrupted run resumes, is described in
:mod:`compare.io.outputs`; ``counts.csv`` says for each image the scale used and
how it was found, and a ``warning`` when the count should not be trusted (no
reliable scale, colours unlike the training images).  ``predict.json``
records the model (folder and manifest hash), the options, package versions
and the device.

Without ``--model`` the default U-Net shipped with the package is used
(:func:`compare.pipeline.model.default_model_dir`).  Images larger than
:data:`compare.pipeline.blocks.WHOLE` pixels a side are predicted in blocks so
memory stays bounded.  With ``--scheduler`` images are spread over a Dask
cluster (:mod:`compare.commands.distributed`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compare.commands.predict_file import predict_path
from compare.io.atomic import safe_stem, write_text_atomic
from compare.io.images import IMAGE_SUFFIXES, DataError, list_images, read_image
from compare.io.outputs import ExportOptions, PredictionWriter
from compare.pipeline.model import ModelManifest, load_model
from compare.pipeline.scale import ScaleError

__all__ = [
    "collect_inputs",
    "output_names",
    "predict",
    "main",
]


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


def _error_message(path: Path, exc: BaseException) -> str:
    if isinstance(exc, (DataError, ScaleError)):
        return str(exc)
    return f"{path}: prediction failed ({type(exc).__name__}: {exc})."


def _model_facts(manifest: ModelManifest) -> dict[str, Any]:
    """What ``predict.json`` records of the model: its folder, manifest hash, segmenter and training data."""
    return {"folder": str(manifest.folder), "manifest_sha256": manifest.sha256, "segmenter": manifest.segmenter,
            "training_data_sha256": manifest.data["training_data_sha256"],
            "package_version": manifest.data["package_version"]}


def predict(paths: Sequence[str | Path], *, model_dir: str | Path | None = None, out: str | Path = "predictions",
            wbc_diameter: float | None = None, pixel_size_um: float | None = None,
            exports: ExportOptions = ExportOptions(), resume: bool = False, scheduler: str | None = None,
            device: str = "auto", show_progress: bool = True) -> tuple[list[dict], list[tuple[str, str]]]:
    """Predict masks, overlays, exports and table rows for images and folders of images.

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
    pixel_size_um : float, optional, keyword-only
        Pixel size of these images in micrometres.
    exports : ExportOptions, keyword-only
    resume : bool, keyword-only
        Skip images finished by an earlier run into ``out``.
    scheduler : str, optional, keyword-only
        Address of a Dask distributed scheduler; None runs here.
    device : {"auto", "cpu", "gpu"}, keyword-only
        Where the U-Net runs (:func:`compare.pipeline.device.select_device`).
    show_progress : bool, keyword-only

    Returns
    -------
    counts : list of dict
        One ``counts.csv`` row per image finished (now or by the resumed run).
    errors : list of (str, str)
        ``(input path, message)`` for every input that failed.
    """
    from compare.io.progress import progress
    from compare.pipeline.device import current_device, env_facts, select_device

    for flag, value, unit in (("--wbc-diameter", wbc_diameter, "pixels"),
                              ("--pixel-size", pixel_size_um, "micrometres")):
        if value is not None and (not np.isfinite(value) or value <= 0):
            raise ValueError(f"{flag} must be a positive number of {unit}, not {value}.")
    if wbc_diameter is not None and pixel_size_um is not None:
        raise ValueError("Give either --wbc-diameter or --pixel-size, not both.")
    out = Path(out)
    select_device(device)  # before Keras is imported: it reads the backend and visible GPUs once
    # Loaded here even with a cluster: a wrong --model fails at once.
    model = load_model(model_dir)
    device_used = current_device()  # now that a U-Net, if any, is loaded
    files, errors = collect_inputs(paths)
    names = output_names(files)
    writer = PredictionWriter(out, exports, resume=resume)
    write_text_atomic(out / "predict.json", json.dumps({
        "model": _model_facts(model.manifest_),
        "options": {"wbc_diameter": wbc_diameter, "pixel_size_um": pixel_size_um, "rois": exports.rois,
                    "geojson": exports.geojson, "tiff": exports.tiff, "resume": resume, "scheduler": scheduler},
        "device": device_used,
        "inputs": [str(f) for f in files],
        "env": env_facts(),
    }, indent=2) + "\n")
    todo = [i for i, f in enumerate(files) if not writer.done(names[i], f)]
    options = {"wbc_diameter": wbc_diameter, "pixel_size_um": pixel_size_um}

    if scheduler is None:
        def local() -> Iterable[tuple[int, Any]]:
            for i in todo:
                try:
                    yield i, predict_path(model, files[i], **options)
                except Exception as exc:  # one bad image must not stop the others
                    yield i, exc
        results = local()
    else:
        from compare.commands.distributed import distributed_results

        results = distributed_results(scheduler, model, files, todo, options)

    failed: dict[int, tuple[str, str]] = {}
    bar = progress(results, desc="predict", unit="img", total=len(todo)) if show_progress else results
    for index, result in bar:
        path, name = files[index], names[index]
        if isinstance(result, BaseException):
            failed[index] = (str(path), _error_message(path, result))
            continue
        try:
            # The overlay needs the pixels; reading again here keeps them off
            # the wire when a cluster did the prediction.
            prediction, facts = result
            writer.write(name, path, read_image(path), prediction, facts)
        except Exception as exc:
            failed[index] = (str(path), _error_message(path, exc))
    # Rows in input order, the order of an uninterrupted run.
    writer.write_tables([names[i] for i in range(len(files))])
    counts = writer.count_rows([names[i] for i in range(len(files))])
    return counts, errors + [failed[i] for i in sorted(failed)]


def main(args: argparse.Namespace) -> int:
    """Run ``compare predict`` from parsed arguments; returns the exit code.

    0 when every image was predicted, 1 when any input failed (the others are
    still written).
    """
    exports = ExportOptions(rois=args.rois, geojson=args.geojson, tiff=args.tiff)
    counts, errors = predict(args.paths, model_dir=args.model, out=args.out, wbc_diameter=args.wbc_diameter,
                             pixel_size_um=args.pixel_size, exports=exports, resume=args.resume,
                             scheduler=args.scheduler, device=args.device)
    for row in counts:
        n = row["wbc_count"]
        print(f"{row['image']}: {n} WBC{'s' if n != 1 else ''} (scale x{row['scale']}, {row['scale_method']})")
    total = sum(r["wbc_count"] for r in counts)
    print(f"{total} WBCs in {len(counts)} image(s); masks, overlays, counts.csv and instances.csv are in {args.out}/.")
    warned = [r for r in counts if r.get("warning")]
    if warned:
        print(f"{len(warned)} image(s) carry a warning; do not trust their counts without a look:", file=sys.stderr)
        for row in warned:
            print(f"  {row['image']}: {row['warning']}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} input(s) failed; the others are complete:", file=sys.stderr)
        for path, message in errors:
            print(f"  {path}: {message}" if not message.startswith(path) else f"  {message}", file=sys.stderr)
        return 1
    return 0
