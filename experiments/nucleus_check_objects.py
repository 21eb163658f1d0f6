"""Object by object: which found WBCs the nucleus check keeps, and whether they are real.

For each saved model (``MODELS/NAME``), every object found before the nucleus
check (:func:`compare.pipeline.nucleus_check.drop_without_nucleus`) on

* the 5 large images, unshifted and under every shift of :mod:`compare.suite.shifts`;
* every second training patch, unshifted and under the rapid, lab-A, camera
  and CellaVision looks,

is classed true (at least half of it on the true mask) or false, and three
statistics are printed per object kind: the share of the object denser than
the 99th percentile of the optical density outside all objects (the check's
first test, :data:`compare.pipeline.nucleus_check.MIN_NUCLEUS_FRACTION`), the share
denser than the 95th percentile (the second test,
:data:`compare.pipeline.nucleus_check.MIN_DENSE_FRACTION`) and, for the objects both
fail, the interior texture against the red cells' (the third test,
:data:`compare.pipeline.nucleus_check.MIN_TEXTURE_RATIO`).  The table counts the
objects each rule keeps.

The patches were the models' training data, so the objects there are better
than a held-out fold's; the question here is only what the check does to the
objects a model finds.

Usage::

    python experiments/nucleus_check_objects.py [--models results/models] [--segmenters unet,rf,svm,mlp]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PATCH_SHIFTS = ("look_rapid", "lab_a_like", "look_camera", "look_cellavision")


def _inputs():
    """(name, shift, image, mask) of every image the objects are collected on."""
    from compare.suite.data import load_set
    from compare.suite.shifts import SHIFTS, apply_shift

    large, patches = load_set(None, "large"), load_set(None, "patches")[::2]
    for sample in large:
        yield sample.name, "none", sample.image, sample.mask > 0
        for shift in SHIFTS:
            for k, (image, mask) in enumerate(apply_shift(shift, sample.image, sample.mask > 0, seed=0)):
                yield f"{sample.name}#{k}", shift, image, mask
    for sample in patches:
        yield sample.name, "patch", sample.image, sample.mask > 0
        for shift in PATCH_SHIFTS:
            for k, (image, mask) in enumerate(apply_shift(shift, sample.image, sample.mask > 0, seed=0)):
                yield f"{sample.name}#{k}", f"patch {shift}", image, mask


def object_rows(model, name: str) -> list[dict]:
    """One row per object the model finds before its nucleus check."""
    from skimage.transform import resize

    import compare.pipeline.model as pipeline
    import compare.pipeline.nucleus_check as check

    seen: list[tuple[np.ndarray, np.ndarray]] = []
    original = pipeline.drop_without_nucleus

    def record(labels, image, min_fraction=None):
        seen.append((np.asarray(labels).copy(), np.asarray(image).copy()))
        return labels

    pipeline.drop_without_nucleus = record  # the name WBCModel.predict calls
    rows = []
    try:
        for image_name, shift, image, mask in _inputs():
            seen.clear()
            model.predict(image, cells=False)
            if not seen:
                continue
            labels, work = seen[0]
            if mask.shape != labels.shape:  # the model predicted a resized image
                mask = resize(mask.astype(float), labels.shape, order=0) > 0.5
            shares = check.nucleus_shares(labels, work)
            if shares is None:
                continue
            dark, dense, unlit = shares
            texture, density = check.interior_texture(labels, work)
            for k in range(1, int(labels.max()) + 1):
                obj = labels == k
                rows.append({"segmenter": name, "image": image_name, "shift": shift, "area": int(obj.sum()),
                             "true_wbc": bool(mask[obj].mean() >= 0.5), "unlit": float(unlit[k]),
                             "dense99": float(dark[k]), "dense95": float(dense[k]), "texture": float(texture[k]),
                             "density": float(density[k])})
    finally:
        pipeline.drop_without_nucleus = original
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "results" / "models")
    parser.add_argument("--segmenters", default="unet,rf,svm,mlp")
    args = parser.parse_args(argv)

    import compare.pipeline.nucleus_check as check
    from compare.pipeline.model import load_model

    rows = []
    for name in args.segmenters.split(","):
        rows += object_rows(load_model(args.models / name), name)
        print(f"{name}: {sum(r['segmenter'] == name for r in rows)} objects", flush=True)
    df = pd.DataFrame(rows)
    lit = df.unlit < check.MAX_UNLIT_FRACTION
    first = df.dense99 >= check.MIN_NUCLEUS_FRACTION
    df["kept_first_test"] = first & lit
    df["kept_both_tests"] = (first | (df.dense95 >= check.MIN_DENSE_FRACTION)) & lit
    # The texture test decides only in an image where no object passed a density test.
    none_passed = ~df.groupby(["segmenter", "image", "shift"]).kept_both_tests.transform("any")
    df["kept_all_tests"] = df.kept_both_tests | ((df.texture >= check.MIN_TEXTURE_RATIO)
                                                 & (df.density >= check.MIN_CELL_DENSITY_RATIO) & lit
                                                 & none_passed)
    table = df.groupby(["segmenter", "true_wbc"])[["kept_first_test", "kept_both_tests", "kept_all_tests"]].agg(
        ["sum", "count"])
    print(table.to_string())
    false = df[~df.true_wbc & lit]
    print(f"\nfalse objects (inside the lit field): {len(false)}, largest dense95 {false.dense95.max():.3f}")
    rescued = df[df.true_wbc & df.kept_both_tests & ~df.kept_first_test]
    print(f"true WBCs kept only by the second test: {len(rescued)}, dense95 {rescued.dense95.min():.3f}-"
          f"{rescued.dense95.max():.3f}")
    print("unlit share (no channel above the field-of-view limit), 99th percentile and maximum:")
    print(df.groupby(["segmenter", "true_wbc"]).unlit.describe(percentiles=[0.99])[["count", "99%", "max"]].to_string())
    print(df[~df.true_wbc & (df.unlit > 0)][["segmenter", "image", "shift", "area", "unlit", "dense99",
                                               "dense95"]].to_string(index=False))
    print("objects in the lit field that both density tests drop, by texture (the third test):")
    print(df[lit & ~df.kept_both_tests].sort_values(["true_wbc", "texture"])[
        ["segmenter", "image", "shift", "true_wbc", "area", "dense99", "dense95", "texture", "density"]].to_string(
        index=False))
    print("true WBCs dropped by all three tests:")
    print(df[df.true_wbc & ~df.kept_all_tests][["segmenter", "image", "shift", "area", "dense99", "dense95",
                                                 "texture", "density"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
