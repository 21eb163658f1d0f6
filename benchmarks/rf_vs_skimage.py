"""Benchmark: our ``rf`` segmenter against scikit-image's trainable segmentation.

Both run in one process, on the same grouped folds of the 164 SigTuple
patches, with forests of the same size (trees and depth).  scikit-image's side
is its documented recipe: ``multiscale_basic_features`` (default settings) on
every pixel, ``fit_segmenter`` on all labelled pixels, ``predict_segmenter``.

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


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    total = pred.sum() + true.sum()
    return float("nan") if total == 0 else float(2 * (pred & true).sum() / total)


def clean(binary: np.ndarray) -> np.ndarray:
    """Fill holes and drop objects smaller than MIN_AREA px (the evaluator's cleaning)."""
    from scipy import ndimage as ndi
    from skimage.morphology import remove_small_objects

    return remove_small_objects(ndi.binary_fill_holes(binary), max_size=MIN_AREA - 1)


class SkimageTrainable:
    """scikit-image's trainable segmentation behind a fit / predict interface."""

    def __init__(self, n_estimators: int, max_depth: int | None, random_state: int = 0) -> None:
        self.n_estimators, self.max_depth, self.random_state = n_estimators, max_depth, random_state

    @staticmethod
    def features(image: np.ndarray) -> np.ndarray:
        from skimage.feature import multiscale_basic_features

        return multiscale_basic_features(image, channel_axis=-1)

    def fit(self, images, masks):
        from sklearn.ensemble import RandomForestClassifier
        from skimage.future import fit_segmenter

        clf = RandomForestClassifier(
            n_estimators=self.n_estimators, max_depth=self.max_depth, n_jobs=2, random_state=self.random_state
        )
        # fit_segmenter takes one feature image; patches of one size stack side by side.
        feats = np.concatenate([self.features(im) for im in images], axis=1)
        labels = np.concatenate([m.astype(np.uint8) + 1 for m in masks], axis=1)  # 1 background, 2 WBC
        self.clf_ = fit_segmenter(labels, feats, clf)
        return self

    def predict_mask(self, image: np.ndarray) -> np.ndarray:
        from skimage.future import predict_segmenter

        return predict_segmenter(self.features(image), self.clf_) == 2


def run(folds: int) -> dict:
    from baselines.pixel import rf_segmenter
    from compare.data import grouped_kfold, load_patches

    samples = load_patches()
    splits = grouped_kfold(samples, k=folds, seed=0)
    probe = rf_segmenter(random_state=0)
    trees, depth = probe.classifier.n_estimators, probe.classifier.max_depth
    methods = {
        "rf (ours)": lambda: rf_segmenter(random_state=0),
        "skimage trainable": lambda: SkimageTrainable(trees, depth, random_state=0),
    }
    rows = {}
    for name, make in methods.items():
        raw, cleaned, fit_s, pred_s, n_px = [], [], [], 0.0, 0
        for train, test in splits:
            images = [samples[i].image for i in train]
            masks = [samples[i].mask for i in train]
            seg = make()
            start = time.perf_counter()
            seg.fit(images, masks)
            fit_s.append(time.perf_counter() - start)
            for i in test:
                image, true = samples[i].image, samples[i].mask
                start = time.perf_counter()
                if isinstance(seg, SkimageTrainable):
                    pred = seg.predict_mask(image)
                else:
                    pred = seg.predict_proba(image) > 0.5
                pred_s += time.perf_counter() - start
                n_px += true.size
                raw.append(dice(pred, true))
                cleaned.append(dice(clean(pred), true))
            print(f"{name}: fold done, fit {fit_s[-1]:.1f} s", flush=True)
        rows[name] = {
            "dice_raw": float(np.nanmean(raw)),
            "dice_clean": float(np.nanmean(cleaned)),
            "fit_s_mean": float(np.mean(fit_s)),
            "predict_mpx_s": n_px / 1e6 / pred_s,
            "n_images": len(raw),
        }
    return {
        "folds": folds,
        "forest": {"n_estimators": trees, "max_depth": depth},
        "rf_classifier": type(probe.classifier).__name__,
        "rf_features": probe.bank_.n_features,
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
        f"Same forest size: {forest['n_estimators']} trees, max depth {forest['max_depth']}. "
        f"Ours: {report['rf_classifier']} on {report['rf_features']} features (2x-downsampled grid); "
        "scikit-image: RandomForestClassifier on default `multiscale_basic_features`.",
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
    report = run(args.folds)
    markdown = to_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rf_vs_skimage.md").write_text(markdown)
    (args.out / "rf_vs_skimage.json").write_text(json.dumps(report, indent=2))
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
