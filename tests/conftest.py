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
    from compare.data import default_data_dir

    return default_data_dir()
