"""Inputs shared by the benchmarks: a fixed small training subset and two image sizes.

Everything comes from the SigTuple data (found by
``compare.suite.data.resolve_data_dir``), so timings are on real stains, and is
chosen deterministically, so runs compare.
"""

from __future__ import annotations

import numpy as np
import pytest

#: Patches the fit benchmarks train on (the first ones in natural order).
N_FIT = 8


@pytest.fixture(scope="session")
def fit_subset():
    """``(images, masks)``: the first :data:`N_FIT` SigTuple 128 x 128 patches."""
    from compare.suite.data import load_patches

    samples = load_patches()[:N_FIT]
    return [s.image for s in samples], [s.mask for s in samples]


@pytest.fixture(scope="session")
def image_128(fit_subset):
    """One real 128 x 128 patch, (128, 128, 3) uint8."""
    return fit_subset[0][0]


@pytest.fixture(scope="session")
def image_1024():
    """A 1024 x 1024 RGB image made by mirroring the first large image (real texture, fixed size)."""
    from compare.suite.data import load_large

    image = load_large()[0].image
    reps = [int(np.ceil(1024 / n)) for n in image.shape[:2]]
    # Mirror rather than tile so there are no hard seams for filters to react to.
    padded = np.pad(image, ((0, reps[0] * image.shape[0]), (0, reps[1] * image.shape[1]), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(padded[:1024, :1024])


@pytest.fixture(scope="session", params=["128", "1024"])
def sized_image(request, image_128, image_1024):
    """``(label, image)`` for each benchmarked size."""
    return request.param, {"128": image_128, "1024": image_1024}[request.param]
