"""``compare fit``: a lab's own model from its labelled folders, from scratch or fine-tuned from a saved U-Net."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compare.commands.cli import main
from compare.pipeline.finetune import FitSettings, fit_model, folder_hash
from compare.pipeline.model import WBCModel, load_model
from tests.synthetic import smear
from unet.segmenter import UNetSegmenter

#: A U-Net small enough to train a step in a fraction of a second.
TINY = dict(base_width=4, depth=2, epochs=1, steps_per_epoch=1, batch_size=4, patch_size=32, val_fraction=0.25,
            verbose=0)


def _lab(root: Path, n: int, seed: int = 40, size: tuple[int, int] = (72, 88)) -> Path:
    """``n`` labelled smears with one or two WBCs each, in the images/ + masks/ layout."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        centres = [(36, 30)] if i % 2 else [(30, 28), (44, 64)]
        image, mask = smear(size, centres, radius=11 + i % 3, seed=seed + i, n_red=5)
        Image.fromarray(image).save(root / "images" / f"field {i}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"field {i}.png")
    return root


def _samples(n: int, seed: int = 0):
    pairs = [smear((72, 88), [(36, 30 + 4 * (i % 3))], radius=12, seed=seed + i, n_red=5) for i in range(n)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def start_dir(tmp_path_factory) -> Path:
    """A saved U-Net model, tiny: the pipeline fitted on synthetic smears, its segmenter a tiny trained U-Net."""
    images, masks = _samples(6, seed=100)
    model = WBCModel("threshold").fit(images, masks)
    model.segmenter_ = UNetSegmenter("default", random_state=0, **TINY).fit(images, masks)
    model.name_ = model.segmenter = "unet"
    folder = tmp_path_factory.mktemp("start") / "unet"
    model.save(folder)
    return folder


def test_fit_from_a_model_writes_a_model_that_predict_loads_and_leaves_the_start_alone(start_dir, tmp_path):
    lab = _lab(tmp_path / "lab", 4)
    before = _tree_hash(start_dir)
    out = tmp_path / "my model"
    assert main(["fit", str(lab), "--from", str(start_dir), "--out", str(out), "--epochs", "1", "--seed", "3"]) == 0
    assert _tree_hash(start_dir) == before
    model = load_model(out)
    record = model.manifest_.data["fit"]
    start = WBCModel.read_manifest(start_dir)
    assert record["start_model"] == {"folder": str(start.folder), "manifest_sha256": start.sha256}
    [folder] = record["training_folders"]
    from compare.suite.data import load_domain

    samples = load_domain(lab)
    assert folder["sha256"] == folder_hash([s.image for s in samples], [s.mask for s in samples])
    assert folder["n_images"] == 4
    # Four images are fewer than the colour reference is learnt from: kept, and said so.
    assert record["settings_from"]["colour"] == "kept"
    assert np.array_equal(model.background_, load_model(start_dir).background_)
    assert model.segmenter_.fit_info_["start"] == "given weights"
    # The lab's scale is taken as it is (the start estimates each image's).
    assert load_model(start_dir).auto_scale and not model.auto_scale
    preds = tmp_path / "preds"
    assert main(["predict", str(lab / "images"), "--model", str(out), "--out", str(preds)]) == 0
    assert len(list((preds / "masks").glob("*.png"))) == 4
    assert json.loads((preds / "predict.json").read_text())["model"]


def test_fine_tuning_starts_from_the_given_weights(start_dir):
    start = load_model(start_dir)
    images, masks = _samples(4, seed=7)
    weights = start.segmenter_.model_.get_weights()
    # A rate too small to move anything: the fine-tuned network is the start's, up to the
    # batch-norm running statistics that a training step updates whatever the rate.
    still = start.segmenter_.fine_tuned(images, masks, random_state=1, learning_rate=1e-12, epochs=1,
                                        steps_per_epoch=1)
    kernels = [i for i, w in enumerate(weights) if w.ndim == 4]
    assert kernels
    for i in kernels:
        np.testing.assert_allclose(still.model_.get_weights()[i], weights[i], atol=1e-6)
    # The same from the seeded initial weights is far from them, and with the fine-tuning rate the
    # start's weights move: the check above could fail.
    scratch = UNetSegmenter("default", random_state=1, **{**TINY, "learning_rate": 1e-12}).fit(images, masks)
    assert max(np.abs(scratch.model_.get_weights()[i] - weights[i]).max() for i in kernels) > 1e-2
    moved = start.segmenter_.fine_tuned(images, masks, random_state=1, epochs=1, steps_per_epoch=1)
    assert max(np.abs(moved.model_.get_weights()[i] - weights[i]).max() for i in kernels) > 1e-5
    assert np.array_equal(start.segmenter_.model_.get_weights()[kernels[0]], weights[kernels[0]])


def test_fine_tuning_is_deterministic_given_a_seed(start_dir):
    start = load_model(start_dir)
    images, masks = _samples(4, seed=9)
    fit = FitSettings(epochs=1, random_state=5)
    one, _ = fit_model("unet", images, masks, start=start, fit=fit)
    two, _ = fit_model("unet", images, masks, start=start, fit=fit)
    for a, b in zip(one.segmenter_.model_.get_weights(), two.segmenter_.model_.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_lab_at_another_magnification_keeps_the_network_at_its_scale(start_dir):
    start = load_model(start_dir)
    images, masks = _samples(4, seed=11)
    big = [np.asarray(Image.fromarray(im).resize((176, 144), Image.Resampling.LANCZOS)) for im in images]
    big_masks = [np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((176, 144))) >= 128 for m in masks]
    model, settings = fit_model("unet", big, big_masks, start=start, fit=FitSettings(epochs=1), learn_min=2)
    zoom = model.segmenter_.predict_config_.zoom
    assert zoom == pytest.approx(0.5, rel=0.1)
    assert model.training_scale_.wbc_diameter == pytest.approx(2 * start.training_scale_.wbc_diameter, rel=0.15)
    assert model.params_.min_distance >= start.params_.min_distance  # settings in the lab's (larger) pixels
    assert settings["colour"] == "learnt"
    prob = model.segmenter_.predict_proba(big[0])
    assert prob.shape == big[0].shape[:2] and prob.dtype == np.float32


def test_a_classical_segmenter_is_fitted_from_scratch_and_refused_as_a_start(tmp_path):
    lab = _lab(tmp_path / "lab", 3)
    out = tmp_path / "thr"
    assert main(["fit", str(lab), "--segmenter", "threshold", "--out", str(out)]) == 0
    record = load_model(out).manifest_.data["fit"]
    assert record["start_model"] is None and record["settings_from"]["colour"] == "learnt"
    assert not load_model(out).auto_scale
    assert main(["fit", str(lab), "--segmenter", "threshold", "--any-scale", "--out", str(tmp_path / "any")]) == 0
    assert load_model(tmp_path / "any").auto_scale
    assert main(["fit", str(lab), "--segmenter", "threshold", "--from", str(out), "--out",
                 str(tmp_path / "again")]) == 2
    assert not (tmp_path / "again").exists()


def _broken_lab(root: Path, problem: str) -> tuple[Path, str]:
    lab = _lab(root, 3)
    if problem == "no mask":
        (lab / "masks" / "field 1.png").unlink()
        return lab, "field 1.png"
    if problem == "mask size":
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(lab / "masks" / "field 2.png")
        return lab, "field 2.png"
    if problem == "empty":
        for p in [*(lab / "images").iterdir(), *(lab / "masks").iterdir()]:
            p.unlink()
        return lab, str(lab)
    for p in list((lab / "images").iterdir())[1:]:  # too few: one image, a U-Net holding one out needs two
        p.unlink()
    return lab, "at least 2"


@pytest.mark.parametrize("problem", ["no mask", "mask size", "empty", "too few"])
def test_a_bad_folder_is_named_and_nothing_is_written(problem, start_dir, tmp_path, capsys):
    lab, named = _broken_lab(tmp_path / "lab", problem)
    out = tmp_path / "model"
    holding_out = ["--val-share", "0.2"] if problem == "too few" else []  # a fine-tune holds none out by default
    assert main(["fit", str(lab), "--from", str(start_dir), "--out", str(out), "--epochs", "1", *holding_out]) == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["lab"]


def test_an_interrupted_fit_leaves_no_model_and_keeps_the_old_one(start_dir, tmp_path, monkeypatch):
    lab = _lab(tmp_path / "lab", 3)
    out = tmp_path / "model"
    assert main(["fit", str(lab), "--segmenter", "threshold", "--out", str(out)]) == 0
    before = _tree_hash(out)
    real_save = WBCModel.save

    def save_then_interrupt(self, folder):
        real_save(self, folder)  # the whole folder is written, then Ctrl-C before it is moved into place
        raise KeyboardInterrupt

    monkeypatch.setattr(WBCModel, "save", save_then_interrupt)
    assert main(["fit", str(lab), "--from", str(start_dir), "--out", str(out), "--epochs", "1"]) == 130
    assert _tree_hash(out) == before and load_model(out).name_ == "threshold"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab", "model"]


def test_out_may_not_be_the_start_model(start_dir, tmp_path, capsys):
    lab = _lab(tmp_path / "lab", 3)
    before = _tree_hash(start_dir)
    assert main(["fit", str(lab), "--from", str(start_dir), "--out", str(start_dir)]) == 2
    assert "another folder" in capsys.readouterr().err
    assert _tree_hash(start_dir) == before


def test_a_time_budget_cuts_the_epochs():
    images, masks = _samples(4, seed=13)
    seg = UNetSegmenter("default", random_state=0, **{**TINY, "epochs": 40, "time_budget_s": 1e-3}).fit(images,
                                                                                                      masks)
    assert seg.fit_info_["epochs_run"] == 1


def test_a_unet_from_scratch_is_trained_at_its_design_scale():
    from compare.pipeline.finetune import _design_zoom
    from compare.pipeline.model import default_model_dir

    design = WBCModel.read_manifest(default_model_dir()).data["training_scale"]["wbc_diameter"]
    at_design = smear((200, 200), [(100, 100)], radius=design / 2)[1]
    twice = smear((400, 400), [(200, 200)], radius=design)[1]
    assert _design_zoom([at_design]) == 1.0
    assert _design_zoom([twice]) == pytest.approx(0.5, rel=0.05)


def test_the_fit_record_survives_a_re_save(tmp_path):
    lab = _lab(tmp_path / "lab", 2)
    assert main(["fit", str(lab), "--segmenter", "threshold", "--out", str(tmp_path / "a")]) == 0
    load_model(tmp_path / "a").save(tmp_path / "b")
    assert WBCModel.read_manifest(tmp_path / "b").data["fit"] == WBCModel.read_manifest(tmp_path / "a").data["fit"]


def test_a_network_that_predicts_at_a_small_zoom_averages_its_dihedral_views(start_dir):
    from unet.segmenter import FLIPS_MAX_ZOOM, PredictConfig, _flips_when_cheap

    start = load_model(start_dir)
    images, masks = _samples(2, seed=13)
    small = start.segmenter_.fine_tuned(images, masks, zoom=0.4, epochs=1, steps_per_epoch=1)
    same = start.segmenter_.fine_tuned(images, masks, zoom=1.0, epochs=1, steps_per_epoch=1)
    assert small.predict_config_.tta == "d4" and not same.predict_config_.tta
    # Views mapped back: the averaged map is the plain one's shape and differs from it only a little.
    plain = dataclasses.replace(small.predict_config_, tta=False)
    averaged = small.predict_proba(images[0])
    small.predict_config_ = plain
    assert averaged.shape == images[0].shape[:2] and np.abs(averaged - small.predict_proba(images[0])).mean() < 0.2
    # An override wins over the rule.
    cheap = PredictConfig(zoom=FLIPS_MAX_ZOOM)
    assert _flips_when_cheap(cheap, {}).tta and not _flips_when_cheap(cheap, {"tta": False}).tta
    assert not _flips_when_cheap(PredictConfig(zoom=FLIPS_MAX_ZOOM * 1.01), {}).tta


def test_val_share_zero_trains_on_every_image_and_keeps_the_last_epoch(start_dir, tmp_path):
    from unet.batches import split_validation
    from unet.config import TrainConfig

    train, val = split_validation(5, 0.0, seed=3)
    assert train.tolist() == [0, 1, 2, 3, 4] and val.size == 0
    # Nothing held out, so nothing may pick an epoch or stop early on it.
    with pytest.raises(ValueError, match="val_fraction 0"):
        TrainConfig(val_fraction=0.0, schedule="plateau", patience=0)
    with pytest.raises(ValueError, match="patience 0"):
        TrainConfig(val_fraction=0.0, schedule="cosine", patience=3)
    start = load_model(start_dir)
    images, masks = _samples(3, seed=21)
    model, _ = fit_model("unet", images, masks, start=start, fit=FitSettings(epochs=2, val_share=0.0))
    info, history = model.segmenter_.fit_info_, model.segmenter_.history_
    assert info["n_train"] == 3 and info["n_val"] == 0
    assert info["epochs_run"] == 2 and info["best_epoch"] == 2 and info["best_val_dice"] is None
    assert [h["val_dice"] for h in history] == [None, None]
    # The kept weights are the last epoch's: the same fit stopped after one epoch differs from it.
    one, _ = fit_model("unet", images, masks, start=start, fit=FitSettings(epochs=1, val_share=0.0))
    kernels = [i for i, w in enumerate(model.segmenter_.model_.get_weights()) if w.ndim == 4]
    assert max(np.abs(model.segmenter_.model_.get_weights()[i] - one.segmenter_.model_.get_weights()[i]).max()
               for i in kernels) > 1e-6
    # A fine-tune holds nothing out unless told (unet.segmenter.FINE_TUNE): one labelled image is
    # enough, and the model folder it writes loads.
    lab = _lab(tmp_path / "lab", 1)
    out = tmp_path / "model"
    assert main(["fit", str(lab), "--from", str(start_dir), "--out", str(out), "--epochs", "1"]) == 0
    assert load_model(out).segmenter_.fit_info_["n_val"] == 0
    held, _ = fit_model("unet", images, masks, start=start, fit=FitSettings(epochs=1, val_share=0.3))
    assert held.segmenter_.fit_info_["n_val"] == 1
