"""A lab's own model from its labelled images: fitted from scratch, or a saved U-Net fine-tuned.

:func:`fit_model` is what ``python -m compare fit`` runs.  From scratch it
fits the pipeline as :meth:`compare.pipeline.model.WBCModel.fit` does (the
colour, scale and instance settings from the lab's images, a new
segmenter), with the few training options a lab needs (epochs or a time
budget, the validation share).  From a saved U-Net (``start``) it trains
the network further on the lab's images:

* **scale**: the model takes the lab's scale (its training WBC diameter is
  the median of the lab's masks) and, unless ``any_scale``, uses every
  image at it (:class:`FitSettings`), while the network stays at the scale
  it learnt: it resizes
  every image by a fixed ``zoom`` (the start's WBC diameter over the
  lab's) before it predicts, and is trained at that zoom.  The red-cell
  ruler is measured on the lab's images where at least
  :data:`LEARN_MIN_IMAGES` of them are large enough and show red cells, and
  is otherwise the start's brought to the lab's scale;
* **colour**: the lab's images are brought to a colour reference (white
  balance, nuclear-stain gain) before training, as ``predict`` will bring
  them.  With at least :data:`LEARN_MIN_IMAGES` images the reference is
  learnt from them (the model then reads the lab's colours as its own and
  warns about stains unlike the lab's); with fewer the start's is kept;
* **instances**: the settings are tuned on the lab's masks and joined with
  the start's (brought to the lab's scale), taking the looser limit of each
  (the smaller minimum area and solidity, the larger split area and
  elongation), as tuning on both sets of masks would; the lab's own WBC
  size sets the marker spacing.  Kept from the start when the lab's masks
  hold no whole WBC.

The classical segmenters cannot be fine-tuned: refitting them needs their
old training images, which a model folder does not hold (only their hash).

The model's manifest records what was done (:func:`provenance`): each
training folder's hash, the start model's folder and manifest hash, and for
each of the colour, scale and instance settings whether it was learnt from
the lab's images, kept from the start or joined.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from compare.pipeline.colour import (
    ColourReference,
    fit_background,
    fit_nucleus_reference,
    fit_stain_copies,
    fit_stain_direction,
    to_training_colours,
)
from compare.pipeline.instances import InstanceParams, median_wbc_diameter, tune_instance_params
from compare.pipeline.model import SCALE_TOLERANCE, WBCModel, _data_hash
from compare.pipeline.red_cells import SIGTUPLE_RBC_DIAMETER
from compare.pipeline.scale import MIN_RULER_SIDE, TrainingScale, fit_training_scale

__all__ = ["LEARN_MIN_IMAGES", "FitSettings", "fit_model", "folder_hash", "min_images", "provenance"]

#: Fewest images from which a fine-tune learns the colour reference and the red-cell ruler from the lab's
#: own images; with fewer it keeps the start model's.  Ten: the colour reference is a median / mean over
#: images, and one or two odd slides in five would move it.
LEARN_MIN_IMAGES = 10


@dataclass(frozen=True)
class FitSettings:
    """The training options of :func:`fit_model` (``compare fit``'s flags).

    Attributes
    ----------
    epochs : int or None
        U-Net epochs (None: the profile's, or :data:`unet.segmenter.FINE_TUNE`'s when fine-tuning).
    time_budget_s : float or None
        Wall seconds the U-Net's epochs may take (:class:`unet.config.TrainConfig`'s ``time_budget_s``).
    val_share : float or None
        Share of the images the U-Net holds out to pick its best epoch (None: 0 when fine-tuning,
        :data:`unet.segmenter.FINE_TUNE`'s, else the profile's 0.15).  0 trains on every image for the
        set epochs, without early stopping, and keeps the last epoch.
    random_state : int
        Seeds the segmenter, the split, crops and augmentation.
    any_scale : bool
        The model estimates each image's scale, as the shipped one does
        (``WBCModel.auto_scale``).  False (the default): it takes every
        image at the training images' scale, as one lab's microscope gives
        them; ``predict``'s ``wbc_diameter`` / ``pixel_size_um`` still set
        another.  On CellaVision the estimate, made for images of unknown
        scale, moved 18 of 90 crops off their true scale: Dice 0.954 against
        0.959 with the same weights, 0.914 against 0.950 on another draw
        (docs/fine_tuning.md).
    """

    epochs: int | None = None
    time_budget_s: float | None = None
    val_share: float | None = None
    random_state: int = 0
    any_scale: bool = False

    def unet_overrides(self) -> dict[str, Any]:
        """The :class:`unet.config.TrainConfig` fields these settings set."""
        epochs = self.epochs
        chosen: dict[str, Any] = {"epochs": epochs, "time_budget_s": self.time_budget_s,
                                  "val_fraction": self.val_share}
        if self.time_budget_s is not None:
            # The budget decides: the epochs are only a cap, and early stopping would end a fit
            # given a budget long before it is spent (the best epoch's weights are still kept).
            chosen.update(epochs=epochs or 1000, patience=0)
        if self.val_share == 0:
            chosen.update(patience=0)  # nothing is held out to stop on
        return {k: v for k, v in chosen.items() if v is not None}


def _is_unet(name: str) -> bool:
    return name.startswith("unet")


def min_images(segmenter: str, val_share: float | None = None, fine_tuning: bool = False) -> int:
    """Fewest labelled images a fit of ``segmenter`` needs: 2 for a U-Net that holds one out, else 1.

    A U-Net holds one out unless ``val_share`` is 0, or is None when ``fine_tuning``
    (:data:`unet.segmenter.FINE_TUNE` trains on every image).
    """
    if val_share is None and fine_tuning:
        from unet.segmenter import FINE_TUNE

        val_share = FINE_TUNE["val_fraction"]
    return 2 if _is_unet(segmenter) and val_share != 0 else 1


def folder_hash(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> str:
    """SHA-256 of a training folder's images and masks (their pixels, in order): the same as a model's data hash.

    Parameters
    ----------
    images : sequence of ndarray, shape (H, W, 3), uint8
    masks : sequence of ndarray, shape (H, W), bool
    """
    return _data_hash(images, [np.asarray(m, bool) for m in masks])


def provenance(folders: Sequence[tuple[str, str, int]], start: WBCModel | None,
               settings: dict[str, str], fit: FitSettings) -> dict[str, Any]:
    """The ``fit`` entry a model's manifest gets from ``compare fit``.

    Parameters
    ----------
    folders : sequence of (path, sha256, n_images)
    start : WBCModel or None
        The model fine-tuned, loaded from a folder (its ``manifest_``), or None.
    settings : dict
        ``{"colour", "scale", "instances"}`` -> ``"learnt"``, ``"kept"`` or ``"joined"``.
    fit : FitSettings
    """
    return {"fit": {
        "training_folders": [{"folder": f, "sha256": h, "n_images": n} for f, h, n in folders],
        "start_model": None if start is None else {"folder": str(start.manifest_.folder),
                                                   "manifest_sha256": start.manifest_.sha256},
        "settings_from": dict(settings),
        "options": asdict(fit),
    }}


def _joined(lab: InstanceParams, start: InstanceParams) -> InstanceParams:
    """The looser limit of each instance setting; the lab's marker spacing (its WBCs are at the start's scale)."""
    return InstanceParams(threshold=start.threshold, min_area=min(lab.min_area, start.min_area),
                          split_area=max(lab.split_area, start.split_area), min_distance=lab.min_distance,
                          max_elongation=max(lab.max_elongation, start.max_elongation),
                          min_solidity=min(lab.min_solidity, start.min_solidity))


def _at_scale(params: InstanceParams, ratio: float) -> InstanceParams:
    """Instance settings measured in pixels of one scale, for images ``ratio`` times larger."""
    return replace(params, min_area=int(params.min_area * ratio ** 2), split_area=int(params.split_area * ratio ** 2),
                   min_distance=max(2, round(params.min_distance * ratio)))


def _settings_like(start: WBCModel, fit: FitSettings) -> WBCModel:
    return WBCModel(start.name_, random_state=fit.random_state, normalise_colour=start.normalise_colour,
                    auto_scale=fit.any_scale, require_nucleus=start.require_nucleus,
                    stain_anchor=start.stain_anchor_)


def _learn_colour(model: WBCModel, images: list[np.ndarray]) -> None:
    """Set ``model``'s colour reference from ``images`` as :meth:`WBCModel.fit` does."""
    model.background_, balanced, darkest = fit_background(images, model.normalise_colour)
    model.nucleus_reference_, _ = fit_nucleus_reference(balanced, darkest, model.background_,
                                                        model.normalise_colour, model.stain_anchor_)
    model.stain_direction_, model.colour_warning_deg_ = fit_stain_direction(balanced, darkest)


def fine_tune(start: WBCModel, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
              fit: FitSettings, *, learn_min: int = LEARN_MIN_IMAGES,
              verbose: int | str = 0) -> tuple[WBCModel, dict[str, str]]:
    """A new model: ``start``'s U-Net trained further on a lab's images, in ``start``'s working space.

    Parameters
    ----------
    start : WBCModel
        A fitted U-Net model; left untouched.
    images : sequence of ndarray, shape (H, W, 3), uint8
    masks : sequence of ndarray, shape (H, W), bool
    fit : FitSettings
    learn_min : int, keyword-only
        Fewest images the colour reference and red-cell ruler are learnt from.
    verbose : int or "auto", keyword-only
        The U-Net's progress bar (see :class:`unet.segmenter.UNetSegmenter`).

    Returns
    -------
    model : WBCModel
    settings_from : dict
        ``{"colour", "scale", "instances"}`` -> ``"learnt"``, ``"kept"`` or ``"joined"``.
    """
    if not hasattr(start.segmenter_, "fine_tuned"):
        raise ValueError(f"a {start.name_} model cannot be fine-tuned: refitting it needs its old training "
                         "images, which a model folder does not hold; fit from scratch on the old and the new "
                         "folders together (compare fit OLD NEW --segmenter NAME, without --from).")
    images, masks = list(images), [np.asarray(m, bool) for m in masks]
    model = _settings_like(start, fit)
    model.name_, model.stain_anchor_, model.stain_copies_ = start.name_, start.stain_anchor_, dict(start.stain_copies_)
    learn = len(images) >= learn_min
    if learn:
        _learn_colour(model, images)
    else:
        model.background_, model.nucleus_reference_ = start.background_, start.nucleus_reference_
        model.stain_direction_, model.colour_warning_deg_ = start.stain_direction_, start.colour_warning_deg_
    reference = ColourReference(normalise=model.normalise_colour, background=model.background_,
                                nucleus_reference=model.nucleus_reference_, anchor=model.stain_anchor_,
                                stain_direction=model.stain_direction_, warning_deg=model.colour_warning_deg_)
    # The images stay at the lab's scale, the model's training scale becomes the lab's, and the network is
    # kept at the scale it learnt (its zoom): the lab's own images then need no scale estimate at all.
    lab_wbc = median_wbc_diameter(masks)
    ratio = lab_wbc / start.training_scale_.wbc_diameter  # lab pixels per start pixel
    zoom = 1.0 if abs(np.log(ratio)) <= np.log(1.05) else 1.0 / ratio  # within 5 %: no resampling blur
    colours = [to_training_colours(image, reference) for image in images]
    anchored = [c.anchored(c.balanced) for c in colours]
    t0 = time.perf_counter()
    model.segmenter_ = start.segmenter_.fine_tuned(anchored, masks, random_state=fit.random_state, zoom=zoom,
                                                   verbose=verbose, **fit.unet_overrides())
    model.fit_s_ = time.perf_counter() - t0
    # The red-cell ruler needs images of MIN_RULER_SIDE px that show confident red cells; fit_training_scale
    # stands SigTuple's value in when none does, and then the start's, brought to the lab's scale, is better.
    rbc, scale_from = start.training_scale_.rbc_diameter * ratio, "lab WBCs, start's red cells"
    if learn and any(min(c.balanced.shape[:2]) >= MIN_RULER_SIDE for c in colours):
        measured = fit_training_scale(masks, [c.balanced for c in colours]).rbc_diameter
        if measured != SIGTUPLE_RBC_DIAMETER:
            rbc, scale_from = measured, "learnt"
    model.training_scale_ = TrainingScale(wbc_diameter=lab_wbc, rbc_diameter=float(rbc))
    start_params = _at_scale(start.params_, ratio)
    try:
        model.params_, instances = _joined(tune_instance_params(masks), start_params), "joined"
    except ValueError:  # no whole WBC in the lab's masks: nothing to tune on
        model.params_, instances = start_params, "kept"
    model.data_hash_ = folder_hash(images, masks)
    return model, {"colour": "learnt" if learn else "kept", "scale": scale_from, "instances": instances}


def _design_zoom(masks: Sequence[np.ndarray]) -> float:
    """The resize that brings a lab's WBCs to the U-Net's design scale: that of the shipped U-Net's training WBCs.

    The U-Net profile (128-px patches at half resolution, four levels) was
    chosen for WBCs about 63 px across: a patch holds a WBC and its
    neighbours.  Images whose median WBC is within :data:`SCALE_TOLERANCE`
    of that are trained on as they are (1.0), as ``compare run`` does.
    """
    from compare.pipeline.model import default_model_dir

    design = float(WBCModel.read_manifest(default_model_dir()).data["training_scale"]["wbc_diameter"])
    ratio = design / median_wbc_diameter(masks)
    return 1.0 if abs(np.log(ratio)) <= np.log(SCALE_TOLERANCE) else float(ratio)


def fit_from_scratch(segmenter: str, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                     fit: FitSettings, *, verbose: int | str = 0) -> WBCModel:
    """A new model of ``segmenter`` fitted on ``images``, as :meth:`WBCModel.fit` fits one, with ``fit``'s options.

    Without options this is :meth:`WBCModel.fit` itself; the U-Net's options
    are set on its segmenter, which ``WBCModel.fit`` builds from the registry.
    A U-Net is trained at its design scale (:func:`_design_zoom`) and
    resizes the images it predicts the same way, so the model's training
    scale is the lab's own.
    """
    from compare.pipeline.segmenters import get_spec, make_segmenter

    images, masks = list(images), [np.asarray(m, bool) for m in masks]
    overrides = fit.unet_overrides() if _is_unet(segmenter) else {}
    if _is_unet(segmenter):
        zoom = _design_zoom(masks)
        if zoom != 1.0:
            overrides["zoom"] = zoom
        from unet.segmenter import FINE_TUNE

        if -(-len(images) // 8) < FINE_TUNE["steps_per_epoch"]:
            # A few images make epochs of one or two batches, each followed by a validation pass and
            # counted by early stopping; epochs as long as a fine-tune's train as a fine-tune does.
            overrides.setdefault("steps_per_epoch", FINE_TUNE["steps_per_epoch"])
    if not overrides and verbose == 0:
        return WBCModel(segmenter, random_state=fit.random_state, auto_scale=fit.any_scale).fit(images, masks)
    model = WBCModel(segmenter, random_state=fit.random_state, auto_scale=fit.any_scale)
    spec = get_spec(segmenter)
    model.name_, model.stain_anchor_ = segmenter, spec.stain_anchor
    model.background_, balanced, darkest = fit_background(images, model.normalise_colour)
    model.nucleus_reference_, anchored = fit_nucleus_reference(balanced, darkest, model.background_,
                                                               model.normalise_colour, model.stain_anchor_)
    model.stain_direction_, model.colour_warning_deg_ = fit_stain_direction(balanced, darkest)
    copies, strength = spec.stain_copies, spec.stain_copy_strength
    model.stain_copies_ = {"copies": copies, "strength": strength if copies else 0.0}
    fit_images, fit_masks = anchored, masks
    if copies:
        fit_images = anchored + fit_stain_copies(anchored, copies, strength, fit.random_state)
        fit_masks = masks * (copies + 1)
    segmenter_ = make_segmenter(segmenter, random_state=fit.random_state)
    if overrides or _is_unet(segmenter):
        segmenter_.set_params(verbose=verbose, **overrides)
    t0 = time.perf_counter()
    model.segmenter_ = segmenter_.fit(fit_images, fit_masks)
    model.fit_s_ = time.perf_counter() - t0
    model.params_, model.training_scale_ = tune_instance_params(masks), fit_training_scale(masks, balanced)
    model.data_hash_ = folder_hash(images, masks)
    return model


def fit_model(segmenter: str, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], *,
              start: WBCModel | None = None, fit: FitSettings = FitSettings(), learn_min: int = LEARN_MIN_IMAGES,
              verbose: int | str = 0) -> tuple[WBCModel, dict[str, str]]:
    """Fit ``segmenter`` on a lab's images, from scratch or from ``start``.

    Parameters
    ----------
    segmenter : str
        A registry name; with ``start`` it must be ``start``'s.
    images : sequence of ndarray, shape (H, W, 3), uint8
    masks : sequence of ndarray, shape (H, W), bool
    start : WBCModel, optional, keyword-only
        A saved U-Net model to fine-tune (never changed).
    fit : FitSettings, keyword-only
    learn_min : int, keyword-only
        See :func:`fine_tune`.
    verbose : int or "auto", keyword-only

    Returns
    -------
    model : WBCModel
        Fitted, not saved.
    settings_from : dict
        Where the colour, scale and instance settings came from (all ``"learnt"`` from scratch).

    Raises
    ------
    ValueError
        Too few images for the segmenter, a start model of another
        segmenter, or a start model that cannot be fine-tuned.
    """
    need = min_images(segmenter, fit.val_share, fine_tuning=start is not None)
    if len(images) < need:
        raise ValueError(f"{segmenter} needs at least {need} labelled images (one is held out to pick the best "
                         f"epoch; --val-share 0 holds none out); got {len(images)}.")
    if start is None:
        return fit_from_scratch(segmenter, images, masks, fit, verbose=verbose), {
            "colour": "learnt", "scale": "learnt", "instances": "learnt"}
    if start.name_ != segmenter:
        raise ValueError(f"--segmenter {segmenter} but the start model is a {start.name_}; fine-tuning keeps "
                         f"the start's segmenter, so pass --segmenter {start.name_} or no --from.")
    return fine_tune(start, images, masks, fit, learn_min=learn_min, verbose=verbose)
