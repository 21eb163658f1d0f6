"""The cytoplasm told by its colour in the outline stage, judged on SigTuple, the shifts and CellaVision together.

Scores the pipeline with the outline stage as it was before the colour
(``off``: for the U-Net the uncertain band only, for the others no outline
stage) and with :func:`compare.pipeline.plasma_contrast.plasma_contrast_cells`
(``outline_by_colour`` switched on where the registry has it off) at a few
settings of :data:`compare.pipeline.plasma_contrast.PLASMA_SPREAD`, on the
same sets as ``experiments/outline_band.py``: fold 0 of SigTuple (its
held-out patches and every shift of them, fold 0's model fitted as
``compare run`` fits it) and the final model on the CellaVision crops (the
shipped U-Net, or ``--final-model``),
split into the odd-numbered images (where the setting was chosen) and the
even-numbered ones (where its gain is reported).  Each row of the printed
table is a set, each column a setting: mean Dice and the paired change from
``off`` with a bootstrap 95 % interval.

Usage::

    python experiments/plasma_contrast_band.py OUT_DIR [--fold-model DIR] [--spreads 3 4 6]
    python experiments/plasma_contrast_band.py OUT_DIR --segmenter rf --final-model RUN/models/rf

``--fold-model`` reuses OUT_DIR/fold0 of an earlier call (of this script or
of ``outline_band.py``).  About 4 minutes a setting on 2 cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from outline_band import _rows, parse_sets, write_tables


def main(argv: list[str] | None = None) -> None:
    args, models, held_out, cellavision = parse_sets(
        argv, __doc__.splitlines()[0],
        extra=((("--spreads",), {"type": float, "nargs": "+", "default": [4.0],
                                 "help": "settings of PLASMA_SPREAD to score (default: 4)"}),))

    import dataclasses

    import compare.pipeline.model as pipeline_model
    from compare.pipeline import outline, plasma_contrast

    cells, spread = outline.plasma_contrast_cells, plasma_contrast.PLASMA_SPREAD
    spec_of = pipeline_model.get_spec
    rows = []
    try:
        outline.plasma_contrast_cells = lambda labels, *args, **kwargs: labels
        rows += [dict(setting="off", **r) for r in _rows(models, held_out, cellavision)]
        print("off: done", flush=True)
        outline.plasma_contrast_cells = cells
        # Switched on for a segmenter whose registry entry has it off.
        pipeline_model.get_spec = lambda name: dataclasses.replace(spec_of(name), outline_by_colour=True)
        for value in args.spreads:
            plasma_contrast.PLASMA_SPREAD = value
            rows += [dict(setting=f"spread {value:g}", **r) for r in _rows(models, held_out, cellavision)]
            print(f"spread {value:g}: done", flush=True)
    finally:
        outline.plasma_contrast_cells, plasma_contrast.PLASMA_SPREAD = cells, spread
        pipeline_model.get_spec = spec_of
    write_tables(rows, args.out)


if __name__ == "__main__":
    main()
