"""The nucleus check: drop objects that hold no nucleus (red-cell clumps, plasma, field-edge smears).

A WBC holds a nucleus, so a found object is kept when enough of it is
denser than the red cells around it (:func:`nucleus_shares`), or, in an
image where no object passes a density test, when its interior is as
textured as a cell's (:func:`interior_texture`).  Objects that lie on the
dark edge of the field of view are dropped.  :func:`drop_without_nucleus`
applies the tests to a label image.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from stain.normalise import summed_density

__all__ = ["MIN_NUCLEUS_FRACTION", "MIN_DENSE_FRACTION", "MAX_UNLIT_FRACTION", "MIN_TEXTURE_RATIO",
           "MIN_CELL_DENSITY_RATIO", "nucleus_shares", "interior_texture", "drop_without_nucleus"]

#: Share of an object's pixels that must be darker than the image's red
#: cells for it to count as a WBC: nuclei cover 34-73 % of the SigTuple WBCs.
MIN_NUCLEUS_FRACTION = 0.08


#: Percentile of the optical density outside the objects taken as "as dark
#: as the red cells get" (platelets are too few to reach it).
_RED_CELL_PERCENTILE = 99.0


#: The second test: an object of which at least :data:`MIN_DENSE_FRACTION`
#: is denser than this percentile of the outside also holds a nucleus.  Where
#: overlapping red cells are as dense as a pale nucleus (a rapid stain on a
#: small crop) the first test fails, but a WBC is still mostly denser than
#: nearly all red-cell pixels, while a clump of red cells is not: on the saved
#: models' predictions of the shifted large images and patches, no object off
#: the true WBCs reached 0.40 (docs/experiments.md, "Nucleus check").
_DENSE_PERCENTILE = 95.0


MIN_DENSE_FRACTION = 0.45


#: Pixels with no channel above this are the black edge of the field of view.
_LIT = 60


#: Width in pixels of the ring around each object left out of the reference.
_RING = 4


#: An object with at least this share of its pixels outside the lit field
#: of view (no channel above :data:`_LIT`) lies on the field-of-view edge: a
#: smear of its dark rim or a cell cut by it, which the annotations leave
#: out.  On the saved models' predictions of the shifted large images and
#: patches no true WBC reached 0.001, and the edge objects held 0.047-0.27
#: (``experiments/nucleus_check_objects.py``).
MAX_UNLIT_FRACTION = 0.02


#: The third test, for a WBC whose nucleus is no denser than the red cells
#: around it (a rapid stain's pale nucleus among overlapping red cells): the
#: inside of a WBC is textured (chromatin, lobes, granules), the inside of a
#: red cell or of a clump of them smooth.  An object is kept when its
#: interior texture is at least this share of the red cells' and it is
#: denser than the plasma (:data:`MIN_CELL_DENSITY_RATIO`; see
#: :func:`interior_texture`), in an image where no object passes a density
#: test.  On the committed models' objects that fail both density tests
#: (``experiments/nucleus_check_objects.py``) the false ones as dense as cells
#: reach 0.69 and the true WBCs start at 0.86.  Applied to every object that
#: fails them, it also let in fragments and red cells beside a WBC that
#: passed (docs/experiments.md, "Pale nuclei by texture").
MIN_TEXTURE_RATIO = 0.85


#: With the texture test, the object's mean density must be at least this
#: multiple of the median outside all objects: a pale stretch of plasma
#: that takes in the edges of red cells can read as textured (0.90 on the
#: same objects), a WBC is a cell (1.38 and up).
MIN_CELL_DENSITY_RATIO = 1.15


#: Width in pixels of the Laplacian of Gaussian that measures texture.
_TEXTURE_SIGMA = 1.0


#: Pixels inside an object's outline left out of its texture: the outline's
#: own edge would read as texture.
_INTERIOR = 3


def _reference_pixels(labels: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Summed optical density, brightest channel, and the outside pixels the nucleus tests compare with.

    The outside is every lit pixel (some channel above :data:`_LIT`) that is
    more than :data:`_RING` px from every object: an outline drawn a little
    inside the cell would otherwise put WBC pixels into the reference.
    """
    rgb = np.asarray(image)[..., :3]
    density = summed_density(rgb)
    brightest = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    outside = ~ndi.binary_dilation(labels > 0, iterations=_RING) & (brightest > _LIT)
    return density, brightest, outside


def nucleus_shares(labels: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """What share of each object is nucleus-dense, and what share unlit: the numbers :func:`drop_without_nucleus` tests.

    Parameters
    ----------
    labels : ndarray, shape (H, W), int
        Found WBCs, 1..n.
    image : ndarray, shape (H, W, 3), uint8
        The image they were found in.

    Returns
    -------
    (dark, dense, unlit) : three ndarrays, shape (n + 1,), float64, or None
        Per label (index 0 is the background): the share of its pixels
        denser than the 99th and the 95th percentile of the optical density
        outside all objects (pixels on the field-of-view edge's rim left
        out), and the share outside the lit field of view.  None when fewer
        than 100 lit pixels lie outside the objects.
    """
    labels = np.asarray(labels)
    return _nucleus_shares(labels, _reference_pixels(labels, image))


def _nucleus_shares(labels: np.ndarray,
                    pixels: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...] | None:
    """:func:`nucleus_shares` from the image's :func:`_reference_pixels`."""
    n = int(labels.max()) if labels.size else 0
    density, brightest, outside = pixels
    if outside.sum() < 100:
        return None
    reference, dense_reference = np.percentile(density[outside], [_RED_CELL_PERCENTILE, _DENSE_PERCENTILE])
    area = np.maximum(np.bincount(labels.ravel(), minlength=n + 1), 1).astype(float)
    # Dark pixels next to the unlit field-of-view mask are its blurred edge,
    # not a nucleus: a red cell cut by the edge would otherwise pass.
    edge = ndi.binary_dilation(brightest <= _LIT, iterations=_RING)
    dark = np.bincount(labels[(density > reference) & ~edge], minlength=n + 1) / area
    dense = np.bincount(labels[(density > dense_reference) & ~edge], minlength=n + 1) / area
    unlit = np.bincount(labels[brightest <= _LIT], minlength=n + 1) / area
    return dark, dense, unlit


def interior_texture(labels: np.ndarray, image: np.ndarray,
                     which: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """How textured and how dense each object is, relative to the outside of all objects.

    Texture is the mean absolute Laplacian of Gaussian (sigma
    :data:`_TEXTURE_SIGMA` px) of the summed optical density.  An object's
    is taken over its interior (its pixels :data:`_INTERIOR` px or more
    inside its outline, or all of them for an object too thin for that); the
    reference over the outside pixels (lit, away from every object as in
    :func:`nucleus_shares`) denser than the outside's median: the red
    cells, edges included.  Density is the object's mean summed optical
    density over the outside's median.

    Parameters
    ----------
    labels : ndarray, shape (H, W), int
        Found WBCs, 1..n.
    image : ndarray, shape (H, W, 3), uint8
    which : ndarray of int, optional
        The labels to measure (default: all).

    Returns
    -------
    (texture, density) : two ndarrays, shape (n + 1,), float64
        The ratios per label; NaN for labels not measured, for index 0, and
        for every label when the outside holds fewer than 100 lit pixels
        (or 100 denser than their median).
    """
    labels = np.asarray(labels)
    return _interior_texture(labels, _reference_pixels(labels, image), which)


def _interior_texture(labels: np.ndarray, pixels: tuple[np.ndarray, np.ndarray, np.ndarray],
                      which: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`interior_texture` from the image's :func:`_reference_pixels`."""
    n = int(labels.max()) if labels.size else 0
    texture_ratio, density_ratio = np.full(n + 1, np.nan), np.full(n + 1, np.nan)
    density, _, outside = pixels
    if outside.sum() < 100:
        return texture_ratio, density_ratio
    median = float(np.median(density[outside]))
    cells = outside & (density > median)
    if cells.sum() < 100 or median <= 0:
        return texture_ratio, density_ratio
    texture = np.abs(ndi.gaussian_laplace(density.astype(np.float32), _TEXTURE_SIGMA))
    reference = float(texture[cells].mean())
    if reference <= 0:
        return texture_ratio, density_ratio
    boxes = ndi.find_objects(labels)
    for k in (range(1, n + 1) if which is None else np.asarray(which, int)):
        box = boxes[k - 1] if 0 < k <= len(boxes) else None
        if box is None:
            continue
        obj = labels[box] == k
        interior = ndi.binary_erosion(obj, iterations=_INTERIOR)
        texture_ratio[k] = float(texture[box][interior if interior.any() else obj].mean()) / reference
        density_ratio[k] = float(density[box][obj].mean()) / median
    return texture_ratio, density_ratio


def drop_without_nucleus(labels: np.ndarray, image: np.ndarray,
                         min_fraction: float | None = None) -> np.ndarray:
    """Remove the objects of a label image that hold no nucleus, renumbering the rest.

    A WBC's nucleus is darker than any red cell of the same image, whatever
    the stain; the pale clumps of red cells and plasma that a model may
    mistake for WBCs on unfamiliar slides have no such pixels.  Each
    object's pixels are compared with the darkest red-cell pixels of the
    image (a high percentile of the optical density outside all objects,
    in the lit field of view), so the rule adapts to each image.  An object
    holds a nucleus when at least ``min_fraction`` of it is denser than the
    99th percentile of the outside, or at least :data:`MIN_DENSE_FRACTION`
    of it denser than the 95th (a pale nucleus among a few red cells that
    overlap into the same density).  In an image where no object passes
    either density test, an object is also kept when its interior is at
    least :data:`MIN_TEXTURE_RATIO` times as textured as the red cells and
    it is denser than the plasma (:func:`interior_texture`: a pale nucleus
    among red cells as dense as it).  Objects partly outside the lit field
    of view (:data:`MAX_UNLIT_FRACTION`) lie on its edge and are removed
    too.

    Parameters
    ----------
    labels : ndarray, shape (H, W), int
        Found WBCs, 1..n.
    image : ndarray, shape (H, W, 3), uint8
        The image they were found in.
    min_fraction : float, optional
        Smallest share of nucleus-dark pixels that keeps an object;
        default :data:`MIN_NUCLEUS_FRACTION`.

    Returns
    -------
    ndarray, shape (H, W), same dtype as ``labels``
        1..m in the old order, m <= n.
    """
    min_fraction = MIN_NUCLEUS_FRACTION if min_fraction is None else min_fraction
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return labels
    # Density and the outside pixels, computed once for both tests.
    pixels = _reference_pixels(labels, image)
    shares = _nucleus_shares(labels, pixels)
    if shares is None:
        return labels  # nothing to compare with: keep every object
    dark, dense, unlit = shares
    keep = ((dark >= min_fraction) | (dense >= MIN_DENSE_FRACTION)) & (unlit < MAX_UNLIT_FRACTION)
    keep[0] = True
    doubtful = np.flatnonzero(~keep & (unlit < MAX_UNLIT_FRACTION))
    if len(doubtful) and keep.sum() == 1:
        # No object of the image passed a density test: its red cells may be
        # as dense as its nuclei, and texture decides.  Where another object
        # passed, density works in this image (one stain), and a fragment or
        # a red cell that fails it is not let in by its edges.
        texture, density = _interior_texture(labels, pixels, doubtful)
        keep[doubtful] = (texture[doubtful] >= MIN_TEXTURE_RATIO) & (density[doubtful] >= MIN_CELL_DENSITY_RATIO)
    if keep.all():
        return labels
    lut = np.zeros(n + 1, labels.dtype)
    kept = np.flatnonzero(keep[1:]) + 1
    lut[kept] = np.arange(1, len(kept) + 1, dtype=labels.dtype)
    return lut[labels]
