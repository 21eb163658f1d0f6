"""pytest-benchmark of every registered segmenter: ``fit`` and ``predict_proba``.

Stages (pytest-benchmark groups): ``fit`` on :data:`conftest.N_FIT` SigTuple
patches, ``predict`` on a 128 x 128 and a 1024 x 1024 image.  The U-Nets fit
with a tiny epoch budget (their per-epoch cost is what compares); the other
segmenters use their registry settings.  All but the threshold baseline are
marked slow, so the default test run skips them; run the whole suite with::

    python -m pytest tests/benchmarks --benchmark-enable --benchmark-only \\
        --benchmark-json results/benchmarks/pytest-benchmark.json -m "slow or not slow"

and ``python -m compare report results`` summarises the JSON in the report.
"""

from __future__ import annotations

import numpy as np
import pytest

from compare.pipeline.segmenters import REGISTRY, make_segmenter

#: Epochs for the U-Net fit benchmark: enough to time an epoch, not to train.
UNET_EPOCHS = 1

#: Segmenters cheap enough to benchmark in the default (not slow) test run.
FAST = {"threshold"}


def _make(name: str):
    """A fresh segmenter ``name``; U-Nets with a tiny training budget; skip if not importable."""
    try:
        if name.startswith("unet"):
            from unet.segmenter import UNetSegmenter

            profile = "paper" if name == "unet-paper" else "default"
            return UNetSegmenter(profile, random_state=0, verbose=0, epochs=UNET_EPOCHS)
        return make_segmenter(name, random_state=0)
    except ImportError as exc:
        pytest.skip(f"{name} cannot be imported yet ({exc}); its benchmarks are skipped.")


def _params():
    return [pytest.param(name, marks=() if name in FAST else pytest.mark.slow, id=name) for name in REGISTRY]


def _dice(pred: np.ndarray, true: np.ndarray) -> float:
    total = pred.sum() + true.sum()
    return 1.0 if total == 0 else float(2 * (pred & true).sum() / total)


def _check_probabilities(prob: np.ndarray, shape: tuple[int, ...]) -> None:
    assert prob.shape == shape[:2] and prob.dtype == np.float32
    assert np.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1


@pytest.fixture(scope="module")
def fitted(request, fit_subset):
    """``(name, segmenter)`` fitted once on the fit subset, for the predict benchmarks of that name."""
    return request.param, _make(request.param).fit(*fit_subset)


@pytest.mark.parametrize("name", _params())
def test_fit(benchmark, name, fit_subset):
    images, masks = fit_subset
    benchmark.group = "fit"
    case = f"fit {len(images)} patches" + (f", {UNET_EPOCHS} epoch(s)" if name.startswith("unet") else "")
    benchmark.extra_info.update(stage="fit", segmenter=name, case=case)
    _make(name)  # skip early, before timing, when the module is missing
    # Fits are seconds long: a few timed rounds, each on a fresh segmenter.
    segmenter = benchmark.pedantic(lambda: _make(name).fit(images, masks), rounds=2, iterations=1, warmup_rounds=0)
    prob = segmenter.predict_proba(images[0])
    _check_probabilities(prob, images[0].shape)
    if not name.startswith("unet"):
        # A one-epoch U-Net need not have learned anything yet; every other
        # segmenter must find the WBC of a patch it was trained on.
        assert _dice(prob >= 0.5, masks[0]) > 0.5


@pytest.mark.parametrize("fitted", _params(), indirect=True)
def test_predict(benchmark, fitted, sized_image, fit_subset):
    size, image = sized_image
    name, segmenter = fitted
    benchmark.group = "predict"
    benchmark.extra_info.update(stage="predict", segmenter=name, case=f"predict_proba {size} x {size}",
                                pixels=image.shape[0] * image.shape[1])
    prob = benchmark.pedantic(segmenter.predict_proba, args=(image,), rounds=2, iterations=1, warmup_rounds=1)
    _check_probabilities(prob, image.shape)
