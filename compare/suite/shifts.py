"""A fixed, seeded battery of synthetic domain shifts of labelled smear images.

Each shift turns one labelled ``(image, mask)`` pair into a list of shifted
pairs, imitating what differs between the SigTuple training images and other
laboratories' smears: magnification (:data:`SHIFTS` ``scale_*``), stain
colour (``look_*``, from :mod:`stain.looks`), image quality (``blur``,
``jpeg_30``, ``dim``), framing (``crop_*``: one crop around each WBC) and
three composites resembling real laboratories (``lab_*_like``).

Shifts that crop return one pair per WBC; every other shift returns exactly
one pair.  A crop is centred on the centroid of each connected component of
the mask whose area is at least :data:`MIN_WBC_AREA` pixels (scaled by the
square of the shift's scale factor, so the same WBCs qualify at every scale),
its window moved, not shrunk, to stay inside the image.  When the image is
smaller than the crop in either direction the shift returns no pair for it
(the caller skips the image): padding would invent a border no microscope
produces, which is exactly what the crop shifts are meant to test.  So a
128 x 128 patch under ``crop_300`` gives ``[]``.

Everything is deterministic given ``seed``; the only random parts are the
camera look's vignetting and noise and ``lab_c_like``'s extra noise.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
from skimage.filters import gaussian
from skimage.segmentation import find_boundaries

from stain.looks import camera, cellavision, rapid_stain

__all__ = ["SHIFTS", "MIN_WBC_AREA", "ShiftKind", "shift_kinds", "apply_shift", "crop_around_wbcs",
           "scale_pair", "contact_sheet"]

#: Names of the shifts, in report order.
SHIFTS: tuple[str, ...] = (
    "scale_0.5x", "scale_2x", "scale_3x",
    "look_rapid", "look_cellavision", "look_camera",
    "blur", "jpeg_30", "dim",
    "crop_120", "crop_300",
    "lab_a_like", "lab_b_like", "lab_c_like",
)

#: Mask components smaller than this (pixels, at SigTuple's scale) get no crop:
#: they are WBC fragments cut by the image border, not WBCs.
MIN_WBC_AREA = 500


@dataclass(frozen=True)
class ShiftKind:
    """What one shift changes.

    Attributes
    ----------
    scale : float
        True magnification relative to SigTuple (WBC diameter ratio), so a
        scale estimator can be checked against it.
    look : str or None
        Colour look from :mod:`stain.looks` (``"rapid"``, ``"cellavision"``,
        ``"camera"``) or None.
    crop : int or None
        Side of the square crop around each WBC, or None for the whole image.
    group : str
        ``"scale"``, ``"colour"``, ``"quality"``, ``"crop"`` or ``"lab"``.
    """

    scale: float = 1.0
    look: str | None = None
    crop: int | None = None
    group: str = "quality"


_KINDS: dict[str, ShiftKind] = {
    "scale_0.5x": ShiftKind(scale=0.5, group="scale"),
    "scale_2x": ShiftKind(scale=2.0, group="scale"),
    "scale_3x": ShiftKind(scale=3.0, group="scale"),
    "look_rapid": ShiftKind(look="rapid", group="colour"),
    "look_cellavision": ShiftKind(look="cellavision", group="colour"),
    "look_camera": ShiftKind(look="camera", group="colour"),
    "blur": ShiftKind(group="quality"),
    "jpeg_30": ShiftKind(group="quality"),
    "dim": ShiftKind(group="quality"),
    "crop_120": ShiftKind(crop=120, group="crop"),
    "crop_300": ShiftKind(crop=300, group="crop"),
    "lab_a_like": ShiftKind(look="rapid", crop=120, group="lab"),
    "lab_b_like": ShiftKind(scale=3.0, look="cellavision", crop=300, group="lab"),
    "lab_c_like": ShiftKind(scale=2.0, look="camera", group="lab"),
}

#: Gaussian blur of ``blur`` (pixels): a slightly defocused objective.
BLUR_SIGMA = 1.5
#: JPEG quality of ``jpeg_30``.
JPEG_QUALITY = 30
#: ``dim``: intensity gain and gamma of a dim lamp / short exposure.
DIM_GAIN, DIM_GAMMA = 0.45, 1.1
#: Extra sensor noise of ``lab_c_like`` (grey levels, sd), on top of the camera look's.
LAB_C_NOISE = 4.0


def shift_kinds() -> dict[str, ShiftKind]:
    """Metadata of every shift in :data:`SHIFTS` order.

    Returns
    -------
    dict of str to ShiftKind
        E.g. ``shift_kinds()["lab_b_like"].scale == 3.0``.
    """
    return {name: _KINDS[name] for name in SHIFTS}


def _check(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    mask = np.asarray(mask, dtype=bool)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"apply_shift: expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}; "
                         "read images with compare.io.images.read_image.")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"apply_shift: mask shape {mask.shape} differs from image shape {image.shape[:2]}; "
                         "pass the mask that belongs to the image.")
    return image, mask


def scale_pair(image: np.ndarray, mask: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Rescale an image (bilinear, anti-aliased when shrinking) and its mask (nearest).

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    mask : ndarray, shape (H, W), bool
    factor : float

    Returns
    -------
    tuple of ndarray
        ``(round(H * factor), round(W * factor), 3)`` uint8 and the matching bool mask.
    """
    if factor == 1.0:
        return image, mask
    from PIL import Image

    # Pillow works on 8-bit data (no float copy of a 10 Mpx image) and its
    # bilinear filter widens with the reduction factor, so shrinking is
    # anti-aliased as well.
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    img = Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.Resampling.BILINEAR)
    msk = Image.fromarray(np.asarray(mask, np.uint8)).resize(size, Image.Resampling.NEAREST)
    return np.asarray(img, np.uint8), np.asarray(msk, bool)


def crop_around_wbcs(image: np.ndarray, mask: np.ndarray, size: int, *,
                     min_area: float = MIN_WBC_AREA) -> list[tuple[np.ndarray, np.ndarray]]:
    """One ``size`` x ``size`` crop centred on each WBC of the mask.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    mask : ndarray, shape (H, W), bool
    size : int
        Side of the square crop.
    min_area : float
        Components with fewer pixels are not cropped around (but stay in the
        cropped masks where they fall inside a window).

    Returns
    -------
    list of (ndarray (size, size, 3) uint8, ndarray (size, size) bool)
        In label order of :func:`scipy.ndimage.label`; empty when the image is
        smaller than ``size`` in either direction or has no qualifying WBC.
    """
    h, w = mask.shape
    if h < size or w < size:
        return []
    labels, n = ndi.label(mask)
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    areas = ndi.sum_labels(mask, labels, index)
    centres = ndi.center_of_mass(mask, labels, index)
    out = []
    for area, (cy, cx) in zip(areas, centres):
        if area < min_area:
            continue
        top = int(np.clip(round(cy - size / 2), 0, h - size))
        left = int(np.clip(round(cx - size / 2), 0, w - size))
        window = (slice(top, top + size), slice(left, left + size))
        out.append((image[window].copy(), mask[window].copy()))
    return out


def _look(name: str, image: np.ndarray, seed: int) -> np.ndarray:
    if name == "rapid":
        return rapid_stain(image)
    if name == "cellavision":
        return cellavision(image)
    return camera(image, seed)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    out = gaussian(image, sigma=sigma, channel_axis=-1, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _dim(image: np.ndarray) -> np.ndarray:
    out = 255.0 * DIM_GAIN * np.power(image / 255.0, DIM_GAMMA)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _noise(image: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    out = image + rng.normal(0.0, sd, image.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def apply_shift(name: str, image: np.ndarray, mask: np.ndarray, *, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Apply one named shift to a labelled image.

    Parameters
    ----------
    name : str
        One of :data:`SHIFTS`.
    image : ndarray, shape (H, W, 3), uint8
    mask : ndarray, shape (H, W), bool
        WBC mask.
    seed : int
        Fixes the random parts (camera look, ``lab_c_like`` noise).

    Returns
    -------
    list of (ndarray (h, w, 3) uint8, ndarray (h, w) bool)
        One pair, or one pair per WBC for the cropping shifts (possibly none,
        see the module docstring).  The look is applied before scaling (colour
        does not depend on scale) and cropping comes last.
    """
    if name not in _KINDS:
        raise ValueError(f"apply_shift: unknown shift {name!r}; choose one of {', '.join(SHIFTS)}.")
    image, mask = _check(image, mask)
    kind = _KINDS[name]
    rng = np.random.default_rng(seed)
    if kind.look is not None:
        image = _look(kind.look, image, int(rng.integers(2**31)))
    image, mask = scale_pair(image, mask, kind.scale)
    if name == "blur":
        image = _blur(image, BLUR_SIGMA)
    elif name == "jpeg_30":
        image = _jpeg(image, JPEG_QUALITY)
    elif name == "dim":
        image = _dim(image)
    elif name == "lab_c_like":
        image = _noise(image, LAB_C_NOISE, rng)
    if kind.crop is not None:
        return crop_around_wbcs(image, mask, kind.crop, min_area=MIN_WBC_AREA * kind.scale**2)
    return [(image, mask)]


def _thumbnail(image: np.ndarray, mask: np.ndarray, thumb: int) -> np.ndarray:
    """Image with the mask outline in green, fitted into a thumb x thumb grey tile."""
    pil = Image.fromarray(image)
    pil.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
    small = np.asarray(pil).copy()
    # The outline is drawn at thumbnail resolution so shrinking cannot blur it away.
    small_mask = np.asarray(Image.fromarray(mask).resize(pil.size, Image.Resampling.NEAREST))
    small[find_boundaries(small_mask, mode="inner")] = (0, 230, 0)
    tile = np.full((thumb, thumb, 3), 64, np.uint8)
    top, left = (thumb - small.shape[0]) // 2, (thumb - small.shape[1]) // 2
    tile[top:top + small.shape[0], left:left + small.shape[1]] = small
    return tile


def contact_sheet(pairs_by_shift: dict[str, list[tuple[np.ndarray, np.ndarray]]], path: str | Path, *,
                  thumb: int = 200, columns: int = 6) -> Path:
    """Write a PNG grid of shifted inputs: one row per shift, mask outlines in green.

    Parameters
    ----------
    pairs_by_shift : dict of str to list of (image, mask)
        Shift name -> its shifted ``(H, W, 3) uint8`` images and ``(H, W)``
        bool masks; rows follow the dict's order, each showing its first
        ``columns`` pairs (a shift with none shows an empty row).
    path : str or Path
        Output PNG.
    thumb : int
        Side of each square tile in pixels (images are fitted, not cropped).
    columns : int
        Tiles per row at most.

    Returns
    -------
    Path
        ``path``.
    """
    label_w, pad = 130, 4
    names = list(pairs_by_shift)
    if not names:
        raise ValueError("contact_sheet: no shifts given; pass at least one shift's pairs.")
    width = max(1, min(columns, max(len(p) for p in pairs_by_shift.values())))
    sheet = np.full((len(names) * (thumb + pad) + pad, label_w + width * (thumb + pad) + pad, 3), 255, np.uint8)
    for row, name in enumerate(names):
        y = pad + row * (thumb + pad)
        for col, (img, msk) in enumerate(pairs_by_shift[name][:width]):
            x = label_w + pad + col * (thumb + pad)
            sheet[y:y + thumb, x:x + thumb] = _thumbnail(img, msk, thumb)
    pil = Image.fromarray(sheet)
    draw = ImageDraw.Draw(pil)
    for row, name in enumerate(names):
        pairs = pairs_by_shift[name]
        size = f"{pairs[0][0].shape[1]}x{pairs[0][0].shape[0]}" if pairs else "no pair"
        draw.text((6, pad + row * (thumb + pad) + thumb // 2 - 12), f"{name}\n{len(pairs)} pair(s), {size}",
                  fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil.save(path)
    return path
