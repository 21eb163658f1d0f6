"""The outline stage's band and smoothing, judged on SigTuple, the shifts and CellaVision together.

Scores the pipeline with the outline stage off and at a few settings of
``(low, sigma)`` (:func:`compare.pipeline.outline.grow_to_edges`):

* fold 0 of the grouped 5-fold split of the SigTuple patches, fitted here
  with the default U-Net (seed 0, as ``compare run``'s fold 0), scored on
  its held-out patches and on every shift of them;
* the shipped default U-Net, zero-shot, on the CellaVision crops, split into
  the odd-numbered images (where the setting was chosen) and the
  even-numbered ones (where its gain is reported).

Each row of the printed table is a set, each column a setting: mean Dice,
and the paired difference from "off" with a bootstrap 95 % interval.

With ``--segmenter rf`` (or ``svm``, ``mlp``) the same for a pixel
classifier, whose specification has the stage off: it is switched on for
every setting but "off", and the settings are :data:`SETTLE_SETTINGS`, where
the WBCs' own uncertain pixels join the band (``high``) so the outline can
also move in; the CellaVision model is then the segmenter's final model of
a ``compare run`` (``--final-model``, its ``models/NAME``).

Usage::

    python experiments/outline_band.py OUT_DIR [--cellavision DIR] [--fold-model DIR]
    python experiments/outline_band.py OUT_DIR --segmenter rf --final-model RUN/models/rf [--fold-model DIR]

``--fold-model`` reuses a fold-0 model folder saved by an earlier call
(OUT_DIR/fold0 is written on the first).  About 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: ``name: (low, sigma, high)`` of :func:`compare.pipeline.outline.grow_to_edges`, for the U-Net.
SETTINGS = {"0.2/2": (0.2, 2.0, None), "0.2/1": (0.2, 1.0, None), "0.1/2": (0.1, 2.0, None)}
#: The same for a pixel classifier: grown as the U-Net, and settled within bands between ``low`` and ``high``.
SETTLE_SETTINGS = {"grow 0.2/2": (0.2, 2.0, None), "settle 0.5-0.9/2": (0.5, 2.0, 0.9),
                   "settle 0.2-0.9/2": (0.2, 2.0, 0.9), "settle 0.5-0.95/2": (0.5, 2.0, 0.95)}


def _rows(model, held_out, cellavision) -> list[dict]:
    from compare.evaluation.evaluate import evaluate
    from compare.suite.protocols import evaluate_domain, evaluate_shifts

    rows = [dict(set="sigtuple_cv", **r) for r in evaluate(model["fold0"], held_out)]
    rows += [dict(set=r["shift"], **r) for r in evaluate_shifts(model["fold0"], held_out, seed=0, n_jobs=2)]
    for r in evaluate_domain(model["default"], cellavision):
        rows.append(dict(set="cellavision_" + ("odd" if int(r["image"]) % 2 else "even"), **r))
    return rows


def paired_table(rows: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Mean Dice per set and setting, and the paired change from "off" with its bootstrap 95 % interval."""
    rng = np.random.default_rng(seed)
    off = rows[rows.setting == "off"].set_index(["set", "image"]).dice
    table = []
    for (name, setting), group in rows.groupby(["set", "setting"], sort=True):
        entry = {"set": name, "setting": setting, "dice": group.dice.mean()}
        if setting != "off":
            change = (group.set_index(["set", "image"]).dice - off.loc[name]).dropna().to_numpy()
            means = rng.choice(change, (2000, len(change))).mean(axis=1)
            entry.update(change=change.mean(), low=np.quantile(means, 0.025), high=np.quantile(means, 0.975))
        table.append(entry)
    return pd.DataFrame(table)


def write_tables(rows: list[dict], out: Path) -> None:
    """``OUT/rows.csv`` (every scored image), ``OUT/table.csv`` (:func:`paired_table`), and the table printed."""
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "rows.csv", index=False)
    table = paired_table(frame)
    table.to_csv(out / "table.csv", index=False)
    print(table.round(4).to_string(index=False))


def parse_sets(argv: list[str] | None, description: str,
               extra: tuple[tuple[tuple, dict], ...] = ()) -> tuple[argparse.Namespace, dict, list, list]:
    """The command line, the two models and the two sets every outline experiment scores.

    Returns ``(args, models, held_out, cellavision)``: ``models["fold0"]``
    fitted on fold 0 of the SigTuple patches as ``compare run`` fits it
    (or ``--fold-model``; saved to ``OUT/fold0`` when fitted here),
    ``models["default"]`` the final model scored on CellaVision (the
    shipped U-Net or ``--final-model``), fold 0's held-out patches and the
    CellaVision crops.  ``extra`` adds ``(args, kwargs)`` of
    ``add_argument`` calls.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("out", type=Path)
    parser.add_argument("--cellavision", default=None, help="the CellaVision folder (default: resolved as by score)")
    parser.add_argument("--fold-model", type=Path, default=None)
    parser.add_argument("--segmenter", default="unet", help="registry name (default: unet)")
    parser.add_argument("--final-model", type=Path, default=None,
                        help="the model scored on CellaVision (default: the shipped U-Net)")
    for names, options in extra:
        parser.add_argument(*names, **options)
    args = parser.parse_args(argv)

    from compare.evaluation.evaluate import fit_model
    from compare.pipeline.model import WBCModel, load_model
    from compare.suite.data import grouped_kfold, load_domain, load_patches, resolve_dataset

    args.out.mkdir(parents=True, exist_ok=True)
    samples = load_patches()
    train, test = grouped_kfold(samples, 5, 0)[0]
    if args.fold_model:
        fold0 = WBCModel.load(args.fold_model)
    else:
        fold0 = fit_model(args.segmenter, [samples[i] for i in train], seed=0)
        fold0.save(args.out / "fold0")
    cellavision = load_domain(args.cellavision or resolve_dataset("cellavision", fetch=False).path)
    models = {"fold0": fold0, "default": WBCModel.load(args.final_model) if args.final_model else load_model()}
    return args, models, [samples[i] for i in test], cellavision


def main(argv: list[str] | None = None) -> None:
    args, models, held_out, cellavision = parse_sets(argv, __doc__.splitlines()[0])

    import dataclasses

    import compare.pipeline.model as pipeline_model
    from compare.pipeline.outline import grow_to_edges

    settings = SETTINGS if args.segmenter.startswith("unet") else SETTLE_SETTINGS
    rows = []
    stage, spec_of = pipeline_model.outline_cells, pipeline_model.get_spec
    # The stage switched on for a segmenter whose specification has it off.
    pipeline_model.get_spec = lambda name: dataclasses.replace(spec_of(name), grow_outline=True)
    try:
        # The uncertain band alone, without the cytoplasm told by colour
        # (experiments/plasma_contrast_band.py scores that).
        variants = {"off": lambda labels, probability, image, **_: labels}
        variants.update({name: lambda labels, probability, image, low=low, sigma=sigma, high=high, **_:
                         grow_to_edges(labels, probability, image, low=low, sigma=sigma, high=high)
                         for name, (low, sigma, high) in settings.items()})
        for name, variant in variants.items():
            pipeline_model.outline_cells = variant
            rows += [dict(setting=name, **r) for r in _rows(models, held_out, cellavision)]
            print(f"{name}: done", flush=True)
    finally:
        pipeline_model.outline_cells, pipeline_model.get_spec = stage, spec_of
    write_tables(rows, args.out)


if __name__ == "__main__":
    main()
