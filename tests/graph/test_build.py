"""Cell graph builders: hand-worked edge lists, squidpy equality, slides, units, degenerate inputs."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import tissuegraph as tg
from tissuegraph._anndata import set_slide_metadata
from tissuegraph.graph import _build as B
from tissuegraph.graph import (
    AddSelfLoops,
    DelaunayGraph,
    KNNGraph,
    MaxEdgeLength,
    MinEdgeLength,
    RadiusGraph,
    Symmetrize,
)


# ------------------------------------------------------------------------------------------- helpers
def make_cells(xy, *, mpp=0.5, slides=None, types=None):
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    n = len(xy)
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n)])
    if slides is not None:
        obs["slide"] = pd.Categorical(list(slides))
    if types is not None:
        obs["cell_type"] = pd.Categorical(list(types))
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = xy
    if mpp is not None:
        ids = obs["slide"].cat.categories if slides is not None else ["s1"]
        mpps = mpp if isinstance(mpp, dict) else {s: mpp for s in ids}
        for s, m in mpps.items():
            set_slide_metadata(a, s, mpp=m)
    return a


def edge_set(adata, key="spatial"):
    A = sp.coo_matrix(adata.obsp[f"{key}_connectivities"])
    return set(zip(A.row.tolist(), A.col.tolist()))


def und(*pairs):
    """Both directions of undirected edges."""
    return {(a, b) for a, b in pairs} | {(b, a) for a, b in pairs}


def dense_dist(adata, key="spatial"):
    return adata.obsp[f"{key}_distances"].toarray()


def canon(m):
    m = sp.csr_matrix(m, copy=True)
    m.sum_duplicates()
    m.sort_indices()
    return m


def assert_same_graph(a, b, rtol=1e-9):
    a, b = canon(a), canon(b)
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.data, b.data, rtol=rtol, atol=1e-9)


LINE = [[0, 0], [1, 0], [3, 0], [7, 0]]


# ------------------------------------------------------------------------------- kNN, hand-worked
def test_knn_hand_worked_k1_and_k2():
    a = make_cells(LINE)
    tg.graph.knn(a, k=1)
    assert edge_set(a) == {(0, 1), (1, 0), (2, 1), (3, 2)}
    np.testing.assert_allclose(dense_dist(a)[[0, 1, 2, 3], [1, 0, 1, 2]], [1, 1, 2, 4])
    tg.graph.knn(a, k=2)
    assert edge_set(a) == {(0, 1), (0, 2), (1, 0), (1, 2), (2, 1), (2, 0), (3, 2), (3, 1)}
    # directed, like squidpy: every row has k entries, columns do not
    A = a.obsp["spatial_connectivities"]
    assert (np.diff(A.indptr) == 2).all() and A.dtype == np.float32 and (A.data == 1).all()
    assert a.uns["spatial_neighbors"]["params"]["directed"] is True


def test_knn_symmetrize_union_and_mutual():
    a = make_cells(LINE)
    tg.graph.knn(a, k=1, symmetrize="union")
    assert edge_set(a) == und((0, 1), (1, 2), (2, 3))
    tg.graph.knn(a, k=1, symmetrize="mutual")
    assert edge_set(a) == und((0, 1))
    np.testing.assert_allclose(dense_dist(a)[0, 1], 1.0)


def test_knn_ties_go_to_the_smaller_index():
    sq4 = [[0, 0], [1, 0], [0, 1], [1, 1]]
    src, dst, d = tg.graph.knn_edges(sq4, 1)
    assert list(zip(src.tolist(), dst.tolist())) == [(0, 1), (1, 0), (2, 0), (3, 1)]
    np.testing.assert_allclose(d, 1.0)


def test_knn_ties_large_grid_match_brute_force():
    # > 4096 points: the spatially sorted path; an integer grid is full of ties
    g = np.stack(np.meshgrid(np.arange(70), np.arange(70)), -1).reshape(-1, 2).astype(float)
    rng = np.random.default_rng(0)
    g = g[rng.permutation(len(g))]
    k = 5
    src, dst, d = tg.graph.knn_edges(g, k)
    assert len(src) == k * len(g)
    for i in rng.choice(len(g), 60, replace=False):
        dd = np.sqrt(((g - g[i]) ** 2).sum(1))
        dd[i] = np.inf
        want = np.sort(np.lexsort((np.arange(len(g)), dd))[:k])
        np.testing.assert_array_equal(dst[src == i], want)
        np.testing.assert_allclose(d[src == i], dd[want])


def test_knn_with_fewer_cells_than_k_links_all():
    a = make_cells([[0, 0], [1, 0], [5, 5]])
    tg.graph.knn(a, k=6)
    assert edge_set(a) == {(i, j) for i in range(3) for j in range(3) if i != j}


def test_knn_duplicates_are_distinct_nodes_with_zero_length():
    a = make_cells([[0, 0], [0, 0], [3, 0], [3, 4]])
    tg.graph.knn(a, k=1)
    assert edge_set(a) == {(0, 1), (1, 0), (2, 0), (3, 2)}
    D = a.obsp["spatial_distances"]
    assert D[0, 1] == 0 and D.nnz == 2  # zero lengths are not stored (squidpy's rule)
    # more copies than k + 1: still the smallest indices at distance 0
    src, dst, _ = tg.graph.knn_edges([[0, 0]] * 5 + [[1, 0]], 2)
    assert [dst[src == i].tolist() for i in range(6)] == [[1, 2], [0, 2], [0, 1], [0, 1], [0, 1], [0, 1]]


# ----------------------------------------------------------------------------- radius, hand-worked
def test_radius_hand_worked_inclusive():
    xy = [[0, 0], [3, 4], [10, 10], [3, 0]]
    a = make_cells(xy, mpp=None)
    tg.graph.radius(a, radius_px=5)
    assert edge_set(a) == und((0, 1), (0, 3), (1, 3))  # |p0 - p1| = 5 exactly: kept
    D = dense_dist(a)
    assert D[0, 1] == 5 and D[0, 3] == 3 and D[1, 3] == 4
    tg.graph.radius(a, radius_px=4.999)
    assert edge_set(a) == und((0, 3), (1, 3))


def test_radius_in_um_equals_twice_in_px_at_half_micron():
    rng = np.random.default_rng(3)
    a = make_cells(rng.uniform(0, 200, (300, 2)), mpp=0.5)
    tg.graph.radius(a, radius_um=10, key_added="um")
    tg.graph.radius(a, radius_px=20, key_added="px")
    assert_same_graph(a.obsp["um_connectivities"], a.obsp["px_connectivities"])
    assert_same_graph(a.obsp["um_distances"], a.obsp["px_distances"])
    assert a.uns["um_neighbors"]["params"]["radius"] == 20.0  # squidpy's field, in px
    assert a.uns["um_neighbors"]["params"]["radius_um"] == 10.0
    # and the step in µm: MaxEdgeLength(um=5) == MaxEdgeLength(px=10)
    e1 = KNNGraph(k=6, steps=[MaxEdgeLength(um=5)]).edges(a.obsm["spatial"], mpp=0.5)
    e2 = KNNGraph(k=6, steps=[MaxEdgeLength(px=10)]).edges(a.obsm["spatial"])
    for x, y in zip(e1, e2):
        np.testing.assert_array_equal(x, y)
    assert e1[2].max() <= 10


def test_missing_mpp_raises_and_px_escape_hatch_works():
    a = make_cells([[0, 0], [1, 0], [5, 0]], mpp=None)
    with pytest.raises(tg.MissingMppError):
        tg.graph.radius(a, radius_um=3)
    with pytest.raises(tg.MissingMppError):
        tg.graph.delaunay(a, max_edge_um=3)
    with pytest.raises(tg.MissingMppError):
        KNNGraph(steps=[MaxEdgeLength(um=1)]).build(a.obsm["spatial"])
    tg.graph.radius(a, radius_px=1)
    assert edge_set(a) == und((0, 1))
    tg.graph.knn(a, k=1)  # nothing in µm: no µm/px needed
    assert len(edge_set(a)) == 3


# --------------------------------------------------------------------------- Delaunay, hand-worked
def test_delaunay_hand_worked():
    # a triangle with a point inside: 3 sides + 3 spokes
    a = make_cells([[0, 0], [4, 0], [2, 3], [2, 1]])
    tg.graph.delaunay(a)
    assert edge_set(a) == und((0, 1), (1, 2), (0, 2), (3, 0), (3, 1), (3, 2))
    np.testing.assert_allclose(dense_dist(a)[0, 3], np.sqrt(5))
    # a flat rhombus: the short diagonal is the Delaunay edge
    a = make_cells([[0, 0], [2, -1], [4, 0], [2, 1]])
    tg.graph.delaunay(a)
    assert edge_set(a) == und((0, 1), (1, 2), (2, 3), (3, 0), (1, 3))


def test_delaunay_max_edge():
    a = make_cells([[0, 0], [4, 0], [2, 3], [2, 1]], mpp=0.5)
    tg.graph.delaunay(a, max_edge_um=1.5)  # 3 px: only the spokes (sqrt 5, sqrt 5, 2) survive
    assert edge_set(a) == und((3, 0), (3, 1), (3, 2))
    tg.graph.delaunay(a, max_edge_px=3)
    assert edge_set(a) == und((3, 0), (3, 1), (3, 2))


def test_delaunay_collinear_gives_the_path():
    a = make_cells([[0, 0], [1, 1], [3, 3], [2, 2]])
    tg.graph.delaunay(a)
    assert edge_set(a) == und((0, 1), (1, 3), (3, 2))
    # with a copy of (1, 1): both copies join both neighbours, and each other
    a = make_cells([[0, 0], [1, 1], [3, 3], [2, 2], [1, 1]])
    tg.graph.delaunay(a)
    assert edge_set(a) == und((0, 1), (1, 3), (3, 2), (0, 4), (4, 3), (1, 4))


def test_delaunay_duplicates_inherit_the_edges_of_their_location():
    a = make_cells([[0, 0], [4, 0], [0, 4], [0, 0]])
    tg.graph.delaunay(a)
    assert edge_set(a) == und((0, 1), (1, 2), (0, 2), (3, 1), (3, 2), (0, 3))
    D = a.obsp["spatial_distances"]
    assert D[0, 3] == 0 and (0, 3) not in set(zip(*D.nonzero()))
    np.testing.assert_allclose(D[3, 1], 4.0)
    # all points at one location: complete graph of zero-length edges
    a = make_cells([[2, 2]] * 3)
    tg.graph.delaunay(a)
    assert edge_set(a) == {(i, j) for i in range(3) for j in range(3) if i != j}
    assert a.obsp["spatial_distances"].nnz == 0


def test_delaunay_points_closer_than_qhull_precision_join_their_vertex():
    # Qhull leaves the last point out (closer to (0, 0) than its precision); it becomes a copy of (0, 0)
    a = make_cells([[0, 0], [4, 0], [0, 4], [3, 3], [1e-14, 0]])
    tg.graph.delaunay(a)
    assert edge_set(a) == und((0, 1), (0, 2), (0, 3), (1, 3), (2, 3), (4, 0), (4, 1), (4, 2), (4, 3))
    assert a.obsp["spatial_distances"][4, 0] == pytest.approx(1e-14)


def test_radius_on_many_points_matches_a_direct_pair_search():
    from scipy.spatial import cKDTree

    xy = np.random.default_rng(8).uniform(0, 1500, (5000, 2))  # > 4096: the spatially sorted path
    src, dst, d = tg.graph.radius_edges(xy, 30.0)
    pairs = cKDTree(xy).query_pairs(30.0)
    assert set(zip(src.tolist(), dst.tolist())) == {(i, j) for i, j in pairs} | {(j, i) for i, j in pairs}
    np.testing.assert_allclose(d, np.sqrt(((xy[src] - xy[dst]) ** 2).sum(1)))
    assert (np.diff(src) >= 0).all()


@pytest.mark.parametrize("n", [0, 1, 2])
@pytest.mark.parametrize("build", [
    lambda a: tg.graph.knn(a, k=6),
    lambda a: tg.graph.radius(a, radius_um=100),
    lambda a: tg.graph.delaunay(a),
])
def test_tiny_inputs(n, build):
    a = make_cells(np.array([[0.0, 0.0], [3.0, 4.0]])[:n])
    build(a)
    A = a.obsp["spatial_connectivities"]
    assert A.shape == (n, n)
    assert edge_set(a) == (und((0, 1)) if n == 2 else set())
    if n == 2:
        np.testing.assert_allclose(a.obsp["spatial_distances"][0, 1], 5.0)


def test_nan_coordinates_raise():
    a = make_cells([[0, 0], [np.nan, 1], [2, 2]])
    for f in (tg.graph.knn, tg.graph.delaunay):
        with pytest.raises(tg.InputError, match="NaN"):
            f(a)
    with pytest.raises(tg.InputError, match="NaN"):
        tg.graph.knn_edges(np.array([[0, np.inf], [1, 1]]), 1)


def test_missing_or_bad_spatial_raises():
    a = make_cells([[0, 0], [1, 1]])
    with pytest.raises(tg.InputError, match="obsm"):
        tg.graph.knn(a, spatial_key="nope")
    a.obsm["xyz"] = np.zeros((2, 3))
    with pytest.raises(tg.InputError, match=r"\(n, 2\)"):
        tg.graph.knn(a, spatial_key="xyz")


# --------------------------------------------------------------------------------- slides and units
def test_slides_are_never_connected_and_use_their_own_mpp():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (200, 2))
    slides = np.repeat(["a", "b"], 100)
    rng.shuffle(slides)  # interleaved rows
    a = make_cells(xy, slides=slides, mpp={"a": 0.5, "b": 0.25})
    codes = a.obs["slide"].cat.codes.to_numpy()
    for build in (lambda: tg.graph.knn(a), lambda: tg.graph.delaunay(a), lambda: tg.graph.radius(a, radius_um=5)):
        build()
        A = sp.coo_matrix(a.obsp["spatial_connectivities"])
        assert A.nnz > 0 and (codes[A.row] == codes[A.col]).all()
    # radius 5 µm = 10 px on slide a, 20 px on slide b
    D = sp.coo_matrix(a.obsp["spatial_distances"])
    assert D.data[codes[D.row] == 0].max() <= 10 and D.data[codes[D.row] == 1].max() > 10
    assert a.uns["spatial_neighbors"]["params"]["radius"] == {"a": 10.0, "b": 20.0}
    # per slide, the result equals building that slide alone
    sub = a[codes == 1].copy()
    tg.graph.radius(sub, radius_um=5)  # 'auto': the slide column, so slide b's µm/px
    assert_same_graph(a.obsp["spatial_connectivities"][codes == 1][:, codes == 1], sub.obsp["spatial_connectivities"])
    # library_key=None joins slides on purpose
    tg.graph.knn(a, library_key=None)
    A = sp.coo_matrix(a.obsp["spatial_connectivities"])
    assert (codes[A.row] != codes[A.col]).any()
    assert a.uns["spatial_neighbors"]["params"]["library_key"] == "None"


def test_library_key_checks():
    a = make_cells([[0, 0], [1, 1], [2, 2]], slides=["a", "a", "a"])
    tg.graph.knn(a, k=1)
    assert a.uns["spatial_neighbors"]["params"]["library_key"] == "slide"
    b = make_cells([[0, 0], [1, 1], [2, 2]])
    tg.graph.knn(b, k=1)
    assert b.uns["spatial_neighbors"]["params"]["library_key"] == "None"
    with pytest.raises(tg.InputError, match="not a column"):
        tg.graph.knn(a, library_key="patient")
    a.obs["batch"] = ["x", None, "y"]
    with pytest.raises(tg.InputError, match="missing"):
        tg.graph.knn(a, library_key="batch")


def test_n_jobs_does_not_change_the_result(monkeypatch):
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 1000, (6000, 2))
    r1 = tg.graph.knn_edges(xy, 6, n_jobs=1)
    monkeypatch.setattr(B, "_CHUNK", 1000)  # several blocks, post-processed on 2 threads
    r2 = tg.graph.knn_edges(xy, 6, n_jobs=2)
    for x, y in zip(r1, r2):
        np.testing.assert_array_equal(x, y)
    assert tg.settings.n_jobs == 1  # the default stays single-threaded


# ------------------------------------------------------------------------ scanpy-style AnnData API
def test_copy_key_added_and_params():
    a = make_cells([[0, 0], [1, 0], [3, 0], [7, 0]])
    b = tg.graph.delaunay(a, copy=True, key_added="dl")
    assert "dl_connectivities" not in a.obsp and "dl_connectivities" in b.obsp
    assert tg.graph.knn(a, k=2) is None
    u = b.uns["dl_neighbors"]
    assert u["connectivities_key"] == "dl_connectivities" and u["distances_key"] == "dl_distances"
    p = u["params"]
    assert p["method"] == "delaunay" and p["builder"] == "DelaunayGraph()" and p["coord_type"] == "generic"
    assert p["distance_unit"] == "px" and p["mpp"] == 0.5
    # the params survive a round trip through .h5ad
    assert isinstance(p["radius"], str)


def test_h5ad_round_trip(tmp_path):
    a = make_cells(np.random.default_rng(0).uniform(0, 50, (40, 2)))
    tg.graph.knn(a, k=3, max_edge_um=10)
    a.write_h5ad(tmp_path / "c.h5ad")
    b = ad.read_h5ad(tmp_path / "c.h5ad")
    assert_same_graph(a.obsp["spatial_connectivities"], b.obsp["spatial_connectivities"])
    assert b.uns["spatial_neighbors"]["params"]["steps"][0] == "MaxEdgeLength(um=10.0)"


def test_builders_repr_and_invalid_combinations():
    b = KNNGraph(k=6, steps=[Symmetrize("mutual"), MaxEdgeLength(um=30)])
    assert repr(b) == "KNNGraph(k=6, steps=[Symmetrize(mode='mutual'), MaxEdgeLength(um=30.0)])"
    assert repr(RadiusGraph(radius_px=12).then(MinEdgeLength(px=2), AddSelfLoops())) == \
        "RadiusGraph(radius_px=12.0, steps=[MinEdgeLength(px=2.0), AddSelfLoops()])"
    assert repr(DelaunayGraph()) == "DelaunayGraph()"
    assert b == KNNGraph(6, steps=(Symmetrize("mutual"), MaxEdgeLength(um=30.0)))
    with pytest.raises(tg.InputError, match="exactly one"):
        RadiusGraph()
    with pytest.raises(tg.InputError, match="exactly one"):
        RadiusGraph(radius_um=1, radius_px=2)
    with pytest.raises(tg.InputError, match="exactly one"):
        MaxEdgeLength()
    with pytest.raises(tg.InputError, match="exactly one"):
        MinEdgeLength(um=1, px=2)
    with pytest.raises(tg.InputError):
        RadiusGraph(radius_um=-1)
    with pytest.raises(tg.InputError, match="union"):
        Symmetrize("both")
    for bad_k in (0, 2.5, True):
        with pytest.raises(tg.InputError, match="k must"):
            KNNGraph(k=bad_k)
    with pytest.raises(tg.InputError, match="GraphStep"):
        KNNGraph(steps=["symmetrize"])
    a = make_cells(LINE)
    with pytest.raises(tg.InputError, match="not both"):
        tg.graph.knn(a, max_edge_um=1, max_edge_px=2)
    with pytest.raises(tg.InputError, match="builder"):
        tg.graph.spatial_neighbors(a, "knn")


def test_builder_apply_and_generic_front_end():
    a = make_cells(LINE)
    KNNGraph(k=1).then(Symmetrize()).apply(a, key_added="g")
    assert edge_set(a, "g") == und((0, 1), (1, 2), (2, 3))
    tg.graph.spatial_neighbors(a)  # default: squidpy's default kNN, k=6 (capped at 3 here)
    assert len(edge_set(a)) == 12


def test_self_loops_and_min_edge_length():
    a = make_cells(LINE)
    KNNGraph(k=1, steps=[AddSelfLoops()]).apply(a)
    assert edge_set(a) == {(0, 1), (1, 0), (2, 1), (3, 2)} | {(i, i) for i in range(4)}
    assert a.obsp["spatial_distances"].diagonal().sum() == 0 and a.obsp["spatial_distances"].nnz == 4
    assert a.uns["spatial_neighbors"]["params"]["set_diag"] is True
    tg.graph.radius(a, radius_px=4, min_edge_um=1.0)  # edges with 2 <= length <= 4 px
    assert edge_set(a) == und((1, 2), (0, 2), (2, 3))


def test_edges_to_csr():
    conn, dist = tg.graph.edges_to_csr([0, 1, 2], [1, 0, 0], n_nodes=3, dist=[1.5, 1.5, 0.0])
    assert conn.nnz == 3 and dist.nnz == 2 and conn.has_sorted_indices
    with pytest.raises(tg.InputError, match="repeated"):
        tg.graph.edges_to_csr([0, 0], [1, 1], n_nodes=2)
    with pytest.raises(tg.InputError, match=r"\[0, 2\)"):
        tg.graph.edges_to_csr([0], [2], n_nodes=2)


# ------------------------------------------------------------------------------- tiled Delaunay
def thomas(n, seed, side=2000.0):
    rng = np.random.default_rng(seed)
    parents = rng.uniform(0, side, (max(1, n // 25), 2))
    return parents[rng.integers(0, len(parents), n)] + rng.normal(0, side / np.sqrt(len(parents)) / 5, (n, 2))


@pytest.mark.parametrize("kind", ["uniform", "thomas", "holes"])
def test_tiled_delaunay_equals_one_triangulation(kind):
    rng = np.random.default_rng(7)
    if kind == "uniform":
        xy = rng.uniform(0, 1000, (6000, 2))
    elif kind == "thomas":
        xy = thomas(6000, 7)
    else:  # a ring of cells around a large empty region: huge circumcircles
        t = rng.uniform(0, 2 * np.pi, 5000)
        r = rng.uniform(800, 1000, 5000)
        xy = np.column_stack([r * np.cos(t), r * np.sin(t)])
    tiled = B._delaunay_csr(xy, tile_min=100, tile_points=250)
    whole = B._delaunay_csr(xy, tile_min=10**9)
    for x, y in zip(tiled, whole):
        np.testing.assert_array_equal(x, y)
    # Euler's formula on the triangles
    from scipy.spatial import ConvexHull

    res = B._tiled_delaunay(xy, 250)
    assert res is not None
    assert len(res[0]) == 2 * len(xy) - len(ConvexHull(xy).vertices) - 2


def test_delaunay_triangles():
    t = tg.graph.delaunay_triangles([[0, 0], [4, 0], [2, 3], [2, 1], [2, 1]])
    assert sorted(map(sorted, t.tolist())) == [[0, 1, 3], [0, 2, 3], [1, 2, 3]]
    assert tg.graph.delaunay_triangles([[0, 0], [1, 1], [2, 2]]).shape == (0, 3)


# ------------------------------------------------------------------------------ squidpy equality
SQ_CASES = [
    (dict(n_neighs=6), KNNGraph(k=6)),
    (dict(n_neighs=3), KNNGraph(k=3)),
    (dict(radius=40.0), RadiusGraph(radius_px=40.0)),
    (dict(delaunay=True), DelaunayGraph()),
    (dict(radius=(10.0, 40.0)), RadiusGraph(radius_px=40.0, steps=[MinEdgeLength(px=10.0)])),
    (dict(n_neighs=4, set_diag=True), KNNGraph(k=4, steps=[AddSelfLoops()])),
]


@pytest.mark.parametrize("case", range(len(SQ_CASES)), ids=[repr(b) for _, b in SQ_CASES])
@pytest.mark.parametrize("n", [8, 300])
def test_identical_to_squidpy(sq, case, n):
    kw, builder = SQ_CASES[case]
    rng = np.random.default_rng(100 + n + case)
    xy = rng.uniform(0, 300, (n, 2))
    a = make_cells(xy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = sq.gr.spatial_neighbors(a, coord_type="generic", copy=True, **kw)
    builder.apply(a)
    assert_same_graph(s.connectivities, a.obsp["spatial_connectivities"])
    assert_same_graph(s.distances, a.obsp["spatial_distances"])
    assert a.obsp["spatial_connectivities"].dtype == s.connectivities.dtype


def test_identical_to_squidpy_with_slides(sq):
    rng = np.random.default_rng(11)
    a = make_cells(rng.uniform(0, 300, (400, 2)), slides=rng.choice(["a", "b", "c"], 400))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = sq.gr.spatial_neighbors(a, coord_type="generic", library_key="slide", delaunay=True, copy=True)
    tg.graph.delaunay(a)
    assert_same_graph(s.connectivities, a.obsp["spatial_connectivities"])
    assert_same_graph(s.distances, a.obsp["spatial_distances"])


def test_squidpy_functions_run_on_the_result(sq):
    rng = np.random.default_rng(2)
    a = make_cells(rng.uniform(0, 300, (300, 2)), types=rng.choice(["t", "s", "x"], 300))
    tg.graph.knn(a, k=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sq.gr.nhood_enrichment(a, cluster_key="cell_type", n_perms=20, seed=0, show_progress_bar=False)
    z = a.uns["cell_type_nhood_enrichment"]["zscore"]
    assert z.shape == (3, 3) and np.isfinite(z).all()
