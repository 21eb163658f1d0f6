"""The tiling blend: tiled prediction equals whole-image prediction, weights normalise, no seams."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from tiling import blend_window, predict_tiled, read_tile, tile_grid


def _image(shape=(97, 130), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape + (3,)).astype(np.uint8)


def _local_mean(image: np.ndarray) -> np.ndarray:
    """A position-dependent, local prediction: 5 x 5 mean of the red channel, mirrored at the edge."""
    return ndi.uniform_filter(image[..., 0].astype(np.float32) / 255, size=5, mode="reflect")


def _batched(func):
    return lambda crops: np.stack([func(c) for c in crops])


@pytest.mark.parametrize("tile, overlap", [(32, 8), (40, 0), (50, 16), (200, 16)])
def test_tiled_equals_untiled_for_a_local_filter(tile, overlap):
    image = _image()
    expected = _local_mean(image)
    # 2 px of context is the filter's reach, so every tile sees what the whole image shows it.
    got = predict_tiled(image, _batched(_local_mean), tile=tile, overlap=overlap, context=2, batch_size=3)
    assert got.shape == image.shape[:2] and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_too_little_context_shows_at_inner_tile_edges():
    image = _image()
    got = predict_tiled(image, _batched(_local_mean), tile=32, overlap=0, context=0)
    assert np.abs(got - _local_mean(image)).max() > 0.01  # the test above could fail


def test_blend_weights_sum_to_one():
    # A predictor that returns 1 everywhere must come back as exactly 1: the
    # overlapping ramps are normalised by their sum at every pixel.
    image = _image((150, 170))
    ones = predict_tiled(image, lambda crops: np.ones(crops.shape[:3], np.float32), tile=48, overlap=20, context=4)
    np.testing.assert_allclose(ones, 1.0, atol=1e-6)
    weight = np.zeros(image.shape[:2], np.float32)
    tiles = tile_grid(image.shape[:2], 48, 20)
    window = blend_window(tiles[0].y1 - tiles[0].y0, tiles[0].x1 - tiles[0].x0, 20)
    for t in tiles:
        weight[t.y0:t.y1, t.x0:t.x1] += window
    assert weight.min() > 0  # every pixel is covered with positive weight


def _per_tile_constant(seed: int):
    """A predictor that disagrees between tiles: each tile gets its own random constant."""
    rng = np.random.default_rng(seed)
    return lambda crops: np.stack([np.full(c.shape[:2], rng.uniform(), np.float32) for c in crops])


def _largest_step(prob: np.ndarray) -> float:
    return float(max(np.abs(np.diff(prob, axis=0)).max(), np.abs(np.diff(prob, axis=1)).max()))


def test_overlap_ramps_hide_seams_between_disagreeing_tiles():
    image = _image((160, 160))
    overlap = 32
    blended = predict_tiled(image, _per_tile_constant(1), tile=64, overlap=overlap, batch_size=1)
    hard = predict_tiled(image, _per_tile_constant(1), tile=64, overlap=0, batch_size=1)
    # Without overlap a seam jumps by the difference of two tiles' values; with
    # it, neighbouring pixels differ by at most a few ramp steps.
    assert _largest_step(hard) > 0.2
    assert _largest_step(blended) < 3.0 / overlap
    assert blended.min() >= 0 and blended.max() <= 1


def test_grid_covers_the_image_with_equal_tiles():
    tiles = tile_grid((100, 73), 40, 10)
    covered = np.zeros((100, 73), int)
    for t in tiles:
        assert (t.y1 - t.y0, t.x1 - t.x0) == (40, 40)
        covered[t.y0:t.y1, t.x0:t.x1] += 1
    assert covered.min() >= 1 and tiles[-1].y1 == 100 and tiles[-1].x1 == 73


def test_read_tile_mirrors_at_the_edge():
    image = np.arange(5 * 6).reshape(5, 6)
    crop = read_tile(image, tile_grid((5, 6), 4, 0)[0], context=2)
    np.testing.assert_array_equal(crop, np.pad(image, 2, mode="symmetric")[:8, :8])


@pytest.mark.parametrize("tile, overlap", [(0, 0), (16, 16), (16, -1)])
def test_invalid_tiling_is_refused(tile, overlap):
    with pytest.raises(ValueError, match="overlap < tile"):
        tile_grid((10, 10), tile, overlap)


def test_wrong_prediction_shape_is_refused():
    with pytest.raises(ValueError, match="predict_batch returned shape"):
        predict_tiled(_image((40, 40)), lambda crops: np.zeros((len(crops), 3, 3)), tile=16, overlap=4)
