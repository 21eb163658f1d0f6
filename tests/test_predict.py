"""``compare predict``: outputs, names, failures, scaling and Dask, on tiny synthetic images.

The model is the ``threshold`` segmenter (learns nothing, no TensorFlow)
saved the way ``compare run`` saves models.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compare.cli import main as cli_main
from compare.instances import InstanceParams
from compare.predict import load_model, output_names, predict, predict_proba_blocked

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
    """A threshold model folder as ``compare run`` writes it, tuned for 60 px WBCs."""
    from baselines.threshold import ThresholdSegmenter

    folder = tmp_path_factory.mktemp("model") / "threshold"
    image = _touching_pair()
    ThresholdSegmenter().fit([image], [np.all(image == VIOLET, axis=2)]).save(folder)
    # min_distance 18 = 0.6 x a 30 px radius: the training WBCs are 60 px wide.
    InstanceParams(threshold=0.5, min_area=800, split_area=4000, min_distance=18).to_json(folder / "instances.json")
    (folder / "segmenter.json").write_text(json.dumps({"segmenter": "threshold", "fit_s": 0.0}))
    (folder / ".complete").write_text("")
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
    counts, _, errors = predict([a, b, weird, sneaky, Path("../../x.png")], model_dir=model_dir, out=out,
                                show_progress=False)
    assert len(errors) == 1  # ../../x.png does not exist here
    assert [r["image"] for r in counts] == ["x", "x-2", "image"]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["masks/image.png", "masks/x-2.png", "masks/x.png",
                       "overlays/image.png", "overlays/x-2.png", "overlays/x.png"]
    assert {p.parent.resolve() for p in tmp_path.rglob("*.png") if "out" in p.parts} <= {
        (out / "masks").resolve(), (out / "overlays").resolve()}


def test_output_names():
    assert output_names([Path("a/x.jpg"), Path("b/X.jpg"), Path("c/x-2.jpg"), Path("../../x.jpg")]) == [
        "x", "X-2", "x-2-2", "x-3"]


def test_wbc_diameter_rescales_to_training_scale(tmp_path, model_dir):
    # Disks of radius 15 (area ~700 px) are below the model's 800 px minimum
    # WBC area: unscaled they are not WBCs; told that WBCs are 30 px wide,
    # predict enlarges 2x, finds both and reports areas in the image's pixels.
    small = _disks(15, [(40, 40), (40, 100)], (80, 150))
    src = _save(tmp_path / "small.png", small)
    counts, rows, errors = predict([src], model_dir=model_dir, out=tmp_path / "plain", show_progress=False)
    assert not errors and counts[0]["wbc_count"] == 0
    counts, rows, errors = predict([src], model_dir=model_dir, out=tmp_path / "scaled", wbc_diameter=30,
                                   show_progress=False)
    assert not errors and counts[0]["wbc_count"] == 2 and counts[0]["scale"] == pytest.approx(2.0)
    for row in rows:
        assert row["area_px"] == pytest.approx(np.pi * 15 ** 2, rel=0.1)
    mask = np.asarray(Image.open(tmp_path / "scaled" / "masks" / "small.png"))
    assert mask.shape == (80, 150)


def test_both_scale_options_are_refused(tmp_path, model_dir):
    src = _save(tmp_path / "pair.png", _touching_pair())
    with pytest.raises(ValueError, match="either"):
        predict([src], model_dir=model_dir, out=tmp_path / "o", wbc_diameter=40, auto_scale=True)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model"):
        load_model(tmp_path / "nope")
    assert cli_main(["predict", str(tmp_path), "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2


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

    def without_time(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert without_time(remote[0]) == without_time(serial[0])
    assert [r["wbc_count"] for r in serial[0]] == [2, 3]
    assert remote[1] == serial[1]
    assert [p for p, _ in remote[2]] == [p for p, _ in serial[2]] == [str(folder / "bad.png")]
    for name in ("pair", "three"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "dask" / "masks" / f"{name}.png")),
                                      np.asarray(Image.open(tmp_path / "serial" / "masks" / f"{name}.png")))


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
    from compare.overlay import draw_overlay
    from compare.predict import overlay_image
    from compare.instances import separate_instances

    image = _disks(30, [(50, 50), (50, 104), (140, 200)], (200, 330))
    labels = separate_instances(_blobs(1, (200, 330)), InstanceParams(min_area=200, split_area=2000, min_distance=12))
    assert labels.max() >= 2
    expected = draw_overlay(image, labels)
    got = np.asarray(overlay_image(image.copy(), labels, strip=17))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_auto_scale_keeps_large_image_counts(tmp_path, factor):
    """The shipped large images rescaled 0.5x and 2x: --auto-scale must give the true counts.

    Uses the committed default model (``results/models/unet``), or the model
    folder in ``$WBC_MODEL``; skipped when neither exists.
    """
    import os

    from compare.data import load_large
    from compare.instances import label_truth
    from compare.predict import default_model_dir

    model = Path(os.environ.get("WBC_MODEL", default_model_dir()))
    if not (model / ".complete").is_file():
        pytest.skip(f"no finished model at {model}")
    truth = {}
    for sample in load_large():
        h, w = sample.image.shape[:2]
        resized = Image.fromarray(sample.image).resize((round(w * factor), round(h * factor)), Image.Resampling.LANCZOS)
        resized.save(tmp_path / f"{sample.name}.png")
        truth[sample.name] = int(label_truth(sample.mask).max())
    counts, _, errors = predict([tmp_path], model_dir=model, out=tmp_path / "out", auto_scale=True,
                                show_progress=False)
    assert not errors
    assert {r["image"]: r["wbc_count"] for r in counts} == truth
    for row in counts:
        assert row["scale"] == pytest.approx(1 / factor, rel=0.1)


def test_dask_huge_image_by_blocks_equals_serial(tmp_path, model_dir, monkeypatch):
    """An image above WHOLE pixels is spread over the cluster block by block; same labels as here."""
    distributed = pytest.importorskip("distributed")
    import compare.predict as predict_module

    monkeypatch.setattr(predict_module, "WHOLE", 150)
    monkeypatch.setattr(predict_module, "BLOCK", 96)
    centres = [(60, 60), (60, 114), (170, 200), (250, 80), (250, 300)]
    src = _save(tmp_path / "big.png", _disks(30, centres, (320, 380)))
    small = _save(tmp_path / "small.png", _touching_pair())
    serial = predict([src, small], model_dir=model_dir, out=tmp_path / "serial", show_progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        remote = predict([src, small], model_dir=model_dir, out=tmp_path / "dask",
                         scheduler=cluster.scheduler_address, show_progress=False)
    assert [r["wbc_count"] for r in serial[0]] == [5, 2]
    assert remote[1] == serial[1]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "dask" / "masks" / "big.png")),
                                  np.asarray(Image.open(tmp_path / "serial" / "masks" / "big.png")))
