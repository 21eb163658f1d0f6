"""The red-cell ruler checked against the WBCs found at its scale (:mod:`compare.pipeline.checked_scale`)."""

from __future__ import annotations

import numpy as np
import pytest

from compare.pipeline import scale as scale_module
from compare.pipeline.checked_scale import ruler_overruled
from compare.pipeline.model import WBCModel
from compare.pipeline.scale import SIZE_WINDOW, ScaleChoice, ScaleEstimate, TrainingScale

TRAINING = TrainingScale(wbc_diameter=60.0, rbc_diameter=31.0)
PINK = (235, 200, 210)
VIOLET = (90, 40, 150)


def _choice(method: str = "red-cells") -> ScaleChoice:
    return ScaleChoice(ScaleEstimate(1.0, method, 30.0, True, "the image: red cells 30.0 px across."), 1.0)


def _disk(radius: float, centre: tuple[int, int], shape: tuple[int, int] = (400, 400)) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius ** 2


def test_a_wbc_of_training_size_keeps_the_ruler():
    labels = _disk(30, (200, 200)).astype(np.int32)
    assert ruler_overruled(_choice(), labels, TRAINING) is None


def test_a_wbc_far_larger_than_any_training_wbc_overrules_the_ruler():
    radius = 0.5 * TRAINING.wbc_diameter * SIZE_WINDOW[1] * 1.1
    labels = _disk(radius, (200, 200)).astype(np.int32)
    why = ruler_overruled(_choice(), labels, TRAINING, name="x.png")
    assert why is not None and why.startswith("x.png: red cells read 30.0 px") and "pieces of larger red cells" in why
    # Just under the window's upper ratio, the ruler stands.
    small = _disk(0.5 * TRAINING.wbc_diameter * SIZE_WINDOW[1] * 0.95, (200, 200)).astype(np.int32)
    assert ruler_overruled(_choice(), small, TRAINING) is None


def test_a_large_wbc_cut_by_the_border_proves_nothing():
    labels = _disk(100, (0, 200)).astype(np.int32)  # its centre on the top edge
    assert ruler_overruled(_choice(), labels, TRAINING) is None
    labels[_disk(20, (300, 300))] = 2  # and a small whole one beside it
    assert ruler_overruled(_choice(), labels, TRAINING) is None


def test_only_the_ruler_is_checked():
    labels = _disk(120, (200, 200)).astype(np.int32)
    for method in ("wbc-probe", "wbc-diameter", "pixel-size", "given", "none"):
        assert ruler_overruled(_choice(method), labels, TRAINING) is None
    assert ruler_overruled(_choice(), np.zeros((50, 50), np.int32), TRAINING) is None


@pytest.fixture(scope="module")
def model() -> WBCModel:
    """A threshold model (learns nothing) fitted on two 60 px WBCs."""
    image = np.empty((120, 270, 3), np.uint8)
    image[:] = PINK
    mask = _disk(30, (60, 60), (120, 270)) | _disk(30, (60, 200), (120, 270))
    image[mask] = VIOLET
    return WBCModel("threshold", require_nucleus=False).fit([image], [mask])


def _image_with_wbc(radius: int) -> np.ndarray:
    image = np.empty((360, 360, 3), np.uint8)
    image[:] = PINK
    image[_disk(radius, (180, 180), (360, 360))] = VIOLET
    return image


def test_predict_measures_by_the_probe_where_the_ruler_read_pieces(model, monkeypatch):
    """The ruler says training scale; the one WBC found there is 3x too wide: the probe finds factor 1/3."""
    monkeypatch.setattr(scale_module, "measure_red_cells", lambda image: (model.training_scale_.rbc_diameter, 40))
    prediction = model.predict(_image_with_wbc(90), cells=False)
    assert prediction.scale.method == "wbc-probe"
    assert prediction.scale.factor == pytest.approx(1 / 3, rel=0.1)
    assert "pieces of larger red cells" in prediction.scale.detail
    assert prediction.labels.shape == (360, 360) and prediction.labels.max() == 1


def test_predict_keeps_the_ruler_where_the_wbc_fits_it(model, monkeypatch):
    monkeypatch.setattr(scale_module, "measure_red_cells", lambda image: (model.training_scale_.rbc_diameter, 40))
    prediction = model.predict(_image_with_wbc(30), cells=False)
    assert (prediction.scale.method, prediction.scale.factor) == ("red-cells", 1.0)
    assert prediction.labels.max() == 1
