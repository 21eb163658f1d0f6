"""A fine-tuning option judged on CellaVision: chosen on some splits of ten crops, reported on others.

Fine-tunes the shipped U-Net (``compare fit --from default``'s code,
:func:`compare.pipeline.finetune.fit_model`) on 10 CellaVision crops and
scores it with default settings on the other 90, for each split given:

* ``tenth``: images 001, 011, ..., 091 (docs/fine_tuning.md measures it);
* ``drawK``: the K-th seeded random draw of 10
  (:func:`benchmarks.learning_curve.draw_indices`).  Draws 0-2 are the
  learning curve's own, on which a gain is reported; an option is chosen
  on ``tenth`` and draws 3-5.

Each line of the JSON-lines output holds the variant's tag, the split, the
fit settings, whole-cell Dice (and with border extras apart), nucleus Dice,
exact counts and the fit's epochs, seconds and validation images.

Run::

    python experiments/finetune_variant.py default OUT.jsonl                    # all 10 trained on
    python experiments/finetune_variant.py held-out OUT.jsonl --val-share 0.15  # 2 held out, best epoch
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # learning_curve's draws and scoring
SPLITS = ("tenth", "draw3", "draw4", "draw5", "draw0", "draw1", "draw2")


def split_indices(split: str, n_total: int) -> tuple[list[int], int]:
    """The indices of the 10 training crops of ``split`` and the seed its fit uses."""
    from learning_curve import draw_indices

    if split == "tenth":
        return list(range(0, n_total, 10)), 0
    draw = int(split.removeprefix("draw"))
    return draw_indices(n_total, 10, draw), draw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tag", help="name of the variant in the output lines")
    parser.add_argument("out", type=Path, help="JSON-lines file the results are appended to")
    parser.add_argument("--splits", type=lambda t: t.split(","), default=list(SPLITS))
    parser.add_argument("--val-share", type=float, default=None,
                        help="compare fit's --val-share for the fine-tune (default: its own)")
    parser.add_argument("--epochs", type=int, default=None, help="compare fit's --epochs (default: its own)")
    parser.add_argument("--save", type=Path, default=None,
                        help="also save each fitted model as SAVE/SPLIT and its per-image rows as SAVE/SPLIT.csv")
    args = parser.parse_args()

    from learning_curve import _score

    from compare.pipeline.finetune import FitSettings, fit_model
    from compare.pipeline.model import load_model
    from compare.suite.data import load_domain, resolve_dataset

    samples = load_domain(resolve_dataset("cellavision", fetch=False).path)
    start = load_model()
    for split in args.splits:
        chosen, seed = split_indices(split, len(samples))
        train = [samples[i] for i in chosen]
        test = [s for i, s in enumerate(samples) if i not in set(chosen)]
        fit = FitSettings(random_state=seed, val_share=args.val_share, epochs=args.epochs)
        t0 = time.perf_counter()
        model, _ = fit_model("unet", [s.image for s in train], [s.mask for s in train], start=start, fit=fit)
        fit_s = time.perf_counter() - t0
        scores = _score(model, test, "cellavision", rows_to=None if args.save is None else args.save / f"{split}.csv")
        if args.save is not None:
            model.save(args.save / split)
        info = getattr(model.segmenter_, "fit_info_", {}) or {}
        line = {"tag": args.tag, "split": split, "val_share": args.val_share, "epochs": args.epochs,
                **{k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in scores.items()},
                "fit_s": round(fit_s, 1), "epochs_run": info.get("epochs_run"), "best_epoch": info.get("best_epoch"),
                "n_val": info.get("n_val"), "train_images": [s.name for s in train]}
        with args.out.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
        print(json.dumps({k: line[k] for k in ("tag", "split", "dice", "dice_border_apart", "nucleus_dice",
                                               "count_exact", "fit_s", "best_epoch")}), flush=True)


if __name__ == "__main__":
    main()
