"""A memo that remembers only while some caller has opened a scope for it.

``compare run`` does the same work several times over for models that
share their inputs: five segmenters prepare the same training folds
(:mod:`compare.pipeline.preparation`), and every model scored on the shift battery
measures the red cells of the same shifted images
(:func:`compare.pipeline.red_cells.remembering_red_cells`).  Outside the run that work
must stay uncached, so that a lone fit or a predict timing costs what a
first sight costs.  :class:`ScopedMemo` holds values by key only while at
least one of its scopes is open, in any thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["ScopedMemo"]

T = TypeVar("T")


class ScopedMemo:
    """Values made once per key while a scope is open; made afresh, and not kept, otherwise.

    Parameters
    ----------
    max_entries : int or None
        Keep at most this many values, dropping the least recently used;
        None keeps all.
    clear_on_close : bool
        Forget every value when the last open scope closes; otherwise the
        values wait (bounded by ``max_entries``) for the next scope.

    Notes
    -----
    Values are shared, not copied: callers must not modify them.  Two
    threads asking for the same missing key may both make it; the first
    value stored is the one kept.
    """

    def __init__(self, max_entries: int | None = None, clear_on_close: bool = True):
        self.max_entries = max_entries
        self.clear_on_close = clear_on_close
        self._lock = threading.Lock()
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._open = 0

    @property
    def active(self) -> bool:
        """Whether a scope is open (in any thread)."""
        return self._open > 0

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Within this block, :meth:`get` remembers its values."""
        with self._lock:
            self._open += 1
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1
                if self._open == 0 and self.clear_on_close:
                    self._values.clear()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The value remembered for ``key`` inside a scope, else ``make()`` (remembered when a scope is open)."""
        with self._lock:
            if not self._open:
                remember = False
            elif key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            else:
                remember = True
        value = make()
        if remember:
            with self._lock:
                if self._open or not self.clear_on_close:
                    value = self._values.setdefault(key, value)
                    self._values.move_to_end(key)
                    while self.max_entries is not None and len(self._values) > self.max_entries:
                        self._values.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._values.clear()
