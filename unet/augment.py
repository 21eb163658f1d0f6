"""Joint image / mask augmentation for training the U-Net, built on albumentations.

Three recipes:

* ``"d4"``: flips and 90-degree rotations only (the seed / paper recipe);
* ``"full"``: those plus small-angle rotations, elastic deformation (smooth
  random displacement fields, as in the U-Net paper) and brightness /
  contrast / hue / saturation jitter;
* ``"stain"``: flips and rotations, a +-15 % scale change that covers the
  error of the scale estimate, and :func:`stain.augment.random_stain`: what
  differs between laboratories (stain concentrations and small turns of the
  stain vectors in optical-density space, background tint, hue, gamma,
  contrast, blur, JPEG artefacts, noise).  Images reach the U-Net
  white-balanced, so this covers what the balance leaves;
* ``"stain_pale"``: ``"stain"``, after half of the images have had the
  cytoplasm of their WBCs faded towards the plasma colour
  (:func:`fade_cytoplasm`), as other labs' pale cytoplasm looks.

Geometric transforms move image and mask together (the mask with
nearest-neighbour interpolation, so it stays binary); colour transforms touch
the image only.  Every pipeline is seeded.

Run ``python -m unet.augment --data-dir DATA/Train_Data --out results/augment_grid.png``
(``python -m compare data info`` prints ``DATA``) to draw a grid of augmented samples with their mask outlines for a check by eye.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["RECIPES", "make_augmenter", "augment_pair", "augment_batch", "fade_cytoplasm"]

RECIPES = ("none", "d4", "full", "stain", "stain_pale")

#: Magnitude of :func:`stain.augment.random_stain` in the ``"stain"`` recipe:
#: strong enough to carry the rapid-stain look on folds 0, 3 and 4 (fold 4:
#: 0.756, against 0.648 at strength 0.7) while cv Dice stays the same
#: (docs/experiments.md, "The U-Net's stain strength").
STAIN_STRENGTH = 0.8


def make_augmenter(recipe: str = "full", seed: int = 0):
    """Build a seeded albumentations pipeline.

    Parameters
    ----------
    recipe : {"none", "d4", "full"}
    seed : int
        Seeds the pipeline's own random generator; the same seed and the same
        sequence of calls give the same outputs.

    Returns
    -------
    albumentations.Compose
        Call as ``aug(image=img, mask=mask)`` with ``img`` (H, W, 3) uint8 and
        ``mask`` (H, W) uint8.
    """
    import albumentations as A
    import cv2

    if recipe not in RECIPES:
        raise ValueError(f"Unknown augmentation recipe {recipe!r}; choose one of {list(RECIPES)}.")
    transforms = []
    if recipe in ("d4", "full", "stain"):
        transforms.append(A.D4(p=1.0))  # the 8 flips / right-angle rotations, all label-preserving
    if recipe == "full":
        reflect = cv2.BORDER_REFLECT_101  # reflected red cells look like the real border, black corners do not
        transforms += [
            A.Rotate(limit=20, border_mode=reflect, p=0.5),
            # Displacements of a few pixels, smooth over ~10 px: a WBC bends,
            # it does not tear.
            A.ElasticTransform(alpha=30, sigma=6, border_mode=reflect, p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.7),
            A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=20, val_shift_limit=0, p=0.7),
        ]
    if recipe in ("stain", "stain_pale"):
        from stain.augment import random_stain

        reflect = cv2.BORDER_REFLECT_101
        # One generator per pipeline, drawn in call order: the same seed and
        # the same sequence of calls give the same images.
        rng = np.random.default_rng(seed)
        transforms += [
            A.Affine(scale=(0.87, 1.15), rotate=(-20, 20), border_mode=reflect, p=0.6),
            A.Lambda(image=lambda image, **_: random_stain(image, rng, strength=STAIN_STRENGTH), p=1.0),
        ]
    compose = A.Compose(transforms, seed=seed)
    return _PaleCytoplasm(compose, seed) if recipe == "stain_pale" else compose


def fade_cytoplasm(image: np.ndarray, mask: np.ndarray, blend: float) -> np.ndarray:
    """The WBCs' cytoplasm blended towards the plasma colour; nucleus and surroundings unchanged.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    mask : ndarray, shape (H, W), bool
        The WBC pixels.
    blend : float
        0 leaves the cytoplasm as it is, 1 paints it the plasma colour.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
        A copy; the input where the mask has no dark (nucleus) and light part
        to tell apart, or no plasma around it.
    """
    from skimage.filters import gaussian, threshold_otsu

    grey = image.mean(axis=2)
    outside = grey[~mask]
    if not mask.any() or outside.size < 16 or np.ptp(grey[mask]) == 0:
        return image
    # The plasma: the brightest part of what is not WBC (red cells are darker).
    plasma = np.median(image[~mask][outside >= np.percentile(outside, 60)], axis=0)
    cytoplasm = mask & (grey >= threshold_otsu(grey[mask]))  # the nucleus is the WBC's dark part
    # A soft edge: the masks' own outline is coarse, and a hard one would be a cue no real cell has.
    weight = blend * gaussian(cytoplasm.astype(np.float32), sigma=1.5)[..., None]
    faded = (1.0 - weight) * image.astype(np.float32) + weight * plasma
    return np.clip(np.rint(faded), 0, 255).astype(np.uint8)


class _PaleCytoplasm:
    """An albumentations pipeline whose inputs first have, half of them, their cytoplasm faded (``"stain_pale"``)."""

    def __init__(self, compose, seed: int, p: float = 0.5, blend: tuple[float, float] = (0.3, 0.8)):
        self.compose, self.p, self.blend = compose, p, blend
        self.rng = np.random.default_rng([seed, 1])  # its own stream: the "stain" draws stay as they are

    def __call__(self, *, image: np.ndarray, mask: np.ndarray) -> dict:
        if self.rng.random() < self.p:
            image = fade_cytoplasm(image, mask.astype(bool), float(self.rng.uniform(*self.blend)))
        return self.compose(image=image, mask=mask)


def augment_pair(augmenter, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Augment one image and its mask together.

    Parameters
    ----------
    augmenter : albumentations.Compose
    image : ndarray, shape (H, W, 3), uint8
    mask : ndarray, shape (H, W), bool or uint8

    Returns
    -------
    image : ndarray, shape (H, W, 3), uint8
    mask : ndarray, shape (H, W), bool
    """
    out = augmenter(image=np.ascontiguousarray(image), mask=np.ascontiguousarray(mask, dtype=np.uint8))
    return out["image"], out["mask"].astype(bool)


def augment_batch(augmenter, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Augment equally sized pairs and stack them.

    Returns
    -------
    images : ndarray, shape (N, H, W, 3), uint8
    masks : ndarray, shape (N, H, W, 1), float32 in {0, 1}
    """
    pairs = [augment_pair(augmenter, img, msk) for img, msk in zip(images, masks)]
    x = np.stack([p[0] for p in pairs])
    y = np.stack([p[1] for p in pairs]).astype(np.float32)[..., None]
    return x, y


def _outline(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask)


def write_grid(out: Path, data_dir: Path, *, n_images: int = 4, n_variants: int = 5,
               recipe: str = "full", seed: int = 0) -> Path:
    """Write a PNG grid: each row one training patch, first the original, then augmentations.

    Each cell shows the image with the mask outline drawn in green, next to
    the mask itself, so misalignment is visible at a glance.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = sorted(data_dir.glob("train-*-mask.jpg"))
    if not names:
        raise FileNotFoundError(f"No train-N-mask.jpg files in {data_dir}; pass --data-dir.")
    picks = rng.choice(len(names), size=min(n_images, len(names)), replace=False)
    aug = make_augmenter(recipe, seed=seed)
    rows = []
    for i in picks:
        mask_path = names[i]
        image = np.asarray(Image.open(str(mask_path).replace("-mask.jpg", ".jpg")).convert("RGB"))
        mask = np.asarray(Image.open(mask_path).convert("L")) >= 128
        cells = []
        for v in range(n_variants + 1):
            img, msk = (image, mask) if v == 0 else augment_pair(aug, image, mask)
            shown = img.copy()
            shown[_outline(msk)] = (0, 255, 0)
            mask_rgb = np.repeat((msk * 255).astype(np.uint8)[..., None], 3, axis=2)
            cells.append(np.concatenate([shown, mask_rgb], axis=1))
            cells.append(np.full((img.shape[0], 6, 3), 255, np.uint8))
        rows.append(np.concatenate(cells, axis=1))
        rows.append(np.full((6, rows[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(rows, axis=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m unet.augment", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/augment_grid.png"), help="PNG to write")
    # Required: this package does not import ``compare``, whose resolver finds
    # the data (``python -m compare data info`` prints the folder).
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="folder with train-N.jpg and train-N-mask.jpg (the data's Train_Data/)")
    parser.add_argument("--recipe", choices=RECIPES, default="full")
    parser.add_argument("--images", type=int, default=4, help="rows (training patches)")
    parser.add_argument("--variants", type=int, default=5, help="augmented copies per row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = write_grid(args.out, args.data_dir, n_images=args.images, n_variants=args.variants,
                      recipe=args.recipe, seed=args.seed)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
