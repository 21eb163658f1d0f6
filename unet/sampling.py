"""Training samples that look like whole smears, not only like centred patches.

Every SigTuple training patch shows one WBC at its centre.  A U-Net trained on
those alone learns "there is a cell in the middle" and, on a whole field of
view, marks red-cell clusters and the image border as WBCs (measured in
``docs/experiments.md``).  Two samplers break that prior without new labels:

* :func:`mosaic_crop` tiles four randomly flipped training pairs into a
  2 x 2 canvas and crops a training-sized window from it at a random offset,
  so WBCs appear anywhere, often cut by the window edge, and much of the
  window is red cells far from any WBC (a window always holds part of at
  least one cell: each piece's cell sits at its centre);
* :func:`add_field_edge` darkens the part of a crop that lies outside a large
  random circle, as the field stop of a microscope does at the edge of the
  large images, and clears the mask there.

Both are pure functions of their inputs and a numpy ``Generator``, so a seed
fixes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["mosaic_crop", "add_field_edge", "random_d4"]


def random_d4(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Apply one of the 8 flips / right-angle rotations to a pair.

    Parameters
    ----------
    image : ndarray, shape (S, S, 3)
    mask : ndarray, shape (S, S)
    rng : numpy Generator

    Returns
    -------
    image, mask : ndarray
        Same shapes and dtypes (square inputs keep their shape under rotation).
    """
    k = int(rng.integers(4))
    image, mask = np.rot90(image, k), np.rot90(mask, k)
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return image, mask


def mosaic_crop(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], size: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Crop a ``size`` window from a 2 x 2 mosaic of four pairs.

    Parameters
    ----------
    images : sequence of 4 ndarray, each (size, size, 3) uint8
    masks : sequence of 4 ndarray, each (size, size) bool
    size : int
        Side of the pieces and of the returned window.
    rng : numpy Generator
        Draws each piece's flip / rotation and the window offset.

    Returns
    -------
    image : ndarray, shape (size, size, 3), uint8
    mask : ndarray, shape (size, size), bool
    """
    if len(images) != 4 or len(masks) != 4:
        raise ValueError(f"mosaic_crop needs exactly 4 pairs, got {len(images)} images and {len(masks)} masks.")
    pieces = [random_d4(img, msk, rng) for img, msk in zip(images, masks)]
    for img, msk in pieces:
        if img.shape[:2] != (size, size) or msk.shape != (size, size):
            raise ValueError(f"mosaic pieces must be {size} x {size}, got {img.shape[:2]} / {msk.shape}.")
    canvas = np.concatenate([np.concatenate([pieces[0][0], pieces[1][0]], axis=1),
                             np.concatenate([pieces[2][0], pieces[3][0]], axis=1)], axis=0)
    labels = np.concatenate([np.concatenate([pieces[0][1], pieces[1][1]], axis=1),
                             np.concatenate([pieces[2][1], pieces[3][1]], axis=1)], axis=0)
    y0, x0 = int(rng.integers(0, size + 1)), int(rng.integers(0, size + 1))
    return (np.ascontiguousarray(canvas[y0:y0 + size, x0:x0 + size]),
            np.ascontiguousarray(labels[y0:y0 + size, x0:x0 + size]))


def add_field_edge(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *,
                   max_cover: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Darken the part of a crop outside a large random circle (a field-stop edge).

    The circle's radius is 2-8 crop sides, its edge crosses the crop at a
    random angle and covers up to ``max_cover`` of the side, with a soft
    ramp of 2-6 px; outside it the image fades to a near-black grey and the
    mask is cleared.

    Parameters
    ----------
    image : ndarray, shape (S, S, 3), uint8
    mask : ndarray, shape (S, S), bool
    rng : numpy Generator
    max_cover : float
        Largest share of the side (along the edge's normal) that may be dark.

    Returns
    -------
    image : ndarray, shape (S, S, 3), uint8
    mask : ndarray, shape (S, S), bool
    """
    h, w = mask.shape
    side = float(max(h, w))
    radius = rng.uniform(2.0, 8.0) * side
    angle = rng.uniform(0.0, 2.0 * np.pi)
    normal = np.array([np.sin(angle), np.cos(angle)])
    # Offset of the edge from the crop centre along the normal: dark beyond it.
    offset = rng.uniform(0.5 - max_cover, 0.5) * side
    centre = np.array([h / 2.0, w / 2.0]) - normal * (radius - offset)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    signed = np.hypot(yy - centre[0], xx - centre[1]) - radius  # > 0 outside the field
    ramp = rng.uniform(2.0, 6.0)
    alpha = np.clip(signed / ramp + 0.5, 0.0, 1.0)[..., None]
    dark = rng.uniform(5.0, 50.0) + rng.normal(0.0, 3.0, size=(h, w, 1))
    out = image.astype(np.float32) * (1.0 - alpha) + dark * alpha
    return np.clip(out, 0, 255).astype(np.uint8), mask & (alpha[..., 0] < 0.5)
