"""A segmenter that learns nothing: Otsu's threshold on a stain-sensitive channel.

WBCs are stained blue-violet while red cells and plasma are pink to cream, so
the blue-yellow axis of CIE Lab (``-b*``) separates them better than
saturation or the haematoxylin channel of ``rgb2hed`` (mean patch Dice, Otsu
per image after the same morphology: -b* 0.79, B-R 0.75, saturation 0.72,
haematoxylin 0.68).  Otsu's threshold is chosen per image, then a closing
joins nucleus lobes to their cytoplasm and holes are filled.

It exists so that the whole comparison runs without any training, and as the
floor every learned segmenter must beat.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

__all__ = ["ThresholdSegmenter"]


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return yy ** 2 + xx ** 2 <= radius ** 2


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"An image must be (H, W, 3) uint8 RGB, got shape {image.shape} and dtype {image.dtype}.")
    return image


class ThresholdSegmenter:
    """Otsu threshold on Lab ``-b*`` plus closing and hole filling.

    Parameters
    ----------
    sigma : float
        Gaussian smoothing of the channel before thresholding, in pixels.
    closing_radius : int
        Radius of the disk used to close gaps between nucleus and cytoplasm.
    random_state : int
        Unused (nothing is random); accepted so that every segmenter is built
        the same way.
    """

    def __init__(self, sigma: float = 2.0, closing_radius: int = 5, random_state: int = 0):
        self.sigma = sigma
        self.closing_radius = closing_radius
        self.random_state = random_state

    def fit(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> "ThresholdSegmenter":
        """Check the training data; nothing is learned.

        Parameters
        ----------
        images : sequence of ndarray, shape (H, W, 3), uint8
        masks : sequence of ndarray, shape (H, W), bool
        """
        if len(images) != len(masks):
            raise ValueError(f"fit got {len(images)} images but {len(masks)} masks; pass one mask per image.")
        for image, mask in zip(images, masks):
            if _check_image(image).shape[:2] != np.shape(mask):
                raise ValueError(f"An image of shape {image.shape[:2]} came with a mask of shape {np.shape(mask)}.")
        self.fitted_ = True
        return self

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Foreground as 0/1 on an image of any size.

        Parameters
        ----------
        image : ndarray, shape (H, W, 3), uint8

        Returns
        -------
        ndarray, shape (H, W), float32 in {0, 1}
        """
        from skimage.color import rgb2lab
        from skimage.filters import threshold_otsu

        if not getattr(self, "fitted_", False):
            raise RuntimeError("ThresholdSegmenter is not fitted; call fit first.")
        image = _check_image(image)
        channel = -rgb2lab(image)[..., 2].astype(np.float32)
        channel = ndi.gaussian_filter(channel, self.sigma)
        if np.ptp(channel) == 0:
            return np.zeros(image.shape[:2], np.float32)
        mask = channel > threshold_otsu(channel)
        mask = ndi.binary_closing(mask, structure=_disk(self.closing_radius), border_value=0)
        mask = ndi.binary_fill_holes(mask)
        return mask.astype(np.float32)

    def save(self, path: Path) -> None:
        """Write the settings to ``path/params.json`` (``path`` is a folder)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        params = {"sigma": self.sigma, "closing_radius": self.closing_radius, "random_state": self.random_state}
        (path / "params.json").write_text(json.dumps(params, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "ThresholdSegmenter":
        """Read a folder written by :meth:`save`."""
        params_file = Path(path) / "params.json"
        if not params_file.is_file():
            raise FileNotFoundError(f"{params_file}: missing; {path} is not a saved threshold segmenter.")
        seg = cls(**json.loads(params_file.read_text()))
        seg.fitted_ = True
        return seg
