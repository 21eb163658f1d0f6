"""The commands beside each report section: how to reproduce the run, the report and the benchmarks."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from compare.suite.report.run_data import BENCHMARK_FILE

__all__ = ["run_command", "report_command", "benchmark_command"]


def run_command(config: dict[str, Any], run_dir: Path) -> str:
    """The ``python -m compare run`` command line that reproduces a run's config."""
    from compare.pipeline.segmenters import default_names

    names = list(config.get("segmenters") or [])
    if names == default_names(False):
        which = ["--all"]
    elif names == default_names(True):
        which = ["--all", "--include-slow"]
    else:
        which = ["--segmenters", ",".join(names) or "NAME"]
    args = ["python", "-m", "compare", "run", *which]
    from compare.suite.runner import RunConfig

    default = RunConfig(segmenters=[]).protocols
    protocols = list(config.get("protocols") or default)
    if protocols != list(default):
        args += ["--protocols", ",".join(protocols)]
    if config.get("folds", 5) != 5:
        args += ["--folds", str(config["folds"])]
    if config.get("seed", 0) != 0:
        args += ["--seed", str(config["seed"])]
    if config.get("data"):
        args += ["--data", str(config["data"])]
    args += ["--out", str(config.get("out") or run_dir)]
    return shlex.join(args)


def report_command(run_dir: Path) -> str:
    """The command that rebuilds this report from the run folder."""
    return shlex.join(["python", "-m", "compare", "report", str(run_dir)])


def benchmark_command(run_dir: Path) -> str:
    """The pytest-benchmark command whose JSON the report summarises."""
    target = (Path(run_dir) / BENCHMARK_FILE).as_posix()
    return ("python -m pytest tests/benchmarks --benchmark-enable --benchmark-only "
            f"--benchmark-json {shlex.quote(target)} -m 'slow or not slow'")
