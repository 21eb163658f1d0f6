"""Training loop for the U-Net: seeded, with a validation split inside the training data.

The loop is plain Keras (``train_on_batch`` over seeded augmented batches,
validation Dice every epoch, early stopping with best-weights restore, a
cosine or plateau learning-rate schedule, a ``Progbar`` per epoch), so it runs
on any Keras backend and uses a GPU automatically when the backend sees one.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from unet.batches import AugmentedBatches, fit_to_size, split_validation
from unet.config import TrainConfig, scheduled_rate
from unet.device import configure_threads, describe_device
from unet.model import UNetConfig, build_unet
from unet.trainers import kept_trainer

__all__ = ["train_unet"]

log = logging.getLogger(__name__)


def _validate(model, x_val: np.ndarray, y_val: np.ndarray, loss_fn, batch_size: int) -> tuple[float, float]:
    """Mean per-image loss and hard Dice of ``model`` on the validation arrays."""
    from keras import ops

    from unet.losses import dice_coefficient

    losses, dices = [], []
    for start in range(0, len(x_val), batch_size):
        pred = model.predict_on_batch(x_val[start:start + batch_size])
        y = y_val[start:start + batch_size]
        losses.append(ops.convert_to_numpy(loss_fn(y, pred)))
        dices.append(ops.convert_to_numpy(dice_coefficient(y, pred)))
    return float(np.concatenate(losses).mean()), float(np.concatenate(dices).mean())



def train_unet(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    model_config: UNetConfig,
    train_config: TrainConfig,
    *,
    seed: int = 0,
    verbose: int | str = "auto",
    start_weights: list[np.ndarray] | None = None,
):
    """Train a U-Net from scratch, or further from given weights (fine-tuning).

    Parameters
    ----------
    images : sequence of ndarray, each (H, W, 3) uint8
    masks : sequence of ndarray, each (H, W) bool
    model_config, train_config : UNetConfig, TrainConfig
    seed : int
        Seeds Keras (weights, dropout), the split, the crops and the augmentation.
    verbose : int or "auto"
        Keras verbosity: 1 a progress bar per epoch, 2 one line per epoch,
        0 silent; "auto" is 1 on a terminal and 2 otherwise.
    start_weights : list of ndarray, optional
        Every weight of a U-Net of ``model_config`` (``keras.Model.get_weights``,
        batch-norm statistics included) to start from instead of the seeded
        initial ones; the seed still draws the split, crops, augmentation and
        dropout.

    Returns
    -------
    model : keras.Model
        With the weights of the best validation-Dice epoch, or of the last
        epoch when ``train_config.val_fraction`` is 0.
    history : list of dict
        One dict per epoch: epoch, loss, val_loss, dice, val_dice, lr,
        seconds (``val_loss`` and ``val_dice`` None without validation).
    info : dict
        JSON-able: device, backend, epochs_run, best_epoch, best_val_dice,
        params, fit_seconds, fit_cpu_seconds, n_train, n_val, seed.
    """
    import keras

    from unet.losses import get_loss

    if train_config.patch_size % model_config.size_multiple:
        raise ValueError(
            f"patch_size {train_config.patch_size} must be a multiple of {model_config.size_multiple} "
            f"(input_scale * 2**depth); change one of them."
        )
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    configure_threads()
    keras.utils.set_random_seed(seed)
    device = describe_device()
    log.info("Training U-Net on %s", device)

    t0, c0 = time.perf_counter(), time.process_time()
    train_idx, val_idx = split_validation(len(images), train_config.val_fraction, seed)
    train_images = [images[i] for i in train_idx]
    train_masks = [masks[i] for i in train_idx]
    side = train_config.patch_size
    val_pairs = [fit_to_size(images[i], masks[i], side, None) for i in val_idx]
    # reshape, not stack: with nothing held out the arrays are empty but keep their patch shape.
    x_val = np.asarray([p[0] for p in val_pairs], np.float32).reshape(-1, side, side, 3)
    y_val = np.asarray([p[1] for p in val_pairs], np.float32).reshape(-1, side, side, 1)

    # The seeded starting point: initial weights and the dropout layer's seed.
    model = build_unet(model_config)
    if start_weights is not None:
        shapes = [w.shape for w in model.get_weights()]
        if [np.shape(w) for w in start_weights] != shapes:
            raise ValueError("start_weights do not fit a U-Net of this model config; fine-tune with the "
                             "configuration the weights were trained with.")
        model.set_weights(start_weights)
    loss_fn = get_loss(train_config.loss)
    with kept_trainer(model, model_config, train_config, loss_fn) as trainer:
        history = _fit_loop(trainer, AugmentedBatches(train_images, train_masks, train_config, seed),
                            x_val, y_val, loss_fn, train_config, verbose)
        # The returned model is the trainer's own copy, never the trainer,
        # which the next fit will overwrite.
        model.set_weights(trainer.get_weights())
    validated = len(val_idx) > 0
    # Without validation the last epoch's weights are kept, so it is the "best" one.
    best = (max(history, key=lambda r: r["val_dice"]) if validated and history
            else {"epoch": len(history), "val_dice": float("nan")})
    info = {
        "device": device,
        "backend": keras.backend.backend(),
        "epochs_run": len(history),
        "best_epoch": int(best["epoch"]),
        "best_val_dice": float(best["val_dice"]) if validated else None,
        "params": int(model.count_params()),
        "fit_seconds": round(time.perf_counter() - t0, 2),
        # Process CPU seconds: where other work runs, wall time says more about
        # the neighbours than about the model.
        "fit_cpu_seconds": round(time.process_time() - c0, 2),
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "seed": int(seed),
        "start": "given weights" if start_weights is not None else "seeded initial weights",
    }
    return model, history, info



def _fit_loop(model, batches: AugmentedBatches, x_val: np.ndarray, y_val: np.ndarray, loss_fn,
              config: TrainConfig, verbose: int) -> list[dict[str, Any]]:
    """Epochs of ``train_on_batch`` with validation, schedule, early stopping and best-weights restore.

    Why not ``model.fit``: on the TensorFlow backend, a process whose first
    ``fit`` reads a ``PyDataset`` trained 2-2.5x slower per step than one fed
    the same batches through ``train_on_batch`` (8-10 s against 3.3-3.5 s an
    epoch of 14 batches of 8, measured on 2 idle cores; the cause looked like
    the tf.data pipeline, not the model).  This loop does what the callbacks
    did, on any backend.

    Returns
    -------
    list of dict
        One per epoch run: epoch, loss, val_loss, dice, val_dice, lr, seconds.
    """
    import keras

    # The next batch is augmented in a second thread while the model trains
    # on this one (numpy and SciPy there, TensorFlow here, both mostly free
    # of the GIL).  One worker asks for the batches in order, within one
    # epoch, so the augmenter's random draws and the batches are the same
    # as without it (the same weights, checked bit for bit on fold 0), while
    # the augmentation hides behind the training step: about an eighth of a
    # fold's fit on 2 cores (52.6 s against 60.1 s serial).
    with ThreadPoolExecutor(1, thread_name_prefix="wbc-augment") as augmenting:
        return _epochs(model, batches, x_val, y_val, loss_fn, config, verbose, augmenting, keras)


def _epochs(model, batches: AugmentedBatches, x_val: np.ndarray, y_val: np.ndarray, loss_fn, config: TrainConfig,
            verbose: int, augmenting: ThreadPoolExecutor, keras) -> list[dict[str, Any]]:
    """The epochs of :func:`_fit_loop`, with the next batch made by ``augmenting`` meanwhile."""
    history: list[dict[str, Any]] = []
    best_dice, best_weights, since_best = -np.inf, None, 0
    plateau_best, plateau_wait = np.inf, 0
    rate = config.learning_rate
    val_batch = max(config.batch_size, 16)
    epochs, started = config.epochs, time.perf_counter()
    epoch = 0
    while epoch < epochs:
        t0 = time.perf_counter()
        if config.schedule == "cosine":
            rate = scheduled_rate(config, epoch)
        model.optimizer.learning_rate.assign(rate)
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        bar = keras.utils.Progbar(len(batches), verbose=verbose)
        loss_sum = dice_sum = 0.0
        seen = 0
        pending = augmenting.submit(batches.__getitem__, 0)
        for step in range(len(batches)):
            x, y = pending.result()
            if step + 1 < len(batches):
                pending = augmenting.submit(batches.__getitem__, step + 1)
            logs = model.train_on_batch(x, y, return_dict=True)  # metrics are per batch here
            loss_sum += float(logs["loss"]) * len(x)
            dice_sum += float(logs["dice"]) * len(x)
            seen += len(x)
            bar.update(step + 1, values=[("loss", float(logs["loss"])), ("dice", float(logs["dice"]))],
                       finalize=False)
        batches.on_epoch_end()
        if len(x_val):
            val_loss, val_dice = _validate(model, x_val, y_val, loss_fn, val_batch)
            bar.update(len(batches), values=[("val_loss", val_loss), ("val_dice", val_dice)], finalize=True)
        else:
            val_loss = val_dice = None
            bar.update(len(batches), finalize=True)
        history.append({
            "epoch": epoch + 1, "loss": loss_sum / seen, "val_loss": val_loss,
            "dice": dice_sum / seen, "val_dice": val_dice, "lr": float(rate),
            "seconds": round(time.perf_counter() - t0, 3),
        })
        if val_dice is None:
            pass  # nothing held out (the config allows it only without plateau and early stopping)
        elif val_dice > best_dice:
            best_dice, best_weights, since_best = val_dice, model.get_weights(), 0
        else:
            since_best += 1
        if config.schedule == "plateau":
            # Halve the rate after plateau_patience epochs without a lower validation loss.
            if val_loss < plateau_best:
                plateau_best, plateau_wait = val_loss, 0
            else:
                plateau_wait += 1
                if plateau_wait >= config.plateau_patience:
                    rate, plateau_wait = max(rate * 0.5, config.min_lr), 0
        if config.patience > 0 and since_best >= config.patience:
            break
        if epoch == 0 and config.time_budget_s is not None:
            # The first epoch's time sets how many fit the budget; the cosine
            # schedule is then laid over that many, so the rate still decays.
            fit = int(config.time_budget_s // max(time.perf_counter() - started, 1e-6))
            epochs = max(1, min(config.epochs, fit))
            config = dataclasses.replace(config, epochs=epochs)
        epoch += 1
    # Always restore the best epoch's weights (with validation); with patience 0 never stop early.
    if best_weights is not None:
        model.set_weights(best_weights)
    return history
