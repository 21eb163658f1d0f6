"""Benchmark: our ``rf`` segmenter against scikit-image's trainable segmentation.

Both run in one process, on the same grouped folds of the 164 SigTuple
patches.  scikit-image's random forest is the same size as ours: the
``rf`` entry's tree count and depth limit (``baselines.factories.RF_TREES`` /
``RF_DEPTH``, 32 trees of unlimited depth) and its ``min_samples_leaf``, so
neither side gets a bigger or a smaller forest.  scikit-image's side
is its documented recipe: ``multiscale_basic_features`` (default settings) on
every pixel, ``fit_segmenter`` on the labelled pixels, ``predict_segmenter``.
Both are given the same number of labelled training pixels (our sampler's
draw; the rest unlabelled, as with sparse annotations): labelling all 2.1 M
pixels makes the forest fit take tens of minutes per fold here.

Reported per method: mean per-image Dice (raw ``prob > 0.5`` / label map, and
"cleaned": holes filled, objects under 800 px removed, as the suite's
evaluator does), mean fit seconds per fold (features included) and predict
megapixels per second (features included, summed over all test patches).

Usage::

    python benchmarks/rf_vs_skimage.py [--folds 5] [--out results/benchmarks]

Writes ``rf_vs_skimage.md`` and ``rf_vs_skimage.json`` into ``--out``.
Timings are wall-clock on whatever else shares the CPU; compare the two
columns of one run, not numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MIN_AREA = 800
SKIMAGE_MIN_SAMPLES_LEAF = 2  # as in baselines.factories.rf_segmenter


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """The suite's Dice (symmetric, so the argument order does not matter)."""
    from compare.evaluation.metrics import dice as suite_dice

    return suite_dice(true, pred)


def clean(binary: np.ndarray) -> np.ndarray:
    """Fill holes and drop objects smaller than MIN_AREA px (the evaluator's cleaning)."""
    from scipy import ndimage as ndi
    from skimage.morphology import remove_small_objects

    return remove_small_objects(ndi.binary_fill_holes(binary), max_size=MIN_AREA - 1)


class SkimageTrainable:
    """scikit-image's trainable segmentation behind a fit / predict interface."""

    def __init__(self, n_estimators: int, max_depth: int | None, n_labelled: int, random_state: int = 0) -> None:
        self.n_estimators, self.max_depth, self.random_state = n_estimators, max_depth, random_state
        self.n_labelled = n_labelled

    @staticmethod
    def features(image: np.ndarray) -> np.ndarray:
        from skimage.feature import multiscale_basic_features

        return multiscale_basic_features(image, channel_axis=-1)

    def fit(self, images, masks):
        from skimage.future import fit_segmenter
        from sklearn.ensemble import RandomForestClassifier

        from tiling.runtime import resolve_n_jobs

        clf = RandomForestClassifier(
            n_estimators=self.n_estimators, max_depth=self.max_depth, min_samples_leaf=SKIMAGE_MIN_SAMPLES_LEAF,
            n_jobs=resolve_n_jobs(), random_state=self.random_state,
        )
        # fit_segmenter takes one feature image; patches of one size stack side by side.
        feats = np.concatenate([self.features(im) for im in images], axis=1)
        labels = np.concatenate([m.astype(np.uint8) + 1 for m in masks], axis=1)  # 1 background, 2 WBC
        labels = self._keep_sample(labels, masks)
        self.clf_ = fit_segmenter(labels, feats, clf)
        return self

    def _keep_sample(self, labels: np.ndarray, masks) -> np.ndarray:
        """Leave only ``n_labelled`` pixels labelled (0 = unlabelled for fit_segmenter).

        The same class-balanced, boundary-weighted draw our ``rf`` trains on
        (band width doubled: this grid is not downsampled), standing in for a
        user's sparse annotations; labelling all 2.1 M pixels makes a
        forest take tens of minutes per fold on 2 cores.
        """
        from baselines.factories import RF_BOUNDARY_WEIGHT, RF_BOUNDARY_WIDTH
        from baselines.sampling import sample_pixels

        picks = sample_pixels(
            [m for m in masks], self.n_labelled, boundary_width=2 * RF_BOUNDARY_WIDTH,
            boundary_weight=RF_BOUNDARY_WEIGHT, rng=np.random.default_rng(self.random_state),
        )
        keep = np.concatenate([np.isin(np.arange(m.size), p).reshape(m.shape) for m, p in zip(masks, picks)], axis=1)
        return np.where(keep, labels, 0).astype(np.uint8)

    def predict_mask(self, image: np.ndarray) -> np.ndarray:
        from skimage.future import predict_segmenter

        return predict_segmenter(self.features(image), self.clf_) == 2


def run(folds: int, on_fold=None) -> dict:
    from baselines.factories import RF_DEPTH, RF_TREES, rf_segmenter
    from compare.suite.data import grouped_kfold, load_patches

    samples = load_patches()
    splits = grouped_kfold(samples, k=folds, seed=0)
    probe = rf_segmenter(random_state=0)
    trees, depth = RF_TREES, RF_DEPTH
    methods = {
        "rf (ours)": lambda: rf_segmenter(random_state=0),
        "skimage trainable": lambda: SkimageTrainable(trees, depth, probe.n_samples, random_state=0),
    }
    acc = {name: {"raw": [], "clean": [], "fit_s": [], "pred_s": 0.0, "n_px": 0} for name in methods}
    # Folds outer, methods inner: the report after any fold compares both
    # methods on the same folds, so a run cut short still means something.
    for fold, (train, test) in enumerate(splits):
        images = [samples[i].image for i in train]
        masks = [samples[i].mask for i in train]
        for name, make in methods.items():
            a = acc[name]
            seg = make()
            start = time.perf_counter()
            seg.fit(images, masks)
            a["fit_s"].append(time.perf_counter() - start)
            for i in test:
                image, true = samples[i].image, samples[i].mask
                start = time.perf_counter()
                if isinstance(seg, SkimageTrainable):
                    pred = seg.predict_mask(image)
                else:
                    pred = seg.predict_proba(image) > 0.5
                a["pred_s"] += time.perf_counter() - start
                a["n_px"] += true.size
                a["raw"].append(dice(pred, true))
                a["clean"].append(dice(clean(pred), true))
            print(f"fold {fold}: {name} fit {a['fit_s'][-1]:.1f} s", flush=True)
        if on_fold is not None:
            on_fold(_report(acc, fold + 1, folds, trees, depth, probe))
    return _report(acc, len(splits), folds, trees, depth, probe)


def _report(acc: dict, done: int, folds: int, trees: int, depth, probe) -> dict:
    rows = {
        name: {
            "dice_raw": float(np.nanmean(a["raw"])),
            "dice_clean": float(np.nanmean(a["clean"])),
            "fit_s_mean": float(np.mean(a["fit_s"])),
            "predict_mpx_s": a["n_px"] / 1e6 / a["pred_s"],
            "n_images": len(a["raw"]),
        }
        for name, a in acc.items()
    }
    return {
        "folds": folds,
        "folds_done": done,
        "forest": {"n_estimators": trees, "max_depth": depth},
        "rf_classifier": type(probe.classifier).__name__,
        "rf_context_classifier": type(probe.context_classifier).__name__ if probe.auto_context else None,
        "rf_params": {k: v for k, v in probe.get_params(deep=False).items()
                      if k not in ("bank", "classifier", "context_classifier")},
        "rf_features": probe.bank_.n_features,
        "n_labelled": probe.n_samples,
        "results": rows,
        "env": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1min_at_end": os.getloadavg()[0],
        },
    }


def to_markdown(report: dict) -> str:
    forest = report["forest"]
    lines = [
        f"# rf vs scikit-image trainable segmentation ({report['folds']}-fold grouped CV, 164 patches)",
        "",
        f"Folds evaluated: {report['folds_done']} of {report['folds']} (same folds for both methods).",
        "",
        f"Ours: {report['rf_classifier']} on {report['rf_features']} features (2x-downsampled grid)"
        + (
            f", decision threshold learned on {report['rf_params']['threshold_folds']} out-of-fold parts "
            "of each training set"
            if report["rf_params"].get("threshold_folds")
            else ""
        )
        + (
            f", then auto-context stage 2 {report['rf_context_classifier']} on those features plus the "
            "out-of-fold stage-1 probability smoothed at "
            f"{report['rf_params']['context_sigmas']} grid px; "
            if report.get("rf_context_classifier")
            else "; "
        )
        + f"scikit-image: RandomForestClassifier ({forest['n_estimators']} trees, max depth {forest['max_depth']}) "
        "on default `multiscale_basic_features` (full resolution), "
        f"`fit_segmenter` on the same number of labelled pixels ({report['n_labelled']:,}, the same "
        "class-balanced boundary-weighted draw; the other pixels are left unlabelled).",
        "",
        "| method | Dice raw | Dice cleaned | fit s / fold | predict Mpx/s (incl. features) |",
        "|---|---|---|---|---|",
    ]
    for name, r in report["results"].items():
        lines.append(
            f"| {name} | {r['dice_raw']:.4f} | {r['dice_clean']:.4f} | {r['fit_s_mean']:.1f} | {r['predict_mpx_s']:.3f} |"
        )
    ours, theirs = report["results"]["rf (ours)"], report["results"]["skimage trainable"]
    lines += [
        "",
        f"Predict speed ratio (ours / skimage): {ours['predict_mpx_s'] / theirs['predict_mpx_s']:.2f}x; "
        f"fit time ratio (skimage / ours): {theirs['fit_s_mean'] / ours['fit_s_mean']:.2f}x.",
        "",
        f"Caveat: wall-clock on {report['env']['cpus']} CPU cores shared with other jobs "
        f"(1-minute load average {report['env']['load_avg_1min_at_end']:.1f} at the end); "
        "compare the two rows of this run, not absolute numbers across runs. "
        "Cleaned = holes filled, objects under 800 px removed.",
        "",
        "Command: `python benchmarks/rf_vs_skimage.py "
        f"--folds {report['folds']}`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5, help="grouped folds (default 5)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"), help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    def write(report: dict) -> str:
        markdown = to_markdown(report)
        (args.out / "rf_vs_skimage.md").write_text(markdown)
        (args.out / "rf_vs_skimage.json").write_text(json.dumps(report, indent=2))
        return markdown

    print(write(run(args.folds, on_fold=write)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
