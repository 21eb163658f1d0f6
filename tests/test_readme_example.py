"""The README: its five-line Python example (``docs/python_example.py``) runs as it is, and its links resolve."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


README = ROOT / "README.md"


def test_readme_shows_the_example_as_it_is():
    text = README.read_text()
    assert "```python\n" + EXAMPLE.read_text() + "```" in text


def test_readme_is_short_and_starts_with_a_command():
    text = README.read_text()
    assert len(text) <= 10_000
    assert text.index("```bash") < 2_000
    # The two setup commands: the whole comparison, and the tests CI runs (.ci/run).
    assert "pip install -e . && python -m compare run --all\n" in text
    assert 'pip install -e ".[test]" && python -m pytest -q\n' in text


@pytest.mark.parametrize("page", ["README.md", *sorted(p.relative_to(ROOT).as_posix()
                                                      for p in (ROOT / "docs").glob("*.md"))])
def test_every_link_of_the_readme_and_the_docs_resolves(page):
    from compare.suite.report.html import broken_links

    assert broken_links(ROOT / page) == []


def test_code_cites_docs_pages_and_sections_that_exist():
    """A ``docs/NAME.md`` (optionally ``, "Section"``) named in the code is a page with a heading of that name."""
    import re

    cited = []
    for package in ("compare", "baselines", "unet", "stain", "tiling", "benchmarks", "experiments", "scripts"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = re.sub(r"\s*\n\s*(#:?\s*)?", " ", path.read_text())  # citations wrap across comment lines
            cited += [(path.name, *m) for m in re.findall(r'(docs/\w+\.md)`*(?:, "([^"]+)")?', text)]
    assert cited
    for where, page, section in cited:
        assert (ROOT / page).is_file(), f"{where} cites {page}"
        if section:
            headings = [h.replace("`", "") for h in re.findall(r"^#+ (.+)$", (ROOT / page).read_text(), re.MULTILINE)]
            assert any(h.startswith(section) for h in headings), f"{where} cites {page}, {section!r}"
