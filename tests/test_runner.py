"""``compare run`` end to end on tiny data: contract files, determinism, the shift protocol, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from compare.commands.cli import main
from compare.pipeline.segmenters import get_spec, make_segmenter
from compare.suite.runner import RunConfig, run
from tests.test_cellavision import write_cellavision

ROOT = Path(__file__).resolve().parent.parent
TIMING = ["predict_s"]


def _run(sigtuple_dir, out, **kw):
    kw = {"folds": 2, "protocols": ["cv", "large", "test"], **kw}
    cfg = RunConfig(segmenters=["threshold"], data=str(sigtuple_dir), out=str(out), **kw)
    return run(cfg)


def test_run_writes_the_contract_files(sigtuple_dir, tmp_path):
    out = tmp_path / "run"
    summary = _run(sigtuple_dir, out)
    for name in ("per_image.csv", "summary.csv", "summary.md", "config.json", "splits.json", "env.json", "errors.csv"):
        assert (out / name).is_file(), name
    per_image = pd.read_csv(out / "per_image.csv")
    assert list(per_image.columns[:13]) == ["segmenter", "protocol", "fold", "image", "dice", "iou", "precision",
                                            "recall", "true_count", "pred_count", "tp", "fp", "fn"]
    assert (per_image.protocol == "cv").sum() == 12
    assert (per_image.protocol == "large").sum() == 1 and (per_image.protocol == "test").sum() == 2
    big = per_image[per_image.protocol == "large"].iloc[0]
    assert big.true_count == 3
    assert set(summary.protocol) == {"cv", "large", "test"}
    cv = summary.set_index("protocol").loc["cv"]
    assert 0.5 < cv.dice_ci_low <= cv.dice_mean <= cv.dice_ci_high <= 1.0
    splits = json.loads((out / "splits.json").read_text())
    assert sorted(sum((f["test"] for f in splits["folds"]), [])) == sorted(f"train-{i}" for i in range(12))
    assert (out / "models" / "threshold" / ".complete").is_file()
    assert (out / "models" / "threshold" / "model.json").is_file()
    assert len(list((out / "predictions" / "threshold" / "test" / "masks").glob("*.png"))) == 2
    env = json.loads((out / "env.json").read_text())
    stages = env["stage_seconds"]["threshold"]
    assert set(stages) == {"cv and its shifts", "final fit, large, test and their shifts"}
    assert 0 < sum(stages.values()) <= env["run_seconds"] + 0.1 * len(stages)  # each rounded to 0.1 s
    assert (out / "predictions" / "threshold" / "test" / "overlays" / "slide 0.png").is_file()


def test_shift_rows_are_scored_with_each_fold_model(sigtuple_dir, tmp_path):
    out = tmp_path / "run"
    summary = _run(sigtuple_dir, out, protocols=["cv", "large", "shift"], shift_patches_per_fold=2)
    per_image = pd.read_csv(out / "per_image.csv")
    shifted = per_image[per_image.protocol == "shift"]
    assert {"shift", "source", "true_scale"} <= set(per_image.columns)
    from compare.suite.shifts import SHIFTS, shift_kinds

    assert set(shifted.source) == {"cv", "large"}
    assert set(shifted.fold) == {"cv0", "cv1", "large"}
    kinds = shift_kinds()
    # 2 held-out 64 px patches per fold and the one 120 x 200 large image,
    # under every shift; a cropping shift gives no piece of an image smaller
    # than its crop once scaled (and one piece per WBC, named NAME#k, of a
    # larger one).
    for fold, n_images, side in (("cv0", 2, 64), ("cv1", 2, 64), ("large", 1, 120)):
        rows = shifted[shifted.fold == fold]
        assert rows.image.str.split("#").str[0].nunique() == n_images, fold
        expected = {s for s in SHIFTS if kinds[s].crop is None or side * kinds[s].scale >= kinds[s].crop}
        assert set(rows["shift"]) == expected, fold
    assert (shifted[shifted.fold == "large"]["shift"] == "crop_120").sum() == 3  # one crop per WBC
    for shift, scale in shifted.groupby("shift").true_scale.first().items():
        assert scale == pytest.approx(kinds[shift].scale)
    assert per_image[per_image.protocol != "shift"]["shift"].isna().all()
    assert "shift" in set(summary.protocol)
    # The held-out patches were drawn from each fold's held-out set.
    splits = json.loads((out / "splits.json").read_text())
    for fold in (0, 1):
        names = set(shifted[shifted.fold == f"cv{fold}"].image.str.split("#").str[0])
        assert names <= set(splits["folds"][fold]["test"])


def test_same_seed_same_results(sigtuple_dir, tmp_path):
    _run(sigtuple_dir, tmp_path / "a", protocols=["cv", "large"])
    _run(sigtuple_dir, tmp_path / "b", protocols=["cv", "large"])
    a = pd.read_csv(tmp_path / "a" / "per_image.csv").drop(columns=TIMING)
    b = pd.read_csv(tmp_path / "b" / "per_image.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(a, b)


def test_unknown_segmenter_lists_known_ones():
    with pytest.raises(ValueError, match="known segmenters are: threshold, rf"):
        get_spec("nope")
    assert make_segmenter("threshold").random_state == 0


def test_cli_reports_bad_arguments(sigtuple_dir, tmp_path, capsys):
    assert main(["run", "--segmenters", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "Unknown segmenter 'nope'" in capsys.readouterr().err
    assert main(["run", "--segmenters", "threshold", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")]) == 2
    assert "no such data folder" in capsys.readouterr().err


def test_a_bad_image_is_recorded_and_the_rest_completes(sigtuple_dir, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sigtuple_dir, data)
    (data / "Test_Data" / "broken.jpg").write_text("this is not a JPEG")
    out = tmp_path / "run"
    code = main(["run", "--segmenters", "threshold", "--folds", "2", "--protocols", "cv,test", "--data", str(data), "--out", str(out), "--no-report"])
    assert code == 1
    errors = pd.read_csv(out / "errors.csv")
    assert len(errors) == 1 and "broken.jpg" in errors.error.iloc[0]
    per_image = pd.read_csv(out / "per_image.csv")
    assert (per_image.protocol == "test").sum() == 2 and (per_image.protocol == "cv").sum() == 12


def test_resume_after_a_kill_equals_an_uninterrupted_run(sigtuple_dir, tmp_path):
    """Kill a real ``compare run`` process after its first unit, resume it, compare tables."""
    script = tmp_path / "run_slow.py"
    script.write_text(textwrap.dedent("""
        import sys
        from compare.pipeline import segmenters
        segmenters.REGISTRY["slow"] = segmenters.SegmenterSpec(
            "slow", "tests.slow_segmenter:slow_threshold", "tests.slow_segmenter:SlowThreshold", "slow threshold")
        from compare.commands.cli import main
        sys.exit(main(sys.argv[1:]))
    """))
    # The default protocols include cellavision: a tiny synthetic set keeps this test fast.
    cellavision = write_cellavision(tmp_path / "cellavision", n=2)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WBC_CELLAVISION": str(cellavision)}
    killed = tmp_path / "killed"
    args = [sys.executable, str(script), "run", "--segmenters", "slow", "--folds", "3", "--data", str(sigtuple_dir),
            "--no-report"]
    proc = subprocess.Popen(args + ["--out", str(killed)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "parts" / "slow" / "cv-0.json"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists(), "the run never finished its first unit"
    done_before = sorted(p.name for p in (killed / "parts" / "slow").glob("*.json"))
    assert "test-final.json" not in done_before, "the run finished before it was killed; nothing was tested"
    assert not (killed / "per_image.csv").exists()
    first_written = first.stat().st_mtime_ns

    resumed = subprocess.run(args + ["--out", str(killed), "--resume"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert first.stat().st_mtime_ns == first_written  # the finished unit was reused, not redone

    full = tmp_path / "full"
    complete = subprocess.run(args + ["--out", str(full)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert complete.returncode == 0, complete.stderr
    a = pd.read_csv(killed / "per_image.csv").drop(columns=TIMING)
    b = pd.read_csv(full / "per_image.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(a, b)
    timing_free = ["segmenter", "protocol", "n_images", "dice_mean", "dice_ci_low", "dice_ci_high", "object_f1",
                   "count_mae", "count_exact"]
    pd.testing.assert_frame_equal(pd.read_csv(killed / "summary.csv")[timing_free],
                                  pd.read_csv(full / "summary.csv")[timing_free])


def test_models_load_only_from_safe_folders(sigtuple_dir, tmp_path):
    import pickle

    from compare.pipeline.segmenters import load_segmenter

    bad = tmp_path / "model.pkl"
    bad.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(ValueError, match="can run code"):
        load_segmenter("threshold", bad)
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        load_segmenter("threshold", tmp_path / "nowhere")
    out = tmp_path / "run"
    _run(sigtuple_dir, out, protocols=["large"])
    model = load_segmenter("threshold", out / "models" / "threshold" / "segmenter")
    assert model.predict_proba(__import__("numpy").zeros((8, 8, 3), "uint8")).shape == (8, 8)
    from compare.pipeline.model import load_model

    assert load_model(out / "models" / "threshold").name_ == "threshold"


def test_all_black_mask_is_a_warning_not_a_failure(sigtuple_dir, tmp_path):
    import shutil

    import numpy as np
    from PIL import Image

    data = tmp_path / "data"
    shutil.copytree(sigtuple_dir, data)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(data / "Train_Data" / "train-2-mask.png")
    out = tmp_path / "run"
    code = main(["run", "--segmenters", "threshold", "--folds", "3", "--protocols", "cv", "--data", str(data),
                 "--out", str(out), "--no-report"])
    assert code == 0
    problems = pd.read_csv(out / "errors.csv")
    assert list(problems.level) == ["warning"] and "train-2.jpg" in problems.error.iloc[0]
    rows = pd.read_csv(out / "per_image.csv")
    row = rows.set_index("image").loc["train-2"]
    # scored as an image without WBCs: anything predicted there is a false positive
    assert len(rows) == 12 and row.true_count == 0 and row.dice == 0.0 and row.fp == row.pred_count


def test_a_temporary_part_left_by_a_kill_is_not_read(tmp_path):
    """A kill between writing a part's temporary file and renaming it must not add rows."""
    from compare.suite.runner import collect_parts

    unit = tmp_path / "parts" / "threshold"
    unit.mkdir(parents=True)
    part = {"rows": [{"segmenter": "threshold", "protocol": "cv", "fold": "0", "image": "a", "dice": 0.9}],
            "fit_s": 1.0}
    (unit / "cv-0.json").write_text(json.dumps(part))
    (unit / ".cv-0.json.k3j2.tmp.json").write_text(json.dumps(part))  # the name compare.io.atomic gives it
    per_image, units = collect_parts(tmp_path)
    assert list(per_image.image) == ["a"] and list(units) == ["threshold/cv-0"]


def test_shift_patches_flag_and_its_documented_default():
    from compare.commands.cli import build_parser
    from compare.suite.runner import RunConfig

    parser = build_parser()
    assert parser.parse_args(["run", "--all", "--shift-patches", "3"]).shift_patches == 3
    assert parser.parse_args(["run", "--all"]).shift_patches is None  # RunConfig's default applies
    run_parser = parser._subparsers._group_actions[0].choices["run"]
    assert f"default {RunConfig.shift_patches_per_fold})" in run_parser.format_help()


def test_the_cellavision_protocol_scores_the_final_model_zero_shot(sigtuple_dir, tmp_path):
    cellavision = write_cellavision(tmp_path / "cellavision")
    out = tmp_path / "run"
    summary = _run(sigtuple_dir, out, protocols=["large", "cellavision"], cellavision=str(cellavision))
    per_image = pd.read_csv(out / "per_image.csv", dtype={"image": str})
    rows = per_image[per_image.protocol == "cellavision"]
    assert sorted(rows.image) == ["001", "002", "003"] and set(rows.fold) == {"final"}
    assert rows[["dice", "nucleus_dice", "nc_true", "nc_pred", "border_extra", "object_f1"]].notna().all().all()
    assert per_image[per_image.protocol == "large"]["nucleus_dice"].isna().all()
    row = summary.set_index("protocol").loc["cellavision"]
    assert row.n_images == 3 and 0 <= row.nucleus_dice_mean <= 1 and 0 <= row.count_exact <= 1
    assert len(list((out / "predictions" / "threshold" / "cellavision" / "masks").glob("*.png"))) == 3
    env = json.loads((out / "env.json").read_text())
    # Timed apart from the final model's other stages (rounded to 0.1 s: three tiny crops can read 0.0).
    assert env["stage_seconds"]["threshold"]["cellavision"] >= 0
    assert "nucleus_dice_mean" in (out / "summary.md").read_text()

    # Only this protocol again, on the saved final model: nothing is fitted.
    (out / "parts" / "threshold" / "cellavision-final.json").unlink()
    again = run(RunConfig(segmenters=["threshold"], protocols=["cellavision"], folds=2, data=str(sigtuple_dir),
                          out=str(out), resume=True, cellavision=str(cellavision)))
    assert set(again.protocol) == {"large", "cellavision"}
    figures = ["dice_mean", "nucleus_dice_mean", "count_exact"]
    assert again.set_index("protocol").loc["cellavision", figures].tolist() == row[figures].tolist()


def test_a_missing_cellavision_set_is_a_warning_and_the_run_goes_on(sigtuple_dir, tmp_path, monkeypatch):
    from compare.io.images import DataError

    def offline(*args, **kwargs):
        raise DataError("Could not download the CellaVision data (offline).")

    monkeypatch.setattr("compare.suite.runner.resolve_dataset", offline)
    out = tmp_path / "run"
    summary = _run(sigtuple_dir, out, protocols=["large", "cellavision"])
    assert set(summary.protocol) == {"large"}
    errors = pd.read_csv(out / "errors.csv")
    assert list(errors.level) == ["warning"] and "cellavision protocol is skipped" in errors.error.iloc[0]
