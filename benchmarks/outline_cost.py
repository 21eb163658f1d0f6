"""What the outline stage costs ``predict``: the shipped U-Net with the stage and without, side by side.

The same model predicts the same images (the CellaVision crops, where the
stage grows most cells, and the five large SigTuple images) with the
outline stage (:mod:`compare.pipeline.outline`) on and off, alternating
the order in each round so that a busy machine slows both alike.  Prints
the seconds of each pass, the medians, and the speed with the stage as a
share of the speed without it.

Run::

    python benchmarks/outline_cost.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import compare.pipeline.model as pipeline_model
    from compare.pipeline.model import load_model
    from compare.suite.data import load_domain, load_large, resolve_dataset

    model = load_model()
    sets = {"CellaVision crops": [s.image for s in load_domain(resolve_dataset("cellavision", fetch=False).path)],
            "SigTuple large images": [s.image for s in load_large()]}
    stage = pipeline_model.grow_to_edges
    variants = {"with": stage, "without": lambda labels, probability, image: labels}
    try:
        for name, images in sets.items():
            model.predict(images[0])  # warm-up: the first call traces the network
            seconds: dict[str, list[float]] = {"with": [], "without": []}
            for round_ in range(args.rounds):
                order = ["with", "without"] if round_ % 2 == 0 else ["without", "with"]
                for variant in order:
                    pipeline_model.grow_to_edges = variants[variant]
                    start = time.perf_counter()
                    for image in images:
                        model.predict(image)
                    seconds[variant].append(time.perf_counter() - start)
                print(f"{name}, round {round_ + 1}: " + ", ".join(f"{v} {seconds[v][-1]:.1f} s" for v in order),
                      flush=True)
            with_s, without_s = np.median(seconds["with"]), np.median(seconds["without"])
            print(f"{name} ({len(images)} images): median {with_s:.1f} s with the stage, {without_s:.1f} s "
                  f"without; speed with it {without_s / with_s:.2f}x", flush=True)
    finally:
        pipeline_model.grow_to_edges = stage


if __name__ == "__main__":
    main()
