"""Download a data set from its pinned public source and verify every file.

The project carries no copy of its data sets (they are not ours; see
``docs/data.md``).  :data:`SOURCES` names each one: the GitHub repository
and commit it is pinned at, the folder its raw files are served from, the
SHA-256 manifest kept in the package (``compare/suite/NAME.sha256``) and
the environment variables that point at a copy or a mirror.  :func:`fetch`
downloads the raw files listed in a set's manifest and checks each one.

- ``sigtuple``: folder ``SigTuple_data/`` of ``bsrinivas8687/WBC_Segmentaion``
  (the project's training set);
- ``cellavision``: ``Dataset 2/`` (with its class labels and licence) of
  ``zxaoyou/segmentation_WBC`` (100 CellaVision crops, a second lab).

The download is atomic: files go into a staging folder ``<target>.partial``
beside the target, each is verified as soon as it arrives, and the staging
folder is renamed to the target only when every file verifies.  So a target
folder that exists is complete, an interrupted or corrupt download never looks
complete, and the next call keeps the files already verified and fetches the
rest.  Without network access a :class:`~compare.io.images.DataError` says in one
sentence where to put a copy instead.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from compare.io.images import DataError

__all__ = [
    "BASE_URL",
    "CELLAVISION_MANIFEST",
    "DATA_ENV",
    "MANIFEST",
    "SOURCES",
    "SOURCE_COMMIT",
    "SOURCE_FOLDER",
    "SOURCE_REPO",
    "URL_ENV",
    "Source",
    "Verification",
    "fetch",
    "read_manifest",
    "sha256_file",
    "source_of",
    "user_cache_dir",
    "verify",
]


@dataclass(frozen=True)
class Source:
    """Where one data set comes from and how a copy of it is recognised.

    Attributes
    ----------
    name : str
        Key in :data:`SOURCES`, the ``data fetch NAME`` argument and the
        folder name under ``../shared/data`` and the user cache.
    title : str
        The set in words, for messages.
    repo : str
        GitHub ``owner/name`` the raw files are served from.
    commit : str
        The pinned commit (40 hex digits).
    folder : str
        Folder of the repository the manifest's paths are relative to
        (``""``: the repository root).
    manifest : str
        Name of the module attribute holding the manifest's path (read at
        call time, so tests can point it at a tiny manifest).
    data_env : str
        Environment variable naming a folder that holds (or receives) the set.
    url_env : str
        Environment variable that replaces :attr:`base_url` (a mirror, or a
        local server in tests).
    marker : str
        A folder every copy holds, by which the shared copy is recognised.
    """

    name: str
    title: str
    repo: str
    commit: str
    folder: str
    manifest: str
    data_env: str
    url_env: str
    marker: str

    @property
    def base_url(self) -> str:
        """Raw-file URL of the pinned folder; a manifest path is appended (URL-quoted)."""
        folder = f"{self.folder}/" if self.folder else ""
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{folder}"

    def manifest_path(self) -> Path:
        """The committed manifest of this set."""
        return Path(globals()[self.manifest])


#: The committed list of ``SHA-256  ./relative/path`` lines of the SigTuple set.
MANIFEST = Path(__file__).with_name("sigtuple.sha256")

#: The committed manifest of the CellaVision set (paths from the repository root).
CELLAVISION_MANIFEST = Path(__file__).with_name("cellavision.sha256")

#: Every data set the project can download, by name.
SOURCES: dict[str, Source] = {
    "sigtuple": Source("sigtuple", "SigTuple data", "bsrinivas8687/WBC_Segmentaion",
                       "79829dcf46213b6ebc49c3e0ab4b52dcdffc15f2", "SigTuple_data", "MANIFEST",
                       "WBC_DATA", "WBC_DATA_URL", "Train_Data"),
    "cellavision": Source("cellavision", "CellaVision data", "zxaoyou/segmentation_WBC",
                          "fa9c01622f52bccb9aeb8a6f2628f564e377767d", "", "CELLAVISION_MANIFEST",
                          "WBC_CELLAVISION", "WBC_CELLAVISION_URL", "Dataset 2"),
}

#: The SigTuple source, as single names (the default of every function here).
SOURCE_REPO = SOURCES["sigtuple"].repo
SOURCE_COMMIT = SOURCES["sigtuple"].commit
SOURCE_FOLDER = SOURCES["sigtuple"].folder
BASE_URL = SOURCES["sigtuple"].base_url

#: Environment variable that replaces the SigTuple :data:`BASE_URL`.
URL_ENV = SOURCES["sigtuple"].url_env

#: Environment variable naming the SigTuple data folder (second in the search order).
DATA_ENV = SOURCES["sigtuple"].data_env

#: Name the manifest is copied to inside an installed data folder, so
#: ``sha256sum -c MANIFEST.sha256`` works there.
MANIFEST_NAME = "MANIFEST.sha256"

#: Seconds a connection or a read may stall before the attempt counts as failed.
TIMEOUT_S = 30.0

#: Attempts per file for transient failures (timeouts, cut transfers, server
#: errors, hash mismatches).  A refused connection or an unknown host is not
#: retried: that is being offline, and waiting would not help.
RETRIES = 3


def source_of(name: str | Source) -> Source:
    """The :class:`Source` named ``name`` (a Source is returned as it is).

    Raises
    ------
    ValueError
        For a name not in :data:`SOURCES`.
    """
    if isinstance(name, Source):
        return name
    if name not in SOURCES:
        raise ValueError(f"Unknown data set {name!r}; choose one of {', '.join(SOURCES)}.")
    return SOURCES[name]


def user_cache_dir(name: str = "sigtuple") -> Path:
    """``$XDG_CACHE_HOME/wbc-compare/NAME``, by default ``~/.cache/wbc-compare/NAME``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "wbc-compare" / source_of(name).name

_CHUNK = 1 << 16


@dataclass
class Verification:
    """How a folder compares with a manifest.

    Attributes
    ----------
    folder : Path
    expected : int
        Files listed in the manifest.
    missing : list of str
        Listed files that are absent.
    bad : list of str
        Listed files whose SHA-256 differs.
    """

    folder: Path
    expected: int
    missing: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every listed file is present with the listed hash."""
        return not self.missing and not self.bad

    @property
    def present(self) -> int:
        """Listed files found in the folder (whether or not they match)."""
        return self.expected - len(self.missing)


def read_manifest(path: str | Path | None = None) -> dict[str, str]:
    """Read a ``sha256sum``-style manifest.

    Parameters
    ----------
    path : str or Path, optional
        Default: the committed SigTuple manifest :data:`MANIFEST`.

    Returns
    -------
    dict of str to str
        Relative POSIX path (without ``./``) to lower-case hex SHA-256, in
        file order.

    Raises
    ------
    DataError
        A missing file, a malformed line, or a path that leaves the folder.
    """
    path = Path(path) if path is not None else MANIFEST
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: the manifest cannot be read ({exc}); reinstall the package.") from None
    entries: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        name = name.lstrip("*")
        rel = PurePosixPath(name.removeprefix("./"))
        if (not sep or len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest)
                or not rel.parts or rel.is_absolute() or ".." in rel.parts):
            raise DataError(f"{path}:{number}: not a 'SHA256  ./relative/path' line; fix or restore the manifest.")
        entries[rel.as_posix()] = digest.lower()
    if not entries:
        raise DataError(f"{path}: the manifest lists no files; restore it.")
    return entries


def sha256_file(path: str | Path) -> str:
    """Lower-case hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(folder: str | Path, manifest: str | Path | dict[str, str] | None = None) -> Verification:
    """Check every file of a manifest in a folder (files it does not list are ignored).

    Parameters
    ----------
    folder : str or Path
    manifest : str, Path or dict, optional
        A manifest file, its parsed entries, or None for :data:`MANIFEST`.

    Returns
    -------
    Verification
    """
    folder = Path(folder)
    entries = manifest if isinstance(manifest, dict) else read_manifest(manifest)
    result = Verification(folder, len(entries))
    for rel, digest in entries.items():
        path = folder / rel
        if not path.is_file():
            result.missing.append(rel)
        elif sha256_file(path) != digest:
            result.bad.append(rel)
    return result


def _offline_error(target: Path, url: str, reason: str, source: Source) -> DataError:
    return DataError(
        f"Could not download the {source.title} from {url} ({reason}); put a copy of it in {target} "
        f"or point {source.data_env} at a folder that holds one, then run the command again."
    )


class _Transient(Exception):
    """A failure worth another attempt."""


def _download(url: str, dest: Path, digest: str, timeout: float) -> None:
    """Fetch one URL into ``dest`` only if its bytes hash to ``digest``.

    The bytes go to ``dest`` + ``.download`` first, which is removed on any
    failure, so ``dest`` itself only ever holds a verified file.
    """
    tmp = dest.with_name(dest.name + ".download")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != digest:
            raise _Transient(f"its SHA-256 is {h.hexdigest()}, the manifest says {digest}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _fetch_one(url: str, dest: Path, digest: str, *, target: Path, base: str, source: Source, timeout: float,
               retries: int, backoff_s: float) -> None:
    last = ""
    for attempt in range(max(1, retries)):
        if attempt:
            time.sleep(backoff_s * attempt)
        try:
            _download(url, dest, digest, timeout)
            return
        except urllib.error.HTTPError as exc:
            if exc.code in (408, 425, 429) or exc.code >= 500:
                last = f"HTTP {exc.code} for {url}"
                continue
            raise _offline_error(target, base, f"HTTP {exc.code} {exc.reason} for {url}", source) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.timeout, TimeoutError, ConnectionResetError)):
                last = f"{reason or 'timed out'} for {url}"
                continue
            # Refused, unknown host, no route: offline or blocked; fail at once.
            raise _offline_error(target, base, str(reason), source) from None
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            last = f"the transfer of {url} broke off ({type(exc).__name__})"
        except _Transient as exc:
            last = f"{url}: {exc}"
    raise DataError(
        f"{last} after {max(1, retries)} attempt(s); nothing unverified was kept, so run the command again "
        f"to resume, or put a verified copy in {target} or point {source.data_env} at one."
    )


def _remove_empty_dirs(root: Path) -> None:
    """Remove ``root`` and folders under it that hold no files."""
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()


def fetch(to: str | Path | None = None, *, source: str | Source = "sigtuple", base_url: str | None = None,
          manifest: str | Path | None = None, progress: bool = True, timeout: float = TIMEOUT_S,
          retries: int = RETRIES, backoff_s: float = 1.0) -> Path:
    """Download a data set into a folder, verifying every file, atomically.

    Parameters
    ----------
    to : str or Path, optional
        Folder to install into; it must be missing, empty or already complete.
        Default: the set's user cache (:func:`user_cache_dir`).
    source : str or Source, keyword-only
        The data set, a name of :data:`SOURCES` (default ``"sigtuple"``).
    base_url : str, optional
        URL the manifest's relative paths are appended to.  Default: the
        set's URL variable (``WBC_DATA_URL`` for SigTuple) if set, else its
        :attr:`Source.base_url`.
    manifest : str or Path, optional
        The list of files and their SHA-256.  Default: the set's committed
        manifest (:data:`MANIFEST` for SigTuple).
    progress : bool
        Show a progress bar (files) on standard error.
    timeout : float
        Seconds a connection or read may stall.
    retries : int
        Attempts per file for transient failures.
    backoff_s : float
        Wait before the second attempt; grows linearly.

    Returns
    -------
    Path
        The target folder, complete and verified.

    Raises
    ------
    DataError
        Offline or blocked (one sentence naming the folder to put a copy in
        and the set's folder variable, ``WBC_DATA`` for SigTuple), a file that
        keeps failing its hash, or a target that already holds other files.
    """
    src = source_of(source)
    target = Path(to).expanduser() if to is not None else user_cache_dir(src.name)
    manifest_path = Path(manifest) if manifest is not None else src.manifest_path()
    entries = read_manifest(manifest_path)
    base = base_url or os.environ.get(src.url_env) or src.base_url
    if not base.endswith("/"):
        base += "/"

    if target.is_dir() and any(target.iterdir()):
        if verify(target, entries).ok:
            return target
        raise DataError(
            f"{target}: the folder already holds files that do not match the manifest {manifest_path.name}; "
            "move it away or empty it, then fetch again."
        )
    if target.exists() and not target.is_dir():
        raise DataError(f"{target}: is a file, not a folder; choose another target with --to or {src.data_env}.")

    staging = target.with_name(target.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    # Leftovers of a killed process (``*.download``, strays) would otherwise
    # be renamed into place with the data.
    for path in [p for p in staging.rglob("*") if not p.is_dir()]:
        if path.relative_to(staging).as_posix() not in entries:
            path.unlink()
    todo = []
    for rel, digest in entries.items():
        dest = staging / rel
        # Resume: a file verified by an earlier call is kept; anything else
        # (cut off, corrupt) is fetched again from the start.
        if dest.is_file() and sha256_file(dest) == digest:
            continue
        dest.unlink(missing_ok=True)
        todo.append((rel, digest))

    # The bar appears after a second, so an offline failure prints only its sentence.
    bar = tqdm(total=len(todo), desc=src.title, unit="file", file=sys.stderr, delay=1.0,
               disable=not progress or not todo, dynamic_ncols=True)
    try:
        for rel, digest in todo:
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            url = base + urllib.parse.quote(rel)
            _fetch_one(url, dest, digest, target=target, base=base, source=src, timeout=timeout, retries=retries,
                       backoff_s=backoff_s)
            bar.update(1)
    except BaseException:
        _remove_empty_dirs(staging)  # verified files stay for the next call; empty folders need not
        raise
    finally:
        bar.close()

    check = verify(staging, entries)
    if not check.ok:  # only if the staging folder was changed behind our back
        raise DataError(f"{staging}: {len(check.missing) + len(check.bad)} file(s) failed to verify after the "
                        "download; run the command again to fetch them.")
    shutil.copyfile(manifest_path, staging / MANIFEST_NAME)
    if target.is_dir():
        target.rmdir()  # empty (checked above); a rename onto it is not portable
    os.replace(staging, target)
    if progress:
        print(f"Installed {len(entries)} verified files in {target}.", file=sys.stderr)
    return target
