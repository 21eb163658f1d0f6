"""Predict throughput on the 5 large SigTuple images: the bare segmenter stages against the whole pipeline, in one run.

Three ways of predicting every large image (:func:`compare.suite.data.load_set`
``(None, "large")``) with one fitted :class:`compare.pipeline.model.WBCModel`:

* ``before``: ``segmenter.predict_proba`` then
  :func:`compare.pipeline.instances.separate_and_measure` only (no white balance,
  scale estimate, nucleus check or cell table);
* ``after``: :meth:`WBCModel.predict` with its default settings;
* ``after_nocells``: :meth:`WBCModel.predict` with ``cells=False``.

Each is repeated ``--repeats`` times over all five images (after one
untimed warm-up pass); the table gives the median megapixels per second and
the ratio to ``before``.  A profile then re-runs the ``after`` chain stage
by stage, as :meth:`WBCModel.predict` calls them
(:func:`compare.pipeline.colour.to_training_colours`,
:func:`compare.pipeline.scale.choose_scale`,
:func:`compare.pipeline.segment.segment`,
:func:`compare.pipeline.instances.separate_instances`,
:func:`compare.pipeline.nucleus_check.drop_without_nucleus`,
:func:`compare.pipeline.measure.measure_cells`) with :func:`time.perf_counter`
around each call, and gives each stage's median seconds over the repeats.

Usage::

    python benchmarks/predict_throughput.py [--segmenters threshold,rf] [--repeats 3] [--max-fit-s 60] [--out FILE]

Segmenters are fitted on the 164 patches (seed 0); one whose ``WBCModel.fit``
takes longer than ``--max-fit-s`` seconds is reported but not timed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The stages of :meth:`WBCModel.predict`, in its order.
STAGES = ("colour", "scale estimate", "segmenter", "instances", "nucleus check", "measure")


def run_before(model, images) -> None:
    """The segmenter's probability and the instance stage, nothing else."""
    from compare.pipeline.instances import separate_and_measure

    for image in images:
        separate_and_measure(model.segmenter_.predict_proba(image), model.params_)


def run_after(model, images, cells: bool) -> None:
    """:meth:`WBCModel.predict` on every image."""
    for image in images:
        model.predict(image, cells=cells)


def profile_after(model, image: np.ndarray) -> tuple[dict[str, float], str, np.ndarray]:
    """Seconds per stage of :meth:`WBCModel.predict` (defaults) rebuilt from its stages, the scale method and labels.

    Parameters
    ----------
    model : WBCModel
        Fitted, with colour normalisation, auto scale and the nucleus check.
    image : ndarray, shape (H, W, 3), uint8

    Returns
    -------
    seconds : dict of str to float
        One entry per name in :data:`STAGES` (0 for a stage not run).
    method : str
        How the scale was found.
    labels : ndarray, shape (H, W), int
        The WBCs found, as :meth:`WBCModel.predict` finds them.
    """
    from compare.pipeline.colour import to_training_colours
    from compare.pipeline.instances import separate_instances
    from compare.pipeline.measure import measure_cells
    from compare.pipeline.nucleus_check import drop_without_nucleus
    from compare.pipeline.scale import choose_scale
    from compare.pipeline.segment import segment

    seconds = dict.fromkeys(STAGES, 0.0)

    def timed(stage, func, *args, **kwargs):
        start = time.perf_counter()
        result = func(*args, **kwargs)
        seconds[stage] += time.perf_counter() - start
        return result

    # The same calls as WBCModel.predict; tests/benchmarks/test_predict_throughput.py keeps them equal.
    colour = timed("colour", to_training_colours, image, model._colour_reference())
    choice, at_own_scale = timed("scale estimate", choose_scale, colour, model.training_scale_,
                                 segmenter=model.segmenter_, params=model.params_, auto=model.auto_scale)
    segmentation = timed("segmenter", segment, colour, choice.applied, model.segmenter_, at_own_scale=at_own_scale)
    labels = timed("instances", separate_instances, segmentation.probability, model.params_)
    if model.require_nucleus and labels.max():
        labels = timed("nucleus check", drop_without_nucleus, labels, segmentation.image)
    found = timed("measure", measure_cells, labels, segmentation.probability, image, factor=segmentation.factor)
    return seconds, choice.estimate.method, found.labels


def measure(model, images, repeats: int) -> dict:
    """Median Mpx/s of before / after / after_nocells and median seconds per profiled stage."""
    mpx = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
    runs = {"before": lambda: run_before(model, images), "after": lambda: run_after(model, images, True),
            "after_nocells": lambda: run_after(model, images, False)}
    for run in runs.values():  # warm-up: first-call imports and caches
        run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    methods: list[str] = []
    for _ in range(repeats):
        # Interleaved, so that a slow spell of a busy machine hits all of them.
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
        totals = dict.fromkeys(STAGES, 0.0)
        for image in images:
            per_image, method, _ = profile_after(model, image)
            methods.append(method)
            for stage, value in per_image.items():
                totals[stage] += value
        for stage, value in totals.items():
            stages[stage].append(value)
    median_s = {name: statistics.median(values) for name, values in seconds.items()}
    return {"mpx": mpx, "seconds": median_s, "all_seconds": seconds,
            "mpx_s": {name: mpx / s for name, s in median_s.items()},
            "stages": {stage: statistics.median(values) for stage, values in stages.items()},
            "methods": sorted(set(methods))}


def report(results: dict, fits: dict, args, command: str) -> str:
    """The markdown table of throughputs and the stage profile."""
    import os
    import platform

    lines = ["# Predict throughput on the 5 large images: segmenter + instances vs the WBCModel pipeline", "",
             f"Command: `{command}`  ",
             f"Python {platform.python_version()}, {os.cpu_count()} CPU cores shared with other jobs (wall times); "
             f"median of {args.repeats} interleaved repeats over all 5 images after one warm-up pass.", "",
             "* `before`: `segmenter.predict_proba` + `compare.pipeline.instances.separate_and_measure` "
             "(no white balance, scale estimate, nucleus check or cell table);",
             "* `after`: `WBCModel.predict(image)` with default settings (cell table included);",
             "* `after_nocells`: `WBCModel.predict(image, cells=False)`.", "",
             "| segmenter | fit s | Mpx | before Mpx/s | after Mpx/s | after / before | after_nocells Mpx/s | "
             "after_nocells / before |",
             "|---|---|---|---|---|---|---|---|"]
    for name, fit_s in fits.items():
        r = results.get(name)
        if r is None:
            lines.append(f"| {name} | {fit_s:.1f} | | not timed: fit over {args.max_fit_s:g} s | | | | |")
            continue
        m = r["mpx_s"]
        lines.append(f"| {name} | {fit_s:.1f} | {r['mpx']:.2f} | {m['before']:.3f} | {m['after']:.3f} | "
                     f"{m['after'] / m['before']:.2f} | {m['after_nocells']:.3f} | "
                     f"{m['after_nocells'] / m['before']:.2f} |")
    for name, r in results.items():
        total = sum(r["stages"].values())
        lines += ["", f"Stages of `after` for `{name}`, rebuilt from the pieces (median seconds over the 5 images; "
                      f"scale found by: {', '.join(r['methods'])}; pipeline `after` took {r['seconds']['after']:.2f} s, "
                      f"`before` {r['seconds']['before']:.2f} s):", "",
                  "| stage | s | share of the profiled total |", "|---|---|---|"]
        lines += [f"| {stage} | {s:.3f} | {s / total:.0%} |" for stage, s in
                  sorted(r["stages"].items(), key=lambda kv: -kv[1]) if s > 0]
        lines.append(f"| total | {total:.3f} | 100% |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segmenters", default="threshold,rf", help="registry names, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-fit-s", type=float, default=60.0,
                        help="a segmenter whose WBCModel.fit takes longer is not timed")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "predict_throughput.md")
    args = parser.parse_args(argv)
    command = " ".join(["python benchmarks/predict_throughput.py", *(sys.argv[1:] if argv is None else argv)])

    from compare.pipeline.model import WBCModel
    from compare.suite.data import load_set

    patches, large = load_set(None, "patches"), load_set(None, "large")
    images = [s.image for s in large]
    fits, results = {}, {}
    for name in args.segmenters.split(","):
        start = time.perf_counter()
        model = WBCModel(name, random_state=0).fit(patches)
        fits[name] = time.perf_counter() - start
        print(f"{name}: fit {fits[name]:.1f} s", flush=True)
        if fits[name] > args.max_fit_s:
            continue
        results[name] = measure(model, images, args.repeats)
        print(name, {k: round(v, 3) for k, v in results[name]["mpx_s"].items()}, flush=True)
    text = report(results, fits, args, command)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
