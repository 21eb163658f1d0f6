"""How much of a model's CellaVision error is the scale stage's: each crop predicted at the estimated scale and at the true one.

The true scale of a crop is read from its expert mask: the whole cell's
equivalent diameter, passed as ``predict``'s ``wbc_diameter``, so the image
is resized to bring that cell to the model's training WBC diameter.  Every
other stage is the default one.  The gap between the two columns bounds
what any scale rule can still buy; what is left at the true scale is the
segmenter's (and the outline and nucleus stages').

Prints the mean whole-cell Dice, pixel precision and recall for both, and
the images the true scale moves most; writes the per-image rows to OUT.

Run::

    python experiments/scale_oracle.py OUT.csv                        # the shipped U-Net
    python experiments/scale_oracle.py OUT.csv --model results/models/rf
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="CSV of the per-image rows")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped U-Net)")
    args = parser.parse_args()

    from compare.pipeline.model import load_model
    from compare.suite.data import load_domain, resolve_dataset

    model = load_model(args.model) if args.model else load_model()
    samples = load_domain(resolve_dataset("cellavision", fetch=False).path)
    rows = []
    for sample in samples:
        truth = sample.mask > 0
        diameter = 2.0 * np.sqrt(truth.sum() / np.pi)
        for mode, given in (("estimated", None), ("true", diameter)):
            found = model.predict(sample.image, wbc_diameter=given, name=sample.name, cells=False).labels > 0
            overlap = float((found & truth).sum())
            rows.append({"image": sample.name, "scale": mode, "dice": 2 * overlap / (found.sum() + truth.sum()),
                         "precision": overlap / max(found.sum(), 1), "recall": overlap / truth.sum(),
                         "true_factor": model.training_scale_.wbc_diameter / diameter})
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out, index=False)
    print(frame.groupby("scale")[["dice", "precision", "recall"]].mean().round(4).to_string())
    wide = frame.pivot(index="image", columns="scale", values="dice")
    wide["gain"] = wide["true"] - wide["estimated"]
    print(wide.sort_values("gain", ascending=False).head(10).round(3).to_string())


if __name__ == "__main__":
    main()
