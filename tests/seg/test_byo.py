"""Bring-your-own nuclei: label images (array, TIFF, pyramidal TIFF, zarr), QuPath GeoJSON, CSV."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tissuegraph import InputError
from tissuegraph._contours import rasterize_contours
from tissuegraph.seg import (
    label_source,
    nuclei_from_csv,
    nuclei_from_geojson,
    nuclei_from_labels,
)

LAB = np.zeros((12, 14), np.int32)
LAB[1:4, 1:4] = 5  # 9 px, centroid (2, 2)
LAB[6:9, 6:11] = 2  # 15 px, centroid (8, 7)
LAB[10, 0] = 9  # 1 px


def test_nuclei_from_labels_table():
    df = nuclei_from_labels(LAB, mpp=0.5, slide_id="s1")
    assert list(df["nucleus_id"]) == [1, 2, 3]
    assert df.attrs["params"]["labels"] == [2, 5, 9]  # ascending original labels
    np.testing.assert_allclose(df[["x", "y"]].to_numpy(), [[8, 7], [2, 2], [0, 10]])
    np.testing.assert_allclose(df["area_px"], [15, 9, 1])
    np.testing.assert_allclose(df["area_um2"], [15 * 0.25, 9 * 0.25, 0.25])
    np.testing.assert_allclose(df[["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].to_numpy(),
                               [[6, 6, 11, 9], [1, 1, 4, 4], [0, 10, 1, 11]])
    assert (df["slide"] == "s1").all() and df["score"].isna().all()
    # exact pixel-corner contours: rasterising gives the labels back
    back = rasterize_contours(list(df["contour"]), LAB.shape, ids=[2, 5, 9])
    np.testing.assert_array_equal(back, LAB)


def test_nuclei_from_labels_offset_scale_and_empty():
    df = nuclei_from_labels(LAB, offset=(100.0, 50.0), scale=2.0)
    np.testing.assert_allclose(df[["x", "y"]].to_numpy()[1], [104.0, 54.0])
    assert df["area_um2"].isna().all()
    empty = nuclei_from_labels(np.zeros((5, 5), int))
    assert len(empty) == 0 and "contour" in empty.columns
    with pytest.raises(InputError, match="negative"):
        nuclei_from_labels(-LAB)


def test_label_source_array_region_reads():
    src = label_source(LAB)
    assert src.shape == LAB.shape and src.dimensions == (14, 12)
    np.testing.assert_array_equal(src.read_region(1, 1, 3, 3), np.full((3, 3), 5))
    r = src.read_region(-2, -1, 5, 4)  # outside the image is background
    assert r.shape == (4, 5) and r[0].max() == 0 and r[2, 3] == 5
    assert src.read_region(100, 100, 4, 4).max() == 0
    with pytest.raises(InputError, match="2-D"):
        label_source(np.zeros((3, 3, 3), int))
    with pytest.raises(InputError, match="integer"):
        label_source(np.full((3, 3), 0.5))
    with pytest.raises(InputError, match="negative"):
        label_source(-LAB)


def test_label_source_pyramidal_tiff_is_lazy(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(0)
    big = rng.integers(0, 1000, (600, 700)).astype(np.uint32)
    path = tmp_path / "labels.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(big, tile=(256, 256), subifds=1)
        tw.write(big[::2, ::2], tile=(256, 256), subfiletype=1)
    src = label_source(path)
    assert src.shape == (600, 700) and src.dtype == np.uint32
    # region reads go through a zarr view of the tiles, never the whole image
    assert not isinstance(src._array, np.ndarray)
    np.testing.assert_array_equal(src.read_region(650, 550, 100, 100)[:50, :50], big[550:, 650:])
    np.testing.assert_array_equal(label_source(str(path), level=1).read_region(0, 0, 10, 10), big[::2, ::2][:10, :10])
    with pytest.raises(InputError, match="level"):
        label_source(path, level=5)


def test_label_source_tiff_errors(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    p = tmp_path / "float.tif"
    tifffile.imwrite(p, np.zeros((8, 8), np.float32))
    with pytest.raises(InputError, match="integer"):
        label_source(p)
    p = tmp_path / "broken.tif"
    p.write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match="broken.tif"):
        label_source(p)
    with pytest.raises(InputError, match="does not exist"):
        label_source(tmp_path / "missing.tif")
    q = tmp_path / "x.png"
    q.write_bytes(b"")
    with pytest.raises(InputError, match="Unsupported"):
        label_source(q)


def test_label_source_zarr(tmp_path):
    zarr = pytest.importorskip("zarr")
    path = tmp_path / "labels.zarr"
    z = zarr.open_array(str(path), mode="w", shape=LAB.shape, dtype="i4", chunks=(5, 5))
    z[:] = LAB
    for obj in (path, z):
        src = label_source(obj)
        np.testing.assert_array_equal(src.read_region(0, 0, 14, 12), LAB)
    zs = zarr.open_array(str(tmp_path / "s.zarr"), mode="w", shape=(3, 3), dtype="i4")
    zs[:] = -1
    with pytest.raises(InputError, match="negative"):
        label_source(zs).read_region(0, 0, 3, 3)


def _feature(coords, *, cls=None, obj="detection", nucleus=None):
    f = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [coords]},
         "properties": {"objectType": obj}}
    if cls:
        f["properties"]["classification"] = {"name": cls, "color": [255, 0, 0]}
    if nucleus is not None:
        f["nucleusGeometry"] = {"type": "Polygon", "coordinates": [nucleus]}
    return f


def test_geojson_round_trip(tmp_path):
    square = [[10, 20], [14, 20], [14, 22], [10, 22], [10, 20]]  # 4 x 2, centroid (12, 21)
    multi = {"type": "Feature", "properties": {"classification": {"name": "Stroma"}},
             "geometry": {"type": "MultiPolygon", "coordinates": [
                 [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]],
                 [[[50, 50], [60, 50], [60, 60], [50, 60], [50, 50]]]]}}
    cell = _feature([[0, 0], [40, 0], [40, 40], [0, 40]], obj="cell",
                    nucleus=[[18, 18], [22, 18], [22, 22], [18, 22], [18, 18]])
    fc = {"type": "FeatureCollection", "features": [_feature(square, cls="Tumor"), multi, cell]}
    path = tmp_path / "slide_a.geojson"
    path.write_text(json.dumps(fc))
    df = nuclei_from_geojson(path, mpp=0.5)
    assert list(df["nucleus_id"]) == [1, 2, 3] and (df["slide"] == "slide_a").all()
    np.testing.assert_allclose(df[["x", "y"]].to_numpy(), [[12, 21], [55, 55], [20, 20]])
    np.testing.assert_allclose(df["area_px"], [8, 100, 16])
    np.testing.assert_allclose(df["area_um2"], [2, 25, 4])
    assert list(df["cell_type"].astype(object).fillna("?")) == ["Tumor", "Stroma", "?"]
    assert df["contour"][0].shape == (4, 2) and df["contour"][0].dtype == np.float32
    # a plain list of features and a single feature work too
    assert len(nuclei_from_geojson(fc["features"])) == 3
    assert len(nuclei_from_geojson(fc["features"][0])) == 1


def test_geojson_errors(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.geojson.*not valid JSON"):
        nuclei_from_geojson(bad)
    with pytest.raises(InputError, match="does not exist"):
        nuclei_from_geojson(tmp_path / "missing.geojson")
    with pytest.raises(InputError, match="feature 0.*at least 3"):
        nuclei_from_geojson([_feature([[0, 0], [1, 1]])])
    with pytest.raises(InputError, match="LineString"):
        nuclei_from_geojson([{"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}])
    with pytest.raises(InputError, match="Point"):
        nuclei_from_geojson([{"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}}])
    with pytest.raises(InputError, match="FeatureCollection"):
        nuclei_from_geojson({"type": "Nonsense"})


def test_csv_round_trip(tmp_path):
    path = tmp_path / "cells.csv"
    pd.DataFrame({"cx": [1.5, 10.0], "cy": [2.0, 20.0], "kind": ["tumor", "immune"], "p": [0.9, 0.4]}).to_csv(
        path, index=False)
    df = nuclei_from_csv(path, x="cx", y="cy", type="kind", score="p", mpp=0.25)
    np.testing.assert_allclose(df[["x", "y"]].to_numpy(), [[1.5, 2.0], [10.0, 20.0]])
    assert list(df["cell_type"]) == ["tumor", "immune"] and list(df["score"]) == [0.9, 0.4]
    assert df["contour"].isna().all() and df["area_px"].isna().all() and df["area_um2"].isna().all()
    assert list(df["nucleus_id"]) == [1, 2] and (df["slide"] == "cells").all()
    tsv = tmp_path / "cells.tsv"
    tsv.write_text("x\ty\n1\t2\n3\t4\n")
    assert len(nuclei_from_csv(tsv)) == 2


def test_csv_errors(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"c.csv.*lacks column"):
        nuclei_from_csv(path)
    path.write_text("x,y\n1,2\nfoo,3\n")
    with pytest.raises(InputError, match="'x' is not numeric"):
        nuclei_from_csv(path)
    path.write_text("x,y\n1,2\n,3\n")
    with pytest.raises(InputError, match="missing or infinite"):
        nuclei_from_csv(path)
