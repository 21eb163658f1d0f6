"""Round trips of the Fiji / QuPath exports and the label images."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from skimage.draw import ellipse

from compare.io.exports import (
    read_geojson,
    read_imagej_rois,
    read_pixel_size,
    write_geojson,
    write_imagej_rois,
    write_label_tiff,
)
from tests.synthetic import disk


@pytest.fixture()
def labels() -> np.ndarray:
    """Five WBCs: a disk, one touching the top-left corner, one with a hole,
    an ellipse on the right border and a diagonal 2-pixel cell."""
    shape = (80, 120)
    out = np.zeros(shape, np.int32)
    out[disk(shape, (40, 40), 14)] = 1
    out[disk(shape, (0, 0), 12)] = 2
    out[disk(shape, (55, 85), 15)] = 3
    out[54:57, 84:87] = 0  # a 3 x 3 hole
    rr, cc = ellipse(20, 112, 9, 14, shape=shape)
    out[rr, cc] = 4
    out[70, 10] = 5
    out[71, 11] = 5
    return out


def _ious(truth: np.ndarray, got: np.ndarray) -> dict[int, float]:
    return {int(i): float(((truth == i) & (got == i)).sum() / ((truth == i) | (got == i)).sum())
            for i in np.unique(truth) if i}


def test_imagej_rois_round_trip(tmp_path, labels):
    import roifile

    path = tmp_path / "cells.zip"
    write_imagej_rois(labels, path)
    names = [roi.name for roi in roifile.roiread(path)]
    assert names == ["1", "2", "3", "4", "5"]
    back = read_imagej_rois(path, labels.shape)
    ious = _ious(labels, back)
    assert min(ious.values()) >= 0.95, ious
    # ImageJ polygons have no holes: the hole of WBC 3 comes back filled.
    assert back[55, 85] == 3
    assert not list(tmp_path.glob(".*tmp*"))


def test_geojson_round_trip_with_measurements(tmp_path, labels):
    table = pd.DataFrame({"id": [1, 2, 3, 4, 5], "area_px": [1, 2, 3, 4, 5],
                          "nc_ratio": [0.5, np.nan, np.inf, 0.2, 0.1], "image": ["a"] * 5})
    path = tmp_path / "cells.geojson"
    write_geojson(labels, path, table)
    back = read_geojson(path, labels.shape)
    ious = _ious(labels, back)
    assert min(ious.values()) >= 0.95, ious
    assert np.array_equal(back, labels)  # holes kept as interior rings
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 5
    props = data["features"][0]["properties"]
    assert props["objectType"] == "detection" and props["name"] == "1"
    assert props["classification"]["name"] == "WBC" and len(props["classification"]["color"]) == 3
    assert props["measurements"] == {"area_px": 1, "nc_ratio": 0.5}
    # NaN and infinity are left out (JSON has neither); text columns are not measurements.
    assert data["features"][1]["properties"]["measurements"] == {"area_px": 2}
    assert data["features"][2]["properties"]["measurements"] == {"area_px": 3}
    hole_feature = data["features"][2]["geometry"]
    assert hole_feature["type"] == "Polygon" and len(hole_feature["coordinates"]) == 2


def test_geojson_split_cell_is_a_multipolygon(tmp_path):
    labels = np.zeros((30, 30), np.uint16)
    labels[2:8, 2:8] = 7
    labels[20:25, 20:28] = 7
    path = tmp_path / "split.geojson"
    write_geojson(labels, path, object_type="annotation")
    feature = json.loads(path.read_text())["features"][0]
    assert feature["geometry"]["type"] == "MultiPolygon"
    assert feature["properties"]["objectType"] == "annotation"
    assert np.array_equal(read_geojson(path, labels.shape), labels)


def test_empty_label_image_exports(tmp_path):
    labels = np.zeros((10, 12), np.int32)
    write_imagej_rois(labels, tmp_path / "none.zip")
    write_geojson(labels, tmp_path / "none.geojson")
    assert not read_imagej_rois(tmp_path / "none.zip", labels.shape).any()
    assert not read_geojson(tmp_path / "none.geojson", labels.shape).any()


def test_label_tiff_uint16_with_pixel_size(tmp_path, labels):
    path = tmp_path / "labels.tif"
    write_label_tiff(labels, path, pixel_size_um=0.2)
    data = tifffile.imread(path)
    assert data.dtype == np.uint16 and np.array_equal(data, labels)
    assert read_pixel_size(path) == pytest.approx(0.2)
    write_label_tiff(labels, tmp_path / "plain.tif")
    assert read_pixel_size(tmp_path / "plain.tif") is None


def test_label_tiff_uint32_beyond_65535(tmp_path):
    labels = np.arange(1, 260 * 260 + 1, dtype=np.int64).reshape(260, 260)  # 67,600 one-pixel WBCs
    path = tmp_path / "many.tif"
    write_label_tiff(labels, path, pixel_size_um=0.35)
    data = tifffile.imread(path)
    assert data.dtype == np.uint32 and np.array_equal(data, labels)
    assert read_pixel_size(path) == pytest.approx(0.35)


def test_read_pixel_size_from_metadata(tmp_path):
    image = np.zeros((8, 8), np.uint8)
    tifffile.imwrite(tmp_path / "ij.tif", image, imagej=True, resolution=(4.0, 4.0), metadata={"unit": "micron"})
    assert read_pixel_size(tmp_path / "ij.tif") == pytest.approx(0.25)
    tifffile.imwrite(tmp_path / "slide.ome.tif", np.zeros((3, 8, 8), np.uint8),
                     metadata={"axes": "CYX", "PhysicalSizeX": 500, "PhysicalSizeXUnit": "nm"})
    assert read_pixel_size(tmp_path / "slide.ome.tif") == pytest.approx(0.5)
    tifffile.imwrite(tmp_path / "cm.tif", image, resolution=(25000, 25000), resolutionunit="CENTIMETER")
    assert read_pixel_size(tmp_path / "cm.tif") == pytest.approx(0.4)
    # A desktop 72 dpi default is not a microscope's pixel size.
    tifffile.imwrite(tmp_path / "dpi.tif", image, resolution=(72, 72), resolutionunit="INCH")
    assert read_pixel_size(tmp_path / "dpi.tif") is None
    Image.fromarray(image).save(tmp_path / "photo.png")
    assert read_pixel_size(tmp_path / "photo.png") is None
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="pixel size"):
        read_pixel_size(tmp_path / "broken.tif")


def test_bad_inputs_are_refused(tmp_path, labels):
    with pytest.raises(ValueError, match="zip"):
        write_imagej_rois(labels, tmp_path / "cells.roi")
    with pytest.raises(ValueError, match="integer"):
        write_label_tiff(labels.astype(float), tmp_path / "x.tif")
    with pytest.raises(ValueError, match="pixel size"):
        write_label_tiff(labels, tmp_path / "x.tif", pixel_size_um=-1)
