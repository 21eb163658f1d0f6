"""Progress bars on standard error that never get in the way of results.

A thin wrapper around tqdm: bars go to stderr (so stdout stays a clean summary),
and messages printed while a bar is active do not break it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


class _Progress:
    """``progress(iterable, desc=...)`` yields items with a bar; ``progress.write`` prints safely."""

    def __call__(self, iterable: Iterable[T], desc: str = "", leave: bool = True, unit: str = "it",
                 total: int | None = None) -> Iterable[T]:
        return tqdm(iterable, desc=desc, leave=leave, unit=unit, total=total, file=sys.stderr, dynamic_ncols=True,
                    mininterval=0.5)

    @staticmethod
    def write(message: str) -> None:
        tqdm.write(message, file=sys.stderr)


progress = _Progress()
