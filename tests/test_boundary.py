"""Boundary metrics (HD95, surface Dice) and the one Dice on shapes of known geometry."""

import time

import numpy as np
import pytest

from compare.evaluation.metrics import boundary, boundary_scores, dice, hd95, pixel_scores, surface_dice


def disk(radius: float, size: int = 96, centre=(48.0, 48.0)) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def test_concentric_disks_are_three_pixels_apart():
    inner, outer = disk(20), disk(23)
    assert hd95(inner, outer) == pytest.approx(3.0, abs=0.5)
    assert hd95(outer, inner) == pytest.approx(hd95(inner, outer))
    # 3 px apart: almost no boundary pixel is within 2 px, all are within 4 px.
    assert surface_dice(inner, outer, tolerance=2.0) < 0.2
    assert surface_dice(inner, outer, tolerance=4.0) > 0.98


def test_identical_masks_are_perfect():
    mask = disk(15)
    assert hd95(mask, mask) == 0.0
    assert surface_dice(mask, mask) == 1.0
    assert dice(mask, mask) == 1.0


def test_shift_moves_hd95_by_the_shift():
    a = disk(15)
    b = np.roll(a, 5, axis=1)
    assert hd95(a, b) == pytest.approx(5.0, abs=0.6)
    # A far stray speck leaves the 95th percentile of a large boundary alone.
    c = a.copy()
    c[2, 2] = True
    assert hd95(a, c) < 1.0
    assert surface_dice(a, c) > 0.99


def test_empty_mask_policy():
    empty, mask = np.zeros((32, 32), bool), disk(8, size=32, centre=(16, 16))
    assert np.isnan(hd95(empty, empty)) and np.isnan(surface_dice(empty, empty)) and np.isnan(dice(empty, empty))
    assert hd95(mask, empty) == np.inf and hd95(empty, mask) == np.inf
    assert surface_dice(mask, empty) == 0.0 and dice(mask, empty) == 0.0
    assert boundary_scores(mask, empty) == {"hd95": np.inf, "surface_dice": 0.0}
    assert all(np.isnan(v) for v in boundary_scores(empty, empty).values())


def test_boundary_scores_match_the_single_functions():
    a, b = disk(20), disk(22, centre=(50.0, 47.0))
    scores = boundary_scores(a, b)
    assert set(scores) == {"hd95", "surface_dice"}
    assert scores["hd95"] == hd95(a, b)
    assert scores["surface_dice"] == surface_dice(a, b)


def test_boundary_is_a_one_pixel_ring_and_counts_the_image_edge():
    square = np.zeros((10, 10), bool)
    square[2:8, 2:8] = True
    assert np.count_nonzero(boundary(square)) == 20
    full = np.ones((5, 5), bool)
    assert np.count_nonzero(boundary(full)) == 16


def test_dice_agrees_with_pixel_scores_and_rejects_shape_mismatch():
    a, b = disk(10), disk(12, centre=(45.0, 50.0))
    assert dice(a, b) == pixel_scores(a, b)["dice"]
    with pytest.raises(ValueError, match="shape"):
        hd95(a, b[:-1])


def test_fast_on_a_megapixel_image():
    true = np.zeros((1024, 1024), bool)
    pred = np.zeros_like(true)
    for cy, cx in ((200, 200), (700, 500), (400, 900)):
        yy, xx = np.ogrid[:1024, :1024]
        true |= (yy - cy) ** 2 + (xx - cx) ** 2 <= 30 ** 2
        pred |= (yy - cy - 2) ** 2 + (xx - cx) ** 2 <= 31 ** 2
    start = time.perf_counter()
    scores = boundary_scores(true, pred)
    assert time.perf_counter() - start < 2.0
    assert 1.0 <= scores["hd95"] <= 4.0


def test_surface_distances_equal_a_distance_transform_of_the_other_boundary():
    from scipy import ndimage as ndi

    from compare.evaluation.metrics import _surface_distances

    rng = np.random.default_rng(3)
    for _ in range(5):
        true = np.zeros((60, 80), bool)
        for cy, cx, r in zip(rng.integers(0, 60, 3), rng.integers(0, 80, 3), rng.integers(4, 15, 3)):
            true |= disk(r, size=80, centre=(cy, cx))[:60]
        pred = ndi.binary_dilation(true, iterations=int(rng.integers(0, 3))) ^ (rng.random(true.shape) < 0.02)
        to_pred, to_true = _surface_distances(true, pred)
        # The definition: a whole-image distance transform from each boundary.
        assert np.array_equal(to_pred, ndi.distance_transform_edt(~boundary(pred))[boundary(true)])
        assert np.array_equal(to_true, ndi.distance_transform_edt(~boundary(true))[boundary(pred)])
