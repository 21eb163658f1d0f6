"""Did the scale probe's refinement move its estimate towards the true scale? Read from a run's ``per_image.csv``.

In the shift protocol every true factor (``1 / true_scale``) is one of
:data:`compare.pipeline.scale.PROBE_FACTORS`, so a ``wbc-probe`` estimate that is not
a trial factor was refined by the measured WBC size.  For each refined
estimate this compares its error (``|log(estimate / truth)|``) with the error
of the trial factor it was refined from, split by direction: refinements
that enlarge the image (a WBC that read too small) and those that shrink it.

Usage::

    python experiments/probe_refinement.py results/per_image.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def refinement_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per direction: refined estimates, and the shares that moved towards / away from the truth."""
    from compare.pipeline.scale import PROBE_FACTORS

    probe = rows[(rows.protocol == "shift") & (rows.scale_method == "wbc-probe")].copy()
    trials = np.asarray(PROBE_FACTORS, float)
    probe["trial"] = probe.scale.map(lambda s: trials[np.argmin(np.abs(np.log(trials / s)))])
    refined = probe[~np.isclose(probe.scale, probe.trial, rtol=1e-3)].copy()
    truth = 1.0 / refined.true_scale
    refined["closer"] = np.abs(np.log(refined.scale / truth)) < np.abs(np.log(refined.trial / truth))
    refined["direction"] = np.where(refined.scale > refined.trial, "enlarge", "shrink")
    return refined.groupby("direction").agg(estimates=("closer", "size"), closer=("closer", "mean"),
                                            mean_dice=("dice", "mean"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("per_image", type=Path)
    args = parser.parse_args(argv)
    rows = pd.read_csv(args.per_image)
    print(f"{int(((rows.protocol == 'shift') & (rows.scale_method == 'wbc-probe')).sum())} probe estimates")
    print(refinement_table(rows).round(3).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
