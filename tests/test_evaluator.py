"""The evaluator's known answers and properties (metrics, instances, matching)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from compare.evaluation.matching import match_instances
from compare.evaluation.metrics import pixel_scores
from compare.pipeline.instances import InstanceParams, clean_mask, label_truth, separate_instances, tune_instance_params
from tests.synthetic import disk

PARAMS = InstanceParams(min_area=100, split_area=1000, min_distance=8)


def test_identical_disjoint_and_empty_masks():
    a = np.zeros((10, 10), bool)
    a[:5] = True
    assert pixel_scores(a, a) == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}
    scores = pixel_scores(a, ~a)
    assert scores["dice"] == 0.0 and scores["iou"] == 0.0
    empty = np.zeros((10, 10), bool)
    assert all(math.isnan(v) for v in pixel_scores(empty, empty).values())
    assert math.isnan(pixel_scores(a, empty)["precision"]) and pixel_scores(a, empty)["recall"] == 0.0


def test_shifted_square_iou_by_hand():
    true = np.zeros((40, 40), bool)
    true[10:30, 10:30] = True           # 20 x 20 = 400 px
    pred = np.roll(true, 5, axis=1)     # overlap 20 x 15 = 300 px
    scores = pixel_scores(true, pred)
    assert scores["iou"] == pytest.approx(300 / 500)
    assert scores["dice"] == pytest.approx(600 / 800)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="must match"):
        pixel_scores(np.zeros((3, 3)), np.zeros((3, 4)))


def test_two_touching_disks_are_two_instances():
    shape = (60, 100)
    two = disk(shape, (30, 32), 15) | disk(shape, (30, 58), 15)
    assert label_truth(two).max() == 1  # one connected component...
    labels = separate_instances(two.astype(np.float32), PARAMS)
    assert labels.max() == 2            # ...but two WBCs
    sizes = np.bincount(labels.ravel())[1:]
    assert abs(int(sizes[0]) - int(sizes[1])) < 0.1 * sizes.sum()


def test_one_disk_stays_whole_and_small_objects_go():
    shape = (60, 60)
    one = disk(shape, (30, 30), 20).astype(np.float32)
    one[2:6, 2:6] = 1.0  # a platelet-sized speck
    labels = separate_instances(one, PARAMS)
    assert labels.max() == 1 and labels[4, 4] == 0


def test_hole_filling():
    ring = disk((40, 40), (20, 20), 15) & ~disk((40, 40), (20, 20), 5)
    assert clean_mask(ring.astype(float), PARAMS)[20, 20]


def test_tuning_reads_the_training_masks():
    masks = [disk((80, 80), (40, 40), r) for r in (14, 15, 16, 17)]
    params = tune_instance_params(masks)
    areas = [m.sum() for m in masks]
    assert params.min_area < min(areas) < max(areas) < params.split_area
    assert 5 <= params.min_distance <= 12
    with pytest.raises(ValueError, match="No whole WBC"):
        tune_instance_params([np.zeros((5, 5), bool)])


def test_matching_counts():
    shape = (60, 120)
    true = np.zeros(shape, np.int32)
    true[disk(shape, (30, 30), 12)] = 1
    true[disk(shape, (30, 90), 12)] = 2
    pred = np.zeros(shape, np.int32)
    pred[disk(shape, (30, 31), 12)] = 7      # matches 1
    pred[disk(shape, (10, 60), 5)] = 3       # spurious
    m = match_instances(true, pred)
    assert (m.tp, m.fp, m.fn, m.true_count, m.pred_count) == (1, 1, 1, 2, 2)
    assert m.f1 == pytest.approx(0.5) and m.count_error == 0
    assert 0 < m.panoptic_quality < 0.5
    empty = match_instances(np.zeros(shape, int), np.zeros(shape, int))
    assert math.isnan(empty.f1) and empty.tp == 0


masks = arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12)))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_pixel_scores_bounds_and_symmetry(data):
    a = data.draw(masks)
    b = data.draw(arrays(bool, a.shape))
    s, t = pixel_scores(a, b), pixel_scores(b, a)
    for v in s.values():
        assert math.isnan(v) or 0.0 <= v <= 1.0
    assert (math.isnan(s["dice"]) and math.isnan(t["dice"])) or s["dice"] == pytest.approx(t["dice"])
    assert (math.isnan(s["precision"]) and math.isnan(t["recall"])) or s["precision"] == pytest.approx(t["recall"])
    if a.any():
        assert pixel_scores(a, a)["dice"] == 1.0


label_images = arrays(np.int32, st.tuples(st.integers(2, 10), st.integers(2, 10)), elements=st.integers(0, 4))


@settings(max_examples=60, deadline=None)
@given(label_images, label_images, st.permutations([1, 2, 3, 4]))
def test_matching_properties(true, pred, perm):
    pred = np.resize(pred, true.shape)
    m = match_instances(true, pred)
    assert 0 <= m.tp <= min(m.true_count, m.pred_count)
    assert m.tp + m.fn == m.true_count and m.tp + m.fp == m.pred_count
    for v in (m.precision, m.recall, m.f1, m.panoptic_quality):
        assert math.isnan(v) or 0.0 <= v <= 1.0 + 1e-12
    # relabelling the prediction changes nothing
    lut = np.array([0, *perm])
    assert match_instances(true, lut[pred])[:3] == m[:3]
    # so do ids far beyond the pixel count (the sorting renumbering path)
    assert match_instances(true * 1_000_003, pred)[:3] == m[:3]
    # swapping truth and prediction swaps FP and FN
    swapped = match_instances(pred, true)
    assert (swapped.tp, swapped.fp, swapped.fn) == (m.tp, m.fn, m.fp)
    # a perfect prediction scores 1
    if true.any():
        perfect = match_instances(true, true)
        assert perfect.f1 == 1.0 and perfect.panoptic_quality == pytest.approx(1.0)


def _disk_and_strip():
    """A 150 x 200 map with a disk (r 12) and a thin 4 x 90 px strip, both probability 1."""
    prob = np.zeros((150, 200), np.float32)
    yy, xx = np.mgrid[:150, :200]
    prob[(yy - 40) ** 2 + (xx - 40) ** 2 <= 12**2] = 1.0
    prob[110:114, 60:150] = 1.0
    return prob


def test_shape_limits_drop_a_field_edge_strip_and_keep_a_cell():
    prob = _disk_and_strip()
    loose = InstanceParams(min_area=100, split_area=10_000, min_distance=8)
    assert separate_instances(prob, loose).max() == 2  # no shape limits: both count
    strict = InstanceParams(min_area=100, split_area=10_000, min_distance=8, max_elongation=3.0, min_solidity=0.6)
    labels = separate_instances(prob, strict)
    assert labels.max() == 1
    assert labels[40, 40] == 1 and labels[112, 100] == 0


def test_shape_limits_are_learned_from_the_masks():
    masks = [disk((64, 64), (32, 32), r) for r in (10, 12, 14)]
    params = tune_instance_params(masks)
    # Disks are round and convex: the floor of 3 applies, solidity ~0.85 x ~0.97.
    assert params.max_elongation == 3.0
    assert 0.75 < params.min_solidity < 0.85
    # A crescent-shaped training cell loosens the solidity limit.
    crescent = disk((64, 64), (32, 32), 14) & ~disk((64, 64), (32, 40), 12)
    assert tune_instance_params(masks + [crescent]).min_solidity < params.min_solidity
