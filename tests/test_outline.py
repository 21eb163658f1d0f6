"""The outline stage (:mod:`compare.pipeline.outline`): WBCs grown through the uncertain band to the colour edge."""

from __future__ import annotations

import numpy as np
import pytest

from compare.evaluation.metrics import dice
from compare.pipeline.outline import grow_to_edges, outline_cells

PLASMA = (240, 232, 220)
PALE_CYTOPLASM = (222, 205, 205)
NUCLEUS = (90, 50, 140)


def _disk(shape, centre, radius):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def _pale_cell(shape=(96, 96), centre=(48, 48)):
    """A WBC whose pale cytoplasm the segmenter is unsure of: image, whole cell, what it found, probability.

    What it found is the nucleus and a rim of cytoplasm around it, as a
    segmenter trained on another stain finds such a cell.  The rim is wider
    than the gradient's smoothing reaches (3 sigma): within it the nucleus
    edge would outweigh a pale membrane, and the cell would not grow.
    """
    cell = _disk(shape, centre, 30)
    nucleus = _disk(shape, centre, 14)
    image = np.empty((*shape, 3), np.uint8)
    image[:] = PLASMA
    image[cell] = PALE_CYTOPLASM
    image[nucleus] = NUCLEUS
    probability = np.full(shape, 0.02, np.float32)
    # The band's probability fades outwards, from 0.45 at what was found to
    # 0.25 at the membrane, and stays above the band's floor just past it.
    distance = np.hypot(*np.meshgrid(np.arange(shape[0]) - centre[0], np.arange(shape[1]) - centre[1],
                                     indexing="ij"))
    found = _disk(shape, centre, 20)
    ring = cell & ~found
    probability[ring] = 0.45 - 0.2 * (distance[ring] - 20) / 10
    probability[_disk(shape, centre, 34) & ~cell] = 0.21  # the segmenter's blur just past the membrane
    probability[found] = 0.97
    return image, cell, found, probability


def test_a_pale_cytoplasm_is_taken_in_up_to_the_membrane():
    image, cell, found, probability = _pale_cell()
    labels = found.astype(np.int32)
    grown = grow_to_edges(labels, probability, image)
    assert dice(cell, labels > 0) < 0.7
    assert dice(cell, grown > 0) > 0.97
    # The band reached 4 px past the membrane; the edge stopped the cell there.
    assert not (grown[_disk(image.shape[:2], (48, 48), 34) & ~_disk(image.shape[:2], (48, 48), 31)]).any()


def test_cells_only_grow_keep_their_ids_and_no_object_is_made():
    image, _, found, probability = _pale_cell()
    labels = np.zeros(found.shape, np.uint16)
    labels[found] = 7
    # A band of uncertain probability that touches no WBC.
    probability[2:10, 2:10] = 0.4
    grown = grow_to_edges(labels, probability, image)
    assert grown.dtype == labels.dtype
    assert set(np.unique(grown)) == {0, 7}
    assert (grown[labels > 0] == labels[labels > 0]).all()
    assert not grown[2:10, 2:10].any()


def test_two_cells_sharing_a_band_each_keep_their_side():
    left, left_cell, left_found, left_probability = _pale_cell(shape=(96, 80), centre=(48, 48))
    image = np.concatenate([left, left[:, ::-1]], axis=1)
    probability = np.concatenate([left_probability, left_probability[:, ::-1]], axis=1)
    cells = np.concatenate([left_cell, np.zeros_like(left_cell)], axis=1)
    labels = np.concatenate([left_found.astype(np.int32), 2 * left_found[:, ::-1]], axis=1)
    grown = grow_to_edges(labels, probability, image)
    assert dice(cells, grown == 1) > 0.95
    assert dice(cells[:, ::-1], grown == 2) > 0.95


def test_with_high_an_uncertain_overgrowth_is_cut_back_to_the_membrane():
    """A WBC found with a plasma rim it is unsure of (0.6) settles on the membrane; one with no sure core stays."""
    image, cell, _, probability = _pale_cell()
    overgrown = _disk(cell.shape, (48, 48), 40)
    probability = np.where(cell, 0.97, np.where(overgrown, 0.6, 0.02)).astype(np.float32)
    labels = overgrown.astype(np.int32)
    assert dice(cell, grow_to_edges(labels, probability, image) > 0) < 0.8  # growing only: the rim stays
    settled = grow_to_edges(labels, probability, image, low=0.5, high=0.9)
    assert dice(cell, settled > 0) > 0.97 and set(np.unique(settled)) == {0, 1}
    unsure = np.where(overgrown, 0.6, 0.02).astype(np.float32)
    np.testing.assert_array_equal(grow_to_edges(labels, unsure, image, low=0.5, high=0.9), labels)


def test_nothing_found_or_nothing_uncertain_is_returned_as_it_is():
    image, _, found, probability = _pale_cell()
    empty = np.zeros(found.shape, np.int32)
    assert grow_to_edges(empty, probability, image) is empty
    labels = found.astype(np.int32)
    certain = np.where(found, 0.99, 0.01).astype(np.float32)
    assert grow_to_edges(labels, certain, image) is labels


def test_arrays_of_different_sizes_are_refused():
    image, _, found, probability = _pale_cell()
    with pytest.raises(ValueError, match="same height and width"):
        grow_to_edges(found.astype(np.int32), probability[:-1], image)


@pytest.mark.parametrize("grow", [False, True])
@pytest.mark.parametrize("by_colour", [False, True])
def test_predict_asks_the_outline_stage_for_what_the_registry_says(threshold_model_dir, monkeypatch, grow, by_colour):
    import dataclasses

    import compare.pipeline.model as pipeline_model
    from compare.pipeline.segmenters import REGISTRY
    from tests.synthetic import smear

    calls = []

    def recording(labels, probability, image, **kwargs):
        calls.append(kwargs)
        return labels

    monkeypatch.setattr(pipeline_model, "outline_cells", recording)
    monkeypatch.setitem(REGISTRY, "threshold", dataclasses.replace(REGISTRY["threshold"], grow_outline=grow,
                                                                   outline_by_colour=by_colour))
    model = pipeline_model.WBCModel.load(threshold_model_dir)
    image, _ = smear((120, 160), [(50, 50), (70, 115)], radius=18, seed=4, n_red=8)
    model.predict(image, scale=1.0)
    assert [(call["uncertain"], call["by_colour"]) for call in calls] == [(grow, by_colour)]
    assert calls[0]["max_diameter"] == pytest.approx(1.6 * model.training_scale_.wbc_diameter)


def test_the_stage_with_nothing_asked_returns_the_labels_as_they_are():
    image, _, found, probability = _pale_cell()
    labels = found.astype(np.int32)
    assert outline_cells(labels, probability, image, max_diameter=100, uncertain=False, by_colour=False) is labels


def test_only_the_unets_grow_their_outlines():
    from compare.pipeline.segmenters import REGISTRY

    assert {name for name, spec in REGISTRY.items() if spec.grow_outline} == {"unet", "unet-paper"}


def test_the_colour_outline_is_on_where_it_was_measured_to_help():
    from compare.pipeline.segmenters import REGISTRY

    # Each measured on SigTuple fold 0, its shifts and CellaVision (experiments/plasma_contrast_band.py).
    assert {name for name, spec in REGISTRY.items() if spec.outline_by_colour} == set(REGISTRY)
