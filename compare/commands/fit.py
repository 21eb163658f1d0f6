"""A lab's own model: ``python -m compare fit FOLDER... --segmenter NAME [--from MODEL] --out MODEL_DIR``.

Reads every labelled image of the folders (any layout
:func:`compare.suite.data.load_domain` reads), fits the segmenter from
scratch or fine-tunes a saved U-Net (:mod:`compare.pipeline.finetune`), and
writes a model folder that ``predict``, ``score`` and
``compare.load_model(path)`` take.  The folder is written beside ``--out``
under a temporary name and renamed into place only when complete, so an
interrupted fit (Ctrl-C) leaves no half-written model and an older model at
``--out`` stays as it was until the new one replaces it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["add_fit_parser", "fit_folders", "main", "resolve_start"]

#: Words ``--from`` takes for the U-Net shipped with the package.
DEFAULT_WORDS = ("default",)


def add_fit_parser(sub) -> None:
    """The ``fit`` sub-command's arguments."""
    fit = sub.add_parser(
        "fit", help="fit a segmenter on your labelled images, or fine-tune the shipped U-Net on them",
        description="Fit a segmenter on labelled folders (images/ + masks/, the SigTuple layout, or the CellaVision "
                    "one; masks with levels 0, 128, 255 mark the nucleus too) or, with --from, train a saved U-Net "
                    "further on them. Writes a model folder for 'predict --model', 'score --model' and "
                    "compare.load_model(path). Only U-Nets can be fine-tuned: the classical segmenters (rf, svm, "
                    "mlp, threshold) would have to be refitted on their old training images, which a model folder "
                    "does not hold, so fit them without --from on the old and new folders together.")
    fit.add_argument("folders", nargs="+", type=Path, metavar="FOLDER", help="labelled data folders")
    fit.add_argument("--segmenter", default="unet", help="registry name, see 'list' (default: unet)")
    fit.add_argument("--from", dest="start", default=None, metavar="MODEL_DIR",
                     help="a U-Net model folder to fine-tune, or 'default' for the U-Net shipped with the package "
                          "(results/models/unet of older checkouts is the same model); it is never changed")
    fit.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR", help="the model folder to write")
    budget = fit.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=None,
                        help="U-Net epochs (default: 24 from scratch, 30 of 10 steps when fine-tuning)")
    budget.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="U-Net: as many epochs as fit in this many seconds (the count reached is in the "
                             "model's manifest; pass it as --epochs to repeat the fit exactly)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the segmenter, split, crops and augmentation")
    fit.add_argument("--val-share", type=float, default=None, metavar="SHARE",
                     help="U-Net: share of the images held out to pick the best epoch, in [0, 0.5) (default: "
                          "0 when fine-tuning, 0.15 from scratch); 0 trains on every image for the set epochs "
                          "and keeps the last")
    fit.add_argument("--any-scale", action="store_true",
                     help="the model estimates each image's scale, as the shipped one does (default: it takes "
                          "images at the training images' scale, as one lab's microscope gives them; predict's "
                          "--wbc-diameter and --pixel-size still set another)")
    fit.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                     help="where the U-Net trains (default auto: a GPU when the Keras backend sees one)")


def resolve_start(start: str | Path | None) -> Path | None:
    """The model folder ``--from`` names: None, a folder, or the shipped U-Net for ``default``."""
    from compare.pipeline.model import default_model_dir

    if start is None:
        return None
    if str(start) in DEFAULT_WORDS:
        return default_model_dir()
    return Path(start)


def _load_folders(folders: list[Path]) -> tuple[list, list[tuple[str, str, int]]]:
    """Every labelled sample of the folders, and each folder's (path, hash, image count); errors name the file."""
    from compare.io.images import DataError
    from compare.pipeline.finetune import folder_hash
    from compare.suite.data import load_domain

    samples, described = [], []
    for folder in folders:
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder; pass labelled data folders (images/ + masks/).")
        found = load_domain(folder)  # raises, naming the file, on an image without a mask or of another size
        samples += found
        described.append((str(folder.resolve()), folder_hash([s.image for s in found], [s.mask for s in found]),
                          len(found)))
    return samples, described


def _check_out(out: Path, start_dir: Path | None) -> None:
    from compare.pipeline.model import MANIFEST, default_model_dir

    out_r = out.resolve()
    if start_dir is not None and out_r == start_dir.resolve():
        raise ValueError(f"{out}: is the model --from starts from; write the new model to another folder.")
    if out_r == default_model_dir().resolve() or default_model_dir().resolve() in out_r.parents:
        raise ValueError(f"{out}: is the package's shipped model; write the new model to another folder.")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise ValueError(f"{out}: exists and is not a model folder; choose a new --out (a model folder is replaced).")


def save_atomic(model: Any, out: Path) -> Path:
    """Save ``model`` into a temporary folder beside ``out``, then rename it to ``out`` (replacing an old model)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = None
    try:
        model.save(tmp / "model")
        if out.exists():
            old = out.with_name(f".{out.name}.{os.getpid()}.old")
            os.replace(out, old)
        os.replace(tmp / "model", out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old, out)  # put the old model back
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and out.exists():
            shutil.rmtree(old, ignore_errors=True)
    return out


def fit_folders(folders: list[Path], *, segmenter: str = "unet", start: str | Path | None = None, out: Path,
                epochs: int | None = None, time_budget_s: float | None = None, seed: int = 0,
                val_share: float | None = None, any_scale: bool = False,
                verbose: int | str = "auto") -> tuple[Any, dict[str, Any]]:
    """Fit or fine-tune on labelled folders and write the model folder ``out``.

    Parameters
    ----------
    folders : list of Path
        Labelled data folders.
    segmenter : str, keyword-only
        A registry name.
    start : str, Path or None, keyword-only
        A model folder to fine-tune, ``"default"`` for the shipped U-Net, or None (from scratch).
    out : Path, keyword-only
    epochs, time_budget_s, seed, val_share, any_scale : keyword-only
        See :class:`compare.pipeline.finetune.FitSettings`.
    verbose : int or "auto", keyword-only
        The U-Net's per-epoch progress bar (0: none).

    Returns
    -------
    model : WBCModel
        As saved (its ``manifest_`` read back from ``out``).
    record : dict
        The manifest's ``fit`` entry.

    Raises
    ------
    compare.io.images.DataError, ValueError, FileNotFoundError
        Before anything is written: a folder without labelled images, an
        image without its mask or with a mask of another size (named), too
        few images, a bad ``--out`` or ``--from``.
    """
    from compare.pipeline.finetune import FitSettings, fit_model, min_images, provenance
    from compare.pipeline.model import load_model
    from compare.pipeline.segmenters import get_spec

    get_spec(segmenter)  # an unknown name fails before the data is read
    start_dir = resolve_start(start)
    _check_out(out, start_dir)
    settings = FitSettings(epochs=epochs, time_budget_s=time_budget_s, val_share=val_share, random_state=seed,
                           any_scale=any_scale)
    if settings.unet_overrides():
        from unet.config import TrainConfig

        # Option errors before the data; the schedule is the fitted profile's, checked with it in the fit.
        TrainConfig(**{"schedule": "cosine", **settings.unet_overrides()})
    samples, described = _load_folders(folders)
    need = min_images(segmenter, val_share, fine_tuning=start_dir is not None)
    if len(samples) < need:
        names = ", ".join(str(f) for f in folders)
        raise ValueError(f"{names}: {len(samples)} labelled image(s); fitting {segmenter} needs at least {need} "
                         "(one is held out to pick the best epoch); add images, or pass --val-share 0.")
    start_model = None if start_dir is None else load_model(start_dir)
    model, settings_from = fit_model(segmenter, [s.image for s in samples], [s.mask for s in samples],
                                     start=start_model, fit=settings, verbose=verbose)
    model.provenance_ = provenance(described, start_model, settings_from, settings)
    save_atomic(model, out)
    model = load_model(out)
    return model, model.manifest_.data["fit"]


def main(args: argparse.Namespace) -> int:
    """``compare fit``: fit, save, and print where the model is and how it was made."""
    from compare.pipeline.device import select_device

    select_device(args.device)  # before Keras is imported
    t0 = time.perf_counter()
    model, record = fit_folders(args.folders, segmenter=args.segmenter, start=args.start, out=args.out,
                                epochs=args.epochs, time_budget_s=args.time_budget, seed=args.seed,
                                val_share=args.val_share, any_scale=args.any_scale, verbose="auto")
    n = sum(f["n_images"] for f in record["training_folders"])
    how = "fine-tuned from " + record["start_model"]["folder"] if record["start_model"] else "fitted from scratch"
    print(f"{model.name_} {how} on {n} image(s) in {time.perf_counter() - t0:.0f} s; settings: "
          + ", ".join(f"{k} {v}" for k, v in record["settings_from"].items()) + ".")
    print(f"The model is in {args.out}; use it with: python -m compare predict IMAGES --model {args.out}")
    return 0
