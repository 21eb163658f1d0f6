"""A generic pixel-classifier segmenter and the ``rf`` / ``svm`` factories.

:class:`PixelClassifierSegmenter` wraps any scikit-learn classifier that has
``predict_proba``.  It

* computes a :class:`~baselines.features.FeatureBank` per image (cached, so
  folds and segmenters of one run share it) on a ``downsample``-times smaller
  grid;
* samples training pixels with a seeded, class-balanced draw in which pixels
  within ``boundary_width`` of the WBC boundary are ``boundary_weight`` times
  as likely to be drawn as the rest of their class (the boundary is where the
  classes are hard to tell apart; the interior of a red cell is easy);
* predicts tile by tile through :func:`tiling.predict_tiled`, reading each tile
  with the bank's full filter reach as context so that tiles see exactly the
  features the whole image would give them (tiled == untiled);
* saves with :mod:`skops.io` and loads only the types in
  :data:`TRUSTED_TYPES`, so an untrusted model file cannot run code.

Choices behind the two factories (measured with
``benchmarks/rf_vs_skimage.py`` on grouped 5-fold CV over the 164 patches, on
2 shared CPU cores; see ``results/benchmarks/rf_vs_skimage.md``):

``rf``
    An :class:`~sklearn.ensemble.ExtraTreesClassifier` (64 trees, depth <= 20,
    ``min_samples_leaf=2``) rather than a random forest: split thresholds are
    drawn, not searched, so it fits several times faster at equal accuracy.
    Features on a 2x-downsampled grid (masks are drawn on a 4 px grid).
    Prediction walks each tree's ``apply`` directly (:func:`_positive_proba`),
    which removes most of sklearn's per-tree overhead on a 128 px patch.
    Measured (grouped 5-fold, mean per-image Dice raw / cleaned): 0.921 /
    0.922; trained on the 156 patches not cropped from the 5 large images it
    counts all 11 WBCs there exactly (rechecked after the direct predict
    path: Dice 0.920, 11/11).  On 2 nearly idle cores (load 0.3): fit 4.3 s
    per fold, predict 0.48 Mpx/s on 128 px patches and 0.76 Mpx/s on the
    large images, features included.  It falls short of the targets (Dice
    >= 0.94, >= 1 Mpx/s).

    Auto-context (``auto_context=True``), measured on grouped folds 0-1
    (2 shared cores): extra trees 32/16 in both stages 0.927 (single-stage
    64/20 on the same folds 0.923); 64/20 both 0.930; adding local max/min
    of the stage-1 map to the context: no gain; stage 1 ET 16/12 + stage 2
    HistGradientBoosting(100) 0.936; HistGradientBoosting(100) in both
    stages with ``gradmag_fd`` / ``log_fd`` features 0.9395 / 0.940 on folds
    0-1 and 0.935 / 0.936 over all 5 folds.  Not adopted as ``rf``: on the 5
    large images it dropped to Dice 0.844 and exact counts on 4 of 5 images
    (0.80), and HistGradientBoosting's OpenMP fit ran 200-450 s per fold when
    the 2 cores were shared (7 s on an idle machine).

``svm``
    An RBF-kernel SVM cannot be fitted exactly on ~10^5 pixels in reasonable
    time (SVC is quadratic to cubic in samples) and its prediction cost grows
    with the number of support vectors.  We approximate the RBF kernel with
    :class:`~sklearn.kernel_approximation.Nystroem` features (300
    components, landmarks drawn from 50,000 standardised training pixels),
    train a linear SVM (:class:`~sklearn.svm.LinearSVC`, primal) on them,
    which scales linearly in samples, and calibrate its decision values into
    probabilities with Platt's sigmoid via
    :class:`~sklearn.calibration.CalibratedClassifierCV` (3-fold, one final
    model so prediction runs one pipeline).  Prediction is a matrix product
    per pixel block, independent of the training-set size.  Measured (grouped
    5-fold): Dice 0.927 raw / 0.930 cleaned, fit 26 s per fold, 0.17 Mpx/s
    on a heavily shared 2-core machine.

Tried and dropped: shifting the predicted odds back to the true foreground
prior after balanced sampling (``correct_prior=True``) lowers Dice by about
0.007 (the masks are drawn generously, so the balanced prior's bias towards
WBC helps); Gaussian-only features on RGB/HED (0.903); adding sigma 8
(+0.002 Dice for twice the feature time).
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from sklearn.base import clone

from baselines.features import (
    FeatureBank,
    cached_features,
    context_features,
    context_reach,
    downsample_mean,
    upsample,
)
from tiling import predict_tiled

__all__ = [
    "PixelClassifierSegmenter",
    "TRUSTED_TYPES",
    "sample_pixels",
    "rf_segmenter",
    "svm_segmenter",
]

#: The only types a saved model may contain; anything else is refused on load.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.kernel_approximation.Nystroem",
    "sklearn.svm._classes.LinearSVC",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.utils._bunch.Bunch",
    "collections.OrderedDict",
    "builtins.slice",
    "numpy.dtype",
    "numpy.ndarray",
    "numpy.float64",
    "numpy.int64",
    "numpy.random.mtrand.RandomState",
    "numpy.random._mt19937.MT19937",
    "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__bit_generator_ctor",
)

MODEL_FILE = "model.skops"
CONTEXT_MODEL_FILE = "context_model.skops"
PARAMS_FILE = "params.json"


def _validate_pair(image: Any, mask: Any, index: int) -> None:
    """Raise a one-sentence ValueError if a training image/mask pair is unusable."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"shape {getattr(image, 'shape', None)} dtype {getattr(image, 'dtype', type(image).__name__)}"
        raise ValueError(f"Training image {index} must be an (H, W, 3) uint8 RGB array, got {desc}.")
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype != bool:
        desc = f"shape {getattr(mask, 'shape', None)} dtype {getattr(mask, 'dtype', type(mask).__name__)}"
        raise ValueError(f"Training mask {index} must be an (H, W) bool array, got {desc}.")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"Training mask {index} has shape {mask.shape} but its image is {image.shape[:2]}; they must match.")


def _validate_image(image: Any) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"shape {getattr(image, 'shape', None)} dtype {getattr(image, 'dtype', type(image).__name__)}"
        raise ValueError(f"Image must be an (H, W, 3) uint8 RGB array, got {desc}.")


def _pad_to_multiple(array: np.ndarray, factor: int) -> np.ndarray:
    """Mirror-pad the bottom and right edges so H and W are multiples of ``factor``."""
    h, w = array.shape[:2]
    ph, pw = (-h) % factor, (-w) % factor
    if ph == 0 and pw == 0:
        return array
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, mode="symmetric")


def _coarse_labels(mask: np.ndarray, factor: int) -> np.ndarray:
    """Majority label of each ``factor`` x ``factor`` block, shape (H/f, W/f), bool."""
    return downsample_mean(_pad_to_multiple(mask, factor), factor) >= 0.5


def _boundary_band(labels: np.ndarray, width: float) -> np.ndarray:
    """Pixels within ``width`` (coarse px) of the foreground/background boundary."""
    if labels.all() or not labels.any():
        return np.zeros_like(labels)
    inside = ndi.distance_transform_edt(labels)
    outside = ndi.distance_transform_edt(~labels)
    return np.where(labels, inside, outside) <= width


def sample_pixels(
    labels: Sequence[np.ndarray],
    n_samples: int,
    *,
    boundary_width: float,
    boundary_weight: float,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Seeded, class-balanced pixel sampling that favours the boundary.

    Parameters
    ----------
    labels : sequence of ndarray, each (h, w) bool
        Per-image labels on the feature grid.
    n_samples : int
        Total pixels to draw, half per class (fewer if a class has fewer
        pixels; all pixels if there are fewer than ``n_samples``).
    boundary_width : float
        Band half-width in grid pixels.
    boundary_weight : float
        Relative sampling weight of band pixels (1 = uniform within a class).
    rng : numpy.random.Generator

    Returns
    -------
    list of ndarray, int64
        For each image, the flat indices of its drawn pixels, sorted.
    """
    flat = np.concatenate([lab.ravel() for lab in labels])
    weights = np.concatenate(
        [np.where(_boundary_band(lab, boundary_width), boundary_weight, 1.0).ravel() for lab in labels]
    )
    chosen = []
    for cls in (False, True):
        idx = np.flatnonzero(flat == cls)
        take = min(len(idx), n_samples // 2)
        if take == 0:
            continue
        p = weights[idx] / weights[idx].sum()
        chosen.append(rng.choice(idx, size=take, replace=False, p=p))
    picked = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
    offsets = np.cumsum([0] + [lab.size for lab in labels])
    return [picked[(picked >= a) & (picked < b)] - a for a, b in zip(offsets[:-1], offsets[1:])]


def _to_prior(prob: np.ndarray, sampled: float, true: float) -> np.ndarray:
    """Bayes prior shift: rescale the odds from the sampled to the true class prior.

    ``p' / (1 - p') = p / (1 - p) * [true / (1 - true)] / [sampled / (1 - sampled)]``.
    """
    ratio = (true / (1.0 - true)) / (sampled / (1.0 - sampled))
    prob = prob.astype(np.float32, copy=False)
    return prob * ratio / (prob * ratio + (1.0 - prob))


# Builtin containers and scalars skops stores natively; they construct no objects of concern.
_SKOPS_PRIMITIVES = {
    f"builtins.{n}" for n in ("dict", "list", "tuple", "str", "int", "float", "bool", "NoneType", "bytes", "complex", "set")
}


def _types_in_skops(path: Path) -> set[str]:
    """Every ``module.class`` named in a skops file's schema (read without loading)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        schema = json.loads(archive.read("schema.json"))
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "__module__" in node and "__class__" in node:
                found.add(f"{node['__module__']}.{node['__class__']}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


def _seed_classifier(classifier: Any, random_state: int) -> Any:
    """A clone of ``classifier`` with every nested ``random_state`` set."""
    est = clone(classifier)
    seeds = {k: random_state for k in est.get_params(deep=True) if k == "random_state" or k.endswith("__random_state")}
    if seeds:
        est.set_params(**seeds)
    return est


def _load_trusted(model_file: Path) -> Any:
    """Load a skops file after checking that every type in it is in :data:`TRUSTED_TYPES`."""
    import zipfile

    import skops.io as sio

    try:
        present = _types_in_skops(model_file)
        untrusted = sio.get_untrusted_types(file=model_file)
    except (zipfile.BadZipFile, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{model_file} is not a skops model file ({exc}); refusing to load it.") from None
    # Check every type in the file, not only those skops itself distrusts:
    # the list of what this segmenter may contain is ours to state.
    refused = sorted((present | set(untrusted)) - set(TRUSTED_TYPES) - _SKOPS_PRIMITIVES)
    if refused:
        raise ValueError(f"{model_file} contains types outside the trusted list: {refused}; refusing to load it.")
    return sio.load(model_file, trusted=list(untrusted))


#: Below this many rows a forest predicts on one thread (see :func:`_positive_proba`).
PARALLEL_MIN_ROWS = 20_000

# Per fitted forest: [(tree, foreground probability of each node)], built once.
_LEAF_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _leaf_tables(forest: Any) -> list[tuple[Any, np.ndarray]] | None:
    """Each tree's node -> foreground-probability table, or None if ``forest`` is not a plain forest."""
    tables = _LEAF_TABLES.get(forest)
    if tables is not None:
        return tables
    trees = getattr(forest, "estimators_", None)
    if (
        not isinstance(trees, list)
        or getattr(forest, "n_outputs_", 1) != 1
        or not all(hasattr(t, "tree_") for t in trees)
        or 1 not in list(forest.classes_)
    ):
        return None
    fg = list(forest.classes_).index(1)
    tables = []
    for t in trees:
        value = t.tree_.value[:, 0, :].astype(np.float64)
        total = value.sum(axis=1)
        # sklearn's tree predict_proba: class weight over the node's total.
        tables.append((t.tree_, np.where(total > 0, value[:, fg] / np.where(total > 0, total, 1.0), 0.0)))
    _LEAF_TABLES[forest] = tables
    return tables


def _positive_proba(classifier: Any, X: np.ndarray) -> np.ndarray:
    """Foreground probability column of ``classifier.predict_proba(X)``, float32.

    For a fitted forest (random / extra trees) the same mean of per-tree leaf
    probabilities is computed directly from each tree's ``apply``: on a
    64 x 64 feature grid (one 128 px patch) sklearn's per-tree Python
    overhead (input validation, joblib dispatch, float64 probability arrays)
    costs more than walking the trees (profiled: about 70 % of predict time
    for 32 trees of depth 16).  Batches of at least :data:`PARALLEL_MIN_ROWS`
    rows split the trees over ``n_jobs`` threads (``apply`` releases the
    GIL); smaller ones run on one thread, where dispatch would cost more than
    it saves.  Gradient boosting predicts small batches on one OpenMP
    thread; other classifiers go through their own ``predict_proba``.
    """
    tables = _leaf_tables(classifier)
    if tables is None:
        fg = list(classifier.classes_).index(1)
        if len(X) < PARALLEL_MIN_ROWS and hasattr(classifier, "_raw_predict") and hasattr(classifier, "_loss"):
            # Gradient boosting: predict_proba's own path with one OpenMP
            # thread.  On a patch, waking an OpenMP team per boosting
            # iteration dominates, and on a shared machine it is far worse
            # (measured 100 iterations: 59 ms per patch on one thread, 640 ms
            # on two, at load 5 on 2 cores).
            proba = classifier._loss.predict_proba(classifier._raw_predict(X, n_threads=1))
            return proba[:, fg].astype(np.float32, copy=False)
        return classifier.predict_proba(X)[:, fg].astype(np.float32, copy=False)
    X = np.ascontiguousarray(X, dtype=np.float32)

    def accumulate(chunk: list[tuple[Any, np.ndarray]]) -> np.ndarray:
        acc = np.zeros(len(X), np.float64)
        for tree, leaf in chunk:
            acc += leaf[tree.apply(X)]
        return acc

    n_jobs = getattr(classifier, "n_jobs", None) or 1
    n_jobs = (os.cpu_count() or 1) if n_jobs < 0 else n_jobs
    n_jobs = min(n_jobs, len(tables)) if len(X) >= PARALLEL_MIN_ROWS else 1
    if n_jobs == 1:
        total = accumulate(tables)
    else:
        with ThreadPoolExecutor(n_jobs) as pool:
            total = sum(pool.map(accumulate, [tables[i::n_jobs] for i in range(n_jobs)]))
    return (total / len(tables)).astype(np.float32)


class PixelClassifierSegmenter:
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
        Seeds the pixel sampling and the classifier.
    auto_context : bool
        Two-stage ilastik-style auto-context (see Notes).
    context_sigmas : tuple of float
        Scales, in feature-grid pixels, at which the stage-1 probability is
        given to stage 2.
    context_filters : tuple of str
        Filters applied to the stage-1 probability at each scale
        (see :func:`~baselines.features.context_features`).
    context_classifier : scikit-learn classifier, optional
        Stage-2 classifier; ``None`` uses a clone of ``classifier``.
    context_folds : int
        Training images are split into this many seeded parts; stage-1
        probabilities of each part come from a stage-1 model fitted on the
        other parts.

    Attributes
    ----------
    classifier_ : fitted classifier
        The stage-1 classifier (the only one without auto-context).
    context_classifier_ : fitted classifier
        Stage 2; only with ``auto_context=True``.

    Notes
    -----
    Auto-context (Tu & Bai 2010; ilastik's "autocontext" workflow).  Stage 1
    is the plain classifier on the bank's features.  Stage 2 sees the same
    features plus :func:`~baselines.features.context_features` of the stage-1
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
    fit_info_ : dict
        JSON-able facts about the fit (pixels sampled, features, seconds).
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
        auto_context: bool = False,
        context_sigmas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0),
        context_filters: tuple[str, ...] = ("gauss",),
        context_classifier: Any = None,
        context_folds: int = 2,
    ) -> None:
        self.classifier = classifier
        self.bank = bank
        self.n_samples = n_samples
        self.boundary_width = boundary_width
        self.boundary_weight = boundary_weight
        self.correct_prior = correct_prior
        self.tile = tile
        self.random_state = random_state
        self.auto_context = auto_context
        self.context_sigmas = tuple(context_sigmas)
        self.context_filters = tuple(context_filters)
        self.context_classifier = context_classifier
        self.context_folds = context_folds

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
        import time

        if len(images) != len(masks):
            raise ValueError(f"Got {len(images)} images but {len(masks)} masks; pass one mask per image.")
        if len(images) == 0:
            raise ValueError("Got no training images; pass at least one image and its mask.")
        for i, (image, mask) in enumerate(zip(images, masks)):
            _validate_pair(image, mask, i)
        if not hasattr(self.classifier, "predict_proba"):
            raise ValueError(f"Classifier {type(self.classifier).__name__} has no predict_proba; pass a probabilistic classifier.")
        if self.n_samples < 2:
            raise ValueError(f"n_samples must be at least 2, got {self.n_samples}.")
        if self.auto_context and not 2 <= self.context_folds <= len(images):
            raise ValueError(
                f"context_folds must be between 2 and the {len(images)} training images, got {self.context_folds}."
            )

        start = time.perf_counter()
        bank = self.bank_
        factor = bank.downsample
        feats = [cached_features(bank, _pad_to_multiple(img, factor)) for img in images]
        labels = [_coarse_labels(m, factor) for m in masks]
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

        self.classifier_ = _seed_classifier(self.classifier, self.random_state).fit(X, y)
        stage1_s = time.perf_counter() - start
        if self.auto_context:
            self._fit_context(feats, picks, X, y, rng)
        # Balanced sampling teaches the classifier a 50/50 prior; remember the
        # true one so predict_proba can shift the odds back (see _to_prior).
        self.prior_ = float(np.mean([lab.mean() for lab in labels]))
        self.sample_prior_ = float(y.mean())
        self.fit_info_ = {
            "n_images": len(images),
            "n_pixels_sampled": int(len(y)),
            "n_foreground_sampled": int(y.sum()),
            "n_features": bank.n_features,
            "feature_s": round(feature_s, 3),
            "stage1_s": round(stage1_s, 3),
            "fit_s": round(time.perf_counter() - start, 3),
        }
        return self

    def _fit_context(
        self, feats: list[np.ndarray], picks: list[np.ndarray], X: np.ndarray, y: np.ndarray, rng: np.random.Generator
    ) -> None:
        """Fit stage 2 on out-of-fold stage-1 maps (see the class Notes)."""
        n_img = len(feats)
        part = np.empty(n_img, np.int64)
        part[rng.permutation(n_img)] = np.arange(n_img) % self.context_folds
        # Row r of X came from image row_img[r]; picks are per image, in order.
        row_img = np.repeat(np.arange(n_img), [len(p) for p in picks])
        maps: list[np.ndarray | None] = [None] * n_img
        for k in range(self.context_folds):
            train_rows = part[row_img] != k
            if np.unique(y[train_rows]).size < 2:
                # A part whose complement holds one class cannot train stage 1;
                # fall back to the in-sample model for its maps.
                model = self.classifier_
            else:
                model = _seed_classifier(self.classifier, self.random_state + 1 + k).fit(X[train_rows], y[train_rows])
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
                context_features(m, self.context_sigmas, self.context_filters).reshape(-1, self._n_context)[p]
                for m, p in zip(maps, picks)
            ]
        )
        stage2 = self.context_classifier if self.context_classifier is not None else self.classifier
        self.context_classifier_ = _seed_classifier(stage2, self.random_state).fit(np.hstack([X, ctx]), y)

    @property
    def _n_context(self) -> int:
        return 1 + len(self.context_filters) * len(self.context_sigmas)

    # -------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "classifier_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first.")

    def _predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of padded tiles, (N, h, w, 3) -> (N, h, w)."""
        bank = self.bank_
        out = np.empty(crops.shape[:3], np.float32)
        for i, crop in enumerate(crops):
            feats = bank.compute(crop)
            flat = feats.reshape(-1, feats.shape[-1])
            prob = _positive_proba(self.classifier_, flat)
            if self.auto_context:
                ctx = context_features(prob.reshape(feats.shape[:2]), self.context_sigmas, self.context_filters)
                prob = _positive_proba(self.context_classifier_, np.hstack([flat, ctx.reshape(-1, ctx.shape[-1])]))
            if self.correct_prior:
                prob = _to_prior(prob, self.sample_prior_, self.prior_)
            out[i] = upsample(prob.reshape(feats.shape[:2]), bank.downsample)
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
        _validate_image(image)
        bank = self.bank_
        factor = bank.downsample
        height, width = image.shape[:2]
        padded = _pad_to_multiple(image, factor)
        # Tiles and context on the block grid, so every tile block-averages
        # exactly the pixels the whole image would; one extra block of context
        # feeds the bilinear upsampling at the tile edge.
        tile = max(factor, (int(self.tile) // factor) * factor)
        if max(padded.shape[:2]) <= tile:
            # One tile: mirrored context would reproduce the filters' own
            # mirrored boundary, so skip it (a large saving on small patches).
            return np.clip(self._predict_crops(padded[None])[0, :height, :width], 0.0, 1.0)
        context = bank.reach + factor
        if self.auto_context:
            # Stage 2 reads the stage-1 map this far away, and that map needs
            # the bank's reach around each of those pixels in turn.
            context += context_reach(self.context_sigmas, self.context_filters) * factor
        prob = predict_tiled(padded, self._predict_crops, tile=tile, overlap=0, context=context, batch_size=1)
        return np.clip(prob[:height, :width], 0.0, 1.0)

    # ---------------------------------------------------------- persistence
    def get_params(self) -> dict:
        """JSON-able hyper-parameters other than the classifier."""
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
        import skops.io as sio

        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        sio.dump(self.classifier_, path / MODEL_FILE)
        if self.auto_context:
            sio.dump(self.context_classifier_, path / CONTEXT_MODEL_FILE)
        payload = {
            "segmenter": type(self).__name__,
            "params": self.get_params(),
            "fit_info": getattr(self, "fit_info_", {}),
            "prior": self.prior_,
            "sample_prior": self.sample_prior_,
        }
        (path / PARAMS_FILE).write_text(json.dumps(payload, indent=2))

    @classmethod
    def load(cls, path: Path) -> PixelClassifierSegmenter:
        """Load a segmenter saved by :meth:`save`, trusting only :data:`TRUSTED_TYPES`.

        Raises
        ------
        ValueError
            If the directory lacks the files, the model is not a skops file,
            or it contains a type outside :data:`TRUSTED_TYPES`.
        """
        path = Path(path)
        model_file, params_file = path / MODEL_FILE, path / PARAMS_FILE
        for f in (model_file, params_file):
            if not f.is_file():
                raise ValueError(f"Cannot load a segmenter from {path}: {f.name} is missing; point at a directory written by save().")
        payload = json.loads(params_file.read_text())
        params = dict(payload["params"])
        classifier = _load_trusted(model_file)
        context = None
        if params.get("auto_context", False):
            if not (path / CONTEXT_MODEL_FILE).is_file():
                raise ValueError(f"Cannot load a segmenter from {path}: {CONTEXT_MODEL_FILE} is missing; point at a directory written by save().")
            context = _load_trusted(path / CONTEXT_MODEL_FILE)
        bank = FeatureBank.from_dict(params.pop("bank"))
        for key in ("context_sigmas", "context_filters"):
            if key in params:
                params[key] = tuple(params[key])
        seg = cls(clone(classifier), bank, context_classifier=None if context is None else clone(context), **params)
        seg.classifier_ = classifier
        if context is not None:
            seg.context_classifier_ = context
        seg.fit_info_ = payload.get("fit_info", {})
        seg.prior_ = float(payload["prior"])
        seg.sample_prior_ = float(payload["sample_prior"])
        return seg


# ------------------------------------------------------------------ factories
# Chosen by grouped 5-fold CV on the 164 patches (see the module docstring).
RF_TREES, RF_DEPTH, RF_SAMPLES = 64, 20, 100_000
RF_BOUNDARY_WIDTH, RF_BOUNDARY_WEIGHT = 2.0, 6.0
SVM_GAMMA, SVM_COMPONENTS, SVM_C, SVM_SAMPLES = 0.02, 300, 1.0, 50_000


def rf_segmenter(random_state: int = 0) -> PixelClassifierSegmenter:
    """The ``rf`` registry entry: extra trees on the default feature bank.

    Auto-context with boosted stages scored higher on patches but miscounted
    the large images (see the module docstring), so it stays an option.
    """
    from sklearn.ensemble import ExtraTreesClassifier

    forest = ExtraTreesClassifier(
        n_estimators=RF_TREES, max_depth=RF_DEPTH, min_samples_leaf=2,
        max_features="sqrt", n_jobs=2, random_state=random_state,
    )
    return PixelClassifierSegmenter(
        forest, FeatureBank(), n_samples=RF_SAMPLES, boundary_width=RF_BOUNDARY_WIDTH,
        boundary_weight=RF_BOUNDARY_WEIGHT, random_state=random_state,
    )


def svm_segmenter(random_state: int = 0) -> PixelClassifierSegmenter:
    """The ``svm`` registry entry: Nystroem RBF features + calibrated linear SVM."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.kernel_approximation import Nystroem
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    svm = Pipeline([
        ("scale", StandardScaler()),
        ("rbf", Nystroem(kernel="rbf", gamma=SVM_GAMMA, n_components=SVM_COMPONENTS, random_state=random_state)),
        ("svm", LinearSVC(C=SVM_C, dual=False, random_state=random_state)),
    ])
    # ensemble=False: one SVM refit on all samples, calibrated on 3-fold
    # out-of-fold decisions, so prediction runs one pipeline, not three.
    model = CalibratedClassifierCV(svm, method="sigmoid", cv=3, ensemble=False)
    return PixelClassifierSegmenter(model, FeatureBank(), n_samples=SVM_SAMPLES, random_state=random_state)

