"""Lobe counts of the CellaVision neutrophils and eosinophils, drawn on a grid to be checked by eye.

The shipped default model (never fitted on CellaVision) predicts every crop
of the given WBC types with default settings.  For the predicted WBC that
overlaps the expert's cell most, the grid shows the crop with the predicted
nucleus outlined and, in each tile's title, the image number, the predicted
lobe count (``instances.csv``'s ``lobe_count``) and the count that
:func:`compare.pipeline.measure.lobe_counts` gives on the expert's own whole
cell and nucleus masks.  A person counts the lobes in each tile and writes
them into the ``by_eye`` column of the CSV this script writes; run it again
with ``--by-eye FILE`` to print the agreement.

Usage::

    python experiments/lobe_grid.py [--data ../shared/data/cellavision] [--types 1,4] \
        [--out results/benchmarks] [--by-eye results/benchmarks/lobe_counts.csv]

Writes ``lobe_grid.jpg`` and ``lobe_counts.csv`` under ``--out`` (an existing
CSV's ``by_eye`` column is kept).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TYPE_NAMES = {1: "neutrophil", 2: "lymphocyte", 3: "monocyte", 4: "eosinophil", 5: "basophil"}


def _types(folder: Path) -> dict[str, int]:
    with open(folder / "Class Labels of Dataset 2.csv", newline="") as fh:
        return {f"{int(row['image ID']):03d}": int(row["class"]) for row in csv.DictReader(fh)}


def _cell_rows(folder: Path, wanted: set[int]):
    """Per image of a wanted type: the crop, the predicted WBC that overlaps the expert cell most, its counts."""
    from compare import load_model
    from compare.pipeline.measure import lobe_counts
    from compare.suite.data import load_domain

    model = load_model()
    types = _types(folder)
    for sample in load_domain(folder):
        kind = types.get(sample.name)
        if kind not in wanted:
            continue
        prediction = model.predict(sample.image, name=sample.name)
        overlap = np.bincount(prediction.labels[sample.mask].ravel(), minlength=prediction.labels.max() + 1)
        overlap[0] = 0
        wbc = int(overlap.argmax()) if overlap.max() else 0
        table = prediction.cells.set_index("id") if len(prediction.cells) else None
        predicted = int(table.loc[wbc, "lobe_count"]) if wbc and table is not None else 0
        truth = lobe_counts(sample.mask.astype(np.int32), (sample.nucleus & sample.mask).astype(np.int32))[1]
        yield sample, kind, wbc, prediction, predicted, int(truth)


def _draw(tiles, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    cols = 8
    rows = -(-len(tiles) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.4, rows * 2.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (sample, wbc, prediction, predicted, truth) in zip(axes.ravel(), tiles):
        shown = sample.image.copy()
        if wbc and prediction.nuclei is not None:
            shown[find_boundaries(prediction.nuclei == wbc, mode="inner")] = (0, 200, 255)
        # The expert's cell with a margin: the lobes are what is to be counted.
        ys, xs = np.nonzero(sample.mask)
        margin = 10
        y0, x0 = max(0, ys.min() - margin), max(0, xs.min() - margin)
        ax.imshow(shown[y0:ys.max() + margin, x0:xs.max() + margin])
        ax.set_title(f"{sample.name}: {predicted} (mask {truth})", fontsize=8)
    fig.suptitle("Predicted lobe count (expert-mask count); nucleus outlined in cyan", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, pil_kwargs={"quality": 80})
    plt.close(fig)


def _agreement(path: Path) -> None:
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("by_eye", "").strip()]
    if not rows:
        print(f"{path}: no by_eye counts yet")
        return
    eye = np.array([int(r["by_eye"]) for r in rows])
    for column in ("predicted", "expert_mask"):
        got = np.array([int(r[column]) for r in rows])
        print(f"{column}: equal to the count by eye in {int((got == eye).sum())} of {len(rows)} cells, "
              f"within 1 in {int((abs(got - eye) <= 1).sum())}, mean |difference| {np.abs(got - eye).mean():.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cellavision")
    parser.add_argument("--types", default="1,4", help="WBC types to draw (1 neutrophil ... 5 basophil)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    parser.add_argument("--by-eye", type=Path, help="print the agreement of a filled-in lobe_counts.csv and stop")
    args = parser.parse_args(argv)
    if args.by_eye:
        _agreement(args.by_eye)
        return 0
    from compare.io.atomic import write_text_atomic

    wanted = {int(t) for t in args.types.split(",")}
    csv_path = args.out / "lobe_counts.csv"
    kept: dict[str, str] = {}
    if csv_path.is_file():
        with open(csv_path, newline="") as fh:
            kept = {r["image"]: r.get("by_eye", "") for r in csv.DictReader(fh)}
    tiles, lines = [], ["image,type,predicted,expert_mask,by_eye"]
    for sample, kind, wbc, prediction, predicted, truth in _cell_rows(args.data, wanted):
        tiles.append((sample, wbc, prediction, predicted, truth))
        lines.append(f"{sample.name},{TYPE_NAMES[kind]},{predicted},{truth},{kept.get(sample.name, '')}")
    _draw(tiles, args.out / "lobe_grid.jpg")
    write_text_atomic(csv_path, "\n".join(lines) + "\n")
    print(f"{len(tiles)} cells: {args.out / 'lobe_grid.jpg'}, {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
