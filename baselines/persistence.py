"""Safe persistence of fitted scikit-learn classifiers with :mod:`skops.io`.

A saved classifier is loaded only if every type named in the file is in
:data:`TRUSTED_TYPES`, checked from the file's schema before anything is
constructed, so an untrusted model file cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["TRUSTED_TYPES", "MODEL_FILE", "CONTEXT_MODEL_FILE", "PARAMS_FILE", "dump", "load_trusted"]

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
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.preprocessing._label.LabelBinarizer",
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


def load_trusted(model_file: Path) -> Any:
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


def dump(estimator: Any, path: Path) -> None:
    """Write a fitted estimator to ``path`` with :func:`skops.io.dump`."""
    import skops.io as sio

    sio.dump(estimator, path)
