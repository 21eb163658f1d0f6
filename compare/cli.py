"""Command line: ``python -m compare {run,list,report,predict}``.

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

    run = sub.add_parser("run", help="fit and evaluate segmenters through the cv, large and test protocols",
                         description="Fit and evaluate segmenters; writes per_image.csv, summary.csv, summary.md, "
                                     "config.json, splits.json, env.json, models/, predictions/ and a report.")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every registered segmenter (slow ones only with --include-slow)")
    which.add_argument("--segmenters", type=_csv_list, metavar="A,B", help="comma-separated registry names (see 'list')")
    run.add_argument("--include-slow", action="store_true", help="with --all, also run segmenters marked slow")
    run.add_argument("--protocols", type=_csv_list, default=["cv", "large", "test"], metavar="P,Q",
                     help="any of cv,large,test (default: all three)")
    run.add_argument("--folds", type=int, default=5, help="grouped folds for cv (default 5)")
    run.add_argument("--seed", type=int, default=0, help="seed of splits, sampling and training (default 0)")
    run.add_argument("--data", type=Path, default=None, help="data folder in the SigTuple layout (default: the shipped copy)")
    run.add_argument("--out", type=Path, default=Path("results"), help="run folder (default: results)")
    run.add_argument("--resume", action="store_true", help="reuse finished (segmenter, protocol, fold) results in --out")
    run.add_argument("--no-report", action="store_true", help="skip report.md / report.html")

    sub.add_parser("list", help="show the registered segmenters")

    report = sub.add_parser("report", help="rebuild report.md and report.html from a finished run folder")
    report.add_argument("run_dir", type=Path, help="a folder written by 'run'")

    predict = sub.add_parser("predict", help="locate, delineate and count WBCs in your own images")
    predict.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders of images")
    predict.add_argument("--model", type=Path, default=None,
                         help="a model folder saved by 'run' (default: results/models/unet, the committed U-Net)")
    predict.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default: predictions)")
    predict.add_argument("--wbc-diameter", type=float, default=None, metavar="PX",
                         help="typical WBC diameter in these images, in pixels; rescales to the training scale")
    predict.add_argument("--auto-scale", action="store_true",
                         help="estimate the scale from the image itself (red-cell size)")
    predict.add_argument("--scheduler", default=None, metavar="ADDRESS",
                         help="a Dask distributed scheduler to spread images over (default: run locally)")
    return parser


def _cmd_list() -> int:
    from compare.segmenters import REGISTRY

    width = max(len(n) for n in REGISTRY)
    for name, spec in REGISTRY.items():
        flag = " (slow: only with --include-slow)" if spec.slow else ""
        print(f"{name:<{width}}  {spec.description}{flag}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from compare.runner import RunConfig, run
    from compare.segmenters import default_names
    from compare.summary import READABLE, markdown_table

    names = default_names(args.include_slow) if args.all else args.segmenters
    config = RunConfig(segmenters=names, protocols=args.protocols, folds=args.folds, seed=args.seed,
                       data=str(args.data) if args.data else None, out=str(args.out), resume=args.resume)
    summary = run(config)
    if not args.no_report:
        try:
            from compare.report import build_report
        except ImportError:
            build_report = None
        if build_report is not None:
            try:
                build_report(args.out)
            except Exception as exc:  # the results are written; a report problem must not hide them
                print(f"warning: the report failed ({type(exc).__name__}: {exc}); the results are complete. "
                      f"Rebuild it with: python -m compare report {args.out}", file=sys.stderr)
    print(markdown_table(summary, READABLE))
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
    from compare.report import build_report

    path = build_report(args.run_dir)
    print(f"Wrote {path}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from compare.predict import main as predict_main

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
        return _cmd_predict(args)
    except KeyboardInterrupt:
        print("Interrupted; finished results are kept. Continue with the same command plus --resume.", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
