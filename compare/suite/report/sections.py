"""Report sections built from pictures and saved files: the comparison grid, the domain-shift
table and plot, the test-set sheet, Methods and Limitations, and the number formats they share.

Each ``_*_section`` takes the :class:`compare.suite.report.run_data.RunData` of a run folder
and returns a :class:`compare.suite.report.html.Section` (or None when the run holds
nothing for it); :mod:`compare.suite.report.build` puts them in order.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from compare.io.atomic import atomic_path, safe_stem
from compare.suite.report.html import Figure, Grid, Section, Table, Text
from compare.suite.report.methods import data_blocks, limitations_blocks, methods_blocks

if TYPE_CHECKING:  # the sections read a RunData; compare.suite.report.build imports this module
    from compare.suite.report.run_data import RunData

#: Longest side of a contact-sheet thumbnail, in pixels, per protocol.
THUMB = {"large": 360, "test": 180}


def _num(value: Any, digits: int = 3) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if not np.isfinite(value) else f"{value:.{digits}f}"


def _seconds(value: Any) -> str:
    # A learning-free segmenter "fits" in microseconds; "0.0" would read as missing.
    text = _num(value, 1)
    return "< 0.1" if text in ("0.0", "-0.0") else text


def _data_dir(run: RunData) -> Path:
    from compare.suite.data import resolve_data_dir

    # No download while reporting: without data the pictures are left out.
    return resolve_data_dir(run.config.get("data"), fetch=False).path


def contact_sheet(images: list[tuple[Path, str]], path: Path, *, thumb: int = 200, columns: int = 6) -> Path | None:
    """Thumbnails of overlay PNGs in a grid, each with a caption line under it.

    Parameters
    ----------
    images : list of (Path or ndarray, str)
        Overlay files (or (H, W, 3) uint8 pictures) and their captions;
        missing files are skipped.
    path : Path
        JPEG to write.
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
            if isinstance(file, np.ndarray):
                img = Image.fromarray(file)
            else:
                with Image.open(file) as opened:
                    img = opened.convert("RGB")
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
    # JPEG: photographs compress ten times better than as PNG, and the sheet is only an overview.
    atomic_path(Path(path), lambda p: sheet.save(p, format="JPEG", quality=80, optimize=True))
    return Path(path)


def _overlay_sheet(run: RunData, name: str, protocol: str, out: Path) -> tuple[Path | None, int]:
    """A contact sheet of one segmenter's overlays; drawn from the saved masks where overlays were not kept."""
    from compare.suite.report.grid import _labels, colour_errors, photo_path

    rows = run.per_image[(run.per_image["segmenter"] == name) & (run.per_image["protocol"] == protocol)]
    folder = run.root / "predictions" / safe_stem(name) / protocol / "overlays"
    images: list = []
    for row in rows.itertuples():
        count = f"{_num(row.pred_count, 0)} WBC"
        if protocol != "test" and pd.notna(row.true_count):
            count = f"{_num(row.pred_count, 0)}/{_num(row.true_count, 0)} WBC"
        overlay = folder / f"{safe_stem(row.image)}.png"
        if not overlay.is_file():
            labels = _labels(run.root, name, protocol, str(row.image))
            file = photo_path(_data_dir(run), protocol, str(row.image))
            try:
                from compare.io.images import read_image

                photo = read_image(file) if file is not None else None
            except (OSError, ValueError):
                photo = None
            if labels is None or photo is None or labels.shape != photo.shape[:2]:
                continue
            overlay = colour_errors(photo, labels, None)
        images.append((overlay, f"{str(row.image)[:16]}: {count}"))
    thumb = THUMB.get(protocol, 200)
    path = contact_sheet(images, out / f"{protocol}-{safe_stem(name)}.jpg", thumb=thumb,
                         columns=max(3, 1200 // (thumb + 6)))
    return path, len(images)


def _grid_section(run: RunData, order: list[str], commands: list[str]) -> Section:
    from compare.suite.report.grid import COLOURS, build_grid

    rows, note = build_grid(run.root, run.per_image, order, _data_dir(run))
    def rgb(key: str) -> str:
        return "rgb" + str(COLOURS[key])
    blocks: list = [Text("The same crops for every segmenter, enlarged with nearest neighbours so single pixels "
                         "stay visible. Green: true positive pixels; magenta: false positive; blue: false "
                         "negative (against the true mask, itself drawn on a 4-px grid). Test images have no "
                         "truth, so their cells show the predicted outline only. Rows: each WBC of the large "
                         "images, the cv patches where the segmenters' Dice differs most, each segmenter's worst "
                         "cv patch, and the test images whose predicted counts differ. Captions give Dice and "
                         "HD95 inside the crop. Each segmenter's overlay of the whole image is "
                         "`predictions/NAME/PROTOCOL/overlays/IMAGE.png` in the run folder, after a local run "
                         "(the committed `results/` leaves `predictions/` out).")]
    if rows:
        blocks.append(Grid(order, [(f"{r.image} ({r.protocol}): {r.why}",
                                    [(c.path, c.caption) for c in r.cells]) for r in rows]))
    else:
        blocks.append(Text("No grid: the predictions or the photographs could not be read."))
    if note:
        blocks.append(Text(note))
    return Section("grid", "The same cells side by side", blocks, commands)


def _warned_shares(per_image: pd.DataFrame, names: list[str]) -> pd.DataFrame | None:
    """Share of images with a warning, rows = shift (and "unshifted"), columns = segmenters; None without the column."""
    if "warning" not in per_image or "protocol" not in per_image:
        return None
    rows = per_image[per_image["protocol"].isin(["shift", "cv", "large", "test"])].copy()
    rows["warned"] = rows["warning"].fillna("").astype(str).str.len() > 0
    rows["case"] = np.where(rows["protocol"] == "shift", rows.get("shift", pd.Series("", index=rows.index)),
                            "unshifted (cv, large, test)")
    shares = rows.pivot_table(index="case", columns="segmenter", values="warned", aggfunc="mean")
    order = ["unshifted (cv, large, test)"] + sorted(c for c in shares.index if c != "unshifted (cv, large, test)")
    frame = pd.DataFrame({"images": [c for c in order if c in shares.index]})
    for name in names:
        if name in shares:
            frame[f"{name} warned"] = [_num(shares.at[c, name], 2) for c in frame["images"]]
    return frame if len(frame.columns) > 1 else None


def _shift_section(run: RunData, order: list[str]) -> Section | None:
    from compare.suite.report import plots

    rows = run.summary[run.summary["protocol"] == "shift"].copy()
    if rows.empty:
        return None
    rows["dice_mean"] = pd.to_numeric(rows["dice_mean"], errors="coerce")
    names = [n for n in order if n in set(rows["segmenter"])]
    table = rows.pivot_table(index="shift", columns="segmenter", values="dice_mean", aggfunc="mean")
    exact = rows.pivot_table(index="shift", columns="segmenter", values="count_exact", aggfunc="mean", dropna=False)
    frame = pd.DataFrame({"shift": table.index})
    for name in names:
        frame[f"{name} Dice"] = [_num(table.at[s, name]) if name in table else "–" for s in table.index]
        frame[f"{name} exact count"] = [_num(exact.at[s, name], 2) if name in exact and s in exact.index else "–"
                                        for s in table.index]
    worst = []
    for name in names:
        mine = rows[rows["segmenter"] == name].dropna(subset=["dice_mean"])
        if not mine.empty:
            low = mine.loc[mine["dice_mean"].idxmin()]
            worst.append(f"{name}: {low['shift']} (Dice {_num(low['dice_mean'])})")
    blocks: list = [Text("Each final model on perturbed copies of the labelled images (protocol `shift`): mean "
                         "Dice per shift, and the share of images counted exactly where a count means something "
                         "(shifted large images and crops; a shifted patch holds one WBC by construction). "
                         "These shifts are synthetic, not another lab's images."),
                    Table(frame, numeric=tuple(frame.columns[1:]))]
    if worst:
        blocks.append(Text("Worst shift per segmenter: " + "; ".join(worst) + "."))
    warned = _warned_shares(run.per_image, names)
    if warned is not None:
        blocks += [Text("Share of images whose counts carry a warning in `counts.csv` (no reliable scale, or "
                        "nuclear stain colours unlike the training images), per shift, against the unshifted "
                        "images of the cv, large and test protocols. A warning is the pipeline saying that it "
                        "is outside what it was trained on; it should be rare unshifted and common where "
                        "Dice drops."),
                   Table(warned, numeric=tuple(warned.columns[1:]))]
    path = plots.shift_dice(run.summary, order, run.root / "plots" / "shift_dice.png")
    if path is not None:
        blocks.append(Figure(path, "Mean Dice per shift and segmenter; the dashed lines mark each segmenter's "
                                   "unshifted large-image Dice where the run has it."))
    return Section("shift", "Domain shift", blocks)


def _test_sheet_section(run: RunData, order: list[str], commands: list[str]) -> Section:
    out = run.root / "report_assets"
    blocks: list = [Text("The first segmenter's final model on the unlabelled test images, its predicted WBC count "
                         "under each (no ground truth; Test_Data overlaps the training data). The other "
                         "segmenters' masks are in `predictions/NAME/test/masks/`; where their counts differ the "
                         "image is in the grid above.")]
    for name in order[:1]:
        path, n = _overlay_sheet(run, name, "test", out)
        if path is not None:
            blocks.append(Figure(path, f"{name}: {n} test images."))
    if len(blocks) == 1:
        blocks.append(Text("This run has no test overlays."))
    return Section("test", "Test-set predictions", blocks, commands)


def _methods_section(run: RunData, order: list[str]) -> Section:
    blocks: list = [Text("Generated from the files the run saved (`config.json`, `fit_info.json`, "
                         "`models/NAME/*.json`). Every segmenter predicts a per-pixel WBC probability; the same "
                         "instance stage turns it into WBCs, and the same evaluator scores them.")]
    blocks += [Text(f"**{name}.** {text}") for name, text in methods_blocks(run.root, run.config, order)]
    folds = run.config.get("folds", "?")
    blocks.append(Text(f"**Protocols.** cv: grouped {folds}-fold cross-validation over the labelled patches (patches "
                       "of one region share a fold; the U-Net holds out part of each training fold for early "
                       "stopping). large: fit on the patches not cut from the large images, then predict those "
                       "images whole. test: the same final model on the test images. Seed "
                       f"{run.config.get('seed', '?')}."))
    blocks.append(Text("**Data.**"))
    blocks += [Text(t) for t in data_blocks(run.per_image, run.config)]
    env = run.env
    platform = env.get("platform", "platform not recorded")
    blocks.append(Text(f"**Hardware.** {env.get('cpu_count', '?')} CPU cores, {platform}, "
                       f"Python {env.get('python', '?')}, Keras backend "
                       f"{env.get('keras_backend', '?')}; the whole run took {env.get('run_seconds', '?')} s. "
                       "Timings are wall-clock on that machine, shared with other work unless said otherwise."))
    return Section("methods", "Methods", blocks)


def _limitations_section(run: RunData) -> Section:
    return Section("limitations", "Limitations",
                   [Text(t) for t in limitations_blocks(run.per_image, run.summary)])


def _per_image_section(run: RunData, order: list[str]) -> Section | None:
    """Dice and boundary metrics of every large image per segmenter (cv's 164 rows stay in the CSV)."""
    rows = run.per_image[run.per_image["protocol"] == "large"]
    if rows.empty:
        return None
    frame = pd.DataFrame({
        "image": rows["image"].astype(str), "segmenter": rows["segmenter"],
        "WBCs true / found": [f"{_num(t, 0)} / {_num(f, 0)}" for t, f in zip(rows["true_count"], rows["pred_count"])],
        "Dice": rows["dice"].map(_num), "HD95 px": rows["hd95"].map(lambda v: _num(v, 1)),
        "surface Dice @2px": rows["surface_dice"].map(_num),
    })
    frame["_o"] = [order.index(n) if n in order else len(order) for n in frame["segmenter"]]
    frame = frame.sort_values(["image", "_o"], kind="stable").drop(columns="_o")
    if (frame["HD95 px"] == "–").all():
        frame = frame.drop(columns=["HD95 px", "surface Dice @2px"])
        note = ("This run's `per_image.csv` holds no boundary scores; rerun it to fill HD95 and "
                "surface Dice.")
    else:
        note = "Boundary metrics per cv patch are in `per_image.csv` (columns `hd95`, `surface_dice`)."
    return Section("per-image", "Per image: the large images", [
        Table(frame, numeric=("Dice", "HD95 px", "surface Dice @2px")), Text(note)])


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
