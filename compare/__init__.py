"""wbc-compare: white blood cell segmentation in blood-smear images, compared honestly.

The public Python API::

    >>> import compare
    >>> model = compare.load_model()                    # the committed default U-Net
    >>> result = model.predict(image)                   # (H, W, 3) uint8 RGB, any size, any lab
    >>> result.labels, result.cells, result.scale, result.warnings

Fitting and evaluating::

    >>> samples = compare.load_set(None, "patches")     # the SigTuple patches, found by the data resolver
    >>> model = compare.WBCModel("rf").fit(samples)
    >>> rows = compare.evaluation.evaluate(model, compare.load_set(None, "large"))
    >>> table = compare.cross_validate("threshold", samples, folds=5, seed=0)

Names are imported on first use, so ``import compare`` stays light (no
TensorFlow until a U-Net is built or loaded).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "WBCModel",
    "Prediction",
    "load_model",
    "load_set",
    "make_segmenter",
    "evaluate",
    "evaluate_shifts",
    "cross_validate",
    "score_labels",
    "read_image",
    "cell_table",
    "nucleus_labels",
    "ExportOptions",
    "PredictionWriter",
    "FileFacts",
    "write_imagej_rois",
    "write_geojson",
    "write_label_tiff",
]

_HOMES = {
    "WBCModel": "compare.pipeline.model",
    "Prediction": "compare.pipeline.prediction",
    "load_model": "compare.pipeline.model",
    "load_set": "compare.suite.data",
    "make_segmenter": "compare.pipeline.segmenters",
    "evaluate": "compare.evaluation.evaluate",
    "evaluate_shifts": "compare.suite.protocols",
    "cross_validate": "compare.suite.protocols",
    "score_labels": "compare.evaluation.evaluate",
    "read_image": "compare.io.images",
    "cell_table": "compare.pipeline.measure",
    "nucleus_labels": "compare.pipeline.measure",
    "ExportOptions": "compare.io.outputs",
    "PredictionWriter": "compare.io.outputs",
    "FileFacts": "compare.io.outputs",
    "write_imagej_rois": "compare.io.exports",
    "write_geojson": "compare.io.exports",
    "write_label_tiff": "compare.io.exports",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'compare' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
