"""The learning curve of a lab's own model on CellaVision: how many labelled images buy how much.

For N = 0, 5, 10, 20, 40 of the 100 CellaVision crops (3 seeded random draws
each), three ways to a lab's model are fitted on the N images and scored,
with default settings (``compare score``'s pipeline), on the 100 - N images
not drawn:

* ``fine-tune``: the shipped U-Net trained further (``compare fit --from
  default``, :data:`unet.segmenter.FINE_TUNE`'s recipe); at N = 0 it is the
  shipped model itself, zero-shot on all 100;
* ``unet scratch``: a U-Net from its seeded initial weights (``compare fit
  --segmenter unet``) trained for as many steps as the fine-tune
  (:data:`unet.segmenter.FINE_TUNE`'s epochs of its steps) and, like it, on
  every one of the N images with the last epoch kept (``--val-share 0``),
  so the comparison is of the start, not of the training length or the
  images seen, and holds however busy the machine is;
* ``rf``: the random forest fitted on the same images (``compare fit
  --segmenter rf``; it learns nothing from epochs).

Both U-Nets predict at a zoom of about 0.39 (CellaVision's WBCs are 2.6x
the design size) and so average their eight dihedral views
(:data:`unet.segmenter.FLIPS_MAX_ZOOM`), as ``compare fit``'s models do.

Scores per point: whole-cell Dice, the same with border extras apart
(``compare score``'s ``dice_border_apart``: a partial neighbour cut by the
border, which the mask leaves out, is not scored), nucleus Dice
(CellaVision's masks mark the nucleus), the share of images counted
exactly (``compare score``'s ``count_exact``).  Rows are appended to ``results/benchmarks/learning_curve.csv``
(rewritten atomically after each point), and a point already there is
skipped, so the script can be stopped and run again to continue.  The table
(``learning_curve.md``) and the plot (``learning_curve.png``) are rebuilt
from the CSV at the end, or alone with ``--table-only``.

Run::

    nice -n 10 python benchmarks/learning_curve.py            # about 90 min on 2 busy cores
    python benchmarks/learning_curve.py --table-only
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import pandas as pd

from compare.io.atomic import atomic_path, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks"
CSV = OUT / "learning_curve.csv"
SIZES = (0, 5, 10, 20, 40)
DRAWS = 3
METHODS = ("fine-tune", "unet scratch", "rf")
COLUMNS = ["method", "n_train", "draw", "dice", "dice_border_apart", "nucleus_dice", "count_exact", "n_test",
           "fit_s", "score_s", "epochs_run", "settings_from", "train_images"]


def draw_indices(n_total: int, n: int, draw: int) -> list[int]:
    """The ``draw``-th seeded random choice of ``n`` of ``n_total`` images (sorted)."""
    return sorted(np.random.default_rng([n, draw]).choice(n_total, n, replace=False).tolist())


def _read() -> pd.DataFrame:
    return pd.read_csv(CSV) if CSV.is_file() else pd.DataFrame(columns=COLUMNS)


def _append(row: dict) -> None:
    table = pd.concat([_read(), pd.DataFrame([row], columns=COLUMNS)], ignore_index=True)
    write_text_atomic(CSV, table.to_csv(index=False))


def _score(model, test, folder: str, rows_to: Path | None = None) -> dict:
    """``compare score``'s summary of ``model`` on ``test``; the per-image rows are also written to ``rows_to``."""
    from compare.commands.score import summarise_scores
    from compare.suite.protocols import evaluate_domain

    rows = evaluate_domain(model, test, n_jobs=2)
    per_image = pd.DataFrame(rows).assign(folder=folder)
    if rows_to is not None:
        rows_to.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(rows_to, per_image.to_csv(index=False))
    summary = summarise_scores(per_image, [folder]).iloc[0]
    return {"dice": summary["dice_mean"], "dice_border_apart": summary["dice_border_apart_mean"],
            "nucleus_dice": summary["nucleus_dice_mean"],
            "count_exact": summary["count_exact"], "n_test": len(rows)}


def run_point(method: str, n: int, draw: int, samples, start) -> None:
    from compare.pipeline.finetune import FitSettings, fit_model

    chosen = draw_indices(len(samples), n, draw)
    train = [samples[i] for i in chosen]
    test = [s for i, s in enumerate(samples) if i not in set(chosen)]
    from unet.segmenter import FINE_TUNE

    # The fine-tune's epochs, steps per epoch and images (all N, none held out) for the U-Net from scratch too.
    scratch = method == "unet scratch"
    fit = FitSettings(random_state=draw, epochs=FINE_TUNE["epochs"] if scratch else None,
                      val_share=FINE_TUNE["val_fraction"] if scratch else None)
    t0 = time.perf_counter()
    if n == 0:
        model, how = start, {}
    else:
        segmenter = "rf" if method == "rf" else "unet"
        model, how = fit_model(segmenter, [s.image for s in train], [s.mask for s in train],
                               start=start if method == "fine-tune" else None, fit=fit)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    scores = _score(model, test, "cellavision")
    info = getattr(model.segmenter_, "fit_info_", {}) or {}
    row = {"method": method, "n_train": n, "draw": draw, **scores, "fit_s": round(fit_s, 1),
           "score_s": round(time.perf_counter() - t1, 1), "epochs_run": info.get("epochs_run", "") if n else "",
           "settings_from": " ".join(f"{k}={v}" for k, v in how.items()),
           "train_images": " ".join(s.name for s in train)}
    _append(row)
    print(f"{method:>12} N={n:>2} draw {draw}: Dice {scores['dice']:.4f}, nucleus {scores['nucleus_dice']:.4f}, "
          f"exact {scores['count_exact']:.3f}, fit {fit_s:.0f} s", flush=True)


def table(frame: pd.DataFrame) -> str:
    """The markdown table: per method and N, the mean over draws with the range."""
    lines = [("| method | N | draws | whole-cell Dice, mean [min, max] | the same, border extras apart "
              "| nucleus Dice | exact count | fit s |"),
             "|---|---|---|---|---|---|---|---|"]
    for method in METHODS:
        for n in SIZES:
            part = frame[(frame.method == method) & (frame.n_train == n)]
            if part.empty:
                continue
            d, a = part.dice, part.dice_border_apart
            lines.append(f"| {method} | {n} | {len(part)} | {d.mean():.3f} [{d.min():.3f}, {d.max():.3f}] | "
                         f"{a.mean():.3f} [{a.min():.3f}, {a.max():.3f}] | "
                         f"{part.nucleus_dice.mean():.3f} | {100 * part.count_exact.mean():.0f} % | "
                         f"{part.fit_s.mean():.0f} |")
    return "\n".join(lines) + "\n"


def plot(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method, colour, shift in zip(METHODS, ("tab:blue", "tab:orange", "tab:green"), (-0.4, 0.0, 0.4)):
        part = frame[frame.method == method]
        if method != "fine-tune":
            part = part[part.n_train > 0]
        if part.empty:
            continue
        for ax, column in zip(axes, ("dice", "count_exact")):
            stats = part.groupby("n_train")[column].agg(["mean", "min", "max"])
            x = stats.index + shift  # side by side where the methods share an N
            ax.plot(x, stats["mean"], "o-", color=colour, label=method)
            ax.vlines(x, stats["min"], stats["max"], color=colour, alpha=0.5, lw=3)
            ax.scatter(part.n_train + shift, part[column], color=colour, s=8)
    for y in (0.96, 0.97):
        axes[0].axhline(y, color="grey", lw=0.8, ls="--")
    axes[0].set(xlabel="CellaVision images labelled (N)", ylabel="whole-cell Dice on the other 100 - N",
                title="Dice (mean; bars: min-max of 3 draws)")
    axes[1].set(xlabel="CellaVision images labelled (N)", ylabel="share counted exactly", title="Exact counts")
    axes[0].legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_path(path, lambda p: p.write_bytes(buffer.getvalue()))


def write_outputs() -> None:
    frame = _read()
    text = ("# Learning curve on CellaVision\n\n"
            "`python benchmarks/learning_curve.py`: each way to a lab's model fitted on N of the 100 CellaVision "
            "crops (3 seeded draws; N = 0 is the shipped U-Net zero-shot) and scored on the other 100 - N with "
            "default settings. `unet scratch` is trained for as many steps as the fine-tune and, like it, on all N "
            "images. "
            "Rows: `learning_curve.csv`; discussion: docs/fine_tuning.md.\n\n" + table(frame)
            + "\n![learning curve](learning_curve.png)\n")
    write_text_atomic(OUT / "learning_curve.md", text)
    plot(frame, OUT / "learning_curve.png")


def plan(sizes: list[int], methods: list[str]) -> list[tuple[str, int, int]]:
    """The points in the order they are run: zero-shot, every method at N = 10, then each method's other sizes.

    N = 10 first, all methods, because the fine-tune's target is stated there; then the fine-tune's
    whole curve; then the others', so that a run stopped early has the comparisons that matter most.
    """
    points = [("fine-tune", 0, 0)] if 0 in sizes and "fine-tune" in methods else []
    first = [n for n in sizes if n == 10]
    for n in first + [n for n in sizes if n not in (0, 10)]:
        for method in methods:
            points += [(method, n, draw) for draw in range(DRAWS)]
    if not first:
        return points
    head = [p for p in points if p[1] in (0, 10)]
    rest = [p for p in points if p[1] not in (0, 10)]
    return head + sorted(rest, key=lambda p: methods.index(p[0]))  # stable: sizes stay in order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table-only", action="store_true", help="rebuild the table and plot from the CSV")
    parser.add_argument("--sizes", type=lambda t: [int(v) for v in t.split(",")], default=list(SIZES))
    parser.add_argument("--methods", type=lambda t: t.split(","), default=list(METHODS))
    args = parser.parse_args()
    if not args.table_only:
        from compare.pipeline.model import load_model
        from compare.suite.data import load_domain, resolve_dataset

        samples = load_domain(resolve_dataset("cellavision", fetch=False).path)
        start = load_model()
        for method, n, draw in plan(args.sizes, args.methods):
            done = _read()
            if ((done.method == method) & (done.n_train == n) & (done.draw == draw)).any():
                continue
            run_point(method, n, draw, samples, start)
    write_outputs()


if __name__ == "__main__":
    main()
