"""Benchmark data-set loaders: tiny fake layouts (patch folders, Visium, HEST-1k, spots, GeoJSON) and the
real sets in ../shared/data (skipped when absent)."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import tissuegraph as tg
from tissuegraph import InputError
from tissuegraph import _keys as K
from tissuegraph.datasets import (
    BenchDataset,
    hest_gene_selection,
    load_crchisto_patches,
    load_her2st,
    load_hest,
    load_kather2016,
    load_patch_folder,
    load_regions,
    load_spots,
    load_visium,
    mosaic,
)


def _png(path, value, shape=(20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*shape, 3), value, np.uint8)).save(path)


def _counts(ids, n_genes=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.poisson(rng.uniform(0.5, 20, n_genes), size=(len(ids), n_genes)).astype(np.float32)
    return ad.AnnData(X=X, obs=pd.DataFrame(index=list(ids)), var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]))


def test_mosaic_places_every_image_at_its_box():
    ims = [np.full((10, 12, 3), v, np.uint8) for v in (10, 20, 30)] + [np.full((6, 5, 3), 40, np.uint8)]
    canvas, boxes = mosaic(ims, gap_px=3, n_cols=2)
    assert canvas.shape == (3 + 2 * 13, 3 + 2 * 15, 3)
    for im, b in zip(ims, boxes):
        c0, r0 = int(b[0] + 0.5), int(b[1] + 0.5)
        assert b[2] - b[0] == im.shape[1] and b[3] - b[1] == im.shape[0]
        assert (canvas[r0:r0 + im.shape[0], c0:c0 + im.shape[1]] == im).all()
    assert canvas[0, 0, 0] == 246                                  # glass
    with pytest.raises(InputError):
        mosaic([np.zeros((4, 4), np.uint8)])
    big = np.zeros((1, 1, 3), np.uint8)
    with pytest.raises(InputError, match="GB"):
        mosaic([big] * 4, gap_px=40_000)                       # a 120k x 120k canvas is refused up front


def test_patch_folder(tmp_path):
    for cls, v in (("01_TUMOR", 50), ("02_STROMA", 200)):
        for k in range(3):
            _png(tmp_path / cls / f"{k}_CRC-Prim-HE-0{k}_00{k}_Row_1_Col_1.png", v + k)
    ds = load_patch_folder(tmp_path, mpp=0.5, groups=r"(CRC-Prim-HE-\d+_\w+?)_Row", progress_bar=False)
    assert isinstance(ds, BenchDataset) and ds.kind == "region" and ds.n_samples == 6
    assert sorted(ds.obs[K.obs.label].astype(str).unique()) == ["STROMA", "TUMOR"]
    assert ds.obs["group"].iloc[0] == "CRC-Prim-HE-00_000"
    # each sample's region covers exactly its patch in the mosaic
    for (_, row), reg in zip(ds.obs.iterrows(), ds.regions):
        x0, y0, x1, y1 = (int(round(v + 0.5)) for v in reg.bounds)
        patch = np.asarray(Image.open(row["file"]).convert("RGB"))
        assert (ds.image[y0:y1, x0:x1] == patch).all()
    assert ds.tasks[0]["group_key"] == "group"
    sub = load_patch_folder(tmp_path, mpp=0.5, limit_per_class=2, progress_bar=False)
    assert sub.n_samples == 4 and sub.obs["group"].is_unique      # no pattern: one group per patch
    with pytest.raises(InputError, match="does not exist"):
        load_patch_folder(tmp_path / "nope", mpp=0.5)
    with pytest.raises(InputError, match="does not match"):
        load_patch_folder(tmp_path, mpp=0.5, groups=r"XYZ(\d+)")
    with pytest.raises(InputError):
        load_patch_folder(tmp_path, mpp=None)


def _visium(tmp_path, new_style: bool):
    sp = tmp_path / "outs" / "spatial"
    sp.mkdir(parents=True)
    pos = pd.DataFrame({"barcode": ["A-1", "B-1", "C-1", "D-1"], "in_tissue": [1, 1, 0, 1],
                        "array_row": [0, 0, 1, 1], "array_col": [0, 2, 1, 3],
                        "pxl_row_in_fullres": [100, 100, 200, 200], "pxl_col_in_fullres": [50, 250, 150, 350]})
    if new_style:
        pos.to_csv(sp / "tissue_positions.csv", index=False)
    else:
        pos.to_csv(sp / "tissue_positions_list.csv", index=False, header=False)
    (sp / "scalefactors_json.json").write_text(json.dumps({"spot_diameter_fullres": 110.0, "tissue_hires_scalef": 0.5}))
    _png(sp / "tissue_hires_image.png", 200, shape=(150, 200))
    _png(tmp_path / "full.png", 200, shape=(300, 400))
    return tmp_path / "outs"


@pytest.mark.parametrize("new_style", [True, False])
def test_visium(tmp_path, new_style):
    outs = _visium(tmp_path, new_style)
    counts = _counts(["A-1", "B-1", "C-1", "D-1"])
    ds = load_visium(outs, image=tmp_path / "full.png", counts=counts, genes=["g1", "g3"])
    assert ds.kind == "spot" and list(ds.obs.index) == ["A-1", "B-1", "D-1"]     # in_tissue only
    np.testing.assert_allclose(ds.centers, [[50, 100], [250, 100], [350, 200]])
    assert ds.mpp == pytest.approx(55.0 / 110.0) and ds.diameter_um == 55.0
    expr, names = ds.targets["expression"]
    assert names == ["g1", "g3"]
    np.testing.assert_allclose(expr, np.log1p(counts[["A-1", "B-1", "D-1"], ["g1", "g3"]].X), rtol=1e-6)
    # without a full-resolution image: the hires image with scaled positions and µm/px
    hi = load_visium(outs / "spatial", counts=counts, genes=["g1"])
    np.testing.assert_allclose(hi.centers, [[25, 50], [125, 50], [175, 100]])
    assert hi.mpp == pytest.approx(1.0)
    (outs / "spatial" / "scalefactors_json.json").unlink()
    with pytest.raises(InputError, match="scalefactors_json.json"):
        load_visium(outs)


def test_hest_layout(tmp_path):
    import tifffile

    for d in ("wsis", "st", "metadata"):
        (tmp_path / d).mkdir()
    tifffile.imwrite(tmp_path / "wsis" / "S1.tif", np.full((64, 64, 3), 220, np.uint8))
    a = _counts(["s0", "s1", "s2"])
    a.obs["pxl_col_in_fullres"] = [10.0, 30.0, 50.0]
    a.obs["pxl_row_in_fullres"] = [20.0, 20.0, 40.0]
    a.write_h5ad(tmp_path / "st" / "S1.h5ad")
    (tmp_path / "metadata" / "S1.json").write_text(json.dumps({"pixel_size_um_estimated": 0.5, "spot_diameter": 55.0}))
    ds = load_hest(tmp_path, "S1", genes=["g0", "g2"])
    assert ds.slide_id == "S1" and ds.mpp == 0.5 and ds.diameter_um == 55.0
    np.testing.assert_allclose(ds.centers, [[10, 20], [30, 20], [50, 40]])
    assert ds.targets["expression"][0].shape == (3, 2)
    assert isinstance(load_hest(tmp_path, ["S1"], genes=["g0"]), list)
    (tmp_path / "metadata" / "S1.json").unlink()
    with pytest.raises(InputError, match="metadata"):
        load_hest(tmp_path, "S1", genes=["g0"])


def test_hest_gene_selection_matches_scanpy_and_filters_rare_genes():
    import scanpy as sc

    rng = np.random.default_rng(1)
    X = rng.negative_binomial(2, 0.3, size=(200, 40)).astype(np.float32)
    X[:, 0] = 0
    X[:5, 0] = 500                                           # very variable but detected in 2.5 % of spots
    a = ad.AnnData(X=X, var=pd.DataFrame(index=[f"g{i}" for i in range(40)]))
    genes = hest_gene_selection(a, n_top=10)
    assert len(genes) == 10 and "g0" not in genes
    ref = a[:, 1:].copy()
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    sc.pp.highly_variable_genes(ref, n_top_genes=10, flavor="seurat")
    top = ref.var.sort_values("dispersions_norm", ascending=False, kind="stable").index[:10]
    assert genes == list(top)
    assert set(genes) <= set(ref.var_names[ref.var["highly_variable"]])
    with pytest.raises(InputError, match="detected"):
        hest_gene_selection(a, n_top=50)


def test_generic_spots_and_errors(tmp_path):
    _png(tmp_path / "img.png", 200, shape=(50, 50))
    spots = pd.DataFrame({"barcode": ["a", "b"], "x_px": [10.0, 30.0], "y_px": [10.0, 30.0]})
    ds = load_spots(tmp_path / "img.png", spots, mpp=1.0, diameter_um=10.0)
    assert ds.n_samples == 2 and not ds.targets and not ds.tasks
    with pytest.raises(InputError, match="x_col"):
        load_spots(tmp_path / "img.png", spots.rename(columns={"x_px": "x"}), mpp=1.0, diameter_um=10.0)
    with pytest.raises(InputError, match="obs_names"):
        load_spots(tmp_path / "img.png", spots, mpp=1.0, diameter_um=10.0, counts=_counts(["x", "y"]))
    with pytest.raises(InputError, match="does not exist"):
        load_spots(tmp_path / "missing.png", spots, mpp=1.0, diameter_um=10.0)
    with pytest.raises(InputError, match="does not exist"):
        load_spots(tmp_path / "img.png", tmp_path / "none.csv", mpp=1.0, diameter_um=10.0)
    with pytest.raises(InputError, match="missing"):
        load_her2st(tmp_path)


def test_qupath_geojson_regions(tmp_path):
    _png(tmp_path / "img.png", 200, shape=(60, 60))
    sq = lambda x0, y0, s: {"type": "Polygon", "coordinates": [[[x0, y0], [x0 + s, y0], [x0 + s, y0 + s],
                                                                [x0, y0 + s], [x0, y0]]]}
    gj = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "u1", "geometry": sq(0, 0, 20),
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
        {"type": "Feature", "id": "u2", "geometry": sq(30, 30, 20), "properties": {"classification": {"name": "Stroma"}}},
        {"type": "Feature", "id": "u3", "geometry": sq(5, 40, 10), "properties": {}}]}
    p = tmp_path / "a.geojson"
    p.write_text(json.dumps(gj))
    ds = load_regions(tmp_path / "img.png", p, mpp=0.5)
    assert list(ds.obs.index) == ["u1", "u2"] and list(ds.obs[K.obs.label].astype(str)) == ["Tumor", "Stroma"]
    assert ds.regions[0].bounds == (-0.5, -0.5, 19.5, 19.5)           # QuPath corner -> pixel-centre convention
    with pytest.raises(InputError, match="not found"):
        load_regions(tmp_path / "img.png", tmp_path / "b.geojson", mpp=0.5)
    with pytest.raises(InputError, match="polygons"):
        load_regions(tmp_path / "img.png", {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]},
                                            "properties": {"classification": {"name": "x"}}}, mpp=0.5)


def test_bench_dataset_validates():
    obs = pd.DataFrame({"label": ["a", "b"]}, index=["s0", "s1"])
    with pytest.raises(InputError, match="regions"):
        BenchDataset(name="x", image=np.zeros((4, 4, 3), np.uint8), mpp=1.0, slide_id="x", kind="region", obs=obs)
    with pytest.raises(InputError, match="neither"):
        BenchDataset(name="x", image=np.zeros((4, 4, 3), np.uint8), mpp=1.0, slide_id="x", kind="spot", obs=obs,
                     centers=np.zeros((2, 2)), diameter_um=5.0,
                     tasks=[dict(name="t", label_key="missing", task="classification", group_key=None)])


# ------------------------------------------------------------------------------------- real data
@pytest.mark.shared_data
def test_kather2016(shared_data):
    ds = load_kather2016(limit_per_class=3, progress_bar=False)
    assert ds.n_samples == 24 and ds.obs[K.obs.label].nunique() == 8 and ds.mpp == 0.495
    assert ds.obs["group"].str.match(r"^CRC-Prim-HE-\d+\w*").all() and not ds.obs["group"].str.contains("Row").any()
    assert ds.obs["slide_name"].str.match(r"^CRC-Prim-HE-\d+$").all()
    full = pd.read_csv(shared_data / "kather2016" / "index.csv")
    src = full["file"].str.extract(r"(CRC-Prim-HE-.+?)_Row_")[0]
    assert src.notna().all() and src.nunique() < len(full)         # tiles share source images: group them


@pytest.mark.shared_data
def test_crchisto_patches(shared_data):
    ds = load_crchisto_patches(split="train", limit_images=3, progress_bar=False)
    assert ds.n_samples > 3 and set(ds.obs[K.obs.label].astype(str)) <= {"epithelial", "fibroblast", "inflammatory",
                                                                          "others"}
    assert (ds.obs["n_annotated"] >= 5).all() and ds.obs["group"].nunique() <= 3
    fr = ds.obs[[c for c in ds.obs.columns if c.startswith("frac_")]].to_numpy()
    np.testing.assert_allclose(fr.sum(axis=1), 1.0)
    assert (fr.max(axis=1) >= 0.5).all()


@pytest.mark.shared_data
def test_her2st(shared_data):
    ds = load_her2st()
    assert ds.kind == "spot" and ds.n_samples == 283 and ds.diameter_um == pytest.approx(100.0, rel=0.01)
    assert ds.mpp == pytest.approx(0.688, rel=0.01)
    expr, genes = ds.targets["expression"]
    assert expr.shape == (283, 50) and len(set(genes)) == 50
    counts = ad.read_h5ad(shared_data / "her2st" / "B4" / "counts.h5ad")
    ref = np.log1p(counts[list(ds.obs.index), genes].X.toarray())
    np.testing.assert_allclose(expr, ref, rtol=1e-6)
    assert tg.datasets.load_her2st(shared_data / "her2st").n_samples == 283
