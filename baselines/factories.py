"""The registry's classical segmenters: three classifiers on the handcrafted features.

All three are :class:`~baselines.pixel.PixelClassifierSegmenter` instances and
share the feature bank's design and the pixel sampling; they differ in the
classifier:

``rf``
    a random forest with ilastik-style auto-context (a second forest that
    also sees the first one's map at several scales);
``svm``
    an RBF-kernel SVM, approximated (Nystroem features + linear SVM) so that
    it scales to ~10^5 training pixels;
``mlp``
    a feed-forward neural network on the same handcrafted features.

The measurements behind each setting, and the commands that reproduce them,
are in ``docs/experiments.md``.
"""

from __future__ import annotations

from baselines.features import FeatureBank
from baselines.pixel import PixelClassifierSegmenter

__all__ = ["rf_bank", "rf_segmenter", "svm_segmenter", "mlp_segmenter"]

# Settings chosen by grouped 5-fold cross-validation on the 164 patches
# (docs/experiments.md).
RF_TREES, RF_DEPTH, RF_SAMPLES = 32, None, 100_000
RF_BOUNDARY_WIDTH, RF_BOUNDARY_WEIGHT = 2.0, 6.0
# Stage 2 of the auto-context sees the stage-1 map smoothed up to sigma 16
# feature-grid px (32 px, about a WBC's radius), so pale cytoplasm beside a
# found nucleus reads as WBC whatever its colour.
RF_CONTEXT_SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0)
# Whole images up to 1536 px a side in one piece: on the 5 large images about
# 2x the speed of 512 px tiles, each of which re-computes 66 px of filter
# context on every side (the sigma-8 features make that context wide).  Peak
# memory about 0.35 GB of features for a 1536 px tile.
RF_TILE = 1536
SVM_GAMMA, SVM_COMPONENTS, SVM_C, SVM_SAMPLES = 0.02, 300, 1.0, 50_000
MLP_HIDDEN, MLP_MAX_ITER, MLP_SAMPLES = (32, 16), 40, 100_000
MLP_THRESHOLD_FOLDS = 2


def rf_bank() -> FeatureBank:
    """The ``rf`` feature bank: colour plus Gaussian, gradient and Laplacian at 4 scales.

    Gradient magnitude and Laplacian are finite differences of the Gaussian
    the bank computes anyway (``gradmag_fd`` / ``log_fd``), so sigma 8 (16
    full-resolution px, a WBC's radius scale) costs little.
    """
    return FeatureBank(filters=("gauss", "gradmag_fd", "log_fd"), sigmas=(1.0, 2.0, 4.0, 8.0))


def rf_segmenter(random_state: int = 0) -> PixelClassifierSegmenter:
    """The ``rf`` registry entry: two random forests on :func:`rf_bank`, the second with auto-context.

    32 fully grown trees per stage: more trees or extra trees bought no
    Dice.  Stage 2 adds the stage-1 probability at :data:`RF_CONTEXT_SIGMAS`
    (ilastik's auto-context), because it carries rf through the rapid-stain
    shifts: over the 5 grouped folds their mean Dice is 0.854 with it and
    0.789 without (lab-B-like 0.871 and 0.805), at a cost of 0.001 of cv Dice
    (``docs/experiments.md``, "Auto-context for rf under the shifts").
    Auto-context replaces the out-of-fold decision threshold.
    """
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(
        n_estimators=RF_TREES, max_depth=RF_DEPTH, min_samples_leaf=2,
        max_features="sqrt", random_state=random_state,
    )
    return PixelClassifierSegmenter(
        forest, rf_bank(), n_samples=RF_SAMPLES, boundary_width=RF_BOUNDARY_WIDTH,
        boundary_weight=RF_BOUNDARY_WEIGHT, random_state=random_state, auto_context=True,
        context_sigmas=RF_CONTEXT_SIGMAS, tile=RF_TILE,
    )


def svm_segmenter(random_state: int = 0) -> PixelClassifierSegmenter:
    """The ``svm`` registry entry: Nystroem RBF features + calibrated linear SVM.

    An exact RBF SVM is quadratic to cubic in the ~10^5 training pixels and
    predicts in time proportional to its support vectors; a Nystroem map
    (300 components) followed by a primal linear SVM scales linearly and
    predicts with one matrix product, and Platt scaling gives probabilities.
    """
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


def mlp_segmenter(random_state: int = 0) -> PixelClassifierSegmenter:
    """The ``mlp`` registry entry: a feed-forward neural network on handcrafted features.

    scikit-learn's :class:`~sklearn.neural_network.MLPClassifier` (two ReLU
    layers of 32 and 16 units, Adam, early stopping on a 10 % validation
    split, at most :data:`MLP_MAX_ITER` epochs) on standardised
    :func:`rf_bank` features, sampled like ``rf``, with the
    decision threshold learned out of fold (worth 0.004 of Dice on grouped
    fold 0).  The same bank as ``rf`` means a run computes each image's
    features once for both; small layers keep prediction a few matrix
    products per pixel block.

    Given the seed, the fit is the same bit for bit on one machine, whatever
    the thread count, but not across processors: the BLAS kernel the CPU
    selects changes the last bits of the network's matrix products, and
    Adam's many small steps grow them into a different network
    (``docs/reproducibility.md``).
    """
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    mlp = Pipeline([
        ("scale", StandardScaler()),
        ("mlp", MLPClassifier(
            hidden_layer_sizes=MLP_HIDDEN, batch_size=256, learning_rate_init=1e-3, alpha=1e-4,
            max_iter=MLP_MAX_ITER, early_stopping=True, validation_fraction=0.1, n_iter_no_change=5,
            random_state=random_state,
        )),
    ])
    return PixelClassifierSegmenter(
        mlp, rf_bank(), n_samples=MLP_SAMPLES, boundary_width=RF_BOUNDARY_WIDTH,
        boundary_weight=RF_BOUNDARY_WEIGHT, random_state=random_state, threshold_folds=MLP_THRESHOLD_FOLDS,
        tile=RF_TILE,
    )
