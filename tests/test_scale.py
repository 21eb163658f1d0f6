"""Scale estimation: red cells by granulometry, the model probe fallback, given scales."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from compare.io.images import read_image
from compare.pipeline.scale import (
    MAX_FACTOR,
    SIGTUPLE_PIXEL_SIZE_UM,
    SIGTUPLE_RBC_DIAMETER,
    TrainingScale,
    estimate_scale,
)
from compare.suite.data import resolve_data_dir

TRAINING = TrainingScale(wbc_diameter=60.0, rbc_diameter=31.0)


def _disk_image(centres, diameter: float, shape, *, background=(240, 235, 230), cell=(215, 120, 130),
                pallor=(228, 180, 182)) -> np.ndarray:
    """Cells of one diameter, with pale centres, painted at ``centres`` on a plain background."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    image = np.empty(tuple(shape) + (3,), np.uint8)
    image[:] = background
    r = diameter / 2
    for cy, cx in centres:
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        image[d2 < r * r] = cell
        image[d2 < (0.35 * r) ** 2] = pallor
    return image


def _smear(diameter: float, shape=(400, 400), seed: int = 0, cover: float = 0.5, **colours) -> np.ndarray:
    """Cells placed at random, many touching or overlapping."""
    rng = np.random.default_rng(seed)
    n = int(cover * shape[0] * shape[1] / (np.pi * diameter * diameter / 4))
    centres = rng.uniform(0, 1, (n, 2)) * shape
    return _disk_image(centres, diameter, shape, **colours)


def _packed(diameter: float, shape=(400, 400)) -> np.ndarray:
    """Cells on a hexagonal lattice, every one touching six neighbours."""
    pitch = diameter
    centres = [(y, x + (pitch / 2 if row % 2 else 0))
               for row, y in enumerate(np.arange(0, shape[0] + pitch, pitch * np.sqrt(3) / 2))
               for x in np.arange(0, shape[1] + pitch, pitch)]
    return _disk_image(centres, diameter, shape)


def _chains(diameter: float, shape=(400, 400), overlap: float = 0.2) -> np.ndarray:
    """Rows of cells, each overlapping its neighbours by ``overlap`` of a diameter, a little plasma between rows."""
    centres = [(y, x) for y in np.arange(diameter / 2, shape[0], 1.1 * diameter)
               for x in np.arange(0, shape[1] + diameter, (1 - overlap) * diameter)]
    return _disk_image(centres, diameter, shape)


def _rbc(image: np.ndarray) -> float:
    """The red-cell diameter :func:`estimate_scale` finds, which must be a confident measurement."""
    estimate = estimate_scale(image, TRAINING)
    assert estimate.method == "red-cells" and estimate.confident
    return estimate.observed_rbc_diameter


def _resize(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((round(w * factor), round(h * factor)), Image.Resampling.LANCZOS))


@pytest.mark.parametrize("diameter", [12, 31, 62])
def test_touching_packed_cells(diameter):
    # No solitary cell at all: every cell touches six neighbours.
    estimate = estimate_scale(_packed(diameter, shape=(max(300, 10 * diameter),) * 2), TRAINING)
    assert estimate.method == "red-cells" and estimate.confident
    assert estimate.observed_rbc_diameter == pytest.approx(diameter, rel=0.12)
    assert estimate.factor == pytest.approx(31.0 / diameter, rel=0.12)


def test_overlapping_cells():
    estimate = estimate_scale(_chains(30), TRAINING)
    assert estimate.confident and estimate.observed_rbc_diameter == pytest.approx(30, rel=0.15)


@pytest.mark.parametrize("diameter", [16, 30, 60])
def test_crowded_random_smear(diameter):
    image = _smear(diameter, shape=(max(300, 10 * diameter),) * 2, cover=0.7)
    assert estimate_scale(image, TRAINING).observed_rbc_diameter == pytest.approx(diameter, rel=0.12)


def test_colours_do_not_matter():
    # A yellow plasma with faint cells, and a bluish plasma with blue cells.
    yellow = _smear(30, cover=0.5, background=(235, 220, 150), cell=(215, 180, 120), pallor=(228, 205, 140))
    blue = _smear(30, cover=0.5, background=(215, 228, 245), cell=(150, 150, 220), pallor=(190, 200, 235))
    for image in (yellow, blue):
        assert estimate_scale(image, TRAINING).observed_rbc_diameter == pytest.approx(30, rel=0.12)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_synthetic_smear_scales_with_the_image(factor):
    image = _smear(30, shape=(400, 400))
    assert _rbc(_resize(image, factor)) == pytest.approx(30 * factor, rel=0.12)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_shipped_image_scales_with_the_image(factor):
    image = read_image(resolve_data_dir().path / "Train_Data" / "1467973104.jpg")
    at_one = _rbc(image)
    assert at_one == pytest.approx(SIGTUPLE_RBC_DIAMETER, rel=0.1)
    assert _rbc(_resize(image, factor)) == pytest.approx(at_one * factor, rel=0.1)


def test_black_field_edge_is_ignored():
    image = _packed(30, shape=(400, 400))
    yy, xx = np.mgrid[:400, :400]
    image[(yy - 400) ** 2 + xx ** 2 < 250 ** 2] = 5  # a dark corner, like a field of view's edge
    assert estimate_scale(image, TRAINING).observed_rbc_diameter == pytest.approx(30, rel=0.12)


def _crop_with_one_wbc(wbc_diameter: float, size: int) -> np.ndarray:
    """One big dark blob in the centre and a few cells cut by the border."""
    s = wbc_diameter / 60
    rbc = 31 * s
    centres = [(0, 0), (0, size), (size, 0), (size, size), (size / 2, -rbc / 4)]
    image = _disk_image(centres, rbc, (size, size))
    yy, xx = np.mgrid[:size, :size]
    image[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (wbc_diameter / 2) ** 2] = (190, 160, 210)
    image[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (wbc_diameter / 3.5) ** 2] = (80, 30, 120)
    return image


def _fake_probe(true_wbc: float, calls: list):
    """A model that finds the WBC only near its training size, splits it when too big, misses it when too small."""
    def probe(factor):
        calls.append(factor)
        d = true_wbc * factor
        if 0.6 <= d / TRAINING.wbc_diameter <= 1.6:
            return [d * 1.03]
        return [0.45 * d] * 3 if d > TRAINING.wbc_diameter else []
    return probe


@pytest.mark.parametrize("wbc, size", [(60, 120), (180, 300), (30, 100)])
def test_crop_uses_the_probe(wbc, size):
    image = _crop_with_one_wbc(wbc, size)
    assert not estimate_scale(image, TRAINING).confident  # too few red cells on their own
    calls = []
    estimate = estimate_scale(image, TRAINING, probe=_fake_probe(wbc, calls))
    assert estimate.method == "wbc-probe" and estimate.confident
    assert estimate.factor == pytest.approx(60 / wbc, rel=0.06)
    assert 1 <= len(calls) <= 5


def test_probe_refines_towards_a_smaller_image_only():
    image = _crop_with_one_wbc(60, 120)
    # Half-found (the nucleus only): the WBC reads 0.7x the training size at
    # every factor; the image keeps its own scale instead of being enlarged.
    half_found = estimate_scale(image, TRAINING, probe=lambda factor: [0.7 * 60 * factor])
    assert half_found.method == "wbc-probe" and half_found.factor == 1.0
    # Larger than training at its own scale (and split when shrunk by 2 or 3):
    # the factor is refined down to the measured size.
    larger = estimate_scale(image, TRAINING, probe=lambda factor: [1.5 * 60] if factor == 1.0 else [10.0])
    assert larger.factor == pytest.approx(1 / 1.5)


def test_probe_finding_nothing_is_not_confident():
    estimate = estimate_scale(_crop_with_one_wbc(60, 120), TRAINING, probe=lambda factor: [])
    assert (estimate.method, estimate.factor, estimate.confident) == ("none", 1.0, False)
    assert "no WBC" in estimate.detail


def test_probe_is_not_called_when_red_cells_suffice():
    def probe(factor):
        raise AssertionError("probe called")
    assert estimate_scale(_packed(31), TRAINING, probe=probe).method == "red-cells"


def test_given_scales_win():
    image = _packed(31)
    by_wbc = estimate_scale(image, TRAINING, wbc_diameter=120)
    assert (by_wbc.method, by_wbc.factor, by_wbc.confident) == ("wbc-diameter", pytest.approx(0.5), True)
    by_pixel = estimate_scale(image, TRAINING, pixel_size_um=2 * SIGTUPLE_PIXEL_SIZE_UM)
    assert (by_pixel.method, by_pixel.factor) == ("pixel-size", pytest.approx(2.0))
    with pytest.raises(ValueError, match="pixel-size"):
        estimate_scale(image, TRAINING, pixel_size_um=0)


def test_factor_out_of_range_is_clamped_and_not_confident():
    estimate = estimate_scale(_packed(31), TRAINING, wbc_diameter=5)
    assert estimate.factor == MAX_FACTOR and not estimate.confident


def test_blank_image_cannot_be_measured():
    blank = np.full((200, 200, 3), 240, np.uint8)
    estimate = estimate_scale(blank, TRAINING, name="blank.png")
    assert (estimate.method, estimate.factor, estimate.confident) == ("none", 1.0, False)


def test_probe_stops_at_the_image_scale_when_the_wbc_fits():
    """A WBC found at the training size at factor 1 cannot be displaced: no other trial is run."""
    calls = []
    estimate = estimate_scale(_crop_with_one_wbc(TRAINING.wbc_diameter, 120), TRAINING,
                              probe=_fake_probe(TRAINING.wbc_diameter, calls))
    assert calls == [1.0] and (estimate.method, estimate.factor) == ("wbc-probe", 1.0)


def test_small_image_is_probed_even_with_measurable_red_cells():
    """Under MIN_RULER_SIDE px a side the probe decides, even where the red cells look countable."""
    image = _packed(31, shape=(200, 200))
    assert estimate_scale(image, TRAINING).method == "red-cells"
    calls = []
    estimate = estimate_scale(image, TRAINING, probe=_fake_probe(TRAINING.wbc_diameter / 2, calls))
    assert estimate.method == "wbc-probe" and estimate.factor == pytest.approx(2.0, rel=0.06)
    assert calls == [1.0, 0.5, 1 / 3, 2.0]


def test_probe_stops_at_the_first_factor_that_fits():
    """A 3x crop matches at 1/3; the costlier factor 2 is not tried, only the size factors left (0.4)."""
    calls = []
    estimate = estimate_scale(_crop_with_one_wbc(3 * TRAINING.wbc_diameter, 300), TRAINING,
                              probe=_fake_probe(3 * TRAINING.wbc_diameter, calls))
    assert calls == [1.0, 0.5, 1 / 3, 0.4] and estimate.factor == pytest.approx(1 / 3, rel=0.06)


def _lobed_probe(calls: list, whole_at_half: float):
    """A neutrophil twice the training size: three lobes of training size at factor 1, one cell at 0.5."""
    def probe(factor):
        calls.append(factor)
        if factor == 1.0:
            return [1.05 * TRAINING.wbc_diameter, 0.9 * TRAINING.wbc_diameter, 0.8 * TRAINING.wbc_diameter]
        return [whole_at_half * factor / 0.5]
    return probe


def test_lobes_of_one_cell_are_measured_whole_at_the_next_factor():
    """Several training-sized objects at factor 1 that factor 0.5 sees as one training-sized cell: 0.5 wins."""
    calls = []
    estimate = estimate_scale(_crop_with_one_wbc(120, 300), TRAINING,
                              probe=_lobed_probe(calls, whole_at_half=TRAINING.wbc_diameter))
    assert calls == [1.0, 0.5, 0.4, 1 / 3]  # then read at the size factors too
    assert (estimate.method, estimate.factor, estimate.confident) == ("wbc-probe", 0.5, True)


def test_a_blob_cut_by_the_border_at_half_is_not_a_whole_cell():
    """A training-scale patch halved is barely wider than a WBC: a blob there that the border cuts proves nothing."""
    from compare.pipeline.scale import ProbeReading

    def probe(factor):
        if factor == 1.0:
            return [TRAINING.wbc_diameter, 0.5 * TRAINING.wbc_diameter]
        return ProbeReading(np.array([TRAINING.wbc_diameter]), np.array([True]))
    assert estimate_scale(_crop_with_one_wbc(60, 120), TRAINING, probe=probe).factor == 1.0
    whole = estimate_scale(_crop_with_one_wbc(60, 120), TRAINING,
                           probe=lambda f: probe(f) if f == 1.0 else ProbeReading(np.array([120.0 * f]),
                                                                                  np.array([False])))
    assert whole.factor == 0.5


def test_touching_cells_at_the_training_scale_stay_at_factor_1():
    """Two training-sized WBCs that touch read half the training size at 0.5 (merged: 0.7x): factor 1 is kept."""
    image = _crop_with_one_wbc(60, 200)
    for at_half in ([0.5 * TRAINING.wbc_diameter] * 2, [0.7 * TRAINING.wbc_diameter]):
        calls = []

        def probe(factor, at_half=at_half, calls=calls):
            calls.append(factor)
            return [TRAINING.wbc_diameter] * 2 if factor == 1.0 else at_half
        estimate = estimate_scale(image, TRAINING, probe=probe)
        assert calls == [1.0, 0.5, 1 / 3] and estimate.factor == 1.0


def test_pieces_of_a_cell_three_times_the_training_size_are_measured_whole_at_a_third():
    """Training-sized fragments at factor 1, a cell 1.5x too large at 0.5 and of training size at 1/3: 1/3 wins."""
    calls = []
    estimate = estimate_scale(_crop_with_one_wbc(190, 300), TRAINING,
                              probe=_lobed_probe(calls, whole_at_half=1.5 * TRAINING.wbc_diameter))
    assert calls[:3] == [1.0, 0.5, 1 / 3]
    assert (estimate.method, estimate.confident) == ("wbc-probe", True)
    assert estimate.factor == pytest.approx(1 / 3, rel=0.06)


def test_a_cell_found_whole_at_half_is_not_looked_for_at_a_third():
    """Once 0.5 shows the pieces as one cell, the probe stops there: 1/3 is read only as a size factor."""
    calls = []
    estimate_scale(_crop_with_one_wbc(120, 300), TRAINING,
                   probe=_lobed_probe(calls, whole_at_half=TRAINING.wbc_diameter))
    assert calls[:2] == [1.0, 0.5] and calls.index(0.4) < calls.index(1 / 3)


def test_one_object_at_factor_1_is_not_second_guessed():
    """A single training-sized WBC at factor 1 costs no further trial, whatever 0.5 would say."""
    calls = []
    estimate_scale(_crop_with_one_wbc(60, 120), TRAINING, probe=lambda f: calls.append(f) or [TRAINING.wbc_diameter])
    assert calls == [1.0]


def test_a_cell_larger_than_training_at_a_shrink_factor_is_never_enlarged():
    """Nothing at 1, a cell 1.8x and 1.22x the training size at 0.5 and 1/3, its pieces at 2: shrunk, not enlarged.

    The pattern of a monocyte four times the training size filling a crop,
    as a pixel classifier reads it: at factor 2 its pieces are nearer the
    training size than the whole cell is at 1/3, but a cell already larger
    than a training WBC at 0.5 can only be larger still when enlarged.
    """
    calls = []
    t = TRAINING.wbc_diameter

    def probe(factor):
        calls.append(factor)
        return {1.0: [], 0.5: [1.8 * t], 1 / 3: [1.22 * t], 2.0: [1.19 * t, 0.9 * t, 0.8 * t]}.get(factor, [1.4 * t])
    estimate = estimate_scale(_crop_with_one_wbc(240, 300), TRAINING, probe=probe)
    assert 2.0 not in calls and estimate.factor < 1 / 3


def test_a_cell_smaller_than_training_is_still_enlarged():
    """A crop at half the training scale: the WBC reads half size at every factor it is found, so 2 is tried and kept."""
    calls = []
    estimate = estimate_scale(_crop_with_one_wbc(30, 100), TRAINING, probe=_fake_probe(30, calls))
    assert calls[-1] == 2.0 and estimate.factor == pytest.approx(2.0, rel=0.06)


def test_block_mean_is_the_mean_of_each_block():
    from skimage.measure import block_reduce

    from compare.pipeline.red_cells import _block_mean

    image = np.random.default_rng(0).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    for step in (2, 3, 6):
        h, w = (37 // step) * step, (50 // step) * step
        expected = block_reduce(image[:h, :w].astype(float), (step, step, 1), np.mean)
        shrunk = _block_mean(image, step)
        assert shrunk.shape == (37 // step, 50 // step, 3) and shrunk.dtype == np.uint8
        assert np.abs(shrunk - expected).max() <= 0.5


def test_downsampled_ruler_agrees_with_full_resolution(monkeypatch):
    import compare.pipeline.red_cells as red_cells

    # 40-px cells on an 800-px smear are measured downsampled (3x here).
    image = _smear(40, shape=(800, 800), cover=0.6)
    steps = []
    measure = red_cells._measure_at_resolution
    monkeypatch.setattr(red_cells, "_measure_at_resolution", lambda im: steps.append(800 // im.shape[0]) or measure(im))
    downsampled = estimate_scale(image, TRAINING).observed_rbc_diameter
    assert steps[0] >= red_cells._COARSE_STEP and min(steps) > 1
    monkeypatch.setattr(red_cells, "_COARSE_MIN_SIDE", 10 ** 6)  # never coarse: full resolution
    full = estimate_scale(image, TRAINING).observed_rbc_diameter
    assert downsampled == pytest.approx(full, rel=0.06)
    assert downsampled == pytest.approx(40, rel=0.12)


def test_red_cell_measurement_is_remembered_by_content_inside_the_block_only(monkeypatch):
    import compare.pipeline.red_cells as red_cells

    red_cells.forget_red_cell_measurements()
    calls = []
    measure = red_cells._measure_red_cells_uncached
    monkeypatch.setattr(red_cells, "_measure_red_cells_uncached", lambda im: calls.append(1) or measure(im))
    image = _smear(31, seed=5)
    first = estimate_scale(image, TRAINING)
    estimate_scale(image, TRAINING)
    assert len(calls) == 2  # outside the block: measured every time
    with red_cells.remembering_red_cells():
        estimate_scale(image, TRAINING)
        again = estimate_scale(image.copy(), TRAINING)  # same pixels, another array
        assert len(calls) == 3 and again == first
        changed = image.copy()
        changed[0, 0] = 0
        estimate_scale(changed, TRAINING)
        assert len(calls) == 4  # one pixel differs: measured afresh
    red_cells.forget_red_cell_measurements()
    with red_cells.remembering_red_cells():
        estimate_scale(image, TRAINING)
    assert len(calls) == 5


def test_a_cell_half_found_at_one_shrink_factor_is_measured_whole_at_another():
    """Read at 0.5 as a training WBC, at 0.4 and 1/3 larger than that implies: the largest size read sets the factor."""
    from compare.pipeline.scale import ProbeReading

    t = TRAINING.wbc_diameter
    image = _crop_with_one_wbc(2.7 * t, 300)

    def pale(own: float, cut: bool = False):
        """The nucleus alone at 1 (too small to fit), 2 t in own pixels at 0.5 (it fits), ``own`` below 0.5."""
        def probe(factor):
            if factor == 1.0:
                return [0.6 * t]
            if factor == 0.5:
                return [t]
            return ProbeReading(np.array([own * factor]), np.array([cut]))
        return probe
    assert estimate_scale(image, TRAINING, probe=pale(2.7 * t)).factor == pytest.approx(1 / 2.7, rel=0.01)
    # 10 % larger than 0.5 read it, within SCALE_TOLERANCE: the trial factor stays; so it does where
    # the larger readings are of a cell cut by the border.
    assert estimate_scale(image, TRAINING, probe=pale(2.2 * t)).factor == 0.5
    assert estimate_scale(image, TRAINING, probe=pale(2.7 * t, cut=True)).factor == 0.5
