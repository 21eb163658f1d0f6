"""The evaluation protocols as functions: cross-validation, the shift battery, another lab.

:func:`cross_validate` runs ``compare run``'s ``cv`` for one segmenter,
:func:`evaluate_shifts` scores a fitted model on the synthetic domain shifts
of :mod:`compare.suite.shifts`, and :func:`evaluate_domain` scores it on
another lab's labelled images as they are (``compare score`` and the
``cellavision`` protocol), with the nucleus where the masks mark it.  The
runner adds persistence and ``--resume`` around them; the benchmark scripts
call them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from compare.evaluation.evaluate import evaluate, fit_model
from compare.evaluation.metrics import border_extras, dice_border_apart, nucleus_scores
from compare.io.images import Sample
from compare.suite.data import grouped_kfold

__all__ = ["cross_validate", "domain_scores", "evaluate_domain", "evaluate_shifts"]


def domain_scores(sample: Sample, prediction: Any) -> dict[str, Any]:
    """The scores of one prediction that another lab's crops add to :func:`evaluate`'s row.

    Parameters
    ----------
    sample : Sample
        Labelled; with ``nucleus`` where its mask marks the nucleus.
    prediction : Prediction
        The model's prediction of ``sample.image``; its ``nuclei`` (nuclei
        labelled by WBC id) are used where it has them, else they are found
        with :func:`compare.pipeline.measure.nucleus_labels`.

    Returns
    -------
    dict
        ``border_extra`` (:func:`compare.evaluation.metrics.border_extras`)
        and ``dice_border_apart`` (:func:`compare.evaluation.metrics.dice_border_apart`)
        for a labelled sample, and :func:`compare.evaluation.metrics.nucleus_scores`'s
        keys for one with a nucleus mask; empty without a mask.
    """
    if sample.mask is None:
        return {}
    labels = prediction.labels
    row: dict[str, Any] = {"border_extra": border_extras(sample.mask, labels),
                           "dice_border_apart": dice_border_apart(sample.mask, labels)}
    if sample.nucleus is not None:
        nuclei = getattr(prediction, "nuclei", None)
        if nuclei is None:
            from compare.pipeline.measure import nucleus_labels

            nuclei = nucleus_labels(labels, sample.image)
        row.update(nucleus_scores(sample.mask, sample.nucleus, labels, nuclei))
    return row


def evaluate_domain(model: Any, samples: Sequence[Sample], *,
                    on_result: Callable[[Sample, Any], None] | None = None,
                    on_error: Callable[[Sample, BaseException], None] | None = None,
                    progress_desc: str | None = None, n_jobs: int = 1) -> list[dict[str, Any]]:
    """Score a fitted model, as it is, on another lab's labelled images.

    Parameters
    ----------
    model : WBCModel
        Fitted elsewhere; predicts with default settings.
    samples : sequence of Sample
        One domain's labelled samples (:func:`compare.suite.data.load_domain`);
        sample names must be unique.
    on_result, on_error, progress_desc : keyword-only
        As in :func:`compare.evaluation.evaluate.evaluate`.
    n_jobs : int, keyword-only
        Images scored at once, in threads (the model's ``predict`` must be
        thread-safe, as the registered segmenters' are); the rows come back
        in the samples' order, the same as with one.  Crops from another
        lab are probed at several trial scales, so most of their time is
        prediction, which releases the GIL.

    Returns
    -------
    list of dict
        :func:`compare.evaluation.evaluate.evaluate`'s rows with
        :func:`domain_scores`'s keys added: ``border_extra``, ``dice_border_apart``, and
        ``nucleus_dice, nc_true, nc_pred, nc_rel_error`` where the sample
        has a nucleus mask.
    """
    extra: dict[str, dict[str, Any]] = {}

    def measured(sample: Sample, prediction: Any) -> None:
        extra[sample.name] = domain_scores(sample, prediction)
        if on_result is not None:
            on_result(sample, prediction)

    # Looked up at call time, so a stand-in evaluator (tests) reaches this path too.
    from compare.evaluation import evaluate as evaluation

    if n_jobs <= 1:
        rows = evaluation.evaluate(model, samples, on_result=measured, on_error=on_error,
                                   progress_desc=progress_desc)
    else:
        from concurrent.futures import ThreadPoolExecutor

        from compare.io.progress import progress

        def one(sample: Sample) -> list[dict[str, Any]]:
            return evaluation.evaluate(model, [sample], on_result=measured, on_error=on_error)

        with ThreadPoolExecutor(n_jobs, thread_name_prefix="wbc-domain") as pool:
            found = pool.map(one, samples)
            if progress_desc:
                found = progress(found, total=len(samples), desc=progress_desc, leave=False, unit="img")
            rows = [row for part in found for row in part]
    for row in rows:
        row.update(extra.get(row["image"], {}))
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
        Seeds the shifts (:func:`compare.suite.shifts.apply_shift`).
    shifts : sequence of str, optional, keyword-only
        Default: every shift of :data:`compare.suite.shifts.SHIFTS`.
    source : str, keyword-only
        Written to each row's ``source`` column (``"cv"`` or ``"large"``).
    cache : dict, optional, keyword-only
        Shifted pieces by ``(shift, sample name, seed)``, filled and reused,
        so that several models are scored on the same inputs without
        making them again (the 3x shifts of large images take seconds).
        The red-cell measurement of each shifted image is likewise
        remembered for the next model (:func:`compare.pipeline.red_cells.remembering_red_cells`).
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
    from compare.io.progress import progress
    from compare.pipeline.red_cells import remembering_red_cells
    from compare.suite.shifts import SHIFTS, apply_shift, shift_kinds

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
        Passed to :class:`compare.pipeline.model.WBCModel`.

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
