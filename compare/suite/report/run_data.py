"""One finished run folder read back: its tables, configuration, environment and histories."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["RunData", "load_run", "BENCHMARK_FILE"]

#: Where the report looks for pytest-benchmark's JSON, relative to the run folder.
BENCHMARK_FILE = Path("benchmarks") / "pytest-benchmark.json"

@dataclass
class RunData:
    """Everything a report needs, read from one run folder."""

    root: Path
    per_image: pd.DataFrame
    summary: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    errors: pd.DataFrame = field(default_factory=pd.DataFrame)
    histories: dict[str, list] = field(default_factory=dict)
    benchmarks: dict[str, Any] | None = None


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"fold": str, "image": str, "segmenter": str})
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder's tables and JSON files.

    Parameters
    ----------
    run_dir : str or Path
        A folder written by ``python -m compare run``.

    Returns
    -------
    RunData

    Raises
    ------
    FileNotFoundError
        When the folder or its ``per_image.csv`` / ``summary.csv`` is missing.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run folder; pass a folder written by 'python -m compare run'.")
    for name in ("per_image.csv", "summary.csv"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name} is missing; the run did not finish. "
                                    "Finish it with the same 'run' command plus --resume.")
    from compare.suite.summary import BOUNDARY_COLUMNS, PER_IMAGE_COLUMNS, SUMMARY_COLUMNS

    per_image = _read_csv(root / "per_image.csv")
    summary = _read_csv(root / "summary.csv")
    # Runs written before a column was added still make a report: the missing
    # column reads as "not measured".
    text = ("segmenter", "protocol", "shift", "source")
    for frame, columns in ((per_image, (*PER_IMAGE_COLUMNS, *BOUNDARY_COLUMNS, "shift", "source")),
                           (summary, SUMMARY_COLUMNS)):
        for column in columns:
            if column not in frame:
                frame[column] = pd.Series("" if column in text else np.nan, index=frame.index,
                                          dtype=object if column in text else float)
    summary["shift"] = summary["shift"].astype(object).fillna("").astype(str)
    return RunData(root=root, per_image=per_image, summary=summary,
                   config=_read_json(root / "config.json", {}), env=_read_json(root / "env.json", {}),
                   errors=_read_csv(root / "errors.csv"), histories=_read_json(root / "histories.json", {}),
                   benchmarks=_read_json(root / BENCHMARK_FILE, None))
