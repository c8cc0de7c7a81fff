"""Structural descriptors: hand-worked answers on tiny graphs, NaN rules, overlap, order independence."""

from __future__ import annotations

import anndata as ad
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.spatial import cKDTree
from shapely.geometry import box

import tissuegraph as tg
from tissuegraph._anndata import set_slide_metadata
from tissuegraph.graph._descriptors import _group_stats


def make_cells(xy, *, edges=(), mpp=1.0, slides=None, types=None, X=None, var_names=None):
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    n = len(xy)
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n)])
    obs["slide"] = pd.Categorical(["s1"] * n if slides is None else list(slides))
    if types is not None:
        obs["cell_type"] = pd.Categorical(types)
    cells = ad.AnnData(X=None if X is None else np.asarray(X, dtype=np.float32), obs=obs)
    if var_names is not None:
        cells.var_names = var_names
    cells.obsm["spatial"] = xy
    mpps = mpp if isinstance(mpp, dict) else {s: mpp for s in obs["slide"].cat.categories}
    for s, m in mpps.items():
        set_slide_metadata(cells, s, mpp=m)
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    A = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    A = ((A + A.T) > 0).astype(np.float64)
    cells.obsp["spatial_connectivities"] = sp.csr_matrix(A)
    return cells


def knn_cells(n=400, k=5, seed=0, extent=400.0, n_types=3):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, extent, (n, 2))
    _, j = cKDTree(xy).query(xy, k=k + 1)
    edges = np.stack([np.repeat(np.arange(n), k), j[:, 1:].ravel()], axis=1)
    X = np.stack([rng.gamma(5, 6, n), rng.uniform(0, 1, n)], axis=1)
    types = rng.choice([f"t{i}" for i in range(n_types)], n)
    return make_cells(xy, edges=edges, mpp=0.5, types=types, X=X, var_names=["area_um2", "eccentricity"])


def table(samples, key="X_structural"):
    return pd.DataFrame(samples.obsm[key], index=samples.obs_names, columns=list(samples.uns[f"{key}_names"]))


def run(cells, samples, **kw):
    tg.graph.descriptors(cells, samples, **kw)
    return table(samples)


# ------------------------------------------------------------------------------------ known answers
def test_square_cycle_known_values():
    # 4 cells on a 10 µm square (20 px at 0.5 µm/px), graph = the 4-cycle along the sides
    cells = make_cells([[0, 0], [20, 0], [20, 20], [0, 20]], edges=[(0, 1), (1, 2), (2, 3), (3, 0)], mpp=0.5)
    s = tg.graph.image_samples(cells, area_um2=100.0)
    d = run(cells, s).iloc[0]
    assert d["n_cells"] == 4
    assert d["sample_area_um2"] == 100.0
    assert d["density_per_mm2"] == pytest.approx(4 / 100 * 1e6)
    for k in ("mean", "q10", "q50", "q90"):
        assert d[f"nn_dist_um__{k}"] == pytest.approx(10.0)
        assert d[f"edge_length_um__{k}"] == pytest.approx(10.0)
        assert d[f"degree__{k}"] == 2
        assert d[f"delaunay_area_um2__{k}"] == pytest.approx(50.0)  # two triangles of half the square
    assert d["nn_dist_um__std"] == 0 and d["degree__std"] == 0
    assert d["n_edges"] == 4
    assert d["clustering__mean"] == 0 and d["transitivity"] == 0  # no triangle, 4 connected triples
    assert np.isnan(d["degree_assortativity"])  # all degrees equal: correlation undefined
    assert d["n_components"] == 1 and d["largest_component_frac"] == 1 and d["isolated_frac"] == 0


def test_triangle_has_clustering_one():
    cells = make_cells([[0, 0], [10, 0], [5, 8]], edges=[(0, 1), (1, 2), (2, 0)])
    d = run(cells, tg.graph.image_samples(cells)).iloc[0]
    assert d["clustering__mean"] == 1 and d["clustering__std"] == 0 and d["transitivity"] == 1
    assert d["delaunay_area_um2__mean"] == pytest.approx(40.0)
    assert d["sample_area_um2"] == pytest.approx(40.0)  # convex hull
    assert d["density_per_mm2"] == pytest.approx(3 / 40 * 1e6)


def test_star_is_disassortative():
    cells = make_cells([[0, 0], [10, 0], [-10, 0], [0, 10], [0, -10]], edges=[(0, 1), (0, 2), (0, 3), (0, 4)])
    d = run(cells, tg.graph.image_samples(cells)).iloc[0]
    assert d["degree_assortativity"] == pytest.approx(-1.0)
    assert d["degree__mean"] == pytest.approx(8 / 5)
    assert d["degree__q50"] == 1 and d["degree__q90"] == pytest.approx(2.8)
    assert d["clustering__mean"] == 0 and d["transitivity"] == 0
    # 4 Delaunay triangles around the centre, each 50 µm²
    assert d["delaunay_area_um2__mean"] == pytest.approx(50.0) and d["delaunay_area_um2__std"] == pytest.approx(0)


def test_components_and_isolated_cells():
    # two separate edges and an isolated cell, far apart
    cells = make_cells([[0, 0], [1, 0], [100, 0], [101, 0], [300, 0]], edges=[(0, 1), (2, 3)])
    d = run(cells, tg.graph.image_samples(cells)).iloc[0]
    assert d["n_components"] == 3
    assert d["largest_component_frac"] == pytest.approx(2 / 5)
    assert d["isolated_frac"] == pytest.approx(1 / 5)
    assert d["degree_assortativity"] != d["degree_assortativity"]  # NaN: every end has degree 1
    assert np.isnan(d["delaunay_area_um2__mean"])  # collinear cells: no triangle


def test_types_composition_and_mixing():
    # path a - a - b - c (a square's three sides) plus an untyped cell
    cells = make_cells([[0, 0], [10, 0], [10, 10], [0, 10], [50, 50]], edges=[(0, 1), (1, 2), (2, 3), (3, 4)],
                       types=["a", "a", "b", "c", None])
    d = run(cells, tg.graph.image_samples(cells)).iloc[0]
    assert d["type_frac__a"] == 0.5 and d["type_frac__b"] == 0.25 and d["type_frac__c"] == 0.25
    # typed edges: a-a, a-b, b-c (the edge to the untyped cell is left out)
    assert d["edge_type_frac__a__a"] == pytest.approx(1 / 3)
    assert d["edge_type_frac__a__b"] == pytest.approx(1 / 3)
    assert d["edge_type_frac__b__c"] == pytest.approx(1 / 3)
    assert d["edge_type_frac__a__c"] == 0 and d["edge_type_frac__b__b"] == 0
    assert d["same_type_edge_frac"] == pytest.approx(1 / 3)
    g = nx.Graph([(0, 1), (1, 2), (2, 3)])
    nx.set_node_attributes(g, {0: "a", 1: "a", 2: "b", 3: "c"}, "t")
    assert d["type_assortativity"] == pytest.approx(nx.attribute_assortativity_coefficient(g, "t"))


def test_feature_aggregates_match_numpy_and_skip_nan():
    X = np.array([[1.0, 10], [2, np.nan], [3, 30], [10, 40]])
    cells = make_cells([[0, 0], [5, 0], [0, 5], [100, 100]], X=X, var_names=["area_um2", "perimeter_um"])
    s = tg.graph.spot_samples(cells, [[0, 0], [500, 500]], diameter_um=20)
    d = run(cells, s, quantiles=(0.25, 0.5))
    first = d.iloc[0]
    assert first["area_um2__mean"] == pytest.approx(2.0)
    assert first["area_um2__std"] == pytest.approx(np.std([1, 2, 3]))
    assert first["area_um2__q25"] == pytest.approx(np.quantile([1, 2, 3], 0.25))
    assert first["perimeter_um__mean"] == pytest.approx(20.0)  # the NaN value is left out
    assert first["perimeter_um__q50"] == pytest.approx(20.0)
    assert d.iloc[1][["area_um2__mean", "area_um2__std", "area_um2__q50"]].isna().all()
    assert "area_um2__q10" not in d.columns
    # a subset of features, and sparse X give the same numbers
    sparse = cells.copy()
    sparse.X = sp.csr_matrix(np.nan_to_num(X, nan=0.0))
    only = run(sparse, s.copy(), features=["area_um2"], quantiles=(0.25, 0.5))
    assert "perimeter_um__mean" not in only.columns
    assert only.iloc[0]["area_um2__q25"] == first["area_um2__q25"]
    with pytest.raises(tg.InputError, match="nope"):
        tg.graph.descriptors(cells, s, features=["nope"])


def test_nearest_neighbour_uses_whole_slide_and_own_slide_only():
    # cell c1 is just outside the sample; c3 is on another slide at the same place
    cells = make_cells([[0, 0], [3, 0], [40, 0], [1, 0]], slides=["a", "a", "a", "b"], mpp={"a": 1.0, "b": 2.0})
    s = tg.graph.spot_samples(cells, [[0, 0]], diameter_um=4, slide="a")  # radius 2 px: only c0
    d = run(cells, s, graph_key=None).iloc[0]
    assert d["n_cells"] == 1
    assert d["nn_dist_um__mean"] == pytest.approx(3.0)  # to c1, outside the spot, not to c3


def test_edge_lengths_use_each_slides_mpp():
    cells = make_cells([[0, 0], [10, 0], [0, 0], [10, 0]], edges=[(0, 1), (2, 3)], slides=["a", "a", "b", "b"],
                       mpp={"a": 1.0, "b": 0.25})
    d = run(cells, tg.graph.image_samples(cells))
    assert d.loc["a", "edge_length_um__mean"] == pytest.approx(10.0)
    assert d.loc["b", "edge_length_um__mean"] == pytest.approx(2.5)
    assert d.loc["b", "nn_dist_um__mean"] == pytest.approx(2.5)


# ------------------------------------------------------------------------------------------ NaN rules
def test_empty_and_single_cell_samples():
    cells = make_cells([[0, 0], [10, 0], [5, 8], [200, 200]], edges=[(0, 1), (1, 2), (2, 0), (2, 3)],
                       types=["a", "b", "a", "b"], X=np.ones((4, 1)), var_names=["area_um2"])
    s = tg.graph.spot_samples(cells, [[1000, 1000], [200, 200], [5, 3]], diameter_um=2, ids=["empty", "one", "mid"])
    d = run(cells, s)
    empty, one = d.loc["empty"], d.loc["one"]
    counts = ["n_cells", "n_edges", "n_components", "density_per_mm2"]  # true zeros (the area is known)
    assert (empty[counts] == 0).all()
    assert empty.drop(counts + ["sample_area_um2"]).isna().all()  # every statistic of nothing is NaN
    assert one["n_cells"] == 1 and one["n_edges"] == 0 and one["n_components"] == 1
    assert one["degree__mean"] == 0 and one["clustering__mean"] == 0 and one["degree__std"] == 0
    assert one["isolated_frac"] == 1 and one["largest_component_frac"] == 1
    assert np.isfinite(one["nn_dist_um__mean"])  # its neighbour lies outside the spot
    assert np.isnan(one["edge_length_um__mean"]) and np.isnan(one["degree_assortativity"])
    assert np.isnan(one["transitivity"]) and np.isnan(one["delaunay_area_um2__mean"])
    assert np.isnan(one["same_type_edge_frac"]) and one["type_frac__b"] == 1
    assert d.loc["mid", "n_cells"] == 0  # spot of radius 1 px between the cells


def test_no_samples_and_cells_outside_all_samples():
    cells = make_cells([[0, 0], [10, 0]], edges=[(0, 1)])
    s = tg.graph.spot_samples(cells, np.zeros((0, 2)), diameter_um=5)
    tg.graph.descriptors(cells, s)
    assert s.obsm["X_structural"].shape[0] == 0 and s.obsm["X_structural"].shape[1] > 10


# ------------------------------------------------------------------------------------ cross-checks
def _reference(cells, samples, sid):
    """networkx answers for the subgraph induced by one sample."""
    m = tg.graph.sample_membership(samples, cells)
    idx = m[samples.obs_names.get_loc(sid)].indices
    G = nx.from_scipy_sparse_array(cells.obsp["spatial_connectivities"])
    nx.set_node_attributes(G, dict(enumerate(cells.obs["cell_type"].astype(str))), "t")
    H = G.subgraph(idx)
    if H.number_of_nodes() == 0:
        return None
    has_edges = H.number_of_edges() > 0
    degs = np.array([d for _, d in H.degree()])
    return {
        "n_cells": H.number_of_nodes(), "n_edges": H.number_of_edges(),
        "degree__mean": degs.mean(), "degree__q25": np.quantile(degs, 0.25),
        "clustering__mean": nx.average_clustering(H),
        "transitivity": nx.transitivity(H) if sum(d * (d - 1) for d in degs) else np.nan,
        "degree_assortativity": nx.degree_assortativity_coefficient(H) if has_edges and degs.std() else np.nan,
        "n_components": nx.number_connected_components(H),
        "largest_component_frac": max(len(c) for c in nx.connected_components(H)) / H.number_of_nodes(),
    }


@pytest.mark.parametrize("stride_um", [None, 30.0])
def test_graph_descriptors_match_networkx(stride_um):
    cells = knn_cells()
    s = tg.graph.grid_samples(cells, size_um=60, stride_um=stride_um)
    if stride_um is not None:
        assert tg.graph.sample_membership(s, cells).sum(axis=0).max() > 1  # really overlapping
    d = run(cells, s)
    for sid in s.obs_names[:: max(1, s.n_obs // 12)]:
        ref = _reference(cells, s, sid)
        for k, v in ref.items():
            np.testing.assert_allclose(d.loc[sid, k], v, rtol=1e-9, atol=1e-12, err_msg=f"{sid} {k}")


def test_type_assortativity_matches_networkx():
    cells = knn_cells(n=300, seed=3)
    s = tg.graph.image_samples(cells)
    d = run(cells, s).iloc[0]
    G = nx.from_scipy_sparse_array(cells.obsp["spatial_connectivities"])
    nx.set_node_attributes(G, dict(enumerate(cells.obs["cell_type"].astype(str))), "t")
    assert d["type_assortativity"] == pytest.approx(nx.attribute_assortativity_coefficient(G, "t"))
    same = np.mean([G.nodes[u]["t"] == G.nodes[v]["t"] for u, v in G.edges()])
    assert d["same_type_edge_frac"] == pytest.approx(same)


def test_overlapping_regions_equal_separate_regions():
    cells = knn_cells(n=300, seed=1)
    r1, r2 = box(50, 50, 250, 250), box(150, 150, 350, 350)  # overlapping squares, level-0 px
    both = tg.graph.region_samples(cells, [r1, r2])
    d_both = run(cells, both)
    for i, r in enumerate((r1, r2)):
        alone = tg.graph.region_samples(cells, [r])
        d_alone = run(cells, alone)
        np.testing.assert_allclose(d_both.iloc[i].to_numpy(), d_alone.iloc[0].to_numpy(), rtol=1e-10, atol=1e-12)


def test_delaunay_restricted_to_sample():
    # a 3 x 3 lattice (spacing 10 px, mpp 1): the slide's Delaunay has 8 triangles of 50 µm²;
    # the region holding the 4 cells of the lower-left cell square keeps its 2 triangles
    xy = [[x, y] for y in (0, 10, 20) for x in (0, 10, 20)]
    cells = make_cells(xy)
    s = tg.graph.region_samples(cells, [box(-1, -1, 11, 11)])
    d = run(cells, s, graph_key=None).iloc[0]
    assert d["n_cells"] == 4
    assert d["delaunay_area_um2__mean"] == pytest.approx(50.0)
    assert d["delaunay_area_um2__std"] == pytest.approx(0.0)


def test_group_stats_quantiles_match_numpy():
    rng = np.random.default_rng(7)
    values = rng.normal(size=500)
    values[rng.choice(500, 20, replace=False)] = np.nan
    groups = rng.integers(0, 9, 500)
    qs = (0.0, 0.1, 0.33, 0.5, 0.9, 1.0)
    st = _group_stats(values, groups, 10, qs)
    for g in range(10):
        v = values[(groups == g) & np.isfinite(values)]
        if len(v) == 0:
            assert np.isnan(st["mean"][g]) and np.isnan(st["q50"][g])
            continue
        assert st["mean"][g] == pytest.approx(v.mean())
        assert st["std"][g] == pytest.approx(v.std())
        for q in qs:
            assert st[f"q{100 * q:g}"][g] == pytest.approx(np.quantile(v, q), rel=1e-12, abs=1e-12)
    assert np.isnan(st["mean"][9])  # a group with no values


# ---------------------------------------------------------------------------------- invariances, API
def test_independent_of_cell_order_and_n_jobs():
    cells = knn_cells(n=300, seed=2)
    s = tg.graph.grid_samples(cells, size_um=60, stride_um=40)
    ref = run(cells, s.copy())
    perm = np.random.default_rng(0).permutation(cells.n_obs)
    shuffled = cells[perm].copy()
    # samples made before the shuffle (matched by name) and after it
    after = run(shuffled, s.copy(), n_jobs=2)
    again = tg.graph.grid_samples(shuffled, size_um=60, stride_um=40)
    rebuilt = run(shuffled, again)
    np.testing.assert_allclose(after.to_numpy(), ref.to_numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rebuilt.loc[ref.index].to_numpy(), ref.to_numpy(), rtol=1e-10, atol=1e-12)


def test_slots_params_copy_and_h5ad_round_trip(tmp_path):
    cells = knn_cells(n=120)
    s = tg.graph.grid_samples(cells, size_um=100)
    out = tg.graph.descriptors(cells, s, copy=True, key_added="struct")
    assert "X_struct" not in s.obsm and out is not None
    assert out.obsm["X_struct"].dtype == np.float64
    assert out.obsm["X_struct"].shape == (s.n_obs, len(out.uns["X_struct_names"]))
    params = out.uns["X_struct"]["params"]
    assert params["graph_key"] == "spatial" and list(params["quantiles"]) == [0.1, 0.25, 0.5, 0.75, 0.9]
    assert tg.graph.descriptors(cells, s) is None
    names = list(s.uns["X_structural_names"])
    assert len(names) == len(set(names))
    assert {"area_um2__mean", "eccentricity__q90", "type_frac__t0", "edge_type_frac__t0__t2"} <= set(names)
    path = tmp_path / "samples.h5ad"
    s.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.obsm["X_structural"], s.obsm["X_structural"])
    assert list(back.uns["X_structural_names"]) == names
    tg.graph.descriptors(cells, back, key_added="again")
    np.testing.assert_array_equal(back.obsm["X_again"], s.obsm["X_structural"])


def test_missing_inputs_give_clear_errors():
    cells = knn_cells(n=50)
    s = tg.graph.image_samples(cells)
    no_graph = cells.copy()
    del no_graph.obsp["spatial_connectivities"]
    with pytest.raises(tg.InputError, match=r"tg\.graph\.knn"):
        tg.graph.descriptors(no_graph, s)
    d = run(no_graph, s.copy(), graph_key=None)
    assert "degree__mean" not in d.columns and "nn_dist_um__mean" in d.columns
    with pytest.raises(tg.InputError, match="celltype"):
        tg.graph.descriptors(cells, s, types_key="celltype")
    untyped = cells.copy()
    del untyped.obs["cell_type"]
    assert not any(c.startswith("type_frac") for c in run(untyped, s.copy()).columns)  # default key: skipped
    nompp = cells.copy()
    nompp.uns["spatial"]["s1"]["scalefactors"]["mpp"] = float("nan")
    with pytest.raises(tg.MissingMppError):
        tg.graph.descriptors(nompp, s)
    with pytest.raises(tg.InputError, match="quantiles"):
        tg.graph.descriptors(cells, s, quantiles=(0.5, 1.5))
    with pytest.raises(tg.InputError, match="missing"):
        tg.graph.descriptors(cells, ad.AnnData(obs=pd.DataFrame(index=["x"])))


def test_with_tissuegraph_graph_builders():
    # a directed kNN graph (squidpy's layout) counts as its undirected union
    rng = np.random.default_rng(5)
    cells = make_cells(rng.uniform(0, 300, (150, 2)), mpp=0.5, types=rng.choice(["a", "b"], 150))
    s = tg.graph.grid_samples(cells, size_um=50)
    tg.graph.knn(cells, k=5)
    directed = run(cells, s.copy())
    tg.graph.knn(cells, k=5, symmetrize="union")
    union = run(cells, s.copy())
    np.testing.assert_array_equal(directed.to_numpy(), union.to_numpy())
    tg.graph.delaunay(cells)
    whole = run(cells, tg.graph.image_samples(cells)).iloc[0]
    assert whole["n_edges"] == cells.obsp["spatial_connectivities"].nnz // 2


def test_coincident_cells():
    cells = make_cells([[0, 0], [0, 0], [10, 0], [0, 10]], edges=[(0, 1), (1, 2), (2, 3), (3, 0)])
    d = run(cells, tg.graph.image_samples(cells), quantiles=(0.5,)).iloc[0]
    assert d["nn_dist_um__q50"] == pytest.approx(0.0 + 5.0)  # distances 0, 0, 10, 10
    assert d["delaunay_area_um2__mean"] == pytest.approx(50.0)  # one copy takes part
    assert d["edge_length_um__mean"] == pytest.approx((0 + 10 + np.hypot(10, 10) + 10) / 4)
