"""UNetSegmenter on tiny synthetic data: one training step, prediction shapes, save/load."""

import json

import numpy as np
import pytest

from unet.segmenter import PROFILES, UNetSegmenter, default_segmenter, paper_segmenter

TINY = dict(base_width=4, depth=2, epochs=1, steps_per_epoch=1, batch_size=4, patch_size=32,
            val_fraction=0.25, verbose=0)


def _disk_image(rng, size=32):
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(10, size - 10, 2)
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 < 36
    image = np.full((size, size, 3), (225, 200, 210), np.uint8)
    image[mask] = (90, 50, 150)
    noise = rng.integers(-10, 10, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), mask


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    pairs = [_disk_image(rng) for _ in range(8)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.fixture(scope="module")
def fitted(data):
    images, masks = data
    # tile=64 so that a 150 x 200 image is cut into several tiles.
    return UNetSegmenter("default", random_state=0, tile=64, overlap=16, context=8, **TINY).fit(images, masks)


def test_fit_records_history_and_info(fitted):
    assert len(fitted.history_) == 1
    assert {"epoch", "loss", "val_loss", "val_dice", "lr"} <= set(fitted.history_[0])
    info = json.loads(json.dumps(fitted.fit_info_))  # JSON-able
    assert info["epochs_run"] == 1 and info["best_epoch"] == 1
    assert info["params"] > 0 and "CPU" in info["device"] or "GPU" in info["device"]


@pytest.mark.parametrize("shape", [(32, 32), (70, 45), (150, 200)])
def test_predict_any_size(fitted, shape):
    image = np.random.default_rng(1).integers(0, 256, shape + (3,)).astype(np.uint8)
    prob = fitted.predict_proba(image)
    assert prob.shape == shape and prob.dtype == np.float32
    assert (prob >= 0).all() and (prob <= 1).all()


def test_save_load_round_trip(fitted, tmp_path):
    fitted.save(tmp_path / "unet")
    assert (tmp_path / "unet" / "model.keras").is_file() and (tmp_path / "unet" / "config.json").is_file()
    loaded = UNetSegmenter.load(tmp_path / "unet")
    image = np.random.default_rng(2).integers(0, 256, (150, 200, 3)).astype(np.uint8)
    np.testing.assert_array_equal(loaded.predict_proba(image), fitted.predict_proba(image))
    assert loaded.model_config_ == fitted.model_config_
    assert loaded.history_ == fitted.history_


@pytest.mark.slow  # a second fit; kept out of the default run for speed
def test_same_seed_same_model(data, fitted):
    again = UNetSegmenter("default", random_state=0, tile=64, overlap=16, context=8, **TINY).fit(*data)
    image = data[0][0]
    np.testing.assert_allclose(again.predict_proba(image), fitted.predict_proba(image), atol=1e-5)


def test_not_fitted():
    with pytest.raises(RuntimeError, match="not fitted"):
        UNetSegmenter().predict_proba(np.zeros((8, 8, 3), np.uint8))


def test_input_validation(data):
    images, masks = data
    seg = UNetSegmenter("default", **TINY)
    with pytest.raises(ValueError, match="masks"):
        seg.fit(images, masks[:-1])
    with pytest.raises(ValueError, match="uint8"):
        seg.fit([im.astype(np.float32) for im in images], masks)
    with pytest.raises(ValueError, match="shape"):
        seg.fit(images, [m[:-1] for m in masks])


def test_unknown_option_and_profile():
    with pytest.raises(ValueError, match="Unknown U-Net option"):
        UNetSegmenter(base_widht=8)
    with pytest.raises(ValueError, match="Unknown U-Net profile"):
        UNetSegmenter("fast")


def test_load_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        UNetSegmenter.load(tmp_path)


def test_factories_and_profiles():
    assert default_segmenter(random_state=3).profile == "default"
    paper = paper_segmenter()
    model_cfg, train_cfg, _ = PROFILES[paper.profile]
    assert (model_cfg.base_width, model_cfg.dropout, train_cfg.learning_rate, train_cfg.loss,
            train_cfg.epochs, train_cfg.batch_size, train_cfg.augment) == (32, 0.25, 1e-4, "dice", 50, 8, "d4")
