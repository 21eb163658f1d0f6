"""``compare predict`` scales linearly in pixels with bounded memory (slow: minutes).

Runs ``benchmarks/predict_scaling.py`` at 1 and 16 Mpx (64 Mpx is in the
committed table, ``results/benchmarks/predict_scaling.md``).
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "predict_scaling.py"


@pytest.mark.slow
def test_predict_time_linear_and_memory_bounded(tmp_path):
    spec = importlib.util.spec_from_file_location("predict_scaling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--sizes", "1,16", "--out", str(tmp_path)]) == 0
    with (tmp_path / "predict_scaling.csv").open() as f:
        rows = list(csv.DictReader(f))
    small, big = (float(r["s_per_mpx"]) for r in rows)
    assert big < 2.5 * small  # linear, with room for timing noise when the cores are busy
    assert all(float(r["peak_mb"]) < 2048 for r in rows)
