"""Bounded-memory prediction on images of any size, and the resampling around it.

:func:`predict_proba_blocked` hands images up to :data:`WHOLE` pixels a side
to a segmenter whole and cuts larger ones into blocks read with a mirrored
margin, so no segmenter ever holds more than one block.  The resize helpers
bring an image to the training scale and its labels and probabilities back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["WHOLE", "BLOCK", "BLOCK_MARGIN", "predict_proba_blocked", "scaled_shape", "resize_rgb", "resize_prob",
           "resize_labels", "compact_labels"]

#: Images up to this many pixels on both sides are predicted whole.
WHOLE = 2048
#: Side of the blocks a larger image is predicted in, in pixels: a
#: segmenter's per-pixel working memory stays near 150 MB a block.
BLOCK = 1024
#: Mirrored margin read around each block and discarded, in pixels: wider
#: than the reach of the segmenters' filters and receptive fields.
BLOCK_MARGIN = 96


def scaled_shape(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    """``(H, W)`` of an image of ``shape`` resized by ``factor``, at least one pixel a side."""
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def resize_rgb(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Anti-aliased resize of an RGB image to ``(H, W)``, in 8 bits.

    Pillow's Lanczos filter widens its support with the reduction factor, so
    downscaling is anti-aliased, and memory stays at one 8-bit copy.
    """
    from PIL import Image

    resized = Image.fromarray(np.ascontiguousarray(image)).resize((shape[1], shape[0]), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.uint8)


def resize_prob(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a probability map to ``(H, W)``, float32."""
    from PIL import Image

    resized = Image.fromarray(np.asarray(prob, np.float32), mode="F").resize((shape[1], shape[0]),
                                                                             Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label image (labels are never mixed)."""
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0]).astype(np.intp), labels.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1]).astype(np.intp), labels.shape[1] - 1)
    return labels[rows[:, None], cols[None, :]]


def compact_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 1..n keeping their order, dropping any that vanished."""
    present = np.bincount(labels.ravel())
    present[0] = 0
    if (present[1:] > 0).all():
        return labels
    lut = np.zeros(len(present), labels.dtype)
    keep = np.flatnonzero(present)
    lut[keep] = np.arange(1, len(keep) + 1, dtype=labels.dtype)
    return lut[labels]


def predict_proba_blocked(segmenter: Any, image: np.ndarray, *, whole: int | None = None, block: int | None = None,
                          margin: int = BLOCK_MARGIN, map_blocks: Callable | None = None) -> np.ndarray:
    """``segmenter.predict_proba`` with bounded memory on any image size.

    Images no larger than ``whole`` on both sides go to the segmenter whole.
    Larger images are cut into ``block`` x ``block`` blocks; each is
    predicted with ``margin`` mirrored pixels around it, and only its core is
    kept.

    Parameters
    ----------
    segmenter : object with ``predict_proba``
    image : ndarray, shape (H, W, 3), uint8
    whole, block : int, optional, keyword-only
        Default :data:`WHOLE` and :data:`BLOCK` (read at call time).
    margin : int, keyword-only
    map_blocks : callable, optional, keyword-only
        ``map_blocks(crops) -> probs``: takes an iterator of block crops
        ``(h, w, 3) uint8`` and yields their ``(h, w)`` probabilities in the
        same order, e.g. computed on a cluster.  Default: ``predict_proba``
        here, one block at a time.

    Returns
    -------
    ndarray, shape (H, W), float32
    """
    from tiling import read_tile, tile_grid

    whole = WHOLE if whole is None else whole
    block = BLOCK if block is None else block
    height, width = image.shape[:2]
    if height <= whole and width <= whole:
        return np.asarray(segmenter.predict_proba(image), dtype=np.float32)
    out = np.empty((height, width), np.float32)
    # Blocks overlap only where the last row/column is shifted back to the
    # edge; the margin already gives every core its true surroundings, so the
    # cores are written over each other without blending.
    tiles = tile_grid((height, width), block, 0)
    crops = (read_tile(image, t, margin) for t in tiles)  # lazy: one block in memory at a time
    probs = map(segmenter.predict_proba, crops) if map_blocks is None else map_blocks(crops)
    for t, prob in zip(tiles, probs):
        prob = np.asarray(prob, dtype=np.float32)
        out[t.y0:t.y1, t.x0:t.x1] = prob[margin:margin + t.y1 - t.y0, margin:margin + t.x1 - t.x0]
        del prob
    return out
