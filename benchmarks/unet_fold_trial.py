"""One U-Net fit on one grouped fold, scored with and without test-time flips and at three thresholds.

Trains the ``default`` profile with JSON overrides on fold ``FOLD``'s training
patches minus the groups cropped from the 5 large images (as the large
protocol trains), then reports the mean per-image Dice of the fold's held-out
patches after the suite's instance stage, for thresholds 0.4 / 0.5 / 0.6,
without (``tta0``) and with (``tta1``) flip averaging, and the milliseconds
per patch of each.  One line of JSON per call.

Usage::

    python benchmarks/unet_fold_trial.py '{"learning_rate": 0.002}' [FOLD] >> results/benchmarks/unet_fold_trials.jsonl
"""

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compare.data import grouped_kfold, load_large, load_patches, without_groups  # noqa: E402
from compare.instances import separate_instances, tune_instance_params  # noqa: E402
from compare.metrics import pixel_scores  # noqa: E402
from unet.segmenter import UNetSegmenter  # noqa: E402


def main() -> None:
    over = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    fold = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    patches, large = load_patches(), load_large()
    train_idx, test_idx = grouped_kfold(patches, 5, 0)[fold]
    train = without_groups([patches[i] for i in train_idx], {s.name for s in large})
    seg = UNetSegmenter("default", random_state=0, verbose=0, **over)
    start = time.perf_counter()
    seg.fit([s.image for s in train], [s.mask for s in train])
    out = {"over": over, "fold": fold, "fit_s": round(time.perf_counter() - start, 1),
           "epochs": seg.fit_info_.get("epochs_run")}
    params = tune_instance_params([s.mask for s in train])
    for tta in (False, True):
        seg.predict_config_ = dataclasses.replace(seg.predict_config_, tta=tta)
        start = time.perf_counter()
        probs = [seg.predict_proba(patches[i].image) for i in test_idx]
        out[f"tta{int(tta)}_ms"] = round((time.perf_counter() - start) / len(test_idx) * 1000, 1)
        for threshold in (0.4, 0.5, 0.6):
            at = dataclasses.replace(params, threshold=threshold)
            dice = [pixel_scores(patches[i].mask, separate_instances(p, at) > 0)["dice"] for i, p in zip(test_idx, probs)]
            out[f"tta{int(tta)}_t{threshold}"] = round(float(np.mean(dice)), 4)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
