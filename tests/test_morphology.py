"""Per-WBC morphology and nucleus segmentation on synthetic cells with a known nucleus."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import ellipse, line

from compare.pipeline.measure import NucleusParams, cell_table, lobe_counts, nucleus_labels
from tests.synthetic import disk

BACKGROUND = (236, 214, 210)
RED_CELL = (214, 150, 160)
CYTOPLASM = (205, 185, 225)
NUCLEUS = (95, 45, 140)


def _cells(seed: int = 0, noise: float = 6.0):
    """A 120 x 200 smear with two WBCs of known nucleus and one WBC without one.

    WBC 1 (left) has a 2-lobed nucleus, the lobes joined by a 1-px bridge;
    WBC 2 (middle) has a 3-lobed nucleus, lobes apart; WBC 3 (right) is
    uniform cytoplasm.

    Returns
    -------
    image : ndarray, shape (120, 200, 3), uint8
    labels : ndarray, shape (120, 200), int32
    truth : ndarray, shape (120, 200), int32
        Nucleus pixels labelled with their WBC id.
    lobes : dict of int to int
    """
    shape = (120, 200)
    rng = np.random.default_rng(seed)
    image = np.empty((*shape, 3), np.float64)
    image[:] = BACKGROUND
    for c in [(10, 10), (110, 100), (15, 120)]:
        image[disk(shape, c, 15)] = RED_CELL
    labels = np.zeros(shape, np.int32)
    truth = np.zeros(shape, np.int32)
    centres = {1: (60, 40), 2: (60, 100), 3: (60, 165)}
    for index, centre in centres.items():
        cell = disk(shape, centre, 28)
        labels[cell] = index
        image[cell] = CYTOPLASM
    y, x = centres[1]
    two = disk(shape, (y - 8, x - 8), 9) | disk(shape, (y + 9, x + 8), 9)
    rr, cc = line(y - 8, x - 8, y + 9, x + 8)
    two[rr, cc] = True
    y, x = centres[2]
    three = disk(shape, (y - 11, x - 6), 8) | disk(shape, (y - 3, x + 12), 8) | disk(shape, (y + 13, x - 3), 8)
    for index, nucleus in [(1, two), (2, three)]:
        truth[nucleus] = index
        image[nucleus] = NUCLEUS
    image += rng.normal(0, noise, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels, truth, {1: 2, 2: 3, 3: 0}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_nucleus_matches_the_known_nucleus():
    image, labels, truth, _ = _cells()
    nuclei = nucleus_labels(labels, image)
    assert nuclei.dtype == labels.dtype and nuclei.shape == labels.shape
    for index in (1, 2):
        assert _iou(nuclei == index, truth == index) >= 0.8, index
    # A nucleus never leaves its WBC.
    assert np.all((nuclei == 0) | (nuclei == labels))


def test_uniform_cell_gets_no_nucleus():
    image, labels, _, _ = _cells()
    nuclei = nucleus_labels(labels, image)
    # WBC 3 alone would split its noise in two; the pooled threshold finds nothing there.
    assert (nuclei == 3).sum() < 0.02 * (labels == 3).sum()


def test_lobe_count_and_nc_ratio():
    image, labels, truth, lobes = _cells()
    table = cell_table(labels, image).set_index("id")
    for index in (1, 2):
        assert table.loc[index, "lobe_count"] == lobes[index], index
        n = (truth == index).sum()
        true_ratio = n / ((labels == index).sum() - n)
        assert table.loc[index, "nc_ratio"] == pytest.approx(true_ratio, rel=0.15), index
    assert table.loc[3, "lobe_count"] == 0
    assert np.isnan(table.loc[3, "nc_ratio"])


def test_lobes_joined_by_a_bridge_count_as_two():
    _, labels, truth, _ = _cells(noise=0)
    # The bridge makes the true nucleus of WBC 1 one connected piece.
    assert ndi.label(truth == 1, structure=np.ones((3, 3)))[1] == 1
    assert lobe_counts(labels, truth)[1] == 2
    # When no piece holds the required share of the nucleus, a found nucleus still counts as one lobe.
    assert lobe_counts(labels, truth, NucleusParams(min_lobe_fraction=0.6))[2] == 1


def test_nucleus_labels_on_an_empty_image():
    labels = np.zeros((20, 30), np.uint16)
    nuclei = nucleus_labels(labels, np.full((20, 30, 3), 200, np.uint8))
    assert nuclei.dtype == np.uint16 and not nuclei.any()
    assert len(cell_table(labels, np.full((20, 30, 3), 200, np.uint8))) == 0


def test_circularity_of_a_disk_and_an_ellipse():
    shape = (100, 160)
    labels = np.zeros(shape, np.int32)
    labels[disk(shape, (50, 40), 25)] = 1
    rr, cc = ellipse(50, 115, 12, 38, shape=shape)
    labels[rr, cc] = 2
    image = np.full((*shape, 3), 200, np.uint8)
    table = cell_table(labels, image).set_index("id")
    assert 0.9 <= table.loc[1, "circularity"] <= 1.1
    assert table.loc[2, "circularity"] < 0.85
    assert table.loc[1, "eccentricity"] < 0.2 < 0.9 < table.loc[2, "eccentricity"]
    assert table.loc[1, "equivalent_diameter_px"] == pytest.approx(50, rel=0.03)
    assert table.loc[2, "major_axis_px"] == pytest.approx(76, rel=0.05)
    assert table.loc[2, "minor_axis_px"] == pytest.approx(24, rel=0.1)
    assert table.loc[1, "solidity"] > 0.95


def test_columns_positions_colour_and_units():
    image, labels, _, _ = _cells()
    probability = np.where(labels > 0, 0.9, 0.1)
    plain = cell_table(labels, image, probability=probability)
    assert list(plain["id"]) == [1, 2, 3]
    assert not any("_um" in c for c in plain.columns)
    row = plain.iloc[0]
    assert (row["centroid_x"], row["centroid_y"]) == pytest.approx((40, 60), abs=0.5)
    assert (row["bbox_x0"], row["bbox_y0"], row["bbox_x1"], row["bbox_y1"]) == (12, 32, 69, 89)
    assert row["mean_probability"] == pytest.approx(0.9)
    # WBC 3 is all cytoplasm: its mean colour is the cytoplasm colour.
    assert plain.iloc[2][["mean_r", "mean_g", "mean_b"]].to_numpy(float) == pytest.approx(CYTOPLASM, abs=1.5)

    um = cell_table(labels, image, pixel_size_um=0.25)
    for px, (col, power) in {"area_px": ("area_um2", 2), "perimeter_px": ("perimeter_um", 1),
                             "equivalent_diameter_px": ("equivalent_diameter_um", 1),
                             "major_axis_px": ("major_axis_um", 1), "minor_axis_px": ("minor_axis_um", 1),
                             "nucleus_area_px": ("nucleus_area_um2", 2)}.items():
        assert um[col].to_numpy() == pytest.approx(um[px].to_numpy() * 0.25 ** power)
    assert "mean_probability" not in um.columns


def test_given_nucleus_labels_are_used_and_checked():
    image, labels, truth, _ = _cells()
    table = cell_table(labels, image, nucleus_labels=truth).set_index("id")
    assert table.loc[2, "nucleus_area_px"] == (truth == 2).sum()
    with pytest.raises(ValueError, match="nucleus labels"):
        cell_table(labels, image, nucleus_labels=truth[:-1])
    with pytest.raises(ValueError, match="pixel size"):
        cell_table(labels, image, pixel_size_um=0)
    with pytest.raises(ValueError, match="RGB"):
        nucleus_labels(labels, image[..., 0])


def test_every_wbc_of_the_real_large_images_has_a_nucleus(shipped_dir):
    from compare.pipeline.instances import label_truth
    from compare.suite.data import load_large

    fractions = []
    for sample in load_large(shipped_dir):
        labels = label_truth(sample.mask, min_area=500)
        table = cell_table(labels, sample.image)
        fractions += list(table["nucleus_area_px"] / table["area_px"])
        assert (table["lobe_count"] >= 1).all(), sample.name
    # The expert masks hold 11 WBCs; their nuclei cover 34-73% of each by
    # eye on an overlay. No expert nucleus masks exist to score against.
    assert len(fractions) == 11
    assert 0.2 < min(fractions) and max(fractions) < 0.8, fractions
