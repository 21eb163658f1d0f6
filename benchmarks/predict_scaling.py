"""How ``compare predict`` scales with image size: seconds and peak memory at 1, 4, 16 and 64 Mpx.

Each size runs in a fresh Python process, so its peak resident memory
(``ru_maxrss``) is its own: reading the image, the whole
:class:`compare.pipeline.model.WBCModel` pipeline (white balance, scale estimate,
prediction block by block, instances, nucleus check, per-cell table) and
writing the mask and overlay, as :func:`compare.commands.predict.predict` does.  The images are a
SigTuple large image tiled (mirrored, so no seams look like cell edges) to the
target size and written as PNG beforehand.

Usage::

    python benchmarks/predict_scaling.py [--model DIR] [--sizes 1,4,16,64] [--out results/benchmarks]

Without ``--model`` a ``WBCModel("threshold")`` (white balance, scale
estimate, threshold segmenter, instance settings and nucleus check, fitted on
the SigTuple patches in seconds) is saved to a temporary folder.  Prints a table and writes
``predict_scaling.md`` and ``predict_scaling.csv`` under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from compare.commands.predict import predict
start = time.perf_counter()
counts, errors = predict([sys.argv[1]], model_dir=sys.argv[2], out=sys.argv[3], show_progress=False)
seconds = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "count": counts[0]["wbc_count"] if counts else None,
                  "errors": errors}))
"""

BASELINE = r"""
import resource
import compare.commands.predict, compare.pipeline.model, compare.pipeline.measure, compare.io.overlay, baselines.threshold, stain.normalise
import skimage.segmentation, skimage.feature, skimage.color
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def make_image(target_mpx: float, path: Path) -> tuple[int, int]:
    """Write a PNG of about ``target_mpx`` megapixels tiled from a SigTuple large image."""
    from PIL import Image

    from compare.io.images import read_image
    from compare.suite.data import resolve_data_dir

    tile = read_image(resolve_data_dir().path / "Train_Data" / "54A84627F362.jpg")
    side = int(round(np.sqrt(target_mpx * 1e6)))
    reps = (int(np.ceil(side / tile.shape[0])), int(np.ceil(side / tile.shape[1])))
    # Mirror every other copy so that the image is continuous at the seams.
    row = np.concatenate([tile if j % 2 == 0 else tile[:, ::-1] for j in range(reps[1])], axis=1)
    big = np.concatenate([row if i % 2 == 0 else row[::-1] for i in range(reps[0])], axis=0)[:side, :side]
    Image.fromarray(np.ascontiguousarray(big)).save(path, compress_level=1)
    return big.shape[0], big.shape[1]


def threshold_model(folder: Path) -> Path:
    """A ``WBCModel("threshold")`` fitted on the SigTuple patches and saved to ``folder``, as ``compare run`` saves it."""
    from compare.pipeline.model import WBCModel
    from compare.suite.data import load_patches

    return WBCModel("threshold").fit(load_patches()).save(folder)


def main(argv: list[str] | None = None) -> int:
    from compare.pipeline.model import WBCModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a model folder (default: a threshold model)")
    parser.add_argument("--sizes", default="1,4,16,64", help="megapixels, comma-separated")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args(argv)
    sizes = [float(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or threshold_model(tmp / "model")
        model_name = WBCModel.read_manifest(model).segmenter
        base_mb = float(subprocess.run([sys.executable, "-c", BASELINE], capture_output=True, text=True,
                                       check=True).stdout)
        for mpx in sizes:
            image = tmp / f"smear-{mpx:g}mpx.png"
            height, width = make_image(mpx, image)
            done = subprocess.run([sys.executable, "-c", CHILD, str(image), str(model), str(tmp / "out")],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"mpx": round(height * width / 1e6, 2), "width": width, "height": height,
                         "seconds": round(result["seconds"], 1), "s_per_mpx": round(result["seconds"] / (height * width / 1e6), 2),
                         "peak_mb": round(result["peak_mb"]), "wbc_count": result["count"]})
            print(rows[-1], flush=True)
            image.unlink()
    header = ("mpx", "width", "height", "seconds", "s_per_mpx", "peak_mb", "wbc_count")
    lines = ["# compare predict: time and peak memory against image size",
             "",
             f"Model: `{model_name}` ({'given with --model' if args.model else 'threshold, saved by the benchmark'}). "
             f"Images: `54A84627F362.jpg` mirrored and tiled to each size, PNG. Each size in a fresh process; "
             f"peak memory is that process's maximum resident set (imports alone: {base_mb:.0f} MB). "
             f"Command: `python benchmarks/predict_scaling.py --sizes {args.sizes}`.",
             "",
             "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predict_scaling.md").write_text(text)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(header), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (args.out / "predict_scaling.csv").write_text(buffer.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
