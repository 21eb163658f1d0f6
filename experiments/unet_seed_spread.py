"""How much the default U-Net's other-lab figures move between training seeds.

Fits the default U-Net as ``compare run`` fits its final model (every
SigTuple patch not cut from a large image) once per seed, then scores each
fit with the whole pipeline on

* the 5 large SigTuple images (Dice, exact count), and
* the 100 CellaVision crops, zero-shot, split into odd- and even-numbered
  images (the tuning and report halves of docs/experiments.md).

Writes ``OUT/per_image.csv`` (one row per seed and image) and
``OUT/summary.csv`` (one row per seed and set) after every seed, so a run
that is stopped keeps the seeds it finished; with ``--save-models``,
``OUT/models/seedN.zip`` holds each fitted model folder.  A seed already in ``OUT/summary.csv`` is skipped.

Usage::

    python experiments/unet_seed_spread.py OUT --seeds 0 1 2 3 \\
        [--overrides '{"augment": "stain_pale"}'] [--sigtuple DIR] [--cellavision DIR]

About 3 minutes a seed on 2 CPU cores; with ``KERAS_BACKEND=jax`` on a GPU
the fits take seconds and the scoring most of the time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _set_name(row: dict) -> str:
    if row["protocol"] == "large":
        return "sigtuple_large"
    return "cellavision_" + ("odd" if int(row["image"]) % 2 else "even")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--sigtuple", type=Path, default=None)
    parser.add_argument("--overrides", default="{}",
                        help="JSON object of UNetSegmenter overrides for every fit, e.g. '{\"augment\": \"stain_pale\"}'")
    parser.add_argument("--save-models", action="store_true", help="keep each fit as OUT/models/seedN.zip")
    parser.add_argument("--cellavision", type=Path, default=ROOT.parent / "shared" / "data" / "cellavision")
    args = parser.parse_args(argv)

    import json

    from compare.evaluation.evaluate import evaluate, fit_model
    from compare.suite.data import load_domain, load_large, load_patches, without_groups
    from compare.suite.protocols import evaluate_domain

    overrides = json.loads(args.overrides)
    if overrides:
        # The variant replaces the registry's U-Net factory for this process only.
        import compare.pipeline.segmenters as registry
        from unet.segmenter import UNetSegmenter

        original = registry.make_segmenter
        registry.make_segmenter = lambda name, random_state=0: (
            UNetSegmenter("default", random_state, **overrides) if name == "unet" else original(name, random_state))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    patches = load_patches(args.sigtuple)
    large = load_large(args.sigtuple)
    train = without_groups(patches, {s.name for s in large})
    crops = load_domain(args.cellavision)
    summary_path, per_image_path = out / "summary.csv", out / "per_image.csv"
    done = set(pd.read_csv(summary_path).seed) if summary_path.is_file() else set()
    for seed in args.seeds:
        if seed in done:
            continue
        clock = time.perf_counter()
        model = fit_model("unet", train, seed=seed)
        fit_s = time.perf_counter() - clock
        if args.save_models:
            folder = out / "models" / f"seed{seed}"
            model.save(folder)
            shutil.make_archive(str(folder), "zip", folder)
            shutil.rmtree(folder)
        rows = [dict(protocol="large", **r) for r in evaluate(model, large)]
        rows += [dict(protocol="cellavision", **r) for r in evaluate_domain(model, crops)]
        frame = pd.DataFrame(rows)
        frame.insert(0, "seed", seed)
        frame["set"] = [_set_name(r) for r in rows]
        # A WBC cut by the image border that the crop's mask leaves out is not a count error.
        extras = frame["border_extra"].fillna(0) if "border_extra" in frame else 0
        frame["exact"] = frame.pred_count - extras == frame.true_count
        apart = "dice_border_apart" if "dice_border_apart" in frame else "dice"
        table = frame.groupby("set").agg(n=("dice", "size"), dice=("dice", "mean"), apart=(apart, "mean"),
                                         exact=("exact", "mean")).reset_index()
        table.insert(0, "seed", seed)
        table["fit_s"] = round(fit_s, 1)
        table["score_s"] = round(time.perf_counter() - clock - fit_s, 1)
        for path, new in ((per_image_path, frame), (summary_path, table)):
            old = pd.read_csv(path) if path.is_file() else None
            merged = new if old is None else pd.concat([old, new], ignore_index=True)
            tmp = path.with_suffix(".tmp")
            merged.to_csv(tmp, index=False)
            tmp.replace(path)
        print(table.to_string(index=False), flush=True)
    summary = pd.read_csv(summary_path)
    print(summary.groupby("set")[["dice", "apart", "exact"]].agg(["mean", "std", "min", "max"]).round(4).to_string())


if __name__ == "__main__":
    main()
