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
    assert info["params"] > 0
    assert "CPU" in info["device"] or "GPU" in info["device"]


@pytest.mark.parametrize("shape", [(32, 32), (70, 45), (150, 200)])
def test_predict_any_size(fitted, shape):
    image = np.random.default_rng(1).integers(0, 256, shape + (3,)).astype(np.uint8)
    prob = fitted.predict_proba(image)
    assert prob.shape == shape and prob.dtype == np.float32
    assert (prob >= 0).all() and (prob <= 1).all()


def test_with_views_shares_the_weights_and_averages_the_eight_views(fitted):
    viewed = fitted.with_views("d4")
    assert viewed.model_ is fitted.model_ and fitted.predict_config_.tta is False
    image = np.random.default_rng(3).integers(0, 256, (48, 48, 3)).astype(np.uint8)
    # The average over the square's symmetries is the same whichever way up the image is.
    turned = viewed.predict_proba(np.ascontiguousarray(np.rot90(image)))
    np.testing.assert_allclose(np.rot90(viewed.predict_proba(image)), turned, atol=1e-5)
    assert not np.allclose(np.rot90(fitted.predict_proba(image)), fitted.predict_proba(np.rot90(image)), atol=1e-5)


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


def test_kept_trainer_gives_the_weights_of_a_freshly_compiled_one(data):
    from unet import trainers

    images, masks = data
    options = dict(tile=64, overlap=16, context=8, **TINY)
    trainers._TRAINERS.clear()
    # The first fit compiles a trainer and keeps it; its Adam moments and
    # dropout seed are then those of its own step.
    first = UNetSegmenter("default", random_state=1, **options).fit(images[:6], masks[:6])
    first_weights = [w.copy() for w in first.model_.get_weights()]
    assert trainers._TRAINERS
    reused = UNetSegmenter("default", random_state=2, **options).fit(images[2:], masks[2:])
    # The earlier model is its own copy: the next fit did not change it.
    for before, after in zip(first_weights, first.model_.get_weights()):
        np.testing.assert_array_equal(before, after)
    trainers._TRAINERS.clear()
    fresh = UNetSegmenter("default", random_state=2, **options).fit(images[2:], masks[2:])
    for kept, new in zip(reused.model_.get_weights(), fresh.model_.get_weights()):
        np.testing.assert_array_equal(kept, new)


def test_not_fitted(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted"):
        UNetSegmenter().predict_proba(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(NotFittedError, match="not fitted"):
        UNetSegmenter().save(tmp_path / "unet")


def test_clone_keeps_overrides():
    from sklearn.base import clone

    seg = UNetSegmenter("paper", random_state=4, verbose=0, epochs=3, base_width=8)
    copy = clone(seg)
    assert copy.get_params() == seg.get_params() == {
        "profile": "paper", "random_state": 4, "verbose": 0, "epochs": 3, "base_width": 8}
    copy.set_params(epochs=5, random_state=1)
    assert copy.overrides == {"epochs": 3, "base_width": 8} | {"epochs": 5} and copy.random_state == 1
    assert seg.overrides["epochs"] == 3  # the original is untouched
    with pytest.raises(ValueError, match="Unknown U-Net option"):
        copy.set_params(base_widht=8)


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


def test_training_loop_schedule_and_best_weights(data):
    """The own loop: cosine rates as scheduled, early stopping honoured, best epoch's weights restored."""
    from unet.batches import fit_to_size, split_validation
    from unet.config import TrainConfig, scheduled_rate
    from unet.losses import get_loss
    from unet.model import UNetConfig
    from unet.train import _validate, train_unet

    images, masks = data
    model_cfg = UNetConfig(base_width=4, depth=2, dropout=0.0, batch_norm=True, input_scale=1)
    train_cfg = TrainConfig(epochs=4, batch_size=4, steps_per_epoch=1, patch_size=32, learning_rate=1e-2,
                            schedule="cosine", warmup_epochs=1, loss="dice_bce", val_fraction=0.25, patience=0,
                            mosaic=0.5)
    model, history, info = train_unet(images, masks, model_cfg, train_cfg, seed=3, verbose=0)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert [h["lr"] for h in history] == pytest.approx([scheduled_rate(train_cfg, e) for e in range(4)])
    best = max(history, key=lambda h: h["val_dice"])
    assert info["best_epoch"] == best["epoch"]
    # The returned weights are the best epoch's: validating them again gives its score.
    _, val_idx = split_validation(len(images), train_cfg.val_fraction, 3)
    pairs = [fit_to_size(images[i], masks[i], 32, None) for i in val_idx]
    x_val = np.stack([p[0] for p in pairs]).astype(np.float32)
    y_val = np.stack([p[1] for p in pairs]).astype(np.float32)[..., None]
    _, dice = _validate(model, x_val, y_val, get_loss("dice_bce"), 16)
    assert dice == pytest.approx(best["val_dice"], abs=1e-5)
    # With patience 1 the loop may stop before the last epoch, never after it.
    stopped = TrainConfig(**{**train_cfg.to_dict(), "patience": 1, "epochs": 6})
    _, history, _ = train_unet(images, masks, model_cfg, stopped, seed=3, verbose=0)
    best_epoch = max(history, key=lambda h: h["val_dice"])["epoch"]
    assert len(history) <= 6 and (len(history) == 6 or len(history) == best_epoch + 1)


def test_padded_side_buckets_large_sides_only():
    from unet.segmenter import _padded_side

    assert _padded_side(100, 16, None) == 112
    assert _padded_side(100, 16, 256) == 112  # small sides: the model's size multiple
    assert _padded_side(1118, 16, None) == 1120
    assert _padded_side(1118, 16, 256) == 1280  # large sides: a multiple of the bucket


def test_per_shape_backends_see_few_shapes(fitted, monkeypatch):
    """With bucketing on, images of many sizes reach the network in few padded shapes, and are cropped back."""
    import unet.segmenter as segmenter

    monkeypatch.setattr(segmenter, "_compiles_per_shape", lambda: True)
    monkeypatch.setattr(segmenter, "SHAPE_BUCKET", 48)
    shapes = set()
    run = fitted._run
    monkeypatch.setattr(fitted, "_run", lambda x: shapes.add(x.shape[1:3]) or run(x))
    rng = np.random.default_rng(2)
    for h, w in [(50, 60), (52, 61), (57, 90), (60, 95)]:
        prob = fitted._predict_batch(rng.integers(0, 256, (1, h, w, 3)).astype(np.uint8))
        assert prob.shape == (1, h, w)
    assert shapes == {(96, 96)}
