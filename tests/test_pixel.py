"""Tests for baselines.pixel and the modules it is built from, on tiny synthetic images."""

import pickle

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.exceptions import NotFittedError

from baselines.factories import mlp_segmenter, rf_segmenter, svm_segmenter
from baselines.features import FeatureBank
from baselines.pixel import PixelClassifierSegmenter
from baselines.sampling import sample_pixels
from tests.test_features import disk_image


def small_rf(random_state=0, **kwargs):
    forest = ExtraTreesClassifier(n_estimators=8, max_depth=8, n_jobs=1)
    bank = FeatureBank(sigmas=(1.0, 2.0))
    return PixelClassifierSegmenter(forest, bank, n_samples=2000, random_state=random_state, **kwargs)


def tiled_and_untiled(seg, image):
    """``seg``'s probabilities for ``image`` with 40 px tiles and whole; restores its tile size."""
    old = seg.tile
    try:
        seg.tile = 1024
        untiled = seg.predict_proba(image)
        seg.tile = 40
        return seg.predict_proba(image), untiled
    finally:
        seg.tile = old


def dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def training():
    pairs = [disk_image(64, 14, seed=1), disk_image(64, 10, centre=(20, 40), seed=2)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.fixture(scope="module")
def fitted(training):
    return small_rf().fit(*training)


def test_learns_disk_from_background(fitted):
    image, mask = disk_image(64, 12, centre=(34, 28), seed=3)
    prob = fitted.predict_proba(image)
    assert prob.shape == mask.shape and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    assert dice(prob > 0.5, mask) > 0.8


@pytest.mark.parametrize("factory", [rf_segmenter, svm_segmenter, mlp_segmenter])
def test_registry_factories_fit_and_predict(factory, training):
    seg = factory(random_state=0)
    seg.n_samples = 3000  # keep the test fast
    seg.fit(*training)
    image, mask = disk_image(64, 12, centre=(30, 30), seed=4)
    assert dice(seg.predict_proba(image) > 0.5, mask) > 0.8
    assert seg.fit_info_["n_features"] == seg.bank_.n_features


def test_tiled_equals_untiled_on_odd_sized_image(fitted):
    # Several disks on a 150 x 133 image, larger than the tile, odd width.
    rng = np.random.default_rng(5)
    image = np.tile(disk_image(64, 12, seed=6)[0], (3, 3, 1))[:150, :133]
    image = np.clip(image.astype(int) + rng.integers(-3, 4, image.shape), 0, 255).astype(np.uint8)
    tiled, untiled = tiled_and_untiled(fitted, image)
    assert tiled.shape == (150, 133)
    np.testing.assert_allclose(tiled, untiled, atol=1e-5)


def test_predict_before_fit_raises():
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        small_rf().predict_proba(disk_image()[0])
    with pytest.raises(NotFittedError):
        small_rf().save("never-written")


@pytest.mark.parametrize(
    "images, masks, message",
    [
        ([np.zeros((8, 8, 3), np.uint8)], [], "1 images but 0 masks"),
        ([np.zeros((8, 8), np.uint8)], [np.zeros((8, 8), bool)], "uint8 RGB"),
        ([np.zeros((8, 8, 3), np.float32)], [np.zeros((8, 8), bool)], "uint8 RGB"),
        ([np.zeros((8, 8, 3), np.uint8)], [np.zeros((8, 8), np.uint8)], "bool"),
        ([np.zeros((8, 8, 3), np.uint8)], [np.zeros((8, 6), bool)], "must match"),
        ([np.zeros((8, 8, 3), np.uint8)], [np.zeros((8, 8), bool)], "only one class"),
    ],
)
def test_fit_validates_input(images, masks, message):
    with pytest.raises(ValueError, match=message):
        small_rf().fit(images, masks)


def test_save_load_round_trip(fitted, tmp_path):
    fitted.save(tmp_path / "model")
    assert (tmp_path / "model" / "model.skops").is_file()
    loaded = PixelClassifierSegmenter.load(tmp_path / "model")
    image = disk_image(64, 12, centre=(30, 36), seed=7)[0]
    np.testing.assert_array_equal(loaded.predict_proba(image), fitted.predict_proba(image))
    assert loaded.bank_ == fitted.bank_


def test_load_refuses_pickle(fitted, tmp_path):
    fitted.save(tmp_path / "model")
    (tmp_path / "model" / "model.skops").write_bytes(pickle.dumps(fitted.classifier_))
    with pytest.raises(ValueError, match="not a skops model file"):
        PixelClassifierSegmenter.load(tmp_path / "model")


def test_load_refuses_untrusted_types(tmp_path):
    import skops.io as sio
    from sklearn.neighbors import KNeighborsClassifier

    seg = small_rf().fit(*[[x] for x in disk_image()])
    seg.save(tmp_path / "model")
    knn = KNeighborsClassifier(n_neighbors=1).fit(np.zeros((2, 1)), [0, 1])
    sio.dump(knn, tmp_path / "model" / "model.skops")
    with pytest.raises(ValueError, match="outside the trusted list"):
        PixelClassifierSegmenter.load(tmp_path / "model")


def test_same_random_state_same_model(training):
    image = disk_image(64, 12, centre=(30, 30), seed=8)[0]
    a = small_rf(random_state=3).fit(*training).predict_proba(image)
    b = small_rf(random_state=3).fit(*training).predict_proba(image)
    c = small_rf(random_state=4).fit(*training).predict_proba(image)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sampling_is_balanced_and_favours_boundary():
    lab = np.zeros((40, 40), bool)
    lab[10:30, 10:30] = True
    rng = np.random.default_rng(0)
    (picked,) = sample_pixels([lab], 400, boundary_width=2, boundary_weight=10.0, rng=rng)
    values = lab.ravel()[picked]
    assert values.sum() == 200 and (~values).sum() == 200
    ys, xs = np.unravel_index(picked, lab.shape)
    near = (np.minimum(np.abs(ys - 10), np.abs(ys - 29)) <= 2) | (np.minimum(np.abs(xs - 10), np.abs(xs - 29)) <= 2)
    # The band holds well under half of all pixels but most of the draw.
    assert near.mean() > 0.5


def small_auto_context(**kwargs):
    return small_rf(auto_context=True, context_sigmas=(1.0, 3.0), context_filters=("gauss", "max"), **kwargs)


@pytest.fixture(scope="module")
def fitted_context(training):
    return small_auto_context().fit(*training)


def test_auto_context_learns_and_saves_stage_two(fitted_context, tmp_path):
    image, mask = disk_image(64, 12, centre=(34, 28), seed=3)
    prob = fitted_context.predict_proba(image)
    assert dice(prob > 0.5, mask) > 0.8
    assert fitted_context.context_classifier_.n_features_in_ == fitted_context.bank_.n_features + 1 + 2 * 2
    fitted_context.save(tmp_path / "model")
    assert (tmp_path / "model" / "context_model.skops").is_file()
    loaded = PixelClassifierSegmenter.load(tmp_path / "model")
    assert loaded.auto_context and loaded.context_sigmas == (1.0, 3.0)
    np.testing.assert_array_equal(loaded.predict_proba(image), prob)


def test_auto_context_tiled_equals_untiled(fitted_context):
    image = np.tile(disk_image(64, 12, seed=6)[0], (3, 3, 1))[:150, :133]
    tiled, untiled = tiled_and_untiled(fitted_context, image)
    np.testing.assert_allclose(tiled, untiled, atol=1e-5)


def test_auto_context_refuses_untrusted_stage_two(fitted_context, tmp_path):
    import skops.io as sio
    from sklearn.neighbors import KNeighborsClassifier

    fitted_context.save(tmp_path / "model")
    knn = KNeighborsClassifier(n_neighbors=1).fit(np.zeros((2, 1)), [0, 1])
    sio.dump(knn, tmp_path / "model" / "context_model.skops")
    with pytest.raises(ValueError, match="outside the trusted list"):
        PixelClassifierSegmenter.load(tmp_path / "model")


def test_auto_context_needs_two_images():
    with pytest.raises(ValueError, match="context_folds"):
        small_auto_context().fit(*[[x] for x in disk_image()])


@pytest.mark.parametrize("rows", [500, 5_000, 30_000])
def test_direct_forest_proba_matches_sklearn(fitted, rows):
    from baselines.forest import positive_proba

    forest = fitted.classifier_
    X = np.random.default_rng(0).normal(size=(rows, forest.n_features_in_)).astype(np.float32)
    expected = forest.predict_proba(X)[:, list(forest.classes_).index(1)]
    for n_jobs in (1, 2):
        np.testing.assert_allclose(positive_proba(forest, X, n_jobs), expected, atol=1e-6)


def test_boosting_proba_matches_sklearn():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from baselines.forest import positive_proba

    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int8)
    model = HistGradientBoostingClassifier(max_iter=10).fit(X, y)
    np.testing.assert_allclose(positive_proba(model, X), model.predict_proba(X)[:, 1], atol=1e-6)


def test_move_threshold_sends_threshold_to_half():
    from baselines.decision import move_threshold

    p = np.linspace(0, 1, 101, dtype=np.float32)
    for t in (0.35, 0.5, 0.6):
        q = move_threshold(p, t)
        assert q.dtype == np.float32 and q[0] == 0 and abs(q[-1] - 1) < 1e-6
        assert np.all(np.diff(q) >= 0)
        np.testing.assert_array_equal(q >= 0.5, p >= np.float32(t))


def test_filled_dice_at_thresholds_equals_filling_each_threshold_on_its_own():
    from scipy import ndimage as ndi

    from baselines.decision import THRESHOLD_GRID, filled_dice_at_thresholds

    rng = np.random.default_rng(0)
    grid = np.asarray(THRESHOLD_GRID, np.float32)
    yy, xx = np.mgrid[:48, :40]
    ring = np.abs(np.hypot(yy - 24, xx - 20) - 12) < 3  # a ring: its inside is a hole at every threshold
    smooth = ndi.gaussian_filter(rng.random((48, 40)), 2).astype(np.float32)
    maps = [np.where(ring, 0.9, 0.1).astype(np.float32) + 0.05 * smooth,
            (smooth - smooth.min()) / np.ptp(smooth),
            np.zeros((48, 40), np.float32), np.ones((48, 40), np.float32)]
    truths = [ring | (np.hypot(yy - 24, xx - 20) < 12), smooth > np.median(smooth), np.zeros((48, 40), bool),
              np.zeros((48, 40), bool)]
    for prob, truth in zip(maps, truths):
        expected = []
        for t in grid:
            pred = ndi.binary_fill_holes(prob >= t)
            total = pred.sum() + truth.sum()
            expected.append(1.0 if total == 0 else 2.0 * (pred & truth).sum() / total)
        np.testing.assert_array_equal(filled_dice_at_thresholds(prob, truth, grid), expected)


def test_threshold_tuning_is_learned_saved_and_tiled_exactly(training, tmp_path):
    from baselines.decision import THRESHOLD_GRID

    seg = small_rf(threshold_folds=2).fit(*training)
    assert seg.threshold_ in THRESHOLD_GRID
    assert seg.fit_info_["threshold"] == seg.threshold_
    image, mask = disk_image(64, 12, centre=(34, 28), seed=3)
    prob = seg.predict_proba(image)
    assert dice(prob > 0.5, mask) > 0.8
    seg.save(tmp_path / "model")
    loaded = PixelClassifierSegmenter.load(tmp_path / "model")
    assert loaded.threshold_ == seg.threshold_ and loaded.threshold_folds == 2
    np.testing.assert_array_equal(loaded.predict_proba(image), prob)
    big = np.tile(disk_image(64, 12, seed=6)[0], (3, 3, 1))[:150, :133]
    tiled, untiled = tiled_and_untiled(seg, big)
    np.testing.assert_allclose(tiled, untiled, atol=1e-5)


def test_threshold_tuning_refuses_auto_context(training):
    with pytest.raises(ValueError, match="threshold_folds"):
        small_rf(threshold_folds=2, auto_context=True).fit(*training)


@pytest.mark.parametrize("factory", [rf_segmenter, svm_segmenter, mlp_segmenter])
def test_registry_model_round_trips_through_skops(factory, training, tmp_path):
    seg = factory(random_state=0)
    seg.n_samples = 3000  # keep the test fast
    seg.fit(*training)
    seg.save(tmp_path / "model")
    loaded = PixelClassifierSegmenter.load(tmp_path / "model")
    image = np.tile(disk_image(64, 12, seed=6)[0], (3, 3, 1))[:150, :133]
    loaded.tile = seg.tile = 64  # tiled path too
    np.testing.assert_array_equal(loaded.predict_proba(image), seg.predict_proba(image))
    assert loaded.threshold_ == seg.threshold_ and loaded.bank_ == seg.bank_
