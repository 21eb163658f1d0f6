"""WBC outlines and label images in the formats Fiji and QuPath open.

- :func:`write_imagej_rois`: an ImageJ / Fiji ROI zip (``roifile``), one
  polygon ROI per WBC named by its id (open with File > Open or the ROI
  Manager);
- :func:`write_geojson`: a QuPath-compatible GeoJSON FeatureCollection, one
  Feature per WBC with its measurements (File > Import objects);
- :func:`write_label_tiff`: the label image as a uint16 TIFF (uint32 past
  65,535 WBCs) carrying the pixel size.

The label PNG is :func:`compare.io.overlay.save_label_png`.

Outlines are :func:`skimage.measure.find_contours` at level 0.5 around each
WBC, which pass half-way between the centres of the WBC's border pixels and
those of their outside neighbours. Polygon coordinates follow the ImageJ and
QuPath convention that pixel (row r, column c) covers x in [c, c+1] and y in
[r, r+1], so a contour point (row, col) is written as (col + 0.5, row + 0.5).
Filling a written polygon by pixel centres (what both programs do, and what
the readers here do) gives back the WBC's pixels.

Every file is written atomically (:func:`compare.io.atomic.atomic_path`).
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.draw import polygon as draw_polygon
from skimage.measure import find_contours

from compare.io.atomic import atomic_path, write_text_atomic

__all__ = [
    "WBC_COLOUR",
    "cell_outlines",
    "write_imagej_rois",
    "read_imagej_rois",
    "write_geojson",
    "read_geojson",
    "write_label_tiff",
    "read_pixel_size",
]

WBC_COLOUR = (0, 200, 255)
"""RGB colour of the "WBC" class in the GeoJSON export."""

PNG_MAX_LABEL = 65535


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"A label image must be a 2-D integer array; got {labels.dtype} of shape {labels.shape}.")
    if labels.size and labels.min() < 0:
        raise ValueError("A label image must not hold negative labels.")
    return labels


def _rings(mask: np.ndarray) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Outer ring and hole rings of each 8-connected piece of a crop mask.

    Returns a list of ``(outer, holes)`` in crop (row, col) coordinates,
    largest piece first; each ring is an (N, 2) float array, closed (first
    point repeated last).
    """
    pieces, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    out = []
    for k in range(1, n + 1):
        piece = np.pad(pieces == k, 1)
        filled = ndi.binary_fill_holes(piece)
        # Connectivity agrees throughout: the piece is 8-connected (so its
        # contour joins diagonal pixels: fully_connected="high"), and holes
        # are 4-connected background, as binary_fill_holes defines them.
        outer = max(find_contours(filled.astype(np.uint8), 0.5, fully_connected="high"), key=len) - 1.0
        holes = []
        hole_labels, n_holes = ndi.label(filled & ~piece)
        for h in range(1, n_holes + 1):
            hole = (hole_labels == h).astype(np.uint8)
            ring = max(find_contours(hole, 0.5, fully_connected="low"), key=len) - 1.0
            holes.append(ring)
        out.append((int(piece.sum()), outer, holes))
    out.sort(key=lambda t: -t[0])
    return [(outer, holes) for _, outer, holes in out]


def _drop_collinear(ring: np.ndarray) -> np.ndarray:
    """A closed ring without the vertices in the middle of straight runs.

    Contours of pixel masks carry one vertex per pixel edge; along straight
    runs those are redundant and only make the files larger.
    """
    points = ring[:-1]
    if len(points) < 4:
        return ring
    before = points - np.roll(points, 1, axis=0)
    after = np.roll(points, -1, axis=0) - points
    cross = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    kept = points[np.abs(cross) > 1e-9]
    return np.vstack([kept, kept[:1]]) if len(kept) >= 3 else ring


def cell_outlines(labels: np.ndarray) -> dict[int, list[tuple[np.ndarray, list[np.ndarray]]]]:
    """Polygon outlines of every WBC, in ImageJ / QuPath pixel coordinates.

    Parameters
    ----------
    labels : ndarray, shape (H, W), int

    Returns
    -------
    dict of int to list of (outer, holes)
        For each WBC id, its pieces (one for a connected WBC, largest first);
        ``outer`` is an (N, 2) float array of closed (x, y) vertices and
        ``holes`` a list of such arrays.
    """
    labels = _check_labels(labels)
    outlines = {}
    for index, box in enumerate(ndi.find_objects(labels.astype(np.intp, copy=False)), start=1):
        if box is None:
            continue
        offset = np.array([box[0].start, box[1].start], float) + 0.5
        pieces = []
        for outer, holes in _rings(labels[box] == index):
            pieces.append((_drop_collinear(outer + offset)[:, ::-1],
                           [_drop_collinear(h + offset)[:, ::-1] for h in holes]))
        outlines[index] = pieces
    return outlines


def _fill(shape: tuple[int, int], xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Back from pixel-corner (x, y) to pixel-centre (row, col) coordinates.
    return draw_polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=shape)


def write_imagej_rois(labels: np.ndarray, path: str | Path) -> None:
    """Write one ImageJ polygon ROI per WBC to a zip.

    A WBC in several pieces is written as its largest piece; holes are not
    kept (an ImageJ polygon has none; WBC labels from ``predict`` have their
    holes filled).

    Parameters
    ----------
    labels : ndarray, shape (H, W), int
    path : str or Path
        The ``.zip`` file; ROI names are the WBC ids.
    """
    import roifile

    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise ValueError(f"{path}: an ImageJ ROI set must be a .zip file.")
    rois = []
    for index, pieces in cell_outlines(labels).items():
        outer = pieces[0][0][:-1]  # ImageJ polygons close themselves.
        roi = roifile.ImagejRoi.frompoints(outer.astype(np.float32), name=str(index))
        roi.roitype = roifile.ROI_TYPE.POLYGON
        rois.append(roi)

    def write(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)
        if rois:
            roifile.roiwrite(tmp, rois, mode="w")
        else:
            import zipfile

            zipfile.ZipFile(tmp, "w").close()

    atomic_path(path, write)


def read_imagej_rois(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise an ImageJ ROI zip back to a label image.

    Parameters
    ----------
    path : str or Path
        Written by :func:`write_imagej_rois` (ROI names are integer ids).
    shape : tuple of int
        (H, W) of the image.

    Returns
    -------
    ndarray, shape (H, W), int64
    """
    import roifile

    path = Path(path)
    labels = np.zeros(shape, np.int64)
    if path.stat().st_size <= 22:  # an empty zip
        return labels
    rois = roifile.roiread(path)
    if isinstance(rois, roifile.ImagejRoi):
        rois = [rois]
    for n, roi in enumerate(rois, start=1):
        index = int(roi.name) if roi.name and roi.name.isdigit() else n
        rr, cc = _fill(shape, np.asarray(roi.coordinates(), float))
        labels[rr, cc] = index
    return labels


def _json_value(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    return value


def _ring_list(xy: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 3), round(float(y), 3)] for x, y in xy]


def write_geojson(labels: np.ndarray, path: str | Path, properties: pd.DataFrame | None = None, *,
                  object_type: str = "detection", class_name: str = "WBC",
                  colour: tuple[int, int, int] = WBC_COLOUR) -> None:
    """Write the WBCs as a QuPath-compatible GeoJSON FeatureCollection.

    Parameters
    ----------
    labels : ndarray, shape (H, W), int
    path : str or Path
        The ``.geojson`` file.
    properties : pandas.DataFrame, optional
        One row per WBC with an ``id`` column (e.g. from
        :func:`compare.pipeline.measure.cell_table`); its other numeric columns
        become each Feature's ``measurements`` (NaN and infinite values are
        left out, as QuPath shows a missing measurement as NaN).
    object_type : {"detection", "annotation"}
        QuPath object type.
    class_name : str
        Classification name.
    colour : tuple of int
        Classification colour, RGB.

    Notes
    -----
    Geometry is a ``Polygon`` (a ``MultiPolygon`` for a WBC in several
    pieces) in pixel coordinates (x to the right, y down), holes as interior
    rings. Each Feature's ``properties`` hold ``objectType``,
    ``classification`` ``{"name", "color"}``, ``name`` (the WBC id as text)
    and ``measurements``.
    """
    if object_type not in ("detection", "annotation"):
        raise ValueError(f"object_type must be 'detection' or 'annotation'; got {object_type!r}.")
    measurements: dict[int, dict] = {}
    if properties is not None:
        if "id" not in properties.columns:
            raise ValueError("The properties table needs an 'id' column holding the WBC labels.")
        numeric = [c for c in properties.columns
                   if c != "id" and pd.api.types.is_numeric_dtype(properties[c])]
        for row in properties[["id", *numeric]].itertuples(index=False):
            values = {c: _json_value(v) for c, v in zip(numeric, row[1:])}
            measurements[int(row[0])] = {c: v for c, v in values.items() if v is not None}
    features = []
    for index, pieces in cell_outlines(labels).items():
        polygons = [[_ring_list(outer), *[_ring_list(h) for h in holes]] for outer, holes in pieces]
        geometry = ({"type": "Polygon", "coordinates": polygons[0]} if len(polygons) == 1
                    else {"type": "MultiPolygon", "coordinates": polygons})
        features.append({
            "type": "Feature",
            "geometry": geometry,
            "properties": {
                "objectType": object_type,
                "classification": {"name": class_name, "color": [int(c) for c in colour]},
                "name": str(index),
                "measurements": measurements.get(index, {}),
            },
        })
    text = json.dumps({"type": "FeatureCollection", "features": features}, allow_nan=False)
    write_text_atomic(Path(path), text)


def read_geojson(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a GeoJSON FeatureCollection of WBC polygons to a label image.

    Parameters
    ----------
    path : str or Path
        Written by :func:`write_geojson` (Feature names are integer ids;
        other features are numbered in order).
    shape : tuple of int
        (H, W) of the image.

    Returns
    -------
    ndarray, shape (H, W), int64
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    features = data["features"] if data.get("type") == "FeatureCollection" else [data]
    labels = np.zeros(shape, np.int64)
    for n, feature in enumerate(features, start=1):
        name = str(feature.get("properties", {}).get("name", ""))
        index = int(name) if name.isdigit() else n
        geometry = feature["geometry"]
        polygons = ([geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"])
        cell = np.zeros(shape, bool)
        for rings in polygons:
            rr, cc = _fill(shape, np.asarray(rings[0], float))
            cell[rr, cc] = True
            for hole in rings[1:]:
                rr, cc = _fill(shape, np.asarray(hole, float))
                cell[rr, cc] = False
        labels[cell] = index
    return labels


def write_label_tiff(labels: np.ndarray, path: str | Path, *, pixel_size_um: float | None = None) -> None:
    """Write a label image as a TIFF of fixed dtype, with the pixel size.

    Parameters
    ----------
    labels : ndarray, shape (H, W), int
    path : str or Path
        The ``.tif`` / ``.tiff`` file.
    pixel_size_um : float, optional
        Side of a pixel in micrometres.

    Notes
    -----
    The file is uint16 while the labels fit, and then an ImageJ TIFF (Fiji
    reads the size in um from it); past 65,535 labels it is uint32, which
    ImageJ TIFFs cannot hold, so the pixel size goes into the standard
    resolution tags in pixels per centimetre. Compressed with zlib (labels
    compress well). :func:`read_pixel_size` reads both back.
    """
    import tifffile

    labels = _check_labels(labels)
    if pixel_size_um is not None and not (math.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise ValueError(f"The pixel size must be a positive number of micrometres; got {pixel_size_um}.")
    big = labels.size and int(labels.max()) > PNG_MAX_LABEL
    data = labels.astype(np.uint32 if big else np.uint16)
    kwargs: dict = {"compression": "zlib", "photometric": "minisblack"}
    if not big:
        kwargs["imagej"] = True
        kwargs["metadata"] = {"unit": "um"} if pixel_size_um else {}
        if pixel_size_um:
            kwargs["resolution"] = (1.0 / pixel_size_um, 1.0 / pixel_size_um)
    elif pixel_size_um:
        kwargs["resolution"] = (1e4 / pixel_size_um, 1e4 / pixel_size_um)
        kwargs["resolutionunit"] = "CENTIMETER"
    atomic_path(Path(path), lambda p: tifffile.imwrite(p, data, **kwargs))


_UM_PER_UNIT = {
    "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "\\u00b5m": 1.0, "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4,
    "m": 1e6, "meter": 1e6, "inch": 25400.0, "in": 25400.0,
}

# Pixel sizes outside this range (um) are not a microscope's: a plain TIFF
# saved at 72 or 300 dpi would otherwise read as 353 or 85 um per pixel.
_PLAUSIBLE_UM = (1e-3, 20.0)


def _plausible(size: float | None) -> float | None:
    if size is None or not math.isfinite(size) or not (_PLAUSIBLE_UM[0] <= size <= _PLAUSIBLE_UM[1]):
        return None
    return float(size)


def _ome_pixel_size(xml: str) -> float | None:
    root = ET.fromstring(xml)
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "Pixels" and "PhysicalSizeX" in element.attrib:
            unit = element.attrib.get("PhysicalSizeXUnit", "µm")
            factor = _UM_PER_UNIT.get(unit.strip().lower())
            if factor is None:
                return None
            return float(element.attrib["PhysicalSizeX"]) * factor
    return None


def _resolution(page) -> float | None:
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    value = tag.value
    pixels_per_unit = value[0] / value[1] if isinstance(value, tuple) else float(value)
    return pixels_per_unit if pixels_per_unit > 0 else None


def read_pixel_size(path: str | Path) -> float | None:
    """Pixel size in micrometres from a TIFF's metadata, or None.

    Looks, in order, at OME-XML (``Pixels/@PhysicalSizeX`` with its unit),
    ImageJ metadata (``unit`` with the XResolution tag) and the standard
    resolution tags when their unit is centimetre or inch. Files that are not
    TIFFs, and sizes outside 0.001-20 um (a 72 dpi default is not a
    microscope's), give None.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    float or None
    """
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff", ".btf", ".tf8", ".tf2"):
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            if tif.is_ome and tif.ome_metadata:
                size = _ome_pixel_size(tif.ome_metadata)
                if size is not None:
                    return _plausible(size)
            resolution = _resolution(page)
            if tif.is_imagej:
                unit = str((tif.imagej_metadata or {}).get("unit", "")).strip().lower()
                factor = _UM_PER_UNIT.get(re.sub(r"\s+", "", unit))
                if factor is not None and resolution:
                    return _plausible(factor / resolution)
            unit_tag = page.tags.get("ResolutionUnit")
            unit = int(unit_tag.value) if unit_tag is not None else 2
            if resolution and unit in (2, 3):  # 2 = inch, 3 = centimetre
                return _plausible((25400.0 if unit == 2 else 1e4) / resolution)
    except (tifffile.TiffFileError, ET.ParseError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: cannot read its TIFF metadata ({exc}); pass the pixel size instead.") from exc
    return None
