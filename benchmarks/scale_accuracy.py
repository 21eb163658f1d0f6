"""How well :func:`compare.pipeline.scale.estimate_scale` finds an image's scale, on rescaled, recoloured SigTuple images.

Test images, each with a known true factor (``1 / s`` for an image resized by
``s`` from the SigTuple scale):

* ``large xS``: the 5 large labelled images resized by 0.5, 1, 2 and 3;
* ``patch xS``: every 7th 128-px training patch at 1x and 3x;
* ``crop120 x1``: 120-px crops around one WBC (mask component) at 1x, from the
  large images and every 7th patch (clamped to the image, so some are off-centre);
* ``crop300 x3``: 100-px crops around one WBC resized 3x to 300 px;
* ``field640 x2``: crowded 640 x 480 fields cut from the large images at 2x;

each in several colour looks: ``plain``; ``yellow`` (a yellow background tint
and fainter cells, made here); ``blue`` (bluer stain and white point, made
here); and ``rapid``, ``cellavision`` and ``camera`` from :mod:`stain.looks`
where that module exists.  Looks are applied to the 1x source before it is
resized and cut, so a look's noise is resized with the image.

For each kind the table gives the median ``|log2(estimated / true factor)|``,
the fraction of estimates within 15 % of the truth (all images, a not-confident
estimate counting with the factor it returned), the fraction marked confident,
the fraction within 15 % among the confident ones, and the mean time per image.

The ``probe`` fallback needs a fitted model; here it is *simulated* from the
ground-truth mask: ``probe(f)`` returns the equivalent diameters of the mask
components in the image resized by ``f``, as a model would find them only
near its training scale (ratio to the training WBC diameter 0.6-1.6, with 5 %
noise); larger WBCs come back split into three nucleus-sized pieces (0.45 of
the diameter) and smaller ones are missed.  This tests the selection logic,
not a model.

Usage::

    python benchmarks/scale_accuracy.py [--data DIR] [--out results/benchmarks]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compare.pipeline.scale import TrainingScale, estimate_scale  # noqa: E402
from compare.suite.data import load_set, resolve_data_dir  # noqa: E402


def resize(image: np.ndarray, factor: float) -> np.ndarray:
    """Lanczos resize of an RGB image by ``factor``."""
    if factor == 1:
        return image
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((max(1, round(w * factor)), max(1, round(h * factor))),
                                                    Image.Resampling.LANCZOS))


def resize_mask(mask: np.ndarray, factor: float) -> np.ndarray:
    """Bilinear resize of a boolean mask, thresholded at one half."""
    if factor == 1:
        return mask
    h, w = mask.shape
    small = Image.fromarray(mask.astype(np.uint8) * 255).resize((max(1, round(w * factor)), max(1, round(h * factor))),
                                                                 Image.Resampling.BILINEAR)
    return np.asarray(small) >= 128


def _tint(image: np.ndarray, od_gain, background) -> np.ndarray:
    """Scale each channel's optical density and move the plasma to ``background``."""
    x = image.astype(np.float64) + 1.0
    bright = x.sum(axis=2)
    bg = np.median(x[bright >= np.percentile(bright, 95)], axis=0)
    od = -np.log(x / bg) * np.asarray(od_gain)
    return np.clip(np.asarray(background, float) * np.exp(-od) - 1.0, 0, 255).astype(np.uint8)


def looks() -> dict:
    """Name -> function(image) for every colour look measured."""
    out = {
        "plain": lambda im: im,
        "yellow": lambda im: _tint(im, (0.55, 0.55, 0.5), (235, 220, 150)),
        "blue": lambda im: _tint(im, (1.5, 1.0, 0.8), (215, 228, 245)),
    }
    try:
        from stain.looks import LOOKS
    except ImportError:
        return out
    for name, look in LOOKS.items():
        out[name] = lambda im, look=look: look(im, 0)
    return out


def _crop_around(image, mask, cy, cx, size):
    h, w = mask.shape
    size_y, size_x = min(size, h), min(size, w)
    y0 = int(np.clip(round(cy - size_y / 2), 0, h - size_y))
    x0 = int(np.clip(round(cx - size_x / 2), 0, w - size_x))
    return image[y0:y0 + size_y, x0:x0 + size_x], mask[y0:y0 + size_y, x0:x0 + size_x]


def build_cases(data_dir: str, look) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """(kind, image, mask, scale) for one colour look."""
    large = load_set(data_dir, "large")
    patches = load_set(data_dir, "patches")[::7]
    cases = []
    for sample in large:
        image = look(sample.image)
        for s in (0.5, 1, 2, 3):
            cases.append((f"large x{s:g}", resize(image, s), resize_mask(sample.mask, s), s))
        big, big_mask = resize(image, 2), resize_mask(sample.mask, 2)
        h, w = big_mask.shape
        for y0, x0 in ((0, 0), (max(0, (h - 480) // 2), max(0, (w - 640) // 2))):
            cases.append(("field640 x2", big[y0:y0 + 480, x0:x0 + 640], big_mask[y0:y0 + 480, x0:x0 + 640], 2))
    for sample in patches:
        image = look(sample.image)
        for s in (1, 3):
            cases.append((f"patch x{s}", resize(image, s), resize_mask(sample.mask, s), s))
    for sample in large + patches:
        image = look(sample.image)
        labels, n = ndi.label(sample.mask)
        for cy, cx in ndi.center_of_mass(sample.mask, labels, range(1, n + 1)):
            if np.sum(labels == labels[int(cy), int(cx)]) < 200:
                continue
            crop, crop_mask = _crop_around(image, sample.mask, cy, cx, 120)
            cases.append(("crop120 x1", crop, crop_mask, 1))
            crop, crop_mask = _crop_around(image, sample.mask, cy, cx, 100)
            cases.append(("crop300 x3", resize(crop, 3), resize_mask(crop_mask, 3), 3))
    return cases


def simulated_probe(mask: np.ndarray, training: TrainingScale):
    """A probe built from the ground truth: what a model near its training scale would find."""
    labels, n = ndi.label(mask)
    areas = ndi.sum(mask, labels, range(1, n + 1))
    diameters = np.sqrt(4 * np.asarray(areas, float) / np.pi)
    diameters = diameters[diameters > 0.3 * (diameters.max() if len(diameters) else 0)]
    rng = np.random.default_rng(int(mask.sum()))

    def probe(factor: float):
        found = []
        for d in diameters * factor:
            ratio = d / training.wbc_diameter
            if 0.6 <= ratio <= 1.6:
                found.append(d * (1 + rng.normal(0, 0.05)))
            elif ratio > 1.6:
                found.extend([0.45 * d] * 3)
        return found
    return probe


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="SigTuple data folder (default: compare.suite.data.resolve_data_dir)")
    parser.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = parser.parse_args(argv)
    args.data = str(resolve_data_dir(args.data).path)

    patches = load_set(args.data, "patches")
    diam = []
    for sample in patches:
        labels, n = ndi.label(sample.mask)
        diam.extend(np.sqrt(4 * np.asarray(ndi.sum(sample.mask, labels, range(1, n + 1))) / np.pi))
    diam = np.asarray(diam)
    training = TrainingScale(wbc_diameter=float(np.median(diam[diam > 30])), rbc_diameter=31.0)

    probe_modes = (False, True)
    rows = defaultdict(list)  # (probe, kind) -> [(err, within, confident, seconds, look)]
    for look_name, look in looks().items():
        for kind, image, mask, s in build_cases(args.data, look):
            for with_probe in probe_modes:
                probe = simulated_probe(mask, training) if with_probe else None
                start = time.perf_counter()
                estimate = estimate_scale(image, training, probe=probe)
                seconds = time.perf_counter() - start
                ratio = estimate.factor * s  # estimated / true factor
                rows[with_probe, kind].append((abs(np.log2(ratio)), abs(ratio - 1) <= 0.15, estimate.confident,
                                               seconds, look_name))
                rows[with_probe, f"look: {look_name}"].append(rows[with_probe, kind][-1])

    name = "scale_accuracy.md"
    lines = ["# Scale estimation accuracy (estimate_scale)",
             "", "Command: `python benchmarks/scale_accuracy.py`  ", f"Training WBC diameter {training.wbc_diameter:.1f} px, "
             f"red cells {training.rbc_diameter:.1f} px.  Looks: {', '.join(looks())}.", ""]
    for with_probe in probe_modes:
        lines += [f"## {'With the simulated probe (ground-truth mask, see the script)' if with_probe else 'No probe'}",
                  "", "| kind | n | median abs log2 error | within 15 % | confident | within 15 % when confident "
                  "| ms / image |", "|---|---|---|---|---|---|---|"]
        keys = sorted((k for k in rows if k[0] == with_probe), key=lambda k: (k[1].startswith("look"), k[1]))
        for key in keys:
            err, within, conf, sec, _ = zip(*rows[key])
            within, conf = np.asarray(within), np.asarray(conf)
            when = f"{within[conf].mean():.2f}" if conf.any() else "-"
            lines.append(f"| {key[1]} | {len(err)} | {np.median(err):.3f} | {within.mean():.2f} | {conf.mean():.2f} "
                         f"| {when} | {1000 * np.mean(sec):.0f} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
