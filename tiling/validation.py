"""The one set of input rules every segmenter applies to ``fit`` and ``predict_proba``.

Images are ``(H, W, 3)`` uint8 RGB arrays with at least one pixel; masks are
``(H, W)`` bool arrays of their image's height and width; a training set is a
non-empty pair of equally long sequences.  Both the classical segmenters and
the U-Net call these functions, so a wrong input gives the same message
whichever segmenter receives it.  Depends on numpy alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["check_image", "check_training_set"]


def _describe(array: Any) -> str:
    return f"shape {getattr(array, 'shape', None)} and dtype {getattr(array, 'dtype', type(array).__name__)}"


def check_image(image: Any, what: str = "image") -> np.ndarray:
    """Return ``image`` if it is an ``(H, W, 3)`` uint8 RGB array with pixels; raise ValueError otherwise.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    what : str
        How the message names the array, e.g. ``"images[3]"``.

    Returns
    -------
    ndarray
        The same array, unchanged.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"{what} must be an (H, W, 3) uint8 RGB array, got {_describe(image)}; "
            "convert it with skimage.util.img_as_ubyte."
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} has no pixels (shape {image.shape}); pass a non-empty image.")
    return image


def check_training_set(images: Sequence[Any], masks: Sequence[Any], *, min_images: int = 1) -> None:
    """Raise a one-sentence ValueError unless ``images`` and ``masks`` form a usable training set.

    Parameters
    ----------
    images : sequence of ndarray, each (H, W, 3) uint8 RGB
    masks : sequence of ndarray, each (H, W) bool, the size of its image
    min_images : int
        Fewest images the segmenter can learn from (a U-Net needs a
        validation image besides its training images).
    """
    if len(images) != len(masks):
        raise ValueError(f"fit got {len(images)} images but {len(masks)} masks; pass one mask per image.")
    if len(images) < max(1, min_images):
        raise ValueError(f"fit got {len(images)} images; pass at least {max(1, min_images)} images with their masks.")
    for i, (image, mask) in enumerate(zip(images, masks)):
        check_image(image, f"images[{i}]")
        if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype != bool:
            raise ValueError(f"masks[{i}] must be an (H, W) bool array, got {_describe(mask)}; convert it with mask > 0.")
        if mask.shape != image.shape[:2]:
            raise ValueError(f"masks[{i}] has shape {mask.shape} but images[{i}] is {image.shape[:2]}; they must match.")
