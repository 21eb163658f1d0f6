"""Paired tests and multiple-comparison correction give known answers."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from compare.suite.stats import PAIRWISE_COLUMNS, bootstrap_ci, holm, paired_wilcoxon, pairwise_wilcoxon


def test_holm_known_vector():
    # By hand: sorted 0.01, 0.03, 0.04 -> 3*0.01, 2*0.03, 1*0.04 -> running max 0.03, 0.06, 0.06.
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])


def test_holm_caps_at_one_keeps_order_and_skips_nan():
    adjusted = holm([0.5, np.nan, 0.4, 0.001])
    assert np.isnan(adjusted[1])
    # m = 3 valid values: 0.001*3, 0.4*2 = 0.8, max(0.8, 0.5*1) = 0.8
    np.testing.assert_allclose(adjusted[[3, 2, 0]], [0.003, 0.8, 0.8])
    assert np.all(holm([0.9, 0.8]) <= 1.0)


def test_holm_empty_and_single():
    assert holm([]).size == 0
    np.testing.assert_allclose(holm([0.02]), [0.02])


def test_paired_wilcoxon_matches_scipy():
    rng = np.random.default_rng(3)
    a = rng.uniform(0.7, 0.9, 25)
    b = a - rng.normal(0.02, 0.03, 25)
    got = paired_wilcoxon(a, b)
    want = stats.wilcoxon(a, b)
    assert got["n_pairs"] == 25
    assert got["statistic"] == pytest.approx(want.statistic)
    assert got["p"] == pytest.approx(want.pvalue)
    assert got["mean_diff"] == pytest.approx(np.mean(a - b))


def test_paired_wilcoxon_drops_nan_pairs_and_handles_ties():
    a = np.array([0.9, np.nan, 0.8, 0.7, 0.95, 0.6])
    b = np.array([0.8, 0.5, np.nan, 0.6, 0.90, 0.4])
    got = paired_wilcoxon(a, b)
    want = stats.wilcoxon([0.9, 0.7, 0.95, 0.6], [0.8, 0.6, 0.90, 0.4])
    assert got["n_pairs"] == 4
    assert got["p"] == pytest.approx(want.pvalue)
    same = paired_wilcoxon([0.5, 0.6], [0.5, 0.6])
    assert same["p"] == 1.0 and same["median_diff"] == 0.0
    assert np.isnan(paired_wilcoxon([np.nan], [0.1])["p"])


def test_paired_wilcoxon_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="same length"):
        paired_wilcoxon([1.0, 2.0], [1.0])


def _rows(offsets, n=15, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for name, offset in offsets.items():
        for i in range(n):
            rows.append({"segmenter": name, "fold": str(i % 3), "image": f"img-{i}",
                         "dice": 0.8 + offset + rng.normal(0, 0.01)})
    return pd.DataFrame(rows)


def test_pairwise_wilcoxon_table_is_holm_corrected_and_names_winner():
    frame = _rows({"good": 0.1, "bad": 0.0, "same": 0.0})
    table = pairwise_wilcoxon(frame, order=["good", "bad", "same"])
    assert list(table.columns) == list(PAIRWISE_COLUMNS)
    assert list(zip(table.a, table.b)) == [("good", "bad"), ("good", "same"), ("bad", "same")]
    np.testing.assert_allclose(table.p_holm, holm(table.p))
    first = table.iloc[0]
    wide = frame.pivot(index=["fold", "image"], columns="segmenter", values="dice")
    assert first.p == pytest.approx(stats.wilcoxon(wide["good"], wide["bad"]).pvalue)
    assert first.significant and first.winner == "good" and first.a_better == 1.0
    assert table.iloc[2].winner == "" or table.iloc[2].significant


def test_pairwise_wilcoxon_pairs_only_shared_images():
    frame = _rows({"a": 0.05, "b": 0.0}, n=10)
    frame = frame[~((frame.segmenter == "b") & (frame.image == "img-0"))]
    table = pairwise_wilcoxon(frame)
    assert table.iloc[0].n_pairs == 9


def test_pairwise_wilcoxon_one_segmenter_gives_empty_table():
    table = pairwise_wilcoxon(_rows({"only": 0.0}))
    assert table.empty and list(table.columns) == list(PAIRWISE_COLUMNS)


def test_bootstrap_ci_unchanged_contract():
    low, high = bootstrap_ci([0.5, 0.6, 0.7, np.nan], seed=0)
    assert 0.5 <= low <= 0.6 <= high <= 0.7


def test_rank_biserial_effect_size():
    from compare.suite.stats import rank_biserial

    assert rank_biserial([0.1, 0.2, 0.3]) == 1.0
    assert rank_biserial([-0.1, -0.2]) == -1.0
    # Ranks of |d| = 1, 2, 3: (1 + 3 - 2) / 6.
    assert rank_biserial([0.1, -0.2, 0.3, 0.0]) == pytest.approx(2 / 6)
    assert np.isnan(rank_biserial([0.0, np.nan]))
    result = paired_wilcoxon([0.9, 0.8, 0.7], [0.8, 0.85, 0.6])
    assert result["rank_biserial"] == pytest.approx(rank_biserial([0.1, -0.05, 0.1]))


def _shift_rows():
    """Synthetic per_image rows: cv and large, plus two shifts on both sources."""
    rows = []
    for name, base in (("alpha", 0.9), ("beta", 0.8)):
        for i in range(4):
            rows.append({"segmenter": name, "protocol": "cv", "fold": "0", "image": f"p{i}", "dice": base,
                         "iou": base, "precision": base, "recall": base, "true_count": 1, "pred_count": 1,
                         "tp": 1, "fp": 0, "fn": 0, "hd95": 2.0 + i, "surface_dice": 0.9})
        for shift, drop in (("scale_2x", 0.3), ("lab_a_like", 0.05)):
            for source, true, pred in (("cv", 1, 2), ("large", 3, 3), ("large", 2, 1)):
                rows.append({"segmenter": name, "protocol": "shift", "fold": "final", "image": f"{source}-{true}",
                             "shift": shift, "source": source, "dice": base - drop, "iou": 0.5, "precision": 0.5,
                             "recall": 0.5, "true_count": true, "pred_count": pred, "tp": 1, "fp": 0, "fn": 0,
                             "hd95": np.inf if source == "cv" else 4.0, "surface_dice": 0.5})
    return pd.DataFrame(rows)


def test_summary_has_boundary_means_and_one_row_per_shift():
    from compare.suite.summary import SUMMARY_COLUMNS, summarise

    summary = summarise(_shift_rows(), {})
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    cv = summary[(summary.protocol == "cv") & (summary.segmenter == "alpha")].iloc[0]
    assert cv.hd95_mean == pytest.approx(3.5) and cv.hd95_inf == 0 and cv.surface_dice_mean == pytest.approx(0.9)
    assert cv["shift"] == ""
    shifts = summary[summary.protocol == "shift"]
    assert len(shifts) == 4 and set(shifts["shift"]) == {"scale_2x", "lab_a_like"}
    row = shifts[(shifts.segmenter == "beta") & (shifts["shift"] == "scale_2x")].iloc[0]
    assert row.dice_mean == pytest.approx(0.5) and row.n_images == 3
    # Counts only from the large source: one exact (3/3) of two; the cv patch (1 -> 2) is ignored.
    assert row.count_exact == pytest.approx(0.5) and row.count_mae == pytest.approx(0.5)
    # The infinite HD95 (an empty mask) is counted, not averaged.
    assert row.hd95_mean == pytest.approx(4.0) and row.hd95_inf == 1


def test_summary_of_a_run_without_boundary_or_shift_columns():
    from compare.suite.summary import summarise

    old = _shift_rows()
    old = old[old.protocol == "cv"].drop(columns=["hd95", "surface_dice", "shift", "source"])
    summary = summarise(old, {})
    assert summary["hd95_mean"].isna().all() and summary["surface_dice_mean"].isna().all()
    assert (summary["shift"] == "").all() and summary["dice_mean"].notna().all()
