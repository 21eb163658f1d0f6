"""The repository carries no file of the SigTuple data set (it is not ours and states no licence)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from compare.suite.fetch import read_manifest

ROOT = Path(__file__).resolve().parents[1]


def _tracked_files() -> list[str]:
    """Paths ``git ls-files`` lists, relative to the project root; skips outside a git checkout."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True, text=True)
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [p for p in listed.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def test_no_file_of_the_data_set_is_tracked():
    tracked = _tracked_files()
    assert tracked, "git ls-files listed nothing"
    manifest = read_manifest()
    # By name: Train_Data/NAME or Test_Data/NAME anywhere in the tree.
    by_name = [p for p in tracked if any(p == rel or p.endswith("/" + rel) for rel in manifest)]
    assert not by_name, f"files of the SigTuple data are tracked: {by_name[:5]}; git rm --cached them."
    # By content: a copy under another name counts too.
    hashes = set(manifest.values())
    by_content = []
    for rel in tracked:
        path = ROOT / rel
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 50_000_000:
            if hashlib.sha256(path.read_bytes()).hexdigest() in hashes:
                by_content.append(rel)
    assert not by_content, f"copies of SigTuple files are tracked: {by_content[:5]}; git rm --cached them."


def test_the_check_would_see_a_tracked_data_file():
    """The name rule matches the layout git lists the data in (guards against a vacuous pass)."""
    manifest = read_manifest()
    assert "Train_Data/train-0.jpg" in manifest and "Test_Data/017532875DDF.jpg" in manifest
    assert any("data/sigtuple/Train_Data/train-0.jpg".endswith("/" + rel) for rel in manifest)
