"""``benchmarks/predict_throughput.py``: its stage profile rebuilds what ``WBCModel.predict`` does."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "predict_throughput.py"


def _script():
    spec = importlib.util.spec_from_file_location("predict_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_finds_the_same_cells_as_predict(fit_subset):
    from compare.pipeline.model import WBCModel
    from compare.suite.data import load_large

    module = _script()
    model = WBCModel("threshold").fit(*fit_subset)
    image = load_large()[2].image  # the smallest large image, 366 x 344
    seconds, method, labels = module.profile_after(model, image)
    expected = model.predict(image)
    assert method == expected.scale.method
    np.testing.assert_array_equal(labels, expected.labels)
    assert set(seconds) == set(module.STAGES)
    assert seconds["segmenter"] > 0 and seconds["scale estimate"] > 0
