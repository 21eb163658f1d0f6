"""Command line: ``python -m compare {run,list,report,predict,score,fit,data}``.

Only the standard library is imported before the arguments are parsed, so
``--help`` answers at once; the runner, and TensorFlow with it, load after.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


def _csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all sub-commands."""
    parser = argparse.ArgumentParser(
        prog="python -m compare",
        description="Compare white blood cell segmenters on one loader and one evaluator.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="fit and evaluate segmenters through the cv, large, test, shift and "
                                     "cellavision protocols",
                         description="Fit and evaluate segmenters; writes per_image.csv, summary.csv, summary.md, "
                                     "config.json, splits.json, env.json, models/, predictions/ and a report.")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every registered segmenter (slow ones only with --include-slow)")
    which.add_argument("--segmenters", type=_csv_list, metavar="A,B", help="comma-separated registry names (see 'list')")
    run.add_argument("--include-slow", action="store_true", help="with --all, also run segmenters marked slow")
    run.add_argument("--protocols", type=_csv_list, default=["cv", "large", "test", "shift", "cellavision"],
                     metavar="P,Q", help="any of cv,large,test,shift,cellavision (default: all five; cellavision "
                                         "scores the final model on the CellaVision crops, found in "
                                         "$WBC_CELLAVISION, ../shared/data/cellavision or the user cache)")
    run.add_argument("--folds", type=int, default=5, help="grouped folds for cv (default 5)")
    run.add_argument("--seed", type=int, default=0, help="seed of splits, sampling and training (default 0)")
    run.add_argument("--data", type=Path, action="append", default=None, metavar="DIR",
                     help="data folder in the SigTuple layout (default: $WBC_DATA, ../shared/data/sigtuple, the user "
                          "cache); give it again for more labelled domains (images/ + masks/ or the SigTuple layout): "
                          "two or more add the 'domains' protocol, leave-one-domain-out")
    run.add_argument("--out", type=Path, default=Path("results"), help="run folder (default: results)")
    run.add_argument("--resume", action="store_true", help="reuse finished (segmenter, protocol, fold) results in --out")
    run.add_argument("--shift-patches", type=int, default=None, metavar="N",
                     help="held-out patches per fold the shift battery is applied to; 0: all (default 6)")
    run.add_argument("--no-report", action="store_true", help="skip report.md / report.html")

    sub.add_parser("list", help="show the registered segmenters")

    report = sub.add_parser("report", help="rebuild report.md and report.html from a finished run folder")
    report.add_argument("run_dir", type=Path, help="a folder written by 'run'")

    predict = sub.add_parser("predict", help="locate, delineate and count WBCs in your own images")
    predict.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders of images")
    predict.add_argument("--model", type=Path, default=None,
                         help="a model folder saved by 'run' (default: the U-Net shipped with the package)")
    predict.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default: predictions)")
    predict.add_argument("--wbc-diameter", type=float, default=None, metavar="PX",
                         help="typical WBC diameter in these images, in pixels (default: each image's scale is "
                              "estimated)")
    predict.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                         help="pixel size in micrometres: sets the scale and adds micrometre columns (default: read "
                              "from TIFF / OME metadata where present, else the scale is estimated)")
    predict.add_argument("--rois", action="store_true", help="also write an ImageJ / Fiji ROI zip per image")
    predict.add_argument("--geojson", action="store_true", help="also write a QuPath GeoJSON per image")
    predict.add_argument("--tiff", action="store_true", help="also write the label image as TIFF (uint16/uint32)")
    predict.add_argument("--resume", action="store_true", help="skip images finished by an earlier run into --out")
    predict.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                         help="where the U-Net runs (default auto: a GPU when the Keras backend sees one)")
    predict.add_argument("--scheduler", default=None, metavar="ADDRESS",
                         help="a Dask distributed scheduler to spread images over (default: run locally)")
    score = sub.add_parser("score", help="score a saved model on labelled folders from other labs (no fitting)",
                           description="The held-out check: the model, with default settings, predicts every "
                                       "labelled image of each folder (images/ + masks/, the SigTuple layout or "
                                       "the CellaVision one, Dataset 2/; one lab or microscope each) and is scored "
                                       "as in 'run'; where the masks mark the nucleus (levels 0, 128, 255) the "
                                       "nucleus Dice and N:C error are scored too. Writes per_image.csv, "
                                       "summary.csv and summary.md.")
    score.add_argument("folders", nargs="+", type=Path, metavar="FOLDER", help="labelled data folders")
    score.add_argument("--model", type=Path, default=None,
                       help="a model folder saved by 'run' (default: the U-Net shipped with the package)")
    score.add_argument("--out", type=Path, default=Path("scores"), help="output folder (default: scores)")
    score.add_argument("--resume", action="store_true", help="reuse the folders finished by an earlier call into --out")
    from compare.commands.fit import add_fit_parser

    add_fit_parser(sub)
    _add_data_parser(sub)
    return parser


#: The data sets ``data fetch`` and ``data info`` know (compare.suite.fetch.SOURCES).
_DATASETS = ("sigtuple", "cellavision")


def _add_data_parser(sub) -> None:
    """``data fetch [NAME] [--to DIR]`` and ``data info [NAME] [--data DIR]``."""
    data = sub.add_parser("data", help="download a data set (SigTuple, CellaVision), or show where each is found",
                          description="No data set is shipped: each is found in --data, its environment variable "
                                      "($WBC_DATA, $WBC_CELLAVISION), ../shared/data/NAME or the user cache, and "
                                      "downloaded from its pinned public source on first use (see docs/data.md).")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download and verify a data set (once; a rerun resumes)")
    fetch.add_argument("name", nargs="?", choices=_DATASETS, default="sigtuple",
                       help="which set (default: sigtuple)")
    fetch.add_argument("--to", type=Path, default=None,
                       help="folder to install into (default: the set's variable, $WBC_DATA or $WBC_CELLAVISION, "
                            "if set, else the user cache)")
    info = actions.add_parser("info", help="where each data set resolves from, its file count and whether it verifies")
    info.add_argument("name", nargs="?", choices=_DATASETS, default=None, help="one set (default: both)")
    info.add_argument("--data", type=Path, default=None,
                      help="a data folder to check instead of the resolved one (of NAME; without NAME, of sigtuple)")


def _cmd_list() -> int:
    from compare.pipeline.segmenters import REGISTRY

    width = max(len(n) for n in REGISTRY)
    for name, spec in REGISTRY.items():
        flag = " (slow: only with --include-slow)" if spec.slow else ""
        print(f"{name:<{width}}  {spec.description}{flag}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from compare.suite.data import resolve_data_dir

    # Resolve (and download, when nothing is found) before the heavy imports,
    # so an offline machine gets its one-sentence answer at once.
    main_data = args.data[0] if args.data else None
    resolve_data_dir(main_data)
    from compare.pipeline.segmenters import default_names
    from compare.suite.runner import RunConfig, run
    from compare.suite.summary import markdown_table, readable_columns

    names = default_names(args.include_slow) if args.all else args.segmenters
    config = RunConfig(segmenters=names, protocols=args.protocols, folds=args.folds, seed=args.seed,
                       data=str(main_data) if main_data else None, out=str(args.out), resume=args.resume,
                       domains=[str(d) for d in args.data] if args.data and len(args.data) > 1 else [],
                       **({} if args.shift_patches is None else {"shift_patches_per_fold": args.shift_patches}))
    summary = run(config)
    if not args.no_report:
        try:
            from compare.suite.report.build import build_report
        except ImportError:
            build_report = None
        if build_report is not None:
            try:
                build_report(args.out)
            except Exception as exc:  # the results are written; a report problem must not hide them
                print(f"warning: the report failed ({type(exc).__name__}: {exc}); the results are complete. "
                      f"Rebuild it with: python -m compare report {args.out}", file=sys.stderr)
    print(markdown_table(summary, readable_columns(summary)))
    print(f"Results are in {args.out}/ (summary.md, per_image.csv, predictions/, models/).")
    errors_file = args.out / "errors.csv"
    n_errors = 0
    if errors_file.exists():
        import pandas as pd

        problems = pd.read_csv(errors_file)
        n_errors = int((problems["level"] == "error").sum()) if "level" in problems else len(problems)
    if n_errors:
        print(f"{n_errors} problem(s) were recorded in {errors_file}; the other results are complete.", file=sys.stderr)
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from compare.suite.report.build import build_report

    path = build_report(args.run_dir)
    print(f"Wrote {path}")
    return 0


def _data_info(name: str, data: Path | None, *, optional: bool) -> int:
    """Print where one data set resolves and whether it verifies; its exit code (0, 1, 2).

    An ``optional`` set that is missing is reported without failing.
    """
    from compare.suite.data import resolve_dataset
    from compare.suite.fetch import SOURCES, verify

    source = SOURCES[name]
    resolved = resolve_dataset(name, data, fetch=False)
    print(f"{source.title} ({name}): {resolved.path} ({resolved.describe()})")
    if not resolved.path.is_dir():
        command = "python -m compare data fetch" + ("" if name == "sigtuple" else f" {name}")
        print(f"missing: nothing there yet; run: {command}", file=sys.stderr)
        return 0 if optional else 2
    manifest = source.manifest_path()
    check = verify(resolved.path, manifest)
    print(f"files: {check.present} of the {check.expected} in the manifest {manifest.name}")
    if check.ok:
        print("verified: yes, every SHA-256 matches")
        return 0
    print(f"verified: no ({len(check.missing)} missing, {len(check.bad)} different)")
    return 1


def _cmd_data(args: argparse.Namespace) -> int:
    import os

    from compare.suite.fetch import SOURCES, fetch, user_cache_dir

    if args.data_command == "fetch":
        source = SOURCES[args.name]
        env = os.environ.get(source.data_env)
        path = fetch(args.to or (Path(env) if env else user_cache_dir(source.name)), source=source)
        print(f"The {source.title} is in {path}; every file matches the manifest.")
        return 0
    if args.name is not None:
        return _data_info(args.name, args.data, optional=False)
    # Both sets: SigTuple is needed by every protocol; CellaVision, not yet fetched, is no failure.
    codes = [_data_info("sigtuple", args.data, optional=False), _data_info("cellavision", None, optional=True)]
    return max(codes)


def _cmd_score(args: argparse.Namespace) -> int:
    from compare.commands.score import score_folders

    per_image, summary = score_folders(args.folders, model_dir=args.model, out=args.out, resume=args.resume)
    print((args.out / "summary.md").read_text(encoding="utf-8"))
    print(f"Per-image scores are in {args.out / 'per_image.csv'}.")
    errors = args.out / "errors.csv"
    if errors.exists():
        print(f"Some images could not be scored; see {errors}. The others are in the tables.", file=sys.stderr)
        return 1
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from compare.commands.predict import main as predict_main

    return predict_main(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m compare`` and ``wbc-compare``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return _cmd_list()
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "data":
            return _cmd_data(args)
        if args.command == "score":
            return _cmd_score(args)
        if args.command == "fit":
            from compare.commands.fit import main as fit_main

            return fit_main(args)
        return _cmd_predict(args)
    except KeyboardInterrupt:
        if args.command == "fit":
            print("Interrupted; no model was written (a model already at --out is unchanged).", file=sys.stderr)
            return 130
        print("Interrupted; finished results are kept. Continue with the same command plus --resume.", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
