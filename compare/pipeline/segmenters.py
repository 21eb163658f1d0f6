"""The registry: every segmenter the suite can compare, by name.

A segmenter follows the scikit-learn-style contract of docs/architecture.md::

    fit(images, masks) -> self          # images (H, W, 3) uint8, masks (H, W) bool
    predict_proba(image) -> (H, W) float32 in [0, 1], any image size
    save(folder) / classmethod load(folder)

Optional attributes after ``fit``: ``history_`` (per-epoch dicts, plotted as
training curves) and ``fit_info_`` (a JSON-able dict saved with the run).

Factories import their module only when called, so ``--help``, ``list`` and the
classical segmenters never load TensorFlow.  Adding a segmenter is one entry
here plus its own module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SegmenterSpec", "REGISTRY", "get_spec", "make_segmenter", "load_segmenter", "default_names"]


@dataclass(frozen=True)
class SegmenterSpec:
    """One registry entry.

    Attributes
    ----------
    name : str
        Registry name, used on the command line and in results.
    target : str
        ``"module:callable"`` that takes ``random_state`` and returns an
        unfitted segmenter.
    cls : str
        ``"module:Class"`` whose ``load`` reads a saved model.
    description : str
        One line for ``compare list``.
    slow : bool
        Skipped by ``run --all`` unless ``--include-slow`` is given.
    stain_copies : int
        Stain-augmented copies of each training image that
        :class:`compare.pipeline.model.WBCModel` adds before fitting: for segmenters
        that learn colours but do not augment while training.
    stain_copy_strength : float
        ``strength`` of :func:`stain.augment.random_stain` for those copies.
    stain_anchor : str
        :class:`compare.pipeline.model.WBCModel`'s default ``stain_anchor`` for this
        segmenter (:data:`compare.pipeline.model.STAIN_ANCHORS`).
    grow_outline : bool
        Whether :meth:`compare.pipeline.model.WBCModel.predict` grows each WBC
        through the segmenter's uncertain band to the colour edge
        (:mod:`compare.pipeline.outline`).  Only for a segmenter whose
        probability is sharp on its training lab, so that the band there is
        a pixel or two: the pixel classifiers' maps are soft around every
        cell, and growing them costs their own lab's Dice.
    outline_by_colour : bool
        Whether the outline stage also grows each WBC through the pale
        cytoplasm its colour shows (:mod:`compare.pipeline.plasma_contrast`),
        alone when ``grow_outline`` is off.  Measured for each segmenter
        on SigTuple, the shifts and CellaVision (docs/experiments.md, "Pale
        cytoplasm told by its colour").
    views_when_shrunk : bool
        Whether an image shrunk to :data:`compare.pipeline.segment.VIEWS_MAX_FACTOR`
        or below is read in its eight dihedral views and the maps averaged
        (:func:`compare.pipeline.segment.segment`).  For a segmenter whose
        answer on a small image depends on its orientation: the U-Net's
        does; the pixel classifiers' features are rotation-invariant filters.
    """

    name: str
    target: str
    cls: str
    description: str
    slow: bool = False
    stain_copies: int = 0
    stain_copy_strength: float = 0.0
    stain_anchor: str = "gain"
    grow_outline: bool = False
    outline_by_colour: bool = False
    views_when_shrunk: bool = False


def _resolve(ref: str) -> Any:
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


REGISTRY: dict[str, SegmenterSpec] = {
    spec.name: spec
    for spec in [
        SegmenterSpec(
            "threshold", "baselines.threshold:ThresholdSegmenter", "baselines.threshold:ThresholdSegmenter",
            "Otsu threshold on Lab -b* with closing and hole filling; learns nothing",
            # Otsu adapts to each image already: the gain lowers its cv Dice by
            # about 0.01 and buys nothing under the shifts (docs/experiments.md).
            stain_anchor="none", outline_by_colour=True,
        ),
        SegmenterSpec(
            "rf", "baselines.factories:rf_segmenter", "baselines.pixel:PixelClassifierSegmenter",
            "random forest pixel classifier on a multi-scale colour/texture feature bank",
            # 1.0, not svm's and mlp's 1.15: stronger copies help the rapid-stain
            # shifts but teach rf to take a red cell cut by the field-of-view
            # edge of large image 54A84627F362 for a WBC; at 1.0 it counts all
            # five large images exactly (docs/experiments.md).
            stain_copies=3, stain_copy_strength=1.0, outline_by_colour=True,
        ),
        SegmenterSpec(
            "svm", "baselines.factories:svm_segmenter", "baselines.pixel:PixelClassifierSegmenter",
            "RBF-kernel SVM (kernel approximation + linear SVM, calibrated) on the same features",
            stain_copies=3, stain_copy_strength=1.15, outline_by_colour=True,
        ),
        SegmenterSpec(
            "mlp", "baselines.factories:mlp_segmenter", "baselines.pixel:PixelClassifierSegmenter",
            "feed-forward neural network (scikit-learn MLP, 32-16 units) on the same features",
            stain_copies=3, stain_copy_strength=1.15, outline_by_colour=True,
        ),
        SegmenterSpec(
            "unet", "unet.segmenter:default_segmenter", "unet.segmenter:UNetSegmenter",
            "U-Net with dropout and stain augmentation, CPU-budget profile (Keras 3)",
            # Its probability is sharp on its own lab, so the band the outline
            # stage grows through is narrow there (docs/experiments.md, "The
            # outline grown to the colour edge"). Its views of a shrunk crop:
            # "Eight views of a shrunk image" there.
            grow_outline=True, outline_by_colour=True, views_when_shrunk=True,
        ),
        SegmenterSpec(
            "unet-paper", "unet.segmenter:paper_segmenter", "unet.segmenter:UNetSegmenter",
            "U-Net, the seed's recipe: width 32, Dice loss, Adam 1e-4, 50 epochs (hours on CPU)",
            slow=True, grow_outline=True, outline_by_colour=True, views_when_shrunk=True,
        ),
    ]
}


def get_spec(name: str) -> SegmenterSpec:
    """The registry entry for ``name``; a ValueError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown segmenter {name!r}; known segmenters are: {', '.join(REGISTRY)}.") from None


def make_segmenter(name: str, random_state: int = 0) -> Any:
    """A new, unfitted segmenter registered as ``name``."""
    factory: Callable[..., Any] = _resolve(get_spec(name).target)
    return factory(random_state=random_state)


#: File endings of formats that can run code when loaded; never read.
UNSAFE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".npy", ".dill", ".h5", ".hdf5")


def load_segmenter(name: str, folder: Path) -> Any:
    """Load a fitted segmenter of registry type ``name`` from ``folder``.

    Only the segmenter's own safe formats are read (JSON, skops with an
    explicit list of trusted types, ``.keras`` in safe mode).  A model given
    as a pickle (or another format that can run code on loading) is refused.

    Raises
    ------
    ValueError
        For a pickle-like file or a file where a model folder is expected.
    FileNotFoundError
        If ``folder`` does not exist.
    """
    folder = Path(folder)
    if folder.suffix.lower() in UNSAFE_SUFFIXES:
        raise ValueError(
            f"{folder}: refusing to load a {folder.suffix} file, a format that can run code when loaded; "
            "use a model folder saved by 'compare run' (skops or .keras files)."
        )
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such model folder; pass a folder saved by 'compare run' "
                                "(RUN/models/NAME).")
    if not folder.is_dir():
        raise ValueError(f"{folder}: is a file; pass the model folder that holds it (saved by 'compare run').")
    return _resolve(get_spec(name).cls).load(folder)


def default_names(include_slow: bool = False) -> list[str]:
    """Names that ``run --all`` uses, in registry order."""
    return [n for n, s in REGISTRY.items() if include_slow or not s.slow]
