"""The model process's side: read pickled ``(job, args)`` requests from stdin, answer on stdout.

Started by :class:`wbc_napari.model_process.ModelProcess` as
``python -m wbc_napari.model_server``; it is the only process of the plugin
that imports TensorFlow.
"""

from __future__ import annotations

import os
import pickle
import sys

from wbc_napari.core import JOBS
from wbc_napari.model_process import _portable

__all__ = ["main"]


def main() -> None:
    """Serve requests from stdin until it closes."""
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # from here on, anything printed goes to stderr, never into the replies
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer
    while True:
        try:
            job, args = pickle.load(requests)
        except EOFError:
            return  # napari's process closed the pipe
        try:
            reply = pickle.dumps(("ok", JOBS[job](*args)), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # every failure goes back to the widget as a message
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            reply = pickle.dumps(("error", _portable(exc)), protocol=pickle.HIGHEST_PROTOCOL)
        replies.write(reply)  # pickled first, so a failure to pickle never leaves half a reply in the pipe
        replies.flush()


if __name__ == "__main__":
    main()
