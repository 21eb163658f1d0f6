"""What :meth:`compare.pipeline.model.WBCModel.predict` hands the user for one image: :class:`Prediction`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from compare.pipeline.scale import ScaleEstimate

__all__ = ["Prediction"]


@dataclass
class Prediction:
    """What a :class:`WBCModel` found in one image.

    Attributes
    ----------
    labels : ndarray, shape (H, W), uint16 (int32 beyond 65,535 WBCs)
        0 background, 1..n one per WBC, at the image's own size.
    probability : ndarray, shape (H, W), float32
        WBC probability at the image's own size.
    nuclei : ndarray, shape (H, W), same dtype as ``labels``, or None
        Each WBC's nucleus, labelled with the WBC's id
        (:func:`compare.pipeline.measure.nucleus_labels`); None when
        predicted with ``cells=False``.
    cells : pandas.DataFrame
        One row per WBC (``id`` = its label): position, size, shape and
        nucleus, see :func:`compare.pipeline.measure.cell_table`.
    scale : ScaleEstimate
        The resize factor used and how it was found.
    warnings : list of str
        Reasons not to trust the counts of this image (no reliable scale,
        colours unlike the training images); empty when none.
    """

    labels: np.ndarray
    probability: np.ndarray
    nuclei: np.ndarray | None
    cells: pd.DataFrame
    scale: ScaleEstimate
    warnings: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Number of WBCs found."""
        return int(len(self.cells))
