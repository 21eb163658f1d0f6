"""The report's section on another lab: in-domain and CellaVision figures side by side.

Every segmenter's final model is fitted on SigTuple only; the ``cellavision``
protocol scores it, as it is, on the CellaVision crops (another lab, another
microscope, another stain).  The section puts the in-domain figures (SigTuple
cross-validation Dice, the large images counted exactly) beside the other
lab's (whole-cell Dice, nucleus Dice, N:C error, exact count), and says
where the ranking of the segmenters flips between the two.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from compare.suite.report.html import Section, Table, Text
from compare.suite.report.run_data import RunData
from compare.suite.report.sections import _num
from compare.suite.summary import count_error

__all__ = ["domain_table", "domains_section", "report_half_table"]

#: The post-processing thresholds fitted on CellaVision (the nucleus check's
#: ``min_coherent_separability`` / ``min_coherence``, the scale probe's
#: ``PIECES_RATIO``, the outline stage's ``OUTLINE_LOW`` / ``OUTLINE_SIGMA``)
#: were chosen on the odd-numbered crops; the even-numbered ones are the
#: report half (``experiments/cellavision_split.py``).  The outline's colour
#: rules (:mod:`compare.pipeline.plasma_contrast`) were shaped on crops of
#: both halves; the report says so.
TUNING_HALF, REPORT_HALF = "odd", "even"

#: ``(column title, protocol, summary column, digits)`` of the side-by-side table.
COLUMNS = (
    ("SigTuple cv Dice", "cv", "dice_mean", 3),
    ("SigTuple large exact count", "large", "count_exact", 2),
    ("CellaVision whole-cell Dice", "cellavision", "dice_mean", 3),
    ("CellaVision Dice, border extras apart", "cellavision", "dice_border_apart_mean", 3),
    ("CellaVision nucleus Dice", "cellavision", "nucleus_dice_mean", 3),
    ("CellaVision nucleus found", "cellavision", "nucleus_found", 2),
    ("CellaVision N:C median rel. error", "cellavision", "nc_rel_error_median", 3),
    ("CellaVision N:C rank corr.", "cellavision", "nc_rank_corr", 2),
    ("CellaVision object F1", "cellavision", "object_f1", 3),
    ("CellaVision exact count", "cellavision", "count_exact", 2),
)


def _value(summary: pd.DataFrame, name: str, protocol: str, column: str) -> float:
    rows = summary[(summary["segmenter"] == name) & (summary["protocol"] == protocol)]
    if rows.empty or column not in rows:
        return float("nan")
    return float(pd.to_numeric(rows[column], errors="coerce").iloc[0])


def domain_table(summary: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Numbers of the side-by-side table: one row per segmenter, one column per :data:`COLUMNS` title.

    Parameters
    ----------
    summary : DataFrame
        ``summary.csv`` of a run.
    order : list of str
        Segmenters, in the report's order.

    Returns
    -------
    DataFrame
        Index ``segmenter``; NaN where the run lacks the protocol.
    """
    names = [n for n in order if n in set(summary["segmenter"])]
    frame = pd.DataFrame({title: [_value(summary, n, protocol, column) for n in names]
                          for title, protocol, column, _ in COLUMNS}, index=pd.Index(names, name="segmenter"))
    return frame


def report_half_table(per_image: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Whole-cell Dice, nucleus Dice and exact count per segmenter on each half of the CellaVision crops.

    Parameters
    ----------
    per_image : DataFrame
        ``per_image.csv`` of a run; its ``cellavision`` rows are used, their
        ``image`` a crop number (``001`` ... ``100``).
    order : list of str
        Segmenters, in the report's order.

    Returns
    -------
    DataFrame
        Columns ``segmenter``, ``half`` (:data:`TUNING_HALF` or
        :data:`REPORT_HALF`), ``n_images``, ``dice``, ``nucleus_dice``,
        ``count_exact``; empty when the run has no such rows.
    """
    columns = ["segmenter", "half", "n_images", "dice", "nucleus_dice", "count_exact"]
    if per_image.empty or "protocol" not in per_image:
        return pd.DataFrame(columns=columns)
    rows = per_image[per_image["protocol"] == "cellavision"]
    number = pd.to_numeric(rows["image"], errors="coerce")
    rows = rows[number.notna()].assign(half=[TUNING_HALF if int(n) % 2 else REPORT_HALF for n in number.dropna()])
    out = []
    for name in [n for n in order if n in set(rows["segmenter"])]:
        for half in (TUNING_HALF, REPORT_HALF):
            group = rows[(rows["segmenter"] == name) & (rows["half"] == half)]
            if group.empty:
                continue
            nucleus = pd.to_numeric(group.get("nucleus_dice", pd.Series(dtype=float)), errors="coerce")
            out.append({"segmenter": name, "half": half, "n_images": len(group),
                        "dice": float(pd.to_numeric(group["dice"], errors="coerce").mean()),
                        "nucleus_dice": float(nucleus.mean()) if nucleus.notna().any() else float("nan"),
                        "count_exact": float((count_error(group) == 0).mean())})
    return pd.DataFrame(out, columns=columns)


def _ranking(values: pd.Series) -> list[str]:
    return list(values.dropna().sort_values(ascending=False, kind="stable").index)


def _flip_text(numbers: pd.DataFrame) -> str:
    """Where the order of the segmenters by SigTuple cv Dice differs from the order by CellaVision Dice."""
    home = _ranking(numbers["SigTuple cv Dice"])
    away = _ranking(numbers["CellaVision whole-cell Dice"])
    both = [n for n in home if n in away]
    home, away = both, [n for n in away if n in both]
    if len(both) < 2:
        return ""
    if home == away:
        return f"The ranking by whole-cell Dice is the same on both labs: {', '.join(home)}."
    return (f"**The ranking flips.** By SigTuple cv Dice: {', '.join(home)}; by CellaVision whole-cell Dice: "
            f"{', '.join(away)}. The best segmenter on the lab it was trained on is not the best on another.")


def domains_section(run: RunData, order: list[str]) -> Section | None:
    """In-domain and other-lab figures per segmenter; None when the run has no ``cellavision`` rows."""
    summary = run.summary
    if summary.empty or "cellavision" not in set(summary["protocol"]):
        return None
    numbers = domain_table(summary, order)
    shown = pd.DataFrame({"segmenter": numbers.index})
    for title, _, _, digits in COLUMNS:
        shown[title] = [_num(v, digits) for v in numbers[title]]
    n_images: Any = summary.loc[summary["protocol"] == "cellavision", "n_images"].max()
    blocks: list = [
        Text("Each segmenter's final model, fitted on the SigTuple patches only (the `large` protocol's model), "
             f"scored as it is on {int(n_images)} CellaVision crops from another lab (protocol `cellavision`: "
             "Zheng et al. 2018, expert masks of the whole cell and the nucleus; no model is fitted on them). "
             "Whole cell = mask >= 64, nucleus = mask >= 192. N:C is nucleus area / cytoplasm area (the cell "
             "table's `nc_ratio`) of the cell the mask marks, against the predicted WBC that overlaps it most, and its nucleus; over the images "
             "where that nucleus was found (share: `nucleus found`), its error is the median relative error and "
             "its rank correlation Spearman's. An image is counted exactly when the marked "
             "cell is found as one WBC and nothing else lies inside the field: a partial neighbouring WBC cut "
             "by the border, which the mask leaves out, is counted apart (`border_extra` in `per_image.csv`), and "
             "the Dice with such border extras left out of the prediction is shown beside the plain one, "
             "which counts their pixels as false positives."),
        Table(shown, numeric=tuple(shown.columns[1:])),
    ]
    flip = _flip_text(numbers)
    if flip:
        blocks.append(Text(flip))
    halves = report_half_table(run.per_image, order)
    if not halves.empty:
        shown_halves = halves.assign(**{c: [_num(v, 3 if c != "count_exact" else 2) for v in halves[c]]
                                        for c in ("dice", "nucleus_dice", "count_exact")})
        blocks += [
            Text(f"Five post-processing settings were chosen on the {TUNING_HALF}-numbered crops (the nucleus "
                 "check's `min_coherent_separability` and `min_coherence`, the scale probe's `PIECES_RATIO`, "
                 "the outline stage's `OUTLINE_LOW` and `OUTLINE_SIGMA`, the last two together with fold 0 of "
                 f"the SigTuple patches and its shifts); the {REPORT_HALF}-numbered crops are the report half, "
                 "which none of these was chosen on (the probe's `SIZE_FACTORS` and `SIZE_WINDOW` were set "
                 "without CellaVision, so both halves report them). The outline's cytoplasm told by colour "
                 "(`compare.pipeline.plasma_contrast`) was shaped while looking at crops of both halves, so for "
                 "its gain neither half is untouched; its checks are SigTuple, the shifts and other fits of the "
                 "U-Net (docs/experiments.md):"),
            Table(shown_halves, numeric=("n_images", "dice", "nucleus_dice", "count_exact")),
        ]
    if (run.root / "benchmarks" / "learning_curve.md").is_file():
        blocks.append(Text("How many of a lab's own labelled images close the gap, fine-tuning the U-Net "
                           "(`python -m compare fit --from default`) against fitting from scratch: the learning "
                           "curve on these crops, `benchmarks/learning_curve.md` (`benchmarks/learning_curve.png`)."))
    if (run.root / "benchmarks" / "lobe_counts.csv").is_file():
        blocks.append(Text("Lobe counts checked by eye: the CellaVision neutrophils and eosinophils with the shipped "
                           "model's nucleus outline and lobe count, `benchmarks/lobe_grid.jpg`, and the counts read "
                           "off it by eye beside the predicted ones, `benchmarks/lobe_counts.csv` "
                           "(`python experiments/lobe_grid.py --by-eye results/benchmarks/lobe_counts.csv` prints "
                           "the agreement)."))
    return Section("domains", "In-domain and another lab (CellaVision, zero-shot)", blocks)
