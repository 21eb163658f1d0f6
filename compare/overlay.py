"""Pictures a person can open: label masks as PNG, and outlines drawn on images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi

from compare.io import atomic_path

__all__ = ["TRUE_COLOUR", "PRED_COLOUR", "boundaries", "draw_overlay", "save_label_png", "save_rgb_png"]

#: Outline colours: truth in green, prediction in magenta (distinct for most
#: colour-vision deficiencies and on pink/purple stains).
TRUE_COLOUR = (0, 200, 0)
PRED_COLOUR = (255, 0, 255)


def boundaries(labels: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels on the inner boundary of each labelled object.

    Parameters
    ----------
    labels : ndarray, shape (H, W), int
    width : int
        Line width in pixels.

    Returns
    -------
    ndarray, shape (H, W), bool
    """
    labels = np.asarray(labels)
    eroded = ndi.grey_erosion(labels, size=(2 * width + 1, 2 * width + 1), mode="nearest")
    dilated = ndi.grey_dilation(labels, size=(2 * width + 1, 2 * width + 1), mode="nearest")
    return (labels > 0) & ((eroded != labels) | (dilated != labels))


def draw_overlay(image: np.ndarray, pred_labels: np.ndarray, true_labels: np.ndarray | None = None,
                 *, numbers: bool = True) -> np.ndarray:
    """Draw predicted (and true) outlines on an image, with each WBC's number.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    pred_labels : ndarray, shape (H, W), int
        0 background, 1..n predicted WBCs.
    true_labels : ndarray, shape (H, W), int, optional
        Ground truth, drawn first so the prediction stays on top.
    numbers : bool
        Write each predicted WBC's label number beside it.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    width = max(1, round(min(out.shape[:2]) / 300))
    if true_labels is not None:
        out[boundaries(true_labels, width)] = TRUE_COLOUR
    out[boundaries(pred_labels, width)] = PRED_COLOUR
    if numbers and pred_labels.max() > 0:
        pil = Image.fromarray(out)
        draw = ImageDraw.Draw(pil)
        size = max(12, min(out.shape[:2]) // 25)
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1 has a fixed-size default font
            font = ImageFont.load_default()
        for index, box in enumerate(ndi.find_objects(pred_labels), start=1):
            if box is None:
                continue
            x = min(box[1].stop + 2, out.shape[1] - size)
            y = max(box[0].start, 0)
            draw.text((x, y), str(index), fill=PRED_COLOUR, font=font, stroke_width=2, stroke_fill=(0, 0, 0))
        out = np.asarray(pil)
    return out


def save_label_png(path: Path, labels: np.ndarray) -> None:
    """Save a label image as PNG: 8-bit when it fits, else 16-bit (atomically)."""
    labels = np.asarray(labels)
    dtype = np.uint8 if labels.max() < 256 else np.uint16
    img = Image.fromarray(labels.astype(dtype))
    atomic_path(Path(path), lambda p: img.save(p, format="PNG"))


def save_rgb_png(path: Path, rgb: np.ndarray) -> None:
    """Save an RGB image as PNG (atomically)."""
    img = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    atomic_path(Path(path), lambda p: img.save(p, format="PNG"))
