"""Compiled training models kept between U-Net fits.

Tracing the training step costs 5-8 s on 2 CPU cores, once per compiled
model, and ``compare run`` fits the same architecture 6 times per run (once
per fold and the final model), so :func:`kept_trainer` lends each fit a kept
compiled model in the state a freshly compiled one would have.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from unet.config import TrainConfig
from unet.model import UNetConfig, build_unet

__all__ = ["kept_trainer"]

#: Compiled training models kept for the next fit, by (backend, model config, loss name).
_TRAINERS: dict[tuple, Any] = {}
#: Keys of the trainers some fit is using now.
_TRAINERS_IN_USE: set[tuple] = set()
_TRAINERS_LOCK = threading.Lock()


def _compiled(model_config: UNetConfig, train_config: TrainConfig, loss_fn):
    """A new U-Net compiled for training, its optimizer built, with the optimizer's initial state."""
    import keras

    from unet.losses import dice_coefficient

    trainer = build_unet(model_config)
    trainer.compile(
        optimizer=keras.optimizers.Adam(learning_rate=train_config.learning_rate),
        loss=loss_fn,
        metrics=[dice_coefficient],
    )
    # Built now rather than on the first step, so that its starting values
    # (zero moments, step 0) can be put back before every later fit.
    trainer.optimizer.build(trainer.trainable_variables)
    return trainer, [v.numpy() for v in trainer.optimizer.variables]


@contextmanager
def kept_trainer(start, model_config: UNetConfig, train_config: TrainConfig, loss_fn) -> Iterator[Any]:
    """A compiled training model holding ``start``'s state, for the duration of one fit.

    The compiled model of a fit is kept and reused by the next fit with the
    same backend, architecture and loss: every variable of ``start`` (weights,
    batch-norm statistics, the dropout layer's seed state) is copied in and
    the optimizer is reset to its initial state, which gives the same
    weights, bit for bit, as a freshly compiled model (checked on three
    successive fits).  A fit that finds the kept model in use by another
    thread compiles its own.

    Parameters
    ----------
    start : keras.Model
        The freshly built, seeded U-Net the fit starts from.
    model_config : UNetConfig
    train_config : TrainConfig
    loss_fn : callable
        The training loss, ``(y_true, y_pred) -> (B,)`` tensor.

    Yields
    ------
    keras.Model
        Compiled, holding ``start``'s variables and a fresh optimizer state;
        copy its weights out before the context ends, as the next fit reuses it.
    """
    import keras

    key = (keras.backend.backend(), model_config, train_config.loss)
    with _TRAINERS_LOCK:
        reuse = key in _TRAINERS and key not in _TRAINERS_IN_USE
        if key not in _TRAINERS_IN_USE:
            _TRAINERS_IN_USE.add(key)
            keep = True
        else:
            keep = False
    try:
        if reuse:
            trainer, optimizer_start = _TRAINERS[key]
        else:
            trainer, optimizer_start = _compiled(model_config, train_config, loss_fn)
        mismatched = [(a.path, b.path) for a, b in zip(start.variables, trainer.variables) if a.shape != b.shape]
        if len(start.variables) != len(trainer.variables) or mismatched:
            raise RuntimeError(f"U-Net trainer does not match the model it starts from: {mismatched[:3]}.")
        for source, target in zip(start.variables, trainer.variables):
            # A copy, not the same buffer: JAX's training step donates (frees)
            # its input buffers, which would leave ``start`` pointing at freed memory.
            target.assign(source.numpy())
        for variable, value in zip(trainer.optimizer.variables, optimizer_start):
            variable.assign(value)
        trainer.optimizer.learning_rate.assign(train_config.learning_rate)
        yield trainer
        if keep:
            with _TRAINERS_LOCK:
                _TRAINERS[key] = (trainer, optimizer_start)
    finally:
        if keep:
            with _TRAINERS_LOCK:
                _TRAINERS_IN_USE.discard(key)
