"""The download path against a local HTTP server on 127.0.0.1 serving a tiny made-up data set."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

import compare.suite.fetch as fetch_module
from compare.commands.cli import main
from compare.io.images import DataError
from compare.suite.data import load_patches, load_test, resolve_data_dir
from compare.suite.fetch import fetch, read_manifest, verify
from tests.synthetic import write_sigtuple

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[dict[str, bytes], Path]:
    """``(files, manifest)``: a tiny SigTuple-layout set as ``{relative path: bytes}`` and its SHA-256 list."""
    root = write_sigtuple(tmp_path_factory.mktemp("source"), n_patches=4, size=48)
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    # A name that needs URL-quoting, as real data sets have.
    assert any(" " in name for name in files)
    manifest = tmp_path_factory.mktemp("manifest") / "tiny.sha256"
    manifest.write_text("".join(f"{hashlib.sha256(b).hexdigest()}  ./{name}\n" for name, b in files.items()))
    return files, manifest


class _Server:
    """A threaded HTTP server with per-path faults: ``corrupt`` always, ``cut`` on the first request only."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.corrupt: set[str] = set()
        self.cut: set[str] = set()
        self.requests: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                name = urllib.parse.unquote(self.path.lstrip("/"))
                server.requests[name] = server.requests.get(name, 0) + 1
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                if name in server.corrupt:
                    body = body[:-1] + bytes([body[-1] ^ 0xFF])
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in server.cut and server.requests[name] == 1:
                    # Half the promised bytes, then the connection closes.
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(dataset):
    srv = _Server(dataset[0])
    yield srv
    srv.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _only_verified(folder: Path, manifest: Path) -> bool:
    """True when every file under ``folder`` is listed and matches its hash."""
    entries = read_manifest(manifest)
    for path in folder.rglob("*"):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            if rel not in entries or hashlib.sha256(path.read_bytes()).hexdigest() != entries[rel]:
                return False
    return True


def test_good_set_installs_verifies_and_loads(dataset, server, tmp_path):
    files, manifest = dataset
    target = tmp_path / "cache" / "sigtuple"
    assert fetch(target, base_url=server.url, manifest=manifest, progress=False) == target
    assert verify(target, manifest).ok and verify(target, manifest).present == len(files)
    assert (target / "MANIFEST.sha256").read_bytes() == manifest.read_bytes()
    assert not target.with_name("sigtuple.partial").exists()
    assert len(load_patches(target)) == 4 and len(load_test(target)) == 2
    # A complete folder is returned as it is, without a request.
    before = sum(server.requests.values())
    fetch(target, base_url=server.url, manifest=manifest, progress=False)
    assert sum(server.requests.values()) == before == len(files)


def test_a_corrupt_file_is_refused_and_nothing_unverified_stays(dataset, server, tmp_path):
    files, manifest = dataset
    bad = "Train_Data/train-2-mask.png"
    assert bad in files
    server.corrupt.add(bad)
    target = tmp_path / "sigtuple"
    with pytest.raises(DataError, match="SHA-256") as info:
        fetch(target, base_url=server.url, manifest=manifest, progress=False, retries=2, backoff_s=0)
    assert "train-2-mask.png" in str(info.value)
    assert server.requests[bad] == 2  # retried, boundedly
    assert not target.exists()
    staging = tmp_path / "sigtuple.partial"
    assert _only_verified(staging, manifest) and not (staging / bad).exists()
    assert not list(staging.rglob("*.download"))


def test_an_interrupted_transfer_is_recovered_on_the_next_call(dataset, server, tmp_path):
    files, manifest = dataset
    cut = "Train_Data/train-1.jpg"
    assert cut in files
    server.cut.add(cut)
    target = tmp_path / "sigtuple"
    with pytest.raises(DataError, match="run the command again"):
        fetch(target, base_url=server.url, manifest=manifest, progress=False, retries=1)
    assert not target.exists() and _only_verified(tmp_path / "sigtuple.partial", manifest)
    verified_before = {n for n in files if (tmp_path / "sigtuple.partial" / n).is_file()}
    assert verified_before and cut not in verified_before

    fetch(target, base_url=server.url, manifest=manifest, progress=False, retries=1)
    assert verify(target, manifest).ok and not (tmp_path / "sigtuple.partial").exists()
    # Files verified by the first call were kept, not fetched again.
    assert all(server.requests[n] == 1 for n in verified_before) and server.requests[cut] == 2


def test_leftovers_of_a_killed_download_do_not_reach_the_target(dataset, server, tmp_path):
    files, manifest = dataset
    staging = tmp_path / "sigtuple.partial" / "Train_Data"
    staging.mkdir(parents=True)
    (staging / "train-0.jpg.download").write_bytes(b"half")
    (staging / "train-1.jpg").write_bytes(files["Train_Data/train-1.jpg"][:10])
    target = fetch(tmp_path / "sigtuple", base_url=server.url, manifest=manifest, progress=False)
    assert verify(target, manifest).ok
    extra = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()} - set(files)
    assert extra == {"MANIFEST.sha256"}


def test_a_cut_transfer_is_retried_within_one_call(dataset, server, tmp_path):
    files, manifest = dataset
    server.cut.add("Test_Data/slide 1.jpg")
    target = fetch(tmp_path / "d", base_url=server.url, manifest=manifest, progress=False, retries=2, backoff_s=0)
    assert verify(target, manifest).ok


def test_offline_names_the_folder_and_wbc_data(dataset, tmp_path):
    _, manifest = dataset
    target = tmp_path / "sigtuple"
    with pytest.raises(DataError) as info:
        fetch(target, base_url=f"http://127.0.0.1:{_closed_port()}/", manifest=manifest, progress=False)
    message = str(info.value)
    assert str(target) in message and "WBC_DATA" in message and message.count(". ") == 0
    assert not target.exists() and not (tmp_path / "sigtuple.partial").exists()


def test_a_target_with_other_files_is_refused(dataset, server, tmp_path):
    _, manifest = dataset
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="do not match the manifest"):
        fetch(target, base_url=server.url, manifest=manifest, progress=False)
    assert (target / "notes.txt").read_text() == "mine" and not server.requests


def test_resolver_order(tmp_path, monkeypatch):
    shared, env, cache = tmp_path / "shared", tmp_path / "env", tmp_path / "xdg"
    (shared / "Train_Data").mkdir(parents=True)
    (env / "Train_Data").mkdir(parents=True)
    monkeypatch.setattr("compare.suite.data.shared_data_dir", lambda: shared)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("WBC_DATA", str(env))
    assert resolve_data_dir(tmp_path / "given") == type(resolve_data_dir(env))(tmp_path / "given", "--data")
    assert (resolve_data_dir().path, resolve_data_dir().source) == (env, "WBC_DATA")
    monkeypatch.delenv("WBC_DATA")
    assert (resolve_data_dir().path, resolve_data_dir().source) == (shared, "shared")
    (shared / "Train_Data").rmdir()
    got = resolve_data_dir(fetch=False)
    assert (got.path, got.source) == (cache / "wbc-compare" / "sigtuple", "cache") and not got.path.exists()


def test_first_use_downloads_into_the_cache(dataset, server, tmp_path, monkeypatch):
    _, manifest = dataset
    monkeypatch.setattr("compare.suite.data.shared_data_dir", lambda: tmp_path / "no-shared")
    monkeypatch.delenv("WBC_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("WBC_DATA_URL", server.url)
    monkeypatch.setattr(fetch_module, "MANIFEST", manifest)
    patches = load_patches()  # no folder given: the resolver finds nothing and fetches
    assert len(patches) == 4
    assert verify(tmp_path / "xdg" / "wbc-compare" / "sigtuple", manifest).ok


def test_run_offline_with_an_empty_wbc_data_says_what_to_do_and_exits_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "WBC_DATA": str(empty), "WBC_DATA_URL": f"http://127.0.0.1:{_closed_port()}/",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "compare", "run", "--all", "--out", str(tmp_path / "out")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(empty) in lines[0] and "WBC_DATA" in lines[0], done.stderr
    assert done.stdout == "" and not any(empty.iterdir()) and not (tmp_path / "empty.partial").exists()
    assert not (tmp_path / "out").exists()


def test_data_info_reports_source_count_and_verification(shipped_dir, capsys):
    assert main(["data", "info", "--data", str(shipped_dir)]) == 0
    out = capsys.readouterr().out
    assert str(shipped_dir) in out and "399 of the 399" in out and "verified: yes" in out


def test_data_info_on_a_folder_that_does_not_verify(tmp_path, capsys):
    (tmp_path / "Train_Data").mkdir()
    assert main(["data", "info", "--data", str(tmp_path)]) == 1
    assert "verified: no (399 missing" in capsys.readouterr().out
    assert main(["data", "info", "--data", str(tmp_path / "nothing")]) == 2


# -- the second set: CellaVision ------------------------------------------------------

@pytest.fixture(scope="module")
def cellavision_set(tmp_path_factory) -> tuple[dict[str, bytes], Path]:
    """``(files, manifest)``: a tiny CellaVision-layout set, listed as the published manifest is (no ``./``)."""
    from tests.test_cellavision import write_cellavision

    root = write_cellavision(tmp_path_factory.mktemp("cv-source"), n=2)
    (root / "LICENSE").write_text("GPL-3.0\n")
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    manifest = tmp_path_factory.mktemp("cv-manifest") / "cellavision.sha256"
    manifest.write_text("".join(f"{hashlib.sha256(b).hexdigest()}  {name}\n" for name, b in files.items()))
    return files, manifest


def test_the_cellavision_source_is_pinned_and_its_manifest_matches_the_shared_copy():
    from compare.suite.fetch import SOURCES

    source = SOURCES["cellavision"]
    assert source.repo == "zxaoyou/segmentation_WBC" and len(source.commit) == 40
    url = source.base_url + urllib.parse.quote("Dataset 2/001.bmp")
    assert url == ("https://raw.githubusercontent.com/zxaoyou/segmentation_WBC/"
                   "fa9c01622f52bccb9aeb8a6f2628f564e377767d/Dataset%202/001.bmp")
    entries = read_manifest(source.manifest_path())
    assert len(entries) == 202 and "Dataset 2/100.png" in entries and "Class Labels of Dataset 2.csv" in entries
    shared = ROOT.parent / "shared" / "data" / "cellavision" / "MANIFEST.sha256"
    if shared.is_file():
        assert read_manifest(shared) == entries


def test_cellavision_downloads_verifies_and_loads_with_nuclei(cellavision_set, tmp_path):
    from compare.suite.data import load_domain

    files, manifest = cellavision_set
    srv = _Server(files)
    try:
        srv.cut.add("Dataset 2/002.png")
        target = fetch(tmp_path / "cellavision", source="cellavision", base_url=srv.url, manifest=manifest,
                       progress=False, retries=2, backoff_s=0)
    finally:
        srv.close()
    assert verify(target, manifest).ok and srv.requests["Dataset 2/002.png"] == 2
    samples = load_domain(target)
    assert len(samples) == 2 and all(s.nucleus is not None and s.nucleus.any() for s in samples)


def test_cellavision_offline_names_its_folder_and_variable(cellavision_set, tmp_path):
    _, manifest = cellavision_set
    with pytest.raises(DataError) as info:
        fetch(tmp_path / "cv", source="cellavision", base_url=f"http://127.0.0.1:{_closed_port()}/",
              manifest=manifest, progress=False)
    message = str(info.value)
    assert "CellaVision" in message and "WBC_CELLAVISION" in message and str(tmp_path / "cv") in message


def test_data_fetch_cellavision_and_first_use_through_the_resolver(cellavision_set, tmp_path, monkeypatch, capsys):
    from compare.suite import data
    from compare.suite.data import resolve_dataset

    files, manifest = cellavision_set
    srv = _Server(files)
    try:
        monkeypatch.setattr(fetch_module, "CELLAVISION_MANIFEST", manifest)
        monkeypatch.setenv("WBC_CELLAVISION_URL", srv.url)
        monkeypatch.delenv("WBC_CELLAVISION", raising=False)
        assert main(["data", "fetch", "cellavision", "--to", str(tmp_path / "given")]) == 0
        assert "CellaVision" in capsys.readouterr().out and verify(tmp_path / "given", manifest).ok
        # No copy beside the project: the first use downloads into the user cache.
        monkeypatch.setattr(data, "project_root", lambda: tmp_path / "nowhere" / "main")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        got = resolve_dataset("cellavision", progress=False)
        assert (got.path, got.source) == (tmp_path / "xdg" / "wbc-compare" / "cellavision", "cache")
        assert verify(got.path, manifest).ok
        assert main(["data", "info", "cellavision"]) == 0
        assert "verified: yes" in capsys.readouterr().out
    finally:
        srv.close()


def test_data_info_names_both_sets(shipped_dir, capsys):
    assert main(["data", "info", "--data", str(shipped_dir)]) == 0
    out = capsys.readouterr().out
    assert "SigTuple data (sigtuple)" in out and "CellaVision data (cellavision)" in out
    assert main(["data", "info", "cellavision", "--data", str(shipped_dir / "nothing")]) == 2
