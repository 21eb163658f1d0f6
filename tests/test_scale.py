"""Scale estimation: red-cell diameter from the image, training scale from the model folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from compare.data import read_image, resolve_data_dir
from compare.scale import (
    SIGTUPLE_RBC_DIAMETER,
    ScaleError,
    TrainingScale,
    estimate_rbc_diameter,
    scale_factor,
    training_scale,
)


def _smear(diameter: float, shape=(600, 600), seed: int = 0, cover: float = 0.5) -> np.ndarray:
    """Pink red cells with pale centres on bright plasma, some touching, placed at random."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    image = np.empty(shape + (3,), np.uint8)
    image[:] = (240, 235, 230)
    r = diameter / 2
    for _ in range(int(cover * shape[0] * shape[1] / (np.pi * r * r))):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        image[d2 < r * r] = (215, 120, 130)
        image[d2 < (0.35 * r) ** 2] = (225, 170, 175)  # central pallor
    return image


def _resize(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((round(w * factor), round(h * factor)), Image.Resampling.LANCZOS))


def test_synthetic_smear_diameter():
    assert estimate_rbc_diameter(_smear(30)) == pytest.approx(30, rel=0.1)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_synthetic_smear_scales_with_the_image(factor):
    image = _smear(30, shape=(500, 500))
    assert estimate_rbc_diameter(_resize(image, factor)) == pytest.approx(30 * factor, rel=0.15)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_shipped_image_scales_with_the_image(factor):
    image = read_image(resolve_data_dir().path / "Train_Data" / "1467973104.jpg")
    at_one = estimate_rbc_diameter(image)
    assert at_one == pytest.approx(SIGTUPLE_RBC_DIAMETER, rel=0.1)
    assert estimate_rbc_diameter(_resize(image, factor)) == pytest.approx(at_one * factor, rel=0.15)


def test_blank_image_cannot_be_measured():
    with pytest.raises(ScaleError, match="blank.png"):
        estimate_rbc_diameter(np.full((200, 200, 3), 240, np.uint8), name="blank.png")


def test_training_scale_from_instances(tmp_path):
    (tmp_path / "instances.json").write_text(json.dumps({"threshold": 0.5, "min_area": 800, "split_area": 5000,
                                                          "min_distance": 18}))
    assert training_scale(tmp_path) == TrainingScale(wbc_diameter=pytest.approx(60.0),
                                                     rbc_diameter=SIGTUPLE_RBC_DIAMETER)
    (tmp_path / "scale.json").write_text(json.dumps({"wbc_diameter_px": 70, "rbc_diameter_px": 35}))
    assert training_scale(tmp_path) == TrainingScale(70.0, 35.0)


def test_training_scale_needs_a_model_folder(tmp_path):
    with pytest.raises(ScaleError, match="instances.json"):
        training_scale(tmp_path)


def test_scale_factor_options():
    training = TrainingScale(wbc_diameter=60.0, rbc_diameter=30.0)
    image = _smear(60, shape=(700, 700), cover=0.3)
    assert scale_factor(image, training) == 1.0
    assert scale_factor(image, training, wbc_diameter=120) == pytest.approx(0.5)
    assert scale_factor(image, training, auto=True) == pytest.approx(0.5, rel=0.1)
    with pytest.raises(ValueError, match="either"):
        scale_factor(image, training, wbc_diameter=120, auto=True)
    with pytest.raises(ValueError, match="positive"):
        scale_factor(image, training, wbc_diameter=-3)
