from __future__ import annotations

from pathlib import Path

import pytest

from tests.synthetic import smear, write_sigtuple


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


@pytest.fixture(scope="session")
def threshold_model_dir(tmp_path_factory) -> Path:
    """A saved threshold model fitted on one synthetic smear with two WBCs (no nucleus required)."""
    from compare.pipeline.model import WBCModel

    image, mask = smear((120, 160), [(50, 50), (70, 115)], radius=18, seed=3, n_red=8)
    folder = tmp_path_factory.mktemp("model") / "threshold"
    WBCModel("threshold", require_nucleus=False).fit([image], [mask]).save(folder)
    return folder
