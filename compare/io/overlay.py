"""Pictures a person can open: label masks as PNG, and outlines drawn on images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi

from compare.io.atomic import atomic_path

__all__ = ["TRUE_COLOUR", "PRED_COLOUR", "boundaries", "draw_overlay", "overlay_image", "save_label_png", "save_rgb_png"]

#: Outline colours: truth in green, prediction in magenta (distinct for most
#: colour-vision deficiencies and on pink/purple stains).
TRUE_COLOUR = (0, 200, 0)
PRED_COLOUR = (255, 0, 255)
#: zlib level of the RGB PNGs (overlays): level 1 encodes a 1-Mpx overlay
#: about 4x faster than Pillow's default 6 for a file about 5 % larger
#: (PNG stays lossless, so the pixels are the same).
RGB_PNG_COMPRESS_LEVEL = 1


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
    """Save a label image as PNG: 8-bit when it fits, else 16-bit (atomically).

    Raises
    ------
    ValueError
        Beyond 65,535 labels, which a PNG cannot hold (never wrapped silently).
    """
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    if top > 65_535:
        raise ValueError(f"{path}: {top} labels do not fit a 16-bit PNG; write the labels as TIFF "
                         "(compare predict --tiff) instead.")
    dtype = np.uint8 if top < 256 else np.uint16
    img = Image.fromarray(labels.astype(dtype))
    atomic_path(Path(path), lambda p: img.save(p, format="PNG"))


def save_rgb_png(path: Path, rgb: "np.ndarray | Image.Image") -> None:
    """Save an RGB image (or a PIL image) as PNG, atomically, at :data:`RGB_PNG_COMPRESS_LEVEL`."""
    img = rgb if isinstance(rgb, Image.Image) else Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    atomic_path(Path(path), lambda p: img.save(p, format="PNG", compress_level=RGB_PNG_COMPRESS_LEVEL))


def overlay_image(image: np.ndarray, labels: np.ndarray, *, strip: int = 1024):
    """The picture of :func:`compare.io.overlay.draw_overlay` (outlines and numbers), drawn with less memory.

    ``draw_overlay`` copies the image and erodes and dilates the whole label
    map at once (about 20 bytes a pixel).  Here the outlines are drawn in
    place, ``strip`` rows at a time with a halo as wide as the line, which
    gives the same pixels; the numbers are then written with the same font,
    size and position.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        Drawn on in place when writeable.
    labels : ndarray, shape (H, W), int
    strip : int, keyword-only
        Rows per strip.

    Returns
    -------
    PIL.Image.Image
        RGB, ready to save.
    """
    height, width = labels.shape
    line = max(1, round(min(height, width) / 300))
    # Arrays read through Pillow are read-only; copy only those.
    image = np.require(image, np.uint8, ["W", "C"])
    for y0 in range(0, height, strip):
        y1 = min(height, y0 + strip)
        top, bottom = max(0, y0 - line), min(height, y1 + line)
        edge = boundaries(labels[top:bottom], line)[y0 - top:y0 - top + (y1 - y0)]
        image[y0:y1][edge] = PRED_COLOUR
    pil = Image.fromarray(image)
    boxes = ndi.find_objects(labels)
    if boxes:
        draw = ImageDraw.Draw(pil)
        size = max(12, min(height, width) // 25)
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1 has a fixed-size default font
            font = ImageFont.load_default()
        for index, box in enumerate(boxes, start=1):
            if box is None:
                continue
            x = min(box[1].stop + 2, width - size)
            draw.text((x, max(box[0].start, 0)), str(index), fill=PRED_COLOUR, font=font, stroke_width=2,
                      stroke_fill=(0, 0, 0))
    return pil
