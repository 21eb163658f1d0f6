"""One U-Net experiment: fold-0 Dice and large-image counts from a single fit.

Trains the ``default`` profile, with JSON overrides, on grouped fold 0's
training patches minus the groups cropped from the 5 large images, then
scores (a) mean per-image Dice on fold 0's held-out patches after the suite's
instance stage and (b) counts / matches / Dice on the 5 large images.  One
fit answers both "is it accurate?" and "does it count whole fields?", at half
the cost of ``benchmarks/unet_profiles.py --large``.

Usage::

    python benchmarks/unet_sampling_experiment.py '{"mosaic": 0.5, "field_edge": 0.25}' TAG

prints one JSON line.  The lines behind the default profile's choices are in
``results/benchmarks/unet_sampling_experiments.jsonl`` (2 CPU cores shared
with another job, so wall times are inflated; compare ``fit_cpu_s``).
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compare.data import grouped_kfold, load_large, load_patches, without_groups  # noqa: E402
from compare.instances import label_truth, match_instances, separate_instances, tune_instance_params  # noqa: E402
from compare.metrics import pixel_scores  # noqa: E402
from unet.segmenter import UNetSegmenter  # noqa: E402


def main() -> None:
    over = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    tag = sys.argv[2] if len(sys.argv) > 2 else "x"
    fold = int(os.environ.get("FOLD", 0))
    patches, large = load_patches(), load_large()
    tr, te = grouped_kfold(patches, 5, 0)[fold]
    excluded = {s.name for s in large}
    train = without_groups([patches[i] for i in tr], excluded)
    seg = UNetSegmenter("default", random_state=0, verbose=0, **over)
    t0 = time.perf_counter()
    seg.fit([s.image for s in train], [s.mask for s in train])
    fit = time.perf_counter() - t0
    params = tune_instance_params([s.mask for s in train])
    d = []; t0 = time.perf_counter(); px = 0
    for i in te:
        s = patches[i]; p = seg.predict_proba(s.image); px += p.size
        lab = separate_instances(p, params); d.append(pixel_scores(s.mask, lab > 0)["dice"])
    tp = time.perf_counter() - t0
    res = []
    tl0 = time.perf_counter(); lpx = 0
    for s in large:
        p = seg.predict_proba(s.image); lpx += p.size
        lab = separate_instances(p, params); m = match_instances(label_truth(s.mask), lab)
        res.append((s.name, m.true_count, int(lab.max()), m.tp, round(pixel_scores(s.mask, lab > 0)["dice"], 3)))
    tl = time.perf_counter() - tl0
    exact = sum(r[1] == r[2] == r[3] for r in res)
    print(json.dumps({"tag": tag, "over": over, "fold": fold, "n_train": len(train), "dice": round(float(np.nanmean(d)), 4),
                      "fit_s": round(fit, 1), "fit_cpu_s": seg.fit_info_.get("fit_cpu_seconds"), "epochs": seg.fit_info_.get("epochs_run"), "best_epoch": seg.fit_info_.get("best_epoch"),
                      "patch_mpx_s": round(px / tp / 1e6, 2), "large_mpx_s": round(lpx / tl / 1e6, 2),
                      "large_exact": exact, "large": res}), flush=True)


if __name__ == "__main__":
    main()
