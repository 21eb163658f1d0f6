"""The comparison report: which segmenter wins, by how much, how sure, at what cost.

:func:`build_report` reads a finished run folder (the files listed in
``docs/protocols.md``) and writes, without recomputing any prediction:

- ``report.md`` and ``report.html`` (images linked relative to the run
  folder, so the page stays small; copy the folder with ``plots/`` and
  ``report_assets/`` to move it);
- ``plots/*.png``: the seaborn figures;
- ``report_assets/grid/*.jpg``: the comparison grid (:mod:`compare.suite.report.grid`);
- ``report_assets/test-NAME.jpg``: the test-set contact sheet.

The sections built from pictures and saved files live in
:mod:`compare.suite.report.sections`; the Methods text in :mod:`compare.suite.report.methods`.

Benchmarks are read from ``RUN_DIR/benchmarks/pytest-benchmark.json`` when
present (the benchmark command of ``docs/benchmarks.md`` writes it for ``results/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from compare.io.atomic import write_text_atomic
from compare.suite.report.domains import domains_section
from compare.suite.report.html import Document, Figure, Section, Table, Text, to_html, to_markdown
from compare.suite.report.methods import ANNOTATION_DICE, run_meta
from compare.suite.report.reproduce import benchmark_command, report_command, run_command
from compare.suite.report.run_data import BENCHMARK_FILE, RunData, load_run
from compare.suite.report.sections import (
    _environment_section,
    _errors_section,
    _grid_section,
    _limitations_section,
    _methods_section,
    _num,
    _per_image_section,
    _seconds,
    _shift_section,
    _test_sheet_section,
)
from compare.suite.stats import pairwise_wilcoxon

__all__ = ["build_report", "load_run", "RunData", "BENCHMARK_FILE", "benchmark_command", "run_command"]


#: Family-wise significance level of the paired tests.
ALPHA = 0.05


# -- numbers --------------------------------------------------------------------


def _p_equals(p: Any) -> str:
    """``p = 0.0123`` or ``p < 0.0001``, for sentences."""
    text = _pvalue(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _pvalue(p: Any) -> str:
    try:
        p = float(p)
    except (TypeError, ValueError):
        return "–"
    if not np.isfinite(p):
        return "–"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _scored(summary: pd.DataFrame, protocol: str) -> pd.DataFrame:
    rows = summary[summary["protocol"] == protocol].copy()
    if "dice_mean" in rows:
        rows["dice_mean"] = pd.to_numeric(rows["dice_mean"], errors="coerce")
        rows = rows[rows["dice_mean"].notna()]
    else:
        rows = rows.iloc[0:0]
    return rows.sort_values("dice_mean", ascending=False, kind="stable")


def primary_protocol(summary: pd.DataFrame) -> str | None:
    """The protocol that ranks segmenters: cv (most images) if scored, else large."""
    for protocol in ("cv", "large"):
        if not _scored(summary, protocol).empty:
            return protocol
    return None


def segmenter_order(summary: pd.DataFrame, per_image: pd.DataFrame) -> list[str]:
    """Segmenters, best mean Dice first (cv, then large), then the unscored ones."""
    order: list[str] = []
    for protocol in ("cv", "large"):
        order += [n for n in _scored(summary, protocol)["segmenter"] if n not in order]
    for name in list(summary["segmenter"]) + list(per_image["segmenter"]):
        if isinstance(name, str) and name not in order:
            order.append(name)
    return order


def pairwise_table(run: RunData, protocol: str | None, order: list[str]) -> pd.DataFrame:
    """Holm-corrected paired Wilcoxon tests on per-image Dice for ``protocol``."""
    if protocol is None or run.per_image.empty:
        return pd.DataFrame()
    rows = run.per_image[run.per_image["protocol"] == protocol]
    return pairwise_wilcoxon(rows, score="dice", key=("fold", "image"), alpha=ALPHA,
                             order=[n for n in order if n in set(rows["segmenter"])])


# -- headline -------------------------------------------------------------------

_PROTOCOL_WORDS = {"cv": "grouped cross-validation over the training patches",
                   "large": "the large labelled images", "test": "the unlabelled test images"}

#: A Dice gap below this is within the masks' own annotation noise (two annotations agree at 0.981).
NOISE_DICE = 1 - ANNOTATION_DICE


def _speed(row: pd.Series) -> float | None:
    """A summary row's predict Mpx/s, or None when it is missing, not a number or not positive."""
    speed = pd.to_numeric(pd.Series([row.get("predict_mpx_s")]), errors="coerce").iloc[0]
    return float(speed) if np.isfinite(speed) and speed > 0 else None


def speed_figure(summary: pd.DataFrame, name: str) -> tuple[float | None, str]:
    """The one speed quoted for a segmenter: predict Mpx/s on the large images, else on the patches.

    A per-call cost dominates on 128 px patches, so their megapixels per
    second understate a large image's; every other speed in the report is
    labelled with what it measures.
    """
    for protocol, where in (("large", "large images"), ("test", "test images"), ("cv", "128 px patches")):
        rows = summary[(summary["segmenter"] == name) & (summary["protocol"] == protocol)]
        speed = _speed(rows.iloc[0]) if not rows.empty else None
        if speed:
            return speed, where
    return None, ""


def _effect(row: Any) -> str:
    """Mean paired difference, share of images better and rank-biserial r, for a sentence."""
    r = getattr(row, "rank_biserial", float("nan"))
    parts = [f"mean paired difference {float(row.mean_diff):+.3f} Dice"]
    if np.isfinite(row.a_better):
        parts.append(f"{row.a} better on {100 * row.a_better:.0f}% of images")
    if np.isfinite(r):
        parts.append(f"rank-biserial r = {r:+.2f}")
    return ", ".join(parts)


def _noise_words(diff: float) -> str:
    return ("smaller than the annotation noise (two annotations of the same cells differ by "
            f"{NOISE_DICE:.3f} Dice)" if abs(diff) < NOISE_DICE else
            f"larger than the annotation noise ({NOISE_DICE:.3f} Dice between two annotations)")


def headline(run: RunData, pairs: pd.DataFrame, protocol: str | None) -> list[str]:
    """Plain sentences: who leads and whether the lead is real, how well each counts, what it costs."""
    if protocol is None:
        return ["This run holds no scored results (no cv or large protocol finished), so no segmenter can be "
                "ranked; see the problems section below."]
    ranked = _scored(run.summary, protocol)
    best = ranked.iloc[0]
    where = _PROTOCOL_WORDS[protocol]
    lines = [f"**{best.segmenter}** has the highest mean Dice on {where}: **{_num(best.dice_mean)}** "
             f"(95% bootstrap CI {_num(best.dice_ci_low)}–{_num(best.dice_ci_high)}, {int(best.n_images)} images)."]
    if len(ranked) == 1:
        lines.append("It is the only segmenter in this run, so there is nothing to compare it with.")
    else:
        lines.append(_versus(best.segmenter, ranked.iloc[1], pairs))
    lines.extend(_counting_line(run, list(ranked["segmenter"])))
    speeds = []
    for name in ranked["segmenter"]:
        speed, at = speed_figure(run.summary, name)
        if speed:
            speeds.append(f"{name} {speed:.2f}")
    if speeds:
        lines.append(f"Prediction speed on {at}, megapixels per second of `predict_proba` (features "
                     f"included; the one speed this report quotes per segmenter): {', '.join(speeds)}.")
    return lines


def _versus(best: str, runner: pd.Series, pairs: pd.DataFrame) -> str:
    gap = f"Next is **{runner.segmenter}** ({_num(runner.dice_mean)})"
    pair = {best, runner.segmenter}
    match = pairs[[{a, b} == pair for a, b in zip(pairs.a, pairs.b)]] if not pairs.empty else pairs
    if match.empty:
        return f"{gap}; no paired test could be made."
    row = match.iloc[0]
    test = (f"paired Wilcoxon signed-rank test over {int(row.n_pairs)} images, Holm-corrected "
            f"{_p_equals(row.p_holm)}; {_effect(row)}")
    if row.significant and row.winner == best:
        return (f"{gap}. The difference is statistically significant ({test}), but it is "
                f"{_noise_words(row.mean_diff)}: a consistent edge, not a visible one.")
    return f"{gap}. The difference is **not statistically significant** ({test}): on this data the two are tied."


def _counting_line(run: RunData, order: list[str]) -> list[str]:
    large = run.summary[run.summary["protocol"] == "large"].copy()
    if large.empty or "count_mae" not in large:
        return []
    large["count_mae"] = pd.to_numeric(large["count_mae"], errors="coerce")
    large = large.dropna(subset=["count_mae"])
    if large.empty:
        return []
    rows = run.per_image[run.per_image["protocol"] == "large"]
    n_images = rows["image"].nunique()
    true_total = int(pd.to_numeric(rows.drop_duplicates("image")["true_count"], errors="coerce").sum())
    facts = []
    for seg in large.itertuples():
        mine = rows[rows["segmenter"] == seg.segmenter]
        found = int(pd.to_numeric(mine["pred_count"], errors="coerce").sum())
        exact = int(round(float(seg.count_exact) * len(mine))) if np.isfinite(float(seg.count_exact)) else 0
        facts.append((seg.segmenter, found, exact, float(seg.count_mae)))
    best_mae = min(f[3] for f in facts)
    top = [f for f in facts if f[3] == best_mae]
    intro = f"Counting on the {n_images} large images ({true_total} WBCs): "
    if len(top) == len(facts) and len(facts) > 1:
        name, found, exact, mae = top[0]
        return [intro + f"**all {len(facts)} segmenters tie**: each finds {found} WBCs with exact counts on "
                f"{exact} of {n_images} images (count MAE {_num(mae, 2)}), so counting does not separate them here."]
    names = " and ".join(f"**{f[0]}**" for f in top)
    name, found, exact, mae = top[0]
    rest = "; ".join(f"{f[0]} {f[1]} found, {f[2]} exact, MAE {_num(f[3], 2)}" for f in facts if f not in top)
    verb = "count best" if len(top) > 1 else "counts best"
    return [intro + f"{names} {verb} ({found} found, exact on {exact} of {n_images} images, MAE {_num(mae, 2)}); "
            f"{rest}."]


# -- tables ---------------------------------------------------------------------

#: Why a column is dropped from a protocol's table where it is constant.
_CONSTANT_WHY = {
    "object F1": "every patch holds one WBC, found by every segmenter",
    "count MAE": "one WBC per patch", "exact count": "one WBC per patch",
    "PQ": "with one matched WBC per image, panoptic quality equals IoU",
}


def _constant(values: pd.Series) -> bool:
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers.notna().all() and numbers.nunique() <= 1 and len(numbers) > 0


def summary_table(summary: pd.DataFrame, protocol: str, order: list[str]) -> tuple[Table | None, str]:
    """The readable summary of one protocol, best first, and a note on the columns left out.

    Columns whose value is the same for every segmenter (object F1, counts
    and PQ on one-WBC patches) are dropped there and named in the note.
    """
    rows = summary[summary["protocol"] == protocol]
    if rows.empty:
        return None, ""
    rows = rows.set_index("segmenter").reindex([n for n in order if n in set(rows["segmenter"])]).reset_index()
    where = {"cv": "128 px patches", "large": "large images", "test": "test images"}.get(protocol, protocol)
    speed = f"predict Mpx/s ({where})"
    if protocol == "test":
        frame = pd.DataFrame({
            "segmenter": rows["segmenter"], "images": rows["n_images"].map(lambda v: _num(v, 0)),
            "mean predicted count": rows["pred_count_mean"].map(lambda v: _num(v, 2)),
            speed: rows["predict_mpx_s"].map(lambda v: _num(v, 2)),
        })
        return Table(frame, numeric=tuple(frame.columns[1:])), ""
    columns = {
        "segmenter": rows["segmenter"], "images": rows["n_images"].map(lambda v: _num(v, 0)),
        "Dice [95% CI]": [f"{_num(m)} [{_num(lo)}, {_num(hi)}]"
                          for m, lo, hi in zip(rows["dice_mean"], rows["dice_ci_low"], rows["dice_ci_high"])],
        "IoU": rows["iou_mean"].map(_num),
        "HD95 px": rows["hd95_mean"].map(lambda v: _num(v, 1)),
        "surface Dice @2px": rows["surface_dice_mean"].map(_num),
        "precision": rows["precision_mean"].map(_num), "recall": rows["recall_mean"].map(_num),
        "object F1": rows["object_f1"].map(_num), "PQ": rows["panoptic_quality"].map(_num),
        "count MAE": rows["count_mae"].map(lambda v: _num(v, 2)), "exact count": rows["count_exact"].map(_num),
        "fit s": rows["fit_s"].map(_seconds), speed: rows["predict_mpx_s"].map(lambda v: _num(v, 2)),
    }
    raw = {"object F1": rows["object_f1"], "count MAE": rows["count_mae"], "exact count": rows["count_exact"]}
    dropped = [c for c, v in raw.items() if len(rows) > 1 and _constant(v)]
    pq, iou = pd.to_numeric(rows["panoptic_quality"], errors="coerce"), pd.to_numeric(rows["iou_mean"], errors="coerce")
    if pq.notna().all() and np.allclose(pq, iou, atol=5e-4):
        dropped.append("PQ")
    for column in ("HD95 px", "surface Dice @2px"):
        if (columns[column] == "–").all():
            dropped.append(column)
    frame = pd.DataFrame({k: v for k, v in columns.items() if k not in dropped})
    note = ""
    explained = [c for c in dropped if c in _CONSTANT_WHY]
    if explained:
        values = {c: _num(raw[c].iloc[0], 2) if c in raw else "= IoU" for c in explained}
        note = ("Left out here because they are the same for every segmenter: " + "; ".join(
            f"{c} ({values[c]}: {_CONSTANT_WHY[c] if protocol == 'cv' else 'identical for all'})"
            for c in explained) + ".")
    return Table(frame, numeric=tuple(c for c in frame.columns if c != "segmenter")), note


def pairs_table(pairs: pd.DataFrame) -> Table:
    """The paired tests as a readable table, the effect size beside every p-value."""
    verdicts = []
    for row in pairs.itertuples():
        if not np.isfinite(row.p_holm):
            verdicts.append("no test (no shared images)")
        elif row.significant:
            small = " (below annotation noise)" if abs(row.mean_diff) < NOISE_DICE else ""
            verdicts.append(f"**{row.winner}** better{small}")
        else:
            verdicts.append("tied (no significant difference)")
    r = pairs["rank_biserial"] if "rank_biserial" in pairs else pd.Series(np.nan, index=pairs.index)
    frame = pd.DataFrame({
        "A vs B": [f"{a} vs {b}" for a, b in zip(pairs.a, pairs.b)],
        "images": pairs.n_pairs.map(lambda v: _num(v, 0)),
        "Dice A": pairs.mean_a.map(_num), "Dice B": pairs.mean_b.map(_num),
        "mean A − B": pairs.mean_diff.map(lambda v: f"{float(v):+.3f}" if np.isfinite(v) else "–"),
        "A better on": pairs.a_better.map(lambda v: f"{100 * v:.0f}% of images" if np.isfinite(v) else "–"),
        "rank-biserial r": r.map(lambda v: f"{float(v):+.2f}" if np.isfinite(v) else "–"),
        "p (Wilcoxon)": pairs.p.map(_pvalue), "p (Holm)": pairs.p_holm.map(_pvalue),
        "verdict": verdicts,
    })
    return Table(frame, numeric=("images", "Dice A", "Dice B", "mean A − B", "rank-biserial r", "p (Wilcoxon)",
                                 "p (Holm)"))


def benchmark_table(data: dict[str, Any]) -> Table | None:
    """pytest-benchmark's JSON as stage, segmenter, case, mean seconds, operations and megapixels per second."""
    rows = []
    for bench in data.get("benchmarks", []):
        extra = bench.get("extra_info") or {}
        stats = bench.get("stats") or {}
        mean, pixels = stats.get("mean"), extra.get("pixels")
        speed = pixels / mean / 1e6 if pixels and mean else float("nan")
        rows.append({
            "stage": extra.get("stage") or bench.get("group") or "–",
            "segmenter": extra.get("segmenter") or (bench.get("params") or {}).get("name") or "–",
            "case": extra.get("case") or bench.get("name", "–"),
            "mean s": _num(mean, 4), "± sd": _num(stats.get("stddev"), 4),
            "ops/s": _num(stats.get("ops"), 2), "Mpx/s": _num(speed, 2), "rounds": _num(stats.get("rounds"), 0),
            "_pixels": pixels or 0,
        })
    if not rows:
        return None
    # Small inputs before large ones, whatever order pytest ran them in.
    frame = pd.DataFrame(rows).sort_values(["stage", "segmenter", "_pixels"], kind="stable").drop(columns="_pixels")
    return Table(frame, numeric=("mean s", "± sd", "ops/s", "Mpx/s", "rounds"))


# -- pictures -------------------------------------------------------------------


# -- sections -------------------------------------------------------------------

def _summary_section(run: RunData, order: list[str], commands: list[str]) -> Section:
    blocks: list = [Text("Mean Dice is over images, with a 95% percentile-bootstrap interval; IoU, precision and "
                         "recall are per-image pixel means; HD95 is the mean over images of the 95th-percentile "
                         "distance between the true and predicted boundaries (pixels, lower is better); surface "
                         "Dice @2px is the share of boundary pixels within 2 px of the other boundary; object F1 "
                         "and panoptic quality (PQ) pool the matched WBCs (IoU ≥ 0.5) of all images; count MAE is "
                         "the mean absolute error of the WBC count; exact count is the share of images counted "
                         "exactly; fit s is seconds per fit; predict Mpx/s is megapixels per second of prediction "
                         "on that protocol's images, features included. The same numbers, unrounded, are in "
                         "`summary.csv` and `per_image.csv`.")]
    titles = {"cv": f"Cross-validation ({run.config.get('folds', '?')} grouped folds over the training patches)",
              "large": "Large images (trained on the patches not cut from them)",
              "test": "Test images (no ground truth: counts and speed only)"}
    for protocol in ("cv", "large", "test"):
        table, note = summary_table(run.summary, protocol, order)
        if table is not None:
            blocks += [Text(f"**{titles[protocol]}**"), table] + ([Text(note)] if note else [])
    if len(blocks) == 1:
        blocks.append(Text("The summary table is empty: no protocol finished."))
    return Section("summary", "Summary table", blocks, commands)


def _tests_section(pairs: pd.DataFrame, protocol: str | None, commands: list[str]) -> Section:
    if pairs.empty:
        text = ("Paired tests need at least two segmenters scored on the same images; "
                "this run has fewer, so there are none.")
        return Section("tests", "Paired tests", [Text(text)], commands)
    blocks = [
        Text(f"Each pair of segmenters is compared on the per-image Dice of the images both scored "
             f"({protocol} protocol) with a two-sided Wilcoxon signed-rank test; the p-values are then "
             f"Holm-corrected for the {len(pairs)} comparisons, and a difference counts as significant when the "
             f"corrected p is below {ALPHA}. Beside each p-value the effect size: the mean paired difference, \"A "
             f"better on\" (the share of images where A scores higher) and the matched-pairs rank-biserial "
             f"correlation r (+1: A higher on every image, 0: balanced). Read the differences against the "
             f"annotation noise: two annotations of the same cells agree at Dice {ANNOTATION_DICE:.3f}, so a "
             f"gap under {NOISE_DICE:.3f} can be significant and still invisible."),
        pairs_table(pairs),
    ]
    return Section("tests", "Paired tests (Wilcoxon signed-rank, Holm-corrected)", blocks, commands)


def _plots_section(run: RunData, order: list[str], protocol: str | None, commands: list[str]) -> Section:
    from compare.suite.report import plots

    folder = run.root / "plots"
    blocks: list = []
    protocol = protocol or "cv"
    made = [
        (plots.dice_per_image(run.per_image, order, folder / "dice_per_image.png", protocol=protocol),
         f"Dice per image per segmenter ({protocol}); boxes show quartiles, diamonds the mean."),
        (plots.frontier(run.summary, order, folder / "dice_vs_speed.png", protocol=protocol),
         "Accuracy against cost: mean Dice (95% CI) against prediction speed on the same images, features "
         "included. Up and to the right is better."),
        (plots.training_curves(run.histories, folder / "training_curves.png"),
         "Training curves: loss and validation Dice per epoch, one line per fold."),
        (plots.counts(run.per_image, order, folder / "counts.png", seed=int(run.config.get("seed", 0) or 0)),
         "Predicted against true WBC counts per image (jittered); the dashed line is a perfect count."),
        (plots.precision_recall(run.per_image, order, folder / "precision_recall.png", protocol=protocol),
         "Pixel precision and recall per segmenter: means (95% CI) and each image."),
    ]
    for path, caption in made:
        if path is not None:
            blocks.append(Figure(path, caption))
    if not run.histories:
        blocks.append(Text("No segmenter in this run recorded a training history (only trained networks such as "
                           "the U-Net do), so there are no training curves."))
    if not blocks:
        blocks.append(Text("Nothing to plot: the run holds no scored images."))
    return Section("plots", "Plots", blocks, commands)


def _benchmark_section(run: RunData) -> Section:
    commands = [benchmark_command(run.root), report_command(run.root)]
    if run.benchmarks is None:
        return Section("benchmarks", "Benchmarks (pytest-benchmark)", [Text(
            f"No benchmark results at `{(run.root / BENCHMARK_FILE).as_posix()}`; run the command above, then "
            "rebuild the report.")], commands)
    table = benchmark_table(run.benchmarks)
    machine = run.benchmarks.get("machine_info") or {}
    cpu = (machine.get("cpu") or {}).get("brand_raw") or machine.get("processor") or "unknown CPU"
    text = (f"Measured {run.benchmarks.get('datetime', '')[:19]} on {cpu} "
            f"({(machine.get('cpu') or {}).get('count', '?')} cores), Python {machine.get('python_version', '?')}. "
            "Stages: `fit` on a fixed small subset, `predict` on 128 × 128 and 1024 × 1024 images, "
            "`features` (feature extraction) and `instances` (instance separation).")
    blocks: list = [Text(text)]
    blocks.append(table if table is not None else Text("The benchmark file holds no results."))
    return Section("benchmarks", "Benchmarks (pytest-benchmark)", blocks, commands)


def compose(run: RunData) -> Document:
    """The report of ``run`` as a :class:`~compare.suite.report.html.Document` (figures are written here)."""
    order = segmenter_order(run.summary, run.per_image)
    protocol = primary_protocol(run.summary)
    pairs = pairwise_table(run, protocol, order)
    rebuild = report_command(run.root)
    both = [run_command(run.config, run.root), rebuild]
    sections = [
        _summary_section(run, order, both),
        _tests_section(pairs, protocol, [rebuild]),
        _grid_section(run, order, [rebuild]),
        _per_image_section(run, order),
        _shift_section(run, order),
        domains_section(run, order),
        _plots_section(run, order, protocol, [rebuild]),
        _test_sheet_section(run, order, both),
        _methods_section(run, order),
        _limitations_section(run),
        _benchmark_section(run),
        _errors_section(run),
        _environment_section(run),
    ]
    return Document("White blood cell segmentation: comparison report", headline(run, pairs, protocol),
                    [s for s in sections if s is not None], meta=run_meta(run.root, run.env))


def build_report(run_dir: str | Path) -> Path:
    """Write ``report.md``, ``report.html``, ``plots/`` and ``report_assets/`` for a finished run.

    Nothing is recomputed: the report reads the run folder's tables, JSON
    files and saved predictions (and the data folder, for gallery images).

    Parameters
    ----------
    run_dir : str or Path
        A folder written by ``python -m compare run``.

    Returns
    -------
    Path
        ``run_dir/report.html``.
    """
    run = load_run(run_dir)
    doc = compose(run)
    write_text_atomic(run.root / "report.md", to_markdown(doc, run.root))
    target = run.root / "report.html"
    write_text_atomic(target, to_html(doc, run.root))
    return target
