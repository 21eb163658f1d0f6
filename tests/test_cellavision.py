"""A second lab: three-level masks (whole cell + nucleus), nucleus scores, border extras, the zero-shot protocol.

Everything runs on tiny synthetic folders in the CellaVision layout
(``Dataset 2/NNN.bmp`` with ``NNN.png``: 0 background, 128 cytoplasm, 255
nucleus), so the default test run stays fast.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from compare.commands.score import score_folders
from compare.evaluation.metrics import border_extra_ids, border_extras, dice, dice_border_apart, nucleus_scores
from compare.io.images import Sample, read_mask, read_mask_levels, three_levels
from compare.pipeline.model import WBCModel
from compare.suite.data import load_domain, resolve_dataset
from compare.suite.protocols import domain_scores, evaluate_domain
from compare.suite.summary import count_error, nucleus_summary
from tests.synthetic import disk, smear

NUCLEUS = (70, 30, 110)


def levels_of(cell: np.ndarray, nucleus: np.ndarray) -> np.ndarray:
    """The three-level mask: 0 background, 128 cytoplasm, 255 nucleus."""
    return np.where(nucleus & cell, 255, np.where(cell, 128, 0)).astype(np.uint8)


def write_cellavision(root: Path, n: int = 3, size: int = 96, seed: int = 0, neighbour: bool = True) -> Path:
    """A tiny folder in the CellaVision layout: one centred WBC per crop with its nucleus.

    The first crop also shows a partial WBC cut by the border that its mask
    leaves out, as some CellaVision crops do; every mask holds a few stray
    low grey values, as the published ones do.
    """
    folder = root / "Dataset 2"
    folder.mkdir(parents=True)
    for i in range(n):
        centre = (size / 2, size / 2)
        image, cell = smear((size, size), [centre], radius=20, seed=seed + i, n_red=4)
        nucleus = disk((size, size), centre, 9 + i % 3)
        image[nucleus] = NUCLEUS
        if neighbour and i == 0:
            image[disk((size, size), (size / 2, -4), 16)] = (110, 70, 160)
        levels = levels_of(cell, nucleus)
        levels[0, :3] = (2, 7, 25)
        Image.fromarray(image).save(folder / f"{i + 1:03d}.bmp")
        Image.fromarray(levels).save(folder / f"{i + 1:03d}.png")
    (root / "Class Labels of Dataset 2.csv").write_text("image ID,class\n" + "".join(f"{i + 1},2\n" for i in range(n)))
    return root


@pytest.fixture(scope="module")
def cellavision_dir(tmp_path_factory) -> Path:
    return write_cellavision(tmp_path_factory.mktemp("cv") / "cellavision")


# -- reading three-level masks ------------------------------------------------------

def test_the_cellavision_layout_gives_whole_cell_and_nucleus(cellavision_dir):
    samples = load_domain(cellavision_dir)
    assert [s.name for s in samples] == ["001", "002", "003"]
    for s in samples:
        grey = np.asarray(Image.open(s.path.with_suffix(".png")))
        assert np.array_equal(s.mask, grey >= 64) and np.array_equal(s.nucleus, grey >= 192)
        assert s.nucleus.any() and (s.mask & ~s.nucleus).any() and not (s.nucleus & ~s.mask).any()
    assert {s.group.split("/")[0] for s in samples} == {"cellavision"}


def test_a_generic_folder_with_three_level_png_masks_gives_the_nucleus(tmp_path):
    (tmp_path / "lab" / "images").mkdir(parents=True)
    (tmp_path / "lab" / "masks").mkdir()
    image, cell = smear((64, 64), [(32, 32)], radius=14, seed=1)
    nucleus = disk((64, 64), (32, 32), 6)
    Image.fromarray(image).save(tmp_path / "lab" / "images" / "a.png")
    Image.fromarray(levels_of(cell, nucleus)).save(tmp_path / "lab" / "masks" / "a.png")
    (sample,) = load_domain(tmp_path / "lab")
    assert np.array_equal(sample.mask, cell) and np.array_equal(sample.nucleus, nucleus & cell)


def test_sigtuple_masks_stay_binary_without_a_nucleus(sigtuple_dir):
    samples = load_domain(sigtuple_dir)
    assert samples and all(s.nucleus is None for s in samples)
    for s in samples[:3]:
        path = s.path.with_name(f"{s.path.stem}-mask.png")
        assert np.array_equal(s.mask, np.asarray(Image.open(path).convert("L")) >= 128)


def test_three_levels_are_recognised_strictly():
    cell = disk((40, 40), (20, 20), 12)
    nucleus = disk((40, 40), (20, 20), 5)
    exact = levels_of(cell, nucleus)
    assert three_levels(exact)
    binary = (cell * 255).astype(np.uint8)
    assert not three_levels(binary)
    # A binary mask with soft edges holds levels between 64 and 255: never three-level,
    # even where some edge pixels are exactly 128.
    soft = binary.copy()
    soft[cell & ~disk((40, 40), (20, 20), 11)] = 128
    soft[cell & ~disk((40, 40), (20, 20), 11.5)] = 140
    assert not three_levels(soft)
    noisy = exact.copy()
    noisy[nucleus] = 253  # JPEG-like noise on the top level
    assert not three_levels(noisy)
    # A stray mid-grey pixel in a binary mask is not a cytoplasm.
    stray = binary.copy()
    stray[20, 20] = 128
    assert not three_levels(stray)


def test_a_three_level_mask_stored_as_jpeg_is_read_as_binary(tmp_path):
    levels = levels_of(disk((48, 48), (24, 24), 14), disk((48, 48), (24, 24), 6))
    Image.fromarray(levels).save(tmp_path / "m.jpg", quality=95)
    Image.fromarray(levels).save(tmp_path / "m.png")
    mask, nucleus = read_mask_levels(tmp_path / "m.jpg")
    assert nucleus is None and np.array_equal(mask, np.asarray(Image.open(tmp_path / "m.jpg")) >= 128)
    mask, nucleus = read_mask_levels(tmp_path / "m.png")
    assert nucleus is not None and np.array_equal(mask, levels >= 64)
    assert np.array_equal(read_mask(tmp_path / "m.png"), levels >= 64)


def test_the_resolver_finds_cellavision_by_its_variable_beside_the_project_and_in_the_cache(tmp_path, monkeypatch):
    from compare.suite import data

    env = write_cellavision(tmp_path / "env", n=1)
    monkeypatch.setenv("WBC_CELLAVISION", str(env))
    got = resolve_dataset("cellavision")
    assert (got.path, got.source, got.dataset) == (env, "WBC_CELLAVISION", "cellavision")
    assert "WBC_CELLAVISION" in got.describe()
    monkeypatch.delenv("WBC_CELLAVISION")
    monkeypatch.setattr(data, "project_root", lambda: tmp_path / "work" / "main")
    shared = write_cellavision(tmp_path / "work" / "shared" / "data" / "cellavision", n=1)
    got = resolve_dataset("cellavision")
    assert (got.path, got.source) == (shared, "shared") and "../shared/data/cellavision" in got.describe()
    monkeypatch.setattr(data, "project_root", lambda: tmp_path / "elsewhere" / "main")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    got = resolve_dataset("cellavision", fetch=False)
    assert (got.path, got.source) == (tmp_path / "xdg" / "wbc-compare" / "cellavision", "cache")


# -- nucleus scores and border extras ------------------------------------------------

def test_nucleus_scores_use_the_predicted_cell_that_overlaps_most():
    cell = disk((60, 60), (30, 30), 15)
    nucleus = disk((60, 60), (30, 30), 7.5)
    labels = np.zeros((60, 60), int)
    labels[cell] = 2
    labels[disk((60, 60), (30, 50), 6) & ~cell] = 1  # a small other object
    nuclei = np.where(disk((60, 60), (30, 30), 9) & cell, 2, 0)
    scores = nucleus_scores(cell, nucleus, labels, nuclei)
    # N:C is nucleus over cytoplasm, as the cell table's nc_ratio.
    nc_true = nucleus.sum() / (cell.sum() - nucleus.sum())
    nc_pred = (nuclei == 2).sum() / ((labels == 2).sum() - (nuclei == 2).sum())
    assert scores["nc_true"] == pytest.approx(nc_true) and scores["nc_pred"] == pytest.approx(nc_pred)
    assert scores["nc_rel_error"] == pytest.approx(abs(nc_pred - nc_true) / nc_true)
    assert 0.5 < scores["nucleus_dice"] < 1
    # No nucleus found: N:C 0, error 100 %; no cell found: N:C undefined.
    assert nucleus_scores(cell, nucleus, labels, np.zeros_like(labels))["nc_rel_error"] == pytest.approx(1.0)
    missed = nucleus_scores(cell, nucleus, np.zeros_like(labels), np.zeros_like(labels))
    assert np.isnan(missed["nc_pred"]) and np.isnan(missed["nc_rel_error"]) and missed["nucleus_dice"] == 0.0


def test_border_extras_are_objects_on_the_border_that_miss_the_true_cell():
    truth = disk((50, 50), (25, 25), 10)
    labels = np.zeros((50, 50), int)
    labels[truth] = 1
    labels[0:5, 0:5] = 2  # a partial neighbour at the border
    labels[20:24, 45:50] = 3  # touches the border, misses the cell
    labels[40:44, 20:24] = 4  # inside the field: a real false positive
    labels[24:27, 0:18] = 5  # on the border but overlapping the cell: not an extra
    assert border_extras(truth, labels) == 2
    assert border_extra_ids(truth, labels).tolist() == [2, 3]
    # Without the two extras, only the false object inside the field and the
    # strip beyond the cell of object 5 keep the Dice below 1.
    kept = np.isin(labels, [1, 4, 5])
    assert dice_border_apart(truth, labels) == pytest.approx(dice(truth, kept))
    assert dice(truth, labels > 0) < dice_border_apart(truth, labels) < 1.0
    rows = pd.DataFrame({"pred_count": [5, 1], "true_count": [1, 1], "border_extra": [2, np.nan]})
    assert count_error(rows).tolist() == [2, 0]


def test_domain_scores_take_the_prediction_nuclei_or_find_them():
    image, cell = smear((64, 64), [(32, 32)], radius=14, seed=2)
    nucleus = disk((64, 64), (32, 32), 6)
    image[nucleus] = NUCLEUS
    sample = Sample("a", image, cell, "g", Path("a.png"), nucleus)
    labels = cell.astype(np.int32)
    given = domain_scores(sample, SimpleNamespace(labels=labels, nuclei=np.where(nucleus, 1, 0)))
    assert given["nucleus_dice"] == 1.0 and given["nc_rel_error"] == 0.0 and given["border_extra"] == 0
    found = domain_scores(sample, SimpleNamespace(labels=labels))
    assert found["nucleus_dice"] > 0.8
    assert set(domain_scores(Sample("b", image, cell, "g", Path("b.png")), SimpleNamespace(labels=labels))) == {
        "border_extra", "dice_border_apart"}


def test_nucleus_summary_gives_dice_ci_median_error_and_rank_correlation():
    rows = pd.DataFrame({"nucleus_dice": [0.9, 0.8, 0.7, np.nan], "nc_true": [0.2, 0.4, 0.6, 0.5],
                         "nc_pred": [0.25, 0.35, 0.7, np.nan], "nc_rel_error": [0.25, 0.125, 1 / 6, np.nan]})
    got = nucleus_summary(rows)
    assert got["nucleus_dice_mean"] == pytest.approx(0.8)
    assert got["nucleus_dice_ci_low"] <= 0.8 <= got["nucleus_dice_ci_high"]
    assert got["nc_rel_error_median"] == pytest.approx(1 / 6) and got["nc_rank_corr"] == pytest.approx(1.0)
    assert got["nucleus_found"] == pytest.approx(0.75)  # no WBC on the cell: no nucleus found
    rows.loc[3, ["nucleus_dice", "nc_pred", "nc_rel_error"]] = (0.0, 0.0, 1.0)  # a missed nucleus
    got = nucleus_summary(rows)
    assert got["nucleus_found"] == pytest.approx(0.75) and got["nc_rel_error_median"] == pytest.approx(1 / 6)
    assert got["nucleus_dice_mean"] == pytest.approx(0.6)
    assert nucleus_summary(pd.DataFrame({"dice": [0.9]})) == {}


# -- score and the protocol ----------------------------------------------------------

def test_evaluate_domain_adds_nucleus_scores_and_border_extras(cellavision_dir, threshold_model_dir):
    model = WBCModel.load(threshold_model_dir)
    rows = evaluate_domain(model, load_domain(cellavision_dir))
    assert [r["image"] for r in rows] == ["001", "002", "003"]
    for row in rows:
        assert {"dice", "nucleus_dice", "nc_true", "nc_pred", "nc_rel_error", "border_extra"} <= set(row)
        assert row["nc_true"] > 0


def test_evaluate_domain_gives_the_same_rows_in_two_threads(cellavision_dir, threshold_model_dir):
    model = WBCModel.load(threshold_model_dir)
    samples = load_domain(cellavision_dir)
    one = pd.DataFrame(evaluate_domain(model, samples)).drop(columns="predict_s")
    two = pd.DataFrame(evaluate_domain(model, samples, n_jobs=2)).drop(columns="predict_s")
    pd.testing.assert_frame_equal(one, two)


def test_score_reports_nucleus_figures_where_a_folder_has_nucleus_masks(cellavision_dir, threshold_model_dir, tmp_path,
                                                                        sigtuple_dir):
    per_image, summary = score_folders([cellavision_dir, sigtuple_dir], model_dir=threshold_model_dir, out=tmp_path / "out",
                                       show_progress=False)
    ours = per_image[per_image["folder"] == str(cellavision_dir)]
    assert len(ours) == 3 and ours["nucleus_dice"].notna().all() and ours["border_extra"].notna().all()
    theirs = per_image[per_image["folder"] == str(sigtuple_dir)]
    assert theirs["nucleus_dice"].isna().all()
    row = summary.set_index("folder").loc[str(cellavision_dir)]
    assert 0 <= row["nucleus_dice_mean"] <= 1 and row["nucleus_dice_ci_low"] <= row["nucleus_dice_ci_high"]
    assert np.isfinite(row["nc_rel_error_median"])
    assert np.isnan(summary.set_index("folder").loc[str(sigtuple_dir), "nucleus_dice_mean"])
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "nucleus_dice_mean" in text and "border_extra" in text
