"""Resizing for a network kept at its own scale while the images come at a lab's (``PredictConfig.zoom``).

Pillow only: Lanczos for images (anti-aliased when shrinking), bilinear for
masks and probability maps, so outlines stay smooth where nearest neighbours
would leave steps.
"""

from __future__ import annotations

import numpy as np

__all__ = ["resize_image", "resize_mask", "unzoom", "zoomed_shape"]


def zoomed_shape(shape: tuple[int, ...], zoom: float) -> tuple[int, int]:
    """``(H, W)`` of an image of ``shape`` resized by ``zoom``, at least one pixel a side."""
    return max(1, round(shape[0] * zoom)), max(1, round(shape[1] * zoom))


def resize_image(image: np.ndarray, zoom: float) -> np.ndarray:
    """An ``(H, W, 3) uint8`` image resized by ``zoom`` (Lanczos), ``(h, w, 3) uint8``."""
    from PIL import Image

    if zoom == 1.0:
        return image
    h, w = zoomed_shape(image.shape, zoom)
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.Resampling.LANCZOS),
                      dtype=np.uint8)


def resize_mask(mask: np.ndarray, zoom: float) -> np.ndarray:
    """An ``(H, W)`` bool mask resized by ``zoom``: bilinear, then cut half-way; ``(h, w)`` bool."""
    if zoom == 1.0:
        return np.asarray(mask, bool)
    return unzoom(np.asarray(mask, np.float32), zoomed_shape(mask.shape, zoom)) >= 0.5


def unzoom(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A ``(h, w) float32`` map resized (bilinear) to ``shape`` ``(H, W)``, float32 in the map's range."""
    from PIL import Image

    if prob.shape[:2] == tuple(shape):
        return prob
    out = Image.fromarray(np.ascontiguousarray(prob, dtype=np.float32), mode="F").resize(
        (shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.float32)
