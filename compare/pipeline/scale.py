"""The scale stage: how many pixels a cell spans, and the factor that brings an image to the training scale.

Microscopes, objectives and cameras differ, so the same WBC may be 30 px wide
in one lab's images and 170 px in another's, while a model has only seen the
scale of its training data.  :func:`estimate_scale` finds the factor by which
to resize an image so that its cells match the training scale, from (first
that applies):

1. the user's typical WBC diameter (``wbc_diameter``, method ``"wbc-diameter"``);
2. the user's pixel size in micrometres (``pixel_size_um``, ``"pixel-size"``);
3. the red cells of the image (``"red-cells"``, :func:`compare.pipeline.red_cells.measure_red_cells`):
   their diameter varies far less between people (about 7-8 um) than pixel
   sizes vary between microscopes, and a smear shows hundreds of them;
4. a fitted model (``probe``, ``"wbc-probe"``) run at a few trial scales, for
   crops (one WBC and the cells around it: under :data:`MIN_RULER_SIDE` px a
   side, or too few whole red cells): the trial whose largest WBC comes out
   nearest the training WBC size wins, the image's own scale preferred unless
   what it finds are the lobes of one cell two or three times that size.

:func:`choose_scale` is the stage :meth:`compare.pipeline.model.WBCModel.predict`
runs once per image: the estimate, and the factor applied (none within
:data:`SCALE_TOLERANCE` of 1, since training covers that range and
resampling would only blur).  :func:`fit_training_scale` learns the
:class:`TrainingScale` a model holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from compare.pipeline.blocks import predict_proba_blocked, resize_rgb, scaled_shape
from compare.pipeline.colour import Colour
from compare.pipeline.instances import InstanceParams, median_wbc_diameter, separate_instances
from compare.pipeline.red_cells import (
    MIN_CELLS,
    SIGTUPLE_RBC_DIAMETER,
    measure_red_cells,
    remembering_red_cells,
)

__all__ = ["MAX_FACTOR", "MIN_FACTOR", "MIN_RULER_SIDE", "PIECES_FACTORS", "PROBE_FACTORS", "RBC_DIAMETER_UM",
           "SCALE_TOLERANCE", "SIGTUPLE_PIXEL_SIZE_UM", "SIGTUPLE_RBC_DIAMETER", "SIZE_FACTORS", "SIZE_WINDOW",
           "ProbeReading", "ScaleChoice", "ScaleError", "ScaleEstimate", "TrainingScale", "choose_scale",
           "estimate_scale", "fit_training_scale", "remembering_red_cells"]

#: Mean diameter of a normal red cell in micrometres (the textbook 7.5 um;
#: the normal range is about 6.2-8.2 um, so a pixel size derived from it is
#: good to about 10 %).
RBC_DIAMETER_UM = 7.5

#: Pixel size of the SigTuple images in micrometres, assuming their red cells
#: have the mean diameter :data:`RBC_DIAMETER_UM`; the data set does not state
#: its microscope's pixel size.
SIGTUPLE_PIXEL_SIZE_UM = RBC_DIAMETER_UM / SIGTUPLE_RBC_DIAMETER

#: Resize factors outside this range are clamped and marked not confident: a
#: smear imaged 4x finer or coarser than the training data is more likely a
#: measurement gone wrong than a real microscope.
MIN_FACTOR = 0.25
MAX_FACTOR = 4.0

#: Scale factors within this ratio of 1 are not worth resampling for: the
#: learned segmenters are trained with scale augmentation of about this much.
SCALE_TOLERANCE = 1.15

#: Trial resize factors for the ``probe`` fallback, 1 first, then by cost: the
#: training scale, images 2x and 3x finer (high-magnification crops), 2x coarser.
PROBE_FACTORS = (1.0, 0.5, 1.0 / 3.0, 2.0)
#: Another trial factor replaces 1 only when its WBC is this much nearer
#: (as a ratio) the training diameter: SigTuple's own WBCs vary by +-15 %.
PROBE_PREFERENCE = 1.2
#: A probe whose WBC is within this ratio of the training diameter is trusted.
PROBE_CONFIDENT = 1.35
#: Factor 1 found several objects yet a smaller trial factor (0.5, then 1/3)
#: one WBC of the training size that is at least this much wider (in the
#: image's own pixels) than the largest of them: those objects are pieces
#: (the nuclear lobes of a neutrophil, the fragments a pixel classifier makes
#: of a pale cell) of one cell two or three times the training size, and that
#: factor is kept.
PIECES_RATIO = 1.2
#: The trial factors at which the pieces found at factor 1 are looked for as one cell, in order.
PIECES_FACTORS = (0.5, 1.0 / 3.0)
#: Trial factors at which a WBC is read again once the probe shrinks the image:
#: a model that misses a pale cytoplasm reads a cell too small, seldom too large.
SIZE_FACTORS = (0.5, 0.4, 1.0 / 3.0)
#: A reading there counts when its WBC is within these ratios of the training
#: diameter (smaller: the model loses it; larger: it breaks it up) and uncut.
SIZE_WINDOW = (0.6, 1.6)
#: When a probe is given, images smaller than this (px) on either side are
#: measured by it rather than by their red cells: a crop shows too few whole
#: red cells, and those it shows are often cut or crowded around the WBC.
MIN_RULER_SIDE = 300


class ScaleError(ValueError):
    """The scale of an image could not be measured."""


@dataclass(frozen=True)
class ProbeReading:
    """What a probe found at one trial factor.

    Attributes
    ----------
    diameters : ndarray, shape (n,), float
        Equivalent diameters of the WBCs found, in pixels of the resized image.
    cut : ndarray, shape (n,), bool
        Which of them touch the image border (seen only in part).
    """

    diameters: np.ndarray
    cut: np.ndarray

    @classmethod
    def of(cls, found) -> ProbeReading:
        """A probe's answer as a reading: a plain sequence of diameters is taken as uncut WBCs."""
        if isinstance(found, cls):
            return found
        diameters = np.asarray(found, float).ravel()
        return cls(diameters, np.zeros(diameters.shape, bool))


@dataclass(frozen=True)
class TrainingScale:
    """The cell sizes a model was trained at.

    Attributes
    ----------
    wbc_diameter : float
        Median equivalent diameter of the training WBCs, in pixels.
    rbc_diameter : float
        Median red-cell equivalent diameter of the training images, in pixels.
    """

    wbc_diameter: float
    rbc_diameter: float


@dataclass(frozen=True)
class ScaleEstimate:
    """How much to resize one image, and how that was found.

    Attributes
    ----------
    factor : float
        Resize factor to apply to the image (training size / observed size);
        1.0 means the image is at the training scale, above 1 enlarges it.
    method : str
        ``"wbc-diameter"`` or ``"pixel-size"`` (given by the user),
        ``"red-cells"``, ``"wbc-probe"`` (measured), or ``"none"``.
    observed_rbc_diameter : float or None
        Typical red-cell equivalent diameter found in the image, in its own
        pixels, where one was measured (even if not trusted).
    confident : bool
        False when no reliable scale was found; the caller should warn.
    detail : str
        One sentence: how the scale was found, or why it is not trusted.
    """

    factor: float
    method: str
    observed_rbc_diameter: float | None
    confident: bool
    detail: str = ""


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ScaleError(f"{name}: expected an (H, W, 3) RGB image, got shape {image.shape}.")
    return image


# -- the estimate ----------------------------------------------------------------

def _clamped(factor: float, method: str, rbc: float | None, detail: str, confident: bool = True) -> ScaleEstimate:
    if not np.isfinite(factor) or factor <= 0:
        return ScaleEstimate(1.0, "none", rbc, False,
                             f"{detail}; the factor was not a positive number, so none is applied.")
    if factor < MIN_FACTOR or factor > MAX_FACTOR:
        bounded = float(np.clip(factor, MIN_FACTOR, MAX_FACTOR))
        return ScaleEstimate(bounded, method, rbc, False,
                             f"{detail}; the factor {factor:.2f} is outside {MIN_FACTOR}-{MAX_FACTOR:g} "
                             f"and was clamped to {bounded:.2f}.")
    return ScaleEstimate(float(factor), method, rbc, confident, detail)


def _probe_estimate(probe: Callable[[float], Sequence[float] | ProbeReading], training: TrainingScale,
                    rbc: float | None, why: str) -> ScaleEstimate:
    """Run the model at the :data:`PROBE_FACTORS` and keep the one whose WBC matches the training size.

    The largest object found at each factor is taken as the WBC (a crop is
    centred on one; WBCs cut by its border come out smaller).  Factor 1 is
    kept unless another factor brings that WBC clearly nearer the training
    diameter (:data:`PROBE_PREFERENCE`), or its objects are the pieces of one
    cell that factor 0.5 sees whole (:func:`_pieces_of_one_cell`).  Factors
    above 1 are not tried once an uncut WBC has read larger than the
    training diameter in the image's own pixels.  The
    chosen factor is refined by the measured size only when that shrinks the
    image by more than :data:`SCALE_TOLERANCE` (a WBC larger than the
    training ones), never to enlarge it; when it is below 1, the size is the
    largest read at it and at the :data:`SIZE_FACTORS` (:func:`_largest_size`).
    """
    misses: dict[float, tuple[float, float]] = {}  # factor -> (|log ratio|, diameter)
    counts: dict[float, int] = {}
    largest_cut: dict[float, bool] = {}

    def read(factor: float) -> None:
        reading = ProbeReading.of(probe(float(factor)))
        valid = np.isfinite(reading.diameters) & (reading.diameters > 0)
        found, cut = reading.diameters[valid], reading.cut[valid]
        counts[factor] = len(found)
        if len(found):
            diameter = float(found.max())
            misses[factor] = (abs(float(np.log(diameter / training.wbc_diameter))), diameter)
            largest_cut[factor] = bool(cut[int(found.argmax())])

    check_pieces = False
    for factor in PROBE_FACTORS:
        if factor > 1.0 and any(misses[f][1] / f > training.wbc_diameter and not largest_cut[f] for f in misses):
            break  # a WBC already larger than the training ones only grows when enlarged: its pieces there mislead
        read(factor)
        fits = factor in misses and misses[factor][0] <= np.log(PROBE_PREFERENCE)
        if factor == 1.0 and fits and counts[factor] >= 2:
            check_pieces = True  # the pieces of one cell? The PIECES_FACTORS tell (_pieces_of_one_cell)
            continue
        if check_pieces and factor != PIECES_FACTORS[-1] and not _pieces_of_one_cell(misses, counts, largest_cut,
                                                                                       factor):
            continue  # not one cell at 0.5: perhaps at 1/3, a cell three times the training size
        if fits or check_pieces:
            # A WBC within the training sizes' own spread: at factor 1 no other
            # factor could displace it (the rule below); at another one still
            # untried would rarely do better, and the factors are tried in
            # order of cost, 2 (four times the pixels) last.
            break
    if not misses:
        return ScaleEstimate(1.0, "none", rbc, False,
                             f"{why}, and the model found no WBC at any trial scale, so the image is used as it is.")
    best = min(misses, key=lambda f: misses[f][0])
    if 1.0 in misses and misses[1.0][0] <= misses[best][0] + np.log(PROBE_PREFERENCE):
        best = 1.0
    if best == 1.0:
        best = next((f for f in PIECES_FACTORS if _pieces_of_one_cell(misses, counts, largest_cut, f)), 1.0)
    miss, diameter = misses[best]
    # The WBC measures diameter / best in the image's own pixels, or more at a
    # SIZE_FACTORS factor.  The factor is refined only towards a smaller image:
    # a WBC that reads too small is far more often half-found (the nucleus
    # without its pale cytoplasm) than small, and enlarging the image for it
    # moved the scale away from the truth in every such case of the shift
    # battery (docs/experiments.md, "Probe refinement").
    size = diameter / best
    detail = (f"{why}; the model's largest WBC measured {diameter:.0f} px at trial factor {best:.2f} "
              f"(training {training.wbc_diameter:.0f} px)")
    if best < 1.0:
        for trial in SIZE_FACTORS:
            if trial not in counts:
                read(trial)
        largest = _largest_size(misses, largest_cut, training.wbc_diameter)
        if largest is not None and largest > size:
            size = largest
            detail += f", and up to {size:.0f} px in the image's own pixels at another factor"
    refined = min(best, training.wbc_diameter / size)
    factor = best if abs(np.log(refined / best)) <= np.log(SCALE_TOLERANCE) else refined
    return _clamped(factor, "wbc-probe", rbc, detail + ".", confident=bool(miss <= np.log(PROBE_CONFIDENT)))


def _largest_size(misses: dict[float, tuple[float, float]], largest_cut: dict[float, bool],
                  training_diameter: float) -> float | None:
    """The largest own-pixel size of an uncut WBC read within :data:`SIZE_WINDOW` at a :data:`SIZE_FACTORS` factor."""
    low, high = SIZE_WINDOW
    sizes = [misses[f][1] / f for f in SIZE_FACTORS
             if f in misses and not largest_cut.get(f, True) and low <= misses[f][1] / training_diameter <= high]
    return max(sizes) if sizes else None


def _pieces_of_one_cell(misses: dict[float, tuple[float, float]], counts: dict[float, int],
                        largest_cut: dict[float, bool], factor: float = 0.5) -> bool:
    """Whether the objects found at factor 1 are pieces of one cell that ``factor`` sees whole.

    A neutrophil twice the training size falls apart at factor 1 into nuclear
    lobes, each about a training WBC wide; at factor 0.5 the model sees the
    whole cell, of training size, inside the image (at 1/3 for a cell three
    times the training size).  Two WBCs that touch at the training scale do
    not pass: at 0.5 they read half the training size, together or apart,
    and a third at 1/3; nor does a blob that the image border cuts (a patch
    of the training scale halved is barely wider than a training WBC).
    """
    if counts.get(1.0, 0) < 2 or factor not in misses or 1.0 not in misses or largest_cut.get(factor, True):
        return False
    (miss_small, diameter_small), (_, diameter_one) = misses[factor], misses[1.0]
    return bool(miss_small <= np.log(PROBE_PREFERENCE) and diameter_small / factor >= PIECES_RATIO * diameter_one)


def estimate_scale(image: np.ndarray, training: TrainingScale, *, wbc_diameter: float | None = None,
                   pixel_size_um: float | None = None, probe: Callable[[float], Sequence[float] | ProbeReading] | None = None,
                   name: str = "the image", overruled: str | None = None) -> ScaleEstimate:
    """Find the factor that brings an image's cells to the training scale.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        RGB smear or crop.
    training : TrainingScale
        Cell sizes of the model's training data.
    wbc_diameter : float, optional, keyword-only
        The user's typical WBC diameter in this image, in pixels; wins over
        everything else.
    pixel_size_um : float, optional, keyword-only
        The image's pixel size in micrometres; the training pixel size is taken
        as :data:`RBC_DIAMETER_UM` / ``training.rbc_diameter``.
    probe : callable, optional, keyword-only
        ``probe(factor) -> diameters``: the equivalent diameters, in pixels of
        the image resized by ``factor``, of the WBCs a fitted model finds
        there, as a sequence or a :class:`ProbeReading` that also marks those
        the image border cuts.  Called (up to 4 times) only when the red cells
        cannot give the scale, or the image is smaller than :data:`MIN_RULER_SIDE`.
    name : str, keyword-only
        How messages refer to the image (its file name).
    overruled : str, optional, keyword-only
        Why the red cells' reading is not to be used for this image (the WBCs
        found at its scale were too large for it): ``probe`` decides.

    Returns
    -------
    ScaleEstimate
        Never raises for an unmeasurable image: ``confident`` is then False
        and ``factor`` 1.0 (or the clamped value).

    Raises
    ------
    ValueError
        If ``wbc_diameter`` or ``pixel_size_um`` is not a positive number.
    ScaleError
        If ``image`` is not an RGB array.
    """
    if wbc_diameter is not None:
        if not np.isfinite(wbc_diameter) or wbc_diameter <= 0:
            raise ValueError(f"--wbc-diameter must be a positive number of pixels, not {wbc_diameter}.")
        return _clamped(training.wbc_diameter / float(wbc_diameter), "wbc-diameter", None,
                        f"{name}: WBC diameter given as {wbc_diameter:g} px.")
    if pixel_size_um is not None:
        if not np.isfinite(pixel_size_um) or pixel_size_um <= 0:
            raise ValueError(f"--pixel-size must be a positive number of micrometres, not {pixel_size_um}.")
        training_pixel_um = RBC_DIAMETER_UM / training.rbc_diameter
        return _clamped(float(pixel_size_um) / training_pixel_um, "pixel-size", None,
                        f"{name}: pixel size given as {pixel_size_um:g} um "
                        f"(training {training_pixel_um:.3f} um, assuming {RBC_DIAMETER_UM} um red cells).")
    image = _check_image(image, name)
    rbc, cells = measure_red_cells(image)
    rbc_factor = training.rbc_diameter / rbc if rbc else None
    small = min(image.shape[:2]) < MIN_RULER_SIDE
    if overruled is not None:
        why = overruled
    elif rbc is not None and cells >= MIN_CELLS:
        estimate = _clamped(rbc_factor, "red-cells", rbc,
                            f"{name}: red cells {rbc:.1f} px across (training {training.rbc_diameter:.1f} px), "
                            f"from about {cells} whole cells.")
        if probe is None or (estimate.confident and not small):
            return estimate
        why = estimate.detail.rstrip(".")
        if estimate.confident:
            why += f", but the image is under {MIN_RULER_SIDE} px a side"
    else:
        why = f"{name}: only about {cells} whole red cells, too few to measure the scale"
    if probe is not None:
        return _probe_estimate(probe, training, rbc, why)
    return ScaleEstimate(1.0, "none", rbc, False, f"{why}; the image is used as it is.")


# -- the stage ---------------------------------------------------------------------

@dataclass(frozen=True)
class ScaleChoice:
    """What the scale stage hands on.

    Attributes
    ----------
    estimate : ScaleEstimate
        As the prediction reports it: an estimated factor within
        :data:`SCALE_TOLERANCE` of 1 is reported as 1.0, its detail saying so.
    applied : float
        The resize factor the image is segmented at (1.0: its own scale).
    warnings : tuple of str
        Why the scale is not to be trusted; empty when it is.
    """

    estimate: ScaleEstimate
    applied: float
    warnings: tuple[str, ...] = ()


def _probe(colour: Colour, segmenter, params: InstanceParams,
           kept: dict[float, np.ndarray]) -> Callable[[float], ProbeReading]:
    """``probe(factor)``: the WBCs found in the image resized by ``factor``, their diameters in its pixels.

    The image is anchored on the first call only (large images are never
    probed); the probability map at factor 1 is put in ``kept``.
    """
    anchored: list[np.ndarray] = []

    def probe(factor: float) -> np.ndarray:
        if not anchored:
            anchored.append(colour.anchored(colour.balanced))
        image = anchored[0]
        work = image if factor == 1.0 else resize_rgb(image, scaled_shape(image.shape, factor))
        prob = predict_proba_blocked(segmenter, work)
        if factor == 1.0:
            kept[1.0] = prob
        labels = separate_instances(prob, params)
        areas = np.bincount(labels.ravel())[1:]
        edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        cut = np.isin(np.arange(1, len(areas) + 1), edge)
        present = areas > 0
        return ProbeReading(2.0 * np.sqrt(areas[present] / np.pi), cut[present])

    return probe


def choose_scale(colour: Colour, training: TrainingScale, *, segmenter, params: InstanceParams, auto: bool,
                 factor: float | None = None, wbc_diameter: float | None = None, pixel_size_um: float | None = None,
                 name: str = "the image", overruled: str | None = None) -> tuple[ScaleChoice, np.ndarray | None]:
    """The scale stage: estimate the image's scale and choose the factor it is segmented at.

    Parameters
    ----------
    colour : Colour
        The colour stage's result; its balanced image is measured.
    training : TrainingScale
    segmenter : object with ``predict_proba``, keyword-only
        Probed at trial scales when the red cells cannot give the scale.
    params : InstanceParams, keyword-only
        Separate the probe's WBCs.
    auto : bool, keyword-only
        Estimate the scale; False keeps the image's own unless a size is given.
    factor : float, optional, keyword-only
        A resize factor to use as it is; skips estimation.
    wbc_diameter, pixel_size_um : float, optional, keyword-only
        See :func:`estimate_scale`.
    name : str, keyword-only
        How messages refer to the image.
    overruled : str, optional, keyword-only
        See :func:`estimate_scale`.

    Returns
    -------
    choice : ScaleChoice
    at_own_scale : ndarray, shape (H, W), float32, or None
        The probability map the probe computed at the image's own scale,
        for the segment stage to reuse; None when the probe did not run there.
    """
    kept: dict[float, np.ndarray] = {}
    if factor is not None:
        estimate = ScaleEstimate(factor=float(factor), method="given", observed_rbc_diameter=None, confident=True,
                                 detail="factor given by the caller")
    elif not auto and wbc_diameter is None and pixel_size_um is None:
        estimate = ScaleEstimate(factor=1.0, method="none", observed_rbc_diameter=None, confident=True,
                                 detail="scale estimation is off for this model")
    else:
        estimate = estimate_scale(colour.balanced, training, wbc_diameter=wbc_diameter, pixel_size_um=pixel_size_um,
                                  probe=_probe(colour, segmenter, params, kept), name=name, overruled=overruled)
    warnings: tuple[str, ...] = ()
    if not estimate.confident:
        warnings = (f"no reliable scale ({estimate.detail}); pass --wbc-diameter or --pixel-size",)
    measured = estimate.factor
    applied = measured if factor is not None or max(measured, 1 / measured) > SCALE_TOLERANCE else 1.0
    if applied != measured:
        estimate = ScaleEstimate(factor=1.0, method=estimate.method,
                                 observed_rbc_diameter=estimate.observed_rbc_diameter, confident=estimate.confident,
                                 detail=f"{estimate.detail.rstrip('.')}; estimated x{measured:.2f} is within "
                                        f"x{SCALE_TOLERANCE} of the training scale, not applied")
    return ScaleChoice(estimate=estimate, applied=applied, warnings=warnings), kept.pop(1.0, None)


def fit_training_scale(masks: Sequence[np.ndarray], balanced: Sequence[np.ndarray]) -> TrainingScale:
    """The training scale: the training WBCs' median diameter and the red-cell ruler of the training images.

    Parameters
    ----------
    masks : sequence of ndarray, shape (H, W), bool
    balanced : sequence of ndarray, shape (H, W, 3), uint8
        The white-balanced training images, measured as new images will be.

    Returns
    -------
    TrainingScale
        128-px patches show too few whole red cells to count; when no image
        gives a confident red-cell measurement the SigTuple value (measured
        the same way on its large images) stands in.
    """
    wbc_diameter = median_wbc_diameter(masks)
    provisional = TrainingScale(wbc_diameter=wbc_diameter, rbc_diameter=SIGTUPLE_RBC_DIAMETER)
    rbc = [e.observed_rbc_diameter for e in (estimate_scale(im, provisional) for im in balanced
                                              if min(im.shape[:2]) >= MIN_RULER_SIDE)
           if e.method == "red-cells" and e.confident]
    return TrainingScale(wbc_diameter=wbc_diameter,
                         rbc_diameter=float(np.median(rbc)) if rbc else SIGTUPLE_RBC_DIAMETER)
