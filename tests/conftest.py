from __future__ import annotations

from pathlib import Path

import pytest

from tests.synthetic import write_sigtuple


@pytest.fixture(scope="session")
def sigtuple_dir(tmp_path_factory) -> Path:
    """A tiny SigTuple-layout data folder (12 patches, 1 large image with 3 WBCs, 2 test images)."""
    return write_sigtuple(tmp_path_factory.mktemp("sigtuple"))


@pytest.fixture(scope="session")
def shipped_dir() -> Path:
    """The real SigTuple data, found by :func:`compare.suite.data.resolve_data_dir` (never downloaded here)."""
    from compare.suite.data import resolve_data_dir

    resolved = resolve_data_dir(fetch=False)
    if not (resolved.path / "Train_Data").is_dir():
        pytest.skip(f"the SigTuple data is not at {resolved.path}; run: python -m compare data fetch")
    return resolved.path
