"""The fitted pipeline a user holds: :class:`WBCModel`.

A segmenter only turns an RGB image into a WBC probability map at the scale
and in the colours it was trained on.  What finds the WBCs of another lab's
image is the whole chain, and :meth:`WBCModel.predict` passes an image once
through its stages, in order, each in its own module and handing the next a
small result::

    image --colour--> Colour --scale--> ScaleChoice --segment--> Segmentation
          --instances--> labels --nucleus check--> labels --outline--> labels
          --measure--> MeasuredCells -> Prediction

* **colour** (:mod:`compare.pipeline.colour`): white balance to the
  training background, the stain map that anchors the nuclear stain, and
  the colour check;
* **scale** (:mod:`compare.pipeline.scale`): the image's scale from its red
  cells (:mod:`compare.pipeline.red_cells`), a given size, or the segmenter
  probed at a few trial scales, and the factor applied;
* **segment** (:mod:`compare.pipeline.segment`): resize, anchor, and the
  segmenter in bounded-memory blocks (:mod:`compare.pipeline.blocks`);
* **instances** (:mod:`compare.pipeline.instances`): the instance settings
  tuned on the training masks separate touching WBCs; scale, segment and
  instances run together in :mod:`compare.pipeline.checked_scale`, which
  runs them again by the probe where the WBCs found overrule the red cells;
* **nucleus check** (:mod:`compare.pipeline.nucleus_check`): objects
  without a stained nucleus are dropped;
* **outline** (:mod:`compare.pipeline.outline`): each WBC grown to the
  colour edge through the segmenter's uncertain band and the pale
  cytoplasm its colour shows (:mod:`compare.pipeline.plasma_contrast`);
* **measure** (:mod:`compare.pipeline.measure`): labels back at the image's
  size, each WBC's nucleus and its row of the cell table.

It alone writes and reads a model folder: ``model.json`` (format version,
segmenter name, package version, training data hash, every setting above)
beside ``segmenter/`` (the segmenter's own safe files) and a ``.complete``
marker written last.  :meth:`WBCModel.read_manifest` is the one reader of
``model.json`` for everyone else (its facts and its SHA-256).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from compare.io.atomic import write_text_atomic
from compare.pipeline.blocks import BLOCK, BLOCK_MARGIN, WHOLE, predict_proba_blocked
from compare.pipeline.checked_scale import segment_at_checked_scale
from compare.pipeline.colour import (
    STAIN_ANCHORS,
    STAIN_DIRECTION_VERSION,
    ColourReference,
    fit_background,
    fit_nucleus_reference,
    fit_stain_copies,
    fit_stain_direction,
    to_training_colours,
)
from compare.pipeline.instances import InstanceParams, tune_instance_params
from compare.pipeline.measure import measure_cells
from compare.pipeline.nucleus_check import drop_without_nucleus
from compare.pipeline.outline import outline_cells
from compare.pipeline.prediction import Prediction
from compare.pipeline.preparation import prepared
from compare.pipeline.scale import SCALE_TOLERANCE, SIZE_WINDOW, TrainingScale, fit_training_scale
from compare.pipeline.segmenters import get_spec

__all__ = ["FORMAT_VERSION", "MANIFEST", "SCALE_TOLERANCE", "WHOLE", "BLOCK", "BLOCK_MARGIN", "Prediction",
           "ModelManifest", "WBCModel", "ModelFormatError", "default_model_dir", "load_model", "predict_proba_blocked"]

#: Version of the model folder layout written by :meth:`WBCModel.save`; a
#: folder of another version is refused (:class:`ModelFormatError`).
FORMAT_VERSION = 2
#: The manifest file of a model folder.
MANIFEST = "model.json"
#: Every key of a manifest of this :data:`FORMAT_VERSION`.
_MANIFEST_KEYS = ("format_version", "segmenter", "package_version", "training_data_sha256", "random_state",
                  "normalise_colour", "auto_scale", "require_nucleus", "instance_params", "training_scale",
                  "background", "stain_direction", "colour_warning_deg", "stain_copies", "stain_direction_version",
                  "stain_anchor", "nucleus_reference", "fit_s")


class ModelFormatError(ValueError):
    """A model folder this version cannot read, with what to do about it."""


@dataclass(frozen=True)
class ModelManifest:
    """A model folder's ``model.json``, read and checked by :meth:`WBCModel.read_manifest`.

    Attributes
    ----------
    folder : Path
        The model folder, resolved.
    data : dict
        The manifest's facts (every key :meth:`WBCModel.manifest` writes).
    sha256 : str
        SHA-256 of the file's bytes: names the model in ``predict.json`` and
        in what ``compare score`` keeps for ``--resume``.
    """

    folder: Path
    data: dict[str, Any]
    sha256: str

    @property
    def segmenter(self) -> str:
        """Registry name of the model's segmenter."""
        return str(self.data["segmenter"])


def _data_hash(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for image, mask in zip(images, masks):
        digest.update(np.ascontiguousarray(image).tobytes())
        digest.update(np.packbits(np.asarray(mask, bool)).tobytes())
    return digest.hexdigest()


def _package_version() -> str:
    try:
        return importlib.metadata.version("wbc-compare")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class WBCModel(BaseEstimator):
    """Segmenter + colour normalisation + scale estimation + instance settings.

    A scikit-learn estimator: the constructor stores the settings below and
    nothing else, so :func:`sklearn.base.clone` and ``get_params`` work.

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
        The turn is never the default: where the darkest pixels are not
        nuclei it recolours the whole field, and shifted large images are
        miscounted (``docs/experiments.md``).

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
        per image (from the registry's ``SegmenterSpec``).
    colour_warning_deg_ : float
        Stain-direction angle beyond which a prediction carries a warning
        (infinite, no check, for a model saved with another definition of
        the stain direction).
    fit_s_ : float
        Seconds the segmenter's fit took.
    data_hash_ : str
        SHA-256 of the training images and masks.
    manifest_ : ModelManifest
        The folder the model was loaded from or saved to, its manifest and
        that file's SHA-256; absent on a model fitted and not saved.
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
    def fit(self, images: Sequence[np.ndarray] | Sequence[Any],
            masks: Sequence[np.ndarray] | None = None) -> WBCModel:
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
        from compare.pipeline.segmenters import make_segmenter

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
        # Up to the segmenter's fit, all depends on the data and these settings
        # alone: compare.pipeline.preparation shares it between the models of a run.
        self.data_hash_ = _data_hash(images, masks)
        colour_key = ("colour", self.data_hash_, self.normalise_colour)
        self.background_, balanced, darkest = prepared(colour_key,
                                                       lambda: fit_background(images, self.normalise_colour))
        anchor_key = (*colour_key, self.stain_anchor_)
        self.nucleus_reference_, anchored = prepared(anchor_key, lambda: fit_nucleus_reference(
            balanced, darkest, self.background_, self.normalise_colour, self.stain_anchor_))
        copies, strength = spec.stain_copies, spec.stain_copy_strength
        self.stain_copies_ = {"copies": copies, "strength": strength if copies else 0.0}
        fit_images, fit_masks = anchored, masks
        if copies:
            fit_images = anchored + prepared((*anchor_key, "copies", copies, strength, self.random_state),
                                             lambda: fit_stain_copies(anchored, copies, strength, self.random_state))
            fit_masks = masks * (copies + 1)
        self.stain_direction_, self.colour_warning_deg_ = prepared(
            (*colour_key, "direction"), lambda: fit_stain_direction(balanced, darkest))
        start = time.perf_counter()
        segmenter.fit(fit_images, fit_masks)
        self.fit_s_ = time.perf_counter() - start
        self.segmenter_ = segmenter
        self.params_, self.training_scale_ = prepared(
            (*colour_key, "instances and scale"),
            lambda: (tune_instance_params(masks), fit_training_scale(masks, balanced)))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "segmenter_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("This WBCModel is not fitted yet; call fit(samples) or load a saved model "
                                 "with compare.load_model(folder).")

    # -- prediction -------------------------------------------------------------
    def _colour_reference(self) -> ColourReference:
        """The training colours the colour stage brings images to (:mod:`compare.pipeline.colour`)."""
        self._check_fitted()
        return ColourReference(normalise=self.normalise_colour, background=self.background_,
                               nucleus_reference=self.nucleus_reference_, anchor=self.stain_anchor_,
                               stain_direction=self.stain_direction_, warning_deg=self.colour_warning_deg_)

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
            See :func:`compare.pipeline.blocks.predict_proba_blocked`; each
            block is what :meth:`segment_block` computes.
        cells : bool, keyword-only
            Find each WBC's nucleus and measure it (the per-cell table);
            False leaves ``nuclei`` None and the table with the ``id``
            column only, which is faster.

        Returns
        -------
        Prediction
        """
        self._check_fitted()
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{name}: expected an (H, W, 3) uint8 RGB image, got {image.dtype} "
                             f"of shape {image.shape}.")
        colour, spec = to_training_colours(image, self._colour_reference()), get_spec(self.name_)
        choice, segmentation, labels = segment_at_checked_scale(
            colour, self.training_scale_, self.segmenter_, self.params_, auto=self.auto_scale, scale=scale,
            wbc_diameter=wbc_diameter, pixel_size_um=pixel_size_um, name=name, map_blocks=map_blocks,
            views=spec.views_when_shrunk)
        if self.require_nucleus and labels.max():
            labels = drop_without_nucleus(labels, segmentation.image)
        labels = outline_cells(labels, segmentation.probability, segmentation.image, uncertain=spec.grow_outline,
                               by_colour=spec.outline_by_colour,  # up to the widest WBC the probe takes as whole
                               max_diameter=SIZE_WINDOW[1] * self.training_scale_.wbc_diameter)
        probability, factor = segmentation.probability, segmentation.factor
        del segmentation  # its working image: the measure stage reads the image as given
        found = measure_cells(labels, probability, image, factor=factor, pixel_size_um=pixel_size_um, cells=cells)
        # The scale's warning first: it is the one a user can act on (--wbc-diameter, --pixel-size).
        return Prediction(labels=found.labels, probability=found.probability, nuclei=found.nuclei, cells=found.cells,
                          scale=choice.estimate, warnings=[*choice.warnings, *colour.warnings])

    def segment_block(self, block: np.ndarray) -> np.ndarray:
        """The segmenter's WBC probability of one block of an image already in the training colours and scale.

        What :meth:`predict` asks ``map_blocks`` for, so a cluster worker holding this model can compute it.

        Parameters
        ----------
        block : ndarray, shape (h, w, 3), uint8

        Returns
        -------
        ndarray, shape (h, w), float32
        """
        self._check_fitted()
        return np.asarray(self.segmenter_.predict_proba(block), dtype=np.float32)

    # -- the model folder --------------------------------------------------------
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
            "stain_direction_version": STAIN_DIRECTION_VERSION,
            "stain_anchor": self.stain_anchor_,
            "nucleus_reference": (None if self.nucleus_reference_ is None
                                  else [float(v) for v in self.nucleus_reference_]),  # exact: it moves pixels
            "fit_s": round(float(self.fit_s_), 3),
            **getattr(self, "provenance_", {}),  # what 'compare fit' adds (compare.pipeline.finetune.provenance)
        }

    def save(self, folder: str | Path) -> Path:
        """Write the model folder: ``model.json``, ``segmenter/``, then ``.complete``.

        An existing folder is replaced.  The marker is written last, so a
        folder without it is known to be unfinished.  Sets :attr:`manifest_`.
        """
        self._check_fitted()
        folder = Path(folder)
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "segmenter").mkdir(parents=True)
        self.segmenter_.save(folder / "segmenter")
        write_text_atomic(folder / MANIFEST, json.dumps(self.manifest(), indent=2) + "\n")
        write_text_atomic(folder / ".complete", "")
        self.manifest_ = self.read_manifest(folder)
        return folder

    @staticmethod
    def read_manifest(folder: str | Path) -> ModelManifest:
        """The manifest of a model folder written by :meth:`save`, checked, without loading the segmenter.

        The one reader of ``model.json``: prediction, scoring, the report
        and the benchmarks take a model's facts and hash from here.

        Raises
        ------
        FileNotFoundError
            If the folder, its ``model.json`` or its ``.complete`` marker is missing.
        ModelFormatError
            If the folder was written by an older layout or another format
            version, or its manifest lacks a key of this version.
        """
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
        text = manifest_file.read_bytes()
        try:
            data = json.loads(text)
            version = int(data["format_version"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ModelFormatError(f"{manifest_file}: not a model manifest (no format_version); "
                                   "save the model again with 'compare run'.") from None
        if version != FORMAT_VERSION:
            raise ModelFormatError(f"{manifest_file}: format version {version}, this version reads {FORMAT_VERSION} "
                                   "only; re-create the model with 'python -m compare run --segmenters NAME' of "
                                   "this version.")
        missing = [key for key in _MANIFEST_KEYS if key not in data]
        if missing:
            raise ModelFormatError(f"{manifest_file}: format version {version} without {', '.join(missing)}; "
                                   "re-create the model with 'python -m compare run --segmenters NAME'.")
        return ModelManifest(folder=folder.resolve(), data=data, sha256=hashlib.sha256(text).hexdigest())

    @classmethod
    def load(cls, folder: str | Path) -> WBCModel:
        """Read a model folder written by :meth:`save`.

        Raises
        ------
        FileNotFoundError, ModelFormatError
            See :meth:`read_manifest`.
        """
        from compare.pipeline.segmenters import load_segmenter

        manifest = cls.read_manifest(folder)
        data = manifest.data
        model = cls(data["segmenter"], random_state=int(data["random_state"]),
                    normalise_colour=bool(data["normalise_colour"]), auto_scale=bool(data["auto_scale"]),
                    require_nucleus=bool(data["require_nucleus"]), stain_anchor=str(data["stain_anchor"]))
        model.name_ = data["segmenter"]
        model.segmenter_ = load_segmenter(model.name_, Path(folder) / "segmenter")
        model.params_ = InstanceParams(**data["instance_params"])
        model.training_scale_ = TrainingScale(**data["training_scale"])
        model.background_ = np.asarray(data["background"], np.float64)
        model.stain_direction_ = np.asarray(data["stain_direction"], np.float64)
        model.stain_anchor_ = model.stain_anchor
        reference = data["nucleus_reference"]
        model.nucleus_reference_ = None if reference is None else np.asarray(reference, np.float64)
        # A direction measured by another definition cannot be compared: no colour check then.
        model.colour_warning_deg_ = (float(data["colour_warning_deg"])
                                     if data["stain_direction_version"] == STAIN_DIRECTION_VERSION else np.inf)
        model.fit_s_ = float(data["fit_s"])
        model.stain_copies_ = dict(data["stain_copies"])
        model.data_hash_ = str(data["training_data_sha256"])
        model.provenance_ = {k: v for k, v in data.items() if k not in _MANIFEST_KEYS}  # kept on a re-save
        model.manifest_ = manifest
        return model


def default_model_dir() -> Path:
    """The default model shipped with the package: the U-Net in ``compare/pipeline/default_model``."""
    return Path(__file__).resolve().with_name("default_model")


def load_model(folder: str | Path | None = None) -> WBCModel:
    """Load a saved :class:`WBCModel`; None loads the default U-Net shipped with the package.

    Raises
    ------
    FileNotFoundError, ModelFormatError
        See :meth:`WBCModel.read_manifest`; the default's absence names the
        command that makes it.
    """
    if folder is None:
        folder = default_model_dir()
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: the default U-Net is missing from this installation; train one with "
                                    "'python -m compare run --segmenters unet --protocols large' and pass its "
                                    "folder with --model.")
    return WBCModel.load(folder)
