"""The scale, segment and instance stages, with the red-cell ruler checked against the WBCs it leads to.

The red-cell ruler (:func:`compare.pipeline.red_cells.measure_red_cells`)
reads the typical red-cell diameter of an image.  On an image magnified
two or three times beyond the training scale, where a few red cells 80-90
px across fill the field, it can read the pieces of those cells (the rim
around a pale centre, the parts a crowd is cut into) as whole small cells
and find the image at the training scale.  The WBCs the segmenter then
finds give it away: at a scale that is right, no whole WBC is much larger
than the training WBCs, since leukocytes vary far less than that between
people.  When the largest WBC found at the ruler's scale and not cut by
the image border is wider than :data:`compare.pipeline.scale.SIZE_WINDOW`'s
upper ratio times the training WBC diameter, the ruler is overruled: the
scale is measured again by the WBC probe, as for a crop with too few red
cells, and the image is segmented at that scale.  Where the ruler is right
this costs nothing: the check reads the instances the pipeline finds anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from compare.pipeline.colour import Colour
from compare.pipeline.instances import InstanceParams, separate_instances
from compare.pipeline.scale import SIZE_WINDOW, ScaleChoice, TrainingScale, choose_scale
from compare.pipeline.segment import Segmentation, segment

__all__ = ["ruler_overruled", "segment_at_checked_scale"]


def ruler_overruled(choice: ScaleChoice, labels: np.ndarray, training: TrainingScale,
                    name: str = "the image") -> str | None:
    """Why the WBCs found at the red-cell ruler's scale say the ruler misread, or None when they do not.

    Parameters
    ----------
    choice : ScaleChoice
        The scale stage's choice; only a ``"red-cells"`` estimate is checked.
    labels : ndarray, shape (h, w), int
        The WBCs found at ``choice.applied``, 0 background.
    training : TrainingScale
    name : str
        How the message refers to the image.

    Returns
    -------
    str or None
        One sentence naming the red-cell and WBC sizes, for the probe's
        report; None when the ruler stands.
    """
    if choice.estimate.method != "red-cells" or not labels.any():
        return None
    areas = np.bincount(labels.ravel())[1:]
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    areas[edge[edge > 0] - 1] = 0  # a WBC cut by the border is seen in part only
    largest = 2.0 * np.sqrt(areas.max() / np.pi)
    if largest <= SIZE_WINDOW[1] * training.wbc_diameter:
        return None
    return (f"{name}: red cells read {choice.estimate.observed_rbc_diameter:.1f} px across, but at that scale the "
            f"largest WBC measured {largest:.0f} px (training {training.wbc_diameter:.0f} px), so what was read were "
            "pieces of larger red cells")


def segment_at_checked_scale(colour: Colour, training: TrainingScale, segmenter: Any, params: InstanceParams, *,
                             auto: bool, scale: float | None, wbc_diameter: float | None,
                             pixel_size_um: float | None, name: str, map_blocks: Callable | None,
                             views: bool = False) -> tuple[ScaleChoice, Segmentation, np.ndarray]:
    """Choose the scale, segment at it and separate the WBCs; once more by the probe when the ruler is overruled.

    Parameters
    ----------
    colour : Colour
        The colour stage's result.
    training : TrainingScale
    segmenter : object with ``predict_proba``
    params : InstanceParams
    auto, scale, wbc_diameter, pixel_size_um, name : keyword-only
        See :func:`compare.pipeline.scale.choose_scale` (``scale`` is its ``factor``).
    map_blocks : callable or None, keyword-only
        See :func:`compare.pipeline.segment.segment`.
    views : bool, keyword-only
        See :func:`compare.pipeline.segment.segment`.

    Returns
    -------
    choice : ScaleChoice
    segmentation : Segmentation
    labels : ndarray, shape (h, w), int
        The WBCs separated at ``segmentation.factor``.
    """
    def at_scale(overruled: str | None) -> tuple[ScaleChoice, Segmentation, np.ndarray]:
        choice, at_own_scale = choose_scale(colour, training, segmenter=segmenter, params=params, auto=auto,
                                            factor=scale, wbc_diameter=wbc_diameter, pixel_size_um=pixel_size_um,
                                            name=name, overruled=overruled)
        segmentation = segment(colour, choice.applied, segmenter, at_own_scale=at_own_scale, map_blocks=map_blocks,
                               views=views)
        return choice, segmentation, separate_instances(segmentation.probability, params)

    choice, segmentation, labels = at_scale(None)
    overruled = ruler_overruled(choice, labels, training, name)
    if overruled is None:
        return choice, segmentation, labels
    del segmentation, labels  # a large image's maps: free them before the second pass
    return at_scale(overruled)
