"""The comparison report: which segmenter wins, by how much, how sure, at what cost.

:func:`build_report` reads a finished run folder (the files listed in
DESIGN.md) and writes, without recomputing any prediction:

- ``report.md`` and ``report.html`` (self-contained, images embedded);
- ``plots/*.png``: the seaborn figures;
- ``report_assets/*.png``: the overlay gallery and the contact sheets.

Benchmarks are read from ``RUN_DIR/benchmarks/pytest-benchmark.json`` when
present (the README's benchmark command writes it for ``results/``).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from compare.io import atomic_path, safe_stem, write_text_atomic
from compare.report_html import Details, Document, Figure, Section, Table, Text, to_html, to_markdown
from compare.stats import pairwise_wilcoxon

__all__ = ["build_report", "load_run", "RunData", "BENCHMARK_FILE", "benchmark_command", "run_command"]

#: Where the report looks for pytest-benchmark's JSON, relative to the run folder.
BENCHMARK_FILE = Path("benchmarks") / "pytest-benchmark.json"

#: Family-wise significance level of the paired tests.
ALPHA = 0.05

#: Longest side of a contact-sheet thumbnail, in pixels, per protocol: the few
#: large images big enough to see each WBC, the many test images small enough
#: to keep the HTML a few megabytes.
THUMB = {"large": 360, "test": 180}


# -- reading the run folder ----------------------------------------------------

@dataclass
class RunData:
    """Everything a report needs, read from one run folder."""

    root: Path
    per_image: pd.DataFrame
    summary: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    errors: pd.DataFrame = field(default_factory=pd.DataFrame)
    histories: dict[str, list] = field(default_factory=dict)
    benchmarks: dict[str, Any] | None = None


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"fold": str, "image": str, "segmenter": str})
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder's tables and JSON files.

    Parameters
    ----------
    run_dir : str or Path
        A folder written by ``python -m compare run``.

    Returns
    -------
    RunData

    Raises
    ------
    FileNotFoundError
        When the folder or its ``per_image.csv`` / ``summary.csv`` is missing.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run folder; pass a folder written by 'python -m compare run'.")
    for name in ("per_image.csv", "summary.csv"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name} is missing; the run did not finish. "
                                    "Finish it with the same 'run' command plus --resume.")
    from compare.summary import PER_IMAGE_COLUMNS, SUMMARY_COLUMNS

    per_image = _read_csv(root / "per_image.csv")
    summary = _read_csv(root / "summary.csv")
    # Runs written before a column was added still make a report: the missing
    # column reads as "not measured".
    for frame, columns in ((per_image, PER_IMAGE_COLUMNS), (summary, SUMMARY_COLUMNS)):
        for column in columns:
            if column not in frame:
                frame[column] = pd.Series(dtype=str if column in ("segmenter", "protocol") else float)
    return RunData(root=root, per_image=per_image, summary=summary,
                   config=_read_json(root / "config.json", {}), env=_read_json(root / "env.json", {}),
                   errors=_read_csv(root / "errors.csv"), histories=_read_json(root / "histories.json", {}),
                   benchmarks=_read_json(root / BENCHMARK_FILE, None))


# -- commands shown beside each section ----------------------------------------

def run_command(config: dict[str, Any], run_dir: Path) -> str:
    """The ``python -m compare run`` command line that reproduces a run's config."""
    from compare.runner import PROTOCOLS
    from compare.segmenters import default_names

    names = list(config.get("segmenters") or [])
    if names == default_names(False):
        which = ["--all"]
    elif names == default_names(True):
        which = ["--all", "--include-slow"]
    else:
        which = ["--segmenters", ",".join(names) or "NAME"]
    args = ["python", "-m", "compare", "run", *which]
    protocols = list(config.get("protocols") or PROTOCOLS)
    if protocols != list(PROTOCOLS):
        args += ["--protocols", ",".join(protocols)]
    if config.get("folds", 5) != 5:
        args += ["--folds", str(config["folds"])]
    if config.get("seed", 0) != 0:
        args += ["--seed", str(config["seed"])]
    if config.get("data"):
        args += ["--data", str(config["data"])]
    args += ["--out", str(config.get("out") or run_dir)]
    return shlex.join(args)


def report_command(run_dir: Path) -> str:
    """The command that rebuilds this report from the run folder."""
    return shlex.join(["python", "-m", "compare", "report", str(run_dir)])


def benchmark_command(run_dir: Path) -> str:
    """The pytest-benchmark command whose JSON the report summarises."""
    target = (Path(run_dir) / BENCHMARK_FILE).as_posix()
    return ("python -m pytest tests/benchmarks --benchmark-enable --benchmark-only "
            f"--benchmark-json {shlex.quote(target)} -m 'slow or not slow'")


# -- numbers --------------------------------------------------------------------

def _num(value: Any, digits: int = 3) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if not np.isfinite(value) else f"{value:.{digits}f}"


def _p_equals(p: Any) -> str:
    """``p = 0.0123`` or ``p < 0.0001``, for sentences."""
    text = _pvalue(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _seconds(value: Any) -> str:
    # A learning-free segmenter "fits" in microseconds; "0.0" would read as missing.
    text = _num(value, 1)
    return "< 0.1" if text in ("0.0", "-0.0") else text


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


def _speed(row: pd.Series) -> float | None:
    """A summary row's predict Mpx/s, or None when it is missing, not a number or not positive."""
    speed = pd.to_numeric(pd.Series([row.get("predict_mpx_s")]), errors="coerce").iloc[0]
    return float(speed) if np.isfinite(speed) and speed > 0 else None


_SPEED_WORDS = {"cv": "the 128 × 128 patches", "large": "the large images", "test": "the test images"}


def _cost(row: pd.Series, where: str) -> str:
    """"fits in ... and predicts ... on ``where``": the speed belongs to that protocol's images.

    A per-call cost dominates on 128 px patches, so their megapixels per
    second do not extrapolate to a large image; the sentence says which
    images it was measured on rather than converting it to a large size.
    """
    speed = _speed(row)
    fit = pd.to_numeric(pd.Series([row.get("fit_s")]), errors="coerce").iloc[0]
    parts = []
    if np.isfinite(fit):
        parts.append(f"fits in {_seconds(fit)} s per training set")
    if speed:
        parts.append(f"predicts {speed:.2f} megapixels per second on {where}")
    return " and ".join(parts)


def headline(run: RunData, pairs: pd.DataFrame, protocol: str | None) -> list[str]:
    """Plain sentences: the winner, how sure we are, what it costs, how well it counts."""
    if protocol is None:
        return ["This run holds no scored results (no cv or large protocol finished), so no segmenter can be "
                "ranked; see the problems section below."]
    ranked = _scored(run.summary, protocol)
    best = ranked.iloc[0]
    where = _PROTOCOL_WORDS[protocol]
    lines = [f"**{best.segmenter}** has the best mean Dice on {where}: **{_num(best.dice_mean)}** "
             f"(95% bootstrap CI {_num(best.dice_ci_low)}–{_num(best.dice_ci_high)}, "
             f"{int(best.n_images)} images)."]
    if len(ranked) == 1:
        lines.append("It is the only segmenter in this run, so there is nothing to compare it with.")
    else:
        runner = ranked.iloc[1]
        lines.append(_versus(best.segmenter, runner, pairs))
    cost = _cost(best, _SPEED_WORDS[protocol])
    large = run.summary[(run.summary.segmenter == best.segmenter) & (run.summary.protocol == "large")]
    large_speed = _speed(large.iloc[0]) if protocol == "cv" and not large.empty else None
    if cost and large_speed:
        cost += f" ({large_speed:.2f} on the large images)"
    if cost:
        lines.append(f"Cost: {best.segmenter} {cost}.")
    speeds = pd.to_numeric(ranked["predict_mpx_s"], errors="coerce")
    if len(ranked) > 1 and speeds.notna().any():
        fastest = ranked.loc[speeds.idxmax()]
        if fastest.segmenter != best.segmenter:
            lines.append(f"The fastest, {fastest.segmenter}, predicts {float(fastest.predict_mpx_s):.3g} Mpx/s "
                         f"at mean Dice {_num(fastest.dice_mean)}.")
    lines.extend(_counting_line(run, list(ranked["segmenter"])))
    return lines


def _versus(best: str, runner: pd.Series, pairs: pd.DataFrame) -> str:
    gap = f"ahead of the runner-up **{runner.segmenter}** ({_num(runner.dice_mean)})"
    if pairs.empty:
        return f"It is {gap}; no paired test could be made."
    pair = {best, runner.segmenter}
    match = pairs[[{a, b} == pair for a, b in zip(pairs.a, pairs.b)]]
    if match.empty:
        return f"It is {gap}; no paired test could be made."
    row = match.iloc[0]
    test = (f"paired Wilcoxon signed-rank test on per-image Dice over {int(row.n_pairs)} images, "
            f"Holm-corrected {_p_equals(row.p_holm)}")
    if row.significant and row.winner == best:
        return f"It is {gap}, and the difference is **statistically significant** ({test})."
    return (f"It is {gap}, but the difference is **not statistically significant** ({test}): "
            f"on this data the two are tied.")


def _counting_line(run: RunData, order: list[str]) -> list[str]:
    large = run.summary[run.summary["protocol"] == "large"].copy()
    if large.empty or "count_mae" not in large:
        return []
    large["count_mae"] = pd.to_numeric(large["count_mae"], errors="coerce")
    # Ties in count error go to the better segmenter by Dice.
    large["_rank"] = [order.index(n) if n in order else len(order) for n in large["segmenter"]]
    large = large.dropna(subset=["count_mae"]).sort_values(["count_mae", "_rank"], kind="stable")
    if large.empty:
        return []
    top = large.iloc[0]
    rows = run.per_image[(run.per_image["protocol"] == "large") & (run.per_image["segmenter"] == top.segmenter)]
    true_total = int(pd.to_numeric(rows["true_count"], errors="coerce").sum())
    pred_total = int(pd.to_numeric(rows["pred_count"], errors="coerce").sum())
    exact = int(round(float(top.count_exact) * len(rows))) if np.isfinite(float(top.count_exact)) else 0
    return [f"Counting: on the {len(rows)} large images ({true_total} WBCs) the best counter is "
            f"**{top.segmenter}**, with {pred_total} WBCs found, exact counts on {exact} of {len(rows)} images "
            f"and a mean absolute count error of {_num(top.count_mae, 2)}."]


# -- tables ---------------------------------------------------------------------

def summary_table(summary: pd.DataFrame, protocol: str, order: list[str]) -> Table | None:
    """The readable summary of one protocol, best first."""
    rows = summary[summary["protocol"] == protocol]
    if rows.empty:
        return None
    rows = rows.set_index("segmenter").reindex([n for n in order if n in set(rows["segmenter"])]).reset_index()
    if protocol == "test":
        frame = pd.DataFrame({
            "segmenter": rows["segmenter"], "images": rows["n_images"].map(lambda v: _num(v, 0)),
            "mean predicted count": rows["pred_count_mean"].map(lambda v: _num(v, 2)),
            "predict Mpx/s": rows["predict_mpx_s"].map(lambda v: _num(v, 2)),
        })
        return Table(frame, numeric=("images", "mean predicted count", "predict Mpx/s"))
    frame = pd.DataFrame({
        "segmenter": rows["segmenter"],
        "images": rows["n_images"].map(lambda v: _num(v, 0)),
        "Dice [95% CI]": [f"{_num(m)} [{_num(lo)}, {_num(hi)}]"
                          for m, lo, hi in zip(rows["dice_mean"], rows["dice_ci_low"], rows["dice_ci_high"])],
        "IoU": rows["iou_mean"].map(_num),
        "precision": rows["precision_mean"].map(_num),
        "recall": rows["recall_mean"].map(_num),
        "object F1": rows["object_f1"].map(_num),
        "PQ": rows["panoptic_quality"].map(_num),
        "count MAE": rows["count_mae"].map(lambda v: _num(v, 2)),
        "exact count": rows["count_exact"].map(_num),
        "fit s": rows["fit_s"].map(_seconds),
        "predict Mpx/s": rows["predict_mpx_s"].map(lambda v: _num(v, 2)),
    })
    return Table(frame, numeric=tuple(c for c in frame.columns if c != "segmenter"))


def pairs_table(pairs: pd.DataFrame) -> Table:
    """The paired tests as a readable table."""
    verdicts = []
    for row in pairs.itertuples():
        if not np.isfinite(row.p_holm):
            verdicts.append("no test (no shared images)")
        elif row.significant:
            verdicts.append(f"**{row.winner}** better")
        else:
            verdicts.append("no significant difference")
    frame = pd.DataFrame({
        "A vs B": [f"{a} vs {b}" for a, b in zip(pairs.a, pairs.b)],
        "images": pairs.n_pairs.map(lambda v: _num(v, 0)),
        "Dice A": pairs.mean_a.map(_num), "Dice B": pairs.mean_b.map(_num),
        "mean A − B": pairs.mean_diff.map(lambda v: f"{float(v):+.3f}" if np.isfinite(v) else "–"),
        "A better on": pairs.a_better.map(lambda v: f"{100 * v:.0f}% of images" if np.isfinite(v) else "–"),
        "p (Wilcoxon)": pairs.p.map(_pvalue), "p (Holm)": pairs.p_holm.map(_pvalue),
        "verdict": verdicts,
    })
    return Table(frame, numeric=("images", "Dice A", "Dice B", "mean A − B", "p (Wilcoxon)", "p (Holm)"))


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

def _data_dir(run: RunData) -> Path:
    from compare.data import resolve_data_dir

    # No download while reporting: without data the pictures are left out.
    return resolve_data_dir(run.config.get("data"), fetch=False).path


def _labelled_patches(run: RunData) -> dict[str, Any]:
    """The labelled patches by name, or an empty dict when the data cannot be read."""
    from compare.data import DataError, load_set

    try:
        return {s.name: s for s in load_set(_data_dir(run), "patches", on_error="skip")}
    except (DataError, OSError):
        return {}


def _upscale(array: np.ndarray, factor: int) -> np.ndarray:
    # Nearest-neighbour keeps label values intact and outlines crisp.
    return array.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else array


def _read_labels(path: Path) -> np.ndarray | None:
    from PIL import Image

    try:
        return np.asarray(Image.open(path)).astype(np.int32)
    except (FileNotFoundError, OSError):
        return None


def gallery(run: RunData, name: str, patches: dict[str, Any], out: Path) -> tuple[Path | None, str]:
    """Best, median and worst cv image of ``name`` with true and predicted outlines.

    Returns
    -------
    (Path or None, str)
        The PNG written, and a sentence saying what it shows or why it is missing.
    """
    import matplotlib.pyplot as plt

    from compare.instances import label_truth
    from compare.overlay import draw_overlay
    from compare.plots import save_figure

    rows = run.per_image[(run.per_image["segmenter"] == name) & (run.per_image["protocol"] == "cv")].copy()
    rows["dice"] = pd.to_numeric(rows["dice"], errors="coerce")
    rows = rows.dropna(subset=["dice"]).sort_values("dice", ascending=False, kind="stable")
    if rows.empty:
        return None, f"{name}: no scored cv images, so no gallery."
    picks = {"best": rows.iloc[0], "median": rows.iloc[len(rows) // 2], "worst": rows.iloc[-1]}
    panels = []
    for label, row in picks.items():
        sample = patches.get(row.image)
        masks = run.root / "predictions" / safe_stem(name) / "cv" / "masks"
        labels = _read_labels(masks / f"{safe_stem(row.image)}.png")
        if sample is None or labels is None or labels.shape != sample.image.shape[:2]:
            continue
        factor = max(1, 384 // max(sample.image.shape[:2]))
        picture = draw_overlay(_upscale(sample.image, factor), _upscale(labels, factor),
                               _upscale(label_truth(sample.mask), factor))
        title = (f"{label}: {row.image} (fold {row.fold})\nDice {row.dice:.3f}, "
                 f"count {_num(row.pred_count, 0)} of {_num(row.true_count, 0)}")
        panels.append((picture, title))
    if not panels:
        return None, (f"{name}: the cv predictions or the data folder {_data_dir(run)} could not be read, "
                      "so no gallery.")
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.9), squeeze=False)
    for ax, (picture, title) in zip(axes[0], panels):
        ax.imshow(picture)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    # Above the panel titles (two lines each), not on top of them.
    fig.suptitle(name, fontsize=13, fontweight="bold", y=1.04)
    path = save_figure(fig, out / f"gallery-{safe_stem(name)}.png")
    return path, (f"{name}: best, median and worst of {len(rows)} cv images by Dice; "
                  "green = true boundary, magenta = predicted boundary.")


def contact_sheet(images: list[tuple[Path, str]], path: Path, *, thumb: int = 200, columns: int = 6) -> Path | None:
    """Thumbnails of overlay PNGs in a grid, each with a caption line under it.

    Parameters
    ----------
    images : list of (Path, str)
        Overlay files and their captions; missing files are skipped.
    path : Path
        PNG to write (palette-quantised, so that dozens of photographs stay a
        few hundred kilobytes in the HTML).
    thumb : int, keyword-only
        Longest side of a thumbnail in pixels.
    columns : int, keyword-only

    Returns
    -------
    Path or None
        None when none of the overlays could be read.
    """
    from PIL import Image, ImageDraw, ImageFont

    thumbs = []
    for file, caption in images:
        try:
            with Image.open(file) as img:
                img = img.convert("RGB")
                img.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
                thumbs.append((img.copy(), caption))
        except (FileNotFoundError, OSError):
            continue
    if not thumbs:
        return None
    caption_h, pad = 18, 6
    columns = min(columns, len(thumbs))
    rows = -(-len(thumbs) // columns)
    cell_w, cell_h = thumb + pad, thumb + caption_h + pad
    sheet = Image.new("RGB", (columns * cell_w + pad, rows * cell_h + pad), "white")
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for index, (small, caption) in enumerate(thumbs):
        x = pad + (index % columns) * cell_w
        y = pad + (index // columns) * cell_h
        sheet.paste(small, (x + (thumb - small.width) // 2, y + (thumb - small.height) // 2))
        draw.text((x + 2, y + thumb + 2), caption[:40], fill=(20, 20, 20), font=font)
    quantised = sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    atomic_path(Path(path), lambda p: quantised.save(p, format="PNG", optimize=True))
    return Path(path)


def _overlay_sheet(run: RunData, name: str, protocol: str, out: Path) -> tuple[Path | None, int]:
    rows = run.per_image[(run.per_image["segmenter"] == name) & (run.per_image["protocol"] == protocol)]
    folder = run.root / "predictions" / safe_stem(name) / protocol / "overlays"
    images = []
    for row in rows.itertuples():
        count = f"{_num(row.pred_count, 0)} WBC"
        if protocol != "test" and pd.notna(row.true_count):
            count = f"{_num(row.pred_count, 0)}/{_num(row.true_count, 0)} WBC"
        images.append((folder / f"{safe_stem(row.image)}.png", f"{str(row.image)[:16]}: {count}"))
    thumb = THUMB.get(protocol, 200)
    path = contact_sheet(images, out / f"{protocol}-{safe_stem(name)}.png", thumb=thumb,
                         columns=max(3, 1200 // (thumb + 6)))
    return path, len(images)


# -- sections -------------------------------------------------------------------

def _summary_section(run: RunData, order: list[str], commands: list[str]) -> Section:
    blocks: list = [Text("Mean Dice is over images, with a 95% percentile-bootstrap interval; IoU, precision and "
                         "recall are per-image pixel means; object F1 and panoptic quality (PQ) pool the matched "
                         "WBCs (IoU ≥ 0.5) of all images; count MAE is the mean absolute error of the WBC count; "
                         "exact count is the share of images counted exactly; fit s is seconds per fit; predict "
                         "Mpx/s is megapixels per second of `predict_proba`, features included. "
                         "The same numbers, unrounded, are in `summary.csv` and `per_image.csv`.")]
    titles = {"cv": f"Cross-validation ({run.config.get('folds', '?')} grouped folds over the training patches)",
              "large": "Large images (trained on the patches not cut from them)",
              "test": "Test images (no ground truth: counts and speed only)"}
    for protocol in ("cv", "large", "test"):
        table = summary_table(run.summary, protocol, order)
        if table is not None:
            blocks += [Text(f"**{titles[protocol]}**"), table]
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
             f"corrected p is below {ALPHA}. \"A better on\" is the share of images where A scores higher."),
        pairs_table(pairs),
    ]
    return Section("tests", "Paired tests (Wilcoxon signed-rank, Holm-corrected)", blocks, commands)


def _plots_section(run: RunData, order: list[str], protocol: str | None, commands: list[str]) -> Section:
    from compare import plots

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


def _gallery_section(run: RunData, order: list[str], commands: list[str]) -> Section:
    out = run.root / "report_assets"
    has_cv = not run.per_image[run.per_image["protocol"] == "cv"].empty
    patches = _labelled_patches(run) if has_cv else {}
    blocks: list = [Text("Green: true boundary. Magenta: predicted boundary, with each predicted WBC numbered.")]
    for name in order:
        path, sentence = gallery(run, name, patches, out) if has_cv else (None, "")
        if path is not None:
            blocks.append(Figure(path, sentence, width=1100))
        elif sentence:
            blocks.append(Text(sentence))
    if not has_cv:
        blocks.append(Text("This run has no cv protocol, so there is no gallery of patches."))
    return Section("gallery", "Overlay gallery: best, median and worst image", blocks, commands)


def _sheets_section(run: RunData, order: list[str], protocol: str, anchor: str, title: str,
                    intro: str, commands: list[str]) -> Section:
    out = run.root / "report_assets"
    blocks: list = [Text(intro)]
    for index, name in enumerate(order):
        path, n = _overlay_sheet(run, name, protocol, out)
        if path is None:
            continue
        full = f"predictions/{safe_stem(name)}/{protocol}/overlays/"
        figure = Figure(path, f"{name}: {n} {protocol} images, predicted WBCs counted under each; "
                              f"full-size overlays in `{full}`.")
        # The leader's sheet is open; the others fold away to keep the page short.
        blocks.append(figure if index == 0 else Details(f"{name} ({n} images)", [figure]))
    if len(blocks) == 1:
        blocks.append(Text(f"This run has no {protocol} overlays."))
    return Section(anchor, title, blocks, commands)


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


def _errors_section(run: RunData) -> Section:
    if run.errors.empty:
        return Section("problems", "Problems recorded", [Text("None: every unit and image of this run finished.")])
    frame = run.errors.fillna("").astype(str)
    return Section("problems", "Problems recorded", [
        Text(f"{len(frame)} problem(s) were recorded in `errors.csv`; the other results are complete."),
        Table(frame)])


def _environment_section(run: RunData) -> Section:
    env, config = run.env, run.config
    packages = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items())
    facts = pd.DataFrame([
        ("segmenters", ", ".join(config.get("segmenters", []))),
        ("protocols", ", ".join(config.get("protocols", []))),
        ("folds, seed", f"{config.get('folds', '–')}, {config.get('seed', '–')}"),
        ("data", str(config.get("data") or "SigTuple, found by the data resolver (docs/data.md)")),
        ("run time", f"{env.get('run_seconds', '–')} s" + (" (resumed)" if env.get("resumed") else "")),
        ("machine", f"{env.get('platform', '–')}, {env.get('cpu_count', '–')} CPU cores"),
        ("python", str(env.get("python", "–"))),
        ("packages", packages or "–"),
    ], columns=["what", "value"])
    files = ("Files in this folder: `summary.csv`, `per_image.csv`, `splits.json`, `config.json`, `env.json`, "
             "`histories.json`, `errors.csv`, `plots/`, `report_assets/`, `models/`, `predictions/`.")
    return Section("environment", "What ran, where", [Table(facts), Text(files)])


def compose(run: RunData) -> Document:
    """The report of ``run`` as a :class:`~compare.report_html.Document` (figures are written here)."""
    order = segmenter_order(run.summary, run.per_image)
    protocol = primary_protocol(run.summary)
    pairs = pairwise_table(run, protocol, order)
    rebuild = report_command(run.root)
    both = [run_command(run.config, run.root), rebuild]
    sections = [
        _summary_section(run, order, both),
        _tests_section(pairs, protocol, [rebuild]),
        _plots_section(run, order, protocol, [rebuild]),
        _gallery_section(run, order, [rebuild]),
        _sheets_section(run, order, "large", "large", "Large images: located, delineated and counted",
                        "Each large image with the true (green) and predicted (magenta) boundaries; under it the "
                        "predicted / true WBC count.", both),
        _sheets_section(run, order, "test", "test", "Test-set predictions",
                        "The final model of each segmenter on the unlabelled test images (no ground truth); "
                        "under each image the predicted WBC count. The best segmenter's sheet is shown open.",
                        both),
        _benchmark_section(run),
        _errors_section(run),
        _environment_section(run),
    ]
    return Document("White blood cell segmentation: comparison report", headline(run, pairs, protocol), sections)


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
    write_text_atomic(target, to_html(doc))
    return target
