"""``UNetSegmenter``: the U-Net behind the suite's segmenter contract.

``fit(images, masks)``, ``predict_proba(image)``, ``save(dir)`` and
``load(dir)``, scikit-learn style.  Two named profiles:

* ``paper``: the seed design's recipe (width 32, depth 4, dropout 0.25, Adam
  1e-4 with plateau decay, soft Dice loss, 50 epochs, batch 8, flips and
  90-degree rotations);
* ``default``: a CPU-budget recipe: width 16 with batch norm, run at half
  resolution (the masks are drawn on a 4 x 4 grid), Dice + BCE, Adam 2e-3
  with cosine decay, 24 epochs of batch 8 with flips and 90-degree
  rotations, where half the samples are windows of 2 x 2 mosaics and a
  quarter get a synthetic field-stop edge (:mod:`unet.sampling`): without
  those two samplers the model marks red-cell clusters and the border of
  whole fields as WBCs.  The measurements behind these choices, with the
  commands that reproduce them, are in ``docs/experiments.md``.

Only ``keras`` and ``keras.ops`` are used, so it runs on any Keras backend.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

import unet  # noqa: F401 -- sets TF log level before keras loads
from tiling.validation import check_image, check_training_set
from unet.config import TrainConfig
from unet.device import configure_threads
from unet.model import UNetConfig, build_unet  # noqa: F401 -- build_unet re-exported for convenience
from unet.resize import resize_image, resize_mask, unzoom
from unet.train import train_unet
from unet.views import average_views, normalise_tta

__all__ = ["FINE_TUNE", "FLIPS_MAX_ZOOM", "PROFILES", "PredictConfig", "UNetSegmenter", "default_segmenter",
           "paper_segmenter"]

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1

#: On backends that compile one program per input shape (JAX), tiles larger than this are padded up to a
#: multiple of it, so a folder of differently sized images compiles a handful of programs instead of one per
#: image (on an H200 each compile cost more than predicting the image).  TensorFlow's predict step relaxes
#: to dynamic shapes by itself and pads to the model's size multiple only.
SHAPE_BUCKET = 256


def _padded_side(side: int, step: int, bucket: int | None) -> int:
    """``side`` rounded up to a multiple of ``step``, or of ``bucket`` when that multiple exceeds it."""
    padded = -(-side // step) * step
    if bucket and padded > bucket:
        padded = -(-side // bucket) * bucket
    return padded


def _compiles_per_shape() -> bool:
    """True when the active Keras backend compiles a new program for every input shape."""
    import keras

    return keras.backend.backend() == "jax"


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """How ``predict_proba`` runs.

    Parameters
    ----------
    tile : int
        Largest tile side in pixels; larger images are cut into tiles of this
        size so memory stays bounded.  Large, because every tile boundary
        costs overlap and because the last tile of a row is shifted back to
        the image edge: with 736-px tiles the 5 large training images cost
        1.9x their pixels, whole they cost 1.05x.  At width 16 and half
        resolution a 1536 x 1536 tile needs a few hundred MB.
    overlap : int
        Pixels shared by neighbouring tiles, blended with a linear ramp.
    context : int
        Mirrored margin read around each tile and discarded, so the network
        sees real neighbours at inner tile edges.
    batch_size : int
        Tiles per forward pass.
    tta : False, "flips" or "d4"
        Average the probabilities over views of the image
        (:mod:`unet.views`): ``"flips"``, the image and its horizontal,
        vertical and double flips (4x the compute); ``"d4"``, those and
        their transposes, all eight symmetries of the square (8x).
        ``True`` is read as ``"flips"``.  Off, but ``"d4"`` for a network
        that predicts at a ``zoom`` of :data:`FLIPS_MAX_ZOOM` or below
        unless an override says otherwise.
    zoom : float
        Resize factor applied to every image before the network and undone
        on its probability map.  1 but for a network fine-tuned on a lab's
        images at another magnification (:meth:`UNetSegmenter.fine_tuned`):
        it keeps the network at the scale it learnt on, while the images
        come at the lab's own.
    """

    tile: int = 1536
    overlap: int = 64
    context: int = 16
    batch_size: int = 4
    tta: bool | str = False
    zoom: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tta", normalise_tta(self.tta))  # frozen: the one spelling of each mode kept
        if not self.zoom > 0:
            raise ValueError(f"PredictConfig zoom must be positive, got {self.zoom}.")
        if self.tile < 32 or not 0 <= self.overlap < self.tile or self.context < 0 or self.batch_size < 1:
            raise ValueError(
                f"Invalid PredictConfig(tile={self.tile}, overlap={self.overlap}, context={self.context}, "
                f"batch_size={self.batch_size}): need tile >= 32, 0 <= overlap < tile, context >= 0, batch_size >= 1."
            )


# Each profile is (model config, train config, predict config).
PROFILES: dict[str, tuple[UNetConfig, TrainConfig, PredictConfig]] = {
    "paper": (
        UNetConfig(base_width=32, depth=4, dropout=0.25, batch_norm=False, input_scale=1),
        TrainConfig(epochs=50, batch_size=8, learning_rate=1e-4, schedule="plateau", loss="dice",
                    augment="d4", patience=10),
        PredictConfig(),
    ),
    "default": (
        UNetConfig(base_width=16, depth=4, dropout=0.1, batch_norm=True, input_scale=2),
        TrainConfig(epochs=24, batch_size=8, learning_rate=2e-3, schedule="cosine", warmup_epochs=1,
                    loss="dice_bce", augment="stain", patience=8, mosaic=0.5, field_edge=0.25),
        PredictConfig(),
    ),
}

#: Training settings a fine-tune starts from (:meth:`UNetSegmenter.fine_tuned`), over the profile's own:
#: a quarter of the default profile's rate, so the start's features are refined rather than relearnt; no
#: warm-up, since the weights are already trained; every image trained on and the last epoch kept, since
#: with a few images the one or two a validation split would hold out teach more than picking an epoch on
#: them buys (hence no early stopping either).  Epochs of a fixed number of steps, so that five images train
#: as long per epoch as forty.  Measured on CellaVision in docs/fine_tuning.md.
FINE_TUNE: dict[str, Any] = {"learning_rate": 5e-4, "warmup_epochs": 0, "patience": 0, "epochs": 30,
                             "steps_per_epoch": 10, "val_fraction": 0.0}

#: A network that predicts at this zoom or below averages its eight dihedral views (:class:`PredictConfig`'s
#: ``tta`` ``"d4"``) unless told otherwise: eight passes over a quarter of the pixels or fewer cost no more
#: than two passes at the images' own size.  Measured on CellaVision (a zoom of 0.39) in docs/fine_tuning.md.
FLIPS_MAX_ZOOM = 0.5

_SECTIONS = {"model": UNetConfig, "train": TrainConfig, "predict": PredictConfig}


def _flips_when_cheap(config: PredictConfig, overrides: dict[str, Any]) -> PredictConfig:
    """``config`` averaging its 8 dihedral views when its zoom is at most :data:`FLIPS_MAX_ZOOM`, unless ``tta`` is given."""
    if "tta" in overrides or config.zoom > FLIPS_MAX_ZOOM:
        return config
    return dataclasses.replace(config, tta="d4")


def _min_images(train_config: TrainConfig) -> int:
    """Images a fit needs: two when it holds one out to pick the best epoch, else one."""
    return 1 if train_config.val_fraction == 0 else 2


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def resolve_profile(profile: str, overrides: dict[str, Any]) -> tuple[UNetConfig, TrainConfig, PredictConfig]:
    """Apply keyword overrides to a named profile.

    Each override names a field of exactly one of UNetConfig, TrainConfig or
    PredictConfig (their field names do not collide; ``batch_size`` means the
    training batch, ``predict_batch_size`` the prediction one).
    """
    if profile not in PROFILES:
        raise ValueError(f"Unknown U-Net profile {profile!r}; choose one of {sorted(PROFILES)}.")
    model_cfg, train_cfg, predict_cfg = PROFILES[profile]
    model_kw, train_kw, predict_kw = {}, {}, {}
    for key, value in overrides.items():
        if key == "predict_batch_size":
            predict_kw["batch_size"] = value
        elif key in _field_names(UNetConfig):
            model_kw[key] = value
        elif key in _field_names(TrainConfig):
            train_kw[key] = value
        elif key in _field_names(PredictConfig):
            predict_kw[key] = value
        else:
            known = sorted(_field_names(UNetConfig) | _field_names(TrainConfig) | _field_names(PredictConfig))
            raise ValueError(f"Unknown U-Net option {key!r}; known options are {known} and 'predict_batch_size'.")
    return (dataclasses.replace(model_cfg, **model_kw), dataclasses.replace(train_cfg, **train_kw),
            dataclasses.replace(predict_cfg, **predict_kw))


class UNetSegmenter(BaseEstimator):
    """U-Net white-blood-cell segmenter.

    Parameters
    ----------
    profile : {"default", "paper"}
        Named recipe, see :data:`PROFILES`.
    random_state : int
        Seeds weights, dropout, validation split, crops and augmentation.
    verbose : int or "auto"
        Keras training verbosity (1 progress bar per epoch, 2 one line per
        epoch, 0 silent).
    **overrides
        Fields of UNetConfig, TrainConfig or PredictConfig to change, e.g.
        ``epochs=5, base_width=8``.

    Attributes
    ----------
    model_ : keras.Model
    model_config_, train_config_, predict_config_ : the configs used
    history_ : list of dict
        Per epoch: epoch, loss, val_loss, dice, val_dice, lr, seconds.
    fit_info_ : dict
        JSON-able: device, backend, epochs_run, best_epoch, best_val_dice,
        params, fit_seconds, n_train, n_val, seed.

    Examples
    --------
    >>> seg = UNetSegmenter("default", random_state=0).fit(images, masks)  # doctest: +SKIP
    >>> prob = seg.predict_proba(image)  # (H, W) float32 in [0, 1]  # doctest: +SKIP
    """

    def __init__(self, profile: str = "default", random_state: int = 0, verbose: int | str = "auto", **overrides: Any):
        self.profile = profile
        self.random_state = random_state
        self.verbose = verbose
        self.overrides = dict(overrides)
        # Validate now so a typo fails at construction, not after a long fit.
        resolve_profile(profile, self.overrides)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments, overrides flattened, as scikit-learn's ``clone`` needs them."""
        return {"profile": self.profile, "random_state": self.random_state, "verbose": self.verbose, **self.overrides}

    def set_params(self, **params: Any) -> "UNetSegmenter":
        """Set constructor arguments; any name other than profile, random_state and verbose is an override."""
        overrides = dict(self.overrides)
        for key, value in params.items():
            if key in ("profile", "random_state", "verbose"):
                setattr(self, key, value)
            else:
                overrides[key] = value
        resolve_profile(self.profile, overrides)
        self.overrides = overrides
        return self

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.overrides.items())
        return f"UNetSegmenter(profile={self.profile!r}, random_state={self.random_state!r}{extra})"

    # -- learning -------------------------------------------------------------------------
    def fit(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> "UNetSegmenter":
        """Train on images and masks.

        Parameters
        ----------
        images : sequence of ndarray, each (H, W, 3) uint8 RGB, any size
        masks : sequence of ndarray, each (H, W) bool, same H and W as its image

        Returns
        -------
        self
        """
        model_cfg, train_cfg, predict_cfg = resolve_profile(self.profile, self.overrides)
        check_training_set(images, masks, min_images=_min_images(train_cfg))
        if predict_cfg.zoom != 1.0:  # trained, as it predicts, at zoom times the images' size
            images = [resize_image(im, predict_cfg.zoom) for im in images]
            masks = [resize_mask(m, predict_cfg.zoom) for m in masks]
        model, history, info = train_unet(list(images), list(masks), model_cfg, train_cfg,
                                          seed=self.random_state, verbose=self.verbose)
        info["profile"] = self.profile
        predict_cfg = _flips_when_cheap(predict_cfg, self.overrides)
        self.model_config_, self.train_config_, self.predict_config_ = model_cfg, train_cfg, predict_cfg
        self.model_ = model
        self.history_ = history
        self.fit_info_ = info
        return self

    def fine_tuned(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], *, random_state: int = 0,
                   zoom: float = 1.0, verbose: int | str | None = None,
                   **train_overrides: Any) -> "UNetSegmenter":
        """A new segmenter: this one's network trained further on ``images`` and ``masks``.

        The network's architecture and prediction settings are this one's;
        training follows this profile's recipe (loss, augmentation with stain
        looks, mosaics and field edges) changed by ``train_overrides``
        (:data:`FINE_TUNE` first, then those given).  This segmenter is left
        as it is.

        Parameters
        ----------
        images : sequence of ndarray, each (H, W, 3) uint8 RGB
        masks : sequence of ndarray, each (H, W) bool
        random_state : int, keyword-only
            Seeds the validation split, crops, augmentation and dropout.
        zoom : float, keyword-only
            Resize factor from the images' scale to the network's: the
            images and masks are trained on at ``zoom`` times their size, and
            the new segmenter resizes every image it predicts by it
            (:class:`PredictConfig`'s ``zoom``) on top of this one's zoom.
        verbose : int or "auto", optional, keyword-only
            The progress bar (default: this segmenter's ``verbose``).
        **train_overrides
            Fields of :class:`unet.config.TrainConfig`, e.g. ``epochs=10``,
            ``time_budget_s=120``, ``val_fraction=0.2``.

        Returns
        -------
        UNetSegmenter
            Fitted; ``fit_info_["start"]`` is ``"given weights"``.
        """
        self._check_fitted()
        unknown = sorted(set(train_overrides) - _field_names(TrainConfig))
        if unknown:
            raise ValueError(f"Unknown training option(s) {unknown}; fine-tuning takes fields of TrainConfig.")
        zoom = zoom * self.predict_config_.zoom
        overrides = {**self.overrides, **FINE_TUNE, **train_overrides, "zoom": float(zoom)}
        verbose = self.verbose if verbose is None else verbose
        tuned = UNetSegmenter(self.profile, random_state=random_state, verbose=verbose, **overrides)
        _, train_cfg, _ = resolve_profile(self.profile, overrides)
        check_training_set(images, masks, min_images=_min_images(train_cfg))
        if zoom != 1.0:
            images = [resize_image(im, zoom) for im in images]
            masks = [resize_mask(m, zoom) for m in masks]
        model, history, info = train_unet(list(images), list(masks), self.model_config_, train_cfg,
                                          seed=random_state, verbose=verbose,
                                          start_weights=self.model_.get_weights())
        info["profile"] = self.profile
        tuned.model_config_, tuned.train_config_ = self.model_config_, train_cfg
        tuned.predict_config_ = _flips_when_cheap(dataclasses.replace(self.predict_config_, zoom=float(zoom)),
                                                  self.overrides)
        tuned.model_, tuned.history_, tuned.fit_info_ = model, history, info
        return tuned

    # -- prediction -----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("This UNetSegmenter is not fitted yet; call fit(images, masks) or load(folder) first.")

    def _predict_batch(self, tiles: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of equally shaped tiles ``(N, h, w, 3)`` -> ``(N, h, w)``.

        Tiles are mirror-padded up to the model's size multiple, and on a
        backend that compiles per shape (JAX) sides above :data:`SHAPE_BUCKET`
        up to a multiple of it, so that many image sizes do not mean many
        compilations.
        """
        n, h, w = tiles.shape[:3]
        step = self.model_config_.size_multiple
        bucket = SHAPE_BUCKET if _compiles_per_shape() else None
        ph, pw = _padded_side(h, step, bucket) - h, _padded_side(w, step, bucket) - w
        x = tiles.astype(np.float32)
        if ph or pw:
            x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")
        prob = average_views(self._run, x, self.predict_config_.tta)
        return prob[:, ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]

    def _run(self, x: np.ndarray) -> np.ndarray:
        from keras import ops

        # predict_on_batch runs the backend's compiled inference step (a traced
        # graph / jitted function), several times faster than an eager call.
        out = self.model_.predict_on_batch(x)
        return np.asarray(ops.convert_to_numpy(out))[..., 0].astype(np.float32)

    def with_views(self, tta: bool | str) -> "UNetSegmenter":
        """This network predicting with the views ``tta`` names (:mod:`unet.views`): a shallow copy, weights shared.

        Only :class:`PredictConfig`'s ``tta`` differs, so other threads may go on predicting with ``self``.
        """
        self._check_fitted()
        twin = copy.copy(self)
        twin.predict_config_ = dataclasses.replace(self.predict_config_, tta=normalise_tta(tta))
        return twin

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Probability of WBC per pixel.

        Parameters
        ----------
        image : ndarray, shape (H, W, 3), uint8, any size

        Returns
        -------
        ndarray, shape (H, W), float32, values in [0, 1]

        Notes
        -----
        Large images are tiled (``tiling.predict_tiled``) with overlap and
        blended; memory is bounded by one batch of tiles.  A model with a
        ``zoom`` (:class:`PredictConfig`) resizes the image by it first and
        the map back to ``(H, W)``.
        """
        self._check_fitted()
        image = check_image(image)
        cfg = self.predict_config_
        if cfg.zoom != 1.0:
            # The network's scale: resized in, and its map resized back to the image's size.
            shape = image.shape[:2]
            return unzoom(self._predict_at_network_scale(resize_image(image, cfg.zoom)), shape)
        return self._predict_at_network_scale(image)

    def _predict_at_network_scale(self, image: np.ndarray) -> np.ndarray:
        """:meth:`predict_proba` of an image already at the network's scale."""
        import tiling

        cfg = self.predict_config_
        if max(image.shape[:2]) <= cfg.tile:
            # One tile: run it whole.  No mirrored context (the image edge is
            # real, as it was for every training patch) and no blending, which
            # on a 128 px patch cost more than the network itself.
            prob = self._predict_batch(image[None])[0]
        else:
            prob = tiling.predict_tiled(image, self._predict_batch, tile=cfg.tile, overlap=cfg.overlap,
                                        context=cfg.context, batch_size=cfg.batch_size)
        return np.clip(prob, 0.0, 1.0, out=prob)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write ``path/model.keras`` and ``path/config.json`` (creating the directory).

        Parameters
        ----------
        path : Path
            Directory to create or fill.
        """
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        # Save an uncompiled copy: the optimizer's moment estimates would
        # triple the file (23 MB instead of 8 MB at width 16) and `load`
        # never uses them (it loads with compile=False).
        inference = build_unet(self.model_config_)
        inference.set_weights(self.model_.get_weights())
        inference.save(path / "model.keras")
        meta = {
            "format_version": _FORMAT_VERSION,
            "class": "UNetSegmenter",
            "profile": self.profile,
            "random_state": self.random_state,
            "overrides": self.overrides,
            "model": self.model_config_.to_dict(),
            "train": self.train_config_.to_dict(),
            "predict": dataclasses.asdict(self.predict_config_),
            "history": self.history_,
            "fit_info": self.fit_info_,
        }
        (path / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> "UNetSegmenter":
        """Load a segmenter written by :meth:`save` (Keras ``safe_mode=True``).

        Parameters
        ----------
        path : Path
            Directory holding ``model.keras`` and ``config.json``.
        """
        import keras

        path = Path(path)
        config_file, model_file = path / "config.json", path / "model.keras"
        for f in (config_file, model_file):
            if not f.is_file():
                raise FileNotFoundError(f"{f} does not exist; pass the directory that UNetSegmenter.save wrote.")
        meta = json.loads(config_file.read_text())
        if meta.get("class") != "UNetSegmenter" or meta.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{config_file} was not written by UNetSegmenter.save (format {_FORMAT_VERSION}).")
        seg = cls(meta["profile"], random_state=meta["random_state"], **meta["overrides"])
        seg.model_config_ = UNetConfig.from_dict(meta["model"])
        seg.train_config_ = TrainConfig.from_dict(meta["train"])
        seg.predict_config_ = PredictConfig(**meta["predict"])
        configure_threads()
        # compile=False: inference needs no optimizer or loss, and so no custom objects.
        seg.model_ = keras.saving.load_model(model_file, compile=False, safe_mode=True)
        seg.history_ = meta["history"]
        seg.fit_info_ = meta["fit_info"]
        return seg


def default_segmenter(random_state: int = 0) -> UNetSegmenter:
    """The registry's ``unet``: the fast CPU recipe."""
    return UNetSegmenter("default", random_state=random_state)


def paper_segmenter(random_state: int = 0) -> UNetSegmenter:
    """The registry's ``unet-paper`` (slow): the seed design's recipe."""
    return UNetSegmenter("paper", random_state=random_state)
