"""Soft Dice loss, Dice + binary cross-entropy, and a thresholded Dice metric.

Written with ``keras.ops`` only, so they run on any Keras backend.  All work per
image (reduction over height, width and channel) and return one value per
image; Keras averages over the batch.  Per-image Dice matches how the suite
scores (mean per-image Dice) and keeps a small WBC from being drowned by a
large one in the same batch.
"""

from __future__ import annotations

__all__ = ["soft_dice_loss", "dice_bce_loss", "dice_coefficient", "get_loss"]

# Keeps the ratio defined when both masks are empty (Dice 1 there) and smooths
# the gradient for nearly empty predictions.
_SMOOTH = 1.0


def _flatten(y_true, y_pred):
    from keras import ops

    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    batch = ops.shape(y_pred)[0]
    return ops.reshape(y_true, (batch, -1)), ops.reshape(y_pred, (batch, -1))


def soft_dice_loss(y_true, y_pred):
    """``1 - soft Dice`` per image.

    Parameters
    ----------
    y_true : tensor, shape (N, H, W[, 1]), values in {0, 1}
    y_pred : tensor, shape (N, H, W[, 1]), probabilities in [0, 1]

    Returns
    -------
    tensor, shape (N,), float32, values in [0, 1]
    """
    from keras import ops

    t, p = _flatten(y_true, y_pred)
    inter = ops.sum(t * p, axis=1)
    total = ops.sum(t, axis=1) + ops.sum(p, axis=1)
    return 1.0 - (2.0 * inter + _SMOOTH) / (total + _SMOOTH)


def dice_bce_loss(y_true, y_pred):
    """Soft Dice loss plus mean binary cross-entropy, per image.

    Cross-entropy gives every pixel a gradient even where Dice saturates, which
    speeds up the start of training. Shapes as in :func:`soft_dice_loss`.
    """
    from keras import ops

    t, p = _flatten(y_true, y_pred)
    eps = 1e-6
    p_clipped = ops.clip(p, eps, 1.0 - eps)
    bce = -ops.mean(t * ops.log(p_clipped) + (1.0 - t) * ops.log(1.0 - p_clipped), axis=1)
    return soft_dice_loss(y_true, y_pred) + bce


def dice_coefficient(y_true, y_pred):
    """Hard Dice per image, predictions thresholded at 0.5 (the metric name is ``dice``).

    Returns
    -------
    tensor, shape (N,), float32, values in [0, 1]; 1 when both masks are empty.
    """
    from keras import ops

    t, p = _flatten(y_true, y_pred)
    p = ops.cast(p > 0.5, "float32")
    inter = ops.sum(t * p, axis=1)
    total = ops.sum(t, axis=1) + ops.sum(p, axis=1)
    return (2.0 * inter + 1e-6) / (total + 1e-6)


dice_coefficient.__name__ = "dice"

_LOSSES = {"dice": soft_dice_loss, "dice_bce": dice_bce_loss}


def get_loss(name: str):
    """Loss function by name: ``"dice"`` or ``"dice_bce"``."""
    try:
        return _LOSSES[name]
    except KeyError:
        raise ValueError(f"Unknown loss {name!r}; choose one of {sorted(_LOSSES)}.") from None
