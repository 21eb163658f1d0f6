"""Joint augmentation keeps image and mask aligned and is seeded."""

import numpy as np
import pytest

from unet.augment import augment_pair, make_augmenter


def _disk_pair(size=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(20, size - 20, 2)
    # An off-centre ellipse, so flips and rotations change where it is.
    mask = ((yy - cy) / 14.0) ** 2 + ((xx - cx) / 9.0) ** 2 < 1
    grey = np.where(mask, 220, 30).astype(np.uint8)
    # Grey, so hue and saturation jitter cannot move it across the threshold.
    return np.repeat(grey[..., None], 3, axis=2), mask


@pytest.mark.parametrize("recipe", ["d4", "full"])
def test_mask_follows_image(recipe):
    aug = make_augmenter(recipe, seed=1)
    image, mask = _disk_pair()
    moved = 0
    for _ in range(12):
        img_a, mask_a = augment_pair(aug, image, mask)
        assert img_a.shape == image.shape and img_a.dtype == np.uint8
        assert mask_a.shape == mask.shape and mask_a.dtype == bool
        from_image = img_a.mean(axis=2) > 125
        iou = (from_image & mask_a).sum() / (from_image | mask_a).sum()
        assert iou > 0.9, f"image and mask disagree after augmentation (IoU {iou:.3f})"
        moved += not np.array_equal(mask_a, mask)
    assert moved > 0, "augmentation never changed the geometry"


def test_seeded_deterministic():
    image, mask = _disk_pair()

    def run(seed):
        aug = make_augmenter("full", seed=seed)
        return [augment_pair(aug, image, mask) for _ in range(5)]

    a, b, c = run(3), run(3), run(4)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, c))


def test_unknown_recipe():
    with pytest.raises(ValueError, match="Unknown augmentation recipe"):
        make_augmenter("wild")
