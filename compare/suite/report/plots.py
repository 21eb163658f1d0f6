"""The report's figures, drawn with seaborn from the run folder's tables.

Every function takes plain DataFrames (rows of ``per_image.csv`` or
``summary.csv``), draws one figure, saves it as PNG atomically and returns the
path, or returns None when the run holds nothing to draw.  Matplotlib's Agg
backend is selected here so the report can be built on a machine without a
display.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers / CI; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from compare.io.atomic import atomic_path  # noqa: E402

__all__ = ["DPI", "dice_per_image", "frontier", "training_curves", "counts", "precision_recall", "shift_dice",
           "save_figure"]

#: Resolution of saved figures: sharp in a browser, small in the HTML.
DPI = 110


def _style() -> None:
    sns.set_theme(style="whitegrid", context="notebook", font_scale=1.0)


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Save ``fig`` as PNG at :data:`DPI` atomically, close it, and return ``path``."""
    atomic_path(Path(path), lambda p: fig.savefig(p, format="png", dpi=DPI, bbox_inches="tight"))
    plt.close(fig)
    return Path(path)


def _numeric(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    frame = frame.copy()
    for column in columns:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def _palette(order: list[str]) -> dict[str, tuple]:
    # One colour per segmenter, the same in every figure of a report.
    return dict(zip(order, sns.color_palette("colorblind", max(len(order), 1))))


def dice_per_image(per_image: pd.DataFrame, order: list[str], path: Path, *, protocol: str = "cv",
                   seed: int = 0) -> Path | None:
    """Box plot of per-image Dice per segmenter with every image as a point.

    Parameters
    ----------
    per_image : DataFrame
        Rows of ``per_image.csv``.
    order : list of str
        Segmenters, best first.
    path : Path
        PNG to write.
    protocol : str, keyword-only
        Which protocol's rows to draw.
    seed : int, keyword-only
        Seed of the points' sideways jitter, so the figure is reproducible.
    """
    data = _numeric(per_image[per_image["protocol"] == protocol], "dice").dropna(subset=["dice"])
    order = [n for n in order if n in set(data["segmenter"])]
    if data.empty:
        return None
    _style()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.5 * len(order) + 2), 4.2))
    with warnings.catch_warnings():
        # seaborn 0.13 passes matplotlib's deprecated ``vert``; harmless, not ours to fix.
        warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
        sns.boxplot(data=data, x="segmenter", y="dice", order=order, hue="segmenter", palette=_palette(order),
                    showfliers=False, width=0.55, ax=ax, legend=False, boxprops={"alpha": 0.45})
    # The points jittered here, not by seaborn's stripplot, whose jitter draws
    # from numpy's global random state and changes the figure on every build.
    rng = np.random.default_rng(seed)
    for position, name in enumerate(order):
        values = data.loc[data["segmenter"] == name, "dice"].to_numpy()
        ax.scatter(position + rng.uniform(-0.22, 0.22, len(values)), values, s=9, color="0.2", alpha=0.55,
                   linewidths=0)
    means = data.groupby("segmenter")["dice"].mean().reindex(order)
    ax.scatter(range(len(order)), means, marker="D", s=45, color="white", edgecolor="black", zorder=5,
               label="mean")
    ax.set(xlabel="", ylabel="Dice per image", title=f"Dice per image ({protocol}, {len(data)} rows)")
    ax.legend(loc="lower left", frameon=True)
    return save_figure(fig, path)


def frontier(summary: pd.DataFrame, order: list[str], path: Path, *, protocol: str = "cv") -> Path | None:
    """Mean Dice (95% CI bars) against prediction speed: the cost/accuracy frontier.

    Parameters
    ----------
    summary : DataFrame
        Rows of ``summary.csv``.
    order : list of str
        Segmenters, best first.
    path : Path
        PNG to write.
    protocol : str, keyword-only
    """
    data = _numeric(summary[summary["protocol"] == protocol], "dice_mean", "dice_ci_low", "dice_ci_high",
                    "predict_mpx_s")
    data = data.dropna(subset=["dice_mean", "predict_mpx_s"])
    data = data[data["predict_mpx_s"] > 0]
    if data.empty:
        return None
    _style()
    palette = _palette(order)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for row in data.itertuples():
        colour = palette.get(row.segmenter, "0.3")
        err = np.array([[row.dice_mean - row.dice_ci_low], [row.dice_ci_high - row.dice_mean]])
        ax.errorbar(row.predict_mpx_s, row.dice_mean, yerr=np.nan_to_num(err), fmt="o", ms=9, capsize=4,
                    color=colour, label=row.segmenter)
        ax.annotate(row.segmenter, (row.predict_mpx_s, row.dice_mean), xytext=(7, 5),
                    textcoords="offset points", fontsize=10)
    ax.set_xscale("log")
    # Plain numbers (0.2, 2) read better than 2 x 10^-1 for a handful of points.
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(xlabel="predict speed, megapixels per second (log scale; right is cheaper)",
           ylabel="mean Dice (95% CI)", title=f"Accuracy against cost ({protocol})")
    lo, hi = data["predict_mpx_s"].min(), data["predict_mpx_s"].max()
    ax.set_xlim(lo / 2, hi * 2.5)
    return save_figure(fig, path)


def _history_frame(histories: dict[str, list[dict]]) -> pd.DataFrame:
    rows = []
    for key, epochs in histories.items():
        name, _, unit = key.partition("/")
        for record in epochs or []:
            rows.append({"segmenter": name, "run": unit or "-", **record})
    frame = pd.DataFrame(rows)
    if not frame.empty and "epoch" not in frame:
        frame["epoch"] = frame.groupby(["segmenter", "run"]).cumcount() + 1
    return frame


def training_curves(histories: dict[str, list[dict]], path: Path) -> Path | None:
    """Loss and validation Dice per epoch, one line per fold (and the final fit).

    Parameters
    ----------
    histories : dict
        ``histories.json``: ``"NAME/PROTOCOL-FOLD" -> [{"epoch", "loss",
        "val_loss", "val_dice", ...}, ...]``.
    path : Path
        PNG to write.

    Returns
    -------
    Path or None
        None when no segmenter recorded a history.
    """
    frame = _history_frame(histories)
    if frame.empty:
        return None
    metrics = [m for m in ("loss", "val_loss", "val_dice") if m in frame and frame[m].notna().any()]
    if not metrics:
        return None
    names = list(dict.fromkeys(frame["segmenter"]))
    _style()
    fig, axes = plt.subplots(len(names), len(metrics), figsize=(4.3 * len(metrics), 3.3 * len(names)),
                             squeeze=False)
    titles = {"loss": "training loss", "val_loss": "validation loss", "val_dice": "validation Dice"}
    for i, name in enumerate(names):
        data = _numeric(frame[frame["segmenter"] == name], "epoch", *metrics)
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            sns.lineplot(data=data, x="epoch", y=metric, hue="run", ax=ax, marker="o", markersize=3,
                         legend=(j == len(metrics) - 1))
            ax.set(title=f"{name}: {titles[metric]}", ylabel=titles[metric], xlabel="epoch")
        legend = axes[i, -1].get_legend()
        if legend is not None:
            legend.set_title("fold")
            sns.move_legend(axes[i, -1], "upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    return save_figure(fig, path)


def counts(per_image: pd.DataFrame, order: list[str], path: Path, *, seed: int = 0) -> Path | None:
    """Predicted against true WBC counts per image, one panel per labelled protocol.

    Points are jittered a little (counts are integers and pile up); the
    diagonal is a perfect count.

    Parameters
    ----------
    per_image : DataFrame
    order : list of str
    path : Path
    seed : int, keyword-only
        Seed of the jitter, so the figure is reproducible.
    """
    data = _numeric(per_image, "true_count", "pred_count").dropna(subset=["true_count", "pred_count"])
    protocols = [p for p in ("cv", "large") if p in set(data["protocol"])]
    if not protocols:
        return None
    _style()
    rng = np.random.default_rng(seed)
    palette = _palette(order)
    fig, axes = plt.subplots(1, len(protocols), figsize=(5.2 * len(protocols), 4.4), squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        part = data[data["protocol"] == protocol]
        top = max(part["true_count"].max(), part["pred_count"].max(), 1) + 0.5
        ax.plot([0, top], [0, top], color="0.5", lw=1, ls="--", label="exact")
        for name in [n for n in order if n in set(part["segmenter"])]:
            mine = part[part["segmenter"] == name]
            jitter = rng.uniform(-0.15, 0.15, size=(2, len(mine)))
            mae = (mine["pred_count"] - mine["true_count"]).abs().mean()
            ax.scatter(mine["true_count"] + jitter[0], mine["pred_count"] + jitter[1], s=22, alpha=0.6,
                       color=palette.get(name), label=f"{name} (MAE {mae:.2f})")
        ax.set(xlim=(-0.5, top), ylim=(-0.5, top), xlabel="true WBC count", ylabel="predicted WBC count",
               title=f"Counts per image ({protocol})")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path)


def precision_recall(per_image: pd.DataFrame, order: list[str], path: Path, *, protocol: str = "cv") -> Path | None:
    """Pixel precision and recall per segmenter: means as bars, images as points.

    A segmenter that over-segments (blobs too big) has high recall and low
    precision; one that misses cytoplasm the other way round.

    Parameters
    ----------
    per_image : DataFrame
    order : list of str
    path : Path
    protocol : str, keyword-only
    """
    data = _numeric(per_image[per_image["protocol"] == protocol], "precision", "recall")
    data = data.dropna(subset=["precision", "recall"], how="all")
    order = [n for n in order if n in set(data["segmenter"])]
    if data.empty:
        return None
    _style()
    long = data.melt(id_vars=["segmenter"], value_vars=["precision", "recall"], var_name="score")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1]})
    sns.barplot(data=long, x="segmenter", y="value", hue="score", order=order, errorbar=("ci", 95),
                ax=left, palette=["#4c72b0", "#dd8452"], seed=0)
    left.set(xlabel="", ylabel="mean over images (95% CI)", ylim=(0, 1.05),
             title=f"Pixel precision and recall ({protocol})")
    left.legend(loc="lower left", frameon=True)
    palette = _palette(order)
    sns.scatterplot(data=data, x="recall", y="precision", hue="segmenter", hue_order=order, palette=palette,
                    s=18, alpha=0.55, ax=right)
    right.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title="Per image",
              xlabel="recall (share of true WBC pixels found)", ylabel="precision (share of predicted pixels right)")
    fig.tight_layout()
    return save_figure(fig, path)


def shift_dice(summary: pd.DataFrame, order: list[str], path: Path) -> Path | None:
    """Mean Dice per synthetic shift (rows), one marker per segmenter, against its unshifted large-image Dice.

    Parameters
    ----------
    summary : DataFrame
        Rows of ``summary.csv``; those of protocol ``"shift"`` (with a
        ``shift`` column) are drawn.
    order : list of str
        Segmenters, best first (colours follow it).
    path : Path
        PNG to write.

    Returns
    -------
    Path or None
        None when there are no scored shift rows.
    """
    rows = _numeric(summary[summary["protocol"] == "shift"], "dice_mean").dropna(subset=["dice_mean"])
    if rows.empty:
        return None
    _style()
    names = [n for n in order if n in set(rows["segmenter"])] + sorted(set(rows["segmenter"]) - set(order))
    shifts = list(dict.fromkeys(rows["shift"].astype(str)))
    palette = _palette(names)
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(shifts) + 1.6))
    offsets = np.linspace(-0.25, 0.25, len(names)) if len(names) > 1 else [0.0]
    for name, dy in zip(names, offsets):
        mine = rows[rows["segmenter"] == name].set_index("shift")["dice_mean"]
        ys = [i + dy for i, s in enumerate(shifts) if s in mine.index]
        ax.scatter([mine[s] for s in shifts if s in mine.index], ys, color=palette[name], label=name, s=45, zorder=3)
        base = _numeric(summary[(summary["segmenter"] == name) & (summary["protocol"] == "large")], "dice_mean")
        if not base.empty and np.isfinite(base["dice_mean"].iloc[0]):
            ax.axvline(base["dice_mean"].iloc[0], color=palette[name], ls="--", lw=1, alpha=0.7)
    ax.set_yticks(range(len(shifts)), shifts)
    ax.invert_yaxis()
    ax.set_xlabel("mean Dice (dashed: unshifted large images)")
    ax.legend(loc="lower left", fontsize=9, frameon=True)
    fig.tight_layout()
    return save_figure(fig, path)
