"""Sample constructors (grid, regions, spots, images, groups) and the stored membership."""

from __future__ import annotations

import json
import logging
import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import shapely
from shapely.geometry import Polygon, box

import tissuegraph as tg
from tissuegraph import _keys as K
from tissuegraph._anndata import set_slide_metadata


def make_cells(xy, *, mpp=1.0, slides=None, obs=None):
    """Cells AnnData with centroids ``xy`` (level-0 px); ``mpp`` a number or {slide: mpp}."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    n = len(xy)
    df = pd.DataFrame(index=[f"c{i}" for i in range(n)])
    df["slide"] = pd.Categorical(["s1"] * n if slides is None else list(slides))
    for k, v in (obs or {}).items():
        df[k] = v
    cells = ad.AnnData(obs=df)
    cells.obsm["spatial"] = xy
    mpps = mpp if isinstance(mpp, dict) else {s: mpp for s in df["slide"].cat.categories}
    for s, m in mpps.items():
        set_slide_metadata(cells, s, mpp=m)
    return cells


def members(samples, cells, sample_id):
    """obs_names of the member cells of one sample (sorted)."""
    m = tg.graph.sample_membership(samples, cells)
    row = samples.obs_names.get_loc(sample_id)
    return sorted(cells.obs_names[m[row].indices])


# --------------------------------------------------------------------------------------------- grid
def test_grid_known_patches_half_open():
    # mpp 1: 10 µm patches = 10 px; patch c covers x in [-0.5 + 10c, 9.5 + 10c)
    cells = make_cells([[0, 0], [9.4, 0], [9.5, 0], [25, 15], [-3, 0]])
    s = tg.graph.grid_samples(cells, size_um=10)
    assert list(s.obs_names) == ["s1__r0_c-1", "s1__r0_c0", "s1__r0_c1", "s1__r1_c2"]
    assert s.obs["n_cells"].tolist() == [1, 2, 1, 1]
    assert members(s, cells, "s1__r0_c0") == ["c0", "c1"]
    assert members(s, cells, "s1__r0_c1") == ["c2"]  # x = 9.5 is on the next patch's edge
    row = s.obs.loc["s1__r0_c0"]
    assert (row["bbox_x0"], row["bbox_y0"], row["bbox_x1"], row["bbox_y1"]) == (-0.5, -0.5, 9.5, 9.5)
    assert row["area_um2"] == pytest.approx(100.0)
    assert row["sample_kind"] == "grid"
    np.testing.assert_allclose(s.obsm["spatial"][1], [4.5, 4.5])
    assert s.obs["slide"].dtype == "category"
    assert s.obsm[K.obsm.membership].shape == (4, 5)


def test_grid_units_follow_mpp():
    # mpp 0.5 µm/px: 10 µm = 20 px, so cells 19 px apart share a patch
    cells = make_cells([[0, 0], [19, 0], [20, 0]], mpp=0.5)
    s = tg.graph.grid_samples(cells, size_um=10)
    assert s.obs["n_cells"].tolist() == [2, 1]
    assert s.obs["bbox_x1"].iloc[0] == pytest.approx(19.5)


def test_grid_overlapping_stride():
    cells = make_cells([[12, 12], [1, 1]])
    s = tg.graph.grid_samples(cells, size_um=10, stride_um=5)
    m = tg.graph.sample_membership(s, cells)
    per_cell = np.asarray(m.sum(axis=0)).ravel()
    # (12, 12): patches starting at 4.5 and 9.5 in x and in y; (1, 1): starting at -5.5 and -0.5
    assert per_cell.tolist() == [4, 4]
    for sid in s.obs_names:
        x0, y0, x1, y1 = s.obs.loc[sid, ["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]]
        inside = [c for c, (x, y) in zip(cells.obs_names, cells.obsm["spatial"]) if x0 <= x < x1 and y0 <= y < y1]
        assert members(s, cells, sid) == sorted(inside)


def test_grid_min_cells():
    cells = make_cells([[0, 0], [1, 1], [2, 2], [30, 30]])
    full = tg.graph.grid_samples(cells, size_um=10, min_cells=0)
    assert full.n_obs == 16  # 4 x 4 patches cover the bounding box (0..30)
    assert full.obs["n_cells"].sum() == 4
    assert (full.obs["n_cells"] == 0).sum() == 14
    some = tg.graph.grid_samples(cells, size_um=10, min_cells=2)
    assert list(some.obs_names) == ["s1__r0_c0"]
    assert some.obs["n_cells"].tolist() == [3]


def test_grid_two_slides_own_mpp():
    cells = make_cells([[0, 0], [15, 0], [0, 0], [15, 0]], slides=["a", "a", "b", "b"], mpp={"a": 1.0, "b": 0.5})
    s = tg.graph.grid_samples(cells, size_um=10)
    # slide a: 10 px patches -> 2 patches; slide b: 20 px patches -> 1 patch
    assert list(s.obs_names) == ["a__r0_c0", "a__r0_c1", "b__r0_c0"]
    assert s.obs["slide"].tolist() == ["a", "a", "b"]
    assert members(s, cells, "b__r0_c0") == ["c2", "c3"]
    only_b = tg.graph.grid_samples(cells, size_um=10, slide="b")
    assert list(only_b.obs_names) == ["b__r0_c0"]


def test_grid_errors():
    cells = make_cells([[0, 0]])
    with pytest.raises(tg.InputError, match="size_um"):
        tg.graph.grid_samples(cells, size_um=-1)
    with pytest.raises(tg.InputError, match="min_cells"):
        tg.graph.grid_samples(cells, size_um=10, min_cells=-1)
    nompp = make_cells([[0, 0]])
    nompp.uns["spatial"]["s1"]["scalefactors"]["mpp"] = float("nan")
    with pytest.raises(tg.MissingMppError, match="s1"):
        tg.graph.grid_samples(nompp, size_um=10)
    bad = make_cells([[0, 0], [1, 1]])
    bad.obsm["spatial"][1, 0] = np.nan
    with pytest.raises(tg.InputError, match="NaN"):
        tg.graph.grid_samples(bad, size_um=10)
    with pytest.raises(tg.InputError, match="AnnData"):
        tg.graph.grid_samples(np.zeros((3, 2)), size_um=10)


# ------------------------------------------------------------------------------------------ regions
def qupath_geojson():
    """Two annotations in QuPath's export form (pixel corners at integers)."""
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "id": "0f1c6f5e-1111-4c1b-9a55-000000000001",
             "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]},
             "properties": {"objectType": "annotation", "name": "roi A", "isLocked": False,
                            "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
            {"type": "Feature", "id": "0f1c6f5e-1111-4c1b-9a55-000000000002",
             "geometry": {"type": "MultiPolygon", "coordinates": [
                 [[[5, 0], [20, 0], [20, 10], [5, 10], [5, 0]]],
                 [[[100, 100], [110, 100], [110, 110], [100, 110], [100, 100]]]]},
             "properties": {"objectType": "annotation",
                            "classification": {"name": "Stroma", "color": [0, 200, 0]}}},
        ],
    }


def test_regions_qupath_geojson_overlap_and_pixel_origin(tmp_path):
    # in tissuegraph coords the QuPath square [0, 10] is [-0.5, 9.5]
    xy = [[-0.2, 5], [9.6, 5], [7, 5], [15, 5], [105, 105], [50, 50]]
    cells = make_cells(xy, mpp=0.5)
    gj = qupath_geojson()
    s = tg.graph.region_samples(cells, gj)
    ids = [f["id"] for f in gj["features"]]
    assert list(s.obs_names) == ids
    assert s.obs["label"].tolist() == ["Tumor", "Stroma"]
    assert s.obs["name"].tolist()[0] == "roi A"
    assert s.obs["object_type"].tolist() == ["annotation", "annotation"]
    assert s.obs["sample_kind"].tolist() == ["region", "region"]
    assert members(s, cells, ids[0]) == ["c0", "c2"]  # c1 (9.6) is beyond 9.5
    assert members(s, cells, ids[1]) == ["c1", "c2", "c3", "c4"]  # c2 is in both (overlap)
    # areas: 100 px² and 150 + 100 px² at 0.25 µm²/px²
    np.testing.assert_allclose(s.obs["area_um2"], [25.0, 62.5])
    # geometry is stored in tissuegraph coordinates
    g = shapely.from_wkt(s.obs["geometry_wkt"].iloc[0])
    assert g.bounds == (-0.5, -0.5, 9.5, 9.5)
    np.testing.assert_allclose(s.obsm["spatial"][0], [4.5, 4.5])

    as_center = tg.graph.region_samples(cells, gj, pixel_origin="center")
    assert members(as_center, cells, ids[0]) == ["c1", "c2"]

    # the same from a file and from a JSON string; the old QuPath form (a bare list of features)
    path = tmp_path / "annotations.geojson"
    path.write_text(json.dumps(gj))
    for src in (path, str(path), json.dumps(gj), gj["features"]):
        again = tg.graph.region_samples(cells, src)
        assert (again.obsm["cells"] != s.obsm["cells"]).nnz == 0
        assert again.obs["label"].tolist() == ["Tumor", "Stroma"]


def test_regions_shapely_with_labels_and_holes():
    square_with_hole = Polygon([(0, 0), (20, 0), (20, 20), (0, 20)], holes=[[(5, 5), (15, 5), (15, 15), (5, 15)]])
    cells = make_cells([[2, 2], [10, 10], [18, 3], [30, 30]])
    s = tg.graph.region_samples(cells, [square_with_hole, box(25, 25, 35, 35)], labels=["ring", "box"])
    assert list(s.obs_names) == ["s1__region0", "s1__region1"]
    assert s.obs["label"].tolist() == ["ring", "box"]
    assert members(s, cells, "s1__region0") == ["c0", "c2"]  # c1 sits in the hole
    assert members(s, cells, "s1__region1") == ["c3"]
    np.testing.assert_allclose(s.obs["area_um2"], [300.0, 100.0])


def test_regions_boundary_is_outside():
    cells = make_cells([[0, 5], [5, 5]])
    s = tg.graph.region_samples(cells, [box(0, 0, 10, 10)])
    assert members(s, cells, "s1__region0") == ["c1"]


def test_regions_invalid_polygon_repaired(caplog):
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}
    cells = make_cells([[2.5, 5], [5, 2.5]], mpp=1.0)
    with caplog.at_level(logging.WARNING, logger="tissuegraph"):
        s = tg.graph.region_samples(cells, bowtie, pixel_origin="center")
    assert "make_valid" in caplog.text
    assert s.obs["area_um2"].iloc[0] == pytest.approx(50.0)
    assert members(s, cells, "s1__region0") == ["c0"]  # left triangle yes, bottom triangle is not part


def test_regions_errors():
    cells = make_cells([[0, 0]])
    with pytest.raises(tg.InputError, match="Point"):
        tg.graph.region_samples(cells, {"type": "Point", "coordinates": [0, 0]})
    with pytest.raises(tg.InputError, match="Point"):
        tg.graph.region_samples(cells, {"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]},
                                        "properties": {}})
    with pytest.raises(tg.InputError, match="not found"):
        tg.graph.region_samples(cells, "/nonexistent/annotations.geojson")
    with pytest.raises(tg.InputError, match="no polygon"):
        tg.graph.region_samples(cells, {"type": "FeatureCollection", "features": []})
    with pytest.raises(tg.InputError, match="labels"):
        tg.graph.region_samples(cells, [box(0, 0, 1, 1)], labels=["a", "b"])
    two = make_cells([[0, 0], [0, 0]], slides=["a", "b"])
    with pytest.raises(tg.InputError, match="slide="):
        tg.graph.region_samples(two, [box(-1, -1, 1, 1)])


def test_regions_mapping_per_slide():
    cells = make_cells([[0, 0], [0, 0], [50, 50]], slides=["a", "b", "b"], mpp={"a": 1.0, "b": 2.0})
    s = tg.graph.region_samples(cells, {"a": [box(-1, -1, 1, 1)], "b": [box(-1, -1, 1, 1), box(40, 40, 60, 60)]})
    assert list(s.obs_names) == ["a__region0", "b__region1", "b__region2"]
    assert members(s, cells, "a__region0") == ["c0"]
    assert members(s, cells, "b__region1") == ["c1"]  # same place, other slide
    assert members(s, cells, "b__region2") == ["c2"]
    np.testing.assert_allclose(s.obs["area_um2"], [4.0, 16.0, 1600.0])


# -------------------------------------------------------------------------------------------- spots
def test_spots_membership_inclusive_and_metadata():
    cells = make_cells([[10, 0], [10.01, 0], [6, 8], [100, 100], [0, 0]], mpp=0.5)
    meta = pd.DataFrame({"label": ["tumour", "normal"], "umi": [1200, 800]}, index=["AAAC-1", "TTTG-1"])
    s = tg.graph.spot_samples(cells, [[0, 0], [100, 95]], diameter_um=10, obs=meta)  # radius 10 px
    assert list(s.obs_names) == ["AAAC-1", "TTTG-1"]
    assert members(s, cells, "AAAC-1") == ["c0", "c2", "c4"]  # on the circle is inside
    assert members(s, cells, "TTTG-1") == ["c3"]
    assert s.obs["label"].tolist() == ["tumour", "normal"]
    assert s.obs["umi"].tolist() == [1200, 800]
    np.testing.assert_allclose(s.obs["area_um2"], math.pi * 25)
    np.testing.assert_allclose(s.obsm["spatial"], [[0, 0], [100, 95]])
    assert s.obs["diameter_um"].iloc[0] == 10


def test_spots_overlap_default_ids_and_slides():
    cells = make_cells([[0, 0], [5, 0], [0, 0]], slides=["a", "a", "b"])
    s = tg.graph.spot_samples(cells, [[0, 0], [4, 0], [0, 0]], diameter_um=4, slide=["a", "a", "b"])
    assert list(s.obs_names) == ["a__spot0", "a__spot1", "b__spot2"]
    assert members(s, cells, "a__spot0") == ["c0"]
    assert members(s, cells, "a__spot1") == ["c1"]
    assert members(s, cells, "b__spot2") == ["c2"]
    big = tg.graph.spot_samples(cells, [[0, 0], [4, 0]], diameter_um=12, slide="a")
    assert members(big, cells, "a__spot0") == ["c0", "c1"]
    assert members(big, cells, "a__spot1") == ["c0", "c1"]
    with pytest.raises(tg.InputError, match="shape"):
        tg.graph.spot_samples(cells, [1, 2, 3], diameter_um=4, slide="a")
    with pytest.raises(tg.InputError, match="diameter_um"):
        tg.graph.spot_samples(cells, [[0, 0]], diameter_um=0, slide="a")


# ------------------------------------------------------------------------------------ images, groups
def test_image_samples_hull_and_given_area():
    cells = make_cells([[0, 0], [20, 0], [20, 20], [0, 20], [10, 10], [5, 5], [6, 6]],
                       slides=["a"] * 5 + ["b"] * 2, mpp=0.5)
    s = tg.graph.image_samples(cells)
    assert list(s.obs_names) == ["a", "b"]
    assert s.obs["n_cells"].tolist() == [5, 2]
    np.testing.assert_allclose(s.obs["area_um2"], [100.0, 0.0])  # 400 px² hull; 2 cells have no area
    np.testing.assert_allclose(s.obsm["spatial"][0], [10, 10])
    given = tg.graph.image_samples(cells, area_um2={"a": 1e6, "b": 2e6})
    np.testing.assert_allclose(given.obs["area_um2"], [1e6, 2e6])
    with pytest.raises(tg.InputError, match="'b'"):
        tg.graph.image_samples(cells, area_um2={"a": 1.0})


def test_group_samples():
    region = pd.Categorical(["tumour", "tumour", "stroma", None, "tumour"], categories=["stroma", "tumour"])
    cells = make_cells([[0, 0], [10, 0], [5, 5], [7, 7], [0, 10]], obs={"region": region})
    s = tg.graph.group_samples(cells, "region")
    assert list(s.obs_names) == ["s1__stroma", "s1__tumour"]
    assert s.obs["region"].tolist() == ["stroma", "tumour"]
    assert members(s, cells, "s1__tumour") == ["c0", "c1", "c4"]
    np.testing.assert_allclose(s.obs["area_um2"], [0.0, 50.0])
    with pytest.raises(tg.InputError, match="no column"):
        tg.graph.group_samples(cells, "nope")


# -------------------------------------------------------------------------------------- membership
def test_membership_follows_cell_names_not_order():
    rng = np.random.default_rng(0)
    cells = make_cells(rng.uniform(0, 100, (50, 2)))
    s = tg.graph.grid_samples(cells, size_um=30, stride_um=20)
    perm = rng.permutation(cells.n_obs)
    shuffled = cells[perm].copy()
    for sid in s.obs_names:
        assert members(s, shuffled, sid) == members(s, cells, sid)
    # extra cells are fine; missing member cells are an error
    with pytest.raises(tg.InputError, match="subset"):
        tg.graph.sample_membership(s, cells[5:].copy())


def test_membership_without_names_falls_back_only_when_shapes_match(caplog):
    cells = make_cells([[0, 0], [20, 0]])
    s = tg.graph.grid_samples(cells, size_um=10)
    del s.uns[K.uns.membership]
    with caplog.at_level(logging.WARNING, logger="tissuegraph"):
        m = tg.graph.sample_membership(s, cells)
    assert "obs_names" in caplog.text
    assert m.shape == (2, 2)
    with pytest.raises(tg.InputError, match="columns"):
        tg.graph.sample_membership(s, make_cells([[0, 0]]))
    with pytest.raises(tg.InputError, match="missing"):
        tg.graph.sample_membership(ad.AnnData(obs=pd.DataFrame(index=["a"])), cells)


def test_samples_h5ad_round_trip(tmp_path):
    cells = make_cells([[0, 0], [9.6, 5], [7, 5], [15, 5], [105, 105]], mpp=0.5)
    s = tg.graph.region_samples(cells, qupath_geojson())
    path = tmp_path / "samples.h5ad"
    s.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert list(back.obs_names) == list(s.obs_names)
    assert sp.issparse(back.obsm["cells"])
    assert (back.obsm["cells"] != s.obsm["cells"]).nnz == 0
    assert list(back.uns["cells"]["obs_names"]) == list(cells.obs_names)
    assert back.uns["cells"]["params"]["kind"] == "region"
    assert back.obs["label"].tolist() == ["Tumor", "Stroma"]
    assert back.obs["geometry_wkt"].tolist() == s.obs["geometry_wkt"].tolist()
    m0 = tg.graph.sample_membership(s, cells)
    m1 = tg.graph.sample_membership(back, cells)
    assert (m0 != m1).nnz == 0
    # subsetting the samples keeps membership rows aligned
    sub = back[[1]]
    assert members(sub, cells, sub.obs_names[0]) == members(s, cells, s.obs_names[1])


def test_unused_slide_categories_are_ignored():
    cells = make_cells([[0, 0], [5, 5]])
    cells.obs["slide"] = cells.obs["slide"].cat.add_categories(["empty_slide"])  # no cells, no mpp
    s = tg.graph.region_samples(cells, [box(-1, -1, 10, 10)])
    assert s.obs["n_cells"].tolist() == [2]
    assert tg.graph.grid_samples(cells, size_um=10).n_obs == 1
    assert list(tg.graph.image_samples(cells).obs_names) == ["s1"]
