"""Fast probabilities from the ``svm`` classifier: Nystroem RBF map, linear SVM and Platt scaling fused.

The ``svm`` registry entry is ``CalibratedClassifierCV(Pipeline([StandardScaler,
Nystroem(rbf), LinearSVC]), method="sigmoid", ensemble=False)``.  Its
``predict_proba`` computes the kernel against the Nystroem components, then
multiplies by the ``n_components x n_components`` normalisation matrix and
only then by the SVM's weight vector: the square product is the most
expensive step (profiled: about 40 % of the classifier's time on a large
image), and it can be folded into the weights once, since
``(K @ N.T) @ w == K @ (N.T @ w)``.  :func:`nystroem_svm_proba` does that, and
computes the kernel in blocks on the shared thread pool
(:func:`tiling.runtime.parallel_map`).  The kernel is computed in float32,
whose ``exp`` and matrix products take about a third less time than
float64's on the large images; the probabilities then match
scikit-learn's to about 1e-4 (5e-5 at most on the 5 large images, where one
pixel of 3.7 million crossed 0.5).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from tiling.runtime import parallel_map, resolve_n_jobs

__all__ = ["FusedNystroemSVM", "fused_parts", "nystroem_svm_proba"]

#: Rows per block: a block's kernel (rows x components, float64) stays near 10 MB.
ROW_BLOCK = 4_096

_PARTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class FusedNystroemSVM:
    """The numbers of a calibrated Nystroem-SVM pipeline, folded for prediction.

    Attributes
    ----------
    mean, scale : ndarray, shape (n_features,), float64
        The StandardScaler's centre and scale.
    components : ndarray, shape (n_components, n_features), float64
        The Nystroem landmark points (in scaled feature space).
    gamma : float
        RBF kernel width: ``k(x, c) = exp(-gamma * |x - c|^2)``.
    weights : ndarray, shape (n_components,), float64
        ``normalization_.T @ coef``: the SVM's weights on the raw kernel values.
    intercept : float
        The SVM's intercept.
    slope, offset : float
        Platt scaling: ``P(WBC) = 1 / (1 + exp(slope * decision + offset))``.
    """

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    gamma: float
    weights: np.ndarray
    intercept: float
    slope: float
    offset: float

    def proba(self, X: np.ndarray, n_jobs: int | None = None) -> np.ndarray:
        """Foreground probability of each row, float32 of shape (n_rows,)."""
        components = self.components.astype(np.float32)
        squared_components = np.einsum("ij,ij->i", components, components)
        mean, scale = self.mean.astype(np.float32), self.scale.astype(np.float32)
        weights, gamma = self.weights.astype(np.float32), np.float32(self.gamma)

        def block(rows: slice) -> np.ndarray:
            z = (np.asarray(X[rows], np.float32) - mean) / scale
            squared = np.einsum("ij,ij->i", z, z)[:, None] + squared_components[None, :] - 2.0 * z @ components.T
            np.maximum(squared, 0.0, out=squared)  # rounding can make a distance slightly negative
            kernel = np.exp(-gamma * squared, out=squared)
            return (kernel @ weights).astype(np.float64) + self.intercept

        jobs = [slice(a, a + ROW_BLOCK) for a in range(0, len(X), ROW_BLOCK)]
        n_jobs = resolve_n_jobs(n_jobs) if len(jobs) > 1 else 1
        decision = np.concatenate(parallel_map(block, jobs, n_jobs)) if jobs else np.zeros(0)
        return expit(-(self.slope * decision + self.offset)).astype(np.float32)


def fused_parts(classifier: Any) -> FusedNystroemSVM | None:
    """The folded numbers of a fitted calibrated Nystroem-SVM, or None for any other classifier."""
    if classifier in _PARTS:
        return _PARTS[classifier]
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.kernel_approximation import Nystroem
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    calibrated = getattr(classifier, "calibrated_classifiers_", None)
    if (not isinstance(classifier, CalibratedClassifierCV) or classifier.method != "sigmoid"
            or calibrated is None or len(calibrated) != 1 or len(classifier.classes_) != 2
            or list(classifier.classes_) != [0, 1]):
        return None
    pipeline, calibrator = calibrated[0].estimator, calibrated[0].calibrators[0]
    steps = [step for _, step in pipeline.steps] if isinstance(pipeline, Pipeline) else []
    if (len(steps) != 3 or type(steps[0]) is not StandardScaler or type(steps[1]) is not Nystroem
            or type(steps[2]) is not LinearSVC or steps[1].kernel != "rbf" or steps[0].with_mean is False
            or steps[0].with_std is False):
        return None
    scaler, nystroem, svm = steps
    gamma = nystroem.gamma if nystroem.gamma is not None else 1.0 / nystroem.components_.shape[1]
    parts = FusedNystroemSVM(
        mean=np.asarray(scaler.mean_, np.float64), scale=np.asarray(scaler.scale_, np.float64),
        components=np.asarray(nystroem.components_, np.float64), gamma=float(gamma),
        weights=np.asarray(nystroem.normalization_, np.float64).T @ np.asarray(svm.coef_, np.float64).ravel(),
        intercept=float(np.ravel(svm.intercept_)[0]), slope=float(calibrator.a_), offset=float(calibrator.b_),
    )
    _PARTS[classifier] = parts
    return parts


def nystroem_svm_proba(classifier: Any, X: np.ndarray, n_jobs: int | None = None) -> np.ndarray | None:
    """Foreground probability from a calibrated Nystroem-SVM, or None if ``classifier`` is not one.

    Parameters
    ----------
    classifier : fitted scikit-learn classifier
    X : ndarray, shape (n_rows, n_features)
    n_jobs : int or None
        Threads, see :func:`tiling.runtime.resolve_n_jobs`.

    Returns
    -------
    ndarray, shape (n_rows,), float32, or None
    """
    parts = fused_parts(classifier)
    return None if parts is None else parts.proba(X, n_jobs)
