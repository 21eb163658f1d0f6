"""The fitted pipeline a user holds: :class:`WBCModel`.

A segmenter only turns an RGB image into a WBC probability map at the scale
and in the colours it was trained on.  What finds the WBCs of another lab's
image is the whole chain, and :class:`WBCModel` holds all of it::

    image --white balance, nuclear stain gain--> training colours --resize--> training scale
          --segmenter--> probability --instances--> labels at the image's size
          --> per-cell table, warnings

* **Colour**: every image (training and new) is white-balanced so that its
  plasma background has the training images' background colour
  (:func:`stain.normalise.white_balance`), then, for the learned
  segmenters, its optical density is scaled so that its nuclei are as
  densely stained as the training images' (:mod:`stain.anchor`); those are
  also trained with stain augmentation, so what these two steps leave is
  covered.
* **Scale**: each image's scale is estimated (:func:`compare.pipeline.scale.estimate_scale`,
  from its red cells, or by probing the segmenter at a few scales on
  single-WBC crops) and the image resized to the training scale; a factor
  within :data:`SCALE_TOLERANCE` of 1 is not applied, since training covers
  that range and resampling would only blur.
* **Instances**: the instance settings tuned on the training masks
  (:class:`compare.pipeline.instances.InstanceParams`).

It alone writes and reads a model folder: ``model.json`` (format version,
segmenter name, package version, training data hash, every setting above)
beside ``segmenter/`` (the segmenter's own safe files) and a ``.complete``
marker written last.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from compare.io.atomic import write_text_atomic
from compare.pipeline.blocks import (
    BLOCK,
    BLOCK_MARGIN,
    WHOLE,
    compact_labels,
    predict_proba_blocked,
    resize_labels,
    resize_prob,
    resize_rgb,
)
from compare.pipeline.instances import InstanceParams, median_wbc_diameter, separate_instances, tune_instance_params
from compare.pipeline.preparation import prepared
from compare.pipeline.scale import MIN_RULER_SIDE, SCALE_TOLERANCE, ScaleEstimate, TrainingScale, estimate_scale
from stain.anchor import anchor_matrix, apply_density_map, nucleus_density
from stain.normalise import angle_deg, darkest_lit_pixels, stain_direction

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "SCALE_TOLERANCE",
    "WHOLE",
    "BLOCK",
    "BLOCK_MARGIN",
    "Prediction",
    "WBCModel",
    "ModelFormatError",
    "default_model_dir",
    "load_model",
    "predict_proba_blocked",
]

#: Version of the model folder layout written by :meth:`WBCModel.save`.
FORMAT_VERSION = 1
#: The manifest file of a model folder.
MANIFEST = "model.json"

#: Smallest angle, in degrees, between an image's nuclear stain colour and the
#: training images' mean that may warn (see :meth:`WBCModel.fit`).
_MIN_COLOUR_WARNING_DEG = 10.0
#: The warning angle is this multiple of the 95th percentile of the training
#: images' own angles.  Measured (``stain.normalise.stain_direction`` of the
#: white-balanced images, field-of-view rim left out): the 169 SigTuple
#: training images 95 % within 10.9 degrees (limit 13.6), its 61 unlabelled
#: test images within 15.1; the rapid-stain look at 13.6-16.4 (5th-95th
#: percentile over every 4th training image), the camera look at 11.1-26.5.
_COLOUR_WARNING_MARGIN = 1.25
#: Values of ``WBCModel(stain_anchor=...)``: which parts of
#: :func:`stain.anchor.anchor_matrix` (turn, gain) are applied.
STAIN_ANCHORS = ("none", "rotate", "gain", "rotate+gain")
#: Version of :func:`stain.normalise.stain_direction`'s definition stored in
#: ``model.json``; a model saved with another has no colour check.
_STAIN_DIRECTION_VERSION = 3


class ModelFormatError(ValueError):
    """A model folder this version cannot read, with what to do about it."""


@dataclass
class Prediction:
    """What a :class:`WBCModel` found in one image.

    Attributes
    ----------
    labels : ndarray, shape (H, W), uint16 (int32 beyond 65,535 WBCs)
        0 background, 1..n one per WBC, at the image's own size.
    probability : ndarray, shape (H, W), float32
        WBC probability at the image's own size.
    cells : pandas.DataFrame
        One row per WBC (``id`` = its label): position, size and shape,
        see :func:`compare.pipeline.measure.cell_table`.
    scale : ScaleEstimate
        The resize factor used and how it was found.
    warnings : list of str
        Reasons not to trust the counts of this image (no reliable scale,
        colours unlike the training images); empty when none.
    """

    labels: np.ndarray
    probability: np.ndarray
    cells: pd.DataFrame
    scale: ScaleEstimate
    warnings: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Number of WBCs found."""
        return int(len(self.cells))


# -- fitting facts ---------------------------------------------------------------

def _data_hash(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for image, mask in zip(images, masks):
        digest.update(np.ascontiguousarray(image).tobytes())
        digest.update(np.packbits(np.asarray(mask, bool)).tobytes())
    return digest.hexdigest()


def _stain_direction_and_warning(balanced: Sequence[np.ndarray],
                                  darkest: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """Mean stain direction of the white-balanced training images, and the angle that earns a warning."""
    directions = [v for v in (stain_direction(im, dark=d) for im, d in zip(balanced, darkest)) if v is not None]
    mean = np.mean(directions, axis=0)
    mean = mean / np.linalg.norm(mean)
    angles = [angle_deg(d, mean) for d in directions]
    spread = _COLOUR_WARNING_MARGIN * float(np.percentile(angles, 95)) if angles else 0.0
    return mean, max(_MIN_COLOUR_WARNING_DEG, spread)


def _instances_and_scale(masks: Sequence[np.ndarray],
                         balanced: Sequence[np.ndarray]) -> tuple[InstanceParams, TrainingScale]:
    """Instance settings learned from the masks, and the training scale (WBC and red-cell diameters)."""
    from compare.pipeline.scale import SIGTUPLE_RBC_DIAMETER

    wbc_diameter = median_wbc_diameter(masks)
    # The red-cell ruler of the training images, measured as new images
    # will be; 128-px patches show too few whole red cells to count, and
    # then the SigTuple value (measured the same way on its large images)
    # stands in.
    provisional = TrainingScale(wbc_diameter=wbc_diameter, rbc_diameter=SIGTUPLE_RBC_DIAMETER)
    rbc = [e.observed_rbc_diameter for e in (estimate_scale(im, provisional) for im in balanced
                                              if min(im.shape[:2]) >= MIN_RULER_SIDE)
           if e.method == "red-cells" and e.confident]
    return tune_instance_params(masks), TrainingScale(
        wbc_diameter=wbc_diameter, rbc_diameter=float(np.median(rbc)) if rbc else SIGTUPLE_RBC_DIAMETER)


def _package_version() -> str:
    try:
        return importlib.metadata.version("wbc-compare")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# -- the pipeline ---------------------------------------------------------------

class WBCModel:
    """Segmenter + colour normalisation + scale estimation + instance settings.

    Parameters
    ----------
    segmenter : str, default "unet"
        A registry name (:data:`compare.pipeline.segmenters.REGISTRY`); the model
        folder stores it, so loading knows how to read the segmenter.
    random_state : int, default 0
        Seeds the segmenter made from a registry name.
    normalise_colour : bool, default True
        White-balance every image to the training background colour.
    auto_scale : bool, default True
        Estimate each image's scale and resize it to the training scale.
    require_nucleus : bool, default True
        Drop found objects without a stained nucleus (:func:`compare.pipeline.nucleus_check.drop_without_nucleus`):
        every WBC has one, while the pale clumps of red cells and plasma a
        learned model mistakes for WBCs on unfamiliar slides do not.
    stain_anchor : {"gain", "rotate", "rotate+gain", "none"}, optional
        After the white balance, map each image's optical density so its
        nuclei's stain vector matches the training images' mean
        (:func:`stain.anchor.anchor_matrix`): scaled to its strength, turned
        onto its direction, both, or neither.  Needs ``normalise_colour``.
        Default: the registry's choice for the segmenter
        (``SegmenterSpec.stain_anchor``: "gain", "none" for ``threshold``).
        The turn is never the default: it lost counts on shifted large
        images (``docs/experiments.md``).

    Attributes
    ----------
    segmenter_ : object
        The fitted segmenter.
    name_ : str
        Registry name of the segmenter.
    params_ : InstanceParams
    training_scale_ : TrainingScale
    background_ : ndarray, shape (3,), float64
        Training background colour that images are balanced to.
    stain_direction_ : ndarray, shape (3,), float64
        Mean stain direction of the (balanced) training images.
    stain_anchor_ : str
        The stain anchor in use (``stain_anchor`` or the registry's choice).
    nucleus_reference_ : ndarray, shape (3,), float64, or None
        Mean nuclear optical-density vector of the balanced training images
        (:func:`stain.anchor.nucleus_density`) that images are anchored to;
        None when no anchor is applied.
    stain_copies_ : dict
        ``{"copies": n, "strength": s}``: the stain-augmented training copies
        per image (from the registry's ``SegmenterSpec``); None for a model saved
        before this was recorded.
    colour_warning_deg_ : float
        Stain-direction angle beyond which a prediction carries a warning
        (infinite, no check, for a model saved with an older definition).
    fit_s_ : float
        Seconds the segmenter's fit took.
    data_hash_ : str
        SHA-256 of the training images and masks.
    """

    def __init__(self, segmenter: str = "unet", *, random_state: int = 0, normalise_colour: bool = True,
                 auto_scale: bool = True, require_nucleus: bool = True, stain_anchor: str | None = None):
        self.segmenter = segmenter
        self.random_state = random_state
        self.normalise_colour = normalise_colour
        self.auto_scale = auto_scale
        self.require_nucleus = require_nucleus
        self.stain_anchor = stain_anchor

    # -- fitting ----------------------------------------------------------------
    def _balance(self, image: np.ndarray) -> np.ndarray:
        if not self.normalise_colour:
            return image
        from stain.normalise import white_balance

        return white_balance(image, self.background_)

    def _stain_map(self, balanced: np.ndarray, dark: np.ndarray | None = None) -> np.ndarray | None:
        """The (3, 3) optical-density map that anchors this white-balanced image's nuclear stain; None when off.

        ``dark`` is the image's :func:`stain.normalise.darkest_lit_pixels` when already computed.
        """
        if self.nucleus_reference_ is None:
            return None
        return anchor_matrix(nucleus_density(balanced, self.background_, dark=dark), self.nucleus_reference_,
                             rotate="rotate" in self.stain_anchor_, gain="gain" in self.stain_anchor_)

    def _anchor(self, balanced: np.ndarray, stain_map: np.ndarray | None = None) -> np.ndarray:
        """The white-balanced image with its nuclear stain mapped onto the training images' (:mod:`stain.anchor`).

        ``stain_map`` is :meth:`_stain_map` of the image (or of the same
        image at another scale, which has the same stain); computed when omitted.
        """
        if self.nucleus_reference_ is None:
            return balanced
        matrix = self._stain_map(balanced) if stain_map is None else stain_map
        return apply_density_map(balanced, self.background_, matrix)

    def fit(self, images: Sequence[np.ndarray] | Sequence[Any], masks: Sequence[np.ndarray] | None = None) -> "WBCModel":
        """Fit the segmenter and learn the colour, scale and instance settings.

        Parameters
        ----------
        images : sequence of ndarray (H, W, 3) uint8, or of :class:`compare.io.images.Sample`
            Training images (samples carry their masks).
        masks : sequence of ndarray (H, W) bool, optional
            Required unless ``images`` are samples.

        Returns
        -------
        WBCModel
            ``self``, fitted.
        """
        from compare.pipeline.segmenters import get_spec, make_segmenter

        if masks is None:
            masks = [s.mask for s in images]
            images = [s.image for s in images]
        images, masks = list(images), [np.asarray(m, bool) for m in masks]
        if not images or len(images) != len(masks):
            raise ValueError(f"fit needs as many masks as images (at least one); got {len(images)} images "
                             f"and {len(masks)} masks.")
        segmenter, self.name_ = make_segmenter(self.segmenter, random_state=self.random_state), self.segmenter
        spec = get_spec(self.segmenter)
        self.stain_anchor_ = spec.stain_anchor if self.stain_anchor is None else self.stain_anchor
        if self.stain_anchor_ not in STAIN_ANCHORS:
            raise ValueError(f"stain_anchor={self.stain_anchor_!r}; use one of {', '.join(STAIN_ANCHORS)}.")
        # What follows up to the segmenter's fit depends only on the data and
        # these settings; compare.pipeline.preparation shares it between the models of a run.
        self.data_hash_ = _data_hash(images, masks)
        colour_key = ("colour", self.data_hash_, self.normalise_colour)
        self.background_, balanced, darkest = prepared(colour_key, lambda: self._white_balanced(images))
        anchor_key = (*colour_key, self.stain_anchor_)
        self.nucleus_reference_, anchored = prepared(anchor_key, lambda: self._anchored(balanced, darkest))
        copies, strength = spec.stain_copies, spec.stain_copy_strength
        self.stain_copies_ = {"copies": copies, "strength": strength if copies else 0.0}
        fit_images, fit_masks = anchored, masks
        if copies:
            fit_images = anchored + prepared((*anchor_key, "copies", copies, strength, self.random_state),
                                             lambda: self._stain_copies(anchored, copies, strength))
            fit_masks = masks * (copies + 1)
        self.stain_direction_, self.colour_warning_deg_ = prepared(
            (*colour_key, "direction"), lambda: _stain_direction_and_warning(balanced, darkest))
        start = time.perf_counter()
        segmenter.fit(fit_images, fit_masks)
        self.fit_s_ = time.perf_counter() - start
        self.segmenter_ = segmenter
        self.params_, self.training_scale_ = prepared(
            (*colour_key, "instances and scale"), lambda: _instances_and_scale(masks, balanced))
        return self

    def _white_balanced(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """The training background colour, the white-balanced images and their darkest lit pixels."""
        if self.normalise_colour:
            from stain.normalise import background_colour

            self.background_ = np.median(np.stack([background_colour(im) for im in images]), axis=0)
        else:
            self.background_ = np.full(3, 255.0)
        balanced = [self._balance(im) for im in images]
        return self.background_, balanced, [darkest_lit_pixels(im) for im in balanced]

    def _anchored(self, balanced: list[np.ndarray],
                  darkest: list[np.ndarray]) -> tuple[np.ndarray | None, list[np.ndarray]]:
        """The nuclear stain reference (None without an anchor) and the anchored training images."""
        self.nucleus_reference_ = None
        if self.normalise_colour and self.stain_anchor_ != "none":
            vectors = [v for v in (nucleus_density(im, self.background_, dark=d) for im, d in zip(balanced, darkest))
                       if v is not None]
            self.nucleus_reference_ = np.mean(vectors, axis=0) if vectors else None
        return self.nucleus_reference_, [self._anchor(im, self._stain_map(im, d)) for im, d in zip(balanced, darkest)]

    def _stain_copies(self, anchored: list[np.ndarray], copies: int, strength: float) -> list[np.ndarray]:
        """``copies`` stain-augmented versions of every anchored image, drawn from the model's seed."""
        from stain.augment import random_stain

        # Other labs' stains, drawn once per copy from the model's seed,
        # for segmenters that learn colours without augmenting.
        rng = np.random.default_rng(self.random_state)
        return [random_stain(im, rng, strength=strength) for _ in range(copies) for im in anchored]

    def _check_fitted(self) -> None:
        if not hasattr(self, "segmenter_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("This WBCModel is not fitted yet; call fit(samples) or load a saved model "
                                 "with compare.load_model(folder).")

    # -- prediction -------------------------------------------------------------
    def _probe(self, image: np.ndarray, factor: float, memo: dict | None = None) -> np.ndarray:
        """Equivalent diameters, in pixels of ``image`` resized by ``factor``, of the WBCs found there.

        ``memo`` keeps the probability map at factor 1, which :meth:`predict`
        reuses when it keeps the image's own scale.
        """
        height, width = image.shape[:2]
        work = image if factor == 1.0 else resize_rgb(image, (max(1, round(height * factor)),
                                                               max(1, round(width * factor))))
        prob = predict_proba_blocked(self.segmenter_, work)
        if memo is not None and factor == 1.0:
            memo[1.0] = prob
        labels = separate_instances(prob, self.params_)
        areas = np.bincount(labels.ravel())[1:]
        return 2.0 * np.sqrt(areas[areas > 0] / np.pi)

    def estimate_scale(self, image: np.ndarray, *, wbc_diameter: float | None = None,
                       pixel_size_um: float | None = None, name: str = "the image",
                       memo: dict | None = None, stain_map: np.ndarray | None = None) -> ScaleEstimate:
        """The factor that brings ``image`` to the training scale, and how it was found.

        A given WBC diameter or pixel size wins.  Otherwise the red cells are
        the ruler (:func:`compare.pipeline.scale.estimate_scale`) when the image is
        large enough to show many of them; a crop or patch is measured by
        its WBCs instead, the segmenter run at a few trial scales (:meth:`_probe`).

        Parameters
        ----------
        image : ndarray, shape (H, W, 3), uint8
            Already white-balanced when the model normalises colour.
        wbc_diameter : float, optional, keyword-only
            The user's typical WBC diameter in this image, in pixels (wins).
        pixel_size_um : float, optional, keyword-only
            The image's pixel size in micrometres.
        name : str, keyword-only
            How messages refer to the image.
        memo : dict, optional, keyword-only
            Receives the probability map the probe computed at factor 1.
        stain_map : ndarray, shape (3, 3), optional, keyword-only
            The image's :meth:`_stain_map`, applied before the probe segments
            it; computed when omitted.
        """
        self._check_fitted()
        if not self.auto_scale and wbc_diameter is None and pixel_size_um is None:
            return ScaleEstimate(factor=1.0, method="none", observed_rbc_diameter=None, confident=True,
                                 detail="scale estimation is off for this model")
        anchored: list[np.ndarray] = []  # made on the probe's first call: large images are never probed

        def probe(factor: float) -> np.ndarray:
            if not anchored:
                anchored.append(self._anchor(image, stain_map))
            return self._probe(anchored[0], factor, memo)

        return estimate_scale(image, self.training_scale_, wbc_diameter=wbc_diameter, pixel_size_um=pixel_size_um,
                              probe=probe, name=name)

    def predict(self, image: np.ndarray, *, wbc_diameter: float | None = None, pixel_size_um: float | None = None,
                scale: float | None = None, name: str = "the image", map_blocks: Callable | None = None,
                cells: bool = True) -> Prediction:
        """Find, delineate and measure the WBCs of one image.

        Parameters
        ----------
        image : ndarray, shape (H, W, 3), uint8
            RGB image of any size and any lab.
        wbc_diameter : float, optional, keyword-only
            Typical WBC diameter in this image, in pixels; overrides the
            scale estimate.
        pixel_size_um : float, optional, keyword-only
            Pixel size in micrometres; overrides the scale estimate and puts
            micrometre columns into the cell table.
        scale : float, optional, keyword-only
            A resize factor to use as it is (1.0: the image is at the
            training scale); skips estimation.
        name : str, keyword-only
            How warnings refer to the image.
        map_blocks : callable, optional, keyword-only
            See :func:`predict_proba_blocked`.
        cells : bool, keyword-only
            Measure each WBC (the per-cell table); False leaves it with the
            ``id`` column only, which is faster.

        Returns
        -------
        Prediction
        """
        self._check_fitted()
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{name}: expected an (H, W, 3) uint8 RGB image, got {image.dtype} of shape {image.shape}.")
        height, width = image.shape[:2]
        balanced = self._balance(image)
        darkest = darkest_lit_pixels(balanced)  # its nuclei: for the stain gain and the colour check
        stain_map = self._stain_map(balanced, darkest)
        warnings: list[str] = []
        memo: dict = {}
        if scale is not None:
            estimate = ScaleEstimate(factor=float(scale), method="given", observed_rbc_diameter=None, confident=True,
                                     detail="factor given by the caller")
        else:
            estimate = self.estimate_scale(balanced, wbc_diameter=wbc_diameter, pixel_size_um=pixel_size_um, name=name,
                                           memo=memo, stain_map=stain_map)
        if not estimate.confident:
            warnings.append(f"no reliable scale ({estimate.detail}); pass --wbc-diameter or --pixel-size")
        direction = stain_direction(balanced, dark=darkest)
        if direction is not None:
            angle = angle_deg(direction, self.stain_direction_)
            if angle > self.colour_warning_deg_:
                warnings.append(f"stain colours unlike the training images ({angle:.0f} degrees from them, "
                                f"{self.colour_warning_deg_:.0f} allowed)")
        factor = estimate.factor
        applied = factor if scale is not None or max(factor, 1 / factor) > SCALE_TOLERANCE else 1.0
        work = balanced
        if applied != 1.0:
            work = resize_rgb(balanced, (max(1, round(height * applied)), max(1, round(width * applied))))
        if applied == 1.0 and 1.0 in memo and map_blocks is None:
            prob = memo.pop(1.0)  # the probe already predicted the image as it is
        else:
            # Anchored after resizing: the map is per pixel, and a 3x image is then anchored at 1x.
            prob = predict_proba_blocked(self.segmenter_, self._anchor(work, stain_map), map_blocks=map_blocks)
        memo.clear()
        labels = separate_instances(prob, self.params_)
        if self.require_nucleus and labels.max():
            from compare.pipeline.nucleus_check import drop_without_nucleus

            # The check was tuned on white-balanced colours; the anchor's gain would move its dark limits.
            labels = drop_without_nucleus(labels, work)
        del work
        if applied != 1.0:
            # A cell too small to survive the mapping back is dropped; the
            # rest keep their order, renumbered 1..m.
            labels = compact_labels(resize_labels(labels, (height, width)))
            prob = resize_prob(prob, (height, width))
        if applied != factor:
            estimate = ScaleEstimate(factor=1.0, method=estimate.method,
                                     observed_rbc_diameter=estimate.observed_rbc_diameter,
                                     confident=estimate.confident,
                                     detail=f"{estimate.detail.rstrip('.')}; estimated x{factor:.2f} is within "
                                            f"x{SCALE_TOLERANCE} of the training scale, not applied")
        if cells:
            from compare.pipeline.measure import cell_table

            table = cell_table(labels, image, pixel_size_um=pixel_size_um, probability=prob)
        else:
            table = pd.DataFrame({"id": np.arange(1, int(labels.max()) + 1)})
        return Prediction(labels=labels, probability=prob, cells=table, scale=estimate, warnings=warnings)

    # -- persistence ------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The JSON-able facts :meth:`save` writes to ``model.json``."""
        self._check_fitted()
        return {
            "format_version": FORMAT_VERSION,
            "segmenter": self.name_,
            "package_version": _package_version(),
            "training_data_sha256": self.data_hash_,
            "random_state": self.random_state,
            "normalise_colour": self.normalise_colour,
            "auto_scale": self.auto_scale,
            "require_nucleus": self.require_nucleus,
            "instance_params": asdict(self.params_),
            "training_scale": asdict(self.training_scale_),
            "background": [round(float(v), 3) for v in self.background_],
            "stain_direction": [round(float(v), 6) for v in self.stain_direction_],
            "colour_warning_deg": round(float(self.colour_warning_deg_), 3),
            "stain_copies": self.stain_copies_,
            "stain_direction_version": _STAIN_DIRECTION_VERSION,
            "stain_anchor": self.stain_anchor_,
            "nucleus_reference": (None if self.nucleus_reference_ is None
                                  else [float(v) for v in self.nucleus_reference_]),  # exact: it moves pixels
            "fit_s": round(float(self.fit_s_), 3),
        }

    def save(self, folder: str | Path) -> Path:
        """Write the model folder: ``model.json``, ``segmenter/``, then ``.complete``.

        An existing folder is replaced.  The marker is written last, so a
        folder without it is known to be unfinished.
        """
        self._check_fitted()
        folder = Path(folder)
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "segmenter").mkdir(parents=True)
        self.segmenter_.save(folder / "segmenter")
        write_text_atomic(folder / MANIFEST, json.dumps(self.manifest(), indent=2) + "\n")
        write_text_atomic(folder / ".complete", "")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "WBCModel":
        """Read a model folder written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            If the folder or its ``.complete`` marker is missing.
        ModelFormatError
            If the folder was written by an older layout or another format version.
        """
        from compare.pipeline.segmenters import load_segmenter

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such model folder; pass a folder saved by 'compare run' "
                                    "(RUN/models/NAME) or by WBCModel.save.")
        manifest_file = folder / MANIFEST
        if not manifest_file.is_file():
            if (folder / "segmenter.json").is_file():
                raise ModelFormatError(f"{folder}: a model folder of the older layout (segmenter.json, no {MANIFEST}); "
                                       "re-create it with 'python -m compare run --segmenters NAME --protocols large'.")
            raise FileNotFoundError(f"{manifest_file}: missing, so {folder} is not a saved WBCModel; "
                                    "pass a folder saved by 'compare run' (RUN/models/NAME).")
        if not (folder / ".complete").is_file():
            raise FileNotFoundError(f"{folder}: the model was not saved completely (no .complete marker); "
                                    "save or train it again.")
        try:
            data = json.loads(manifest_file.read_text())
            version = int(data["format_version"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ModelFormatError(f"{manifest_file}: not a model manifest (no format_version); "
                                   "save the model again with 'compare run'.") from None
        if version != FORMAT_VERSION:
            raise ModelFormatError(f"{manifest_file}: format version {version}, this version reads {FORMAT_VERSION}; "
                                   "re-create the model with 'compare run' of this version.")
        model = cls(data["segmenter"], random_state=int(data.get("random_state", 0)),
                    normalise_colour=bool(data["normalise_colour"]), auto_scale=bool(data["auto_scale"]),
                    require_nucleus=bool(data.get("require_nucleus", True)),
                    stain_anchor=str(data.get("stain_anchor", "none")))
        model.name_ = data["segmenter"]
        model.segmenter_ = load_segmenter(model.name_, folder / "segmenter")
        model.params_ = InstanceParams(**data["instance_params"])
        model.training_scale_ = TrainingScale(**data["training_scale"])
        model.background_ = np.asarray(data["background"], np.float64)
        model.stain_direction_ = np.asarray(data["stain_direction"], np.float64)
        model.stain_anchor_ = model.stain_anchor
        reference = data.get("nucleus_reference")  # absent: saved before the anchor existed
        model.nucleus_reference_ = None if reference is None else np.asarray(reference, np.float64)
        # A direction measured by another definition cannot be compared: no colour check then.
        model.colour_warning_deg_ = (float(data["colour_warning_deg"])
                                     if data.get("stain_direction_version") == _STAIN_DIRECTION_VERSION else np.inf)
        model.fit_s_ = float(data["fit_s"])
        model.stain_copies_ = data.get("stain_copies")  # None: saved before it was recorded
        model.data_hash_ = str(data["training_data_sha256"])
        return model


def default_model_dir() -> Path:
    """The committed default model: ``results/models/unet``."""
    return Path(__file__).resolve().parents[2] / "results" / "models" / "unet"


def load_model(folder: str | Path | None = None) -> WBCModel:
    """Load a saved :class:`WBCModel`; None loads the committed default U-Net.

    Raises
    ------
    FileNotFoundError, ModelFormatError
        See :meth:`WBCModel.load`; the default's absence names the command
        that makes it.
    """
    if folder is None:
        folder = default_model_dir()
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: the default U-Net is missing from this copy; train it with "
                                    "'python -m compare run --segmenters unet --protocols large' or pass --model.")
    return WBCModel.load(folder)
