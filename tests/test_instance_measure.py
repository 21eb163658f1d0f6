"""``separate_and_measure`` against truth drawn by hand: where the cells are and what they average."""

import numpy as np
import pytest

from compare.pipeline.instances import InstanceParams, separate_and_measure

SHAPE = (200, 260)
PARAMS = InstanceParams(threshold=0.5, min_area=300, split_area=2000, min_distance=12)


def _disk(cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r


def _first_pixel(mask: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    return int(rows[0]), int(np.flatnonzero(mask[rows[0]])[0])


def test_separate_disks_are_labelled_in_raster_order_with_their_own_mean():
    # (centre y, centre x, radius, probability); listed out of raster order on purpose.
    cells = [(150, 60, 20, 0.95), (40, 200, 18, 0.6), (45, 50, 20, 0.8), (150, 200, 19, 0.7)]
    prob = np.zeros(SHAPE, np.float32)
    truth = []
    for cy, cx, r, p in cells:
        disk = _disk(cy, cx, r)
        prob[disk] = p
        truth.append((disk, p))
    prob[_disk(100, 130, 6)] = 0.9  # 113 px: below min_area, not a WBC
    prob[_disk(100, 20, 15)] = 0.3  # below the threshold
    truth.sort(key=lambda t: _first_pixel(t[0]))

    labels, means = separate_and_measure(prob, PARAMS)

    assert int(labels.max()) == len(cells) and sorted(means) == [1, 2, 3, 4]
    for k, (disk, p) in enumerate(truth, start=1):
        np.testing.assert_array_equal(labels == k, disk)
        assert means[k] == pytest.approx(p, abs=1e-6)
    assert not labels[_disk(100, 130, 6)].any() and not labels[_disk(100, 20, 15)].any()


def test_two_touching_disks_come_apart_and_keep_their_pixels():
    left, right = _disk(100, 100, 24), _disk(100, 144, 24)  # overlap by 4 px
    prob = np.where(left | right, 0.9, 0.0).astype(np.float32)

    labels, means = separate_and_measure(prob, PARAMS)

    assert int(labels.max()) == 2
    np.testing.assert_array_equal(labels > 0, left | right)
    # Label 1 is the left disk (its first pixel comes first in raster order).
    for k, centre_x in ((1, 100), (2, 144)):
        ys, xs = np.nonzero(labels == k)
        assert abs(xs.mean() - centre_x) < 3 and abs(ys.mean() - 100) < 1
        assert means[k] == pytest.approx(0.9, abs=1e-6)
