"""What a pipeline stage costs ``predict``: the shipped U-Net with the stage and without, side by side.

The same model predicts the same images (the CellaVision crops, where the
outline stage grows most cells and every crop is shrunk, and the five large
SigTuple images) with the stage on and off, alternating the order in each
round so that a busy machine slows both alike.  Prints the seconds of each
pass, the medians, and the speed with the stage as a share of the speed
without it.  The stages:

* ``outline`` - growing each WBC to the colour edge (:mod:`compare.pipeline.outline`);
* ``colour`` - within the outline stage, the cytoplasm told by its colour
  (:mod:`compare.pipeline.plasma_contrast`);
* ``views`` - reading a shrunk image in its eight dihedral views
  (``views_when_shrunk``, :func:`compare.pipeline.segment.segment`).

Run::

    python benchmarks/stage_cost.py [--stage outline|colour|views] [--rounds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import numpy as np


def _switches(stage: str) -> Callable[[bool], None]:
    """``switch(on)``: turns ``stage`` on or off for the shipped U-Net's ``predict``."""
    import compare.pipeline.model as pipeline_model
    from compare.pipeline import outline
    from compare.pipeline.segmenters import REGISTRY

    if stage == "outline":
        grow = pipeline_model.outline_cells

        def switch(on: bool) -> None:
            pipeline_model.outline_cells = grow if on else (lambda labels, *args, **kwargs: labels)
        return switch
    if stage == "colour":
        cells = outline.plasma_contrast_cells

        def switch(on: bool) -> None:
            outline.plasma_contrast_cells = cells if on else (lambda labels, *args, **kwargs: labels)
        return switch
    spec = REGISTRY["unet"]

    def switch(on: bool) -> None:
        REGISTRY["unet"] = dataclasses.replace(spec, views_when_shrunk=on)
    return switch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("outline", "colour", "views"), default="outline")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from compare.pipeline.model import load_model
    from compare.suite.data import load_domain, load_large, resolve_dataset

    model = load_model()
    sets = {"CellaVision crops": [s.image for s in load_domain(resolve_dataset("cellavision", fetch=False).path)],
            "SigTuple large images": [s.image for s in load_large()]}
    switch = _switches(args.stage)
    try:
        for name, images in sets.items():
            model.predict(images[0])  # warm-up: the first call traces the network
            seconds: dict[str, list[float]] = {"with": [], "without": []}
            for round_ in range(args.rounds):
                order = ["with", "without"] if round_ % 2 == 0 else ["without", "with"]
                for variant in order:
                    switch(variant == "with")
                    start = time.perf_counter()
                    for image in images:
                        model.predict(image)
                    seconds[variant].append(time.perf_counter() - start)
                print(f"{name}, round {round_ + 1}: " + ", ".join(f"{v} {seconds[v][-1]:.1f} s" for v in order),
                      flush=True)
            with_s, without_s = np.median(seconds["with"]), np.median(seconds["without"])
            print(f"{name} ({len(images)} images): median {with_s:.1f} s with the {args.stage} stage, "
                  f"{without_s:.1f} s without; speed with it {without_s / with_s:.2f}x", flush=True)
    finally:
        switch(True)


if __name__ == "__main__":
    main()
