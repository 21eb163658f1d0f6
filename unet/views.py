"""Test-time views: the network run on flipped (and transposed) copies of a batch, averaged back.

A WBC has no up, down, left or right, so the network's answer on a mirrored
tile, mirrored back, is as good a guess as its answer on the tile itself;
averaging several such guesses smooths the errors that depend on
orientation.  Two sets of views:

* ``"flips"``: the tile, its horizontal, vertical and double flip (the
  double flip is the half turn);
* ``"d4"``: those four and each of them transposed: all eight symmetries of
  the square (the dihedral group), which adds the quarter turns and the
  diagonal mirrors.

Each view is a pair ``(flip_axes, transpose)`` acting on a batch
``(N, H, W, C)``: flip ``flip_axes`` first, then swap height and width if
``transpose``.  Undoing it on the network's ``(N, H', W')`` output swaps
back first, then flips the same axes (a flip is its own inverse).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["TTA_MODES", "average_views", "normalise_tta", "views"]

#: The values :class:`unet.segmenter.PredictConfig`'s ``tta`` takes, with the number of network passes each costs.
TTA_MODES = {False: 1, "flips": 4, "d4": 8}

_FLIPS = ((), (1,), (2,), (1, 2))

#: Views of a batch with at most this many pixels in all are run in one call
#: per shape (stacked along the batch axis): for the small images of a
#: shrunk crop a call's fixed cost outweighs its arithmetic.  Larger batches
#: are run one view at a time, which bounds the memory of a call.
JOINT_PIXELS = 1 << 20


def normalise_tta(tta: bool | str) -> bool | str:
    """``tta`` as one of :data:`TTA_MODES`: ``True`` (the older spelling of ``"flips"``) becomes ``"flips"``.

    Raises
    ------
    ValueError
        For anything else, naming the values allowed.
    """
    if tta is True:
        return "flips"
    if tta is False or tta in ("flips", "d4"):
        return tta
    raise ValueError(f"tta must be False, True (= 'flips'), 'flips' or 'd4', got {tta!r}.")


def views(tta: bool | str) -> list[tuple[tuple[int, ...], bool]]:
    """The ``(flip_axes, transpose)`` pairs that ``tta`` averages, the identity first.

    Parameters
    ----------
    tta : False, True, "flips" or "d4"

    Returns
    -------
    list of (tuple of int, bool)
        1, 4 or 8 views.
    """
    mode = normalise_tta(tta)
    if mode is False:
        return [((), False)]
    transposes = (False, True) if mode == "d4" else (False,)
    return [(axes, t) for t in transposes for axes in _FLIPS]


def average_views(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, tta: bool | str) -> np.ndarray:
    """The mean of ``run`` over the views of ``x`` that ``tta`` names, each mapped back to ``x``'s frame.

    Parameters
    ----------
    run : callable
        Maps a C-contiguous batch ``(N, h, w, C)`` to a map ``(N, h, w)``
        float32 (the network's forward pass).
    x : ndarray, shape (N, H, W, C)
        The batch.  ``H`` and ``W`` may differ: a transposed view has shape
        ``(N, W, H, C)``.
    tta : False, True, "flips" or "d4"

    Returns
    -------
    ndarray, shape (N, H, W), float32
        With ``tta`` False, ``run(x)`` itself.
    """
    chosen = views(tta)
    if len(chosen) == 1:
        return run(x)
    shown = []
    for axes, transpose in chosen:
        view = np.flip(x, axis=axes) if axes else x
        shown.append(view.transpose(0, 2, 1, 3) if transpose else view)
    if len(chosen) * x[..., 0].size <= JOINT_PIXELS:
        outs = _run_together(run, shown)
    else:
        outs = [run(np.ascontiguousarray(view)) for view in shown]
    prob = np.zeros(x.shape[:3], np.float32)
    for (axes, transpose), out in zip(chosen, outs):
        if transpose:
            out = out.transpose(0, 2, 1)
        prob += np.flip(out, axis=axes) if axes else out
    prob /= float(len(chosen))
    return prob


def _run_together(run: Callable[[np.ndarray], np.ndarray], shown: list[np.ndarray]) -> list[np.ndarray]:
    """``[run(view) for view in shown]`` in one call per shape: the views stacked along the batch axis."""
    outs: list[np.ndarray | None] = [None] * len(shown)
    for shape in dict.fromkeys(view.shape for view in shown):
        which = [i for i, view in enumerate(shown) if view.shape == shape]
        joint = run(np.ascontiguousarray(np.concatenate([shown[i] for i in which])))
        for i, part in zip(which, np.split(joint, len(which))):
            outs[i] = part
    return outs
