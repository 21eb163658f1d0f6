"""The one runtime setting for CPU threads, and the worker threads that use it.

Every parallel part of the classical segmenters (the feature bank's scales,
the forest's tree walks, the forest's own fit) takes its thread count from
:func:`resolve_n_jobs`: an explicit ``n_jobs`` wins, then the environment
variable :data:`ENV_VAR` (``WBC_N_JOBS``), then all cores.  Negative values
count back from all cores as in joblib (``-1`` all, ``-2`` all but one).

:func:`parallel_map` runs work on one process-wide pool of threads.  The pool
is created on first use, not at import; it is grown (the old one shut down)
when more threads are asked for, rebuilt in a forked child (whose parent
threads do not exist), shut down by :func:`close_pool` and at interpreter
exit.  Keeping it between calls matters: creating a pool per 128 px patch
costs about as much as the threads save.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["ENV_VAR", "resolve_n_jobs", "parallel_map", "close_pool"]

#: Environment variable that sets the default thread count (an integer, as ``n_jobs``).
ENV_VAR = "WBC_N_JOBS"

T = TypeVar("T")


def _cores() -> int:
    return os.cpu_count() or 1


def resolve_n_jobs(n_jobs: int | None = None) -> int:
    """The number of threads to use, at least 1.

    Parameters
    ----------
    n_jobs : int or None
        ``None`` reads :data:`ENV_VAR`, or uses all cores when it is unset;
        a positive value is used as given; ``-1`` means all cores, ``-2`` all
        but one, and so on; ``0`` is refused.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If ``n_jobs`` is 0 or the environment variable is not an integer.
    """
    if n_jobs is None:
        raw = os.environ.get(ENV_VAR, "").strip()
        if not raw:
            return _cores()
        try:
            n_jobs = int(raw)
        except ValueError:
            raise ValueError(f"{ENV_VAR}={raw!r} is not an integer; set it to a thread count such as 2, or -1 for all cores.") from None
    n_jobs = int(n_jobs)
    if n_jobs == 0:
        raise ValueError("n_jobs=0 means no threads; pass a positive count, -1 for all cores, or None for the default.")
    if n_jobs < 0:
        return max(1, _cores() + 1 + n_jobs)
    return n_jobs


class _Pool:
    """The process-wide thread pool behind :func:`parallel_map` (one at a time, lazily built)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._size = 0
        self._pid = 0
        self._closes_at_exit = False

    def get(self, size: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is not None and self._pid != os.getpid():
                # Forked child: the parent's worker threads do not exist here.
                self._executor, self._size = None, 0
            if self._executor is None or self._size < size:
                if self._executor is not None:
                    self._executor.shutdown(wait=True)
                self._executor = ThreadPoolExecutor(size, thread_name_prefix="wbc-worker")
                self._size, self._pid = size, os.getpid()
                if not self._closes_at_exit:
                    # Registered with the first threads, so importing this module changes nothing.
                    atexit.register(self.close)
                    self._closes_at_exit = True
            return self._executor

    def close(self) -> None:
        with self._lock:
            if self._executor is not None and self._pid == os.getpid():
                self._executor.shutdown(wait=True)
            self._executor, self._size = None, 0


_POOL = _Pool()


def parallel_map(func: Callable[[T], Any], items: Iterable[T], n_jobs: int | None = None) -> list[Any]:
    """``[func(x) for x in items]``, spread over up to ``n_jobs`` threads.

    Runs in the calling thread when one thread is asked for or there is at
    most one item.  ``func`` must not call :func:`parallel_map` itself (a
    task waiting on the same pool could deadlock it).

    Parameters
    ----------
    func : callable
    items : iterable
    n_jobs : int or None
        See :func:`resolve_n_jobs`.

    Returns
    -------
    list
        Results in the order of ``items``.
    """
    items = list(items)
    workers = min(resolve_n_jobs(n_jobs), len(items))
    if workers <= 1:
        return [func(x) for x in items]
    return list(_POOL.get(workers).map(func, items))


def close_pool() -> None:
    """Shut the worker threads down; the next :func:`parallel_map` starts new ones."""
    _POOL.close()
