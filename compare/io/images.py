"""Reading images and masks: any stored form to ``(H, W, 3) uint8`` RGB and ``(H, W) bool``.

Every image comes back as ``(H, W, 3) uint8`` RGB whatever it was stored as
(grey, RGBA, palette, 16-bit, CMYK), and every mask as ``(H, W) bool``
(``mask >= 128`` on its grey levels, since JPEG masks carry compression
noise).  A three-level mask (0 background, 128 cytoplasm, 255 nucleus, stored
losslessly, as the CellaVision set's) also gives the nucleus:
:func:`read_mask_levels`.  Anything that cannot be read raises :class:`DataError` with one
sentence naming the file, what is wrong and what to do.  :class:`Sample` is
one labelled image as the loaders and the evaluator pass it on.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "MASK_SUFFIX",
    "MAX_IMAGE_PIXELS",
    "DataError",
    "Sample",
    "list_images",
    "natural_key",
    "read_image",
    "read_mask",
    "read_mask_levels",
    "three_levels",
]

#: Stem ending of a mask stored beside its image (SigTuple: ``NAME-mask.jpg``).
MASK_SUFFIX = "-mask"

#: File endings read as images (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


#: Images whose header claims more pixels than this are refused before
#: decoding, so a hostile or broken header cannot exhaust memory.  A
#: 20,000 x 20,000 whole-slide crop still loads.
MAX_IMAGE_PIXELS = 400_000_000


class DataError(ValueError):
    """An input file or folder that cannot be used, with what to do about it."""


@dataclass(frozen=True, eq=False)
class Sample:
    """One image of a data set.

    Attributes
    ----------
    name : str
        File stem, e.g. ``"train-12"``; unique within a set.
    image : ndarray, shape (H, W, 3), uint8
        RGB pixels.
    mask : ndarray, shape (H, W), bool, or None
        WBC foreground; None where the set has no ground truth.
    group : str
        Samples of one group show the same region and must share a fold.
    path : Path
        Where the image was read from.
    nucleus : ndarray, shape (H, W), bool, or None
        Nucleus pixels where the mask has three levels (whole cell and
        nucleus); None where it gives the whole cell only.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray | None
    group: str
    path: Path
    nucleus: np.ndarray | None = None


def _open_checked(path: Path) -> Image.Image:
    """Open an image lazily, refusing missing, empty, unknown and huge files."""
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path.")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not an image file.")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); replace it with a real image or remove it.")
    try:
        # PIL only warns between its limit and twice its limit; we refuse at
        # our own limit, read from the header before any pixel is decoded.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError:
        raise DataError(
            f"{path}: its header claims an enormous size (a possible decompression bomb); "
            "it was not decoded. Crop or downscale it below "
            f"{MAX_IMAGE_PIXELS:,} pixels."
        ) from None
    except UnidentifiedImageError:
        raise DataError(
            f"{path}: not a readable image (unknown or corrupt format); re-export it as PNG or JPEG."
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be opened ({exc}); check the file's permissions and format.") from None
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        img.close()
        raise DataError(
            f"{path}: its header claims {width} x {height} pixels, over the limit of "
            f"{MAX_IMAGE_PIXELS:,} (a possible decompression bomb); it was not decoded. "
            "Crop or downscale it first."
        )
    if width < 1 or height < 1:
        img.close()
        raise DataError(f"{path}: the image has no pixels ({width} x {height}).")
    return img


def _decode(img: Image.Image, path: Path) -> Image.Image:
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"{path}: the image data is corrupt or truncated ({exc}); re-export or re-copy the file."
        ) from None
    return img


def _to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode to ``(H, W, 3) uint8`` RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float grey: rescale the full range, not clip at 255.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        grey = np.round((arr - lo) * scale).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Flatten transparency onto white, the colour of an empty slide.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    if img.mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ndarray, shape (H, W, 3), uint8

    Raises
    ------
    DataError
        Missing, empty, corrupt, truncated, non-image or oversized files.
    """
    path = Path(path)
    with _open_checked(path) as img:
        return _to_rgb_uint8(_decode(img, path))


#: Image formats that store grey levels exactly; only these can hold a three-level mask.
_LOSSLESS = frozenset({"PNG", "BMP", "TIFF", "GIF", "PPM"})

#: Share of pixels that may stray from the three levels (all of them below 64,
#: so background): the CellaVision masks hold up to 0.2 % of such pixels.
_STRAY_SHARE = 0.01

#: Least share of the cell that must be exactly 128 (cytoplasm) for a mask to
#: count as three-level rather than a binary mask with a stray mid-grey pixel.
_MIN_CYTOPLASM_SHARE = 0.01


def three_levels(grey: np.ndarray) -> bool:
    """Whether an 8-bit grey mask encodes background 0, cytoplasm 128 and nucleus 255.

    True only when both 128 and 255 are present, 128 covers at least 1 % of
    the cell, no pixel lies in ``[64, 192)`` other than 128 or in
    ``[192, 255)``, and at most 1 % of pixels stray from the three levels
    (all of them below 64).  A binary mask with smoothed or noisy edges has
    levels between 64 and 255, so it is never taken for one.

    Parameters
    ----------
    grey : ndarray, shape (H, W), uint8

    Returns
    -------
    bool
    """
    counts = np.bincount(np.asarray(grey, dtype=np.uint8).ravel(), minlength=256)
    cytoplasm, nucleus = int(counts[128]), int(counts[255])
    if not cytoplasm or not nucleus or cytoplasm < _MIN_CYTOPLASM_SHARE * (cytoplasm + nucleus):
        return False
    if counts[64:192].sum() != cytoplasm or counts[192:255].any():
        return False
    stray = int(counts.sum()) - int(counts[0]) - cytoplasm - nucleus
    return stray <= _STRAY_SHARE * counts.sum()


def read_mask_levels(path: str | Path, shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a mask file as the whole cell and, for a three-level mask, its nucleus.

    A mask stored losslessly (PNG, BMP, TIFF) whose grey levels are 0, 128
    and 255 (:func:`three_levels`) gives whole cell = ``grey >= 64`` and
    nucleus = ``grey >= 192``; any other mask gives ``grey >= 128`` (JPEG
    masks carry compression noise) and no nucleus.

    Parameters
    ----------
    path : str or Path
    shape : (int, int), optional
        The ``(H, W)`` of the image it belongs to; a mask of another size is
        refused.

    Returns
    -------
    mask : ndarray, shape (H, W), bool
        The whole cell (nucleus and cytoplasm).
    nucleus : ndarray, shape (H, W), bool, or None
        None for a mask without the three levels.
    """
    path = Path(path)
    nucleus = None
    with _open_checked(path) as img:
        img = _decode(img, path)
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(img, dtype=np.float64)
            # A 16-bit mask is either 0/1 labels or 0..65535 grey.
            mask = arr > (0.5 if arr.max() <= 1 else arr.max() / 2)
        else:
            grey = np.asarray(img.convert("L"), dtype=np.uint8)
            if img.format in _LOSSLESS and three_levels(grey):
                mask, nucleus = grey >= 64, grey >= 192
            else:
                mask = grey >= 128
    if shape is not None and mask.shape != tuple(shape[:2]):
        raise DataError(
            f"{path}: the mask is {mask.shape[1]} x {mask.shape[0]} but its image is "
            f"{shape[1]} x {shape[0]} (width x height); the mask must have the image's size."
        )
    return mask, nucleus


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask file as boolean foreground (grey level >= 128; ``>= 64`` for a three-level mask).

    Parameters
    ----------
    path : str or Path
    shape : (int, int), optional
        The ``(H, W)`` of the image it belongs to; a mask of another size is
        refused.

    Returns
    -------
    ndarray, shape (H, W), bool
        The whole cell; :func:`read_mask_levels` also gives the nucleus.
    """
    return read_mask_levels(path, shape)[0]


def list_images(folder: str | Path) -> list[Path]:
    """Image files in a folder (not masks), in natural order (train-2 before train-10).

    Raises
    ------
    DataError
        If the folder does not exist or holds no images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; check the path (expected the SigTuple layout with Train_Data/ and Test_Data/).")
    files = [
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith(MASK_SUFFIX)
    ]
    if not files:
        raise DataError(f"{folder}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)}); point --data at a folder that does.")
    return sorted(files, key=natural_key)


def natural_key(path: Path) -> tuple:
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name))
