"""tg.tl against squidpy (same input), hand-worked counts, invariance to n_jobs / chunking, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import tissuegraph as tg

from .conftest import make_cells

sq = pytest.importorskip("squidpy")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_nhood_counts_hand_worked():
    # path 0-1-2-3 (both directions) + a self loop on 3; clusters a a b b
    src = np.array([0, 1, 1, 2, 2, 3, 3])
    dst = np.array([1, 0, 2, 1, 3, 2, 3])
    A = sparse.csr_matrix((np.ones(7), (src, dst)), shape=(4, 4))
    c = tg.tl.nhood_counts(A, np.array([0, 0, 1, 1]), n_clusters=2)
    assert c.tolist() == [[2, 1], [1, 3]]
    # directed: only 0->1, 1->2, 3->0
    D = sparse.csr_matrix((np.ones(3), ([0, 1, 3], [1, 2, 0])), shape=(4, 4))
    assert tg.tl.nhood_counts(D, np.array([0, 0, 1, 1]), n_clusters=2).tolist() == [[1, 1], [1, 0]]


@pytest.mark.parametrize("graph", ["delaunay", "knn"])  # symmetric and directed graphs
def test_nhood_enrichment_agrees_with_squidpy(graph):
    a = make_cells(1500, graph=graph, seed=1)
    b = a.copy()
    tg.tl.nhood_enrichment(a, cluster_key="cell_type", n_perms=400, seed=0, progress=False)
    sq.gr.nhood_enrichment(b, cluster_key="cell_type", n_perms=400, seed=0, n_jobs=1, show_progress_bar=False)
    ours, theirs = a.uns["cell_type_nhood_enrichment"], b.uns["cell_type_nhood_enrichment"]
    np.testing.assert_array_equal(ours["count"], theirs["count"])
    z1, z2 = np.asarray(ours["zscore"]), np.asarray(theirs["zscore"])
    assert np.corrcoef(z1.ravel(), z2.ravel())[0, 1] > 0.995
    # permutation noise: the std of 400 permutations is known to ~ +-7 %, so z to ~ 7 % (+0.3 absolute)
    assert np.all(np.abs(z1 - z2) <= 0.12 * np.abs(z2) + 0.5)
    assert ours["params"]["n_perms"] == 400


def test_nhood_enrichment_same_for_any_n_jobs_and_seeded():
    a = make_cells(500, graph="delaunay")
    tg.tl.nhood_enrichment(a, cluster_key="cell_type", n_perms=50, seed=3, n_jobs=1, key_added="one")
    tg.tl.nhood_enrichment(a, cluster_key="cell_type", n_perms=50, seed=3, n_jobs=2, key_added="two")
    tg.tl.nhood_enrichment(a, cluster_key="cell_type", n_perms=50, seed=4, n_jobs=1, key_added="other")
    np.testing.assert_array_equal(a.uns["one"]["zscore"], a.uns["two"]["zscore"])
    assert not np.array_equal(a.uns["one"]["zscore"], a.uns["other"]["zscore"])


def test_nhood_enrichment_library_key_shuffles_within_groups():
    a = make_cells(400, graph="delaunay")
    # second half is another slide where everything is type t0: shuffling within slides keeps that
    a.obs["slide"] = pd.Categorical(["s1"] * 200 + ["s2"] * 200)
    ct = np.array(a.obs["cell_type"].astype(str), dtype=object)
    ct[200:] = "t0"
    a.obs["cell_type"] = pd.Categorical(ct)
    A = a.obsp["spatial_connectivities"].tolil()
    A[:200, 200:] = 0
    A[200:, :200] = 0
    a.obsp["spatial_connectivities"] = A.tocsr()
    tg.tl.nhood_enrichment(a, cluster_key="cell_type", library_key="slide", n_perms=30, seed=0)
    b = a.copy()
    sq.gr.nhood_enrichment(b, cluster_key="cell_type", library_key="slide", n_perms=30, seed=0, n_jobs=1,
                           show_progress_bar=False)
    np.testing.assert_array_equal(a.uns["cell_type_nhood_enrichment"]["count"],
                                  b.uns["cell_type_nhood_enrichment"]["count"])


def test_nhood_enrichment_copy_and_errors():
    a = make_cells(200, graph="delaunay")
    out = tg.tl.nhood_enrichment(a, cluster_key="cell_type", n_perms=5, copy=True)
    assert "cell_type_nhood_enrichment" in out.uns and "cell_type_nhood_enrichment" not in a.uns
    with pytest.raises(tg.InputError, match="cluster_key"):
        tg.tl.nhood_enrichment(a, cluster_key="nope", n_perms=5)
    del a.obsp["spatial_connectivities"]
    with pytest.raises(tg.InputError, match="tg.graph.delaunay"):
        tg.tl.nhood_enrichment(a, cluster_key="cell_type", n_perms=5)


def test_squidpy_plot_reads_our_result():
    import matplotlib

    matplotlib.use("Agg")
    a = make_cells(300, graph="delaunay")
    tg.tl.nhood_enrichment(a, cluster_key="cell_type", n_perms=20)
    sq.pl.nhood_enrichment(a, cluster_key="cell_type")
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("normalized,weights", [(False, False), (True, False), (False, True)])
def test_interaction_matrix_equals_squidpy(normalized, weights):
    a = make_cells(500, graph="delaunay")
    a.obsp["spatial_connectivities"] = a.obsp["spatial_distances"].copy()  # real weights
    b = a.copy()
    tg.tl.interaction_matrix(a, cluster_key="cell_type", normalized=normalized, weights=weights)
    sq.gr.interaction_matrix(b, cluster_key="cell_type", normalized=normalized, weights=weights)
    np.testing.assert_allclose(a.uns["cell_type_interactions"], b.uns["cell_type_interactions"], rtol=1e-10)


def test_co_occurrence_equals_squidpy_and_any_chunking():
    a = make_cells(700, seed=2)
    b = a.copy()
    tg.tl.co_occurrence(a, cluster_key="cell_type", progress=False)
    sq.gr.co_occurrence(b, cluster_key="cell_type", show_progress_bar=False)
    ours, theirs = a.uns["cell_type_co_occurrence"], b.uns["cell_type_co_occurrence"]
    np.testing.assert_allclose(ours["interval"], theirs["interval"])
    np.testing.assert_allclose(ours["occ"], theirs["occ"], atol=1e-12)
    tg.tl.co_occurrence(a, cluster_key="cell_type", chunk_size=17, n_jobs=2, key_added="c2")
    np.testing.assert_array_equal(a.uns["c2"]["counts"], ours["counts"])


def test_co_occurrence_counts_hand_worked_and_um():
    a = make_cells(50)
    pts = np.array([[0, 0], [3, 0], [0, 4], [10, 10.0]])
    counts = tg.tl.co_occurrence_counts(pts, np.array([0, 0, 1, 1]), n_clusters=2, radii=np.array([3.5, 5.0, 20]))
    # pairs: (0,1) d=3 aa; (0,2) d=4 ab; (1,2) d=5 ab; (2,3) d=11.7 bb; (0,3) 14.1 ab; (1,3) 12.2 ab
    assert counts[0, 0].tolist() == [2, 2, 2]
    assert counts[0, 1].tolist() == [0, 2, 4] and counts[1, 0].tolist() == [0, 2, 4]
    assert counts[1, 1].tolist() == [0, 0, 2]
    tg.tl.co_occurrence(a, cluster_key="cell_type", interval_um=[0, 5, 10, 20])
    np.testing.assert_allclose(a.uns["cell_type_co_occurrence"]["interval"], [0, 10, 20, 40])  # mpp 0.5


def test_morans_i_equals_squidpy():
    a = make_cells(800, graph="delaunay")
    b = a.copy()
    tg.tl.morans_i(a, features=["f_smooth", "f_noise", "f_y", "area_um2"])
    sq.gr.spatial_autocorr(b, mode="moran", genes=["f_smooth", "f_noise", "f_y"], show_progress_bar=False)
    ours, theirs = a.uns["moranI"], b.uns["moranI"]
    for f in ["f_smooth", "f_noise", "f_y"]:
        assert ours.loc[f, "I"] == pytest.approx(theirs.loc[f, "I"], rel=1e-6)
        assert ours.loc[f, "pval_norm"] == pytest.approx(theirs.loc[f, "pval_norm"], rel=1e-5, abs=1e-12)
    assert ours.loc["f_smooth", "I"] > 0.5 and abs(ours.loc["f_noise", "I"]) < 0.1
    assert "area_um2" in ours.index  # obs columns work too
    with pytest.raises(tg.InputError, match="neither a var name nor an obs column"):
        tg.tl.morans_i(a, features=["nope"])


def test_neighborhood_features_hand_worked():
    import anndata as ad

    # path 0-1-2-3, types a a b b
    A = sparse.csr_matrix((np.ones(6), ([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2])), shape=(4, 4))
    a = ad.AnnData(obs=pd.DataFrame({"t": pd.Categorical(list("aabb"))}, index=list("0123")))
    a.obsp["spatial_connectivities"] = A
    tg.tl.neighborhood_features(a, cluster_key="t", n_hops=1)
    np.testing.assert_allclose(a.obsm["X_niche_features"], [[1, 0], [2 / 3, 1 / 3], [1 / 3, 2 / 3], [0, 1]])
    tg.tl.neighborhood_features(a, cluster_key="t", n_hops=2, key_added="h2")
    np.testing.assert_allclose(a.obsm["h2"][0], [2 / 3, 1 / 3])


def test_niches_recover_planted_regions():
    rng = np.random.default_rng(0)
    import anndata as ad

    n = 1200
    pts = rng.uniform(0, 1000, (n, 2))
    left = pts[:, 0] < 500
    # left half: mostly t0/t1 mixed; right half: mostly t2
    types = np.where(left, rng.choice(["t0", "t1"], n), np.where(rng.random(n) < 0.9, "t2", "t0"))
    a = ad.AnnData(obs=pd.DataFrame({"cell_type": pd.Categorical(types)}, index=[str(i) for i in range(n)]))
    a.obsm["spatial"] = pts
    tg.graph.knn(a, k=8, symmetrize="union")
    tg.tl.niches(a, cluster_key="cell_type", n_hops=2, resolution=0.1, seed=0)
    # Leiden may split a half into several niches, but a niche must not straddle the halves
    purity = pd.crosstab(a.obs["niche"], left).max(axis=1).sum() / n
    assert purity > 0.95
    assert a.obs["niche"].nunique() >= 2
    assert a.uns["niche"]["params"]["n_hops"] == 2


def test_embed_wraps_scanpy():
    a = make_cells(300)
    a.obsm["X_rep"] = np.column_stack([a.X, a.obs["area_um2"].to_numpy()]).astype(np.float32)
    try:
        tg.tl.embed(a, use_rep="X_rep", n_neighbors=10, seed=0)
    except AttributeError as exc:  # scanpy 1.11 with scipy >= 1.17 ('csr_array' has no 'getnnz')
        pytest.skip(f"scanpy.pp.neighbors is broken in this environment: {exc}")
    assert a.obsm["X_rep_umap"].shape == (300, 2)
    assert a.obs["X_rep_leiden"].nunique() >= 2
    a.obsm["X_nan"] = a.obsm["X_rep"].copy()
    a.obsm["X_nan"][0, 0] = np.nan
    with pytest.raises(tg.InputError, match="NaN"):
        tg.tl.embed(a, use_rep="X_nan")
    with pytest.raises(tg.InputError, match="tg.graph.descriptors"):
        tg.tl.embed(a, use_rep="X_structural")
