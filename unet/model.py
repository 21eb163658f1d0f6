"""The U-Net architecture as a pure function of a frozen, JSON-able config.

Only ``keras`` and ``keras.layers`` are used, so the same code builds the model
under the TensorFlow, JAX or PyTorch backend (``KERAS_BACKEND``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["UNetConfig", "build_unet"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a U-Net.

    Parameters
    ----------
    base_width : int
        Channels of the first level; each deeper level doubles them
        (32 -> 512 over ``depth=4`` pooling steps in the seed design).
    depth : int
        Number of 2 x 2 max-pooling steps (levels below the top one).
    dropout : float
        Dropout rate before the final 1 x 1 sigmoid convolution.
    batch_norm : bool
        Batch normalisation after every 3 x 3 convolution (before the ReLU).
    input_scale : int
        Integer factor by which the model downsamples its input (average
        pooling) before the U-Net and upsamples the probabilities
        (bilinear) after it.  The SigTuple masks are drawn on a 4 x 4 block
        grid and a WBC is 50-70 px wide, so running at half resolution costs
        4x less compute for the same detail.  1 keeps full resolution.
    in_channels : int
        Channels of the input image (3 for RGB).
    """

    base_width: int = 32
    depth: int = 4
    dropout: float = 0.25
    batch_norm: bool = False
    input_scale: int = 1
    in_channels: int = 3

    def __post_init__(self) -> None:
        if not (isinstance(self.base_width, int) and self.base_width >= 1):
            raise ValueError(f"base_width must be a positive integer, got {self.base_width!r}.")
        if not (isinstance(self.depth, int) and 1 <= self.depth <= 6):
            raise ValueError(f"depth must be an integer from 1 to 6, got {self.depth!r}.")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}.")
        if not (isinstance(self.input_scale, int) and self.input_scale in (1, 2, 4)):
            raise ValueError(f"input_scale must be 1, 2 or 4, got {self.input_scale!r}.")
        if not (isinstance(self.in_channels, int) and self.in_channels >= 1):
            raise ValueError(f"in_channels must be a positive integer, got {self.in_channels!r}.")

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (pooling and scale)."""
        return self.input_scale * 2**self.depth

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields, JSON-serialisable."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        """Build from a dict; unknown keys are rejected (they signal a typo or a version skew)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown UNetConfig key(s) {unknown}; known keys are {sorted(known)}.")
        return cls(**data)


def _conv_block(x, filters: int, batch_norm: bool, name: str):
    """Two 3 x 3 convolutions with ReLU (optionally batch-normalised)."""
    from keras import layers

    for i in (1, 2):
        # Without batch norm the conv keeps its bias; with it the bias is redundant.
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm,
                          kernel_initializer="he_normal", name=f"{name}_conv{i}")(x)
        if batch_norm:
            # momentum 0.9: with a few hundred steps in all, the default 0.99
            # leaves the moving statistics half at their initial values.
            x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def _bilinear_kernel(factor: int):
    """Kernel of a stride-``factor`` transposed convolution that equals bilinear upsampling.

    Returns
    -------
    ndarray, shape (2 * factor, 2 * factor, 1, 1), float32
    """
    import numpy as np

    # 1-D weights of half-pixel-centred linear interpolation, e.g. [1, 3, 3, 1] / 4 for 2x.
    centre = factor - 0.5
    taps = 1.0 - np.abs(np.arange(2 * factor) - centre) / factor
    return np.outer(taps, taps).astype(np.float32)[:, :, None, None]


def _bilinear_upsample(x, factor: int):
    """Upsample logits bilinearly with a fixed transposed convolution.

    ``UpSampling2D(interpolation="bilinear")`` needs static spatial sizes on
    the TensorFlow backend and fails inside Keras' shape-relaxed predict
    graph; a transposed convolution works with any size on every backend.
    Inside the image it equals bilinear interpolation exactly; on the
    outermost output rows and columns the zero padding pulls the logits a
    quarter towards 0.  Tiled prediction discards that margin (its mirrored
    context is wider), and training learns around it.
    """
    from keras import layers

    up = layers.Conv2DTranspose(1, 2 * factor, strides=factor, padding="same", use_bias=False,
                                trainable=False, name="upscale")
    y = up(x)
    up.set_weights([_bilinear_kernel(factor)])
    return y


def build_unet(config: UNetConfig):
    """Build an uncompiled U-Net for binary segmentation.

    Parameters
    ----------
    config : UNetConfig

    Returns
    -------
    keras.Model
        Input ``(N, H, W, in_channels)`` with values in [0, 255] (uint8 or
        float; scaled to [0, 1] inside the model so a saved model is
        self-contained); output ``(N, H, W, 1)`` float32 probabilities.
        ``H`` and ``W`` must be multiples of ``config.size_multiple``.

    Examples
    --------
    >>> model = build_unet(UNetConfig(base_width=4, depth=2))  # doctest: +SKIP
    >>> model.output_shape  # doctest: +SKIP
    (None, None, None, 1)
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=(None, None, config.in_channels), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    if config.input_scale > 1:
        x = layers.AveragePooling2D(config.input_scale, name="downscale")(x)

    skips = []
    for level in range(config.depth):
        x = _conv_block(x, config.base_width * 2**level, config.batch_norm, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _conv_block(x, config.base_width * 2**config.depth, config.batch_norm, "bottom")
    for level in reversed(range(config.depth)):
        filters = config.base_width * 2**level
        x = layers.Conv2DTranspose(filters, 2, strides=2, name=f"up{level}_tconv")(x)
        x = layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        x = _conv_block(x, filters, config.batch_norm, f"up{level}")

    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    if config.input_scale > 1:
        x = layers.Conv2D(1, 1, name="logits")(x)
        x = _bilinear_upsample(x, config.input_scale)
        outputs = layers.Activation("sigmoid", dtype="float32", name="probability")(x)
    else:
        outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="probability")(x)
    return keras.Model(inputs, outputs, name=f"unet_w{config.base_width}_d{config.depth}")
