"""Trial: Macenko stain-vector normalisation at predict time, against the white balance alone.

Loads the saved ``rf`` and ``unet`` models of a run folder (trained on
white-balanced images), measures a stain reference on the SigTuple training
images (:func:`stain.macenko.stain_reference`) and scores each model with its
white balance replaced by :func:`stain.macenko.normalise_stains`, on 28
patches and on the colour shifts of those patches and the 5 large images.

    python benchmarks/stain_vector_trial.py [--run results] [--keep-concentration]
"""

from __future__ import annotations

import argparse

import pandas as pd

SHIFTS = ("look_rapid", "lab_a_like", "look_camera", "look_cellavision", "lab_c_like", "dim")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="results", help="run folder whose models/ are loaded")
    parser.add_argument("--keep-concentration", action="store_true",
                        help="rebuild with the reference's stain vectors only, not its concentration scale")
    args = parser.parse_args()

    from compare.data import load_set
    from compare.evaluate import evaluate, evaluate_shifts
    from compare.model import load_model
    from stain.macenko import normalise_stains, stain_reference

    patches, large = load_set(None, "patches"), load_set(None, "large")
    reference = stain_reference([s.image for s in patches + large])
    subset, cache = patches[::6][:28], {}
    for name in ("rf", "unet"):
        model = load_model(f"{args.run}/models/{name}")
        for mode in ("white balance", "stain vectors"):
            if mode == "stain vectors":
                model._balance = lambda image: normalise_stains(image, reference,
                                                                match_concentration=not args.keep_concentration)
            plain = pd.DataFrame(evaluate(model, subset))
            shifted = pd.DataFrame(evaluate_shifts(model, subset + large, shifts=SHIFTS, cache=cache))
            scores = {"none": round(float(plain.dice.mean()), 4)}
            scores.update({k: round(float(v), 4) for k, v in shifted.groupby("shift").dice.mean().items()})
            print(name, mode, scores, flush=True)


if __name__ == "__main__":
    main()
