"""napari plugin of wbc-compare: find, correct, measure and export WBCs in a viewer.

Install with ``pip install -e ".[gui]"``, start ``napari``, open an RGB
blood-smear image and choose *Plugins > Find WBCs (wbc-compare)*.  The dock
widget (:class:`wbc_napari.widget.WBCWidget`) runs the committed default
U-Net (or a model folder saved by ``compare run``) on the chosen image layer,
adds a Labels layer of WBCs (outlined, numbered) and one of their nuclei,
and shows the cell table of ``compare predict``.  After editing the WBC
labels with napari's own tools, *Measure again* recomputes the table,
*Export* writes what ``compare predict`` writes, and *Save as training data*
writes ``images/NAME.png`` + ``masks/NAME.png`` for ``compare fit`` and
``compare score``.

The measurement and export code is the package's own public API
(:func:`compare.cell_table`, :class:`compare.PredictionWriter`, ...); the
plugin adds no second copy.  :mod:`wbc_napari.core` holds the parts without
Qt, :mod:`wbc_napari.widget` the dock widget.
"""

from __future__ import annotations

__all__ = ["WBCWidget"]


def __getattr__(name: str):
    # Lazy, so that importing the package (npe2 reads the manifest next to it) does not import Qt.
    if name == "WBCWidget":
        from wbc_napari.widget import WBCWidget

        return WBCWidget
    raise AttributeError(f"module 'wbc_napari' has no attribute {name!r}")
