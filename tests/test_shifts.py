"""Tests for compare.suite.shifts on small synthetic smears."""

from __future__ import annotations

import numpy as np
import pytest

from compare.suite.shifts import SHIFTS, apply_shift, contact_sheet, crop_around_wbcs, shift_kinds


def smear(h: int = 160, w: int = 200, centres=((80, 100),), radius: int = 28, seed: int = 0):
    """Plasma, red cells and WBCs (purple discs) with their bool mask."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float64)
    img[:] = (236, 238, 228)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(h * w // 900):
        cy, cx = rng.integers(0, (h, w))
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 15 ** 2] = (205, 170, 190)
    mask = np.zeros((h, w), bool)
    for cy, cx in centres:
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        mask |= r2 < radius ** 2
        img[r2 < radius ** 2] = (200, 170, 215)
        img[r2 < (0.6 * radius) ** 2] = (95, 40, 150)
    img += rng.normal(0, 2, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask


def test_shift_names_and_kinds():
    kinds = shift_kinds()
    assert tuple(kinds) == SHIFTS and len(SHIFTS) == 14
    assert kinds["scale_3x"].scale == 3.0 and kinds["lab_b_like"].scale == 3.0
    assert kinds["lab_c_like"].scale == 2.0 and kinds["scale_0.5x"].scale == 0.5
    assert kinds["lab_a_like"].crop == 120 and kinds["lab_a_like"].scale == 1.0


@pytest.mark.parametrize("name", SHIFTS)
def test_every_shift_returns_valid_deterministic_pairs(name):
    img, mask = smear(320, 340, centres=((160, 170),))
    a = apply_shift(name, img, mask, seed=5)
    b = apply_shift(name, img, mask, seed=5)
    assert len(a) == 1
    for (ia, ma), (ib, mb) in zip(a, b):
        assert ia.dtype == np.uint8 and ia.ndim == 3 and ia.shape[2] == 3
        assert ma.dtype == bool and ma.shape == ia.shape[:2]
        assert np.array_equal(ia, ib) and np.array_equal(ma, mb)
        assert ma.any()


def test_seed_changes_only_random_shifts():
    img, mask = smear()
    assert np.array_equal(apply_shift("blur", img, mask, seed=0)[0][0], apply_shift("blur", img, mask, seed=1)[0][0])
    assert not np.array_equal(apply_shift("look_camera", img, mask, seed=0)[0][0],
                              apply_shift("look_camera", img, mask, seed=1)[0][0])


@pytest.mark.parametrize("name,factor", [("scale_0.5x", 0.5), ("scale_2x", 2.0), ("scale_3x", 3.0)])
def test_scale_shift_scales_mask_area(name, factor):
    img, mask = smear()
    (out, m), = apply_shift(name, img, mask, seed=0)
    assert out.shape[:2] == (round(160 * factor), round(200 * factor))
    assert m.sum() == pytest.approx(mask.sum() * factor**2, rel=0.05)


def test_crops_are_centred_on_each_wbc():
    img, mask = smear(260, 400, centres=((70, 90), (180, 300)))
    pairs = apply_shift("crop_120", img, mask, seed=0)
    assert len(pairs) == 2
    for crop, m in pairs:
        assert crop.shape == (120, 120, 3) and m.shape == (120, 120)
        cy, cx = np.argwhere(m).mean(axis=0)
        assert abs(cy - 59.5) <= 1.5 and abs(cx - 59.5) <= 1.5


def test_crop_window_stays_inside_image():
    img, mask = smear(200, 200, centres=((30, 30),))
    (crop, m), = crop_around_wbcs(img, mask, 120)
    assert np.array_equal(crop, img[:120, :120]) and np.array_equal(m, mask[:120, :120])


def test_crop_skips_small_images_and_fragments():
    img, mask = smear(128, 128, centres=((64, 64),))
    assert apply_shift("crop_300", img, mask, seed=0) == []
    frag = np.zeros_like(mask)
    frag[:10, :10] = True  # 100 px: a WBC cut by the border
    assert crop_around_wbcs(img, frag, 120) == []


def test_lab_b_like_is_three_times_larger_and_recoloured():
    img, mask = smear(128, 128, centres=((64, 64),))
    (crop, m), = apply_shift("lab_b_like", img, mask, seed=0)
    assert crop.shape == (300, 300, 3)
    assert m.sum() == pytest.approx(mask.sum() * 9, rel=0.05)


def test_looks_keep_the_mask():
    img, mask = smear()
    for name in ("look_rapid", "look_cellavision", "look_camera", "blur", "jpeg_30", "dim"):
        (out, m), = apply_shift(name, img, mask, seed=0)
        assert np.array_equal(m, mask)
        assert np.abs(out.astype(int) - img).mean() > 1


def test_unknown_shift_names_the_choices():
    img, mask = smear()
    with pytest.raises(ValueError, match="scale_2x"):
        apply_shift("fisheye", img, mask, seed=0)


def test_contact_sheet_writes_png(tmp_path):
    from PIL import Image

    img, mask = smear()
    by = {name: apply_shift(name, img, mask, seed=0) for name in ("blur", "crop_300")}
    path = contact_sheet(by, tmp_path / "sheet.png", thumb=64)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape[0] == 2 * (64 + 4) + 4
    rgb = sheet[..., :3].astype(int)
    # Mask outline drawn (green, softened by the thumbnail's resampling).
    assert ((rgb[..., 1] - rgb[..., 0] > 60) & (rgb[..., 1] - rgb[..., 2] > 60)).any()


def test_shift_scores_are_the_same_with_two_threads():
    """evaluate_shifts(n_jobs=2) scores the images two at a time and returns the same rows in the same order."""
    from compare.io.images import Sample
    from compare.pipeline.model import WBCModel
    from compare.suite.protocols import evaluate_shifts

    pairs = [smear(centres=((80, 100),), seed=s) for s in range(3)]
    samples = [Sample(name=f"s{k}", path=None, image=img, mask=msk, group=k) for k, (img, msk) in enumerate(pairs)]
    model = WBCModel("threshold").fit(samples)
    names = ["blur", "look_rapid", "crop_120", "scale_2x"]
    one = evaluate_shifts(model, samples, shifts=names, n_jobs=1)
    two = evaluate_shifts(model, samples, shifts=names, n_jobs=2)
    assert len(one) >= len(samples) * len(names)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "predict_s"} for r in rows]  # noqa: E731
    assert strip(one) == strip(two)
