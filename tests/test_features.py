"""Tests for baselines.features on tiny synthetic images."""

import numpy as np
import pytest

from baselines.context import context_features, context_reach
from baselines.features import (
    FeatureBank,
    cached_features,
    clear_feature_cache,
    colour_channels,
    downsample_mean,
    upsample,
)


def disk_image(size=64, radius=14, centre=None, seed=0):
    """Pinkish background with a purple disk; returns (image uint8, mask bool)."""
    rng = np.random.default_rng(seed)
    cy, cx = centre if centre is not None else (size // 2, size // 2)
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    image = np.empty((size, size, 3), np.float32)
    image[:] = (230, 180, 190)  # pink
    image[mask] = (110, 60, 160)  # purple
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def test_shape_dtype_and_names():
    bank = FeatureBank()
    image, _ = disk_image()
    feats = bank.compute(image)
    assert feats.dtype == np.float32
    assert feats.shape == (64 // bank.downsample, 64 // bank.downsample, len(bank.names))
    assert len(set(bank.names)) == len(bank.names)
    assert feats.flags.c_contiguous
    assert np.isfinite(feats).all()


@pytest.mark.parametrize(
    "filters", [("hessian", "structure"), ("dog", "gradmag"), ("gradmag_fd", "log_fd"), ("max", "min")]
)
def test_every_filter_gives_named_finite_features(filters):
    bank = FeatureBank(colours=("R",), filtered=("Hx",), filters=filters, sigmas=(1.0, 2.0), downsample=1)
    feats = bank.compute(disk_image(32)[0])
    assert feats.shape == (32, 32, bank.n_features)
    per_sigma = sum(2 if f in ("hessian", "structure") else 1 for f in filters)
    assert bank.n_features == 1 + 2 * per_sigma
    assert np.isfinite(feats).all()


def test_colour_spaces_separate_disk_from_background():
    image, mask = disk_image()
    chans = colour_channels(image.astype(np.float32) / 255, ("Hx", "S", "a"))
    # Haematoxylin, saturation and Lab a* all differ between purple and pink.
    for k in range(3):
        inside, outside = chans[..., k][mask].mean(), chans[..., k][~mask].mean()
        assert abs(inside - outside) > 0.05


def test_unknown_filter_and_channel_are_refused():
    with pytest.raises(ValueError, match="Unknown filter"):
        FeatureBank(filters=("sobel",))
    with pytest.raises(ValueError, match="Unknown colour"):
        FeatureBank(colours=("Q",))


def test_reach_is_on_the_block_grid():
    bank = FeatureBank(sigmas=(1.0, 3.0), downsample=2)
    assert bank.reach % 2 == 0
    assert bank.reach >= 2 * int(4 * 3.0 + 0.5)


def test_downsample_and_upsample():
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(downsample_mean(x, 2), [[2.5, 4.5], [10.5, 12.5]])
    const = np.full((3, 5), 0.7, np.float32)
    up = upsample(const, 2)
    assert up.shape == (6, 10) and up.dtype == np.float32
    np.testing.assert_allclose(up, 0.7, rtol=1e-6)
    ramp = upsample(np.array([[0.0, 1.0]], np.float32), 2)
    np.testing.assert_allclose(ramp[0], [0.0, 0.25, 0.75, 1.0])
    with pytest.raises(ValueError, match="multiple"):
        downsample_mean(np.zeros((3, 4)), 2)


def test_cache_returns_same_read_only_array():
    clear_feature_cache()
    bank = FeatureBank()
    image, _ = disk_image()
    first = cached_features(bank, image)
    assert cached_features(bank, image.copy()) is first
    assert not first.flags.writeable
    other = cached_features(FeatureBank(sigmas=(1.0,)), image)
    assert other.shape[-1] != first.shape[-1]


def test_fast_derivatives_track_the_exact_filters():
    image, _ = disk_image(seed=9)
    exact = FeatureBank(filters=("gradmag", "log")).compute(image)
    fast = FeatureBank(filters=("gradmag_fd", "log_fd")).compute(image)
    for k in range(exact.shape[-1]):
        r = np.corrcoef(exact[..., k].ravel(), fast[..., k].ravel())[0, 1]
        assert r > 0.95


def test_context_features_shape_order_and_reach():
    prob = np.zeros((40, 40), np.float32)
    prob[18:22, 18:22] = 1.0
    ctx = context_features(prob, (1.0, 4.0), ("gauss", "max", "min"))
    assert ctx.shape == (40, 40, 1 + 3 * 2) and ctx.dtype == np.float32
    np.testing.assert_array_equal(ctx[..., 0], prob)
    assert ctx[20, 20, 2] < ctx[20, 20, 1]  # wider Gaussian spreads the blob more
    assert ctx[15, 20, 4] == 1.0 and ctx[15, 20, 3] == 0.0  # max over 9 px reaches out, over 3 px not
    assert ctx[20, 20, 6] == 0.0 and ctx[20, 20, 5] == 1.0  # min over 9 px eats in, over 3 px not
    assert context_reach((1.0, 4.0), ("gauss",)) == 16
    with pytest.raises(ValueError, match="Unknown context filters"):
        context_features(prob, (1.0,), ("median",))


@pytest.mark.parametrize("filters", [("gauss", "gradmag_fd", "log_fd"), ("max", "min")])
def test_reach_covers_every_filter(filters):
    # A crop with `reach` px of real context gives the whole image's features inside it.
    bank = FeatureBank(colours=("R",), filtered=("Hx", "a"), filters=filters, sigmas=(1.0, 2.0), downsample=2)
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    whole = bank.compute(image)
    r, y0, x0, size = bank.reach, 40, 36, 16
    crop = bank.compute(image[y0 - r : y0 + size + r, x0 - r : x0 + size + r])
    c, f = r // 2, 2
    np.testing.assert_allclose(
        crop[c : c + size // f, c : c + size // f], whole[y0 // f : (y0 + size) // f, x0 // f : (x0 + size) // f], atol=1e-5
    )


def test_max_min_filters_see_a_window_of_four_sigma():
    bank = FeatureBank(colours=(), filtered=("R",), filters=("max", "min"), sigmas=(1.0,), downsample=1)
    image = np.zeros((40, 40, 3), np.uint8)
    image[20, 20] = 255
    feats = bank.compute(image)
    # The Gaussian (radius 4) smears the speck 4 px, the max window adds 4 more.
    assert feats[20, 28, 0] > 0 and feats[20, 29, 0] == 0
    assert feats[20, 20, 1] < 1e-6  # min over the window removes the speck


def test_threaded_scales_equal_serial(monkeypatch):
    # Large images run the per-sigma filters in threads; they must write
    # exactly the columns the serial path writes.
    import baselines.features as features

    bank = FeatureBank(filters=("gauss", "gradmag_fd", "log_fd", "hessian"), sigmas=(1.0, 2.0, 4.0))
    image, _ = disk_image(64)
    monkeypatch.setattr(features, "THREAD_MIN_PIXELS", 10**9)
    serial = bank.compute(image, n_jobs=2)
    monkeypatch.setattr(features, "THREAD_MIN_PIXELS", 0)
    threaded = bank.compute(image, n_jobs=2)
    np.testing.assert_array_equal(threaded, serial)
    # And the columns are where the names say: the Gaussian of L at sigma 2.
    k = bank.names.index("L_gauss_s2")
    L = features.colour_channels(downsample_mean(image, bank.downsample) / np.float32(255), ("L",))[..., 0]
    np.testing.assert_allclose(serial[..., k], ndi_gauss(L, 2.0), rtol=1e-5, atol=1e-6)


def ndi_gauss(x, s):
    from scipy import ndimage

    return ndimage.gaussian_filter(x, s, mode="reflect")
