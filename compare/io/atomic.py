"""Atomic file writing and safe output names.

Every results file is written to a temporary file in the same folder and then
renamed over the target, so an interrupted run leaves either the old file or
the new one, never half of one.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_text_atomic", "json_default", "safe_stem", "inside"]


def atomic_path(target: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path, then rename it to ``target``.

    Parameters
    ----------
    target : Path
        Final file; its folder is created if needed.
    write : callable
        Writes the whole file at the path it is given.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes owner-only files; results are meant to be shared.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(target: Path, text: str) -> None:
    """Write UTF-8 text to ``target`` atomically."""
    atomic_path(target, lambda p: p.write_text(text, encoding="utf-8"))


def json_default(value: Any) -> Any:
    """``json.dumps``'s ``default``: NumPy scalars and arrays as Python numbers and lists, paths as text."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} to JSON.")


_UNSAFE = re.compile(r"[^\w.\- ]+", re.UNICODE)


def safe_stem(name: str) -> str:
    """A file stem derived from an input name that cannot leave its folder.

    Path separators, ``..`` and control characters are replaced; letters of
    any script and spaces are kept so that names stay recognisable.

    Examples
    --------
    >>> safe_stem("../../x")
    'x'
    >>> safe_stem("slide 3 (é)")
    'slide 3 _é'
    """
    name = unicodedata.normalize("NFC", str(name))
    name = name.replace("/", "_").replace("\\", "_")
    name = _UNSAFE.sub("_", name)
    name = name.strip(" ._")
    return name or "image"


def inside(root: Path, path: Path) -> Path:
    """``path`` if it resolves inside ``root``; otherwise a ValueError."""
    root_resolved = Path(root).resolve()
    resolved = Path(path).resolve()
    if root_resolved != resolved and root_resolved not in resolved.parents:
        raise ValueError(f"Refusing to write {path}: it would land outside the output folder {root}.")
    return path
