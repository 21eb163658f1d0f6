"""``compare run``: every segmenter through the protocols, into one run folder.

Protocols (docs/protocols.md):

``cv``
    grouped K-fold over the patches; each fold fits a fresh segmenter.
``large``
    fit on the patches not cropped from the large images (the segmenter's
    final model, saved under ``models/NAME``), then locate, delineate and
    count the WBCs of the large labelled images.
``test``
    the final model predicts masks, overlays and counts for the test images
    (no ground truth, so no scores).
``shift``
    a fixed, seeded battery of synthetic domain shifts (:mod:`compare.suite.shifts`)
    of a seeded subset of each fold's held-out patches, scored with that
    fold's model, and of the large images, scored with the final model: no
    extra fits.  It measures what other labs' images would get.
``cellavision``
    zero-shot on another lab: the ``large`` protocol's final model (fitted
    on SigTuple only) scores the 100 CellaVision crops (found by
    :func:`compare.suite.data.resolve_dataset`, downloaded on first use):
    whole-cell and nucleus Dice, N:C ratio, objects and counts, with partial
    neighbours cut by the border counted apart (``border_extra``).
``domains``
    with two or more labelled data folders (``--data`` given once per lab):
    fit on all but one, score on the one left out (fold = its folder name).

Every prediction goes through :class:`compare.pipeline.model.WBCModel` with default
settings (colour normalisation and scale estimation on), as a user's would.

Work is done in units of (segmenter, protocol, fold).  Each finished unit
writes its rows and facts to ``parts/NAME/PROTOCOL-FOLD.json`` atomically, so
``--resume`` after an interruption reuses every finished unit and model, and
the final tables are rebuilt from the parts.  A failing image or unit is
recorded in ``errors.csv`` and the rest of the run goes on.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from compare.evaluation.evaluate import evaluate, fit_model
from compare.io.atomic import json_default, safe_stem, write_text_atomic
from compare.io.images import DataError, Sample
from compare.io.overlay import draw_overlay, save_label_png, save_rgb_png
from compare.io.progress import progress
from compare.pipeline.device import env_facts
from compare.pipeline.instances import label_truth
from compare.pipeline.model import WBCModel
from compare.pipeline.preparation import sharing_preparation
from compare.pipeline.segmenters import get_spec
from compare.suite.data import grouped_kfold, load_domain, load_set, resolve_data_dir, resolve_dataset, without_groups
from compare.suite.protocols import evaluate_domain, evaluate_shifts
from compare.suite.summary import PER_IMAGE_COLUMNS, summarise, write_tables

__all__ = ["RunConfig", "run", "PROTOCOLS"]

PROTOCOLS = ("cv", "large", "test", "shift", "cellavision", "domains")

FINAL_PROTOCOLS = frozenset({"large", "test", "shift", "cellavision"})  # those of the final model


@dataclass
class RunConfig:
    """What ``compare run`` was asked to do; written to ``config.json``."""

    segmenters: list[str]
    protocols: list[str] = field(default_factory=lambda: list(PROTOCOLS))
    folds: int = 5
    seed: int = 0
    data: str | None = None
    out: str = "results"
    resume: bool = False
    save_cv_predictions: bool = True
    #: Held-out patches per fold that the shift battery is applied to (0:
    #: all): 6 per fold and the 5 large images give 35 images per shift and
    #: segmenter, which keeps ``run --all`` near its time budget.
    shift_patches_per_fold: int = 6
    #: Shifted images scored at once (threads; :func:`compare.suite.protocols.evaluate_shifts`).
    #: The rows are the same for any value; 2 took the 5 segmenters' shift
    #: units of ``run --all`` from 271 s to 221 s on 2 cores.  More threads
    #: hold more 3x-enlarged images (and their features) in memory at once.
    shift_threads: int = 2
    #: Labelled data folders, one per lab / microscope; two or more add the
    #: ``domains`` protocol (leave one domain out).
    domains: list[str] = field(default_factory=list)
    #: The CellaVision folder; None: found by :func:`compare.suite.data.resolve_dataset`.
    cellavision: str | None = None

    def comparable(self) -> dict[str, Any]:
        """The settings that must match for ``--resume`` to reuse results."""
        return {"folds": self.folds, "seed": self.seed, "data": self.data,
                "shift_patches_per_fold": self.shift_patches_per_fold, "domains": self.domains,
                "cellavision": self.cellavision}


def _provenance() -> dict[str, Any]:
    """When the run finished, and the git commit of the code (with whether it had local changes)."""
    import datetime
    import subprocess

    facts: dict[str, Any] = {"finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return facts  # not a git checkout (an installed wheel): no commit to record
    if commit.returncode == 0:
        facts["git_commit"] = commit.stdout.strip()
        facts["git_dirty"] = bool(dirty.stdout.strip())
    return facts


class _Run:
    """State of one run: folders, data, and collected errors."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.out = Path(config.out)
        self.parts = self.out / "parts"
        self.errors: list[dict[str, str]] = []
        #: Shifted inputs, made once and scored by every segmenter.
        self.shift_cache: dict[tuple[str, str, int], list] = {}
        self.data_dir = resolve_data_dir(config.data).path
        self._cellavision: list[Sample] | None = None
        #: Wall seconds of each segmenter's ``cellavision`` unit, for env.json.
        self.cellavision_s: dict[str, float] = {}

    # -- data ---------------------------------------------------------------
    def load(self, which: str) -> list[Sample]:
        errors: list[DataError] = []
        samples = load_set(self.data_dir, which, on_error="skip", errors=errors)
        for exc in errors:
            self.error("-", which, "-", "-", str(exc))
        for s in samples:
            if s.mask is not None and not s.mask.any():
                # Kept (an empty image is a valid case, scored NaN), but a
                # labelled WBC image without any WBC is usually a mistake.
                self.error("-", which, "-", s.name, f"{s.path}: the mask of this image is all black (no WBC); if it shows "
                           "WBCs, fix the mask; it is used as an image without WBCs.", level="warning")
        return samples

    def error(self, segmenter: str, protocol: str, fold: str, image: str, message: str,
              level: str = "error") -> None:
        self.errors.append({"level": level, "segmenter": segmenter, "protocol": protocol, "fold": str(fold),
                            "image": image, "error": message})
        progress.write(f"{level}: {message}")

    def cellavision(self) -> list[Sample]:
        """The CellaVision samples, read once; empty (with a warning) where the set cannot be had."""
        if self._cellavision is None:
            errors: list[DataError] = []
            try:
                folder = resolve_dataset("cellavision", self.config.cellavision).path
                self._cellavision = load_domain(folder, on_error="skip", errors=errors)
            except DataError as exc:
                # Another lab's set is a check on top of the SigTuple protocols: without it the run goes on.
                self.error("-", "cellavision", "-", "-", f"{exc} The cellavision protocol is skipped.",
                           level="warning")
                self._cellavision = []
            for exc in errors:
                self.error("-", "cellavision", "-", "-", str(exc))
        return self._cellavision

    # -- parts --------------------------------------------------------------
    def part_path(self, name: str, protocol: str, fold: str) -> Path:
        return self.parts / name / f"{protocol}-{fold}.json"

    def read_part(self, name: str, protocol: str, fold: str) -> dict | None:
        path = self.part_path(name, protocol, fold)
        if self.config.resume and path.is_file():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                return None  # a part is written atomically; a bad one is redone
        return None

    def write_part(self, name: str, protocol: str, fold: str, part: dict) -> None:
        write_text_atomic(self.part_path(name, protocol, fold), json.dumps(part, default=json_default) + "\n")


def _evaluate(run: _Run, name: str, protocol: str, fold: str, model: WBCModel, samples: Sequence[Sample],
              prediction_dir: Path | None, overlays: bool, *, domain: bool = False) -> tuple[list[dict], float, int]:
    """Predict and score each sample (``domain``: as another lab's, :func:`evaluate_domain`); rows, seconds, pixels."""

    def save(sample: Sample, prediction: Any) -> None:
        if prediction_dir is None:
            return
        stem = safe_stem(sample.name)
        save_label_png(prediction_dir / "masks" / f"{stem}.png", prediction.labels)
        if overlays:
            truth = label_truth(sample.mask) if sample.mask is not None else None
            save_rgb_png(prediction_dir / "overlays" / f"{stem}.png", draw_overlay(sample.image, prediction.labels, truth))

    def failed(sample: Sample, exc: BaseException) -> None:
        run.error(name, protocol, fold, sample.name, f"{sample.path}: prediction failed ({type(exc).__name__}: {exc}).")

    desc = f"{name} {protocol} {fold}"
    if domain:
        rows = evaluate_domain(model, samples, on_result=save, on_error=failed, progress_desc=desc,
                               n_jobs=run.config.shift_threads)
    else:
        rows = evaluate(model, samples, on_result=save, on_error=failed, progress_desc=desc)
    for row in rows:
        row.update(segmenter=name, protocol=protocol, fold=fold)
    return rows, sum(r["predict_s"] for r in rows), sum(r["height"] * r["width"] for r in rows)


def _shift_rows(run: _Run, name: str, fold: str, model: WBCModel, samples: Sequence[Sample], source: str) -> list[dict]:
    """Rows of the ``shift`` protocol: ``model`` on the shifted ``samples``."""

    def failed(sample: Sample, exc: BaseException) -> None:
        run.error(name, "shift", fold, sample.name, f"{sample.path}: shifted prediction failed "
                  f"({type(exc).__name__}: {exc}).")

    rows = evaluate_shifts(model, samples, seed=run.config.seed, source=source, on_error=failed,
                           progress_desc=f"{name} shift {fold}", cache=run.shift_cache,
                           n_jobs=run.config.shift_threads)
    for row in rows:
        row.update(segmenter=name, protocol="shift", fold=fold)
    return rows


def _unit_part(rows: list[dict], fit_s: float | None, predict_s: float, pixels: int,
               model: WBCModel | None) -> dict:
    segmenter = getattr(model, "segmenter_", None)
    return {
        "rows": rows,
        "fit_s": fit_s,
        "predict_s": predict_s,
        "pixels": pixels,
        "history": getattr(segmenter, "history_", None),
        "fit_info": getattr(segmenter, "fit_info_", None),
        "instance_params": asdict(model.params_) if model is not None else None,
        "model": model.manifest() if model is not None else None,
    }


def _shift_subset(samples: list[Sample], count: int, seed: int) -> list[Sample]:
    """A seeded subset of held-out samples for the shift battery (all when ``count`` <= 0)."""
    if count <= 0 or len(samples) <= count:
        return samples
    picks = np.random.default_rng(seed).choice(len(samples), size=count, replace=False)
    return [samples[i] for i in sorted(picks)]


def _run_cv(run: _Run, name: str, patches: list[Sample], splits: list[tuple[list[int], list[int]]]) -> None:
    cfg = run.config
    shifted = "shift" in cfg.protocols
    for fold, (train_idx, test_idx) in enumerate(progress(splits, desc=f"{name} cv", unit="fold")):
        done_cv = run.read_part(name, "cv", str(fold)) is not None
        done_shift = not shifted or run.read_part(name, "shift", f"cv{fold}") is not None
        if done_cv and done_shift:
            continue
        try:
            model = fit_model(name, [patches[i] for i in train_idx], seed=cfg.seed + fold)
        except Exception as exc:
            run.error(name, "cv", str(fold), "-", f"fit failed ({type(exc).__name__}: {exc}).")
            progress.write(traceback.format_exc())
            continue
        held_out = [patches[i] for i in test_idx]
        if not done_cv:
            pred_dir = run.out / "predictions" / safe_stem(name) / "cv" if cfg.save_cv_predictions else None
            rows, predict_s, pixels = _evaluate(run, name, "cv", str(fold), model, held_out, pred_dir, overlays=False)
            run.write_part(name, "cv", str(fold), _unit_part(rows, model.fit_s_, predict_s, pixels, model))
        if not done_shift:
            subset = _shift_subset(held_out, cfg.shift_patches_per_fold, cfg.seed + fold)
            rows = _shift_rows(run, name, f"cv{fold}", model, subset, "cv")
            run.write_part(name, "shift", f"cv{fold}", _unit_part(rows, None, 0.0, 0, None))


def _final_model(run: _Run, name: str, train: list[Sample]) -> tuple[WBCModel, bool]:
    """Fit (or, on resume, load) the final model of ``name``; saved under ``models/``.

    Returns the model and whether it was fitted now.
    """
    model_dir = run.out / "models" / safe_stem(name)
    if run.config.resume and (model_dir / ".complete").is_file():
        return WBCModel.load(model_dir), False
    model = fit_model(name, train, seed=run.config.seed)
    model.save(model_dir)
    return model, True


def _run_final(run: _Run, name: str, patches: list[Sample], protocols: list[str]) -> None:
    large = run.load("large") if {"large", "shift"} & set(protocols) else []
    excluded = {s.name for s in large} | set(_large_names(run))
    train = without_groups(patches, excluded)
    need_large = "large" in protocols and run.read_part(name, "large", "final") is None
    need_test = "test" in protocols and run.read_part(name, "test", "final") is None
    need_shift = "shift" in protocols and run.read_part(name, "shift", "large") is None
    need_cellavision = ("cellavision" in protocols and run.read_part(name, "cellavision", "final") is None
                        and bool(run.cellavision()))
    if not (need_large or need_test or need_shift or need_cellavision):
        return
    try:
        model, _ = _final_model(run, name, train)
    except Exception as exc:
        run.error(name, "large", "final", "-", f"fit failed ({type(exc).__name__}: {exc}).")
        progress.write(traceback.format_exc())
        return
    pred_root = run.out / "predictions" / safe_stem(name)
    if need_large:
        rows, predict_s, pixels = _evaluate(run, name, "large", "final", model, large, pred_root / "large",
                                            overlays=True)
        run.write_part(name, "large", "final", _unit_part(rows, model.fit_s_, predict_s, pixels, model))
    if need_test:
        test = run.load("test")
        rows, predict_s, pixels = _evaluate(run, name, "test", "final", model, test, pred_root / "test", overlays=True)
        run.write_part(name, "test", "final", _unit_part(rows, None, predict_s, pixels, None))
    if need_shift:
        rows = _shift_rows(run, name, "large", model, large, "large")
        run.write_part(name, "shift", "large", _unit_part(rows, None, 0.0, 0, None))
    if need_cellavision:
        clock = time.perf_counter()
        rows, predict_s, pixels = _evaluate(run, name, "cellavision", "final", model, run.cellavision(),
                                            pred_root / "cellavision", overlays=False, domain=True)
        run.write_part(name, "cellavision", "final", _unit_part(rows, None, predict_s, pixels, None))
        run.cellavision_s[name] = round(time.perf_counter() - clock, 1)


def _run_domains(run: _Run, name: str) -> None:
    """Leave one domain out: fit on every other labelled folder, score on the one left out."""
    from compare.suite.data import load_domain

    domains: dict[str, list[Sample]] = {}
    for folder in run.config.domains:
        errors: list[DataError] = []
        key = Path(folder).name
        try:
            domains[key] = load_domain(folder, on_error="skip", errors=errors)
        except DataError as exc:
            run.error(name, "domains", key, "-", str(exc))
        for exc in errors:
            run.error(name, "domains", key, "-", str(exc))
    for held_out, samples in domains.items():
        if run.read_part(name, "domains", held_out) is not None:
            continue
        train = [s for other, group in domains.items() if other != held_out for s in group]
        try:
            model = fit_model(name, train, seed=run.config.seed)
        except Exception as exc:
            run.error(name, "domains", held_out, "-", f"fit failed ({type(exc).__name__}: {exc}).")
            continue
        rows, predict_s, pixels = _evaluate(run, name, "domains", held_out, model, samples, None, overlays=False)
        run.write_part(name, "domains", held_out, _unit_part(rows, model.fit_s_, predict_s, pixels, model))


def _write_shift_sheet(run: _Run, patches: list[Sample]) -> None:
    """``shift_sheet.jpg``: every shift of two large images and two patches, for a check by eye."""
    from compare.suite.shifts import SHIFTS, apply_shift, contact_sheet

    samples = run.load("large")[:2] + patches[:2]
    try:
        sheet = {shift: [piece for s in samples for piece in apply_shift(shift, s.image, s.mask, seed=run.config.seed)]
                 for shift in SHIFTS}
        contact_sheet(sheet, run.out / "shift_sheet.jpg")
    except Exception as exc:  # a picture problem must not stop the run
        run.error("-", "shift", "-", "-", f"the shift contact sheet failed ({type(exc).__name__}: {exc}).",
                  level="warning")


def _large_names(run: _Run) -> list[str]:
    """Names of the large labelled images, read from the file names only."""
    folder = run.data_dir / "Train_Data"
    if not folder.is_dir():
        return []
    from compare.io.images import list_images

    try:
        return [p.stem for p in list_images(folder) if not p.stem.startswith("train-")]
    except DataError:
        return []


def _check_resume(run: _Run) -> None:
    config_file = run.out / "config.json"
    if not run.config.resume:
        if run.parts.exists():
            progress.write(f"note: {run.out} held an earlier run; starting afresh (use --resume to continue it).")
            shutil.rmtree(run.parts)
            for stale in ("models", "predictions"):
                shutil.rmtree(run.out / stale, ignore_errors=True)
        return
    if config_file.is_file():
        old = json.loads(config_file.read_text())
        mismatched = {k: (old.get(k), v) for k, v in run.config.comparable().items() if old.get(k) != v}
        if mismatched:
            details = ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in mismatched.items())
            raise ValueError(f"--resume: {run.out} was run with other settings ({details}); use the same settings or another --out.")


def collect_parts(out: Path) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Per-image rows and per-unit facts from a run folder's ``parts/``.

    Returns
    -------
    per_image : DataFrame
        One row per (segmenter, protocol, fold, image).
    units : dict
        ``"NAME/PROTOCOL-FOLD" -> part`` without its rows.
    """
    rows, units = [], {}
    # "[!.]": a run killed mid-write leaves its temporary ".NAME.json.*.tmp.json", never a part.
    for path in sorted((Path(out) / "parts").glob("*/[!.]*.json")):
        part = json.loads(path.read_text())
        rows.extend(part.pop("rows"))
        units[f"{path.parent.name}/{path.stem}"] = part
    per_image = pd.DataFrame(rows)
    for column in PER_IMAGE_COLUMNS:
        if column not in per_image:
            per_image[column] = np.nan
    extra = [c for c in per_image.columns if c not in PER_IMAGE_COLUMNS]
    return per_image[list(PER_IMAGE_COLUMNS) + extra], units


def run(config: RunConfig) -> pd.DataFrame:
    """Run the comparison and write the run folder; returns the summary table.

    Parameters
    ----------
    config : RunConfig

    Returns
    -------
    DataFrame
        One row per (segmenter, protocol), as in ``summary.csv``.
    """
    for name in config.segmenters:
        get_spec(name)  # unknown names fail before any work
    unknown = set(config.protocols) - set(PROTOCOLS)
    if unknown:
        raise ValueError(f"Unknown protocol(s) {sorted(unknown)}; choose from {', '.join(PROTOCOLS)}.")
    if "domains" in config.protocols and len(config.domains) < 2:
        raise ValueError("The 'domains' protocol needs two or more labelled data folders; give --data once per domain.")
    started = time.perf_counter()
    run_state = _Run(config)
    run_state.out.mkdir(parents=True, exist_ok=True)
    _check_resume(run_state)
    write_text_atomic(run_state.out / "config.json", json.dumps(asdict(config), indent=2) + "\n")

    patches = run_state.load("patches")
    splits = grouped_kfold(patches, config.folds, config.seed) if "cv" in config.protocols else []
    write_text_atomic(run_state.out / "splits.json", json.dumps({
        "seed": config.seed,
        "folds": [{"fold": i, "test": [patches[j].name for j in test], "groups": sorted({patches[j].group for j in test})}
                  for i, (_, test) in enumerate(splits)],
        "large_training_excludes": sorted({s.name for s in patches if s.group in set(_large_names(run_state))}),
    }, indent=2) + "\n")

    if "shift" in config.protocols:
        _write_shift_sheet(run_state, patches)
    # Wall seconds of each segmenter's stages (fits included), for env.json:
    # where a run's time goes.
    stage_seconds: dict[str, dict[str, float]] = {}
    # The segmenters are fitted on the same folds: what fitting derives from
    # the data alone (white balance, stain anchor and copies, instance
    # settings) is made once per fold (compare.pipeline.preparation).
    with sharing_preparation():
        for name in progress(config.segmenters, desc="segmenters", unit="seg"):
            stages = stage_seconds.setdefault(name, {})
            clock = time.perf_counter()
            if "cv" in config.protocols:
                _run_cv(run_state, name, patches, splits)
                stages["cv and its shifts"] = round(time.perf_counter() - clock, 1)
                clock = time.perf_counter()
            if FINAL_PROTOCOLS & set(config.protocols):
                _run_final(run_state, name, patches, config.protocols)
                elapsed = time.perf_counter() - clock
                if name in run_state.cellavision_s:
                    stages["cellavision"] = run_state.cellavision_s[name]
                    elapsed -= run_state.cellavision_s[name]
                stages["final fit, large, test and their shifts"] = round(elapsed, 1)
                clock = time.perf_counter()
            if len(config.domains) >= 2:
                _run_domains(run_state, name)
                stages["domains"] = round(time.perf_counter() - clock, 1)

    per_image, units = collect_parts(run_state.out)
    summary = summarise(per_image, units, seed=config.seed)
    env = env_facts()
    env["run_seconds"] = round(time.perf_counter() - started, 1)
    env["stage_seconds"] = stage_seconds
    env["resumed"] = config.resume
    env.update(_provenance())
    write_tables(run_state.out, per_image, summary, units, run_state.errors, env)
    return summary
