"""U-Net config and architecture: JSON round trip, validation, shapes."""

import json

import numpy as np
import pytest

from unet.config import TrainConfig
from unet.model import UNetConfig


def test_config_json_round_trip():
    # The segmenter saves both configs as dicts inside one JSON file.
    cfg = UNetConfig(base_width=8, depth=3, dropout=0.1, batch_norm=True, input_scale=2)
    assert UNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert json.loads(json.dumps(cfg.to_dict()))["base_width"] == 8
    train = TrainConfig(epochs=3, schedule="cosine", loss="dice_bce", steps_per_epoch=None)
    assert TrainConfig.from_dict(json.loads(json.dumps(train.to_dict()))) == train


@pytest.mark.parametrize("cls", [UNetConfig, TrainConfig])
def test_unknown_key_rejected(cls):
    with pytest.raises(ValueError, match="Unknown"):
        cls.from_dict({"bogus_key": 1})


@pytest.mark.parametrize("kwargs", [{"base_width": 0}, {"depth": 0}, {"dropout": 1.0}, {"input_scale": 3}])
def test_invalid_values_rejected(kwargs):
    with pytest.raises(ValueError):
        UNetConfig(**kwargs)


def test_size_multiple():
    assert UNetConfig(depth=4, input_scale=1).size_multiple == 16
    assert UNetConfig(depth=2, input_scale=2).size_multiple == 8


@pytest.mark.parametrize("scale", [1, 2])
def test_build_unet_shapes(scale):
    from unet.model import build_unet

    model = build_unet(UNetConfig(base_width=4, depth=2, batch_norm=True, input_scale=scale))
    x = np.random.default_rng(0).integers(0, 256, (2, 48, 32, 3)).astype(np.float32)
    y = np.asarray(model.predict_on_batch(x))
    assert y.shape == (2, 48, 32, 1)
    assert y.dtype == np.float32
    assert ((y >= 0) & (y <= 1)).all()


def test_seed_design_width_and_params():
    from unet.model import build_unet

    model = build_unet(UNetConfig(base_width=32, depth=4))
    # 32 -> 512 channels, about 7.8 M parameters like the seed design.
    assert model.get_layer("bottom_conv2").filters == 512
    assert 7.5e6 < model.count_params() < 8.0e6


def test_bilinear_upsample_matches_interpolation():
    import keras

    from unet.model import _bilinear_upsample

    inp = keras.Input((None, None, 1))
    model = keras.Model(inp, _bilinear_upsample(inp, 2))
    x = np.arange(48, dtype=np.float32).reshape(1, 6, 8, 1)
    y = np.asarray(model.predict_on_batch(x))[0, :, :, 0]
    # Half-pixel-centred bilinear: output row 2i+1 lies 1/4 of the way from input row i to i+1.
    expected_row = 0.75 * x[0, 1, :, 0] + 0.25 * x[0, 2, :, 0]
    assert y.shape == (12, 16)
    np.testing.assert_allclose(y[3, 1:-1:2], expected_row[:-1] * 0.75 + expected_row[1:] * 0.25, rtol=1e-5)
