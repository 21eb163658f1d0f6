"""Out-of-fold stages of a pixel-classifier fit.

A map predicted by a classifier on its own training images is overconfident
(a deep forest nearly memorises its samples), so whatever is learned from
maps (the decision threshold of ``threshold_folds``, the auto-context stage 2
of ``auto_context``) is learned from maps of images the classifier did not
train on: the training images are split into seeded parts, and a classifier
fitted on the sampled pixels of the other parts predicts each part's maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone

from baselines.context import context_features
from baselines.decision import THRESHOLD_GRID, filled_dice_at_thresholds, to_prior
from baselines.features import upsample
from baselines.forest import positive_proba

__all__ = ["fit_context_stage", "seed_classifier", "tune_threshold"]


def seed_classifier(classifier: Any, random_state: int, n_jobs: int | None = None) -> Any:
    """A clone of ``classifier`` with every nested ``random_state`` (and, if given, ``n_jobs``) set."""
    est = clone(classifier)
    params = est.get_params(deep=True)
    updates: dict[str, Any] = {k: random_state for k in params if k == "random_state" or k.endswith("__random_state")}
    if n_jobs is not None:
        updates.update({k: n_jobs for k in params if k == "n_jobs" or k.endswith("__n_jobs")})
    if updates:
        est.set_params(**updates)
    return est


def tune_threshold(
    seg: Any, masks: Sequence[np.ndarray], feats: list[np.ndarray], picks: list[np.ndarray],
    X: np.ndarray, y: np.ndarray, rng: np.random.Generator, n_jobs: int,
) -> float:
    """Out-of-fold choice of ``seg``'s decision threshold (see its ``threshold_folds``).

    Parameters
    ----------
    seg : baselines.pixel.PixelClassifierSegmenter
        The segmenter being fitted (not imported here: it imports this
        module); its ``prior_`` is already set.
    masks : sequence of ndarray, each (H, W) bool
        The training masks.
    feats : list of ndarray, each (h, w, n_features) float32
        Each training image's features.
    picks : list of ndarray of int
        The sampled pixels of each image, flat indices into its feature grid.
    X : ndarray, shape (n_samples, n_features), float32
    y : ndarray, shape (n_samples,), int8
        The sampled pixels' features and labels, image by image in order.
    rng : numpy Generator
        Draws the split of the images into parts.
    n_jobs : int

    Returns
    -------
    float
        A value of :data:`~baselines.decision.THRESHOLD_GRID`.
    """
    n_img = len(masks)
    part = np.empty(n_img, np.int64)
    part[rng.permutation(n_img)] = np.arange(n_img) % seg.threshold_folds
    row_img = np.repeat(np.arange(n_img), [len(p) for p in picks])
    factor = seg.bank_.downsample
    grid = np.asarray(THRESHOLD_GRID, np.float32)
    scores = np.zeros(len(grid))
    n_scored = 0
    for k in range(seg.threshold_folds):
        held = np.flatnonzero(part == k)
        train_rows = part[row_img] != k
        if held.size == 0 or np.unique(y[train_rows]).size < 2:
            continue
        model = seed_classifier(seg.classifier, seg.random_state + 101 + k, n_jobs)
        if "n_estimators" in model.get_params():
            # Half the ensemble: the threshold needs the map's level, not its last bit of accuracy.
            model.set_params(n_estimators=max(8, model.get_params()["n_estimators"] // 2))
        model.fit(X[train_rows], y[train_rows])
        stacked = np.concatenate([feats[i].reshape(-1, feats[i].shape[-1]) for i in held])
        prob = positive_proba(model, stacked, n_jobs)
        if seg.correct_prior:
            prob = to_prior(prob, float(y[train_rows].mean()), seg.prior_)
        offset = 0
        for i in held:
            shape = feats[i].shape[:2]
            n = shape[0] * shape[1]
            full = upsample(prob[offset : offset + n].reshape(shape), factor)
            full = full[: masks[i].shape[0], : masks[i].shape[1]]
            offset += n
            scores += filled_dice_at_thresholds(full, masks[i], grid)
            n_scored += 1
    if n_scored == 0:
        return 0.5
    # Ties go to the threshold nearest 0.5.
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(THRESHOLD_GRID[int(best[np.argmin(np.abs(grid[best] - 0.5))])])


def fit_context_stage(
    seg: Any, feats: list[np.ndarray], picks: list[np.ndarray], X: np.ndarray, y: np.ndarray,
    rng: np.random.Generator, n_jobs: int,
) -> Any:
    """Stage 2 of ``seg``'s auto-context, fitted on out-of-fold stage-1 maps.

    See the Notes of :class:`~baselines.pixel.PixelClassifierSegmenter`;
    ``seg.classifier_`` (stage 1 on all sampled pixels) is already fitted.
    The arguments are those of :func:`tune_threshold`.

    Returns
    -------
    fitted classifier
        The stage-2 classifier.
    """
    n_img = len(feats)
    n_context = 1 + len(seg.context_filters) * len(seg.context_sigmas)
    part = np.empty(n_img, np.int64)
    part[rng.permutation(n_img)] = np.arange(n_img) % seg.context_folds
    # Row r of X came from image row_img[r]; picks are per image, in order.
    row_img = np.repeat(np.arange(n_img), [len(p) for p in picks])
    maps: list[np.ndarray | None] = [None] * n_img
    for k in range(seg.context_folds):
        train_rows = part[row_img] != k
        if np.unique(y[train_rows]).size < 2:
            # A part whose complement holds one class cannot train stage 1;
            # fall back to the in-sample model for its maps.
            model = seg.classifier_
        else:
            model = seed_classifier(seg.classifier, seg.random_state + 1 + k, n_jobs).fit(X[train_rows], y[train_rows])
        k_fg = list(model.classes_).index(1)
        held = np.flatnonzero(part == k)
        if held.size == 0:
            continue
        # One predict call over all held-out pixels: far less per-call overhead.
        stacked = np.concatenate([feats[i].reshape(-1, feats[i].shape[-1]) for i in held])
        prob = model.predict_proba(stacked)[:, k_fg].astype(np.float32)
        offset = 0
        for i in held:
            n = feats[i].shape[0] * feats[i].shape[1]
            maps[i] = prob[offset : offset + n].reshape(feats[i].shape[:2])
            offset += n
    ctx = np.concatenate(
        [
            context_features(m, tuple(seg.context_sigmas), tuple(seg.context_filters)).reshape(-1, n_context)[p]
            for m, p in zip(maps, picks)
        ]
    )
    stage2 = seg.context_classifier if seg.context_classifier is not None else seg.classifier
    return seed_classifier(stage2, seg.random_state, n_jobs).fit(np.hstack([X, ctx]), y)
