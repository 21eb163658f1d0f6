"""The model's own process: napari's process never loads TensorFlow.

TensorFlow and the Mesa OpenGL driver that napari draws with on Linux crash
when both are loaded into one process (in either order; each brings its own
LLVM).  So the plugin starts ``python -m wbc_napari.model_server`` once, on
the first Find WBCs, and keeps it, with every model it loaded, until napari
exits.  Apart from that, the viewer keeps its memory and its GIL while the
U-Net runs.

A plain subprocess rather than :mod:`multiprocessing`: its "spawn" start
runs the parent's main script again in the child, and a napari script
without an ``if __name__ == "__main__"`` guard would open a second viewer
there.

The protocol is one pickled ``(job, args)`` request on the child's stdin and
one pickled ``("ok", value)`` or ``("error", exception)`` reply on the
original stdout; the child points its own stdout at stderr so that stray
prints cannot corrupt the replies.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from typing import Any

__all__ = ["ModelProcess", "main"]

#: Exceptions that keep their type across the pipe (the widget words them for the user).
_KEPT = ("InputError", "FileNotFoundError", "ValueError", "MemoryError")


class ModelProcess:
    """A child Python process that runs :data:`wbc_napari.core.JOBS`, one request at a time."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def call(self, job: str, *args: Any) -> Any:
        """Run ``JOBS[job](*args)`` in the child and return its value (blocking).

        Raises
        ------
        Exception
            What the job raised (InputError and the like keep their type).
        RuntimeError
            If the child died (e.g. out of memory); the next call starts a new one.
        """
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            proc = self._proc
            try:
                proc.stdin.write(pickle.dumps((job, args), protocol=pickle.HIGHEST_PROTOCOL))
                proc.stdin.flush()
                status, value = pickle.load(proc.stdout)
            except (EOFError, OSError, pickle.UnpicklingError) as exc:
                self._stop()
                raise RuntimeError("The model process stopped (out of memory?); press Find WBCs again to "
                                   "restart it.") from exc
        if status == "error":
            raise value
        return value

    def _start(self) -> None:
        env = dict(os.environ)
        # The child must import this package and compare from where the parent does (a source checkout too).
        paths = [p for p in sys.path if p] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        self._proc = subprocess.Popen([sys.executable, "-m", "wbc_napari.model_server"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env)

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def close(self) -> None:
        """End the child (it also ends by itself when napari's process goes, its stdin then closing)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.stdin.close()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
            self._proc = None


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it pickles and its type is one the widget words; else a RuntimeError."""
    plain = RuntimeError(f"{type(exc).__name__}: {exc}")
    if type(exc).__name__ not in _KEPT:
        return plain
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - an exception that does not survive pickling goes as its message
        return plain
    return exc
