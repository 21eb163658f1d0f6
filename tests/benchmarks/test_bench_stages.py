"""pytest-benchmark of the shared stages: feature extraction and instance separation.

Groups ``features`` (the pixel classifiers' feature bank) and ``instances``
(probability map -> labelled WBCs), each on a 128 x 128 and a 1024 x 1024
input.  Both are quick, so they also run once in the default test run as a
smoke test (pyproject passes ``--benchmark-disable`` there).
"""

from __future__ import annotations

import numpy as np
import pytest


def _probability(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A float32 map with WBC-sized disks, some touching, so separation has work to do."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    prob = np.zeros(shape, np.float32)
    radius = 28
    for _ in range(max(1, shape[0] * shape[1] // 40_000)):
        cy, cx = rng.uniform(radius, shape[0] - radius), rng.uniform(radius, shape[1] - radius)
        for dx in (0, 1.7 * radius):  # a touching pair
            prob[(yy - cy) ** 2 + (xx - cx - dx) ** 2 <= radius ** 2] = 0.95
    return np.clip(prob + rng.normal(0, 0.05, shape).astype(np.float32), 0, 1)


def _svm_bank():
    from baselines.features import FeatureBank

    return FeatureBank()


def _rf_bank():
    from baselines.factories import rf_bank

    return rf_bank()


@pytest.mark.parametrize("segmenter, make_bank", [("svm", _svm_bank), ("rf", _rf_bank)])
def test_features(benchmark, sized_image, segmenter, make_bank):
    """Feature extraction alone, for the bank each classical segmenter uses."""
    size, image = sized_image
    bank = make_bank()
    benchmark.group = "features"
    benchmark.extra_info.update(stage="features", segmenter=segmenter,
                                case=f"{segmenter} bank .compute {size} x {size}", pixels=image.shape[0] * image.shape[1])
    features = benchmark(bank.compute, image)
    assert features.shape[-1] == bank.n_features


@pytest.mark.parametrize("size", [128, 1024])
def test_instances(benchmark, size):
    from compare.pipeline.instances import InstanceParams, separate_instances

    prob = _probability((size, size))
    benchmark.group = "instances"
    benchmark.extra_info.update(stage="instances", segmenter="all", case=f"separate_instances {size} x {size}",
                                pixels=size * size)
    labels = benchmark(separate_instances, prob, InstanceParams())
    assert labels.shape == prob.shape and labels.max() >= 1
