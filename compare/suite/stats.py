"""Statistics for the summary and the report: bootstrap intervals, paired tests."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

__all__ = ["bootstrap_ci", "holm", "rank_biserial", "paired_wilcoxon", "pairwise_wilcoxon", "PAIRWISE_COLUMNS"]

#: Columns of :func:`pairwise_wilcoxon`'s table.
PAIRWISE_COLUMNS = ("a", "b", "n_pairs", "mean_a", "mean_b", "mean_diff", "median_diff", "a_better",
                    "rank_biserial", "statistic", "p", "p_holm", "significant", "winner")


def bootstrap_ci(values, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean over images.

    Parameters
    ----------
    values : array_like, shape (n,)
        Per-image scores; NaN entries (undefined scores) are left out.
    n_boot : int, keyword-only
        Resamples.
    level : float, keyword-only
        Coverage, e.g. 0.95.
    seed : int, keyword-only
        Seed of the resampling, so intervals are reproducible.

    Returns
    -------
    (float, float)
        Lower and upper bound; NaN for no values, the value itself for one.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of p-values for multiple comparisons.

    The k-th smallest of m p-values is multiplied by ``m - k + 1``; a running
    maximum keeps the adjusted values in the same order as the raw ones, and
    they are capped at 1.  Rejecting where the adjusted value is below
    ``alpha`` controls the family-wise error rate at ``alpha``.

    Parameters
    ----------
    pvalues : array_like, shape (m,)
        Raw p-values; NaN entries (tests that could not be made) stay NaN and
        do not count towards m.

    Returns
    -------
    ndarray, shape (m,), float
        Adjusted p-values in the input order.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    if valid.size == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    m = order.size
    scaled = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def rank_biserial(diff) -> float:
    """Matched-pairs rank-biserial correlation, the effect size of the Wilcoxon signed-rank test.

    ``(R+ - R-) / (R+ + R-)`` where ``R+`` and ``R-`` are the sums of the
    ranks of ``|diff|`` over the positive and the negative differences
    (Kerby, 2014); zero differences are dropped, as the test drops them.
    +1: every image favours a; -1: every image favours b; 0: balanced.

    Parameters
    ----------
    diff : array_like, shape (n,)
        Paired differences ``a - b``; NaN entries are left out.

    Returns
    -------
    float
        In [-1, 1]; NaN when no difference is non-zero.

    Examples
    --------
    >>> rank_biserial([0.1, 0.2, 0.3])
    1.0
    >>> rank_biserial([1.0, -2.0])
    -0.3333333333333333
    """
    from scipy.stats import rankdata

    d = np.asarray(diff, dtype=float)
    d = d[~np.isnan(d) & (d != 0)]
    if d.size == 0:
        return float("nan")
    ranks = rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def paired_wilcoxon(a, b) -> dict[str, float]:
    """Wilcoxon signed-rank test of two paired score vectors (two-sided).

    Parameters
    ----------
    a, b : array_like, shape (n,)
        Scores of two methods on the same n images, in the same order.
        Pairs where either is NaN are left out.

    Returns
    -------
    dict
        ``n_pairs``, ``mean_diff`` and ``median_diff`` (a - b),
        ``rank_biserial`` (:func:`rank_biserial`, the effect size),
        ``statistic`` and ``p`` from :func:`scipy.stats.wilcoxon`.  With no pairs the test
        and differences are NaN; when every difference is zero there is no
        evidence of a difference, so ``p`` is 1.
    """
    from scipy.stats import wilcoxon

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"Paired scores must have the same length, got {x.shape[0]} and {y.shape[0]}.")
    keep = ~(np.isnan(x) | np.isnan(y))
    diff = x[keep] - y[keep]
    result = {"n_pairs": int(diff.size), "mean_diff": float("nan"), "median_diff": float("nan"),
              "rank_biserial": float("nan"), "statistic": float("nan"), "p": float("nan")}
    if diff.size == 0:
        return result
    result.update(mean_diff=float(diff.mean()), median_diff=float(np.median(diff)), rank_biserial=rank_biserial(diff))
    if not np.any(diff != 0):
        result.update(statistic=0.0, p=1.0)
        return result
    test = wilcoxon(x[keep], y[keep])
    result.update(statistic=float(test.statistic), p=float(test.pvalue))
    return result


def pairwise_wilcoxon(per_image: pd.DataFrame, *, score: str = "dice", key=("fold", "image"),
                      alpha: float = 0.05, order: list[str] | None = None) -> pd.DataFrame:
    """Paired Wilcoxon tests between every two segmenters, Holm-corrected.

    Images are paired by ``key`` so that each test compares the two
    segmenters on exactly the images both scored.

    Parameters
    ----------
    per_image : DataFrame
        Rows of one protocol of ``per_image.csv``: ``segmenter``, ``score``
        and the ``key`` columns.
    score : str, keyword-only
        Column to compare.
    key : tuple of str, keyword-only
        Columns that identify an image.
    alpha : float, keyword-only
        Family-wise level for the ``significant`` column.
    order : list of str, optional, keyword-only
        Segmenters in the order pairs are listed (e.g. best first); by default
        the order of first appearance.

    Returns
    -------
    DataFrame with :data:`PAIRWISE_COLUMNS`; one row per pair ``a < b`` in
    ``order``.  ``winner`` names the segmenter with the higher mean where the
    difference is significant, else is empty.
    """
    names = order or list(dict.fromkeys(per_image["segmenter"]))
    wide = (per_image.assign(_score=pd.to_numeric(per_image[score], errors="coerce"))
            .pivot_table(index=list(key), columns="segmenter", values="_score", aggfunc="mean", dropna=False))
    rows = []
    for a, b in combinations(names, 2):
        if a not in wide or b not in wide:
            continue
        test = paired_wilcoxon(wide[a].to_numpy(), wide[b].to_numpy())
        both = wide[[a, b]].dropna()
        rows.append({"a": a, "b": b, "mean_a": float(both[a].mean()) if len(both) else np.nan,
                     "mean_b": float(both[b].mean()) if len(both) else np.nan,
                     "a_better": float((both[a] > both[b]).mean()) if len(both) else np.nan, **test})
    table = pd.DataFrame(rows, columns=[c for c in PAIRWISE_COLUMNS if c not in ("p_holm", "significant", "winner")])
    table["p_holm"] = holm(table["p"].to_numpy()) if len(table) else pd.Series(dtype=float)
    table["significant"] = table["p_holm"] < alpha
    table["winner"] = [
        (row.a if row.mean_diff > 0 else row.b) if row.significant and row.mean_diff != 0 else ""
        for row in table.itertuples()
    ]
    return table[list(PAIRWISE_COLUMNS)]
