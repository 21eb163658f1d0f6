"""From per-image rows to the summary table, and the run folder's result files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from compare.io.atomic import atomic_path, write_text_atomic
from compare.suite.stats import bootstrap_ci

__all__ = [
    "BOUNDARY_COLUMNS",
    "NUCLEUS_SUMMARY",
    "PER_IMAGE_COLUMNS",
    "SUMMARY_COLUMNS",
    "count_error",
    "markdown_table",
    "nanmean",
    "nucleus_summary",
    "readable_columns",
    "summarise",
    "write_tables",
]

#: Contract columns of ``per_image.csv`` (more may follow them).
PER_IMAGE_COLUMNS = ("segmenter", "protocol", "fold", "image", "dice", "iou", "precision", "recall",
                     "true_count", "pred_count", "tp", "fp", "fn")

#: Contract columns of ``summary.csv``, then the extra ones.
SUMMARY_COLUMNS = ("segmenter", "protocol", "n_images", "dice_mean", "dice_ci_low", "dice_ci_high", "iou_mean",
                   "object_f1", "panoptic_quality", "count_mae", "count_exact", "fit_s", "predict_mpx_s",
                   "precision_mean", "recall_mean", "pred_count_mean", "n_fits", "hd95_mean", "hd95_inf",
                   "surface_dice_mean", "shift", "nucleus_dice_mean", "nucleus_dice_ci_low", "nucleus_dice_ci_high",
                   "nucleus_found", "nc_rel_error_median", "nc_rank_corr", "border_extra",
                   "dice_border_apart_mean")

#: Summary columns of the nucleus scores (:func:`nucleus_summary`), where masks mark the nucleus.
NUCLEUS_SUMMARY = ("nucleus_dice_mean", "nucleus_dice_ci_low", "nucleus_dice_ci_high", "nucleus_found",
                   "nc_rel_error_median", "nc_rank_corr")

#: Per-image boundary columns; a run written without them still summarises.
BOUNDARY_COLUMNS = ("hd95", "surface_dice")


def nanmean(series: pd.Series) -> float:
    """Mean of a column's numeric values, NaN (and text) left out; NaN when none is finite."""
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _finite_mean(series: pd.Series) -> tuple[float, int]:
    """Mean of the finite values and the number of infinite ones (HD95 of a missed or invented mask)."""
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(values)
    return (float(values[finite].mean()) if finite.any() else float("nan")), int(np.isinf(values).sum())


def nucleus_summary(group: pd.DataFrame, *, seed: int = 0) -> dict[str, float]:
    """Nucleus figures of a group of per-image rows with ``nucleus_dice``, ``nc_true``, ``nc_pred``, ``nc_rel_error``.

    Parameters
    ----------
    group : DataFrame
        Per-image rows; rows without nucleus scores (NaN) are left out.
    seed : int, keyword-only
        Seed of the bootstrap interval.

    Returns
    -------
    dict
        :data:`NUCLEUS_SUMMARY`: the mean nucleus Dice with its bootstrap
        95 % interval (an image whose nucleus was missed scores 0),
        ``nucleus_found``, the share of images whose matched WBC has a
        nucleus, and over those images the median N:C relative error and
        the Spearman rank correlation of the predicted with the expert N:C
        (a missed nucleus has no N:C to rank; ``nucleus_found`` counts it);
        empty when the rows carry no nucleus scores.
    """
    from scipy.stats import spearmanr

    if "nucleus_dice" not in group:
        return {}
    dice = pd.to_numeric(group["nucleus_dice"], errors="coerce")
    if not dice.notna().any():
        return {}
    low, high = bootstrap_ci(dice, seed=seed)
    nc = group[["nc_true", "nc_pred", "nc_rel_error"]].apply(pd.to_numeric, errors="coerce")
    scored = nc[nc["nc_true"].notna()]
    found = scored[scored["nc_pred"] > 0]
    rho = float(spearmanr(found["nc_true"], found["nc_pred"])[0]) if len(found) >= 3 else float("nan")
    return {"nucleus_dice_mean": nanmean(dice), "nucleus_dice_ci_low": low, "nucleus_dice_ci_high": high,
            "nucleus_found": len(found) / len(scored) if len(scored) else float("nan"),
            "nc_rel_error_median": float(found["nc_rel_error"].median()) if len(found) else float("nan"),
            "nc_rank_corr": rho}


def count_error(group: pd.DataFrame) -> pd.Series:
    """Predicted minus true WBC count per row, border extras left out.

    Where a row has ``border_extra`` (crops whose mask marks one WBC, as the
    CellaVision set's), the predicted WBCs touching the border and no true
    WBC are not counted: the mask leaves such partial neighbours out.
    """
    error = pd.to_numeric(group["pred_count"]) - pd.to_numeric(group["true_count"])
    if "border_extra" in group:
        error = error - pd.to_numeric(group["border_extra"], errors="coerce").fillna(0)
    return error


def _groups(per_image: pd.DataFrame):
    """``((segmenter, protocol, shift), rows)``: shift rows split by their shift, the others not."""
    shift = per_image["shift"] if "shift" in per_image else pd.Series("", index=per_image.index)
    shift = shift.where(per_image["protocol"] == "shift", "").fillna("").astype(str)
    for (name, protocol, which), group in per_image.assign(_shift=shift).groupby(
            ["segmenter", "protocol", "_shift"], sort=False):
        yield (name, protocol, which), group.drop(columns="_shift")


def _count_rows(group: pd.DataFrame, protocol: str, shift: str) -> pd.DataFrame:
    """The rows whose WBC count means something.

    A shifted cv patch holds one WBC by construction, so only shifted large
    images (``source == "large"``) and crops (``shift`` starting ``crop``)
    count; every other protocol counts all its rows.
    """
    if protocol != "shift":
        return group
    source = group["source"].astype(str) if "source" in group else pd.Series("", index=group.index)
    return group[(source == "large") | shift.startswith("crop")]


def summarise(per_image: pd.DataFrame, units: dict[str, dict], *, seed: int = 0) -> pd.DataFrame:
    """One row per (segmenter, protocol), and per (segmenter, ``"shift"``, shift).

    Object F1 and panoptic quality pool the matches of all images (an image
    with one WBC would otherwise weigh as much as one with three); Dice, IoU,
    precision and recall are per-image means with NaN (empty) images left out.
    HD95 is the mean over images with a finite distance, ``hd95_inf`` the
    number of images where one mask was empty (infinite distance); both
    boundary means are NaN when ``per_image`` has no boundary columns.
    Where rows carry nucleus scores (protocol ``cellavision``) the summary
    adds :func:`nucleus_summary`'s figures, and the count error leaves out
    border extras (:func:`count_error`), whose total is ``border_extra``;
    ``dice_border_apart_mean`` is the mean whole-cell Dice without them
    (:func:`compare.evaluation.metrics.dice_border_apart`).
    Rows of protocol ``"shift"`` (a ``shift`` column names the shift, a
    ``source`` column says ``"cv"`` or ``"large"``) are summarised per shift;
    their count error and exact-count share use only the rows where a count
    is meaningful (see :func:`_count_rows`), NaN where there are none.

    Parameters
    ----------
    per_image : DataFrame
        Rows of ``per_image.csv``.
    units : dict
        ``"NAME/PROTOCOL-FOLD" -> {"fit_s", "predict_s", "pixels", ...}``.
    seed : int, keyword-only
        Seed of the bootstrap intervals.

    Returns
    -------
    DataFrame with :data:`SUMMARY_COLUMNS`.
    """
    rows = []
    if per_image.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    for (name, protocol, shift), group in _groups(per_image):
        facts = [u for key, u in units.items() if key.startswith(f"{name}/{protocol}-")]
        if shift:
            # A shift unit is keyed NAME/shift-SHIFT...; keep only this shift's.
            facts = [u for key, u in units.items() if key.startswith(f"{name}/{protocol}-{shift}")] or facts
        fits = [u["fit_s"] for u in facts if u.get("fit_s") is not None]
        predict_s = sum(u.get("predict_s") or 0.0 for u in facts)
        pixels = sum(u.get("pixels") or 0 for u in facts)
        row: dict[str, Any] = {"segmenter": name, "protocol": protocol, "n_images": len(group),
                               "fit_s": float(np.mean(fits)) if fits else float("nan"),
                               "predict_mpx_s": pixels / predict_s / 1e6 if predict_s > 0 else float("nan"),
                               "pred_count_mean": nanmean(group["pred_count"]), "n_fits": len(fits),
                               "shift": shift}
        has_truth = "dice" in group and pd.to_numeric(group["dice"], errors="coerce").notna().any()
        if has_truth:
            low, high = bootstrap_ci(pd.to_numeric(group["dice"], errors="coerce"), seed=seed)
            tp, fp, fn = (float(pd.to_numeric(group[c]).sum()) for c in ("tp", "fp", "fn"))
            matched = float(pd.to_numeric(group.get("matched_iou_sum", pd.Series(dtype=float))).sum())
            counted = _count_rows(group, protocol, shift)
            error = count_error(counted)
            if all(c in group for c in BOUNDARY_COLUMNS):
                hd95_mean, hd95_inf = _finite_mean(group["hd95"])
                row.update(hd95_mean=hd95_mean, hd95_inf=hd95_inf, surface_dice_mean=nanmean(group["surface_dice"]))
            row.update(
                dice_mean=nanmean(group["dice"]), dice_ci_low=low, dice_ci_high=high,
                iou_mean=nanmean(group["iou"]), precision_mean=nanmean(group["precision"]),
                recall_mean=nanmean(group["recall"]),
                object_f1=2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else float("nan"),
                panoptic_quality=matched / (tp + 0.5 * (fp + fn)) if (tp + fp + fn) else float("nan"),
                count_mae=float(error.abs().mean()) if len(error) else float("nan"),
                count_exact=float((error == 0).mean()) if len(error) else float("nan"),
                **nucleus_summary(group, seed=seed),
            )
            if "border_extra" in group and group["border_extra"].notna().any():
                row["border_extra"] = int(pd.to_numeric(group["border_extra"], errors="coerce").fillna(0).sum())
            if "dice_border_apart" in group:
                row["dice_border_apart_mean"] = nanmean(group["dice_border_apart"])
        rows.append(row)
    summary = pd.DataFrame(rows)
    for column in SUMMARY_COLUMNS:
        if column not in summary:
            summary[column] = np.nan
    summary["shift"] = summary["shift"].astype(object).fillna("").astype(str)
    return summary[list(SUMMARY_COLUMNS)]


def _fmt(value: Any, column: str) -> str:
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return "–"
        if column in ("fit_s", "hd95_mean"):
            return f"{value:.1f}"
        if column in ("predict_mpx_s", "pred_count_mean", "count_mae"):
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def markdown_table(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A GitHub-flavoured markdown table of ``frame`` with readable number formats."""
    # A summary read from an older run lacks the newer columns: show what it has.
    columns = [c for c in (columns or list(frame.columns)) if c in frame]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c], c) for c in columns) + " |")
    return "\n".join(lines) + "\n"


#: Columns of the readable summary (the CSV has them all).
READABLE = ["segmenter", "protocol", "shift", "n_images", "dice_mean", "dice_ci_low", "dice_ci_high", "iou_mean",
            "hd95_mean", "surface_dice_mean", "object_f1", "panoptic_quality", "count_mae", "count_exact", "fit_s",
            "predict_mpx_s", "nucleus_dice_mean", "nucleus_found", "nc_rel_error_median", "nc_rank_corr"]


def readable_columns(summary: pd.DataFrame) -> list[str]:
    """:data:`READABLE`, less the nucleus columns where no row has nucleus scores."""
    return [c for c in READABLE if c not in NUCLEUS_SUMMARY or (c in summary and summary[c].notna().any())]


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_path(path, lambda p: frame.to_csv(p, index=False, float_format="%.6g"))


def write_tables(out: Path, per_image: pd.DataFrame, summary: pd.DataFrame, units: dict[str, dict],
                 errors: list[dict[str, str]], env: dict[str, Any]) -> None:
    """Write ``per_image.csv``, ``summary.csv``, ``summary.md``, ``errors.csv``,
    ``histories.json`` and ``env.json`` into ``out``, each atomically."""
    out = Path(out)
    _write_csv(out / "per_image.csv", per_image)
    _write_csv(out / "summary.csv", summary)
    text = "# Summary\n\n" + markdown_table(summary, readable_columns(summary))
    if errors:
        text += f"\n{len(errors)} problem(s) were recorded; see errors.csv.\n"
    write_text_atomic(out / "summary.md", text)
    _write_csv(out / "errors.csv", pd.DataFrame(errors, columns=["level", "segmenter", "protocol", "fold", "image", "error"]))
    histories = {key: u["history"] for key, u in units.items() if u.get("history")}
    fit_info = {key: u["fit_info"] for key, u in units.items() if u.get("fit_info")}
    write_text_atomic(out / "histories.json", json.dumps(histories, indent=1) + "\n")
    write_text_atomic(out / "fit_info.json", json.dumps(fit_info, indent=1, default=str) + "\n")
    write_text_atomic(out / "env.json", json.dumps(env, indent=2) + "\n")
