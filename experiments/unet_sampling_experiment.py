"""One U-Net experiment: fold-0 Dice and large-image counts from a single fit.

Fits ``WBCModel("unet")`` (the ``default`` profile with JSON overrides) with
:func:`compare.evaluation.evaluate.fit_model` on grouped fold 0's training patches minus
the groups cropped from the 5 large images, then scores with
:func:`compare.evaluation.evaluate.evaluate` (the whole pipeline: white balance, scale
estimate, segmenter, instance stage, nucleus check) (a) mean per-image Dice
on fold 0's held-out patches and (b) counts / matches / Dice on the 5 large
images, with the pipeline's megapixels per second on each.  One fit answers
both "is it accurate?" and "does it count whole fields?", at half the cost
of ``experiments/unet_profiles.py --large``.

Usage::

    python experiments/unet_sampling_experiment.py '{"mosaic": 0.5, "field_edge": 0.25}' TAG

prints one JSON line (``FOLD=k`` in the environment picks another fold).  The
lines behind the default profile's choices are in
``results/benchmarks/unet_sampling_experiments.jsonl`` (2 CPU cores shared
with another job, so wall times are inflated; compare ``fit_cpu_s``); lines
written before the pipeline existed scored ``predict_proba`` + instances only.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _mpx_s(rows: list[dict]) -> float:
    return round(sum(r["height"] * r["width"] for r in rows) / 1e6 / sum(r["predict_s"] for r in rows), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="?", default="{}", help="JSON object of UNetSegmenter overrides")
    parser.add_argument("tag", nargs="?", default="x", help="name of the experiment in the output line")
    args = parser.parse_args()

    import compare.pipeline.segmenters as registry
    from compare.evaluation.evaluate import evaluate, fit_model
    from compare.suite.data import grouped_kfold, load_set, without_groups
    from unet.segmenter import UNetSegmenter

    over, tag = json.loads(args.overrides), args.tag
    fold = int(os.environ.get("FOLD", 0))
    # The variant replaces the registry's "unet" factory for this process only.
    original = registry.make_segmenter
    registry.make_segmenter = lambda name, random_state=0: (
        UNetSegmenter("default", random_state, verbose=0, **over) if name == "unet" else original(name, random_state))

    patches, large = load_set(None, "patches"), load_set(None, "large")
    tr, te = grouped_kfold(patches, 5, 0)[fold]
    train = without_groups([patches[i] for i in tr], {s.name for s in large})
    t0 = time.perf_counter()
    model = fit_model("unet", train, seed=0)
    fit = time.perf_counter() - t0
    info = model.segmenter_.fit_info_
    cv = evaluate(model, [patches[i] for i in te])
    big = evaluate(model, large)
    res = [(r["image"], r["true_count"], r["pred_count"], r["tp"], round(r["dice"], 3)) for r in big]
    exact = sum(r[1] == r[2] == r[3] for r in res)
    print(json.dumps({"tag": tag, "over": over, "fold": fold, "n_train": len(train),
                      "dice": round(float(np.nanmean([r["dice"] for r in cv])), 4),
                      "fit_s": round(fit, 1), "fit_cpu_s": info.get("fit_cpu_seconds"), "epochs": info.get("epochs_run"),
                      "best_epoch": info.get("best_epoch"), "patch_mpx_s": _mpx_s(cv), "large_mpx_s": _mpx_s(big),
                      "large_exact": exact, "large": res}), flush=True)


if __name__ == "__main__":
    main()
