"""``compare predict``: outputs, names, failures, scaling, exports, resume and Dask, on tiny synthetic images.

The model is a :class:`compare.pipeline.model.WBCModel` with the ``threshold``
segmenter (learns nothing, no TensorFlow), fitted on one synthetic image and
saved with :meth:`WBCModel.save`, as ``compare run`` saves models.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from compare.commands.cli import main as cli_main
from compare.commands.predict import output_names, predict
from compare.pipeline.instances import InstanceParams
from compare.pipeline.model import WBCModel, load_model, predict_proba_blocked

ROOT = Path(__file__).resolve().parent.parent
PINK = (235, 200, 210)
VIOLET = (90, 40, 150)


def _disks(radius: int, centres: list[tuple[int, int]], shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8: violet disks (WBCs) on a pink smear."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    image = np.empty(shape + (3,), np.uint8)
    image[:] = PINK
    for cy, cx in centres:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2] = VIOLET
    return image


def _touching_pair(radius: int = 30) -> np.ndarray:
    """Two touching disks: the centres are 1.8 radii apart, so they merge into one blob."""
    r = radius
    return _disks(r, [(2 * r, 2 * r), (2 * r, 2 * r + int(1.8 * r))], (4 * r, 6 * r))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A threshold WBCModel fitted on two apart 60 px WBCs, saved as ``compare run`` saves it."""
    folder = tmp_path_factory.mktemp("model") / "threshold"
    image = _disks(30, [(60, 60), (60, 200)], (120, 270))
    mask = np.all(image == VIOLET, axis=2)
    model = WBCModel("threshold", require_nucleus=False).fit([image], [mask])
    # The instance stage was tuned on the two 60 px WBCs: touching pairs split.
    assert model.params_.min_distance == 18
    assert model.training_scale_.wbc_diameter == pytest.approx(60, abs=1.5)
    model.save(folder)
    return folder


def _save(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")
    return path


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_touching_disks_are_two_wbcs(tmp_path, model_dir):
    src = _save(tmp_path / "in" / "pair.png", _touching_pair())
    out = tmp_path / "out"
    code = cli_main(["predict", str(src), "--model", str(model_dir), "--out", str(out)])
    assert code == 0
    counts = _read_csv(out / "counts.csv")
    assert [(r["image"], r["wbc_count"], r["width"], r["height"]) for r in counts] == [("pair", "2", "180", "120")]
    # The scale was estimated (not given) and found equal to the training scale.
    assert counts[0]["scale_method"] == "wbc-probe" and float(counts[0]["scale"]) == 1.0
    assert counts[0]["warning"] == ""
    mask = np.asarray(Image.open(out / "masks" / "pair.png"))
    assert mask.shape == (120, 180)
    assert set(np.unique(mask)) == {0, 1, 2}
    overlay = np.asarray(Image.open(out / "overlays" / "pair.png").convert("RGB"))
    assert overlay.shape == (120, 180, 3)
    assert not np.array_equal(overlay, _touching_pair())  # outlines were drawn
    rows = _read_csv(out / "instances.csv")
    assert [int(r["id"]) for r in rows] == [1, 2]
    for row in rows:
        assert 1500 < int(row["area_px"]) < np.pi * 30 ** 2 * 1.1
        assert int(row["bbox_x0"]) <= float(row["centroid_x"]) < int(row["bbox_x1"])
        assert float(row["mean_probability"]) == pytest.approx(1.0)
    # The two centroids lie left and right of the neck at x = 87.
    xs = sorted(float(r["centroid_x"]) for r in rows)
    assert xs[0] < 87 < xs[1]
    # Without a pixel size there are no micrometre columns.
    assert not [c for c in rows[0] if "um" in c]


def test_bad_file_is_named_and_others_complete(tmp_path, model_dir, capsys):
    folder = tmp_path / "in"
    _save(folder / "good.png", _touching_pair())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (folder / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    code = cli_main(["predict", str(folder), str(tmp_path / "missing.png"), "--model", str(model_dir),
                     "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "empty.png" in err and "missing.png" in err
    assert (out / "masks" / "good.png").is_file() and (out / "overlays" / "good.png").is_file()
    assert not (out / "masks" / "broken.png").exists()
    assert [r["image"] for r in _read_csv(out / "counts.csv")] == ["good"]
    assert {r["image"] for r in _read_csv(out / "instances.csv")} == {"good"}


def test_names_stay_inside_out_and_do_not_collide(tmp_path, model_dir):
    image = _touching_pair()
    a = _save(tmp_path / "a" / "x.png", image)
    b = _save(tmp_path / "b" / "x.png", image)
    weird = _save(tmp_path / "..weird dir" / "..jpg", image)
    sneaky = tmp_path / "a" / "sub" / ".." / ".." / "b" / "x.png"  # the same file as b, by another road
    (tmp_path / "a" / "sub").mkdir()
    out = tmp_path / "deep" / "out"
    counts, errors = predict([a, b, weird, sneaky, Path("../../x.png")], model_dir=model_dir, out=out,
                             show_progress=False)
    assert len(errors) == 1  # ../../x.png does not exist here
    assert [r["image"] for r in counts] == ["x", "x-2", "image"]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["masks/image.png", "masks/x-2.png", "masks/x.png",
                       "nuclei/image.png", "nuclei/x-2.png", "nuclei/x.png",
                       "overlays/image.png", "overlays/x-2.png", "overlays/x.png"]
    assert {p.parent.resolve() for p in tmp_path.rglob("*.png") if "out" in p.parts} <= {
        (out / "masks").resolve(), (out / "nuclei").resolve(), (out / "overlays").resolve()}


def test_output_names():
    assert output_names([Path("a/x.jpg"), Path("b/X.jpg"), Path("c/x-2.jpg"), Path("../../x.jpg")]) == [
        "x", "X-2", "x-2-2", "x-3"]


# Disks of radius 15 (area ~700 px) are below the model's minimum WBC area
# (half of a 60 px WBC's, ~1400 px): at their own scale they are not WBCs.
# Brought 2x up to the training scale they are found, and measured in the
# image's own pixels.
_SMALL = dict(radius=15, centres=[(40, 40), (40, 100)], shape=(80, 150))


def test_scale_is_estimated_by_default(tmp_path, model_dir):
    src = _save(tmp_path / "small.png", _disks(**_SMALL))
    counts, errors = predict([src], model_dir=model_dir, out=tmp_path / "auto", show_progress=False)
    assert not errors
    row = counts[0]
    assert row["wbc_count"] == 2 and row["scale_method"] == "wbc-probe" and not row["warning"]
    assert row["scale"] == pytest.approx(2.0, rel=0.05)
    cells = pd.read_csv(tmp_path / "auto" / "instances.csv")
    np.testing.assert_allclose(cells.area_px, np.pi * 15 ** 2, rtol=0.1)
    assert np.asarray(Image.open(tmp_path / "auto" / "masks" / "small.png")).shape == (80, 150)
    # The same image with the scale turned off finds nothing: the estimate did the work.
    model = load_model(model_dir)
    assert model.predict(_disks(**_SMALL), scale=1.0).count == 0


def test_wbc_diameter_sets_the_scale(tmp_path, model_dir):
    src = _save(tmp_path / "small.png", _disks(**_SMALL))
    code = cli_main(["predict", str(src), "--model", str(model_dir), "--out", str(tmp_path / "o"),
                     "--wbc-diameter", "30"])
    assert code == 0
    row = _read_csv(tmp_path / "o" / "counts.csv")[0]
    assert row["scale_method"] == "wbc-diameter" and row["wbc_count"] == "2"
    # training WBC diameter (~59 px) / 30 px
    assert float(row["scale"]) == pytest.approx(load_model(model_dir).training_scale_.wbc_diameter / 30, rel=1e-3)
    assert "30 px" in row["scale_detail"]


def test_pixel_size_sets_the_scale_and_micrometre_columns(tmp_path, model_dir):
    from compare.pipeline.scale import RBC_DIAMETER_UM

    model = load_model(model_dir)
    training_um = RBC_DIAMETER_UM / model.training_scale_.rbc_diameter
    # Pixels twice the training size: WBCs look half as wide, so the image is enlarged 2x.
    src = _save(tmp_path / "small.png", _disks(**_SMALL))
    counts, errors = predict([src], model_dir=model_dir, out=tmp_path / "o", pixel_size_um=2 * training_um,
                             show_progress=False)
    assert not errors
    assert counts[0]["scale_method"] == "pixel-size" and counts[0]["scale"] == pytest.approx(2.0, rel=1e-3)
    assert counts[0]["wbc_count"] == 2 and counts[0]["pixel_size_um"] == pytest.approx(2 * training_um)
    cells = pd.read_csv(tmp_path / "o" / "instances.csv")
    np.testing.assert_allclose(cells.area_um2, cells.area_px * (2 * training_um) ** 2, rtol=1e-4)


def test_both_scale_options_are_refused(tmp_path, model_dir):
    src = _save(tmp_path / "pair.png", _touching_pair())
    with pytest.raises(ValueError, match="either"):
        predict([src], model_dir=model_dir, out=tmp_path / "o", wbc_diameter=40, pixel_size_um=0.2)
    with pytest.raises(ValueError, match="--pixel-size must be a positive"):
        predict([src], model_dir=model_dir, out=tmp_path / "o", pixel_size_um=0.0)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model"):
        load_model(tmp_path / "nope")
    assert cli_main(["predict", str(tmp_path), "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2


def _ious(truth: np.ndarray, got: np.ndarray) -> dict[int, float]:
    return {int(i): float(((truth == i) & (got == i)).sum() / ((truth == i) | (got == i)).sum())
            for i in np.unique(truth) if i}


def test_cli_exports_read_back_with_micrometre_columns(tmp_path, model_dir):
    """``python -m compare predict IMAGE --rois --geojson --pixel-size 0.2``: the issue's done-when."""
    from compare.io.exports import read_geojson, read_imagej_rois

    image = _disks(30, [(60, 60), (60, 114), (150, 200), (170, 60)], (230, 280))
    src = _save(tmp_path / "smear.png", image)
    out = tmp_path / "out"
    code = cli_main(["predict", str(src), "--model", str(model_dir), "--out", str(out),
                     "--rois", "--geojson", "--pixel-size", "0.2"])
    assert code == 0
    cells = pd.read_csv(out / "instances.csv")
    assert len(cells) == 4
    um = [c for c in cells.columns if "um" in c]
    assert {"area_um2", "perimeter_um", "equivalent_diameter_um"} <= set(um)
    np.testing.assert_allclose(cells.equivalent_diameter_um, cells.equivalent_diameter_px * 0.2, rtol=1e-4)
    labels = np.asarray(Image.open(out / "masks" / "smear.png"))
    assert labels.max() == 4
    for back in (read_imagej_rois(out / "rois" / "smear.zip", labels.shape),
                 read_geojson(out / "geojson" / "smear.geojson", labels.shape)):
        ious = _ious(labels, back)
        assert sorted(ious) == [1, 2, 3, 4] and min(ious.values()) >= 0.95, ious
    geo = json.loads((out / "geojson" / "smear.geojson").read_text())
    assert {f["properties"]["classification"]["name"] for f in geo["features"]} == {"WBC"}


def test_predict_json_records_model_options_and_device(tmp_path, model_dir):
    src = _save(tmp_path / "pair.png", _touching_pair())
    out = tmp_path / "out"
    predict([src], model_dir=model_dir, out=out, wbc_diameter=60.0, device="cpu", show_progress=False)
    facts = json.loads((out / "predict.json").read_text())
    assert facts["model"]["folder"] == str(model_dir.resolve())
    assert facts["model"]["manifest_sha256"] == hashlib.sha256((model_dir / "model.json").read_bytes()).hexdigest()
    assert facts["model"]["segmenter"] == "threshold"
    assert facts["options"]["wbc_diameter"] == 60.0 and facts["options"]["pixel_size_um"] is None
    assert facts["options"]["rois"] is False and facts["options"]["resume"] is False
    assert facts["device"] == "cpu"
    assert facts["inputs"] == [str(src)]
    assert "numpy" in facts["env"]["packages"]


def test_label_png_beyond_16_bits_is_refused(tmp_path):
    from compare.io.overlay import save_label_png

    labels = np.zeros((4, 4), np.int32)
    labels[1, 1], labels[2, 2] = 300, 65_536
    with pytest.raises(ValueError, match="TIFF"):
        save_label_png(tmp_path / "many.png", labels)
    assert not list(tmp_path.iterdir())  # nothing half-written
    labels[2, 2] = 65_535
    save_label_png(tmp_path / "ok.png", labels)
    back = np.asarray(Image.open(tmp_path / "ok.png"))
    assert back.dtype == np.uint16 and int(back.max()) == 65_535 and back[1, 1] == 300


def _without_seconds(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path)
    return table.drop(columns=[c for c in ("seconds",) if c in table])


def test_predict_resumes_after_a_kill(tmp_path, model_dir):
    """SIGKILL a real ``python -m compare predict`` after its first image, rerun with --resume, compare tables."""
    folder = tmp_path / "in"
    rng = np.random.default_rng(0)
    for i in range(6):
        # Large enough that each image takes a while, so the kill lands mid-run.
        centres = [(int(rng.integers(40, 560)), int(rng.integers(40, 760))) for _ in range(8)]
        _save(folder / f"img{i}.png", _disks(30, centres, (600, 800)))
    args = [sys.executable, "-m", "compare", "predict", str(folder), "--model", str(model_dir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(killed)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = killed / "parts"
    deadline = time.monotonic() + 180
    # "[!.]*": a part being written is a hidden temporary file until renamed.
    while proc.poll() is None and time.monotonic() < deadline:
        if parts.is_dir() and any(parts.glob("[!.]*.json")):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.stem for p in parts.glob("[!.]*.json"))
    assert done, "the run never finished its first image"
    assert len(done) < 6, "the run finished before it was killed; nothing was tested"
    if (killed / "counts.csv").exists():
        # The tables on disk hold only finished images (they are rebuilt
        # just after each part, so they may lag the parts by one image).
        assert set(pd.read_csv(killed / "counts.csv").image) <= set(done)
    first = parts / f"{done[0]}.json"
    first_written = first.stat().st_mtime_ns

    resumed = subprocess.run(args + ["--out", str(killed), "--resume"], cwd=ROOT, env=env, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert first.stat().st_mtime_ns == first_written  # the finished image was skipped, not redone

    full = tmp_path / "full"
    assert cli_main(["predict", str(folder), "--model", str(model_dir), "--out", str(full)]) == 0
    for table in ("counts.csv", "instances.csv"):
        pd.testing.assert_frame_equal(_without_seconds(killed / table), _without_seconds(full / table))
    counts = pd.read_csv(full / "counts.csv")
    assert list(counts.image) == [f"img{i}" for i in range(6)] and (counts.wbc_count > 0).all()


def test_resume_ignores_a_temporary_part_left_by_a_kill(tmp_path, model_dir):
    from compare.io.outputs import PredictionWriter

    src = _save(tmp_path / "pair.png", _touching_pair())
    out = tmp_path / "out"
    predict([src], model_dir=model_dir, out=out, show_progress=False)
    part = json.loads((out / "parts" / "pair.json").read_text())
    # What a kill leaves between writing a part's temporary file and renaming it.
    (out / "parts" / ".other.json.x1y2.tmp.json").write_text(json.dumps(part))
    writer = PredictionWriter(out, resume=True)
    assert writer.done("pair", src) and [r["image"] for r in writer.count_rows()] == ["pair"]
    writer.write_tables()
    assert list(pd.read_csv(out / "counts.csv").image) == ["pair"]


class _Pointwise:
    """A segmenter whose output depends on each pixel alone, so blocks must not change it."""

    def predict_proba(self, image):
        return (image[..., 0].astype(np.float32) / 255.0)


def test_blocked_prediction_equals_whole():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 410, 3), dtype=np.uint8)
    whole = _Pointwise().predict_proba(image)
    blocked = predict_proba_blocked(_Pointwise(), image, whole=200, block=128, margin=16)
    assert blocked.dtype == np.float32 and blocked.shape == (300, 410)
    np.testing.assert_array_equal(blocked, whole)


def _without_time(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_dask_cluster_equals_serial(tmp_path, model_dir):
    distributed = pytest.importorskip("distributed")
    folder = tmp_path / "in"
    _save(folder / "pair.png", _touching_pair())
    _save(folder / "three.png", _disks(30, [(40, 40), (40, 120), (120, 80)], (170, 180)))
    (folder / "bad.png").write_bytes(b"not a png")
    serial = predict([folder], model_dir=model_dir, out=tmp_path / "serial", show_progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        remote = predict([folder], model_dir=model_dir, out=tmp_path / "dask", scheduler=cluster.scheduler_address,
                         show_progress=False)
    assert _without_time(remote[0]) == _without_time(serial[0])
    assert [r["wbc_count"] for r in serial[0]] == [2, 3]
    assert [p for p, _ in remote[1]] == [p for p, _ in serial[1]] == [str(folder / "bad.png")]
    for table in ("counts.csv", "instances.csv"):
        pd.testing.assert_frame_equal(_without_seconds(tmp_path / "dask" / table),
                                      _without_seconds(tmp_path / "serial" / table))
    for name in ("pair", "three"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "dask" / "masks" / f"{name}.png")),
                                      np.asarray(Image.open(tmp_path / "serial" / "masks" / f"{name}.png")))


def test_dask_huge_image_by_blocks_equals_serial(tmp_path, model_dir, monkeypatch):
    """An image above WHOLE pixels is spread over the cluster block by block; same labels as here."""
    distributed = pytest.importorskip("distributed")
    import compare.commands.distributed as distributed_module
    import compare.pipeline.blocks as blocks_module

    for module in (blocks_module, distributed_module):
        monkeypatch.setattr(module, "WHOLE", 150)
    monkeypatch.setattr(blocks_module, "BLOCK", 96)
    centres = [(60, 60), (60, 114), (170, 200), (250, 80), (250, 300)]
    src = _save(tmp_path / "big.png", _disks(30, centres, (320, 380)))
    small = _save(tmp_path / "small.png", _touching_pair())
    serial = predict([src, small], model_dir=model_dir, out=tmp_path / "serial", show_progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        remote = predict([src, small], model_dir=model_dir, out=tmp_path / "dask",
                         scheduler=cluster.scheduler_address, show_progress=False)
    assert [r["wbc_count"] for r in serial[0]] == [5, 2]
    assert _without_time(remote[0]) == _without_time(serial[0])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "dask" / "masks" / "big.png")),
                                  np.asarray(Image.open(tmp_path / "serial" / "masks" / "big.png")))


def _blobs(seed: int, shape=(260, 300)) -> np.ndarray:
    """Random disks, touching and overlapping, some with holes, as a 0/1 probability map."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    prob = np.zeros(shape, np.float32)
    for _ in range(9):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(8, 40)
        prob[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0.5, 1.0)
    prob[(yy - 130) ** 2 + (xx - 150) ** 2 < 25] = 0.1  # a hole, filled by both
    return prob


def test_overlay_image_equals_draw_overlay():
    from compare.io.overlay import draw_overlay, overlay_image
    from compare.pipeline.instances import separate_instances

    image = _disks(30, [(50, 50), (50, 104), (140, 200)], (200, 330))
    labels = separate_instances(_blobs(1, (200, 330)), InstanceParams(min_area=200, split_area=2000, min_distance=12))
    assert labels.max() >= 2
    expected = draw_overlay(image, labels)
    got = np.asarray(overlay_image(image.copy(), labels, strip=17))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_estimated_scale_keeps_large_image_counts(tmp_path, factor):
    """The shipped large images rescaled 0.5x and 2x: the default scale estimate must give the true counts.

    Uses the default model shipped with the package
    (:func:`compare.pipeline.model.default_model_dir`), or the model folder in
    ``$WBC_MODEL``; skipped when neither exists.
    """
    from compare.pipeline.instances import label_truth
    from compare.pipeline.model import default_model_dir
    from compare.suite.data import load_large

    model = Path(os.environ.get("WBC_MODEL", default_model_dir()))
    if not (model / ".complete").is_file():
        pytest.skip(f"no finished model at {model}")
    # A folder of an older layout fails here (ModelFormatError): it must be re-created, not skipped.
    truth = {}
    for sample in load_large():
        h, w = sample.image.shape[:2]
        resized = Image.fromarray(sample.image).resize((round(w * factor), round(h * factor)), Image.Resampling.LANCZOS)
        resized.save(tmp_path / f"{sample.name}.png")
        truth[sample.name] = int(label_truth(sample.mask).max())
    counts, errors = predict([tmp_path], model_dir=model, out=tmp_path / "out", show_progress=False)
    assert not errors
    assert {r["image"]: r["wbc_count"] for r in counts} == truth
    for row in counts:
        assert row["scale"] == pytest.approx(1 / factor, rel=0.1)
