"""Other ways to read a crop's scale, scored without re-predicting: the probe's size rule and one scale per folder.

For each CellaVision crop this predicts, once, with the whole default
pipeline at a grid of given resize factors (:data:`GRID`), and reads what
the scale probe sees at each of :data:`READ_FACTORS` (the own-pixel
diameter of every WBC it separates, and whether the border cuts it).  A
scale rule is then a function of those readings; its Dice on a crop is the
grid's Dice interpolated at the factor the rule picks.  The rule the
pipeline runs is simulated too, through
:func:`compare.pipeline.scale._probe_estimate` itself: its factors must equal
the pipeline's own, which the script checks, so the other rules are scored
on the same footing.

Rules, applied where the probe's best trial factor is below 1 (where it is
1 every rule keeps it):

* ``largest`` - the pipeline's: the largest size read at the best factor
  and at the :data:`compare.pipeline.scale.SIZE_FACTORS` (within
  ``SIZE_WINDOW``, uncut);
* ``best only`` - the size read at the best trial factor alone;
* ``median`` - the median of those sizes;
* ``fixed point`` - the reading whose factor is nearest the factor it
  implies (training diameter / size);
* ``median with 1`` - the median, counting the factor-1 reading too when it
  is one uncut WBC;
* ``folder, geometric mean`` - one factor for every crop of a half: the
  geometric mean of the pipeline's own factors there (crops from one
  microscope share a scale);

and two bounds: every crop at its true factor (training WBC diameter / the
expert cell's equivalent diameter), and the best single factor of the grid
for all crops.  Means are printed for all crops and for the odd (choice)
and even (report) halves.

Run::

    python experiments/probe_size_rules.py OUT.json                          # the shipped U-Net
    python experiments/probe_size_rules.py OUT.json --model RUN/models/rf

About 2 minutes a model on 2 cores; OUT.json keeps the readings and the
grid, and is read again instead of predicting when it exists.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

#: Trial factors the probe is read at (own-pixel diameters are stored).
READ_FACTORS = (1.0, 0.5, 0.45, 0.4, 0.36, 1.0 / 3.0, 0.3, 2.0)
#: Factors the whole pipeline is run at, for the Dice a rule's factor is interpolated from.
GRID = (0.27, 0.3, 1.0 / 3.0, 0.36, 0.38, 0.4, 0.42, 0.44, 0.46, 0.48, 0.5, 0.55, 0.6, 0.7, 0.85, 1.0)


def _key(factor: float) -> str:
    return f"{factor:.4f}"


def collect(model, samples) -> list[dict]:
    """Probe readings and grid Dice per crop.

    Returns
    -------
    list of dict
        ``image``, ``true_factor``, ``pipeline`` (factor, Dice),
        ``reads`` (factor key -> own-pixel ``d`` and ``cut`` lists) and
        ``grid`` (factor key -> Dice).
    """
    from compare.pipeline import scale as scale_stage
    from compare.pipeline.colour import to_training_colours

    def dice(found: np.ndarray, truth: np.ndarray) -> float:
        return float(2.0 * (found & truth).sum() / (found.sum() + truth.sum()))

    rows = []
    for sample in samples:
        truth = sample.mask > 0
        colour = to_training_colours(sample.image, model._colour_reference())
        probe = scale_stage._probe(colour, model.segmenter_, model.params_, {})
        reads = {}
        for factor in READ_FACTORS:
            reading = probe(factor)
            reads[_key(factor)] = {"d": (reading.diameters / factor).tolist(), "cut": reading.cut.tolist()}
        own = model.predict(sample.image, name=sample.name, cells=False)
        rows.append({"image": sample.name,
                     "true_factor": model.training_scale_.wbc_diameter / (2.0 * np.sqrt(truth.sum() / np.pi)),
                     "pipeline": [own.scale.factor, dice(own.labels > 0, truth)], "reads": reads,
                     "grid": {_key(f): dice(model.predict(sample.image, scale=f, cells=False).labels > 0, truth)
                              for f in GRID}})
        print(f"{sample.name}: factor {own.scale.factor:.3f}, Dice {rows[-1]['pipeline'][1]:.3f}", flush=True)
    return rows


def grid_dice(row: dict, factor: float) -> float:
    """The crop's Dice at ``factor``, interpolated linearly on the grid."""
    factors = np.array([float(k) for k in row["grid"]])
    order = np.argsort(factors)
    return float(np.interp(factor, factors[order], np.array(list(row["grid"].values()))[order]))


def _probe_of(row: dict):
    from compare.pipeline.scale import ProbeReading

    def probe(factor: float) -> ProbeReading:
        read = row["reads"][_key(factor)]
        return ProbeReading(np.asarray(read["d"], float) * factor, np.asarray(read["cut"], bool))
    return probe


def pipeline_factor(row: dict, training, size_rule=None) -> tuple[float, float]:
    """``(applied factor, best trial factor)`` of the pipeline's probe on the stored readings.

    ``size_rule(best, size_at_best, row)`` replaces the refinement's size when given.
    """
    from compare.pipeline import scale as scale_stage

    original = scale_stage._largest_size
    scale_stage._largest_size = lambda *args: None
    try:
        plain = scale_stage._probe_estimate(_probe_of(row), training, None, "probe")
    finally:
        scale_stage._largest_size = original
    found = re.search(r"at trial factor ([0-9.]+)", plain.detail)
    best = min(scale_stage.PROBE_FACTORS, key=lambda f: abs(f - float(found.group(1)))) if found else 1.0
    if size_rule is None or best >= 1.0:
        estimate = scale_stage._probe_estimate(_probe_of(row), training, None, "probe")
        factor = estimate.factor
    else:
        size = size_rule(best, max(row["reads"][_key(best)]["d"]), row, training)
        refined = min(best, training.wbc_diameter / size)
        factor = best if abs(np.log(refined / best)) <= np.log(scale_stage.SCALE_TOLERANCE) else refined
        factor = float(np.clip(factor, scale_stage.MIN_FACTOR, scale_stage.MAX_FACTOR))
    return (factor if abs(np.log(factor)) > np.log(scale_stage.SCALE_TOLERANCE) else 1.0), best


def _window_sizes(best: float, row: dict, training, factors) -> dict[float, float]:
    """Own-pixel sizes of the largest uncut WBC at ``factors`` (and ``best``) within ``SIZE_WINDOW``."""
    from compare.pipeline.scale import SIZE_WINDOW

    sizes = {}
    for factor in dict.fromkeys((best, *factors)):
        read = row["reads"][_key(factor)]
        if not read["d"]:
            continue
        i = int(np.argmax(read["d"]))
        if not read["cut"][i] and SIZE_WINDOW[0] <= read["d"][i] * factor / training.wbc_diameter <= SIZE_WINDOW[1]:
            sizes[factor] = read["d"][i]
    return sizes


def size_rules() -> dict:
    """``name -> size_rule`` for :func:`pipeline_factor` (None: the pipeline's own rule)."""
    from compare.pipeline.scale import SIZE_FACTORS

    def median(best, at_best, row, training):
        return float(np.median([at_best, *_window_sizes(best, row, training, SIZE_FACTORS).values()]))

    def fixed_point(best, at_best, row, training):
        sizes = _window_sizes(best, row, training, SIZE_FACTORS)
        if not sizes:
            return at_best
        nearest = min(sizes, key=lambda f: abs(np.log(training.wbc_diameter / sizes[f] / f)))
        return sizes[nearest]

    def median_with_one(best, at_best, row, training):
        sizes = [at_best, *_window_sizes(best, row, training, SIZE_FACTORS).values()]
        one = row["reads"][_key(1.0)]
        if len(one["d"]) == 1 and not one["cut"][0]:
            sizes.append(one["d"][0])
        return float(np.median(sizes))

    return {"largest (pipeline)": None, "best only": lambda best, at_best, row, training: at_best,
            "median": median, "fixed point": fixed_point, "median with 1": median_with_one}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="JSON of the readings and grid (reused when it exists)")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped U-Net)")
    args = parser.parse_args()

    from compare.pipeline.model import load_model

    model = load_model(args.model) if args.model else load_model()
    if args.out.exists():
        rows = json.loads(args.out.read_text())
    else:
        from compare.suite.data import load_domain, resolve_dataset

        rows = collect(model, load_domain(resolve_dataset("cellavision", fetch=False).path))
        args.out.write_text(json.dumps(rows))
    training = model.training_scale_
    odd = np.array([int(row["image"]) % 2 == 1 for row in rows])
    halves = {"all": np.ones(len(rows), bool), "odd": odd, "even": ~odd}

    def line(name: str, dice: np.ndarray) -> None:
        print(f"{name:28s} " + "  ".join(f"{half} {dice[sel].mean():.4f}" for half, sel in halves.items()))

    own = np.array([row["pipeline"][0] for row in rows])
    simulated = np.array([pipeline_factor(row, training)[0] for row in rows])
    print(f"simulated factors equal to the pipeline's: {int(np.isclose(own, simulated, atol=1e-3).sum())}"
          f" of {len(rows)}")
    line("pipeline (predicted)", np.array([row["pipeline"][1] for row in rows]))
    for name, rule in size_rules().items():
        line(name, np.array([grid_dice(row, pipeline_factor(row, training, rule)[0]) for row in rows]))
    folder = np.zeros(len(rows))
    for half in ("odd", "even"):
        sel = halves[half]
        shared = float(np.exp(np.log(own[sel]).mean()))
        folder[sel] = [grid_dice(row, shared) for row, s in zip(rows, sel) if s]
        print(f"  one factor for the {half} half: {shared:.3f}")
    line("folder, geometric mean", folder)
    line("bound: true factor", np.array([grid_dice(row, row["true_factor"]) for row in rows]))
    best = max(GRID, key=lambda f: np.mean([grid_dice(row, f) for row in rows]))
    line(f"bound: one factor ({best:.2f})", np.array([grid_dice(row, best) for row in rows]))


if __name__ == "__main__":
    main()
