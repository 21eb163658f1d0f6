"""Colour normalisation to a reference plasma background (per-channel white balance).

A blood smear's plasma (the empty glass between cells) is the brightest,
least stained part of the image; its colour is the illumination times the
background tint of the stain.  Dividing every channel by that colour and
multiplying by the training data's background (a von Kries white balance)
removes most of the colour difference between microscopes, lamps and stains
while leaving the contrast between nucleus, cytoplasm and red cells in
place.  Everything here is per pixel or a percentile, so it does not depend on
the magnification of the image.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SIGTUPLE_BACKGROUND", "background_colour", "white_balance", "channel_density", "summed_density", "darkest_lit_pixels",
           "stain_direction", "angle_deg"]

#: Plasma background of the SigTuple training images, RGB float64.
#: Measured as the per-channel median of :func:`background_colour` over the
#: 164 training patches and the 5 large labelled images of
#: ``sigtuple/Train_Data`` (``python -m stain.normalise DATA_DIR`` prints it);
#: the 169 per-image values have an interquartile range of (10, 7, 8) grey
#: levels, and the estimate moves by at most 4 levels when a large image is
#: rescaled by 0.5 or 2.
SIGTUPLE_BACKGROUND = np.array([239.0, 240.0, 232.0])

#: Pixels darker than this mean grey level are never background: they are the
#: black field-of-view edge of the microscope or a dark stained object.
_DARK = 60.0

#: The background is taken from the brightest this-many percent of the
#: non-dark pixels.  A 120 x 120 crop filled mostly by one WBC still shows a few
#: percent of plasma, and in a crowded field the gaps between red cells cover
#: more than that.
_TOP_PERCENT = 4.0

#: Share of an image's lit pixels, darkest first, whose colour is taken as
#: the nuclear stain's (:func:`stain_direction`).
_NUCLEUS_FRACTION = 0.003

#: Lit pixels this close (px) to an unlit one are left out of
#: :func:`darkest_lit_pixels`: the black edge of the field of view fades out
#: through dark, unstained pixels that would otherwise pass for nuclei.
_RIM = 6.0

#: At most this many pixels are examined; larger images are subsampled on a
#: regular grid, which keeps the cost flat and, since the estimate is a
#: percentile, leaves it unchanged up to sampling noise.
_MAX_SAMPLES = 131_072


def _as_rgb(image: np.ndarray, where: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{where}: expected an (H, W, 3) RGB image, got shape {image.shape}; "
                         "convert grey or RGBA images to RGB first.")
    return image


def background_colour(image: np.ndarray) -> np.ndarray:
    """Estimate the plasma background colour of a blood-smear image.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8 (or float in 0-255)
        RGB image.

    Returns
    -------
    ndarray, shape (3,), float64
        Per-channel median of the brightest ``_TOP_PERCENT`` % of pixels (by
        total optical density) among those not darker than ``_DARK``; the
        black field-of-view edge and stained objects are thereby ignored.
        Falls back to the brightest pixels overall when almost everything is
        dark.
    """
    image = _as_rgb(image, "background_colour")
    h, w = image.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / _MAX_SAMPLES))))
    pixels = image[::step, ::step].reshape(-1, 3).astype(np.float32)
    if pixels.shape[0] == 0:
        raise ValueError("background_colour: the image is empty; pass an image with at least one pixel.")
    # Total optical density up to a constant: low density = little stain = plasma.
    # A colour-blind brightness would prefer a pale yellow-white tint over a
    # neutral one equally; density weighs each channel's absorption alike.
    density = -np.log(np.maximum(pixels, 1.0)).sum(axis=1)
    usable = pixels.mean(axis=1) >= _DARK
    if usable.sum() < 16:
        usable = np.ones(len(pixels), dtype=bool)
    density = density[usable]
    candidates = pixels[usable]
    k = max(1, int(round(len(density) * _TOP_PERCENT / 100.0)))
    brightest = np.argpartition(density, k - 1)[:k]
    return np.median(candidates[brightest], axis=0).astype(np.float64)


def white_balance(image: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Scale each channel so the image's background becomes ``reference``.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        RGB image.
    reference : array-like, shape (3,), optional
        Target background colour (RGB, 0-255); :data:`SIGTUPLE_BACKGROUND`
        when omitted.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
        ``image * reference / background_colour(image)`` per channel, rounded
        and clipped to 0-255.
    """
    image = _as_rgb(image, "white_balance")
    ref = SIGTUPLE_BACKGROUND if reference is None else np.asarray(reference, dtype=np.float64).reshape(3)
    gain = (ref / np.maximum(background_colour(image), 1.0)).astype(np.float32)
    # A lookup table per channel is cheaper than float arithmetic on every pixel.
    levels = np.arange(256, dtype=np.float32)
    lut = np.clip(np.rint(levels[:, None] * gain[None, :]), 0, 255).astype(np.uint8)
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    out = np.empty_like(image)
    for c in range(3):
        np.take(lut[:, c], image[..., c], out=out[..., c])
    return out


def _measure(data_dir: str) -> np.ndarray:
    """Median background over the labelled SigTuple training images (patches and large)."""
    from pathlib import Path

    from PIL import Image

    folder = Path(data_dir) / "Train_Data"
    paths = sorted(p for p in folder.glob("*.jpg") if not p.stem.endswith("-mask"))
    if not paths:
        raise SystemExit(f"{folder}: no training images found; pass the SigTuple data folder.")
    values = np.array([background_colour(np.asarray(Image.open(p).convert("RGB"))) for p in paths])
    q1, med, q3 = np.percentile(values, [25, 50, 75], axis=0)
    print(f"{len(paths)} images; median {np.round(med, 1).tolist()}; IQR {np.round(q3 - q1, 1).tolist()}")
    return med


def _density_tables(background) -> np.ndarray:
    """Per-channel lookup of ``max(0, -log((I + 1) / (bg + 1)))``, shape (256, 3), float32."""
    bg = np.asarray(background, np.float64).reshape(1, 3)
    levels = np.arange(256, dtype=np.float64)[:, None]
    return np.maximum(-np.log((levels + 1.0) / (bg + 1.0)), 0.0).astype(np.float32)


def _as_uint8(pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels)
    if not np.issubdtype(pixels.dtype, np.integer):
        pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return pixels


def channel_density(pixels: np.ndarray, background=(255.0, 255.0, 255.0)) -> np.ndarray:
    """Optical density of each channel against a background colour.

    ``max(0, -log((I_c + 1) / (bg_c + 1)))`` per channel, by one 256-entry
    lookup table per channel instead of a log of every pixel.

    Parameters
    ----------
    pixels : ndarray, shape (..., 3), integers in 0-255
        An RGB image or a list of RGB pixels; other dtypes are rounded and
        clipped to 8 bits first.
    background : array-like, shape (3,)
        Colour of unstained glass, RGB 0-255 (white by default).

    Returns
    -------
    ndarray, shape (..., 3), float32
    """
    pixels = _as_uint8(pixels)
    tables = _density_tables(background)
    return np.stack([tables[pixels[..., c], c] for c in range(3)], axis=-1)


def summed_density(pixels: np.ndarray, background=(255.0, 255.0, 255.0)) -> np.ndarray:
    """Optical density summed over the three channels, against a background colour.

    ``sum_c max(0, -log((I_c + 1) / (bg_c + 1)))``, by the lookup tables of
    :func:`channel_density`: far cheaper than a log and a reduction over the
    channel axis of every pixel.

    Parameters
    ----------
    pixels, background
        As for :func:`channel_density`.

    Returns
    -------
    ndarray, shape (...), float32
    """
    pixels = _as_uint8(pixels)
    tables = _density_tables(background)
    return tables[pixels[..., 0], 0] + tables[pixels[..., 1], 1] + tables[pixels[..., 2], 2]


def darkest_lit_pixels(image: np.ndarray, fraction: float = _NUCLEUS_FRACTION) -> np.ndarray | None:
    """The darkest ``fraction`` of an image's lit pixels: its nuclei.

    The darkest lit pixels are nuclei (they cover at least about 0.5 % of a
    field with one WBC, and far more of a crop).  A larger fraction would mix
    in red cells, whose share changes with the framing.  The black
    field-of-view edge (mean grey below ``_DARK``) is left out, and so is its
    dark rim (lit pixels within ``_RIM`` px of it).

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    fraction : float
        Share of the lit pixels, darkest first, that is returned.

    Returns
    -------
    ndarray, shape (N, 3), same dtype as ``image``, or None when no pixel is lit
    """
    from scipy import ndimage as ndi

    image = np.asarray(image)
    # A regular grid of at most about 400,000 pixels keeps this cheap and deterministic.
    step = max(1, int(np.ceil(np.sqrt(image.shape[0] * image.shape[1] / 400_000))))
    grid = image[::step, ::step]
    brightness = grid.sum(axis=-1, dtype=np.int32 if grid.dtype == np.uint8 else np.float64)
    lit = brightness >= 3 * _DARK
    if not lit.all():
        lit &= ndi.distance_transform_edt(lit) > _RIM / step
    if not lit.any():
        return None
    pixels, brightness = grid[lit], brightness[lit]
    return pixels[brightness <= np.quantile(brightness, fraction)]


def stain_direction(image: np.ndarray, fraction: float = _NUCLEUS_FRACTION, *,
                    dark: np.ndarray | None = None) -> np.ndarray | None:
    """Unit optical-density vector of the darkest ``fraction`` of an image's lit pixels.

    The direction of the nuclei's optical density (not its length) is the
    nuclear stain's hue, whatever the light (:func:`darkest_lit_pixels`).

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    fraction : float
        Share of the lit pixels, darkest first, that is averaged.
    dark : ndarray, shape (N, 3), optional, keyword-only
        The image's :func:`darkest_lit_pixels` when already computed.

    Returns
    -------
    ndarray, shape (3,), float64, or None when the image has no lit pixels.
    """
    if dark is None:
        dark = darkest_lit_pixels(image, fraction)
    if dark is None:
        return None
    od = -np.log((dark.astype(np.float64) + 1.0) / 256.0).mean(axis=0)
    norm = float(np.linalg.norm(od))
    return od / norm if norm > 1e-6 else None


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees between two unit vectors."""
    return float(np.degrees(np.arccos(np.clip(float(np.dot(a, b)), -1.0, 1.0))))


if __name__ == "__main__":
    import sys

    # stain does not import compare: pass the folder `python -m compare data info` prints.
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m stain.normalise DATA_DIR (the SigTuple folder; "
                         "`python -m compare data info` prints it)")
    _measure(sys.argv[1])
