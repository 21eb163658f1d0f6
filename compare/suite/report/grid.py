"""The report's comparison grid: the same cells, every segmenter side by side.

Rows are chosen from ``per_image.csv`` (:func:`pick_rows`): every WBC of the
large images, the cv patches where the segmenters disagree most, each
segmenter's worst cv patch and the test images whose counts disagree.  Each
cell (:func:`render_cell`) is a crop around one WBC, enlarged with nearest
neighbours so that single pixels stay visible, with the pixels coloured
against the truth: true positive green, false positive magenta, false
negative blue.  Test images have no truth, so their cells show the predicted
outline only.  Crops are saved as JPEG in ``report_assets/grid/`` so the page
links a few kilobytes per cell instead of embedding megabytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from compare.io.atomic import atomic_path, safe_stem

__all__ = ["GridRow", "GridCell", "pick_rows", "colour_errors", "build_grid", "CELL_PX", "COLOURS"]

#: Displayed side of one cell in pixels: a 50-68 px WBC fills most of it.
CELL_PX = 300

#: Side of the square crop around a WBC, in image pixels (a WBC and a margin).
CROP = 112

#: Overlay colours (RGB) and the share of the colour mixed into the photograph.
COLOURS = {"tp": (40, 200, 60), "fp": (230, 30, 200), "fn": (30, 90, 255)}
ALPHA = 0.45

#: How many cv patches of each kind, and test crops in all, the grid shows.
N_DISAGREE, N_TEST = 3, 4


@dataclass
class GridCell:
    """One picture of the grid: a JPEG (None when the segmenter has no saved prediction) and its caption."""

    path: Path | None
    caption: str


@dataclass
class GridRow:
    """One crop of one image, seen by every segmenter."""

    protocol: str
    image: str
    why: str
    box: tuple[int, int, int, int] | None = None  # (y0, x0, y1, x1); None: the whole image
    cells: list[GridCell] = field(default_factory=list)


def _labels(root: Path, name: str, protocol: str, image: str) -> np.ndarray | None:
    from PIL import Image

    path = root / "predictions" / safe_stem(name) / protocol / "masks" / f"{safe_stem(image)}.png"
    try:
        with Image.open(path) as img:
            return np.asarray(img).astype(np.int32)
    except (FileNotFoundError, OSError):
        return None


def _disagreement(per_image: pd.DataFrame, protocol: str, value: str) -> pd.Series:
    rows = per_image[per_image["protocol"] == protocol]
    wide = rows.assign(_v=pd.to_numeric(rows[value], errors="coerce")).pivot_table(
        index="image", columns="segmenter", values="_v", aggfunc="mean")
    return (wide.max(axis=1) - wide.min(axis=1)).dropna().sort_values(ascending=False, kind="stable")


def pick_rows(per_image: pd.DataFrame, order: list[str]) -> list[GridRow]:
    """The images of the grid, without duplicates, in reading order.

    Parameters
    ----------
    per_image : DataFrame
        Rows of ``per_image.csv``.
    order : list of str
        Segmenters, best first.

    Returns
    -------
    list of GridRow
        Large images first (their crops are found later, one per WBC), then
        cv patches with the widest Dice range over segmenters, each
        segmenter's worst cv patch, and test images whose predicted counts
        differ between segmenters.
    """
    rows: list[GridRow] = []
    seen: dict[tuple[str, str], GridRow] = {}

    def add(protocol: str, image: str, why: str) -> None:
        if (protocol, image) in seen:  # one row, every reason it was picked
            seen[protocol, image].why += f"; {why}"
            return
        seen[protocol, image] = GridRow(protocol, str(image), why)
        rows.append(seen[protocol, image])

    large = per_image[per_image["protocol"] == "large"]
    for image in dict.fromkeys(large["image"]):
        add("large", image, "large image")
    spread = _disagreement(per_image, "cv", "dice")
    for image, gap in spread.head(N_DISAGREE).items():
        add("cv", image, f"segmenters disagree (Dice range {gap:.3f})")
    cv = per_image[per_image["protocol"] == "cv"].assign(_d=lambda f: pd.to_numeric(f["dice"], errors="coerce"))
    for name in order:
        mine = cv[cv["segmenter"] == name].dropna(subset=["_d"])
        if not mine.empty:
            worst = mine.loc[mine["_d"].idxmin()]
            add("cv", worst["image"], f"worst cv patch of {name} (Dice {worst['_d']:.3f})")
    counts = _disagreement(per_image, "test", "pred_count")
    for image, gap in counts[counts > 0].items():
        add("test", image, "test image: predicted counts differ")
    return rows


def colour_errors(image: np.ndarray, pred: np.ndarray, true: np.ndarray | None) -> np.ndarray:
    """The photograph with TP / FP / FN pixels tinted, or the predicted outline where there is no truth.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    pred : ndarray, shape (H, W), bool or int labels (> 0 is foreground)
    true : ndarray, shape (H, W), bool, or None

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    from skimage.segmentation import find_boundaries

    out = image.astype(np.float32).copy()
    pred = np.asarray(pred) > 0
    if true is None:
        edge = find_boundaries(pred, mode="inner")
        out[edge] = COLOURS["fp"]
        return out.astype(np.uint8)
    for key, where in (("tp", pred & true), ("fp", pred & ~true), ("fn", ~pred & true)):
        out[where] = (1 - ALPHA) * out[where] + ALPHA * np.asarray(COLOURS[key], np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def _boxes(mask: np.ndarray, shape: tuple[int, int], limit: int) -> list[tuple[int, int, int, int]]:
    """Square crops of side :data:`CROP` centred on each connected object of ``mask`` (largest first)."""
    from skimage.measure import label, regionprops

    regions = sorted(regionprops(label(mask)), key=lambda r: -r.area)[:limit]
    boxes = []
    for region in regions:
        side = max(CROP, int(max(region.bbox[2] - region.bbox[0], region.bbox[3] - region.bbox[1])) + 16)
        cy, cx = (int(round(v)) for v in region.centroid)
        y0 = int(np.clip(cy - side // 2, 0, max(shape[0] - side, 0)))
        x0 = int(np.clip(cx - side // 2, 0, max(shape[1] - side, 0)))
        boxes.append((y0, x0, min(y0 + side, shape[0]), min(x0 + side, shape[1])))
    return boxes


def _save_jpeg(rgb: np.ndarray, path: Path) -> Path:
    from PIL import Image

    factor = max(1, int(np.ceil(CELL_PX / max(rgb.shape[:2]))))
    big = Image.fromarray(rgb).resize((rgb.shape[1] * factor, rgb.shape[0] * factor), Image.Resampling.NEAREST)
    big.thumbnail((CELL_PX, CELL_PX), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_path(path, lambda p: big.save(p, format="JPEG", quality=82, optimize=True))
    return path


def photo_path(data_dir: Path, protocol: str, image: str) -> Path | None:
    """The photograph of ``image`` in the run's data folder (any image suffix), or None."""
    from compare.io.images import IMAGE_SUFFIXES

    folder = Path(data_dir) / ("Test_Data" if protocol == "test" else "Train_Data")
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{image}{suffix}", folder / f"{image}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _read(data_dir: Path, row: GridRow) -> tuple[np.ndarray, np.ndarray | None] | None:
    from compare.io.images import DataError, read_image, read_mask
    from compare.suite.data import _find_mask

    path = photo_path(data_dir, row.protocol, row.image)
    if path is None:
        return None
    try:
        image = read_image(path)
        mask = None if row.protocol == "test" else read_mask(_find_mask(path), image.shape[:2])
    except (DataError, OSError):
        return None
    return image, mask


def build_grid(root: Path, per_image: pd.DataFrame, order: list[str], data_dir: Path) -> tuple[list[GridRow], str]:
    """Write the grid's JPEGs and return its rows (one per crop) and a sentence on what is missing.

    Parameters
    ----------
    root : Path
        The run folder (predictions are read from it, JPEGs written under
        ``report_assets/grid/``).
    per_image : DataFrame
    order : list of str
        Segmenters, best first: the grid's columns.
    data_dir : Path
        The data folder the run read (photographs and true masks).

    Returns
    -------
    (list of GridRow, str)
        Rows with one :class:`GridCell` per segmenter, and a note (empty
        when nothing was missing).
    """
    from compare.evaluation.metrics import boundary_scores, dice

    out = root / "report_assets" / "grid"
    # Pictures of an earlier build whose rows are gone must not linger in the folder.
    for stale in out.glob("*.jpg"):
        stale.unlink()
    rows: list[GridRow] = []
    missing: list[str] = []
    n_test = 0
    for pick in pick_rows(per_image, order):
        read = _read(data_dir, pick)
        if read is None:
            missing.append(pick.image)
            continue
        image, true = read
        labels = {name: _labels(root, name, pick.protocol, pick.image) for name in order}
        labels = {n: v for n, v in labels.items() if v is not None and v.shape == image.shape[:2]}
        if not labels:
            missing.append(pick.image)
            continue
        if pick.protocol == "cv":
            boxes = [(0, 0, image.shape[0], image.shape[1])]
        elif pick.protocol == "large":
            boxes = _boxes(true, image.shape[:2], limit=20)
        else:
            if n_test >= N_TEST:
                continue
            union = np.any([v > 0 for v in labels.values()], axis=0)
            boxes = _boxes(union, image.shape[:2], limit=N_TEST - n_test)
            n_test += len(boxes)
        for k, (y0, x0, y1, x1) in enumerate(boxes):
            crop = (slice(y0, y1), slice(x0, x1))
            what = "WBC" if true is not None else "predicted object"
            row = GridRow(pick.protocol, pick.image, pick.why if len(boxes) == 1 else f"{pick.why}, {what} {k + 1}",
                          box=(y0, x0, y1, x1))
            for name in order:
                if name not in labels:
                    row.cells.append(GridCell(None, f"{name}: no saved prediction"))
                    continue
                pred = labels[name][crop] > 0
                truth = None if true is None else true[crop]
                path = out / f"{pick.protocol}-{safe_stem(pick.image)}-{k}-{safe_stem(name)}.jpg"
                _save_jpeg(colour_errors(image[crop], pred, truth), path)
                if truth is None:
                    ids = np.unique(labels[name][crop])
                    caption = f"{name}: {int(np.count_nonzero(ids))} WBC(s) in crop"
                else:
                    scores = boundary_scores(truth, pred)
                    caption = f"{name}: Dice {dice(truth, pred):.3f}, HD95 {scores['hd95']:.1f} px"
                row.cells.append(GridCell(path, caption))
            rows.append(row)
    note = (f"Not shown (photograph or predictions unreadable): {', '.join(missing)}." if missing else "")
    return rows, note
