"""What ``compare predict`` writes, image by image, so that an interrupted run keeps its work.

For every finished image, :class:`PredictionWriter` writes its pictures and
exports, then one part file ``parts/NAME.json`` (its count row and cell rows),
and then rebuilds ``counts.csv`` and ``instances.csv`` from all parts.  Every
file is written atomically (temporary file, then rename), so the tables on
disk always hold exactly the images finished so far, and ``--resume`` skips
an image whose part exists.

Per image ``NAME``:

``masks/NAME.png``
    label image, 0 background, 1..n one per WBC (8 or 16 bit; refused beyond
    65,535 WBCs, see ``--tiff``);
``nuclei/NAME.png``
    the nucleus of each WBC, labelled with its WBC's id;
``overlays/NAME.png``
    the image with each WBC's outline and number;
``masks/NAME.tif`` (``--tiff``)
    the label image as uint16 TIFF (uint32 beyond 65,535) with the pixel size;
``rois/NAME.zip`` (``--rois``)
    ImageJ / Fiji ROI set, one polygon per WBC named by its id;
``geojson/NAME.geojson`` (``--geojson``)
    QuPath-compatible FeatureCollection, one polygon per WBC (class "WBC")
    with its measurements.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from compare.io.atomic import atomic_path, inside, write_text_atomic

__all__ = ["COUNT_COLUMNS", "ExportOptions", "FileFacts", "PredictionWriter"]

#: Columns of ``counts.csv``.
COUNT_COLUMNS = ("image", "path", "wbc_count", "width", "height", "scale", "scale_method", "scale_detail",
                 "pixel_size_um", "warning", "seconds")


@dataclass(frozen=True)
class ExportOptions:
    """Which optional exports to write.

    Attributes
    ----------
    rois : bool
        ImageJ / Fiji ROI zip per image.
    geojson : bool
        QuPath GeoJSON per image.
    tiff : bool
        Label image as TIFF.
    """

    rois: bool = False
    geojson: bool = False
    tiff: bool = False


@dataclass(frozen=True)
class FileFacts:
    """What predicting one image file learned besides its WBCs.

    Attributes
    ----------
    pixel_size_um : float or None
        Given, or read from the file's metadata; None when unknown.
    seconds : float
        Wall time of reading, scaling, prediction and measuring.
    """

    pixel_size_um: float | None = None
    seconds: float = 0.0


class PredictionWriter:
    """Writes each finished image's outputs and keeps the tables current.

    Parameters
    ----------
    out : Path
        Output folder (created).
    exports : ExportOptions
    resume : bool
        Keep parts of an earlier run in ``out`` (their images are skipped);
        otherwise earlier parts are removed.
    """

    def __init__(self, out: Path, exports: ExportOptions = ExportOptions(), *, resume: bool = False):
        self.out = Path(out)
        self.exports = exports
        self.parts = self.out / "parts"
        self.out.mkdir(parents=True, exist_ok=True)
        if not resume and self.parts.exists():
            for stale in self.parts.glob("*.json"):
                stale.unlink()
        self.parts.mkdir(exist_ok=True)
        self._done: dict[str, dict[str, Any]] = {}
        # "[!.]": a run killed mid-write leaves its temporary ".NAME.json.*.tmp.json", never a part.
        for part in sorted(self.parts.glob("[!.]*.json")):
            try:
                self._done[part.stem] = json.loads(part.read_text())
            except json.JSONDecodeError:
                continue  # parts are written atomically; an unreadable one is redone

    def done(self, name: str, path: Path) -> bool:
        """Whether image ``name`` (read from ``path``) was finished by an earlier run."""
        part = self._done.get(name)
        return part is not None and part["count"].get("path") == str(path)

    def write(self, name: str, path: Path, image: np.ndarray, prediction: Any, facts: FileFacts) -> dict[str, Any]:
        """Write one image's pictures, exports, part and the updated tables.

        Parameters
        ----------
        name : str
            The image's output stem.
        path : Path
            Its input file.
        image : ndarray, shape (H, W, 3), uint8
            Its pixels (for the overlay).
        prediction : compare.pipeline.prediction.Prediction
            What the model found in it (``labels``, ``nuclei``, ``cells``,
            ``scale``, ``warnings``).
        facts : FileFacts
            Its pixel size and the time it took.

        Returns
        -------
        dict
            Its ``counts.csv`` row.
        """
        from compare.io.overlay import overlay_image, save_label_png, save_rgb_png

        out = self.out
        labels = prediction.labels
        save_label_png(inside(out, out / "masks" / f"{name}.png"), labels)
        if prediction.nuclei is not None:
            save_label_png(inside(out, out / "nuclei" / f"{name}.png"), prediction.nuclei)
        picture = overlay_image(image, labels)
        save_rgb_png(inside(out, out / "overlays" / f"{name}.png"), picture)
        del picture
        if any((self.exports.rois, self.exports.geojson, self.exports.tiff)):
            from compare.io import exports

            if self.exports.tiff:
                exports.write_label_tiff(labels, inside(out, out / "masks" / f"{name}.tif"),
                                         pixel_size_um=facts.pixel_size_um)
            if self.exports.rois:
                exports.write_imagej_rois(labels, inside(out, out / "rois" / f"{name}.zip"))
            if self.exports.geojson:
                exports.write_geojson(labels, inside(out, out / "geojson" / f"{name}.geojson"), prediction.cells)
        scale = prediction.scale
        count = {"image": name, "path": str(path), "wbc_count": int(len(prediction.cells)), "width": labels.shape[1],
                 "height": labels.shape[0], "scale": round(scale.factor, 4), "scale_method": scale.method,
                 "scale_detail": scale.detail, "pixel_size_um": facts.pixel_size_um,
                 "warning": "; ".join(prediction.warnings), "seconds": round(facts.seconds, 3)}
        cells = prediction.cells.copy()
        cells.insert(0, "image", name)
        part = {"count": count, "cells": json.loads(cells.to_json(orient="records", double_precision=6))}
        write_text_atomic(self.parts / f"{name}.json", json.dumps(part) + "\n")
        self._done[name] = part
        self.write_tables()
        return count

    def count_rows(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """``counts.csv`` rows of the finished images, in the order of ``names`` (default: by name)."""
        order = names if names is not None else sorted(self._done)
        return [self._done[n]["count"] for n in order if n in self._done]

    def write_tables(self, names: Sequence[str] | None = None) -> None:
        """Rebuild ``counts.csv`` and ``instances.csv`` from the parts (atomically)."""
        order = names if names is not None else sorted(self._done)
        counts = pd.DataFrame(self.count_rows(order), columns=list(COUNT_COLUMNS))
        cells = [row for n in order if n in self._done for row in self._done[n]["cells"]]
        instances = pd.DataFrame(cells) if cells else pd.DataFrame(columns=["image", "id"])
        atomic_path(self.out / "counts.csv", lambda p: counts.to_csv(p, index=False))
        atomic_path(self.out / "instances.csv", lambda p: instances.to_csv(p, index=False))
