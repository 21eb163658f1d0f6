"""``WBCModel``: fit, predict, save and load; colour normalisation and scale estimation on synthetic smears."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.exceptions import NotFittedError

from compare.io.images import Sample
from compare.pipeline.colour import STAIN_DIRECTION_VERSION
from compare.pipeline.model import FORMAT_VERSION, ModelFormatError, WBCModel, default_model_dir, load_model
from compare.pipeline.segmenters import REGISTRY, SegmenterSpec
from tests.synthetic import BACKGROUND, RED_CELL, WBC, smear

TINT = np.array([1.0, 0.9, 0.7])


def _tinted(image: np.ndarray) -> np.ndarray:
    """The image under a warmer light: green and blue dimmed, as another lab's lamp and camera give."""
    return np.clip(np.rint(image * TINT), 0, 255).astype(np.uint8)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A 120 x 160 smear with two 40 px WBCs and eight red cells, and its mask."""
    return smear((120, 160), [(50, 50), (70, 115)], radius=20, seed=3, n_red=8)


def test_fit_predict_save_load_round_trip(tmp_path, pair):
    image, mask = pair
    samples = [Sample(name="a", image=image, mask=mask, group="a", path=Path("a.png"))]
    model = WBCModel("threshold", require_nucleus=False).fit(samples)
    before = model.predict(image, name="a.png")
    assert before.count == 2
    assert _iou(before.labels, mask) > 0.85
    assert before.labels.shape == mask.shape and before.probability.dtype == np.float32
    assert list(before.cells.id) == [1, 2]

    folder = model.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == [".complete", "model.json", "segmenter"]
    manifest = json.loads((folder / "model.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["segmenter"] == "threshold"
    assert len(manifest["training_data_sha256"]) == 64
    assert manifest["training_scale"]["wbc_diameter"] == pytest.approx(40, abs=2)

    loaded = load_model(folder)
    after = loaded.predict(image, name="a.png")
    np.testing.assert_array_equal(after.labels, before.labels)
    np.testing.assert_array_equal(after.probability, before.probability)
    pd.testing.assert_frame_equal(after.cells, before.cells)
    assert after.scale == before.scale and after.warnings == before.warnings
    assert loaded.manifest() == model.manifest()

    # fit(images, masks) is the same fit as fit(samples).
    again = WBCModel("threshold", require_nucleus=False).fit([image], [mask])
    assert again.manifest()["training_data_sha256"] == manifest["training_data_sha256"]


def test_not_fitted_model_says_so(tmp_path, pair):
    model = WBCModel("threshold", require_nucleus=False)
    with pytest.raises(NotFittedError, match="fit"):
        model.predict(pair[0])
    with pytest.raises(NotFittedError):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_fit_needs_a_mask_per_image(pair):
    with pytest.raises(ValueError, match="as many masks as images"):
        WBCModel("threshold", require_nucleus=False).fit([pair[0], pair[0]], [pair[1]])


def test_old_model_folder_says_how_to_recreate(tmp_path):
    old = tmp_path / "threshold"
    old.mkdir()
    (old / "segmenter.json").write_text(json.dumps({"segmenter": "threshold", "fit_s": 0.0}))
    (old / "instances.json").write_text("{}")
    (old / ".complete").write_text("")
    with pytest.raises(ModelFormatError, match="re-create it with 'python -m compare run"):
        load_model(old)


def test_other_format_version_and_unfinished_folder_are_refused(tmp_path, pair):
    folder = WBCModel("threshold", require_nucleus=False).fit([pair[0]], [pair[1]]).save(tmp_path / "m")
    manifest = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ModelFormatError, match="format version"):
        load_model(folder)
    (folder / "model.json").write_text(json.dumps(manifest))
    (folder / ".complete").unlink()
    with pytest.raises(FileNotFoundError, match="not saved completely"):
        load_model(folder)


def test_model_of_format_version_1_is_refused_with_what_to_do(tmp_path, pair):
    folder = WBCModel("threshold", require_nucleus=False).fit([pair[0]], [pair[1]]).save(tmp_path / "m")
    manifest = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**manifest, "format_version": 1}))
    with pytest.raises(ModelFormatError, match="format version 1, this version reads 2 only; re-create the model"):
        load_model(folder)


def test_read_manifest_gives_the_facts_and_hash_without_loading(tmp_path, pair):
    import hashlib

    model = WBCModel("threshold", require_nucleus=False).fit([pair[0]], [pair[1]])
    folder = model.save(tmp_path / "m")
    manifest = WBCModel.read_manifest(folder)
    assert manifest.folder == folder.resolve() and manifest.segmenter == "threshold"
    assert manifest.sha256 == hashlib.sha256((folder / "model.json").read_bytes()).hexdigest()
    assert manifest.data == json.loads(json.dumps(model.manifest()))
    assert model.manifest_ == manifest and load_model(folder).manifest_ == manifest


def test_model_is_a_scikit_learn_estimator():
    from sklearn.base import clone

    model = WBCModel("rf", random_state=3, stain_anchor="none")
    assert model.get_params() == {"segmenter": "rf", "random_state": 3, "normalise_colour": True,
                                  "auto_scale": True, "require_nucleus": True, "stain_anchor": "none"}
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    assert clone(WBCModel("rf")).segmenter == "rf"


def test_prediction_carries_the_nuclei_and_the_cell_table_measures_them(pair):
    from compare.pipeline.measure import cell_table, nucleus_labels

    image, mask = pair
    model = WBCModel("threshold", require_nucleus=False).fit([image], [mask])
    prediction = model.predict(image)
    assert prediction.nuclei.shape == prediction.labels.shape and prediction.nuclei.dtype == prediction.labels.dtype
    np.testing.assert_array_equal(prediction.nuclei, nucleus_labels(prediction.labels, image))
    assert set(np.unique(prediction.nuclei[prediction.nuclei > 0])) <= set(prediction.cells.id)
    pd.testing.assert_frame_equal(prediction.cells, cell_table(prediction.labels, image,
                                                               probability=prediction.probability))
    quick = model.predict(image, cells=False)
    assert quick.nuclei is None and list(quick.cells.columns) == ["id"]
    np.testing.assert_array_equal(quick.labels, prediction.labels)


def test_segment_block_is_the_segmenters_probability(pair):
    image, mask = pair
    model = WBCModel("threshold", require_nucleus=False).fit([image], [mask])
    block = model.segment_block(image)
    assert block.dtype == np.float32 and block.shape == image.shape[:2]
    np.testing.assert_array_equal(block, model.segmenter_.predict_proba(image))


def test_default_model_is_package_data_and_loads():
    folder = default_model_dir()
    assert folder.parent == Path(__file__).resolve().parents[1] / "compare" / "pipeline"
    manifest = WBCModel.read_manifest(folder)
    assert manifest.segmenter == "unet" and manifest.data["format_version"] == FORMAT_VERSION


class ColourSegmenter:
    """WBC = pixels near the training WBCs' mean colour: a segmenter that colour shifts break.

    Parameters
    ----------
    random_state : int
        Unused; the registry passes it.
    """

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    def fit(self, images, masks):
        pixels = np.concatenate([im[m].astype(float) for im, m in zip(images, masks)])
        self.colour_ = pixels.mean(axis=0)
        self.radius_ = 1.5 * float(np.percentile(np.linalg.norm(pixels - self.colour_, axis=1), 95))
        return self

    def predict_proba(self, image):
        distance = np.linalg.norm(np.asarray(image, float) - self.colour_, axis=2)
        return (distance <= self.radius_).astype(np.float32)


@pytest.fixture()
def colour_segmenter(monkeypatch):
    spec = SegmenterSpec("colour", "tests.test_model:ColourSegmenter", "tests.test_model:ColourSegmenter",
                         "WBC colour within a learned distance")
    monkeypatch.setitem(REGISTRY, "colour", spec)
    return "colour"


@pytest.mark.parametrize("segmenter", ["threshold", "colour"])
def test_white_balance_undoes_a_tint(pair, segmenter, colour_segmenter):
    image, mask = pair
    model = WBCModel(segmenter, require_nucleus=False).fit([image], [mask])
    plain = model.predict(image, scale=1.0)
    tinted = model.predict(_tinted(image), scale=1.0)
    assert plain.count == tinted.count == 2
    assert _iou(plain.labels, tinted.labels) >= 0.9
    if segmenter == "colour":
        # Without the white balance this segmenter loses the tinted WBCs:
        # the balance, not the segmenter, is what makes them equal.
        blind = WBCModel(segmenter, normalise_colour=False, require_nucleus=False).fit([image], [mask])
        assert _iou(blind.predict(image, scale=1.0).labels, blind.predict(_tinted(image), scale=1.0).labels) < 0.5


def _packed_smear(shape=(400, 400), rbc=31.0, wbc=60.0, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Red cells of diameter ``rbc`` packed on a jittered hexagonal grid around one WBC of diameter ``wbc``.

    Returns
    -------
    image : ndarray, shape (H, W, 3), uint8
    mask : ndarray, shape (H, W), bool
        The WBC.
    """
    rng = np.random.default_rng(seed)
    height, width = shape
    yy, xx = np.mgrid[:height, :width]
    image = np.empty((height, width, 3), np.float32)
    image[:] = BACKGROUND
    centre = (height / 2, width / 2)
    spacing = 1.15 * rbc  # gaps between neighbours, as in a well-spread monolayer
    for row, y in enumerate(np.arange(rbc / 2, height, spacing * np.sqrt(3) / 2)):
        for x in np.arange((row % 2) * spacing / 2, width, spacing):
            cy, cx = y + rng.normal(0, 1.5), x + rng.normal(0, 1.5)
            if np.hypot(cy - centre[0], cx - centre[1]) < (wbc + rbc) / 2:
                continue
            radius = rbc / 2 * rng.uniform(0.95, 1.05)
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = RED_CELL
    mask = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= (wbc / 2) ** 2
    image[mask] = WBC
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def test_twice_magnified_smear_is_brought_back_to_training_scale():
    image, mask = _packed_smear(seed=0)
    model = WBCModel("threshold", require_nucleus=False).fit([image], [mask])
    new, new_mask = _packed_smear(seed=1)
    assert model.predict(new).scale.factor == pytest.approx(1.0)  # same scale: left alone
    big = np.asarray(Image.fromarray(new).resize((800, 800), Image.Resampling.LANCZOS))
    prediction = model.predict(big)
    assert prediction.scale.method == "red-cells" and prediction.scale.confident
    assert prediction.scale.factor == pytest.approx(0.5, rel=0.1)
    assert prediction.count == 1 and not prediction.warnings
    # Labels come back at the image's own size, covering the 2x WBC.
    big_mask = np.asarray(Image.fromarray(new_mask).resize((800, 800), Image.Resampling.NEAREST))
    assert prediction.labels.shape == (800, 800) and _iou(prediction.labels, big_mask) > 0.85


def test_objects_without_a_nucleus_are_dropped():
    """Two pale cells among red cells, one with a dark nucleus: only that one is kept, renumbered 1."""
    from compare.pipeline.nucleus_check import drop_without_nucleus

    yy, xx = np.mgrid[:100, :200]
    image = np.empty((100, 200, 3), np.uint8)
    image[:] = (235, 225, 225)
    labels = np.zeros((100, 200), np.uint16)
    for cy, cx in ((10, 10), (10, 100), (90, 100), (90, 190), (10, 190)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 9 ** 2] = (200, 120, 140)  # red cells
    for label, cx in ((1, 50), (2, 150)):
        cell = (yy - 50) ** 2 + (xx - cx) ** 2 < 30 ** 2
        image[cell] = (190, 160, 215)  # pale lilac cytoplasm
        labels[cell] = label
    image[(yy - 50) ** 2 + (xx - 150) ** 2 < 14 ** 2] = (70, 20, 110)  # a nucleus in cell 2 only
    kept = drop_without_nucleus(labels, image)
    assert kept.max() == 1
    assert np.array_equal(kept > 0, labels == 2)


def test_objects_on_the_black_field_edge_are_dropped():
    """An object mostly on the black mask around a round field of view is not a WBC, though it is dark."""
    from compare.pipeline.nucleus_check import drop_without_nucleus

    yy, xx = np.mgrid[:100, :200]
    image = np.empty((100, 200, 3), np.uint8)
    image[:] = (235, 225, 225)
    image[:, 170:] = (5, 5, 8)  # outside the field of view
    labels = np.zeros((100, 200), np.uint16)
    for cy, cx in ((10, 10), (90, 10), (10, 110), (90, 110)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 9 ** 2] = (200, 120, 140)  # red cells
    cell = (yy - 50) ** 2 + (xx - 60) ** 2 < 25 ** 2
    image[cell] = (190, 160, 215)
    image[(yy - 50) ** 2 + (xx - 60) ** 2 < 12 ** 2] = (70, 20, 110)  # a real WBC with its nucleus
    labels[cell] = 1
    edge = (np.abs(yy - 50) < 20) & (xx >= 160) & (xx < 195)  # mostly black, a rim of lit plasma
    labels[edge] = 2
    kept = drop_without_nucleus(labels, image)
    assert kept.max() == 1
    assert np.array_equal(kept > 0, labels == 1)


def test_object_reaching_into_a_dim_unlit_edge_is_dropped_and_a_wbc_beside_it_kept():
    """A purple blob cut by a dark-blue (not black) field edge has nucleus-dark pixels, yet lies partly outside the field."""
    from compare.pipeline.nucleus_check import MAX_UNLIT_FRACTION, drop_without_nucleus

    yy, xx = np.mgrid[:120, :240]
    image = np.empty((120, 240, 3), np.uint8)
    image[:] = (235, 225, 225)
    image[:, 200:] = (30, 35, 58)  # outside the field: dark blue, brighter than black
    for cy, cx in ((15, 15), (105, 15), (15, 170), (105, 170), (60, 110)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 9 ** 2] = (200, 120, 140)  # red cells
    labels = np.zeros((120, 240), np.uint16)
    wbc = (yy - 60) ** 2 + (xx - 50) ** 2 < 25 ** 2
    image[wbc] = (190, 160, 215)
    image[(yy - 60) ** 2 + (xx - 50) ** 2 < 12 ** 2] = (70, 20, 110)
    labels[wbc] = 1
    blob = (yy - 60) ** 2 + (xx - 195) ** 2 < 14 ** 2  # a cell cut by the edge, and the edge it bleeds into
    image[blob & (xx < 200)] = (70, 20, 110)
    labels[blob] = 2
    unlit_share = (blob & (xx >= 200)).sum() / blob.sum()
    assert MAX_UNLIT_FRACTION < unlit_share < 0.5  # partly outside the field, far from mostly
    kept = drop_without_nucleus(labels, image)
    assert np.array_equal(kept > 0, labels == 1)


def test_pale_nucleus_among_overlapping_red_cells_is_kept(monkeypatch):
    """Overlapping red cells as dense as a pale nucleus: the WBC, mostly denser than red cells, stays; a clump goes."""
    from compare.pipeline.nucleus_check import drop_without_nucleus

    # The density tests alone: these flat, small cells have no texture to
    # speak of (the texture test has its own test below).
    monkeypatch.setattr("compare.pipeline.nucleus_check.MIN_TEXTURE_RATIO", np.inf)

    yy, xx = np.mgrid[:200, :300]
    image = np.empty((200, 300, 3), np.uint8)
    image[:] = (235, 225, 225)
    labels = np.zeros((200, 300), np.uint16)
    centres = [(cy, cx) for cy in range(12, 200, 30) for cx in range(150, 300, 30)]
    for i, (cy, cx) in enumerate(centres):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 9 ** 2] = (200, 120, 140)  # red cells
        if i % 6:
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < 4 ** 2] = (170, 60, 90)  # overlaps, denser than the nucleus
    wbc = (yy - 60) ** 2 + (xx - 60) ** 2 < 28 ** 2
    image[wbc] = (215, 200, 225)  # pale cytoplasm
    image[(yy - 60) ** 2 + (xx - 60) ** 2 < 22 ** 2] = (150, 110, 160)  # a pale nucleus
    labels[wbc] = 1
    for cy, cx in ((150, 40), (150, 60), (165, 50)):  # a clump of red cells with overlaps
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 9 ** 2] = (200, 120, 140)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 4 ** 2] = (170, 60, 90)
    labels[138:176, 29:71] = 2
    kept = drop_without_nucleus(labels, image)
    assert np.array_equal(kept > 0, labels == 1)
    # The first test alone would drop the WBC too: its nucleus is not denser than the overlaps.
    monkeypatch.setattr("compare.pipeline.nucleus_check.MIN_DENSE_FRACTION", 2.0)
    assert drop_without_nucleus(labels, image).max() == 0


def test_textured_pale_nucleus_is_kept_and_a_smooth_clump_of_red_cells_dropped():
    """A lobed, granular nucleus no denser than overlapping red cells passes by its texture; three red cells do not.

    Texture decides only in an image where no object passes a density test.
    """
    from compare.pipeline.nucleus_check import (
        MIN_CELL_DENSITY_RATIO,
        MIN_TEXTURE_RATIO,
        drop_without_nucleus,
        interior_texture,
        nucleus_shares,
    )

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:240, :400]
    image = np.empty((240, 400, 3), np.uint8)
    image[:] = (235, 225, 225)
    red, overlap = (200, 120, 140), (170, 60, 90)
    centres = [(cy + rng.integers(-3, 4), cx + rng.integers(-3, 4)) for cy in range(20, 240, 36)
               for cx in range(200, 400, 36)]
    for cy, cx in centres:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 15 ** 2] = red
    for (cy, cx), dy in zip(centres[::2], rng.integers(-12, 12, len(centres))):  # overlapping pairs
        first, second = (yy - cy) ** 2 + (xx - cx) ** 2 < 15 ** 2, (yy - cy - dy) ** 2 + (xx - cx - 18) ** 2 < 15 ** 2
        image[second] = red
        image[first & second] = overlap
    labels = np.zeros((240, 400), np.uint16)
    wbc = (yy - 70) ** 2 + (xx - 80) ** 2 < 34 ** 2
    image[wbc] = (215, 200, 225)  # pale cytoplasm
    nucleus = np.zeros_like(wbc)
    for cy, cx in ((60, 70), (80, 92), (62, 95), (84, 66)):  # four lobes
        nucleus |= (yy - cy) ** 2 + (xx - cx) ** 2 < 9 ** 2
    image[nucleus] = (160, 110, 165)
    image[nucleus & (rng.random(wbc.shape) < 0.25)] = (175, 70, 110)  # granules, as dense as the overlaps
    labels[wbc] = 1
    clump = np.zeros_like(wbc)
    for cy, cx in ((180, 60), (180, 84), (200, 72)):
        cell = (yy - cy) ** 2 + (xx - cx) ** 2 < 15 ** 2
        image[cell & ~clump], image[cell & clump] = red, overlap
        clump |= cell
    labels[clump] = 2  # outlined as a model would
    dark, dense, _ = nucleus_shares(labels, image)
    assert dark[1] < 0.08 and dense[1] < 0.45  # both density tests would drop the WBC
    texture, density = interior_texture(labels, image)
    assert texture[1] > MIN_TEXTURE_RATIO > texture[2]
    assert density[1] > MIN_CELL_DENSITY_RATIO
    kept = drop_without_nucleus(labels, image)
    assert np.array_equal(kept > 0, labels == 1)
    # Beside a WBC whose nucleus passes by density, density works in this
    # image: the textured pale object no longer gets in by its texture.
    other = (yy - 190) ** 2 + (xx - 160) ** 2 < 30 ** 2
    image[other] = (190, 160, 215)
    image[(yy - 190) ** 2 + (xx - 160) ** 2 < 14 ** 2] = (70, 20, 110)
    labels[other] = 3
    kept = drop_without_nucleus(labels, image)
    assert np.array_equal(kept > 0, labels == 3)


def test_colour_warning_for_another_stain_not_for_the_training_one(pair):
    """Nuclei restained brownish (more blue absorbed) are flagged; the training colours are not."""
    from stain.looks import restain

    image, mask = pair
    others = [smear((120, 160), [(60, 80)], radius=20, seed=s, n_red=8) for s in (4, 5, 6)]
    model = WBCModel("threshold", require_nucleus=False).fit([image] + [o[0] for o in others],
                                                            [mask] + [o[1] for o in others])
    assert not any("stain colours" in w for w in model.predict(image).warnings)
    warned = model.predict(restain(image, haematoxylin=(0.45, 0.6, 0.66))).warnings
    assert any("stain colours unlike the training images" in w for w in warned)


def test_model_saved_with_an_older_colour_definition_has_no_colour_check(tmp_path, pair):
    from stain.looks import restain

    image, mask = pair
    folder = WBCModel("threshold", require_nucleus=False).fit([image], [mask]).save(tmp_path / "m")
    manifest = json.loads((folder / "model.json").read_text())
    manifest["stain_direction_version"] = STAIN_DIRECTION_VERSION - 1
    (folder / "model.json").write_text(json.dumps(manifest))
    loaded = load_model(folder)
    assert loaded.colour_warning_deg_ == np.inf
    assert not any("stain colours" in w for w in loaded.predict(restain(image, haematoxylin=(0.45, 0.6, 0.66))).warnings)


def test_dark_rim_of_the_field_edge_is_not_a_nucleus():
    """A red cell cut by the field-of-view edge, whose only dark pixels are the edge's blurred rim, is dropped."""
    from compare.pipeline.nucleus_check import drop_without_nucleus

    yy, xx = np.mgrid[:200, :400]
    image = np.empty((200, 400, 3), np.uint8)
    image[:] = (235, 225, 225)
    for cy in range(15, 200, 45):
        for cx in range(15, 340, 45):
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < 9 ** 2] = (200, 120, 140)  # red cells
    cell = (yy - 100) ** 2 + (xx - 120) ** 2 < 25 ** 2
    image[cell] = (190, 160, 215)
    image[(yy - 100) ** 2 + (xx - 120) ** 2 < 12 ** 2] = (70, 20, 110)  # a real WBC with its nucleus
    image[:, 372:374] = (80, 60, 90)  # the blurred rim: as dark as a nucleus, but lit (0.5 % of the image)
    image[:, 374:] = (5, 5, 8)  # outside the field of view
    cut = (yy - 100) ** 2 + (xx - 368) ** 2 < 12 ** 2
    image[cut & (xx < 372)] = (200, 120, 140)  # a red cell cut by the edge
    labels = np.zeros((200, 400), np.uint16)
    labels[cell] = 1
    labels[cut & (xx < 374)] = 2  # the object found there: the cut cell and the rim, no black pixels
    kept = drop_without_nucleus(labels, image)
    assert np.array_equal(kept > 0, labels == 1)


def test_stain_anchor_is_recorded_and_a_manifest_without_it_is_refused(tmp_path, pair):
    image, mask = pair
    with pytest.raises(ValueError, match="stain_anchor"):
        WBCModel("threshold", stain_anchor="macenko").fit([image], [mask])
    assert WBCModel("threshold").fit([image], [mask]).nucleus_reference_ is None  # the registry's choice
    assert REGISTRY["rf"].stain_anchor == "gain"
    model = WBCModel("threshold", require_nucleus=False, stain_anchor="gain").fit([image], [mask])
    assert model.nucleus_reference_.shape == (3,) and np.all(model.nucleus_reference_ > 0)
    folder = model.save(tmp_path / "m")
    manifest = json.loads((folder / "model.json").read_text())
    assert manifest["stain_anchor"] == "gain" and len(manifest["nucleus_reference"]) == 3
    del manifest["stain_anchor"], manifest["nucleus_reference"]
    (folder / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="without stain_anchor, nucleus_reference"):
        load_model(folder)
    assert WBCModel("threshold", stain_anchor="none").fit([image], [mask]).nucleus_reference_ is None


class RecordingSegmenter(ColourSegmenter):
    """:class:`ColourSegmenter` that keeps the images it was fitted on."""

    def fit(self, images, masks):
        self.seen_ = [np.array(im) for im in images]
        return super().fit(images, masks)


def test_fits_inside_a_sharing_block_prepare_once_and_learn_the_same(monkeypatch, pair):
    import stain.augment
    from compare.pipeline.preparation import sharing_preparation

    for name, copies in (("copied", 2), ("copied-again", 2), ("plain", 0)):
        monkeypatch.setitem(REGISTRY, name, SegmenterSpec(
            name, "tests.test_model:RecordingSegmenter", "tests.test_model:RecordingSegmenter", "records its input",
            stain_copies=copies, stain_copy_strength=1.0))
    calls = []
    original = stain.augment.random_stain
    monkeypatch.setattr(stain.augment, "random_stain", lambda *a, **k: calls.append(1) or original(*a, **k))
    image, mask = pair
    images, masks = [image, _tinted(image)], [mask, mask]

    alone = {name: WBCModel(name, require_nucleus=False).fit(images, masks) for name in ("copied", "plain")}
    calls_alone = len(calls)
    with sharing_preparation():
        shared = {name: WBCModel(name, require_nucleus=False).fit(images, masks)
                  for name in ("copied", "copied-again", "plain")}
    # The two segmenters with the same copies drew them once between them.
    assert calls_alone == 4 and len(calls) - calls_alone == 4
    for name, reference in (("copied", alone["copied"]), ("copied-again", alone["copied"]), ("plain", alone["plain"])):
        model = shared[name]
        assert len(model.segmenter_.seen_) == len(reference.segmenter_.seen_)
        for a, b in zip(model.segmenter_.seen_, reference.segmenter_.seen_):
            np.testing.assert_array_equal(a, b)
        for attribute in ("background_", "stain_direction_", "nucleus_reference_"):
            np.testing.assert_array_equal(getattr(model, attribute), getattr(reference, attribute))
        assert model.params_ == reference.params_ and model.training_scale_ == reference.training_scale_
        assert model.colour_warning_deg_ == reference.colour_warning_deg_
    # Outside the block nothing is remembered.
    WBCModel("copied", require_nucleus=False).fit(images, masks)
    assert len(calls) - calls_alone == 8
