"""The napari plugin (issue #28): its viewer tests, run in a Python process of their own.

TensorFlow and Qt's OpenGL (Mesa) crash when both are loaded into one process,
and the other test files load TensorFlow.  So this process never imports
napari or Qt (``addopts`` in pyproject.toml disable napari's and pytest-qt's
pytest plugins, which would import them at pytest's start), and the viewer
tests in ``tests/gui/napari_cases.py`` (a name ``python -m pytest`` does not
collect) run in a fresh Python with :data:`CASES_COMMAND`.  When that run
skips its cases (no napari, no display, no OpenGL), the wrapper here is
skipped with the same reason.  The plugin's parts that need no viewer are
tested here directly.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = "tests/gui/napari_cases.py"
# Run from the project root, so pyproject.toml's pytest settings apply; napari's and pytest-qt's pytest
# plugins, off in this process, are loaded by name.
CASES_COMMAND = (sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                 "-p", "pytestqt.plugin", "-p", "napari.utils._testsupport", CASES)
GUI_MODULES = ("napari", "PyQt6", "PyQt5", "PySide6", "PySide2", "qtpy", "pytestqt", "vispy")


def test_this_process_never_imports_napari_or_qt():
    """The guard against the crash: nothing collected or run so far in this process imported napari or Qt."""
    loaded = [name for name in GUI_MODULES if name in sys.modules]
    assert not loaded, (f"{', '.join(loaded)} imported in the main test process, where TensorFlow runs too; "
                        f"import napari and Qt only in {CASES}")


def test_manifest_declares_the_widget():
    pytest.importorskip("npe2", reason="napari plugin tests skipped: npe2 is not installed (pip install -e '.[gui]')")
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(ROOT / "wbc_napari" / "napari.yaml")
    assert manifest.name == "wbc-compare"
    assert [w.display_name for w in manifest.contributions.widgets] == ["Find WBCs"]


def test_training_mask_keeps_touching_wbcs_apart():
    from scipy import ndimage as ndi

    from wbc_napari.core import training_mask

    labels = np.zeros((20, 30), np.int32)
    labels[5:15, 3:15], labels[5:15, 15:27] = 1, 2  # two touching squares
    mask = training_mask(labels)
    assert ndi.label(mask > 0)[1] == 2 and ndi.label(mask > 0, structure=np.ones((3, 3)))[1] == 2
    assert (mask > 0).sum() == (labels > 0).sum() - 10  # a one-pixel seam only


def _outcomes(report: Path) -> dict[str, list[str]]:
    """Test ids of the cases run, by outcome, from the run's JUnit XML; skipped ones as their reasons."""
    found = {"passed": [], "failed": [], "skipped": []}
    for case in ET.parse(report).getroot().iter("testcase"):
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            found["failed"].append(case.get("name", "?"))
        elif skipped is not None:
            reason = skipped.get("message", "skipped, no reason given")
            if reason == "collection skipped":  # a skip at module level: (file, line, reason) in the text
                reason = ast.literal_eval(skipped.text or "('', 0, '')")[2].removeprefix("Skipped: ")
            found["skipped"].append(reason)
        else:
            found["passed"].append(case.get("name", "?"))
    return found


def test_plugin_in_a_real_viewer(tmp_path):
    """Every case of ``tests/gui/napari_cases.py``, in a fresh Python; its output is shown when it fails."""
    for module, extra in (("napari", "gui"), ("npe2", "gui"), ("pytestqt", "test")):
        if importlib.util.find_spec(module) is None:  # finds the package without importing it
            pytest.skip(f"napari plugin tests skipped: {module} is not installed (pip install -e '.[{extra}]')")
    report = tmp_path / "napari_cases.xml"
    command = [*CASES_COMMAND, f"--junitxml={report}"]
    try:
        run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"{CASES} did not finish within {exc.timeout:.0f} s; its output:\n{partial[-12000:]}",
                    pytrace=False)
    output = (run.stdout + run.stderr)[-12000:]
    # Exit status 5: no case ran, as when the module itself is skipped; the report says why.
    if run.returncode not in (0, 5) or not report.is_file():
        pytest.fail(f"{CASES} failed (exit status {run.returncode}; run it alone with: "
                    f"python {' '.join(CASES_COMMAND[1:])}); its output:\n{output}", pytrace=False)
    outcomes = _outcomes(report)
    if not any(outcomes.values()):
        pytest.fail(f"{CASES} ran no test; its output:\n{output}", pytrace=False)
    if outcomes["skipped"]:
        # Cases skip only for what the machine lacks (a display, OpenGL, napari): say which, never pass.
        reasons = "; ".join(sorted(set(outcomes["skipped"])))
        pytest.skip(f"{reasons} ({len(outcomes['skipped'])} of {sum(map(len, outcomes.values()))} cases in {CASES})")
