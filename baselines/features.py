"""Per-pixel feature bank for the classical pixel classifiers.

A :class:`FeatureBank` turns an ``(H, W, 3) uint8`` RGB image into a stack of
``float32`` per-pixel features with one name per feature, in the spirit of
ilastik's pixel classification (smoothed colour, Laplacian of Gaussian,
gradient magnitude, difference of Gaussians, Hessian eigenvalues), but with
fewer, better-chosen channels so that a forest over them predicts quickly:

* colour in three spaces: RGB, CIE Lab and the haematoxylin / eosin / DAB
  stain separation of :func:`skimage.color.rgb2hed` (a WBC nucleus is the most
  haematoxylin-rich object in a smear; its cytoplasm differs from red cells in
  Lab ``a`` / ``b``), plus HSV saturation;
* multi-scale filters (:mod:`baselines.filters`) on a few of those channels.

Speed comes from computing everything on a ``downsample``-times smaller image
(block mean).  That loses nothing measurable here: the SigTuple masks are
constant on 4 x 4 blocks and a WBC is 50-70 px wide, so the label itself has a
resolution of 4 px.  Classifiers then predict on ``downsample**2`` times fewer
pixels and :func:`upsample` brings probabilities back to full resolution.

The bank is a pure function of its parameters and the image, so a run computes
features once per image and reuses them across segmenters and folds through
:func:`cached_features` (bounded by bytes).

Boundary handling is symmetric mirroring throughout (``mode="reflect"`` in
:mod:`scipy.ndimage`), the same as :func:`tiling.read_tile`, so a tile read
with :attr:`FeatureBank.reach` pixels of context yields exactly the features of
the whole image inside the tile, provided tiles start on multiples of
``downsample`` (see :mod:`baselines.pixel`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import color

from baselines.filters import FILTERS, SMOOTHED_FILTERS
from tiling.runtime import parallel_map

__all__ = [
    "COLOUR_CHANNELS",
    "FeatureBank",
    "cached_features",
    "clear_feature_cache",
    "colour_channels",
    "colour_planes",
    "downsample_mean",
    "upsample",
]

#: Colour channels the bank can compute, in this order, all scaled to roughly [0, 1].
COLOUR_CHANNELS = ("R", "G", "B", "L", "a", "b", "S", "Hx", "Eo", "DAB")

# Scale factors that bring each channel to roughly [0, 1] so that sigma-scaled
# filter responses are comparable across channels (matters for the SVM).
_LAB_SCALE = {"L": 1 / 100.0, "a": 1 / 128.0, "b": 1 / 128.0}
_HED_SCALE = 1 / 0.1  # rgb2hed output on smears lies within about [-0.1, 0.2]


def downsample_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """Block-mean downsampling by an integer factor.

    Parameters
    ----------
    array : ndarray, shape (H, W) or (H, W, C)
        ``H`` and ``W`` must be multiples of ``factor``.
    factor : int
        Block side, ``>= 1``.

    Returns
    -------
    ndarray, shape (H // factor, W // factor[, C]), float32
    """
    if factor == 1:
        return np.asarray(array, dtype=np.float32)
    h, w = array.shape[:2]
    if h % factor or w % factor:
        raise ValueError(f"Image of shape {array.shape} cannot be block-averaged by {factor}: pad it to a multiple first.")
    # Sum the factor**2 strided sub-grids: a few passes of contiguous float32
    # adds, about 4x faster than a reshaped ``mean`` over two axes.
    total = np.zeros((h // factor, w // factor, *array.shape[2:]), np.float32)
    for dy in range(factor):
        for dx in range(factor):
            total += array[dy::factor, dx::factor]
    total *= np.float32(1.0 / factor**2)
    return total


def upsample(prob: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling by an integer factor with pixel-centre alignment.

    Full-resolution pixel ``factor * i + k`` sits at coarse coordinate
    ``i + (k + 0.5) / factor - 0.5``; edges are extended by symmetric
    mirroring, matching the mirroring used for tile context.

    Parameters
    ----------
    prob : ndarray, shape (h, w), float
    factor : int

    Returns
    -------
    ndarray, shape (h * factor, w * factor), float32
    """
    prob = np.asarray(prob, dtype=np.float32)
    if factor == 1:
        return prob
    out = prob
    for axis in (0, 1):
        out = _upsample_axis(out, factor, axis)
    return out


def _upsample_axis(array: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """Linear interpolation along one axis (see :func:`upsample`)."""
    n = array.shape[axis]
    padded = np.concatenate([np.take(array, [0], axis), array, np.take(array, [n - 1], axis)], axis=axis)
    pieces = []
    for k in range(factor):
        offset = (k + 0.5) / factor - 0.5  # in (-0.5, 0.5)
        # Neighbour on the side of the offset, weighted by its distance.
        shift = 1 if offset >= 0 else -1
        frac = np.float32(abs(offset))
        centre = np.take(padded, np.arange(1, n + 1), axis)
        side = np.take(padded, np.arange(1 + shift, n + 1 + shift), axis)
        pieces.append((1 - frac) * centre + frac * side)
    stacked = np.stack(pieces, axis=axis + 1)  # (..., n, factor, ...)
    shape = list(array.shape)
    shape[axis] = n * factor
    return stacked.reshape(shape)


def colour_channels(rgb: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Colour channels of an RGB image.

    Parameters
    ----------
    rgb : ndarray, shape (H, W, 3), float32 in [0, 1]
    names : tuple of str
        A subset of :data:`COLOUR_CHANNELS`.

    Returns
    -------
    ndarray, shape (H, W, len(names)), float32
    """
    planes = colour_planes(rgb, names)
    return np.stack([planes[n] for n in names], axis=-1).astype(np.float32, copy=False)


def colour_planes(rgb: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The channels of :func:`colour_channels` as separate ``(H, W)`` planes, not stacked.

    Returns
    -------
    dict of str to ndarray, each (H, W), float32 (possibly non-contiguous views)
    """
    unknown = [n for n in names if n not in COLOUR_CHANNELS]
    if unknown:
        raise ValueError(f"Unknown colour channels {unknown}; known ones are {list(COLOUR_CHANNELS)}.")
    out: dict[str, np.ndarray] = {"R": rgb[..., 0], "G": rgb[..., 1], "B": rgb[..., 2]}
    if any(n in names for n in ("L", "a", "b")):
        lab = color.rgb2lab(rgb)
        for i, n in enumerate(("L", "a", "b")):
            out[n] = lab[..., i] * _LAB_SCALE[n]
    if "S" in names:
        # HSV saturation without the full conversion: (max - min) / max.
        mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
        out["S"] = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    if any(n in names for n in ("Hx", "Eo", "DAB")):
        hed = color.rgb2hed(rgb)
        for i, n in enumerate(("Hx", "Eo", "DAB")):
            out[n] = hed[..., i] * _HED_SCALE
    return {n: out[n].astype(np.float32, copy=False) for n in names}



@dataclass(frozen=True)
class FeatureBank:
    """A named, multi-scale per-pixel feature bank.

    Parameters
    ----------
    colours : tuple of str
        Colour channels kept as raw features (see :data:`COLOUR_CHANNELS`).
    filtered : tuple of str
        Colour channels the filters run on.
    filters : tuple of str
        Filter names from :data:`~baselines.filters.FILTERS`.
    sigmas : tuple of float
        Filter scales in *coarse* (downsampled) pixels; multiply by
        ``downsample`` for full-resolution pixels.
    downsample : int
        Block-mean factor applied before any feature is computed.

    Examples
    --------
    >>> bank = FeatureBank()
    >>> feats = bank.compute(np.zeros((64, 64, 3), np.uint8))
    >>> feats.shape == (64 // bank.downsample, 64 // bank.downsample, bank.n_features)
    True
    """

    colours: tuple[str, ...] = ("R", "G", "B", "L", "a", "b", "S", "Hx", "Eo")
    filtered: tuple[str, ...] = ("L", "a", "b", "Hx")
    filters: tuple[str, ...] = ("gauss", "gradmag", "log")
    sigmas: tuple[float, ...] = (1.0, 2.0, 4.0)
    downsample: int = 2

    def __post_init__(self) -> None:
        for name in self.filters:
            if name not in FILTERS:
                raise ValueError(f"Unknown filter {name!r}; known ones are {sorted(FILTERS)}.")
        if self.downsample < 1 or int(self.downsample) != self.downsample:
            raise ValueError(f"downsample must be a positive integer, got {self.downsample!r}.")
        if any(s <= 0 for s in self.sigmas):
            raise ValueError(f"sigmas must be positive, got {self.sigmas!r}.")
        colour_channels(np.zeros((1, 1, 3), np.float32), tuple(self.colours) + tuple(self.filtered))

    @property
    def names(self) -> list[str]:
        """One name per feature, in the order of the last axis of :meth:`compute`."""
        names = list(self.colours)
        for channel in self.filtered:
            for filt in self.filters:
                _, suffixes, _ = FILTERS[filt]
                for s in self.sigmas:
                    names.extend(f"{channel}_{filt}{sfx}_s{s:g}" for sfx in suffixes)
        return names

    @property
    def n_features(self) -> int:
        return len(self.names)

    @property
    def reach(self) -> int:
        """Full-resolution pixels beyond which a pixel's features are unaffected.

        A multiple of ``downsample``, so tile context keeps the block grid.
        """
        coarse = max((FILTERS[f][2](s) for f in self.filters for s in self.sigmas), default=0)
        return int(coarse) * self.downsample

    def to_dict(self) -> dict:
        """JSON-able parameters (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, params: dict) -> FeatureBank:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})

    def compute(self, image: np.ndarray, n_jobs: int | None = None) -> np.ndarray:
        """Features of one image.

        Parameters
        ----------
        image : ndarray, shape (H, W, 3), uint8
            RGB; ``H`` and ``W`` must be multiples of ``downsample``
            (:mod:`baselines.pixel` pads them).
        n_jobs : int or None
            Threads for the scales of a large image, see
            :func:`tiling.runtime.resolve_n_jobs`.

        Returns
        -------
        ndarray, shape (H // downsample, W // downsample, n_features), float32
            C-contiguous, so ``reshape(-1, n_features)`` is free.
        """
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"Expected an (H, W, 3) RGB image, got shape {image.shape}.")
        rgb = downsample_mean(image, self.downsample) * np.float32(1 / 255)
        channels = colour_planes(rgb, tuple(dict.fromkeys(self.colours + self.filtered)))
        h, w = rgb.shape[:2]
        # Assembled feature-first, (n_features, h, w), so every feature is one
        # contiguous write; a single transpose at the end gives the
        # pixel-major layout classifiers read.  Writing straight into
        # (h, w, n_features) strided the 57 writes of the rf bank and cost a
        # third of the bank's time on large images.
        planes = np.empty((self.n_features, h, w), np.float32)
        column = self._columns()
        for k, n in enumerate(self.colours):
            planes[k] = channels[n]
        smoothed_names = [f for f in self.filters if f in SMOOTHED_FILTERS]
        if "gauss" in self.filters or smoothed_names:
            stack = np.stack([channels[n] for n in self.filtered])

            def one_sigma(s: float) -> None:
                # sigma 0 on the channel axis: scipy skips it, so one call
                # smooths every channel; the filters of the smoothed channels
                # then run once on all of them together.
                smooth = ndi.gaussian_filter(stack, (0, s, s), mode="reflect")
                results = {"gauss": smooth}
                results.update({f: SMOOTHED_FILTERS[f](smooth, s) for f in smoothed_names})
                for filt, result in results.items():
                    if filt in self.filters:
                        for c in range(len(self.filtered)):
                            planes[column[c, filt, s, 0]] = result[c]

            # The sigmas are independent and scipy.ndimage releases the GIL,
            # so on a large image two threads take about 0.6x the time.
            parallel_map(one_sigma, self.sigmas, n_jobs if h * w >= THREAD_MIN_PIXELS else 1)
        for c, n in enumerate(self.filtered):
            x = None
            for filt in self.filters:
                if filt == "gauss" or filt in SMOOTHED_FILTERS:
                    continue
                x = np.ascontiguousarray(channels[n]) if x is None else x
                for s in self.sigmas:
                    result = FILTERS[filt][0](x, s)
                    for r, plane in enumerate(result if isinstance(result, tuple) else (result,)):
                        planes[column[c, filt, s, r]] = plane
        return np.ascontiguousarray(np.moveaxis(planes, 0, -1))

    def _columns(self) -> dict[tuple[int, str, float, int], int]:
        """Feature index of (filtered channel, filter, sigma, output), in the order of :attr:`names`."""
        columns, k = {}, len(self.colours)
        for c in range(len(self.filtered)):
            for filt in self.filters:
                for s in self.sigmas:
                    for r in range(len(FILTERS[filt][1])):
                        columns[c, filt, s, r] = k
                        k += 1
        return columns


#: Feature-grid pixels from which :meth:`FeatureBank.compute` runs its scales
#: in parallel threads.  A 128 px patch (4,096 grid px) loses by it: rf bank,
#: measured 6.1-8.1 ms a patch serial against 8.7-9.0 ms threaded.
THREAD_MIN_PIXELS = 32_768

# Least-recently-used, bounded by CACHE_LIMIT_BYTES; emptied by clear_feature_cache().
_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_CACHE_BYTES = [0]
CACHE_LIMIT_BYTES = 1 << 30


def cached_features(bank: FeatureBank, image: np.ndarray, n_jobs: int | None = None) -> np.ndarray:
    """:meth:`FeatureBank.compute`, memoised on the image's bytes and the bank.

    The cache is least-recently-used and bounded by :data:`CACHE_LIMIT_BYTES`
    (1 GiB), so cross-validation and several segmenters sharing one bank
    compute each training image's features once per run.  Returned arrays are
    read-only; copy before modifying.
    """
    image = np.ascontiguousarray(image)
    digest = hashlib.blake2b(image.tobytes(), digest_size=16).digest()
    key = (digest, image.shape, str(image.dtype), repr(sorted(bank.to_dict().items())))
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    feats = bank.compute(image, n_jobs)
    feats.setflags(write=False)
    _CACHE[key] = feats
    _CACHE_BYTES[0] += feats.nbytes
    while _CACHE_BYTES[0] > CACHE_LIMIT_BYTES and len(_CACHE) > 1:
        _, old = _CACHE.popitem(last=False)
        _CACHE_BYTES[0] -= old.nbytes
    return feats


def clear_feature_cache() -> None:
    """Empty the :func:`cached_features` cache."""
    _CACHE.clear()
    _CACHE_BYTES[0] = 0

