"""The fused Nystroem-SVM path gives scikit-learn's own probabilities, to the float32 kernel's rounding."""

import numpy as np
import pytest

from baselines.factories import svm_segmenter
from baselines.nystroem import fused_parts, nystroem_svm_proba


def _fitted_svm_classifier():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    y = (X[:, 0] ** 2 + X[:, 1] > 0.8).astype(int)  # not linearly separable: the kernel matters
    classifier = svm_segmenter(random_state=0).classifier
    return classifier.fit(X, y), rng


@pytest.mark.parametrize("rows", [7, 4_096 * 2 + 5])  # one block; several blocks on the thread pool
def test_fused_probabilities_equal_scikit_learn(rows):
    classifier, rng = _fitted_svm_classifier()
    X = rng.normal(size=(rows, 6)).astype(np.float32)
    expected = classifier.predict_proba(X)[:, 1]
    fused = nystroem_svm_proba(classifier, X, n_jobs=2)
    assert fused.dtype == np.float32 and fused.shape == (rows,)
    np.testing.assert_allclose(fused, expected, atol=2e-4)  # float32 kernel
    assert expected.min() < 0.2 and expected.max() > 0.8  # a classifier that decides something


def test_other_classifiers_are_not_fused():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(50, 3)), np.arange(50) % 2
    assert fused_parts(LogisticRegression().fit(X, y)) is None
    assert nystroem_svm_proba(LogisticRegression().fit(X, y), X) is None
