"""Score a saved model on labelled folders from other labs, as it is: ``python -m compare score``.

This is the held-out check of a model that was trained elsewhere: no
fitting, no flags, the pipeline a user gets from ``predict`` (white balance,
stain anchor, scale estimate, nucleus check), scored image by image with
the evaluator ``compare run`` uses.  Each folder is one domain (one lab, one
microscope) in any layout :func:`compare.suite.data.load_domain` reads
(``images/`` + ``masks/``, SigTuple's ``Train_Data/``, CellaVision's
``Dataset 2/``).  Where a folder's masks mark the nucleus (three levels:
0, 128, 255), the nucleus is scored too.

Written into ``out``:

- ``per_image.csv``: one row per image and folder (Dice, IoU, boundary and
  object scores, true and predicted counts, ``border_extra``: predicted WBCs
  touching the border and no true WBC, ``dice_border_apart``: the whole-cell
  Dice without them, the scale used and how it was found,
  warnings; with nucleus masks also ``nucleus_dice``, ``nc_true``,
  ``nc_pred``, ``nc_rel_error``, N:C being nucleus / whole-cell area);
- ``summary.csv`` / ``summary.md``: per folder, the mean Dice with a
  bootstrap 95 % interval, the mean ``dice_border_apart``, the share of
  images counted exactly (border
  extras left out: a crop's mask leaves partial neighbours out), the mean
  count error and the share of images carrying a warning; with nucleus
  masks also the mean nucleus Dice with its interval, the share of images
  whose nucleus was found, and over those the median N:C relative error
  and the Spearman rank correlation of predicted and expert N:C;
- ``errors.csv`` when an image could not be read or predicted (the others
  are still scored);
- ``parts/FOLDER.json``, one per finished folder, so ``--resume`` skips
  them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from compare.io.atomic import json_default, safe_stem, write_text_atomic

__all__ = ["SUMMARY_COLUMNS", "score_folders", "summarise_scores"]

#: Columns of ``summary.csv``, in order.
SUMMARY_COLUMNS = ["folder", "n_images", "dice_mean", "dice_ci_low", "dice_ci_high", "dice_median",
                   "dice_border_apart_mean",
                   "count_exact", "count_mae", "warned", "n_errors", "border_extra", "nucleus_dice_mean",
                   "nucleus_dice_ci_low", "nucleus_dice_ci_high", "nucleus_found", "nc_rel_error_median",
                   "nc_rank_corr"]


def _folder_key(folder: Path) -> str:
    """A file-name-safe key for a folder: its name plus a short hash of its absolute path."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
    return f"{safe_stem(folder.name or 'data')}-{digest}"


def score_folders(folders: Sequence[str | Path], *, model_dir: str | Path | None = None,
                  out: str | Path = "scores", resume: bool = False,
                  show_progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score a saved model on every labelled image of each folder.

    Parameters
    ----------
    folders : sequence of str or Path
        Labelled data folders, one domain each.
    model_dir : str, Path or None, keyword-only
        A model folder saved by ``compare run``; None uses the committed
        default (:func:`compare.pipeline.model.default_model_dir`).
    out : str or Path, keyword-only
        Output folder (created).
    resume : bool, keyword-only
        Reuse the folders an earlier call with the same model finished into
        ``out``.
    show_progress : bool, keyword-only

    Returns
    -------
    per_image : DataFrame
        One row per scored image; ``folder`` names its folder.
    summary : DataFrame
        One row per folder, columns :data:`SUMMARY_COLUMNS`.

    Raises
    ------
    compare.io.images.DataError
        If a folder has no labelled image in a known layout (before any
        scoring, so nothing is half done).
    """
    from compare.io.images import DataError
    from compare.pipeline.model import load_model
    from compare.suite.data import load_domain
    from compare.suite.protocols import evaluate_domain

    out = Path(out)
    folders = [Path(f) for f in folders]
    # Read every folder first: a wrong path is reported before minutes of scoring.
    loaded: list[tuple[Path, list, list[DataError]]] = []
    for folder in folders:
        errors: list[DataError] = []
        loaded.append((folder, load_domain(folder, on_error="skip", errors=errors), errors))
    model = load_model(model_dir)  # None: the default, with a message saying how to make it if missing
    model_sha = model.manifest_.sha256
    parts = out / "parts"
    rows: list[dict[str, Any]] = []
    problems: list[dict[str, str]] = []
    for folder, samples, read_errors in loaded:
        part_path = parts / f"{_folder_key(folder)}.json"
        if resume and part_path.is_file():
            part = json.loads(part_path.read_text(encoding="utf-8"))
            if part.get("model_sha256") == model_sha:
                rows += part["rows"]
                problems += part["problems"]
                continue
        # A DataError's message names its file.
        found: list[dict[str, str]] = [{"folder": str(folder), "image": "-", "message": str(e)} for e in read_errors]

        def failed(sample, exc: BaseException, found=found, folder=folder) -> None:
            found.append({"folder": str(folder), "image": str(sample.path),
                          "message": f"{sample.path}: prediction failed ({type(exc).__name__}: {exc}); "
                                     "check that it is an RGB smear image."})

        scored = evaluate_domain(model, samples, on_error=failed,
                                 progress_desc=f"score {folder.name or folder}" if show_progress else None)
        for row in scored:
            row["folder"] = str(folder)
        part = {"folder": str(folder), "model_sha256": model_sha, "rows": scored, "problems": found}
        write_text_atomic(part_path, json.dumps(part, default=json_default) + "\n")
        rows += scored
        problems += found
    per_image = pd.DataFrame(rows)
    if len(per_image):
        per_image = per_image[["folder", "image"] + [c for c in per_image.columns if c not in ("folder", "image")]]
    summary = summarise_scores(per_image, [str(f) for f in folders], pd.DataFrame(problems))
    _write_outputs(out, per_image, summary, problems, model.manifest_.folder)
    return per_image, summary


def summarise_scores(per_image: pd.DataFrame, folders: Sequence[str], problems: pd.DataFrame | None = None,
                     *, seed: int = 0) -> pd.DataFrame:
    """One summary row per folder (columns :data:`SUMMARY_COLUMNS`).

    Parameters
    ----------
    per_image : DataFrame
        Rows of :func:`score_folders` (``folder``, ``dice``, ``true_count``,
        ``pred_count``, ``warning``; ``border_extra`` and the nucleus scores
        where present).
    folders : sequence of str
        The folders, in the order of the output.
    problems : DataFrame, optional
        Error rows with a ``folder`` column; counted in ``n_errors``.
    seed : int, keyword-only
        Seed of the bootstrap interval.
    """
    from compare.suite.stats import bootstrap_ci
    from compare.suite.summary import count_error, nanmean, nucleus_summary

    out = []
    for folder in folders:
        group = per_image[per_image["folder"] == folder] if len(per_image) else per_image
        n_errors = int((problems["folder"] == folder).sum()) if problems is not None and len(problems) else 0
        if group.empty:
            out.append({"folder": folder, "n_images": 0, "n_errors": n_errors})
            continue
        dice = group["dice"].to_numpy(float)
        low, high = bootstrap_ci(dice, seed=seed)
        error = count_error(group).abs()
        extras = pd.to_numeric(group["border_extra"], errors="coerce") if "border_extra" in group else None
        out.append({
            "folder": folder, "n_images": len(group), "dice_mean": float(np.nanmean(dice)), "dice_ci_low": low,
            "dice_ci_high": high, "dice_median": float(np.nanmedian(dice)),
            "dice_border_apart_mean": nanmean(group["dice_border_apart"]) if "dice_border_apart" in group else np.nan,
            "count_exact": float((error == 0).mean()), "count_mae": float(error.mean()),
            "warned": float((group["warning"].fillna("") != "").mean()), "n_errors": n_errors,
            "border_extra": int(extras.fillna(0).sum()) if extras is not None else float("nan"),
            **nucleus_summary(group, seed=seed),
        })
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def _write_outputs(out: Path, per_image: pd.DataFrame, summary: pd.DataFrame, problems: list[dict[str, str]],
                   model_dir: Path) -> None:
    from compare.suite.summary import markdown_table

    write_text_atomic(out / "per_image.csv", per_image.to_csv(index=False))
    write_text_atomic(out / "summary.csv", summary.to_csv(index=False))
    # Nucleus columns only where some folder's masks mark the nucleus.
    shown = [c for c in summary.columns if not c.startswith(("nucleus_", "nc_")) or summary[c].notna().any()]
    text = (f"# Scores of `{model_dir}` on labelled folders\n\n"
            "Default settings, no flags: `python -m compare score FOLDER ...`. `border_extra`: predicted WBCs "
            "that touch the image border and no true WBC, partial neighbours that a crop's mask leaves out; "
            "`count_exact` does not count them and `dice_border_apart_mean` is the whole-cell Dice without "
            "them (`dice_mean` counts their pixels as false positives).\n\n"
            + markdown_table(summary, shown))
    write_text_atomic(out / "summary.md", text)
    errors_path = out / "errors.csv"
    if problems:
        write_text_atomic(errors_path, pd.DataFrame(problems).to_csv(index=False))
    elif errors_path.exists():
        errors_path.unlink()
