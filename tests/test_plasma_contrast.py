"""Pale cytoplasm told by its colour (:mod:`compare.pipeline.plasma_contrast`) and the outline stage that uses it."""

from __future__ import annotations

import numpy as np
import pytest

from compare.evaluation.metrics import dice
from compare.pipeline.outline import grow_to_edges, outline_cells
from compare.pipeline.plasma_contrast import plasma_contrast_cells

PLASMA = (240, 228, 210)
PALE_CYTOPLASM = (228, 212, 214)
NUCLEUS = (90, 50, 140)
RED_CELL = (205, 140, 150)
CENTRE = (64, 64)


def _disk(shape, centre, radius):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def _blind_to_cytoplasm(red_cells=(), shape=(128, 128), seed=0):
    """A WBC whose pale cytoplasm its segmenter does not see at all.

    Returns the image (camera noise on every colour), the whole cell, the
    WBC as found (its nucleus) and the probability (0.02 off the nucleus).
    """
    cell = _disk(shape, CENTRE, 30)
    nucleus = _disk(shape, CENTRE, 14)
    image = np.empty((*shape, 3), np.float64)
    image[:] = PLASMA
    for centre in red_cells:
        image[_disk(shape, centre, 16) & ~cell] = RED_CELL
    image[cell] = PALE_CYTOPLASM
    image[nucleus] = NUCLEUS
    image += np.random.default_rng(seed).normal(0, 2.0, image.shape)
    probability = np.where(nucleus, 0.98, 0.02).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), cell, nucleus, probability


def test_a_cytoplasm_the_segmenter_does_not_see_is_taken_in_by_its_colour():
    image, cell, nucleus, probability = _blind_to_cytoplasm()
    labels = nucleus.astype(np.int32)
    assert dice(cell, grow_to_edges(labels, probability, image) > 0) < 0.5  # no uncertain band to grow in
    grown = outline_cells(labels, probability, image, max_diameter=100)
    assert dice(cell, grown > 0) > 0.95
    assert grown.dtype == labels.dtype and set(np.unique(grown)) == {0, 1}


def test_a_touching_red_cell_is_left_out_and_the_cytoplasm_still_taken_in():
    touching = (64, 108)  # 44 px from the centre: its 16 px radius meets the cell's 30
    image, cell, _, probability = _blind_to_cytoplasm(red_cells=[touching, (20, 20), (110, 20)])
    # The segmenter saw the nucleus and a rim of cytoplasm round it.
    found = _disk(cell.shape, CENTRE, 20)
    probability[found] = 0.98
    grown = outline_cells(found.astype(np.int32), probability, image, max_diameter=100)
    red = _disk(cell.shape, touching, 16) & ~cell
    assert (grown[red] > 0).mean() < 0.05
    assert dice(cell, grown > 0) > 0.9


def test_no_colour_growth_beyond_the_widest_whole_wbc():
    image, _, nucleus, probability = _blind_to_cytoplasm()
    # The cell is 61 px across: a 50 px bound says it cannot be one WBC.
    labels = nucleus.astype(np.int32)
    assert (plasma_contrast_cells(labels, probability, image, max_diameter=50) == labels).all()


def test_colour_only_adds_a_cytoplasm_missed_not_a_rim():
    image, cell, _, probability = _blind_to_cytoplasm()
    # Found to 1 px inside the membrane: colour would add under MIN_GAIN of it.
    nearly = _disk(cell.shape, CENTRE, 29).astype(np.int32)
    assert (plasma_contrast_cells(nearly, probability, image, max_diameter=100) == nearly).all()
    half = _disk(cell.shape, CENTRE, 22).astype(np.int32)  # colour adds 0.86 of it
    assert dice(cell, plasma_contrast_cells(half, probability, image, max_diameter=100) > 0) > 0.95


def test_a_wbc_never_grows_into_another():
    left, _, nucleus, probability = _blind_to_cytoplasm(shape=(128, 90))
    image = np.concatenate([left, left[:, ::-1]], axis=1)  # two pale cells, cytoplasms touching
    labels = np.concatenate([nucleus.astype(np.int32), 2 * nucleus[:, ::-1]], axis=1)
    probability = np.concatenate([probability, probability[:, ::-1]], axis=1)
    grown = outline_cells(labels, probability, image, max_diameter=100)
    assert (grown[labels > 0] == labels[labels > 0]).all()
    assert not (grown[:, 90:] == 1).any() and not (grown[:, :90] == 2).any()


def test_a_cell_the_segmenter_sees_whole_keeps_its_outline():
    image, cell, _, _ = _blind_to_cytoplasm()
    probability = np.where(cell, 0.98, 0.02).astype(np.float32)
    grown = outline_cells(cell.astype(np.int32), probability, image, max_diameter=100)
    assert (grown > 0).sum() - cell.sum() <= 0.03 * cell.sum()  # at most the membrane's pixel


def test_shapes_must_agree():
    image, _, nucleus, probability = _blind_to_cytoplasm()
    with pytest.raises(ValueError, match="same height and width"):
        plasma_contrast_cells(nucleus[:-1].astype(np.int32), probability, image, max_diameter=100)
