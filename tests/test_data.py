"""The loader: conversions, groups and one clear sentence for every bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from compare.io.images import DataError, read_image, read_mask
from compare.io import images
from compare.suite.data import grouped_kfold, load_large, load_patches, load_test


def _rgb(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_shipped_data_has_the_documented_sets(shipped_dir):
    patches, large, test = load_patches(shipped_dir), load_large(shipped_dir), load_test(shipped_dir)
    assert (len(patches), len(large), len(test)) == (164, 5, 61)
    assert all(p.image.shape == (128, 128, 3) and p.image.dtype == np.uint8 for p in patches)
    assert all(p.mask.dtype == bool and p.mask.shape == (128, 128) for p in patches)
    assert {p.name for p in patches if p.group == "54A84627F362"} == {"train-107", "train-108", "train-110"}
    assert patches[0].name == "train-0" and patches[10].name == "train-10"  # natural order


def test_synthetic_folder_loads(sigtuple_dir):
    patches = load_patches(sigtuple_dir)
    assert len(patches) == 12
    (big,) = load_large(sigtuple_dir)
    assert big.name == "big" and big.mask.sum() > 0
    names = [s.name for s in load_test(sigtuple_dir)]
    assert names == ["slide 0", "slide 1"] and all(s.mask is None for s in load_test(sigtuple_dir))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "LA"])
def test_any_image_mode_becomes_rgb_uint8(tmp_path, mode):
    rgb = Image.fromarray(_rgb())
    if mode == "I;16":
        img = Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16))
    elif mode == "P":
        img = rgb.convert("P")
    else:
        img = rgb.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    img.save(path)
    out = read_image(path)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    if mode == "I;16":
        # the full 16-bit range is rescaled, not clipped at 255
        assert out.min() == 0 and out.max() == 255


def _expect(path, *words):
    with pytest.raises(DataError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message.lower()
    return message


def test_bad_files_get_one_clear_sentence(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    _expect(empty, "empty")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    _expect(text, "not a readable image")
    good = tmp_path / "good.jpg"
    Image.fromarray(_rgb(200, 200)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _expect(truncated, "truncated")
    _expect(tmp_path / "missing.jpg", "no such file")


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.fromarray(_rgb(100, 100)).save(path)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 5000)
    _expect(path, "decompression bomb")


def test_mask_of_another_size_is_refused(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(path)
    with pytest.raises(DataError, match="must have the image's size"):
        read_mask(path, (20, 30))
    assert read_mask(path, (10, 12)).dtype == bool


def test_jpeg_mask_noise_is_binarised_at_128(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(np.array([[0, 2, 127], [128, 253, 255]], np.uint8)).save(path)
    assert read_mask(path).tolist() == [[False, False, False], [True, True, True]]


def test_missing_mask_and_empty_folder(tmp_path, sigtuple_dir):
    root = tmp_path / "d"
    shutil.copytree(sigtuple_dir, root)
    (root / "Train_Data" / "train-3-mask.png").unlink()
    with pytest.raises(DataError, match="no mask found") as info:
        load_patches(root)
    assert "train-3.jpg" in str(info.value)
    errors: list = []
    kept = load_patches(root, on_error="skip", errors=errors)
    assert len(kept) == 11 and len(errors) == 1 and "train-3" in str(errors[0])
    empty = tmp_path / "empty" / "Train_Data"
    empty.mkdir(parents=True)
    with pytest.raises(DataError, match="holds no images"):
        load_patches(tmp_path / "empty")
    with pytest.raises(DataError, match="no such data folder"):
        load_patches(tmp_path / "nowhere")


def _samples(groups):
    return [images.Sample(f"s{i}", np.zeros((1, 1, 3), np.uint8), None, g, None) for i, g in enumerate(groups)]


def test_grouped_kfold_keeps_groups_together_and_is_seeded():
    groups = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "g", "h", "h"]
    samples = _samples(groups)
    folds = grouped_kfold(samples, 3, seed=1)
    assert grouped_kfold(samples, 3, seed=1) == folds
    tests = [set(t) for _, t in folds]
    assert set().union(*tests) == set(range(len(groups))) and sum(map(len, tests)) == len(groups)
    for train, test in folds:
        assert not set(train) & set(test)
        assert not {groups[i] for i in train} & {groups[i] for i in test}
    assert any(grouped_kfold(samples, 3, seed=s) != folds for s in range(2, 8))
    with pytest.raises(ValueError, match="more than the 8 groups"):
        grouped_kfold(samples, 9)


def test_shipped_overlaps_share_a_fold(shipped_dir):
    patches = load_patches(shipped_dir)
    for _, test in grouped_kfold(patches, 5, seed=0):
        names = {patches[i].name for i in test}
        assert ({"train-57", "train-58"} <= names) or not ({"train-57", "train-58"} & names)
        assert ({"train-70", "train-71", "train-72"} <= names) or not ({"train-70", "train-71", "train-72"} & names)


def test_shipped_sigtuple_masks_are_read_as_before_without_a_nucleus(shipped_dir):
    samples = load_patches(shipped_dir) + load_large(shipped_dir)
    assert all(s.nucleus is None for s in samples)
    for s in samples[::20] + samples[-5:]:
        grey = np.asarray(Image.open(s.path.with_name(f"{s.path.stem}-mask.jpg")).convert("L"))
        assert np.array_equal(s.mask, grey >= 128)


def test_shared_cellavision_masks_give_whole_cell_and_nucleus():
    from compare.suite.data import load_domain, resolve_dataset

    folder = resolve_dataset("cellavision", fetch=False).path
    if not (folder / "Dataset 2").is_dir():
        pytest.skip(f"the CellaVision data is not at {folder}; run: python -m compare data fetch cellavision")
    samples = load_domain(folder)
    assert len(samples) == 100 and all(s.image.shape == (300, 300, 3) for s in samples)
    for s in samples:
        grey = np.asarray(Image.open(s.path.with_suffix(".png")))
        assert np.array_equal(s.mask, grey >= 64) and np.array_equal(s.nucleus, grey >= 192)
