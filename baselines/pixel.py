"""A generic pixel-classifier segmenter: any scikit-learn classifier on a feature bank.

:class:`PixelClassifierSegmenter` wraps any scikit-learn classifier that has
``predict_proba``.  It

* computes a :class:`~baselines.features.FeatureBank` per image (cached, so
  folds and segmenters of one run share it) on a ``downsample``-times smaller
  grid;
* samples training pixels with :func:`baselines.sampling.sample_pixels`
  (seeded, class-balanced, boundary-weighted);
* predicts tile by tile through :func:`tiling.predict_tiled`, reading each tile
  with the bank's full filter reach as context so that tiles see exactly the
  features the whole image would give them (tiled == untiled);
* saves with :mod:`skops.io` through :mod:`baselines.persistence`, which loads
  only trusted types, so an untrusted model file cannot run code.

The registry's ``rf``, ``svm`` and ``mlp`` are instances built by
:mod:`baselines.factories`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from baselines.context import context_features, context_reach
from baselines.decision import move_threshold, to_prior
from baselines.features import FeatureBank, cached_features, upsample
from baselines.forest import positive_proba
from baselines.out_of_fold import fit_context_stage, seed_classifier, tune_threshold
from baselines.persistence import CONTEXT_MODEL_FILE, MODEL_FILE, PARAMS_FILE, TRUSTED_TYPES, dump, load_trusted
from baselines.sampling import coarse_labels, pad_to_multiple, sample_pixels
from tiling import predict_tiled
from tiling.runtime import resolve_n_jobs
from tiling.validation import check_image, check_training_set

__all__ = [
    "TRUSTED_TYPES",
    "PixelClassifierSegmenter",
    "coarse_labels",
    "sample_pixels",
]


class PixelClassifierSegmenter(BaseEstimator):
    """Segment WBCs by classifying every pixel from its local features.

    Parameters
    ----------
    classifier : scikit-learn classifier
        Any estimator with ``fit`` and ``predict_proba``; cloned at fit time.
    bank : FeatureBank, optional
        Feature bank; defaults to ``FeatureBank()``.
    n_samples : int
        Training pixels drawn (class-balanced) over all training images.
    boundary_width : float
        Half-width, in feature-grid pixels, of the band around the WBC
        boundary that is over-sampled.
    boundary_weight : float
        How many times likelier a band pixel is to be drawn.
    correct_prior : bool
        Shift predicted odds from the balanced sample's class prior back to
        the training images' foreground fraction, so that 0.5 stays the
        Bayes threshold.
    tile : int
        Largest tile side in full-resolution pixels for prediction; bounds
        memory at about ``(tile + 2 * reach)**2 * n_features * 4 /
        downsample**2`` bytes of features.
    random_state : int
        Seeds the pixel sampling and every nested ``random_state`` of the
        classifier.
    n_jobs : int or None
        Threads for features, forest fits and tree walks; set on every
        nested ``n_jobs`` of the classifier at fit time.  ``None`` reads
        ``WBC_N_JOBS`` or uses all cores (:func:`tiling.runtime.resolve_n_jobs`).
    auto_context : bool
        Two-stage ilastik-style auto-context (see Notes).
    context_sigmas : tuple of float
        Scales, in feature-grid pixels, at which the stage-1 probability is
        given to stage 2.
    context_filters : tuple of str
        Filters applied to the stage-1 probability at each scale
        (see :func:`~baselines.context.context_features`).
    context_classifier : scikit-learn classifier, optional
        Stage-2 classifier; ``None`` uses a clone of ``classifier``.
    context_folds : int
        Training images are split into this many seeded parts; stage-1
        probabilities of each part come from a stage-1 model fitted on the
        other parts.
    threshold_folds : int
        0 keeps 0.5 as the decision threshold.  Otherwise the training
        images are split into this many seeded parts, a classifier fitted on
        the sampled pixels of the other parts predicts each part's whole
        maps, and the threshold in :data:`~baselines.decision.THRESHOLD_GRID` that maximises the
        mean per-image Dice of those out-of-fold maps (holes filled) is
        learned as ``threshold_``.  :meth:`predict_proba` then maps
        probabilities monotonically (piecewise linear) so that
        ``threshold_`` becomes 0.5, the instance stage's threshold.  Costs
        ``threshold_folds`` extra classifier fits (ensembles with
        ``n_estimators`` use half as many members for them).  Not with
        auto-context.

    Attributes
    ----------
    classifier_ : fitted classifier
        The stage-1 classifier (the only one without auto-context).
    context_classifier_ : fitted classifier
        Stage 2; only with ``auto_context=True``.
    threshold_ : float
        Probability that :meth:`predict_proba` maps to 0.5 (0.5 unless
        ``threshold_folds`` tuned it).
    fit_info_ : dict
        JSON-able facts about the fit (pixels sampled, features, seconds).

    Notes
    -----
    Auto-context (Tu & Bai 2010; ilastik's "autocontext" workflow).  Stage 1
    is the plain classifier on the bank's features.  Stage 2 sees the same
    features plus :func:`~baselines.context.context_features` of the stage-1
    probability map (the map itself, smoothed at ``context_sigmas``), so it
    can use shape and neighbourhood evidence that per-pixel colour lacks.

    Stage 2 must be trained on stage-1 maps that look like those it will see
    at test time.  Maps predicted by a stage-1 model on its own training
    images are overconfident (a deep forest nearly memorises its samples),
    and a stage 2 trained on them learns to trust stage 1 too much.  So fit
    draws the pixel sample once, splits the training *images* into
    ``context_folds`` parts, fits one stage-1 model per part on the sampled
    pixels of the other parts and predicts the held-out part's whole maps
    (out-of-fold).  The stage-1 model kept for prediction is then fitted on
    all sampled pixels.  Fit therefore costs ``context_folds + 1`` stage-1
    fits and one stage-2 fit; prediction costs two classifier passes.

    Tiles are read with the bank's reach plus the context filters' reach as
    context, so tiled prediction still equals whole-image prediction.

    The constructor stores its arguments unchanged, so the segmenter follows
    scikit-learn's estimator rules (:func:`sklearn.base.clone`,
    ``get_params`` / ``set_params``).
    """

    def __init__(
        self,
        classifier: Any,
        bank: FeatureBank | None = None,
        *,
        n_samples: int = 100_000,
        boundary_width: float = 3.0,
        boundary_weight: float = 3.0,
        correct_prior: bool = False,
        tile: int = 512,
        random_state: int = 0,
        n_jobs: int | None = None,
        auto_context: bool = False,
        context_sigmas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0),
        context_filters: tuple[str, ...] = ("gauss",),
        context_classifier: Any = None,
        context_folds: int = 2,
        threshold_folds: int = 0,
    ) -> None:
        self.classifier = classifier
        self.bank = bank
        self.n_samples = n_samples
        self.boundary_width = boundary_width
        self.boundary_weight = boundary_weight
        self.correct_prior = correct_prior
        self.tile = tile
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.auto_context = auto_context
        self.context_sigmas = context_sigmas
        self.context_filters = context_filters
        self.context_classifier = context_classifier
        self.context_folds = context_folds
        self.threshold_folds = threshold_folds

    # ------------------------------------------------------------------ fit
    @property
    def bank_(self) -> FeatureBank:
        return self.bank if self.bank is not None else FeatureBank()

    def fit(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> PixelClassifierSegmenter:
        """Learn from images and their WBC masks.

        Parameters
        ----------
        images : sequence of ndarray, each (H, W, 3) uint8 RGB
        masks : sequence of ndarray, each (H, W) bool, same size as its image

        Returns
        -------
        self
        """
        check_training_set(images, masks)
        if not hasattr(self.classifier, "predict_proba"):
            raise ValueError(f"Classifier {type(self.classifier).__name__} has no predict_proba; pass a probabilistic classifier.")
        if self.n_samples < 2:
            raise ValueError(f"n_samples must be at least 2, got {self.n_samples}.")
        if self.threshold_folds and not 2 <= self.threshold_folds <= len(images):
            raise ValueError(
                f"threshold_folds must be 0 or between 2 and the {len(images)} training images, got {self.threshold_folds}."
            )
        if self.threshold_folds and self.auto_context:
            raise ValueError("threshold_folds needs auto_context=False; set one of them off.")
        if self.auto_context and not 2 <= self.context_folds <= len(images):
            raise ValueError(
                f"context_folds must be between 2 and the {len(images)} training images, got {self.context_folds}."
            )

        start = time.perf_counter()
        n_jobs = resolve_n_jobs(self.n_jobs)
        bank = self.bank_
        factor = bank.downsample
        feats = [cached_features(bank, pad_to_multiple(img, factor), n_jobs) for img in images]
        labels = [coarse_labels(m, factor) for m in masks]
        if not any(lab.any() for lab in labels) or all(lab.all() for lab in labels):
            raise ValueError("Training masks contain only one class; they need both WBC and background pixels.")
        feature_s = time.perf_counter() - start

        rng = np.random.default_rng(self.random_state)
        picks = sample_pixels(
            labels, self.n_samples, boundary_width=self.boundary_width,
            boundary_weight=self.boundary_weight, rng=rng,
        )
        X = np.concatenate([f.reshape(-1, f.shape[-1])[p] for f, p in zip(feats, picks)])
        y = np.concatenate([lab.ravel()[p] for lab, p in zip(labels, picks)]).astype(np.int8)

        self.classifier_ = seed_classifier(self.classifier, self.random_state, n_jobs).fit(X, y)
        stage1_s = time.perf_counter() - start
        if self.auto_context:
            self.context_classifier_ = fit_context_stage(self, feats, picks, X, y, rng, n_jobs)
        # Balanced sampling teaches the classifier a 50/50 prior; remember the
        # true one so predict_proba can shift the odds back (see baselines.decision.to_prior).
        self.prior_ = float(np.mean([lab.mean() for lab in labels]))
        self.sample_prior_ = float(y.mean())
        self.threshold_ = 0.5
        if self.threshold_folds:
            self.threshold_ = tune_threshold(self, masks, feats, picks, X, y, rng, n_jobs)
        self.fit_info_ = {
            "n_images": len(images),
            "n_pixels_sampled": int(len(y)),
            "n_foreground_sampled": int(y.sum()),
            "n_features": bank.n_features,
            "feature_s": round(feature_s, 3),
            "stage1_s": round(stage1_s, 3),
            "threshold": self.threshold_,
            "fit_s": round(time.perf_counter() - start, 3),
        }
        return self

    # -------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        check_is_fitted(self, "classifier_", msg="This %(name)s is not fitted yet; call fit(images, masks) or load(folder) first.")

    def _predict_crops(self, crops: np.ndarray, skip: int = 0) -> np.ndarray:
        """Probabilities for a batch of padded tiles, (N, h, w, 3) -> (N, h, w).

        ``skip`` grid pixels on each side of every crop are context only: the
        classifier does not predict them (they are returned as 0, and the
        tiler discards them).  The features still see the whole crop.
        """
        bank = self.bank_
        factor = bank.downsample
        n_jobs = resolve_n_jobs(self.n_jobs)
        sigmas, filters = tuple(self.context_sigmas), tuple(self.context_filters)
        out = np.zeros(crops.shape[:3], np.float32)
        for i, crop in enumerate(crops):
            feats = bank.compute(crop, n_jobs)
            if skip:
                feats = np.ascontiguousarray(feats[skip:-skip, skip:-skip])
            flat = feats.reshape(-1, feats.shape[-1])
            prob = positive_proba(self.classifier_, flat, n_jobs)
            if self.auto_context:
                ctx = context_features(prob.reshape(feats.shape[:2]), sigmas, filters)
                prob = positive_proba(self.context_classifier_, np.hstack([flat, ctx.reshape(-1, ctx.shape[-1])]), n_jobs)
            if self.correct_prior:
                prob = to_prior(prob, self.sample_prior_, self.prior_)
            edge = skip * factor
            region = out[i, edge : out.shape[1] - edge, edge : out.shape[2] - edge]
            region[...] = move_threshold(upsample(prob.reshape(feats.shape[:2]), factor), self.threshold_)
        return out

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Per-pixel WBC probability.

        Parameters
        ----------
        image : ndarray, shape (H, W, 3), uint8 RGB, any size

        Returns
        -------
        ndarray, shape (H, W), float32 in [0, 1]
        """
        self._check_fitted()
        check_image(image)
        bank = self.bank_
        factor = bank.downsample
        height, width = image.shape[:2]
        padded = pad_to_multiple(image, factor)
        # Tiles and context on the block grid, so every tile block-averages
        # exactly the pixels the whole image would; one extra block of context
        # feeds the bilinear upsampling at the tile edge.
        tile = max(factor, (int(self.tile) // factor) * factor)
        if max(padded.shape[:2]) <= tile:
            # One tile: mirrored context would reproduce the filters' own
            # mirrored boundary, so skip it (a large saving on small patches).
            return np.clip(self._predict_crops(padded[None])[0, :height, :width], 0.0, 1.0)
        context = bank.reach + factor
        # The classifier runs only on the tile and the one block of context
        # the upsampling reads; the rest of the context only feeds the filters.
        skip = bank.reach // factor
        if self.auto_context:
            # Stage 2 reads the stage-1 map this far away, and that map needs
            # the bank's reach around each of those pixels in turn.
            context += context_reach(tuple(self.context_sigmas), tuple(self.context_filters)) * factor
            skip = 0

        def predict_batch(crops: np.ndarray) -> np.ndarray:
            return self._predict_crops(crops, skip)

        prob = predict_tiled(padded, predict_batch, tile=tile, overlap=0, context=context, batch_size=1)
        return np.clip(prob[:height, :width], 0.0, 1.0)

    # ---------------------------------------------------------- persistence
    def _settings(self) -> dict:
        """JSON-able hyper-parameters other than the classifiers and ``n_jobs`` (a runtime choice)."""
        return {
            "bank": self.bank_.to_dict(),
            "n_samples": int(self.n_samples),
            "boundary_width": float(self.boundary_width),
            "boundary_weight": float(self.boundary_weight),
            "correct_prior": bool(self.correct_prior),
            "tile": int(self.tile),
            "random_state": int(self.random_state),
            "auto_context": bool(self.auto_context),
            "context_sigmas": [float(s) for s in self.context_sigmas],
            "context_filters": list(self.context_filters),
            "context_folds": int(self.context_folds),
            "threshold_folds": int(self.threshold_folds),
        }

    def save(self, path: Path) -> None:
        """Write ``path/model.skops`` (the fitted classifier) and ``path/params.json``.

        With auto-context the stage-2 classifier goes to
        ``path/context_model.skops``.

        Parameters
        ----------
        path : Path
            A directory; created if missing.
        """
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        dump(self.classifier_, path / MODEL_FILE)
        if self.auto_context:
            dump(self.context_classifier_, path / CONTEXT_MODEL_FILE)
        payload = {
            "segmenter": type(self).__name__,
            "params": self._settings(),
            "fit_info": getattr(self, "fit_info_", {}),
            "prior": self.prior_,
            "sample_prior": self.sample_prior_,
            "threshold": self.threshold_,
        }
        (path / PARAMS_FILE).write_text(json.dumps(payload, indent=2))

    @classmethod
    def load(cls, path: Path) -> PixelClassifierSegmenter:
        """Load a segmenter saved by :meth:`save`, trusting only :data:`~baselines.persistence.TRUSTED_TYPES`.

        Raises
        ------
        ValueError
            If the directory lacks the files, the model is not a skops file,
            or it contains a type outside the trusted list.
        """
        path = Path(path)
        model_file, params_file = path / MODEL_FILE, path / PARAMS_FILE
        for f in (model_file, params_file):
            if not f.is_file():
                raise ValueError(f"Cannot load a segmenter from {path}: {f.name} is missing; point at a directory written by save().")
        payload = json.loads(params_file.read_text())
        params = dict(payload["params"])
        classifier = load_trusted(model_file)
        context = None
        if params["auto_context"]:
            if not (path / CONTEXT_MODEL_FILE).is_file():
                raise ValueError(f"Cannot load a segmenter from {path}: {CONTEXT_MODEL_FILE} is missing; point at a directory written by save().")
            context = load_trusted(path / CONTEXT_MODEL_FILE)
        bank = FeatureBank.from_dict(params.pop("bank"))
        for key in ("context_sigmas", "context_filters"):
            if key in params:
                params[key] = tuple(params[key])
        seg = cls(clone(classifier), bank, context_classifier=None if context is None else clone(context), **params)
        seg.classifier_ = classifier
        if context is not None:
            seg.context_classifier_ = context
        seg.fit_info_ = payload["fit_info"]
        seg.prior_ = float(payload["prior"])
        seg.sample_prior_ = float(payload["sample_prior"])
        seg.threshold_ = float(payload["threshold"])
        return seg
