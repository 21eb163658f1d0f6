"""The five-line Python example of the README (``docs/python_example.py``) runs as it is."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "python_example.py"


def test_example_is_five_lines_of_public_api():
    lines = [line for line in EXAMPLE.read_text().splitlines() if line.strip()]
    assert len(lines) == 5
    tree = ast.parse(EXAMPLE.read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert [alias.name for node in imports for alias in node.names] == ["compare"]
    import compare

    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "compare"}
    assert used and used <= set(compare.__all__)


def test_example_runs(shipped_dir):
    """Run on the real patches, found by the data resolver as a user's run would find them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(EXAMPLE)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    count, factor, columns = done.stdout.strip().splitlines()[-1].split(" ", 2)
    assert int(count) == 1  # every SigTuple patch shows one WBC
    assert float(factor) == 1.0  # a training patch is at the training scale
    assert ast.literal_eval(columns) == ["id", "centroid_x", "centroid_y", "bbox_x0", "bbox_y0"]
