"""Seeded, augmented training batches and the held-out validation split."""

from __future__ import annotations

import math

import numpy as np

from unet.augment import augment_batch, make_augmenter
from unet.config import TrainConfig
from unet.sampling import add_field_edge, mosaic_crop

__all__ = ["AugmentedBatches", "fit_to_size", "split_validation"]


def fit_to_size(image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator | None):
    """Crop (randomly, or centred when ``rng`` is None) or mirror-pad a pair to ``size x size``.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    mask : ndarray, shape (H, W), bool
    size : int
    rng : numpy Generator or None

    Returns
    -------
    image : ndarray, shape (size, size, 3), uint8
    mask : ndarray, shape (size, size), bool
    """
    h, w = mask.shape
    pad_h, pad_w = max(size - h, 0), max(size - w, 0)
    if pad_h or pad_w:
        pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
        image = np.pad(image, pads + ((0, 0),), mode="symmetric")
        mask = np.pad(mask, pads, mode="symmetric")
        h, w = mask.shape
    if rng is None:
        y0, x0 = (h - size) // 2, (w - size) // 2
    else:
        y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return image[y0:y0 + size, x0:x0 + size], mask[y0:y0 + size, x0:x0 + size]


class AugmentedBatches:
    """Seeded, augmented training batches, one epoch at a time.

    Indexable like a Keras ``PyDataset`` (``len``, ``[i]``, ``on_epoch_end``)
    but a plain class: the training loop feeds its batches to
    ``train_on_batch`` itself (see :func:`unet.train.train_unet` for why).

    Parameters
    ----------
    images : sequence of ndarray, each (H, W, 3) uint8
    masks : sequence of ndarray, each (H, W) bool
    config : TrainConfig
    seed : int
    """

    def __init__(self, images, masks, config: TrainConfig, seed: int):
        self.images, self.masks, self.config = images, masks, config
        self.rng = np.random.default_rng(seed)
        self.augmenter = make_augmenter(config.augment, seed=seed)
        self.steps = config.steps_per_epoch or math.ceil(len(images) / config.batch_size)
        self.order = self._draw_order()

    def _draw_order(self) -> np.ndarray:
        # Enough shuffled passes over the images to fill one epoch.
        need = self.steps * self.config.batch_size
        passes = math.ceil(need / len(self.images))
        return np.concatenate([self.rng.permutation(len(self.images)) for _ in range(passes)])[:need]

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``index``: images (B, S, S, 3) float32 in [0, 255], masks (B, S, S, 1) float32."""
        size = self.config.batch_size
        pairs = [self._sample(i) for i in self.order[index * size:(index + 1) * size]]
        x, y = augment_batch(self.augmenter, [p[0] for p in pairs], [p[1] for p in pairs])
        return x.astype(np.float32), y

    def _sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        config, size = self.config, self.config.patch_size
        if config.mosaic and self.rng.random() < config.mosaic:
            # The drawn image plus three others, in random mosaic positions.
            picks = [i, *self.rng.integers(0, len(self.images), size=3)]
            self.rng.shuffle(picks)
            pieces = [fit_to_size(self.images[j], self.masks[j], size, self.rng) for j in picks]
            image, mask = mosaic_crop([p[0] for p in pieces], [p[1] for p in pieces], size, self.rng)
        else:
            image, mask = fit_to_size(self.images[i], self.masks[i], size, self.rng)
        if config.field_edge and self.rng.random() < config.field_edge:
            image, mask = add_field_edge(image, mask, self.rng)
        return image, mask

    def on_epoch_end(self) -> None:
        self.order = self._draw_order()


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into training and validation indices.

    At least one of each when ``fraction`` > 0; with ``fraction`` 0 every
    index is for training and the validation indices are empty.
    """
    if fraction == 0:
        if n < 1:
            raise ValueError("Need at least 1 training image, got 0.")
        return np.arange(n), np.arange(0)
    if n < 2:
        raise ValueError(f"Need at least 2 training images to hold out a validation split, got {n}.")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, round(n * fraction)), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
