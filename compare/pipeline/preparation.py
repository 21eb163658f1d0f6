"""Sharing what fitting derives from the training data alone, between the models of one run.

``compare run`` fits five segmenters on the same cross-validation folds.
Before each segmenter learns anything, :meth:`compare.pipeline.model.WBCModel.fit`
prepares its training data: the white balance, the stain anchor, the
stain-augmented copies, the instance settings and the training scale.  These
depend on the images, the masks and the colour settings, not on the
segmenter, so within a :func:`sharing_preparation` block each is made once
and handed to every later fit that asks with the same key.  Outside such
blocks nothing is remembered, so a lone fit costs what it always did.

Remembered values are shared, not copied: segmenters read their training
images and never write into them (a white balance that changes nothing
returns the caller's own arrays, so making them read-only here would reach
back into the caller's data).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from typing import TypeVar

from compare.pipeline.memo import ScopedMemo

__all__ = ["sharing_preparation", "prepared"]

T = TypeVar("T")

_MEMO = ScopedMemo()


def sharing_preparation() -> AbstractContextManager[None]:
    """Within this block, :func:`prepared` values are made once per key and then reused.

    Measured on the 131-image training set of one fold (2 CPU cores): the
    preparation took 0.7-2.4 s a fit (2.4 s for ``rf``, most of it its
    stain-augmented copies), 8.1 s over the five segmenters, and 3.9 s when
    the ones after the first reuse what they share.  The memo holds about
    50 MB per fold of 128 px patches and is emptied when the block closes.
    """
    return _MEMO.scope()


def prepared(key: Hashable, make: Callable[[], T]) -> T:
    """``make()``, or inside :func:`sharing_preparation` the value already made for ``key``.

    Parameters
    ----------
    key : hashable
        Must name everything the value depends on (for training data, its
        hash and every setting ``make`` reads).
    make : callable
        Builds the value.

    Returns
    -------
    The value; shared between callers when remembered, so never modify it.
    """
    return _MEMO.get(key, make)
