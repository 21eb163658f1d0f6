"""Mosaic windows and field-stop edges: aligned with their masks, seeded, and actually varied."""

import numpy as np
import pytest

from unet.config import TrainConfig
from unet.sampling import add_field_edge, mosaic_crop


def _coded_pair(code, size=32):
    """A grey image whose value encodes which piece it is, with a centred square mask."""
    image = np.full((size, size, 3), code, np.uint8)
    mask = np.zeros((size, size), bool)
    mask[size // 4:3 * size // 4, size // 4:3 * size // 4] = True
    image[mask] = code + 100  # the "cell" is brighter than its surroundings
    return image, mask


def test_mosaic_window_keeps_image_and_mask_aligned():
    pairs = [_coded_pair(c) for c in (10, 20, 30, 40)]
    rng = np.random.default_rng(0)
    seen_cut = seen_off_centre = False
    for _ in range(40):
        img, msk = mosaic_crop([p[0] for p in pairs], [p[1] for p in pairs], 32, rng)
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        assert msk.shape == (32, 32) and msk.dtype == bool
        # Mask pixels are exactly the bright pixels: the two moved together.
        np.testing.assert_array_equal(msk, img[..., 0] >= 110)
        seen_cut |= bool(msk[0].any() or msk[-1].any() or msk[:, 0].any() or msk[:, -1].any())
        seen_off_centre |= not msk[12:20, 12:20].all()
    # Windows off the centres: cells cut by the window edge, and not in the middle.
    assert seen_cut and seen_off_centre


def test_mosaic_is_seeded_and_checks_its_input():
    pairs = [_coded_pair(c) for c in (10, 20, 30, 40)]
    a = mosaic_crop([p[0] for p in pairs], [p[1] for p in pairs], 32, np.random.default_rng(5))
    b = mosaic_crop([p[0] for p in pairs], [p[1] for p in pairs], 32, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="exactly 4"):
        mosaic_crop([pairs[0][0]] * 3, [pairs[0][1]] * 3, 32, np.random.default_rng(0))


def test_field_edge_darkens_and_clears_the_mask_outside():
    rng = np.random.default_rng(1)
    image = np.full((64, 64, 3), 200, np.uint8)
    mask = np.ones((64, 64), bool)
    covered = []
    for _ in range(20):
        img, msk = add_field_edge(image, mask, rng)
        dark = img.mean(axis=2) < 100
        assert not (msk & dark).any(), "mask kept where the field is dark"
        assert msk.any(), "the edge may not cover the whole window"
        covered.append(1 - msk.mean())
    assert max(covered) > 0.2


def test_train_config_rejects_bad_shares():
    with pytest.raises(ValueError, match="shares"):
        TrainConfig(mosaic=1.5)
    assert TrainConfig(mosaic=0.5, field_edge=0.25).to_dict()["mosaic"] == 0.5
