"""One U-Net fit on one grouped fold, scored through the pipeline with and without test-time flips and at three thresholds.

Fits ``WBCModel("unet")`` (the ``default`` profile with JSON overrides) with
:func:`compare.evaluation.evaluate.fit_model` on fold ``FOLD``'s training patches minus
the groups cropped from the 5 large images (as the large protocol trains),
then reports the mean per-image Dice that :func:`compare.evaluation.evaluate.evaluate`
gives on the fold's held-out patches (white balance, scale estimate,
segmenter, instance stage, nucleus check), for instance thresholds 0.4 / 0.5
/ 0.6, without (``tta0``) and with (``tta1``) flip averaging, and the
milliseconds per patch of the whole prediction, and the device the Keras
backend computed on (:func:`compare.pipeline.device.current_device`).  One line of
JSON per call.

Usage::

    python experiments/unet_fold_trial.py '{"learning_rate": 0.002}' [FOLD] >> results/benchmarks/unet_fold_trials.jsonl
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="?", default="{}", help="JSON object of UNetSegmenter overrides")
    parser.add_argument("fold", nargs="?", type=int, default=0, help="fold of the grouped 5-fold split (seed 0)")
    args = parser.parse_args()

    import compare.pipeline.segmenters as registry
    from compare.evaluation.evaluate import evaluate, fit_model
    from compare.suite.data import grouped_kfold, load_set, without_groups
    from unet.segmenter import UNetSegmenter

    over, fold = json.loads(args.overrides), args.fold
    # The variant replaces the registry's "unet" factory for this process only.
    original = registry.make_segmenter
    registry.make_segmenter = lambda name, random_state=0: (
        UNetSegmenter("default", random_state, verbose=0, **over) if name == "unet" else original(name, random_state))

    patches, large = load_set(None, "patches"), load_set(None, "large")
    train_idx, test_idx = grouped_kfold(patches, 5, 0)[fold]
    train = without_groups([patches[i] for i in train_idx], {s.name for s in large})
    held_out = [patches[i] for i in test_idx]
    start = time.perf_counter()
    model = fit_model("unet", train, seed=0)
    seg = model.segmenter_
    from compare.pipeline.device import current_device

    out = {"over": over, "fold": fold, "device": current_device(), "fit_s": round(time.perf_counter() - start, 1),
           "epochs": seg.fit_info_.get("epochs_run")}
    params = model.params_
    for tta in (False, True):
        seg.predict_config_ = dataclasses.replace(seg.predict_config_, tta=tta)
        seconds = []
        for threshold in (0.4, 0.5, 0.6):
            model.params_ = dataclasses.replace(params, threshold=threshold)
            rows = evaluate(model, held_out)
            seconds += [r["predict_s"] for r in rows]
            out[f"tta{int(tta)}_t{threshold}"] = round(float(np.mean([r["dice"] for r in rows])), 4)
        out[f"tta{int(tta)}_ms"] = round(float(np.mean(seconds)) * 1000, 1)
    model.params_ = params
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
