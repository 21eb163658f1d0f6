"""Evaluation as public functions: score a model on labelled samples, cross-validate a segmenter.

:func:`score_labels` turns one predicted label image and its true mask into
the row of scores ``per_image.csv`` holds (pixel scores, boundary scores,
object matching at IoU >= 0.5, counts).  :func:`evaluate` runs a fitted
:class:`compare.model.WBCModel` over samples, and :func:`cross_validate` runs
the grouped K-fold protocol of ``compare run``'s ``cv`` for one segmenter.
:func:`evaluate_shifts` scores a model on the synthetic domain shifts of
:mod:`compare.shifts`.  The runner adds persistence and ``--resume`` around
these functions; the benchmark scripts call them directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from compare.data import Sample, grouped_kfold
from compare.instances import label_truth, match_instances
from compare.metrics import pixel_scores

__all__ = ["score_labels", "evaluate", "evaluate_shifts", "cross_validate", "fit_model"]


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
        (boundaries, when :mod:`compare.metrics` provides them),
        ``true_count, pred_count, tp, fp, fn, object_f1, panoptic_quality,
        matched_iou_sum`` (objects matched one-to-one at IoU >= 0.5).
    """
    from compare import metrics

    predicted = labels > 0
    row: dict[str, Any] = dict(pixel_scores(mask, predicted))
    if hasattr(metrics, "boundary_scores"):
        row.update(metrics.boundary_scores(mask, predicted))
    match = match_instances(label_truth(mask), labels)
    row.update(true_count=match.true_count, pred_count=int(labels.max()), tp=match.tp, fp=match.fp, fn=match.fn,
               object_f1=match.f1, panoptic_quality=match.panoptic_quality,
               matched_iou_sum=match.panoptic_quality * (match.tp + 0.5 * (match.fp + match.fn)) if match.tp else 0.0)
    return row


def fit_model(name: str, samples: Sequence[Sample], *, seed: int = 0, **options: Any):
    """A :class:`compare.model.WBCModel` of segmenter ``name`` fitted on ``samples``.

    Parameters
    ----------
    name : str
        Registry name.
    samples : sequence of Sample
        Labelled training samples.
    seed : int, keyword-only
    **options
        Passed to :class:`compare.model.WBCModel` (``normalise_colour``,
        ``auto_scale``).
    """
    from compare.model import WBCModel

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
    from compare.progress import progress

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


def evaluate_shifts(model: Any, samples: Sequence[Sample], *, seed: int = 0, shifts: Sequence[str] | None = None,
                    source: str = "", on_error: Callable[[Sample, BaseException], None] | None = None,
                    progress_desc: str | None = None,
                    cache: dict[tuple[str, str, int], list] | None = None, n_jobs: int = 1) -> list[dict[str, Any]]:
    """Score ``model`` on the synthetic domain shifts of labelled samples.

    Parameters
    ----------
    model : WBCModel
    samples : sequence of Sample
        Labelled samples to shift.
    seed : int, keyword-only
        Seeds the shifts (:func:`compare.shifts.apply_shift`).
    shifts : sequence of str, optional, keyword-only
        Default: every shift of :data:`compare.shifts.SHIFTS`.
    source : str, keyword-only
        Written to each row's ``source`` column (``"cv"`` or ``"large"``).
    cache : dict, optional, keyword-only
        Shifted pieces by ``(shift, sample name, seed)``, filled and reused,
        so that several models are scored on the same inputs without
        making them again (the 3x shifts of large images take seconds).
        The red-cell measurement of each shifted image is likewise
        remembered for the next model (:func:`compare.scale.remembering_red_cells`).
    n_jobs : int, keyword-only
        Images scored at once, in threads (the model's ``predict`` must be
        thread-safe, as the registered segmenters' are).  The rows are the
        same, in the same order; the per-image ``predict_s`` then includes
        waiting for the other threads, so it is no speed measurement.

    Returns
    -------
    list of dict
        :func:`evaluate`'s rows with ``shift``, ``source``, ``true_scale``
        added; ``image`` names the shifted piece (``NAME`` or ``NAME#k``
        for the k-th crop).
    """
    from compare.progress import progress
    from compare.scale import remembering_red_cells
    from compare.shifts import SHIFTS, apply_shift, shift_kinds

    kinds = shift_kinds()
    names = list(SHIFTS if shifts is None else shifts)
    pairs = [(shift, sample) for shift in names for sample in samples]

    def rows_of(pair: tuple[str, Sample]) -> list[dict[str, Any]]:
        shift, sample = pair
        key = (shift, sample.name, seed)
        try:
            pieces = cache[key] if cache is not None and key in cache else apply_shift(shift, sample.image,
                                                                                      sample.mask, seed=seed)
            if cache is not None:
                cache[key] = pieces
        except Exception as exc:
            if on_error is None:
                raise
            on_error(sample, exc)
            return []
        shifted = [Sample(name=sample.name if len(pieces) == 1 else f"{sample.name}#{k}", path=sample.path,
                          image=img, mask=msk, group=sample.group) for k, (img, msk) in enumerate(pieces, start=1)]
        found = evaluate(model, shifted, on_error=on_error)
        for row in found:
            row.update(shift=shift, source=source, true_scale=kinds[shift].scale)
        return found

    # Every model scored on these shifts sees the same white-balanced pixels:
    # the red-cell ruler measured for the first is reused by the others.
    with remembering_red_cells():
        if n_jobs <= 1:
            per_pair = [rows_of(pair) for pair in (progress(pairs, desc=progress_desc, leave=False, unit="img")
                                                    if progress_desc else pairs)]
        else:
            from concurrent.futures import ThreadPoolExecutor

            # Images are independent, and much of each one's work (scale,
            # instances, scores) runs on one core: a second image keeps the
            # other busy.  map() keeps the order, so the rows are the same.
            with ThreadPoolExecutor(n_jobs, thread_name_prefix="wbc-shift") as pool:
                results = pool.map(rows_of, pairs)
                per_pair = list(progress(results, desc=progress_desc, leave=False, unit="img", total=len(pairs))
                                if progress_desc else results)
    return [row for found in per_pair for row in found]


def cross_validate(name: str, samples: Sequence[Sample], folds: int = 5, seed: int = 0, *,
                   shifts: bool = False, **options: Any) -> pd.DataFrame:
    """Grouped K-fold cross-validation of one segmenter, as ``compare run``'s ``cv``.

    Parameters
    ----------
    name : str
        Registry name.
    samples : sequence of Sample
        Labelled samples; samples of one ``group`` always share a fold.
    folds : int
    seed : int
        Seeds the split and fold ``k``'s model (``seed + k``).
    shifts : bool, keyword-only
        Also score each fold's model on the shifted held-out samples
        (rows with ``protocol == "shift"``).
    **options
        Passed to :class:`compare.model.WBCModel`.

    Returns
    -------
    DataFrame
        One row per (fold, image[, shift]) with ``fold``, ``protocol``, the
        scores and ``fit_s``.
    """
    rows = []
    for fold, (train_idx, test_idx) in enumerate(grouped_kfold(samples, folds, seed)):
        model = fit_model(name, [samples[i] for i in train_idx], seed=seed + fold, **options)
        held_out = [samples[i] for i in test_idx]
        for row in evaluate(model, held_out):
            rows.append({"segmenter": name, "protocol": "cv", "fold": str(fold), "fit_s": model.fit_s_, **row})
        if shifts:
            for row in evaluate_shifts(model, held_out, seed=seed, source="cv"):
                rows.append({"segmenter": name, "protocol": "shift", "fold": str(fold), **row})
    return pd.DataFrame(rows)
