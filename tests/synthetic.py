"""Tiny synthetic blood-smear images with known WBCs, for fast tests.

A "smear" is a cream background with pink red cells (rings) and purple WBC
disks; the masks are exact, so counts and scores are known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

BACKGROUND = (236, 214, 210)
RED_CELL = (214, 150, 160)
WBC = (110, 70, 160)


def disk(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    """Boolean disk of ``radius`` at ``centre`` (row, col) in an image of ``shape``."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def smear(shape: tuple[int, int], wbc_centres: list[tuple[float, float]], radius: float = 14,
          seed: int = 0, n_red: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic smear and its WBC mask.

    Returns
    -------
    image : ndarray, shape (H, W, 3), uint8
    mask : ndarray, shape (H, W), bool
    """
    rng = np.random.default_rng(seed)
    image = np.empty((*shape, 3), np.float32)
    image[:] = BACKGROUND
    for _ in range(n_red):
        c = (rng.uniform(0, shape[0]), rng.uniform(0, shape[1]))
        image[disk(shape, c, radius * 0.6)] = RED_CELL
    mask = np.zeros(shape, bool)
    for c in wbc_centres:
        # Cells are painted a pixel larger than their masks, so that touching
        # cells touch in the image while their true masks stay apart, as an
        # annotator draws them.
        image[disk(shape, c, radius + 1)] = WBC
        mask |= disk(shape, c, radius - 0.5)
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_sigtuple(root: Path, n_patches: int = 12, size: int = 64) -> Path:
    """Write a small folder in the SigTuple layout.

    ``n_patches`` patches ``train-N`` (one WBC each), one large image ``big``
    with two touching WBCs and one apart (3 WBCs), and two test images.
    """
    train = root / "Train_Data"
    test = root / "Test_Data"
    train.mkdir(parents=True, exist_ok=True)
    test.mkdir(parents=True, exist_ok=True)
    for i in range(n_patches):
        r = 12 + (i % 4)
        img, mask = smear((size, size), [(size / 2 + (i % 3) - 1, size / 2)], radius=r, seed=i)
        Image.fromarray(img).save(train / f"train-{i}.jpg", quality=95)
        Image.fromarray((mask * 255).astype(np.uint8)).save(train / f"train-{i}-mask.png")
    big, big_mask = smear((120, 200), [(50, 50), (50, 78), (80, 160)], radius=14, seed=99, n_red=15)
    Image.fromarray(big).save(train / "big.jpg", quality=95)
    Image.fromarray((big_mask * 255).astype(np.uint8)).save(train / "big-mask.png")
    for j in range(2):
        img, _ = smear((90, 110), [(45, 40 + 30 * j)], seed=200 + j)
        Image.fromarray(img).save(test / f"slide {j}.jpg", quality=95)
    return root
