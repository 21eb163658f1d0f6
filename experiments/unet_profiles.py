"""Benchmark the U-Net profiles side by side on the same grouped CV fold(s), on CPU.

Measures, per profile and fold: training seconds, epochs run, held-out mean
per-image Dice (raw ``prob > 0.5`` and after the suite's cleaning: holes
filled, objects below 800 px removed) and ``predict_proba`` throughput in
megapixels per second on the 5 large training images.  Optionally (``--large``)
trains on the 156 patches not cropped from the large images and checks WBC
counts and Dice there through the whole pipeline (:func:`compare.evaluation.evaluate.evaluate`).
Each profile is fitted as a :class:`compare.pipeline.model.WBCModel` with
:func:`compare.evaluation.evaluate.fit_model`; the per-fold Dice and throughput columns
measure its segmenter alone (``predict_proba`` on the white-balanced images it
was trained on).

Examples
--------
The committed side-by-side comparison (paper epochs capped, see --paper-epochs)::

    python experiments/unet_profiles.py --profiles default,paper --folds 0 \
        --paper-epochs 10 --out results/benchmarks/unet_profiles

Experiments with overrides of the default profile::

    python experiments/unet_profiles.py --profiles default --folds 0 --set epochs=20 --set base_width=8

This script may import ``compare`` (the loader, the folds and the evaluator);
the ``unet`` package itself never does.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

def parse_value(text: str):
    """``"8"`` -> 8, ``"1e-3"`` -> 0.001, ``"true"`` -> True, ``"none"`` -> None, else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def dice(true: np.ndarray, pred: np.ndarray) -> float:
    """The suite's Dice (``compare.evaluation.metrics.dice``)."""
    from compare.evaluation.metrics import dice as suite_dice

    return suite_dice(true, pred)


def throughput(seg, images) -> float:
    """Megapixels per second of ``predict_proba`` over ``images`` (after one warm-up call each shape)."""
    for img in images:  # warm-up: traces every tile shape once
        seg.predict_proba(img)
    t0, c0 = time.perf_counter(), time.process_time()
    mpx = 0.0
    for img in images:
        seg.predict_proba(img)
        mpx += img.shape[0] * img.shape[1] / 1e6
    return mpx / (time.perf_counter() - t0), mpx / (time.process_time() - c0)


def fit_profile(profile, overrides, train, seed):
    """``compare.evaluation.evaluate.fit_model("unet", ...)`` with the registry's U-Net made as ``profile`` with ``overrides``."""
    import compare.pipeline.segmenters as registry
    from compare.evaluation.evaluate import fit_model
    from unet.segmenter import UNetSegmenter

    original = registry.make_segmenter
    # The profile replaces the registry's "unet" factory for this fit only.
    registry.make_segmenter = lambda name, random_state=0: (
        UNetSegmenter(profile, random_state, verbose=2, **overrides) if name == "unet"
        else original(name, random_state))
    try:
        return fit_model("unet", train, seed=seed)
    finally:
        registry.make_segmenter = original


def run_profile(profile, overrides, train, test, large, seed, do_speed):
    from compare.pipeline.instances import clean_mask
    from stain.normalise import white_balance

    model = fit_profile(profile, overrides, train, seed)
    fit_s = model.fit_s_  # the segmenter's fit, without the pipeline's colour and scale facts
    seg = model.segmenter_

    def balanced(samples):
        # The segmenter was trained on white-balanced images; it is judged on them too.
        return [white_balance(s.image, model.background_) if model.normalise_colour else s.image for s in samples]

    test_images = balanced(test)
    t0 = time.perf_counter()
    probs = [seg.predict_proba(image) for image in test_images]
    test_predict_s = time.perf_counter() - t0
    raw = [dice(s.mask, p > 0.5) for s, p in zip(test, probs)]
    clean = [dice(s.mask, clean_mask(p)) for s, p in zip(test, probs)]
    row = {
        "profile": profile,
        "overrides": overrides,
        "fit_s": round(fit_s, 1),
        "fit_cpu_s": seg.fit_info_.get("fit_cpu_seconds"),
        "epochs_run": seg.fit_info_["epochs_run"],
        "best_epoch": seg.fit_info_["best_epoch"],
        "params": seg.fit_info_["params"],
        "device": seg.fit_info_["device"],
        "n_train": len(train),
        "n_test": len(test),
        "dice_raw": round(float(np.nanmean(raw)), 4),
        "dice_clean": round(float(np.nanmean(clean)), 4),
        "dice_clean_min": round(float(np.nanmin(clean)), 4),
        # Per image, so two profiles on one fold can be compared pairwise.
        "dice_clean_per_image": {s.name: round(float(d), 4) for s, d in zip(test, clean)},
        "test_predict_s": round(test_predict_s, 2),
        "history": seg.history_,
    }
    if do_speed:
        wall, cpu = throughput(seg, balanced(large))
        row["predict_mpx_s"], row["predict_mpx_per_cpu_s"] = round(wall, 2), round(cpu, 2)
        # The held-out 128 px patches too: there per-call overhead counts.
        wall, cpu = throughput(seg, test_images)
        row["patch_predict_mpx_s"], row["patch_predict_mpx_per_cpu_s"] = round(wall, 2), round(cpu, 2)
    return row, model


def evaluate_large(model, large):
    """Counts and Dice on the 5 large images through the whole pipeline (:func:`compare.evaluation.evaluate.evaluate`)."""
    from compare.evaluation.evaluate import evaluate

    return [{"image": r["image"], "dice": round(float(r["dice"]), 4), "true_count": r["true_count"],
             "pred_count": r["pred_count"], "tp": r["tp"], "fp": r["fp"], "fn": r["fn"]}
            for r in evaluate(model, large)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="default,paper", help="comma-separated profile names")
    parser.add_argument("--folds", default="0", help="comma-separated fold indices of the grouped 5-fold split, 'all' or 'none'")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="random_state of the segmenters")
    parser.add_argument("--paper-epochs", type=int, default=None,
                        help="cap the paper profile's epochs (its recipe says 50: hours on 2 CPU cores)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override of the default profile (repeatable)")
    parser.add_argument("--large", default="", metavar="PROFILES",
                        help="comma-separated profiles to also run the large-image protocol for")
    parser.add_argument("--no-speed", action="store_true", help="skip the predict throughput measurement")
    parser.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    args = parser.parse_args(argv)

    from compare.suite.data import grouped_kfold, load_set, without_groups

    patches = load_set(None, "patches")
    large = load_set(None, "large")
    splits = grouped_kfold(patches, k=args.k, seed=args.split_seed)
    if args.folds == "none":
        folds = []
    else:
        folds = range(args.k) if args.folds == "all" else [int(f) for f in args.folds.split(",")]
    default_overrides = dict(kv.split("=", 1) for kv in args.set)
    default_overrides = {k: parse_value(v) for k, v in default_overrides.items()}

    rows = []
    for profile in args.profiles.split(","):
        overrides = dict(default_overrides) if profile == "default" else {}
        if profile == "paper" and args.paper_epochs:
            overrides["epochs"] = args.paper_epochs
        for fold in folds:
            train_idx, test_idx = splits[fold]
            row, _ = run_profile(profile, overrides, [patches[i] for i in train_idx],
                                 [patches[i] for i in test_idx], large, args.seed, not args.no_speed)
            row["fold"] = fold
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "history"}), flush=True)
            write_report(args, argv, rows)
        if profile in args.large.split(","):
            train = without_groups(patches, {s.name for s in large})
            row, model = run_profile(profile, overrides, train, [s for s in large], large, args.seed, False)
            row["fold"] = "large"
            row["large"] = evaluate_large(model, large)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "history"}), flush=True)
            write_report(args, argv, rows)
    return 0


def write_report(args, argv, rows) -> None:
    """Write OUT.json (everything, with per-epoch history) and OUT.md (the table); called after every row."""
    if args.out:
        import keras

        env = {
            "command": "python experiments/unet_profiles.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "python": platform.python_version(), "keras": keras.__version__,
            "backend": keras.backend.backend(), "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "note": "timings on a CPU machine shared with other jobs",
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps({"env": env, "rows": rows}, indent=2))
        lines = [f"# U-Net profiles, grouped {args.k}-fold (split seed {args.split_seed})", "",
                 f"Command: `{env['command']}`  ", f"Keras {env['keras']} ({env['backend']}), {env['cpu_count']} CPU cores, "
                 "busy machine.", "",
                 "| profile | fold | overrides | params | epochs run (best) | fit s (wall) | fit CPU s | Dice raw | Dice clean | predict Mpx/s (wall) | Mpx per CPU s |",
                 "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['profile']} | {r['fold']} | {r['overrides'] or ''} | {r['params']:,} | "
                         f"{r['epochs_run']} ({r['best_epoch']}) | {r['fit_s']} | {r['fit_cpu_s']} | {r['dice_raw']} | "
                         f"{r['dice_clean']} | {r.get('predict_mpx_s', '')} | {r.get('predict_mpx_per_cpu_s', '')} |")
        lines += ["", "Predict Mpx/s columns: on the 5 large training images (wall / per CPU s); "
                  "on the fold's held-out 128 px patches below.", "",
                  "| profile | fold | patch predict Mpx/s (wall) | Mpx per CPU s |", "|---|---|---|---|"]
        lines += [f"| {r['profile']} | {r['fold']} | {r.get('patch_predict_mpx_s', '')} | "
                  f"{r.get('patch_predict_mpx_per_cpu_s', '')} |" for r in rows if r['fold'] != "large"]
        lines += _side_by_side(rows)
        for r in rows:
            if "large" in r:
                lines += ["", f"Large images, {r['profile']} (trained on {r['n_train']} patches):", "",
                          "| image | Dice (pipeline) | true | predicted | TP | FP | FN |", "|---|---|---|---|---|---|---|"]
                lines += [f"| {x['image']} | {x.get('dice', x.get('dice_clean'))} | {x['true_count']} | {x['pred_count']} | {x['tp']} | "
                          f"{x['fp']} | {x['fn']} |" for x in r["large"]]
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out.with_suffix('.md')}")


def _side_by_side(rows) -> list[str]:
    """Lines comparing default and paper on each fold both ran: Dice difference and fit-time ratios."""
    lines = []
    by = {(r["profile"], r["fold"]): r for r in rows}
    for (profile, fold), d in by.items():
        p = by.get(("paper", fold))
        if profile != "default" or p is None:
            continue
        lines += ["", f"Side by side on fold {fold}: default Dice clean {d['dice_clean']} vs paper {p['dice_clean']} "
                  f"(difference {d['dice_clean'] - p['dice_clean']:+.4f}); default fit time / paper fit time = "
                  f"{d['fit_s'] / p['fit_s']:.2f} wall, {d['fit_cpu_s'] / p['fit_cpu_s']:.2f} CPU "
                  f"(target: Dice >= paper's in <= 0.25 of its time)."]
        lines += _paired_line(d, p)
    return lines


def _paired_line(d: dict, p: dict) -> list[str]:
    """A Wilcoxon signed-rank test of the two profiles' per-image Dice, when both rows have it."""
    from scipy.stats import wilcoxon

    a, b = d.get("dice_clean_per_image"), p.get("dice_clean_per_image")
    if not a or not b:
        return []
    names = sorted(set(a) & set(b))
    x, y = np.array([a[n] for n in names]), np.array([b[n] for n in names])
    if np.all(x == y):
        return [f"Per image ({len(names)} patches): identical Dice."]
    p_value = wilcoxon(x, y).pvalue
    return [f"Per image ({len(names)} patches): default higher on {int((x > y).sum())}, paper higher on "
            f"{int((x < y).sum())}; Wilcoxon signed-rank p = {p_value:.3f}."]


if __name__ == "__main__":
    raise SystemExit(main())
