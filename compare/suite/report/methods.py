"""The report's Methods, Data and Limitations text, generated from a run folder's saved files.

Everything said about a segmenter comes from what the run saved:
``config.json``, ``fit_info.json``, ``env.json`` and each final model's
``models/NAME/model.json`` (colour, scale and instance settings) and
``models/NAME/segmenter/{params.json, config.json}``.  Where a file is
missing the text says what is unknown instead of guessing.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["methods_blocks", "data_blocks", "limitations_blocks", "run_meta", "ANNOTATION_DICE", "EDGE_SHARE"]

#: Two annotations of the same cells (8 patches cropped from the large images) agree at this mean Dice
#: (``results/benchmarks/annotation_grid.md``).
ANNOTATION_DICE = 0.981

#: Share of the U-Net's wrong cv pixels within 4 px (one annotation-grid cell) of the true edge (same file).
EDGE_SHARE = 0.94

#: Registry names the report explains when they appear (benchmarks list them too).
EXPLAINED = {
    "unet-paper": ("`unet-paper` is the seed project's U-Net recipe (width 32, Dice loss, Adam 1e-4, 50 epochs), "
                   "registered as a slow segmenter: `run --all` leaves it out, so it appears here only in the "
                   "benchmarks; `experiments/unet_profiles.py` compares it with `unet` side by side."),
}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None


def _final_fit(root: Path, name: str) -> dict:
    info = _json(root / "fit_info.json") or {}
    return info.get(f"{name}/large-final") or next((v for k, v in info.items() if k.startswith(f"{name}/")), {}) or {}


def _join(values: Any) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, (list, tuple)) else str(values)


def _instance_text(params: dict | None) -> str:
    if not params:
        return ("Threshold 0.5, fill holes, drop objects below the minimum WBC area, split "
                "too-large components by a distance-transform watershed, drop implausibly elongated or "
                "non-convex pieces (settings derived from the training masks; not saved for this model).")
    return (f"The same for every segmenter, with settings derived from the training masks (saved in each "
            f"model's `model.json`): probability ≥ {params.get('threshold', 0.5)}, fill holes, drop objects under "
            f"{params.get('min_area', '?')} px (platelets, specks), split components over "
            f"{params.get('split_area', '?')} px with a distance-transform watershed (seeds ≥ "
            f"{params.get('min_distance', '?')} px apart), drop pieces more elongated than "
            f"{params.get('max_elongation', '?')} or less solid than {params.get('min_solidity', '?')}.")


def _outline_text(names: list[str]) -> str:
    """Which segmenters' WBCs the outline stage grows, and through what (the registry's flags)."""
    from compare.pipeline.outline import OUTLINE_LOW
    from compare.pipeline.plasma_contrast import MIN_GAIN
    from compare.pipeline.segmenters import REGISTRY

    specs = {name: REGISTRY[name] for name in names if name in REGISTRY}
    band = [name for name, spec in specs.items() if spec.grow_outline]
    colour = [name for name, spec in specs.items() if spec.outline_by_colour]
    if not band and not colour:
        return ""
    parts = []
    if band:
        parts.append(f"For {', '.join(band)} each WBC grows through the pixels of probability {OUTLINE_LOW:g} up "
                     "to the threshold, to the strongest colour edge (a watershed of the CIELAB gradient).")
    if colour:
        parts.append(f"For {', '.join(colour)} it also grows through the pixels round it whose colour is neither "
                     "the plasma's nor the red cells' (pale cytoplasm the segmenter does not see), where they add "
                     f"at least {MIN_GAIN:g} of the WBC's area and the cell that makes is no wider than 1.6 training "
                     "WBCs and stays compact; the outline is then put on the colour edge as above "
                     "(`compare.pipeline.plasma_contrast`).")
    others = [name for name in names if name not in band and name not in colour]
    if others:
        parts.append(f"{', '.join(others)}: the instance stage's outline as it is.")
    return " ".join(parts)


def _colour_text(manifests: dict[str, dict]) -> str:
    """The per-image colour and scale steps of :class:`compare.pipeline.model.WBCModel`, from the saved ``model.json`` files."""
    manifest = next((m for m in manifests.values() if m), {})
    if not manifest:
        return ""
    parts = []
    if manifest.get("normalise_colour"):
        parts.append(f"Every image (training and new) is white-balanced so its plasma background becomes the "
                     f"training background {_join([round(v) for v in manifest.get('background', [])])} (RGB).")
        anchored = {name: m.get("stain_anchor") for name, m in manifests.items()
                    if m.get("nucleus_reference") and m.get("stain_anchor", "none") != "none"}
        if anchored:
            how = "; ".join(f"{mode} for {', '.join(n for n in anchored if anchored[n] == mode)}"
                            for mode in dict.fromkeys(anchored.values()))
            others = [n for n, m in manifests.items() if m and n not in anchored]
            parts.append(f"Its optical density is then mapped ({how}) so that its nuclei (the darkest 0.3 % of "
                         "lit pixels) match the training images' mean nuclear stain (`stain.anchor`)"
                         + (f"; not for {', '.join(others)}." if others else "."))
        if np.isfinite(float(manifest.get("colour_warning_deg", np.inf))):
            parts.append(f"An image whose nuclear stain direction is more than "
                         f"{float(manifest['colour_warning_deg']):.0f} degrees from the training images' carries a "
                         "warning.")
    else:
        parts.append("Colours are used as they are (no white balance).")
    from compare.pipeline.scale import SCALE_TOLERANCE

    scale = manifest.get("training_scale") or {}
    if manifest.get("auto_scale"):
        parts.append(f"Each image's scale is estimated (red cells on fields, trial scales on crops) and the image "
                     f"resized to the training scale (WBC {float(scale.get('wbc_diameter', np.nan)):.0f} px, red "
                     f"cell {float(scale.get('rbc_diameter', np.nan)):.0f} px across) when it is more than "
                     f"{SCALE_TOLERANCE:g}x off.")
    if manifest.get("require_nucleus"):
        parts.append("Objects without a nucleus darker than the image's red cells are dropped; in an image where no "
                     "object passes that test, an object as textured inside as a nucleus (against the red cells) "
                     "is kept.")
    return " ".join(parts)


def _threshold_text(params: dict, fit: dict) -> str:
    radius = params.get("grow_radius_", fit.get("grow_radius", "?"))
    by_radius = fit.get("train_dice_by_radius") or {}
    tried = _join(params.get("grow_radii", list(by_radius))) if (params or by_radius) else "?"
    return (f"Input RGB; feature: the Lab b* channel smoothed with a Gaussian (sigma {params.get('sigma', '?')} px). "
            f"Model: Otsu's threshold per image, closing (radius {params.get('closing_radius', '?')} px) and hole "
            f"filling, then the mask grown by a radius chosen on the training set's Dice among {tried} px "
            f"(chosen: {radius} px). Nothing else is learnt; no augmentation.")


#: What each pixel classifier of the registry is, for :func:`_pixel_text`.
_PIXEL_MODELS = {
    "rf": "a random forest (scikit-learn; settings in `baselines/factories.py:rf_segmenter`)",
    "svm": ("an RBF-kernel SVM approximated by a Nystroem kernel map feeding a linear SVM, with calibrated "
            "probabilities (settings in `baselines/factories.py:svm_segmenter`)"),
    "mlp": ("a feed-forward neural network (scikit-learn MLP; settings in "
            "`baselines/factories.py:mlp_segmenter`)"),
}


def _copies_text(copies: dict | None) -> str:
    if not copies:
        return "No stain augmentation was recorded for this model."
    if not copies.get("copies"):
        return "No stain-augmented copies."
    return (f"Augmentation: {copies['copies']} stain-augmented copies of each training image "
            f"(`stain.augment.random_stain`, strength {copies.get('strength', '?')}).")


def _pixel_text(name: str, params: dict, fit: dict, copies: dict | None = None) -> str:
    inner = params.get("params", params) if params else {}
    bank = inner.get("bank") or {}
    model = _PIXEL_MODELS.get(name, "a pixel classifier")
    features = (f"{fit.get('n_features', '?')} per-pixel features: colour channels {_join(bank['colours'])}; "
                f"{_join(bank['filters'])} filters of {_join(bank['filtered'])} at sigma {_join(bank['sigmas'])} px"
                f" (computed at 1/{bank.get('downsample', 1)} resolution)" if bank else
                f"{fit.get('n_features', '?')} per-pixel colour and multi-scale texture features "
                "(the bank's settings were not saved with this model)")
    weight = (f"; pixels within {inner['boundary_width']} px of the true edge weigh {inner['boundary_weight']}x"
              if inner.get("boundary_width") else "")
    return (f"Input RGB; {features}. Model: {model}. Training: {fit.get('n_pixels_sampled', '?')} pixels "
            f"sampled from the training masks, {fit.get('n_foreground_sampled', '?')} of them foreground{weight}; "
            f"decision threshold on the probability {fit.get('threshold', inner.get('threshold', '?'))} "
            f"(chosen on the training set). {_copies_text(copies)}")


#: How a saved ``predict.tta`` reads in the methods text (``True`` is an older model's ``"flips"``).
_TTA_TEXT = {True: "4 flips", "flips": "4 flips", "d4": "8 flips and transposes"}


def _unet_text(config: dict, fit: dict, shrunk_views: bool = False) -> str:
    model, train, predict = config.get("model", {}), config.get("train", {}), config.get("predict", {})
    if not model:
        return (f"U-Net (Keras 3), {fit.get('params', '?')} parameters, profile {fit.get('profile', '?')}; the "
                "model's config.json is missing, so its architecture and training settings are not listed.")
    recipes = {"d4": "dihedral flips/rotations",
               "full": "dihedral flips/rotations, small rotations, elastic deformation, colour jitter",
               "stain": ("dihedral flips/rotations, +-15 % scale and stain jitter (`stain.augment.random_stain`, "
                         "the `stain` recipe of `unet/augment.py`)")}
    best_val_dice = fit.get("best_val_dice")  # None for a fit that held no image out
    aug = [recipes.get(train.get("augment"), f"recipe {train.get('augment')}")
           if train.get("augment") not in (None, "none") else "",
           f"mosaics of patches (p = {train['mosaic']})" if train.get("mosaic") else "",
           f"simulated field-of-view edge (p = {train['field_edge']})" if train.get("field_edge") else ""]
    return (f"Input RGB at 1/{model.get('input_scale', 1)} resolution; the network learns its own features. "
            f"Model: U-Net, depth {model.get('depth', '?')}, base width {model.get('base_width', '?')} channels, "
            f"batch norm {'on' if model.get('batch_norm') else 'off'}, dropout {model.get('dropout', '?')}, "
            f"{fit.get('params', '?'):,} parameters. Training: {train.get('loss', '?')} loss, Adam at "
            f"{train.get('learning_rate', '?')} with a {train.get('schedule', '?')} schedule "
            f"({train.get('warmup_epochs', 0)} warm-up epoch), batch {train.get('batch_size', '?')}, "
            f"{train.get('patch_size', '?')} px patches, up to {train.get('epochs', '?')} epochs with early stopping "
            f"(patience {train.get('patience', '?')}) on a {train.get('val_fraction', '?')} validation split; the "
            f"final model ran {fit.get('epochs_run', '?')} epochs, best at {fit.get('best_epoch', '?')} "
            f"(validation Dice {float('nan' if best_val_dice is None else best_val_dice):.3f}). Augmentation: "
            f"{', '.join(a for a in aug if a) or 'none'}. Prediction: tiles of {predict.get('tile', '?')} px "
            f"overlapping by {predict.get('overlap', '?')} px, test-time views "
            f"{_TTA_TEXT.get(predict.get('tta'), 'off')}{_shrunk_views_text(predict.get('tta'), shrunk_views)}; "
            f"{fit.get('device', 'device not recorded')}.")


def _shrunk_views_text(tta: Any, shrunk_views: bool) -> str:
    """What the segment stage adds to a U-Net's own views (``views_when_shrunk``, :mod:`compare.pipeline.segment`)."""
    from compare.pipeline.segment import VIEWS_MAX_FACTOR

    if tta == "d4" or not shrunk_views:
        return ""
    return f", and {_TTA_TEXT['d4']} on an image the scale stage shrank to {VIEWS_MAX_FACTOR:g} or less"


def _generic_text(params: Any, fit: dict) -> str:
    saved = json.dumps(params if params is not None else fit, default=str)
    return f"Saved settings: `{saved[:600]}`" if saved not in ("{}", "null") else "No settings were saved."


def _manifest(folder: Path) -> dict:
    """A saved model's manifest, or ``{}`` where the run did not save one (its text then says "not saved")."""
    from compare.pipeline.model import ModelFormatError, WBCModel

    try:
        return WBCModel.read_manifest(folder).data
    except (FileNotFoundError, ModelFormatError):
        return {}


def methods_blocks(root: Path, config: dict, names: list[str]) -> list[tuple[str, str]]:
    """``(segmenter, paragraph)`` pairs describing each segmenter of the run, and the shared stages."""
    from compare.pipeline.segmenters import REGISTRY

    out = []
    manifests: dict[str, dict] = {}
    for name in names:
        folder = root / "models" / name
        manifests[name] = _manifest(folder)
        params = _json(folder / "segmenter" / "params.json") or {}
        unet_config = _json(folder / "segmenter" / "config.json") or {}
        fit = _final_fit(root, name)
        spec = REGISTRY.get(name)
        if name == "threshold":
            body = _threshold_text(params, fit)
        elif name in _PIXEL_MODELS:
            body = _pixel_text(name, params, fit, manifests[name].get("stain_copies"))
        elif name.startswith("unet"):
            body = _unet_text(unet_config, fit or unet_config.get("fit_info", {}),
                              shrunk_views=bool(spec and spec.views_when_shrunk))
        else:
            body = (f"{spec.description}. " if spec else "") + _generic_text(params or unet_config or None, fit)
        out.append((name, body))
    stages = {name: manifests[name].get("instance_params") or _json(root / "models" / name / "instances.json")
              for name in names}
    saved = {n: v for n, v in stages.items() if v}
    distinct = {json.dumps(v, sort_keys=True) for v in saved.values()}
    text = _instance_text(next(iter(saved.values()), None))
    if len(distinct) > 1:
        text += " Settings differ between final models: " + "; ".join(
            f"{n}: {json.dumps(v, sort_keys=True)}" for n, v in saved.items()) + "."
    elif saved and len(saved) < len(names):
        text += f" (Saved for {', '.join(saved)}; the others' model folders are not in this run folder.)"
    out.append(("instance stage", text))
    outline = _outline_text(names)
    if outline:
        out.append(("outline stage", outline))
    colour = _colour_text(manifests)
    if colour:
        out.append(("colour and scale", colour))
    extra = {k: v for k, v in config.items()
             if k not in ("segmenters", "protocols", "folds", "seed", "data", "out", "resume", "save_cv_predictions")}
    if extra:
        out.append(("run options", "Further run settings (colour normalisation, scale estimation, shifts) as "
                                   f"saved in `config.json`: `{json.dumps(extra, default=str)[:800]}`."))
    for name, text in EXPLAINED.items():
        if name not in names:
            out.append((name, text))
    return out


def data_blocks(per_image: pd.DataFrame, config: dict) -> list[str]:
    """Paragraphs on the data: sizes, source, licence, overlaps."""
    def n(protocol: str) -> int:
        return int(per_image.loc[per_image["protocol"] == protocol, "image"].nunique())

    large = per_image[per_image["protocol"] == "large"].drop_duplicates("image")
    wbcs = int(pd.to_numeric(large["true_count"], errors="coerce").sum()) if not large.empty else 0
    where = f"`{config['data']}`" if config.get("data") else "the SigTuple WBC challenge data (found by `compare.suite.data.resolve_data_dir`; see `docs/data.md`)"
    return [
        f"Images: {where}, downloaded from the public repository `bsrinivas8687/WBC_Segmentaion` and checked "
        "against `MANIFEST.sha256`. **No licence is stated for the data**; it is not this project's. One "
        "smear-imaging setup as far as the files show (one colour and scale regime).",
        f"Sizes in this run: {n('cv')} labelled 128 × 128 patches with one WBC each (cv), {n('large')} larger "
        f"labelled images with {wbcs} WBCs (large), {n('test')} unlabelled test images (test). Masks are drawn "
        "on a 4 × 4-pixel grid (stair-stepped edges) and stored as JPEG; they are binarised at 128.",
        "Overlaps: 8 patches are crops of the large images (the large protocol trains without them; cv keeps "
        "each such group, and the near-duplicates train-57/58, in one fold). **Test_Data overlaps the training "
        "data: 39 training patches appear inside 27 of the 61 test images**, and one test image shows a WBC of a "
        "large training image, so test-set predictions are not a held-out estimate (they have no truth anyway). "
        "Details: `docs/data.md`.",
    ]


def limitations_blocks(per_image: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """The limits a reader must keep in mind, with the shift results when the run has them."""
    large = per_image[per_image["protocol"] == "large"].drop_duplicates("image")
    wbcs = int(pd.to_numeric(large["true_count"], errors="coerce").sum()) if not large.empty else 0
    shifts = summary[summary["protocol"] == "shift"] if "protocol" in summary else summary.iloc[0:0]
    lines = [
        f"**Annotation noise bounds every score.** Two annotations of the same cells agree at Dice "
        f"{ANNOTATION_DICE:.3f} on average, the masks are drawn on a 4-px grid, and {EDGE_SHARE:.0%} of the "
        "best segmenter's wrong pixels lie within 4 px of the true edge (`benchmarks/annotation_grid.md`): "
        "Dice differences of about 0.01 and HD95 differences of 1-2 px are within that noise, whatever a "
        "p-value says.",
        f"**Counting rests on {len(large)} large images with {wbcs} WBCs.** Exact counts on all of them say "
        "little about counting in crowded fields; the cv patches hold one WBC each by construction.",
    ]
    if shifts.empty:
        lines.append("**One microscope.** All images come from one data set and imaging setup; this run "
                     "measured no domain shift, so nothing here says how the segmenters fare on another "
                     "lab's stain, scale or camera.")
    else:
        lines.append("**Synthetic shifts are not real labs.** The domain-shift section perturbs this data set's "
                     "images (scale, colour, crops); a real second lab changes stain, optics and cell mix "
                     "together, and may do worse.")
    lines.append("**Test_Data overlaps training** (39 patches in 27 test images), so the test sheets show "
                 "behaviour, not held-out accuracy.")
    return lines


def _git_commit(root: Path) -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def run_meta(root: Path, env: dict) -> str:
    """One line: when the run was made and from which commit (env.json, else git and file times)."""
    when = env.get("finished") or env.get("date") or env.get("started")
    if not when:
        try:
            stamp = (root / "per_image.csv").stat().st_mtime
            when = datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") + \
                " (per_image.csv modified)"
        except OSError:
            when = "unknown"
    commit = env.get("git_commit") or env.get("commit")
    if commit:
        commit = f"{str(commit)[:12]}{' (uncommitted changes)' if env.get('git_dirty') else ''}"
    else:
        found = _git_commit(root)
        commit = f"{found} (HEAD when the report was built; the run did not record its commit)" if found else "unknown"
    built = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"Run: {when}; code: commit {commit}; report built {built}."
