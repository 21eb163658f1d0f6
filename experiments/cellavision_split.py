"""CellaVision scores split into the tuning half (odd image numbers) and the report half (even).

Thresholds of the post-processing that were chosen on CellaVision were
chosen on the odd-numbered images only; this prints the figures of each half
from a ``compare score`` run, so the gain is read on the even half::

    python -m compare score ../shared/data/cellavision --out /tmp/score_cv
    python experiments/cellavision_split.py /tmp/score_cv/per_image.csv

Columns: whole-cell Dice, exact count (the cell found as one WBC and nothing
else but border cells), nucleus Dice, the median relative error of the N:C
ratio and its Spearman rank correlation with the expert's.
"""

from __future__ import annotations

import argparse

import pandas as pd


def halves(per_image: pd.DataFrame) -> pd.DataFrame:
    """One row per half (``odd``, ``even``, ``all``) with the figures above."""
    rows = per_image.copy()
    number = pd.to_numeric(rows["image"].astype(str).str.extract(r"(\d+)")[0])
    exact = (rows["pred_count"] - rows["border_extra"].fillna(0)) == rows["true_count"]
    out = []
    for name, keep in (("odd", number % 2 == 1), ("even", number % 2 == 0), ("all", number.notna())):
        part = rows[keep]
        out.append({"half": name, "n": int(keep.sum()), "dice": part["dice"].mean(),
                    "dice_border_apart": part.get("dice_border_apart", pd.Series(dtype=float)).mean(),
                    "count_exact": exact[keep].mean(), "nucleus_dice": part["nucleus_dice"].mean(),
                    "nc_rel_error_median": part["nc_rel_error"].median(),
                    "nc_rank_corr": part[["nc_true", "nc_pred"]].corr("spearman").iloc[0, 1]})
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("per_image", help="per_image.csv written by 'python -m compare score'")
    args = parser.parse_args()
    print(halves(pd.read_csv(args.per_image)).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
