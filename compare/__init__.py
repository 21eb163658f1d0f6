"""wbc-compare: white blood cell segmentation in blood-smear images, compared honestly.

The public Python API::

    >>> import compare
    >>> model = compare.load_model()                    # the committed default U-Net
    >>> result = model.predict(image)                   # (H, W, 3) uint8 RGB, any size, any lab
    >>> result.labels, result.cells, result.scale, result.warnings

Fitting and evaluating::

    >>> samples = compare.load_set(None, "patches")     # the SigTuple patches, found by the data resolver
    >>> model = compare.WBCModel("rf").fit(samples)
    >>> rows = compare.evaluate(model, compare.load_set(None, "large"))
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
]

_HOMES = {
    "WBCModel": "compare.model",
    "Prediction": "compare.model",
    "load_model": "compare.model",
    "load_set": "compare.data",
    "make_segmenter": "compare.segmenters",
    "evaluate": "compare.evaluate",
    "evaluate_shifts": "compare.evaluate",
    "cross_validate": "compare.evaluate",
    "score_labels": "compare.evaluate",
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
