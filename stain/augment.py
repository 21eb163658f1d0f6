"""Random training-time stain and imaging augmentation for blood-smear images.

:func:`random_stain` draws, each with its own probability, the changes that
separate one laboratory's images from another's (see :mod:`stain.looks` for
fixed versions of them):

* stain jitter in optical-density space -- per-stain concentration scale and
  a small rotation of the haematoxylin and eosin OD vectors;
* background tint / white balance, including yellowish and bluish;
* hue shift;
* gamma and contrast;
* Gaussian blur, Gaussian noise and JPEG artefacts (quality 30-95).

Only colour and texture change, never geometry, so the mask stays valid.
``strength`` scales every magnitude (0 returns the image unchanged).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.color import hsv2rgb, rgb2hsv

from stain.looks import _STAINS, from_density, to_density
from tiling.validation import check_image

__all__ = ["PROBABILITIES", "random_stain", "augment_grid"]

#: Probability of each operation per call.
PROBABILITIES = {
    "stain": 0.8,
    "tint": 0.6,
    "hue": 0.3,
    "gamma": 0.4,
    "contrast": 0.4,
    "blur": 0.2,
    "noise": 0.3,
    "jpeg": 0.3,
}

#: Background tints the ``tint`` step draws towards (per-channel gains):
#: yellow (rapid stains, warm lamps) and blue (cameras, daylight filters).
_TINTS = np.array([[1.0, 0.96, 0.72], [0.86, 0.93, 1.0], [1.0, 0.92, 0.95]])


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _stain_jitter(image: np.ndarray, rng: np.random.Generator, s: float, tint: np.ndarray) -> np.ndarray:
    conc, bg = to_density(image)
    stains = _STAINS.copy()
    for row in (0, 1):
        v = stains[row] + rng.normal(0.0, 0.08 * s, 3)
        v = np.abs(v)  # a stain cannot emit light: OD components stay >= 0
        stains[row] = v / np.linalg.norm(v) * np.linalg.norm(_STAINS[row])
    scales = np.exp(rng.normal(0.0, 0.25 * s, 3)).astype(np.float32)
    scales[2] = 1.0
    return from_density(conc * scales, np.clip(bg * tint, 0, 255), stains)


def random_stain(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Apply a random combination of stain and imaging changes.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        RGB image.
    rng : numpy.random.Generator
        Source of all randomness (same generator state, same output).
    strength : float
        Multiplies every magnitude; 1 covers the laboratory looks of
        :mod:`stain.looks`, 0 leaves the image unchanged.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    image = check_image(np.asarray(image), "random_stain's image")
    s = float(strength)
    if s <= 0:
        return image.copy()
    # Draw every decision up front, so the random stream does not depend on
    # which branches ran.
    u = {name: rng.random() < p for name, p in PROBABILITIES.items()}
    tint = np.ones(3)
    if u["tint"]:
        towards = _TINTS[rng.integers(len(_TINTS))]
        amount = rng.uniform(0.0, 1.0) * min(s, 1.5)
        tint = (1.0 - amount) + amount * towards
        tint = tint * np.exp(rng.normal(0.0, 0.03 * s, 3))
    out = image
    if u["stain"]:
        out = _stain_jitter(out, rng, s, tint)
    elif u["tint"]:
        out = _to_uint8(out * tint.astype(np.float32))
    x = out.astype(np.float32)
    if u["hue"]:
        hsv = rgb2hsv(x / 255.0)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-0.06, 0.06) * s) % 1.0
        x = hsv2rgb(hsv).astype(np.float32) * 255.0
    if u["gamma"]:
        x = 255.0 * np.power(np.clip(x, 0, 255) / 255.0, np.float32(np.exp(rng.normal(0.0, 0.2 * s))))
    if u["contrast"]:
        mean = x.mean(axis=(0, 1), keepdims=True)
        x = mean + (x - mean) * np.float32(np.exp(rng.normal(0.0, 0.2 * s)))
    if u["blur"]:
        sigma = rng.uniform(0.3, 0.3 + 1.2 * s)
        x = ndi.gaussian_filter(x, sigma=(sigma, sigma, 0))
    if u["noise"]:
        x = x + rng.normal(0.0, rng.uniform(1.0, 1.0 + 5.0 * s), x.shape).astype(np.float32)
    out = _to_uint8(x)
    if u["jpeg"]:
        quality = int(rng.integers(max(30, int(95 - 65 * min(s, 1.0))), 96))
        buffer = io.BytesIO()
        Image.fromarray(out).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        out = np.asarray(Image.open(buffer).convert("RGB"))
    return out


def augment_grid(image: np.ndarray, path, *, seed: int = 0, n: int = 24, columns: int = 6,
                 strength: float = 1.0) -> np.ndarray:
    """Write a PNG grid of ``n`` augmentations of one image (the original first) for checking by eye.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    path : str or Path
        Output PNG.
    seed : int
        Seed of the generator; the grid is reproducible.
    n, columns : int
        Number of tiles (including the original) and tiles per row.
    strength : float
        Passed to :func:`random_stain`.

    Returns
    -------
    ndarray, shape (rows * H, columns * W, 3), uint8
        The grid written.
    """
    rng = np.random.default_rng(seed)
    tiles = [image] + [random_stain(image, rng, strength) for _ in range(n - 1)]
    tiles += [np.full_like(image, 255)] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(grid).save(path)
    return grid


if __name__ == "__main__":
    import sys

    src, dst = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "augment_grid.png"
    augment_grid(np.asarray(Image.open(src).convert("RGB")), dst)
    print(dst)
