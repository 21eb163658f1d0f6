"""Bounded-memory prediction on images of any size, shared by every segmenter.

Both the pixel classifiers (``baselines``) and the U-Net (``unet``) must predict
on images far larger than the 128 x 128 training patches without holding
per-pixel features or activations for the whole image at once.  They share one
tiling scheme so that a tile's prediction never sees an artificial border:

* the image is cut into tiles of at most ``tile`` x ``tile`` pixels, placed on
  a grid with stride ``tile - overlap`` (the last row and column are shifted
  back to end at the image edge, so every tile has the same shape and tiles
  can be batched);
* each tile is read with ``context`` extra pixels on every side (mirrored at
  the image edge), so filters or receptive fields reach real image data; the
  context is cut off again after prediction;
* where tiles overlap, predictions are blended with a weight that ramps down
  towards each tile's edge, which removes seams.

Beside the tiling, the package holds what every segmenter shares at run time:
:mod:`tiling.validation` (the one set of input rules for ``fit`` and
``predict_proba``) and :mod:`tiling.runtime` (the one thread setting,
``WBC_N_JOBS`` / ``n_jobs``, and its worker threads).  It depends on numpy
alone so that ``baselines`` and ``unet`` can use it without depending on each
other or on ``compare``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["Tile", "tile_grid", "read_tile", "blend_window", "predict_tiled"]


@dataclass(frozen=True)
class Tile:
    """One tile of an image, in image coordinates (end-exclusive)."""

    y0: int
    x0: int
    y1: int
    x1: int


def _starts(length: int, size: int, stride: int) -> list[int]:
    """Tile start offsets covering ``[0, length)`` with tiles of ``size``."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride))
    starts.append(length - size)  # last tile flush with the edge
    return starts


def tile_grid(shape: tuple[int, int], tile: int, overlap: int) -> list[Tile]:
    """Cover an image with equally shaped, overlapping tiles.

    Parameters
    ----------
    shape : (int, int)
        Image height and width in pixels.
    tile : int
        Largest tile side in pixels; a tile is ``min(tile, H) x min(tile, W)``.
    overlap : int
        Pixels shared by neighbouring tiles, ``0 <= overlap < tile``.

    Returns
    -------
    list of Tile
        Row-major tiles, all of one shape, whose union is the whole image.
    """
    height, width = int(shape[0]), int(shape[1])
    if height < 1 or width < 1:
        raise ValueError(f"Cannot tile an image of shape {shape}: it has no pixels.")
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"Tile size {tile} and overlap {overlap} are invalid: need 0 <= overlap < tile.")
    th, tw = min(tile, height), min(tile, width)
    stride = tile - overlap
    return [
        Tile(y0, x0, y0 + th, x0 + tw)
        for y0 in _starts(height, th, stride)
        for x0 in _starts(width, tw, stride)
    ]


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Map indices outside ``[0, n)`` back inside by symmetric mirroring."""
    period = 2 * n
    index = np.mod(index, period)
    return np.where(index >= n, period - 1 - index, index)


def read_tile(image: np.ndarray, tile: Tile, context: int) -> np.ndarray:
    """Read a tile plus ``context`` mirrored pixels on every side.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
    tile : Tile
    context : int
        Margin in pixels, ``>= 0``.

    Returns
    -------
    ndarray, shape (y1 - y0 + 2 * context, x1 - x0 + 2 * context[, C])
        A copy with the image's dtype.
    """
    height, width = image.shape[:2]
    rows = _mirror(np.arange(tile.y0 - context, tile.y1 + context), height)
    cols = _mirror(np.arange(tile.x0 - context, tile.x1 + context), width)
    return image[rows[:, None], cols[None, :]]


def blend_window(height: int, width: int, ramp: int) -> np.ndarray:
    """Blending weight for one tile: 1 inside, falling linearly over ``ramp`` px.

    Returns
    -------
    ndarray, shape (height, width), float32, values in (0, 1]
    """
    def ramp_1d(n: int) -> np.ndarray:
        edge = np.minimum(np.arange(n), np.arange(n)[::-1]) + 1.0
        return np.minimum(edge / max(ramp, 1), 1.0)

    return np.outer(ramp_1d(height), ramp_1d(width)).astype(np.float32)


def _batches(tiles: list[Tile], size: int) -> Iterator[list[Tile]]:
    for start in range(0, len(tiles), size):
        yield tiles[start:start + size]


def predict_tiled(
    image: np.ndarray,
    predict_batch: Callable[[np.ndarray], np.ndarray],
    *,
    tile: int = 512,
    overlap: int = 32,
    context: int = 0,
    batch_size: int = 4,
) -> np.ndarray:
    """Predict a probability map tile by tile with bounded memory.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        The whole image.
    predict_batch : callable
        Takes tiles ``(N, h + 2 * context, w + 2 * context, 3)`` of the image's
        dtype and returns probabilities of shape ``(N, h + 2 * context,
        w + 2 * context)`` (any float dtype).
    tile : int
        Largest tile side, before context.
    overlap : int
        Pixels shared by neighbouring tiles; blended with a linear ramp.
    context : int
        Extra mirrored margin read around each tile and discarded after
        prediction (set it to the reach of the largest filter or receptive
        field that matters).
    batch_size : int
        Tiles passed to ``predict_batch`` at once.

    Returns
    -------
    ndarray, shape (H, W), float32
        Blended probabilities.

    Notes
    -----
    Peak memory is the output and weight maps (8 bytes a pixel) plus one batch
    of tiles and whatever ``predict_batch`` allocates for it.
    """
    height, width = image.shape[:2]
    tiles = tile_grid((height, width), tile, overlap)
    out = np.zeros((height, width), np.float32)
    weight_sum = np.zeros((height, width), np.float32)
    th, tw = tiles[0].y1 - tiles[0].y0, tiles[0].x1 - tiles[0].x0
    weight = blend_window(th, tw, overlap)
    for batch in _batches(tiles, batch_size):
        crops = np.stack([read_tile(image, t, context) for t in batch])
        probs = np.asarray(predict_batch(crops))
        expected = (len(batch), th + 2 * context, tw + 2 * context)
        if probs.shape != expected:
            raise ValueError(
                f"predict_batch returned shape {probs.shape} for tiles of shape {crops.shape}; expected {expected}."
            )
        for t, prob in zip(batch, probs):
            core = prob[context:context + th, context:context + tw]
            out[t.y0:t.y1, t.x0:t.x1] += weight * core
            weight_sum[t.y0:t.y1, t.x0:t.x1] += weight
    np.divide(out, weight_sum, out=out)
    return out
