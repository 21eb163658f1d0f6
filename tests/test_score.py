"""``compare score``: a saved model scored as it is on labelled folders from other labs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from compare.commands.cli import main
from compare.commands.score import SUMMARY_COLUMNS, score_folders, summarise_scores
from compare.io.images import DataError
from tests.synthetic import smear


def _lab(root: Path, wbcs: list[list[tuple[int, int]]], seed: int = 50) -> Path:
    """Labelled smears in the generic layout, one image per list of WBC centres."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, centres in enumerate(wbcs):
        image, mask = smear((120, 160), centres, radius=18, seed=seed + i, n_red=6)
        Image.fromarray(image).save(root / "images" / f"field {i}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"field {i}.png")
    return root


def test_each_folder_is_scored_and_summarised(threshold_model_dir, tmp_path):
    one = _lab(tmp_path / "lab one", [[(60, 60)], [(50, 50), (70, 118)]])
    two = _lab(tmp_path / "lab two", [[(60, 80)]], seed=70)
    per_image, summary = score_folders([one, two], model_dir=threshold_model_dir, out=tmp_path / "out", show_progress=False)
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert list(summary.folder) == [str(one), str(two)] and list(summary.n_images) == [2, 1]
    assert list(per_image.columns[:2]) == ["folder", "image"]
    assert per_image.dice.between(0, 1).all() and (per_image.true_count.to_numpy() == [1, 2, 1]).all()
    first = per_image[per_image.folder == str(one)]
    exact = float((first.pred_count == first.true_count).mean())
    assert summary.loc[0, "count_exact"] == pytest.approx(exact)
    assert summary.loc[0, "dice_mean"] == pytest.approx(first.dice.mean())
    written = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert written.n_images.tolist() == [2, 1]
    assert "lab one" in (tmp_path / "out" / "summary.md").read_text()
    assert not (tmp_path / "out" / "errors.csv").exists()


def test_summary_counts_exact_images_errors_and_warnings():
    per_image = pd.DataFrame({"folder": ["a", "a", "a", "b"], "dice": [0.9, 0.8, np.nan, 0.5],
                              "true_count": [1, 2, 1, 3], "pred_count": [1, 3, 1, 1],
                              "warning": ["", "stain colours unlike the training images", None, ""]})
    problems = pd.DataFrame({"folder": ["a"], "image": ["-"], "message": ["x.jpg: the file is empty"]})
    summary = summarise_scores(per_image, ["a", "b", "c"], problems).set_index("folder")
    assert summary.loc["a", "n_images"] == 3 and summary.loc["a", "n_errors"] == 1
    assert summary.loc["a", "dice_mean"] == pytest.approx(0.85)
    assert summary.loc["a", "count_exact"] == pytest.approx(2 / 3)
    assert summary.loc["a", "count_mae"] == pytest.approx(1 / 3)
    assert summary.loc["a", "warned"] == pytest.approx(1 / 3)
    assert summary.loc["b", "count_mae"] == 2 and summary.loc["b", "count_exact"] == 0
    assert summary.loc["c", "n_images"] == 0 and np.isnan(summary.loc["c", "dice_mean"])


def test_a_broken_image_is_named_and_the_rest_are_scored(threshold_model_dir, tmp_path, capsys):
    lab = _lab(tmp_path / "lab", [[(60, 60)], [(60, 90)]])
    (lab / "images" / "empty.png").write_bytes(b"")
    (lab / "masks" / "empty.png").write_bytes(b"")
    code = main(["score", str(lab), "--model", str(threshold_model_dir), "--out", str(tmp_path / "out")])
    assert code == 1
    assert "could not be scored" in capsys.readouterr().err
    errors = pd.read_csv(tmp_path / "out" / "errors.csv")
    assert len(errors) == 1 and "empty.png" in errors.message[0]
    assert len(pd.read_csv(tmp_path / "out" / "per_image.csv")) == 2


def test_resume_reuses_finished_folders_of_the_same_model(threshold_model_dir, tmp_path, monkeypatch):
    lab = _lab(tmp_path / "lab", [[(60, 60)]])
    first, _ = score_folders([lab], model_dir=threshold_model_dir, out=tmp_path / "out", show_progress=False)
    import compare.evaluation.evaluate

    def refuse(*args, **kwargs):
        raise AssertionError("a finished folder was scored again")

    monkeypatch.setattr(compare.evaluation.evaluate, "evaluate", refuse)
    again, _ = score_folders([lab], model_dir=threshold_model_dir, out=tmp_path / "out", resume=True, show_progress=False)
    pd.testing.assert_frame_equal(first, again)
    # Without --resume, or with another model, the folder is scored again.
    with pytest.raises(AssertionError, match="scored again"):
        score_folders([lab], model_dir=threshold_model_dir, out=tmp_path / "out", show_progress=False)


def test_a_folder_without_labelled_images_is_refused_before_scoring(threshold_model_dir, tmp_path):
    lab = _lab(tmp_path / "lab", [[(60, 60)]])
    with pytest.raises(DataError, match="neither"):
        score_folders([lab, tmp_path / "nothing here"], model_dir=threshold_model_dir, out=tmp_path / "out",
                      show_progress=False)
    assert not (tmp_path / "out").exists()


def test_a_partial_neighbour_at_the_border_is_counted_apart_not_as_a_count_error(threshold_model_dir, tmp_path):
    root = tmp_path / "crops"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image, mask = smear((120, 160), [(60, 80), (60, 2)], radius=18, seed=50, n_red=4)
    mask[:, :25] = False  # the mask marks the centred WBC only, as crop sets do
    Image.fromarray(image).save(root / "images" / "crop.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / "crop.png")
    per_image, summary = score_folders([root], model_dir=threshold_model_dir, out=tmp_path / "out", show_progress=False)
    row = per_image.iloc[0]
    assert (row.true_count, row.pred_count, row.border_extra) == (1, 2, 1)
    assert summary.iloc[0]["count_exact"] == 1.0 and summary.iloc[0]["border_extra"] == 1
    # The neighbour's pixels lower the plain Dice, not the one with border extras apart.
    assert row.dice_border_apart > row.dice
    assert summary.iloc[0]["dice_border_apart_mean"] == pytest.approx(row.dice_border_apart)
    assert np.isnan(summary.iloc[0]["nucleus_dice_mean"])
