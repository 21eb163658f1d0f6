"""More than one lab: the generic ``images/`` + ``masks/`` layout and the leave-one-domain-out protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from compare.io.images import DataError
from compare.suite.data import load_domain
from compare.suite.runner import RunConfig, run
from tests.synthetic import smear


def _generic_domain(root: Path, n: int = 4) -> Path:
    """``n`` labelled smears in the generic layout, PNG masks."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image, mask = smear((96, 96), [(48, 48)], radius=16, seed=40 + i)
        Image.fromarray(image).save(root / "images" / f"cell {i}.jpg", quality=95)
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"cell {i}.png")
    return root


def test_generic_layout_reads_images_with_their_masks(tmp_path):
    folder = _generic_domain(tmp_path / "lab_b", n=3)
    samples = load_domain(folder)
    assert [s.name for s in samples] == ["cell 0", "cell 1", "cell 2"]
    assert all(s.mask.shape == s.image.shape[:2] and s.mask.any() for s in samples)
    assert {s.group.split("/")[0] for s in samples} == {"lab_b"}


def test_a_missing_mask_is_named_and_the_rest_load(tmp_path):
    folder = _generic_domain(tmp_path / "lab", n=3)
    (folder / "masks" / "cell 1.png").unlink()
    with pytest.raises(DataError, match="cell 1"):
        load_domain(folder)
    errors: list[DataError] = []
    assert [s.name for s in load_domain(folder, on_error="skip", errors=errors)] == ["cell 0", "cell 2"]
    assert len(errors) == 1


def test_a_folder_of_neither_layout_is_refused(tmp_path):
    with pytest.raises(DataError, match="neither"):
        load_domain(tmp_path)


def test_leave_one_domain_out_scores_each_domain_with_a_model_that_never_saw_it(sigtuple_dir, tmp_path):
    lab_b = _generic_domain(tmp_path / "lab_b")
    config = RunConfig(segmenters=["threshold"], protocols=["domains"], data=str(sigtuple_dir),
                       domains=[str(sigtuple_dir), str(lab_b)], out=str(tmp_path / "run"))
    run(config)
    rows = pd.read_csv(tmp_path / "run" / "per_image.csv")
    rows = rows[rows.protocol == "domains"]
    assert set(rows.fold) == {sigtuple_dir.name, "lab_b"}
    assert len(rows[rows.fold == "lab_b"]) == 4
    assert len(rows[rows.fold == sigtuple_dir.name]) == 13  # 12 patches and the large image
    assert rows.dice.notna().all()
    # The patches' model finds lab B's single, larger WBCs.
    assert rows[rows.fold == "lab_b"].dice.mean() > 0.8


def test_domains_protocol_needs_two_folders(sigtuple_dir, tmp_path):
    with pytest.raises(ValueError, match="two or more"):
        run(RunConfig(segmenters=["threshold"], protocols=["domains"], data=str(sigtuple_dir),
                      domains=[str(sigtuple_dir)], out=str(tmp_path / "run")))


def test_the_report_shows_in_domain_and_cellavision_figures_side_by_side_and_a_flip(tmp_path):
    from compare.suite.report.domains import domain_table, domains_section
    from compare.suite.report.html import Document, to_markdown
    from compare.suite.report.run_data import RunData

    summary = pd.DataFrame([
        {"segmenter": "mlp", "protocol": "cv", "n_images": 164, "dice_mean": 0.939},
        {"segmenter": "mlp", "protocol": "large", "n_images": 5, "count_exact": 1.0},
        {"segmenter": "mlp", "protocol": "cellavision", "n_images": 100, "dice_mean": 0.85, "nucleus_dice_mean": 0.7,
         "nucleus_found": 0.8, "nc_rel_error_median": 0.12, "nc_rank_corr": 0.5, "object_f1": 0.8,
         "count_exact": 0.69},
        {"segmenter": "unet", "protocol": "cv", "n_images": 164, "dice_mean": 0.935},
        {"segmenter": "unet", "protocol": "large", "n_images": 5, "count_exact": 1.0},
        {"segmenter": "unet", "protocol": "cellavision", "n_images": 100, "dice_mean": 0.90, "nucleus_dice_mean": 0.76,
         "nucleus_found": 0.79, "nc_rel_error_median": 0.06, "nc_rank_corr": 0.61, "object_f1": 0.9,
         "count_exact": 0.92},
    ])
    run_data = RunData(tmp_path, pd.DataFrame(), summary)
    numbers = domain_table(summary, ["unet", "mlp"])
    assert list(numbers.index) == ["unet", "mlp"]
    assert numbers.loc["mlp", "SigTuple cv Dice"] == 0.939 and numbers.loc["unet", "CellaVision exact count"] == 0.92
    section = domains_section(run_data, ["unet", "mlp"])
    text = to_markdown(Document("t", [], [section]), tmp_path)
    assert "CellaVision nucleus Dice" in text and "SigTuple large exact count" in text
    assert "The ranking flips" in text and "mlp, unet" in text and "unet, mlp" in text
    assert "lobe_grid" not in text  # no lobe counts checked by eye in this run folder
    assert "report half" not in text  # no per-image rows
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "lobe_counts.csv").write_text("image,type,predicted,expert_mask,by_eye\n")
    text = to_markdown(Document("t", [], [domains_section(run_data, ["unet", "mlp"])]), tmp_path)
    assert "benchmarks/lobe_grid.jpg" in text and "--by-eye" in text
    assert domains_section(RunData(tmp_path, pd.DataFrame(), summary[summary.protocol != "cellavision"]),
                           ["unet", "mlp"]) is None


def test_the_report_splits_cellavision_into_the_tuning_and_the_report_half():
    from compare.suite.report.domains import report_half_table

    per_image = pd.DataFrame([
        {"segmenter": "unet", "protocol": "cellavision", "image": "001", "dice": 0.9, "nucleus_dice": 0.8,
         "pred_count": 1, "true_count": 1, "border_extra": 0},
        {"segmenter": "unet", "protocol": "cellavision", "image": "002", "dice": 0.7, "nucleus_dice": 0.6,
         "pred_count": 2, "true_count": 1, "border_extra": 0},
        {"segmenter": "unet", "protocol": "cellavision", "image": "004", "dice": 0.5, "nucleus_dice": 0.4,
         "pred_count": 2, "true_count": 1, "border_extra": 1},
        {"segmenter": "unet", "protocol": "cv", "image": "train-2", "dice": 0.1, "pred_count": 5, "true_count": 1},
    ])
    table = report_half_table(per_image, ["unet", "rf"]).set_index("half")
    assert table.loc["odd", "n_images"] == 1 and table.loc["even", "n_images"] == 2
    assert table.loc["even", "dice"] == pytest.approx(0.6) and table.loc["odd", "nucleus_dice"] == pytest.approx(0.8)
    # 002 has one WBC too many; 004's extra touches the border and is not counted.
    assert table.loc["even", "count_exact"] == pytest.approx(0.5) and table.loc["odd", "count_exact"] == 1.0
    assert report_half_table(per_image[per_image.protocol == "cv"], ["unet"]).empty
