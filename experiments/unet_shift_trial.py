"""One fit of a segmenter (by default a U-Net variant) on one cv fold, judged in-domain and under the synthetic domain shifts.

Fits ``WBCModel(SEGMENTER)`` (with the given U-Net overrides for ``unet``) on one fold's training
patches (grouped 5-fold, seed 0; fold 0 unless ``--fold``), then scores it through the full pipeline
(white balance, stain gain, scale estimate, nucleus check) on that fold's held-out patches,
on the 5 large images, and on every shift of :mod:`compare.suite.shifts` applied to
the 6 held-out patches that ``compare run``'s shift protocol draws for the fold
(seed 0; lines before ``shift_dice_cv`` was added used the first 6) and the
5 large images.  ``shift_dice_cv`` is over the patches alone, comparable
with the run's ``per_image.csv`` rows of that fold (where the large images
are scored by the final model instead).  Appends one JSON line to
``results/benchmarks/unet_shift_trials.jsonl`` and prints it.

Run, e.g.::

    python experiments/unet_shift_trial.py stain '{"augment": "stain"}' --strength 0.6
    python experiments/unet_shift_trial.py d4 '{"augment": "d4"}'
    python experiments/unet_shift_trial.py rf '{}' --segmenter rf
    python experiments/unet_shift_trial.py rf-copies5 '{}' --segmenter rf --copies 5 --copy-strength 1.0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent.parent / "results" / "benchmarks" / "unet_shift_trials.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tag", help="name of the variant in the output line")
    parser.add_argument("overrides", help="JSON object of UNetSegmenter overrides, e.g. '{\"augment\": \"stain\"}', "
                                          "or of set_params for another segmenter, e.g. '{\"auto_context\": true}'")
    parser.add_argument("--strength", type=float, default=None, help="unet.augment.STAIN_STRENGTH for this fit")
    parser.add_argument("--segmenter", default="unet", help="registry name")
    parser.add_argument("--cv-only", action="store_true",
                        help="score the fold's held-out patches and their shifts only, not the 5 large images")
    parser.add_argument("--save", type=Path, default=None, help="also save the fitted model here")
    parser.add_argument("--copies", type=int, default=None,
                        help="stain-augmented training copies per image (SegmenterSpec.stain_copies) for this fit")
    parser.add_argument("--copy-strength", type=float, default=None,
                        help="SegmenterSpec.stain_copy_strength for this fit")
    parser.add_argument("--stain-anchor", default=None,
                        help="WBCModel(stain_anchor=...): gain, rotate, rotate+gain or none; the registry's "
                             "choice for the segmenter when omitted")
    parser.add_argument("--fold", type=int, default=0, help="which fold of the grouped 5-fold split (seed 0)")
    args = parser.parse_args()

    import compare.pipeline.segmenters as registry
    import unet.augment
    from compare.evaluation.evaluate import evaluate
    from compare.pipeline.model import WBCModel
    from compare.suite.data import grouped_kfold, load_set
    from compare.suite.protocols import evaluate_shifts
    from compare.suite.runner import _shift_subset
    from unet.segmenter import UNetSegmenter

    overrides = json.loads(args.overrides)
    changes = {k: v for k, v in (("stain_copies", args.copies), ("stain_copy_strength", args.copy_strength))
               if v is not None}
    if changes:
        import dataclasses

        registry.REGISTRY[args.segmenter] = dataclasses.replace(registry.REGISTRY[args.segmenter], **changes)
    if args.strength is not None:
        unet.augment.STAIN_STRENGTH = args.strength
    # The variant replaces the registry's factory of the segmenter for this process only.
    original = registry.make_segmenter
    if args.segmenter == "unet":
        registry.make_segmenter = lambda name, random_state=0: (
            UNetSegmenter("default", random_state, **overrides) if name == "unet" else original(name, random_state))
    elif overrides:
        registry.make_segmenter = lambda name, random_state=0: (
            original(name, random_state).set_params(**overrides) if name == args.segmenter
            else original(name, random_state))

    patches, large = load_set(None, "patches"), load_set(None, "large")
    train, test = grouped_kfold(patches, 5, 0)[args.fold]
    held_out = [patches[i] for i in test]
    start = time.perf_counter()
    model = WBCModel(args.segmenter, stain_anchor=args.stain_anchor).fit([patches[i] for i in train])
    fit_s = time.perf_counter() - start
    if args.save:
        model.save(args.save)
    cv = pd.DataFrame(evaluate(model, held_out))
    big = pd.DataFrame(evaluate(model, [] if args.cv_only else large),
                       columns=["dice", "pred_count", "true_count"])
    # The same seeded 6 held-out patches as the shift protocol of `compare run` (seed 0).
    shifted = pd.DataFrame(evaluate_shifts(model, _shift_subset(held_out, 6, args.fold), source="cv")
                           + ([] if args.cv_only else evaluate_shifts(model, large, source="large")))
    exact = shifted.pred_count == shifted.true_count
    line = {
        "tag": args.tag, "segmenter": args.segmenter, "overrides": overrides, "stain_strength": unet.augment.STAIN_STRENGTH,
        "stain_copies": registry.get_spec(args.segmenter).stain_copies,
        "copy_strength": registry.get_spec(args.segmenter).stain_copy_strength,
        "fold": args.fold, "stain_anchor": model.stain_anchor_, "fit_s": round(fit_s, 1), "cv_dice": round(float(cv.dice.mean()), 4),
        "large_dice": round(float(big.dice.mean()), 4),
        "large_exact": round(float((big.pred_count == big.true_count).mean()), 3),
        "shift_dice": {k: round(float(v), 4) for k, v in shifted.groupby("shift").dice.mean().items()},
        "shift_dice_cv": {k: round(float(v), 4)
                          for k, v in shifted[shifted.source == "cv"].groupby("shift").dice.mean().items()},
        "shift_large_exact": round(float(exact[shifted.source == "large"].mean()), 3),
        "worst_shift": str(shifted.groupby("shift").dice.mean().idxmin()),
        "worst_shift_dice": round(float(shifted.groupby("shift").dice.mean().min()), 4),
        "mean_shift_dice": round(float(np.mean(list(shifted.groupby("shift").dice.mean()))), 4),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as handle:
        handle.write(json.dumps(line) + "\n")
    print(json.dumps(line, indent=1))


if __name__ == "__main__":
    main()
