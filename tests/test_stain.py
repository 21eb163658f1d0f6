"""Tests for the stain package on small synthetic smears."""

from __future__ import annotations

import time

import numpy as np
import pytest

from stain.normalise import SIGTUPLE_BACKGROUND, background_colour, white_balance


def synthetic_smear(size: int = 160, *, wbc_radius: int = 30, seed: int = 0, black_edge: bool = False):
    """A plasma background with red cells and one WBC (purple nucleus in lilac cytoplasm).

    Returns the (size, size, 3) uint8 image and the (size, size) bool WBC mask.
    """
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.float64)
    img[:] = (236, 238, 228)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(size * size // 900):
        cy, cx = rng.integers(0, size, 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 15 ** 2] = (205, 170, 190)
    c = size // 2
    r2 = (yy - c) ** 2 + (xx - c) ** 2
    mask = r2 < wbc_radius ** 2
    img[mask] = (200, 170, 215)
    img[r2 < (0.6 * wbc_radius) ** 2] = (95, 40, 150)
    img += rng.normal(0, 2, img.shape)
    if black_edge:
        img[(yy - c) ** 2 + (xx - c) ** 2 > (0.55 * size) ** 2] = 3
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask


def test_background_colour_finds_plasma():
    img, _ = synthetic_smear()
    bg = background_colour(img)
    assert bg.shape == (3,) and bg.dtype == np.float64
    assert np.all(np.abs(bg - (236, 238, 228)) <= 5)


def test_background_colour_ignores_black_edge_and_crowding():
    img, _ = synthetic_smear(200, black_edge=True)
    assert np.all(np.abs(background_colour(img) - (236, 238, 228)) <= 5)
    # 120 px crop almost filled by the WBC: plasma only in the corners.
    crop, mask = synthetic_smear(120, wbc_radius=55, seed=1)
    assert mask.mean() > 0.6
    assert np.all(np.abs(background_colour(crop) - (236, 238, 228)) <= 6)


def test_background_colour_is_scale_independent():
    img, _ = synthetic_smear(160)
    big = np.repeat(np.repeat(img, 3, axis=0), 3, axis=1)
    assert np.all(np.abs(background_colour(big) - background_colour(img)) <= 2)


@pytest.mark.parametrize("tint", [(1.0, 0.95, 0.65), (0.75, 0.85, 1.0), (0.55, 0.55, 0.55), (1.0, 0.8, 0.9)])
def test_white_balance_recovers_tinted_image(tint):
    img, _ = synthetic_smear()
    tinted = np.clip(np.rint(img * np.array(tint)), 0, 255).astype(np.uint8)
    assert np.abs(tinted.astype(int) - img).max() > 20
    back = white_balance(tinted, background_colour(img))
    assert back.dtype == np.uint8 and back.shape == img.shape
    err = np.abs(back.astype(int) - img.astype(int))
    # Quantisation of the dim channel (x0.55) costs up to ~2 levels per pixel.
    assert np.median(err) <= 2 and np.percentile(err, 99) <= 4


def test_white_balance_default_reference_is_sigtuple():
    img, _ = synthetic_smear()
    out = white_balance(img)
    assert np.all(np.abs(background_colour(out) - SIGTUPLE_BACKGROUND) <= 2)


def test_white_balance_rejects_grey():
    with pytest.raises(ValueError, match="RGB"):
        white_balance(np.zeros((8, 8), np.uint8))


def test_white_balance_is_fast_on_a_megapixel():
    img, _ = synthetic_smear(128)
    big = np.tile(img, (8, 8, 1))  # 1024 x 1024
    white_balance(big)
    start = time.perf_counter()
    for _ in range(5):
        white_balance(big)
    # Budget 20 ms per Mpx; the margin covers a loaded test machine.
    assert (time.perf_counter() - start) / 5 < 0.06


def test_restain_with_defaults_is_identity_on_stained_pixels():
    from stain.looks import restain

    img, _ = synthetic_smear()
    out = restain(img)
    # Pixels brighter than the background estimate are clamped to it (noise in
    # the plasma), so compare the stained ones.
    stained = img.astype(int).sum(axis=-1) < 600
    assert np.abs(out.astype(int) - img)[stained].max() <= 2


@pytest.mark.parametrize("name", ["rapid", "cellavision", "camera"])
def test_looks_change_colour_keep_shape_and_are_deterministic(name):
    from stain.looks import LOOKS

    img, mask = synthetic_smear()
    a = LOOKS[name](img, seed=3)
    b = LOOKS[name](img, seed=3)
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - img).mean() > 5
    # The WBC nucleus stays the darkest structure, so the mask still fits.
    assert a[mask].astype(int).sum(-1).mean() < a[~mask].astype(int).sum(-1).mean()


def test_rapid_stain_has_yellow_background():
    from stain.looks import rapid_stain

    img, _ = synthetic_smear()
    r, g, b = background_colour(rapid_stain(img))
    assert r - b > 50 and g - b > 40


def test_random_stain_is_deterministic_varied_and_fast():
    from stain.augment import random_stain

    img, mask = synthetic_smear(128)
    a = [random_stain(img, np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(a[0], a[1])
    assert a[0].shape == img.shape and a[0].dtype == np.uint8
    rng = np.random.default_rng(0)
    outs = [random_stain(img, rng) for _ in range(30)]
    changed = [np.abs(o.astype(int) - img).mean() for o in outs]
    assert sum(c > 2 for c in changed) >= 20
    # The background colour varies across draws (tints, stain jitter).
    bgs = np.array([background_colour(o) for o in outs])
    assert bgs.std(axis=0).max() > 4
    start = time.perf_counter()
    for _ in range(20):
        random_stain(img, rng)
    assert (time.perf_counter() - start) / 20 < 0.045  # budget 15 ms, margin for a loaded machine


def test_random_stain_strength_zero_is_identity():
    from stain.augment import random_stain

    img, _ = synthetic_smear(64)
    assert np.array_equal(random_stain(img, np.random.default_rng(0), strength=0.0), img)


def test_random_stain_keeps_nucleus_darkest():
    from stain.augment import random_stain

    img, mask = synthetic_smear(128)
    rng = np.random.default_rng(1)
    for _ in range(10):
        out = random_stain(img, rng).astype(int).sum(-1)
        assert out[mask].mean() < out[~mask].mean()


def test_augment_grid_writes_png(tmp_path):
    from stain.augment import augment_grid

    img, _ = synthetic_smear(32)
    grid = augment_grid(img, tmp_path / "g.png", n=7, columns=4)
    assert grid.shape == (64, 128, 3) and (tmp_path / "g.png").exists()
    assert np.array_equal(grid[:32, :32], img)


def test_summed_density_is_the_summed_optical_density_against_the_background():
    from stain.normalise import summed_density

    pixels = np.array([[255, 255, 255], [0, 0, 0], [127, 255, 63]], np.uint8)
    expected = [0.0, 3 * np.log(256.0), np.log(256 / 128) + np.log(256 / 64)]
    np.testing.assert_allclose(summed_density(pixels), expected, rtol=1e-6)
    tinted = summed_density(np.array([[200, 220, 240]]), background=(200, 220, 240))
    np.testing.assert_allclose(tinted, [0.0], atol=1e-7)  # the background itself absorbs nothing
    assert summed_density(np.zeros((4, 5, 3), np.uint8)).shape == (4, 5)
