"""How to train the U-Net: :class:`TrainConfig` and its learning-rate schedules."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from unet.augment import RECIPES

__all__ = ["SCHEDULES", "TrainConfig", "scheduled_rate"]

SCHEDULES = ("constant", "plateau", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Parameters
    ----------
    epochs : int
        Maximum number of epochs.
    batch_size : int
    steps_per_epoch : int or None
        Augmented batches per epoch; ``None`` means one pass over the training
        images (``ceil(n / batch_size)``).  More steps per epoch mean fewer
        validation passes per update.
    learning_rate : float
        Initial Adam learning rate.
    schedule : {"constant", "plateau", "cosine"}
        ``plateau`` halves the rate after ``plateau_patience`` epochs without a
        better validation loss; ``cosine`` decays it to ``min_lr`` over
        ``epochs`` after ``warmup_epochs`` of linear warm-up.
    plateau_patience : int
    min_lr : float
    warmup_epochs : int
    loss : {"dice", "dice_bce"}
    augment : {"none", "d4", "full", "stain", "stain_pale"}
        Augmentation recipe, see :mod:`unet.augment`.
    val_fraction : float
        Share of the training images held out to pick the best epoch and
        for early stopping.  0 trains on every image and keeps the last
        epoch's weights, which needs a schedule that does not read a
        validation loss (``cosine`` or ``constant``) and ``patience`` 0.
    patience : int
        Epochs without a better validation Dice before stopping; the best
        weights are restored.  0 disables early stopping (the best weights
        are still restored).
    patch_size : int
        Side of the square training crops (images are cropped or
        mirror-padded to it); must be a multiple of the model's
        ``size_multiple``.
    mosaic : float
        Share of training samples drawn as a window of a 2 x 2 mosaic of four
        training pairs instead of one centred patch (:func:`unet.sampling.mosaic_crop`),
        so the network also sees WBCs off-centre and windows with none.
    field_edge : float
        Share of training samples given a synthetic dark field-stop edge
        (:func:`unet.sampling.add_field_edge`).
    time_budget_s : float or None
        Wall seconds the epochs may take.  After the first epoch the number
        of epochs is cut to what fits (``epochs`` at most) and the schedule
        is laid over that number, so the learning rate still decays to its
        end.  The epoch count it reaches depends on the machine's speed: it
        is recorded as ``epochs_run``, and that many ``epochs`` without a
        budget repeat the fit exactly.  None: run ``epochs``.
    """

    epochs: int = 50
    batch_size: int = 8
    steps_per_epoch: int | None = None
    learning_rate: float = 1e-4
    schedule: str = "plateau"
    plateau_patience: int = 5
    min_lr: float = 1e-6
    warmup_epochs: int = 0
    loss: str = "dice"
    augment: str = "d4"
    val_fraction: float = 0.15
    patience: int = 10
    patch_size: int = 128
    mosaic: float = 0.0
    field_edge: float = 0.0
    time_budget_s: float | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}.")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be None or >= 1, got {self.steps_per_epoch}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Unknown schedule {self.schedule!r}; choose one of {list(SCHEDULES)}.")
        if self.loss not in ("dice", "dice_bce"):
            raise ValueError(f"Unknown loss {self.loss!r}; choose 'dice' or 'dice_bce'.")
        if self.augment not in RECIPES:
            raise ValueError(f"Unknown augment recipe {self.augment!r}; choose one of {list(RECIPES)}.")
        if not 0.0 <= self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must lie in [0, 0.5), got {self.val_fraction}.")
        if self.val_fraction == 0 and (self.schedule == "plateau" or self.patience > 0):
            raise ValueError(f"val_fraction 0 holds no image out, so nothing can pick the best epoch: it needs "
                             f"schedule 'cosine' or 'constant' and patience 0, got schedule {self.schedule!r} "
                             f"and patience {self.patience}.")
        if not (0.0 <= self.mosaic <= 1.0 and 0.0 <= self.field_edge <= 1.0):
            raise ValueError(f"mosaic and field_edge are shares in [0, 1], got {self.mosaic} and {self.field_edge}.")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be None or positive, got {self.time_budget_s}.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys are rejected."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown TrainConfig key(s) {unknown}; known keys are {sorted(known)}.")
        return cls(**data)


def scheduled_rate(config: TrainConfig, epoch: int) -> float:
    """Learning rate of ``epoch`` (0-based) under ``cosine`` (warm-up then decay); the initial rate otherwise."""
    if config.schedule != "cosine":
        return config.learning_rate
    if epoch < config.warmup_epochs:
        return config.learning_rate * (epoch + 1) / (config.warmup_epochs + 1)
    span = max(config.epochs - config.warmup_epochs, 1)
    progress = min((epoch - config.warmup_epochs) / span, 1.0)
    return config.min_lr + 0.5 * (config.learning_rate - config.min_lr) * (1 + math.cos(math.pi * progress))
