"""Dice loss, Dice + BCE and the Dice metric on hand-made cases."""

import numpy as np
import pytest

from unet.losses import dice_bce_loss, dice_coefficient, get_loss, soft_dice_loss


def _np(x):
    from keras import ops

    return np.asarray(ops.convert_to_numpy(x))


def _masks():
    true = np.zeros((2, 8, 8, 1), np.float32)
    true[0, 2:6, 2:6] = 1  # one square; image 1 is empty
    return true


def test_perfect_prediction():
    true = _masks()
    assert np.allclose(_np(soft_dice_loss(true, true)), 0.0, atol=1e-6)
    assert np.allclose(_np(dice_coefficient(true, true)), 1.0)  # empty vs empty counts as perfect


def test_dice_metric_value():
    true = _masks()[:1]
    pred = np.zeros_like(true)
    pred[0, 2:6, 2:4] = 0.9  # half the square
    assert _np(dice_coefficient(true, pred))[0] == pytest.approx(2 * 8 / (16 + 8), rel=1e-5)


def test_losses_order_and_shape():
    true = _masks()
    good = true * 0.9 + 0.05
    bad = 1.0 - good
    for loss in (soft_dice_loss, dice_bce_loss):
        lg, lb = _np(loss(true, good)), _np(loss(true, bad))
        assert lg.shape == (2,)
        assert (lg < lb).all()


def test_get_loss():
    assert get_loss("dice") is soft_dice_loss
    with pytest.raises(ValueError, match="Unknown loss"):
        get_loss("focal")
