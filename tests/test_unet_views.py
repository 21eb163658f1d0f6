"""Test-time views (unet.views): each view is undone exactly, and the averages keep the frame."""

import numpy as np
import pytest

from unet.views import TTA_MODES, average_views, normalise_tta, views


def _red_channel(batch: np.ndarray) -> np.ndarray:
    """A 'network' that answers with its input's first channel: any view undone wrongly shows."""
    return batch[..., 0].astype(np.float32)


@pytest.mark.parametrize("tta", [False, "flips", "d4"])
def test_every_view_is_mapped_back_to_the_input_frame(tta):
    x = np.random.default_rng(0).random((2, 5, 7, 3)).astype(np.float32)  # not square: transposes change the shape
    seen: list[tuple[int, ...]] = []

    def run(batch):
        seen.append(batch.shape)
        assert batch.flags.c_contiguous
        return _red_channel(batch)

    out = average_views(run, x, tta)
    assert out.shape == (2, 5, 7) and out.dtype == np.float32
    np.testing.assert_allclose(out, x[..., 0], rtol=0, atol=1e-6)
    assert sum(shape[0] for shape in seen) == 2 * TTA_MODES[tta]  # every view of both samples, run once
    assert any(shape[1:] == (7, 5, 3) for shape in seen) == (tta == "d4")


def test_d4_is_the_eight_symmetries_of_the_square():
    tile = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    images = set()
    for axes, transpose in views("d4"):
        view = np.flip(tile, axis=axes) if axes else tile
        images.add((view.transpose(0, 2, 1, 3) if transpose else view).tobytes())
    assert len(images) == 8
    assert views("flips") == views("d4")[:4] and views(False) == [((), False)]


def test_an_orientation_bias_is_averaged_away_by_d4_only():
    x = np.zeros((1, 6, 6, 1), np.float32)

    def leans_right(batch):
        # A network that always lights the last column of what it is shown.
        out = np.zeros(batch.shape[:3], np.float32)
        out[:, :, -1] = 1.0
        return out

    d4, flips = average_views(leans_right, x, "d4"), average_views(leans_right, x, "flips")
    # Flips spread it over the left and right columns only; d4 over all four borders.
    assert flips[0, 0, 2] == 0 and d4[0, 0, 2] > 0
    assert d4[0].sum() == pytest.approx(flips[0].sum())


def test_true_is_the_older_spelling_of_flips_and_anything_else_is_refused():
    from unet.segmenter import PredictConfig

    assert normalise_tta(True) == "flips" and PredictConfig(tta=True).tta == "flips"
    assert PredictConfig().tta is False and PredictConfig(tta="d4").tta == "d4"
    with pytest.raises(ValueError, match="tta must be"):
        PredictConfig(tta="rot90")


@pytest.mark.parametrize("shape, calls", [((2, 12, 12, 3), 1), ((2, 12, 9, 3), 2)])
def test_small_batches_run_their_views_together_with_the_same_result(shape, calls, monkeypatch):
    import unet.views as views_module

    x = np.random.default_rng(5).random(shape).astype(np.float32)
    log = []

    def run(batch):  # per-sample, position-dependent: any mix-up of views or samples shows
        log.append(batch.shape[0])
        return (batch[..., 0] * np.arange(batch.shape[2])[None, None, :] + batch[..., 1]).astype(np.float32)

    together = average_views(run, x, "d4")
    assert sorted(log) == ([16] if calls == 1 else [8, 8])
    monkeypatch.setattr(views_module, "JOINT_PIXELS", 0)
    log.clear()
    apart = average_views(run, x, "d4")
    assert log == [2] * 8
    np.testing.assert_array_equal(together, apart)
