"""Samples that know their tissue: image/tissue areas, tissue fraction, densities on tissue (issue 16).

References are independent of tissuegraph's formulas: shapely intersections of the sample geometry
with the union of the mask's tissue pixels, pixel counts of a full-resolution truth, and the synthetic
slide's own tissue field.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import shapely

import tissuegraph as tg
from tissuegraph import _keys as K
from tissuegraph.io import TissueMask

from tissuegraph._anndata import set_slide_metadata


def make_cells(xy, *, mpp=1.0):
    """Cells AnnData with centroids ``xy`` (level-0 px) on one slide 's1'."""
    import anndata as ad

    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    obs = pd.DataFrame(index=[f"c{i}" for i in range(len(xy))])
    obs["slide"] = pd.Categorical(["s1"] * len(xy))
    cells = ad.AnnData(obs=obs)
    cells.obsm["spatial"] = xy
    set_slide_metadata(cells, "s1", mpp=mpp)
    return cells


def _tissue_union(tm: TissueMask):
    """The mask's tissue pixels as one shapely geometry in tissuegraph coordinates (pixel centres at
    integers: mask pixel (r, c) covers [c dx - .5, (c+1) dx - .5) x [r dy - .5, (r+1) dy - .5))."""
    dx, dy = tm.downsample
    r, c = np.nonzero(tm.mask)
    return shapely.union_all(shapely.box(c * dx - 0.5, r * dy - 0.5, (c + 1) * dx - 0.5, (r + 1) * dy - 0.5))


@pytest.fixture(scope="module")
def random_mask():
    rng = np.random.default_rng(3)
    # a blobby mask on a 37 x 45 grid over a 700 x 530 px image: dx, dy are not integers
    m = rng.random((37, 45)) < 0.55
    return TissueMask(m, (700, 530))


def test_grid_areas_equal_shapely(random_mask):
    rng = np.random.default_rng(0)
    W, H = random_mask.level0_size
    cells = make_cells(rng.uniform(-0.5, [W - 0.5, H - 0.5], (3000, 2)), mpp=0.37)
    s = tg.graph.grid_samples(cells, size_um=41.3, stride_um=29.0, min_cells=0, tissue=random_mask)
    x0, y0, x1, y1 = (s.obs[k].to_numpy() for k in K.obs.bbox)
    boxes = shapely.box(x0, y0, x1, y1)
    image = shapely.box(-0.5, -0.5, W - 0.5, H - 0.5)
    m2 = 0.37 ** 2
    ref_img = shapely.area(shapely.intersection(boxes, image)) * m2
    ref_tis = shapely.area(shapely.intersection(boxes, _tissue_union(random_mask))) * m2
    np.testing.assert_allclose(s.obs[K.obs.image_area_um2], ref_img, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(s.obs[K.obs.tissue_area_um2], ref_tis, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(s.obs[K.obs.tissue_fraction], ref_tis / 41.3 ** 2, rtol=1e-9, atol=1e-9)
    # some patches are cut by the border, some are partly glass: the test covers both cases
    assert (ref_img < 41.3 ** 2 - 1e-6).any() and ((ref_tis > 0) & (ref_tis < ref_img - 1)).any()
    assert s.uns[K.uns.membership]["params"]["tissue"]["s1"]["source"] == "mask"


def test_grid_min_tissue_fraction(random_mask):
    rng = np.random.default_rng(1)
    W, H = random_mask.level0_size
    cells = make_cells(rng.uniform(-0.5, [W - 0.5, H - 0.5], (3000, 2)), mpp=0.5)
    full = tg.graph.grid_samples(cells, size_um=40, tissue=random_mask)
    kept = tg.graph.grid_samples(cells, size_um=40, tissue=random_mask, min_tissue_fraction=0.5)
    expect = full.obs_names[full.obs[K.obs.tissue_fraction].to_numpy() >= 0.5]
    assert list(kept.obs_names) == list(expect) and 0 < kept.n_obs < full.n_obs
    # membership of the kept patches is unchanged
    a = tg.graph.sample_membership(full[expect], cells).toarray()
    b = tg.graph.sample_membership(kept, cells).toarray()
    np.testing.assert_array_equal(a, b)
    assert kept.uns[K.uns.membership]["params"]["min_tissue_fraction"] == 0.5
    with pytest.raises(tg.InputError, match="tissue="):
        tg.graph.grid_samples(cells, size_um=40, min_tissue_fraction=0.5)
    with pytest.raises(tg.InputError, match=r"\[0, 1\]"):
        tg.graph.grid_samples(cells, size_um=40, tissue=random_mask, min_tissue_fraction=1.5)
    with pytest.raises(tg.InputError, match="TissueMask"):
        tg.graph.grid_samples(cells, size_um=40, tissue=random_mask.mask)
    # without tissue, no area columns
    assert K.obs.tissue_area_um2 not in tg.graph.grid_samples(cells, size_um=40).obs


def test_spot_areas_equal_shapely(random_mask):
    rng = np.random.default_rng(2)
    W, H = random_mask.level0_size
    cells = make_cells(rng.uniform(-0.5, [W - 0.5, H - 0.5], (500, 2)), mpp=0.5)
    centers = rng.uniform([-20, -20], [W + 20, H + 20], (60, 2))
    s = tg.graph.spot_samples(cells, centers, diameter_um=55.0, tissue=random_mask)
    r_px = 55.0 / 2 / 0.5
    # reference: the disc as a 40,000-gon (area error ~ 4e-9 relative), intersected with shapely
    discs = shapely.buffer(shapely.points(centers), r_px, quad_segs=10_000)
    image = shapely.box(-0.5, -0.5, W - 0.5, H - 0.5)
    ref_img = shapely.area(shapely.intersection(discs, image)) * 0.25
    ref_tis = shapely.area(shapely.intersection(discs, _tissue_union(random_mask))) * 0.25
    np.testing.assert_allclose(s.obs[K.obs.image_area_um2], ref_img, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(s.obs[K.obs.tissue_area_um2], ref_tis, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(s.obs[K.obs.tissue_fraction], ref_tis / (math.pi * 55.0 ** 2 / 4), atol=1e-7)
    assert (ref_img < math.pi * 55 ** 2 / 4 - 1).any()  # some spots hang over the border


def test_region_areas_equal_shapely(random_mask):
    rng = np.random.default_rng(4)
    W, H = random_mask.level0_size
    cells = make_cells(rng.uniform(-0.5, [W - 0.5, H - 0.5], (500, 2)), mpp=0.8)
    polys = []
    for i in range(12):
        p = shapely.buffer(shapely.Point(rng.uniform(-50, W + 50), rng.uniform(-50, H + 50)),
                           rng.uniform(20, 180), quad_segs=int(rng.integers(1, 6)))
        if i % 3 == 0:  # a hole
            p = p.difference(shapely.buffer(p.centroid, 12))
        if i % 4 == 0:  # two parts
            p = shapely.union(p, shapely.box(10, 10, 60, 40))
        polys.append(p)
    s = tg.graph.region_samples(cells, polys, tissue=random_mask)
    image = shapely.box(-0.5, -0.5, W - 0.5, H - 0.5)
    ref_img = shapely.area(shapely.intersection(polys, image)) * 0.64
    ref_tis = shapely.area(shapely.intersection(polys, _tissue_union(random_mask))) * 0.64
    np.testing.assert_allclose(s.obs[K.obs.image_area_um2], ref_img, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(s.obs[K.obs.tissue_area_um2], ref_tis, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(s.obs[K.obs.tissue_fraction], ref_tis / s.obs[K.obs.area_um2], rtol=1e-9)


def test_image_samples_with_tissue(random_mask):
    W, H = random_mask.level0_size
    rng = np.random.default_rng(5)
    cells = make_cells(rng.uniform(0, [W - 1, H - 1], (400, 2)), mpp=0.5)
    s = tg.graph.image_samples(cells, tissue=random_mask)
    assert s.obs[K.obs.image_area_um2].iloc[0] == pytest.approx(W * H * 0.25)
    assert s.obs[K.obs.area_um2].iloc[0] == pytest.approx(W * H * 0.25)
    ref = _tissue_union(random_mask).area * 0.25
    assert s.obs[K.obs.tissue_area_um2].iloc[0] == pytest.approx(ref, rel=1e-12)
    assert s.obs[K.obs.tissue_fraction].iloc[0] == pytest.approx(random_mask.fraction, rel=1e-12)
    tg.graph.descriptors(cells, s, graph_key=None, features=False, delaunay=False)
    names = list(s.uns["X_structural_names"])
    dens = s.obsm["X_structural"][0, names.index("density_per_mm2")]
    assert dens == pytest.approx(400 / ref * 1e6)
    assert s.uns["X_structural"]["params"]["density_area"]["used"] == "tissue_area_um2"


def test_density_uses_tissue_area_and_nan_without_tissue():
    # left half tissue, right half glass; 4 patches of 50 px at 1 µm/px
    m = np.zeros((10, 10), bool)
    m[:, :5] = True
    tm = TissueMask(m, (100, 100))
    cells = make_cells([[10, 10], [20, 30], [60, 10], [70, 70], [30, 60]], mpp=1.0)
    s = tg.graph.grid_samples(cells, size_um=50, min_cells=0, tissue=tm)
    tg.graph.descriptors(cells, s, graph_key=None, features=False, delaunay=False)
    names = list(s.uns["X_structural_names"])
    d = pd.Series(s.obsm["X_structural"][:, names.index("density_per_mm2")], index=s.obs_names)
    assert d["s1__r0_c0"] == pytest.approx(2 / 2500 * 1e6)
    assert d["s1__r1_c0"] == pytest.approx(1 / 2500 * 1e6)
    # a cell detected on glass: no tissue area, so no density (not 0, not infinity)
    assert np.isnan(d["s1__r0_c1"]) and np.isnan(d["s1__r1_c1"])
    assert (s.obs[K.obs.tissue_fraction].to_numpy() == [1, 0, 1, 0]).all()
    # the geometric area stays a descriptor; what the densities used is recorded
    assert (s.obsm["X_structural"][:, names.index("sample_area_um2")] == 2500).all()
    assert s.uns["X_structural"]["params"]["density_area"] == {"tissue_area_um2": 4, "area_um2": 0,
                                                                "used": "tissue_area_um2"}
    # without tissue: the geometric area, as before
    s2 = tg.graph.grid_samples(cells, size_um=50, min_cells=0)
    tg.graph.descriptors(cells, s2, graph_key=None, features=False, delaunay=False)
    assert s2.uns["X_structural"]["params"]["density_area"]["used"] == "area_um2"


# ------------------------------------------------------------------------------- the synthetic slide
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    d = tmp_path_factory.mktemp("syn_tissue")
    # 1600 px = 100 mask pixels at downsample 16: the low-resolution mask covers the image exactly
    return tg.datasets.synthetic_slide(d / "syn.tiff", size=1600, seed=5, mpp=0.5, tissue_fraction=0.6,
                                       progress=False)


def _true_tissue(syn) -> np.ndarray:
    """The synthetic slide's tissue at full resolution: its tissue field above its threshold at every
    pixel centre (what the renderer draws as tissue), independent of the low-resolution mask."""
    from tissuegraph.datasets._synth_layout import Layout

    p = syn.metadata["params"]
    layout = Layout(width=p["width"], height=p["height"], mpp=p["mpp"], seed=p["seed"],
                    tissue_fraction=p["tissue_fraction"], density=p["density"],
                    region_classes=tuple(p["region_classes"]), region_size_um=p["region_size_um"])
    xs = (np.arange(syn.width) + 0.5) * syn.mpp
    ys = (np.arange(syn.height) + 0.5) * syn.mpp
    return layout.envelope_grid(xs, ys) > layout.threshold


def _truth_cells(syn):
    nuc = syn.read_nuclei()
    return make_cells(nuc[["x", "y"]].to_numpy(), mpp=syn.mpp)


def test_synthetic_tissue_area_matches_truth(synthetic):
    truth = _true_tissue(synthetic)
    assert 0.3 < truth.mean() < 0.9
    cells = _truth_cells(synthetic)
    size_px = 200
    # with a full-resolution mask of the true tissue, the areas are the pixel counts, exactly
    exact = tg.graph.grid_samples(cells, size_um=size_px * synthetic.mpp, min_cells=0,
                                  tissue=TissueMask(truth, synthetic.dimensions))
    rows, cols = exact.obs["grid_row"].to_numpy(), exact.obs["grid_col"].to_numpy()
    counts = np.array([truth[r * size_px:(r + 1) * size_px, c * size_px:(c + 1) * size_px].sum()
                       for r, c in zip(rows, cols)])
    np.testing.assert_allclose(exact.obs[K.obs.tissue_area_um2], counts * synthetic.mpp ** 2, rtol=1e-9)
    # with the slide's own low-resolution mask (16 px per mask pixel) the areas differ only along the
    # tissue outline: the total within 1 %, each patch within the band of mask pixels on its outline
    low = TissueMask(synthetic.read_tissue_mask(), synthetic.dimensions)
    s = tg.graph.grid_samples(cells, size_um=size_px * synthetic.mpp, min_cells=0, tissue=low)
    assert list(s.obs_names) == list(exact.obs_names)
    t_true = counts * synthetic.mpp ** 2
    t_low = s.obs[K.obs.tissue_area_um2].to_numpy()
    assert abs(t_low.sum() / t_true.sum() - 1) < 0.01
    assert np.abs(t_low - t_true).max() < 0.1 * (size_px * synthetic.mpp) ** 2
    whole = tg.graph.image_samples(cells, tissue=low)
    assert whole.obs[K.obs.tissue_area_um2].iloc[0] == pytest.approx(truth.sum() * synthetic.mpp ** 2, rel=0.01)
    # the mask tg.io.tissue_mask finds on the rendered slide (smoothing and closing at 8 µm/px) is
    # +5.2 % larger than the true tissue here; the areas follow whatever mask they are given
    from_slide = tg.graph.image_samples(cells, tissue=synthetic.path)
    assert from_slide.obs[K.obs.tissue_area_um2].iloc[0] == pytest.approx(truth.sum() * synthetic.mpp ** 2,
                                                                          rel=0.08)


def test_border_patch_density_equals_inside(tmp_path):
    # all tissue, one tissue class, 1500 px at 0.5 µm/px; 100 µm patches: the last column and row of
    # patches are cut by the image border to 100 px of their 200 px
    syn = tg.datasets.synthetic_slide(tmp_path / "b.tiff", size=1500, seed=2, mpp=0.5, tissue_fraction=1.0,
                                      region_classes=("tumour",), progress=False)
    cells = _truth_cells(syn)
    s = tg.graph.grid_samples(cells, size_um=100, tissue=TissueMask.full(syn))
    tg.graph.descriptors(cells, s, graph_key=None, features=False, delaunay=False)
    names = list(s.uns["X_structural_names"])
    n = s.obs[K.obs.n_cells].to_numpy()
    cut = s.obs[K.obs.image_area_um2].to_numpy() < 100 * 100 - 1e-6
    assert sorted(np.round(s.obs[K.obs.tissue_fraction].to_numpy()[cut], 9)) == [0.25] + [0.5] * 14
    tissue = s.obs[K.obs.tissue_area_um2].to_numpy()
    inside = n[~cut].sum() / tissue[~cut].sum()
    border = n[cut].sum() / tissue[cut].sum()
    # pooled densities: Poisson noise on ~15 x 30 cells is ~5 %; tumour texture adds some
    assert border == pytest.approx(inside, rel=0.15)
    # the per-sample density column is the one that agrees (the full patch area would halve it)
    d = s.obsm["X_structural"][:, names.index("density_per_mm2")]
    assert np.median(d[cut]) == pytest.approx(np.median(d[~cut]), rel=0.2)
    assert np.median(n[cut] / 1e4 * 1e6) < 0.7 * np.median(d[~cut])
