"""Evaluation as public functions: score a model on labelled samples.

:func:`score_labels` turns one predicted label image and its true mask into
the row of scores ``per_image.csv`` holds (pixel scores, boundary scores,
object matching at IoU >= 0.5, counts).  :func:`evaluate` runs a fitted
:class:`compare.pipeline.model.WBCModel` over samples; :func:`fit_model`
fits one by registry name.  The protocols built on them (cross-validation,
the shift battery) are :mod:`compare.suite.protocols`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from compare.evaluation.matching import match_instances
from compare.evaluation.metrics import pixel_scores
from compare.io.images import Sample
from compare.pipeline.instances import label_truth

__all__ = ["score_labels", "evaluate", "fit_model"]


def score_labels(mask: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Scores of one predicted label image against its true mask.

    Parameters
    ----------
    mask : ndarray, shape (H, W), bool
        True WBC pixels; each connected component is one true WBC.
    labels : ndarray, shape (H, W), int
        Predicted label image (0 background, 1..n one per WBC).

    Returns
    -------
    dict
        ``dice, iou, precision, recall`` (pixels), ``hd95, surface_dice``
        (boundaries, when :mod:`compare.evaluation.metrics` provides them),
        ``true_count, pred_count, tp, fp, fn, object_f1, panoptic_quality,
        matched_iou_sum`` (objects matched one-to-one at IoU >= 0.5).
    """
    from compare.evaluation import metrics

    predicted = labels > 0
    row: dict[str, Any] = dict(pixel_scores(mask, predicted))
    row.update(metrics.boundary_scores(mask, predicted))
    match = match_instances(label_truth(mask), labels)
    row.update(true_count=match.true_count, pred_count=int(labels.max()), tp=match.tp, fp=match.fp, fn=match.fn,
               object_f1=match.f1, panoptic_quality=match.panoptic_quality,
               matched_iou_sum=match.panoptic_quality * (match.tp + 0.5 * (match.fp + match.fn)) if match.tp else 0.0)
    return row


def fit_model(name: str, samples: Sequence[Sample], *, seed: int = 0, **options: Any):
    """A :class:`compare.pipeline.model.WBCModel` of segmenter ``name`` fitted on ``samples``.

    Parameters
    ----------
    name : str
        Registry name.
    samples : sequence of Sample
        Labelled training samples.
    seed : int, keyword-only
    **options
        Passed to :class:`compare.pipeline.model.WBCModel` (``normalise_colour``,
        ``auto_scale``).
    """
    from compare.pipeline.model import WBCModel

    return WBCModel(name, random_state=seed, **options).fit(samples)


def evaluate(model: Any, samples: Sequence[Sample], *, on_result: Callable[[Sample, Any], None] | None = None,
             on_error: Callable[[Sample, BaseException], None] | None = None, progress_desc: str | None = None,
             **predict_options: Any) -> list[dict[str, Any]]:
    """Predict every sample with ``model`` and score the labelled ones.

    Parameters
    ----------
    model : WBCModel
        Fitted.
    samples : sequence of Sample
        Samples without a mask get a row without scores (counts only).
    on_result : callable, optional, keyword-only
        ``on_result(sample, prediction)`` after each image, e.g. to save
        its masks and overlays.
    on_error : callable, optional, keyword-only
        ``on_error(sample, exc)`` for an image whose prediction failed; the
        others go on.  Without it the exception is raised.
    progress_desc : str, optional, keyword-only
        Shows a progress bar with this label.
    **predict_options
        Passed to :meth:`WBCModel.predict` (``scale``, ``wbc_diameter``).

    Returns
    -------
    list of dict
        One row per predicted image: ``image, height, width, predict_s,
        pred_count, scale, scale_method, warning`` plus :func:`score_labels`'s
        keys for labelled samples.
    """
    from compare.io.progress import progress

    rows = []
    iterator = progress(samples, desc=progress_desc, leave=False, unit="img") if progress_desc else samples
    for sample in iterator:
        try:
            start = time.perf_counter()
            prediction = model.predict(sample.image, name=str(sample.path), cells=False, **predict_options)
            elapsed = time.perf_counter() - start
        except Exception as exc:  # one bad image must not lose the others
            if on_error is None:
                raise
            on_error(sample, exc)
            continue
        labels = prediction.labels
        row: dict[str, Any] = {"image": sample.name, "height": labels.shape[0], "width": labels.shape[1],
                               "predict_s": elapsed, "pred_count": int(labels.max()),
                               "scale": round(prediction.scale.factor, 4), "scale_method": prediction.scale.method,
                               "warning": "; ".join(prediction.warnings)}
        if sample.mask is not None:
            row.update(score_labels(sample.mask, labels))
        rows.append(row)
        if on_result is not None:
            on_result(sample, prediction)
    return rows


