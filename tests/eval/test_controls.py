"""Degree-preserving rewiring, cell perturbations and the GNN-control orchestration."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tissuegraph import InputError
from tissuegraph.eval import gnn_controls, perturb_cells, rewire_degree_preserving


def _random_graph(n=200, p=0.05, seed=0):
    rng = np.random.default_rng(seed)
    U = sp.triu(sp.random(n, n, density=p, random_state=rng, data_rvs=lambda k: np.ones(k)), k=1)
    return (U + U.T).tocsr()


def _edges(A):
    A = sp.triu(sp.csr_matrix(A), k=1).tocoo()
    return set(zip(A.row.tolist(), A.col.tolist()))


def test_rewiring_keeps_every_degree_and_changes_edges():
    A = _random_graph()
    R = rewire_degree_preserving(A, seed=1)
    deg = lambda M: np.asarray((sp.csr_matrix(M) != 0).sum(axis=1)).ravel()  # noqa: E731
    assert np.array_equal(deg(R), deg(A))
    assert (R != R.T).nnz == 0  # symmetric
    assert R.diagonal().sum() == 0  # no self loops
    assert set(np.unique(R.data)) == {1.0}  # simple graph, no multi-edges
    ea, er = _edges(A), _edges(R)
    assert len(er) == len(ea)
    assert len(ea & er) / len(ea) < 0.3  # 10 x |E| swaps mix the graph
    # deterministic per seed, different across seeds
    assert _edges(rewire_degree_preserving(A, seed=1)) == er
    assert _edges(rewire_degree_preserving(A, seed=2)) != er
    # n_swaps=0 returns the same graph
    assert _edges(rewire_degree_preserving(A, n_swaps=0)) == ea


def test_rewiring_a_directed_knn_graph_uses_its_union(caplog):
    rng = np.random.default_rng(0)
    xy = rng.random((100, 2))
    from sklearn.neighbors import kneighbors_graph

    K = kneighbors_graph(xy, 5, mode="connectivity")  # directed
    U = ((K + K.T) > 0).astype(float)
    U.setdiag(0)
    U.eliminate_zeros()
    R = rewire_degree_preserving(K, n_swaps=300, seed=0)
    assert np.array_equal(np.asarray(R.sum(axis=1)).ravel(), np.asarray(U.sum(axis=1)).ravel())
    # a star has no valid swap: unchanged, and the shortfall is logged
    star = sp.csr_matrix((np.ones(8), (np.zeros(8, int), np.arange(1, 9))), shape=(9, 9))
    with caplog.at_level(logging.WARNING, logger="tissuegraph"):
        S = rewire_degree_preserving(star, n_swaps=5, max_rounds=20)
    assert _edges(S) == _edges(star + star.T)
    assert "swaps after" in caplog.text
    with pytest.raises(InputError):
        rewire_degree_preserving(sp.csr_matrix((3, 4)))
    with pytest.raises(InputError):
        rewire_degree_preserving(star, n_swaps=-1)


def _cells_and_samples(n_samples=40, per=25, seed=0):
    """Regions of ``per`` cells; the label sets the mean of feature 0; kNN graph inside each region."""
    import anndata as ad
    from sklearn.neighbors import kneighbors_graph

    rng = np.random.default_rng(seed)
    label = np.tile([0, 1], n_samples // 2)
    n = n_samples * per
    member = np.repeat(np.arange(n_samples), per)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    X[:, 0] += np.where(label[member] == 1, 1.5, -1.5)
    xy = rng.random((n, 2)) * 100 + np.c_[member * 200, np.zeros(n)]
    A = kneighbors_graph(xy, 4, mode="connectivity")
    A = ((A + A.T) > 0).astype(np.float32).tocsr()
    cells = ad.AnnData(X=X, obs=pd.DataFrame({"slide": ["s0"] * n}, index=[str(i) for i in range(n)]))
    cells.obsm["spatial"] = xy
    cells.obsp["spatial_connectivities"] = A
    coo = A.tocoo()
    cells.obsp["spatial_distances"] = sp.csr_matrix((np.hypot(*(xy[coo.row] - xy[coo.col]).T), (coo.row, coo.col)),
                                                    shape=A.shape)
    M = sp.csr_matrix((np.ones(n), (member, np.arange(n))), shape=(n_samples, n))
    samples = ad.AnnData(obs=pd.DataFrame({"label": pd.Categorical(label.astype(str)),
                                           "patient": [f"p{i // 4}" for i in range(n_samples)]},
                                          index=[f"r{i}" for i in range(n_samples)]))
    samples.obsm["cells"] = M
    return cells, samples


def test_perturbations_do_what_they_say():
    cells, _ = _cells_and_samples()
    A = cells.obsp["spatial_connectivities"]
    r = perturb_cells(cells, "rewire", seed=0)
    assert np.array_equal(np.asarray(r.obsp["spatial_connectivities"].sum(1)).ravel(), np.asarray(A.sum(1)).ravel())
    assert _edges(r.obsp["spatial_connectivities"]) != _edges(A)
    D = r.obsp["spatial_distances"].tocoo()
    xy = cells.obsm["spatial"]
    assert np.allclose(D.data, np.hypot(*(xy[D.row] - xy[D.col]).T))
    assert np.array_equal(r.X, cells.X)
    s = perturb_cells(cells, "shuffle_features", seed=0)
    assert not np.array_equal(s.X, cells.X)
    assert np.array_equal(np.sort(s.X, axis=0), np.sort(cells.X, axis=0))  # same values, other cells
    assert _edges(s.obsp["spatial_connectivities"]) == _edges(A)
    c = perturb_cells(cells, "coordinates_only")
    assert np.allclose(c.X, cells.X.mean(0)) and np.array_equal(c.obsm["spatial"], xy)
    t = perturb_cells(cells, "topology_only", seed=0)
    assert np.allclose(t.X, cells.X.mean(0))
    assert set(t.obsp["spatial_distances"].data.tolist()) == {1.0}
    assert _edges(t.obsp["spatial_connectivities"]) == _edges(A)
    assert not np.allclose(t.obsm["spatial"], xy)
    assert cells.X is not s.X and np.array_equal(cells.obsm["spatial"], xy)  # the input is untouched
    with pytest.raises(InputError, match="Unknown control"):
        perturb_cells(cells, "nonsense")
    del cells.obsp["spatial_connectivities"]
    with pytest.raises(InputError, match="build a cell graph"):
        perturb_cells(cells, "rewire")


def test_gnn_controls_measure_what_a_model_relies_on():
    """A model that averages its cells' own features loses the label under feature shuffling and with
    coordinates only, and loses nothing when the graph is rewired (it ignores the graph)."""
    cells, samples = _cells_and_samples()
    M = samples.obsm["cells"]
    Mn = sp.diags(1 / np.asarray(M.sum(1)).ravel()) @ M

    def embed_fn(c):
        return np.asarray(Mn @ np.asarray(c.X, dtype=np.float64))

    table = gnn_controls(samples, cells, embed_fn=embed_fn, label_key="label", group_key="patient", n_splits=5,
                         seeds=(0, 1), n_boot=500, task="classification")
    t = table[(table.protocol == "linear_probe") & (table.metric == "balanced_accuracy")].set_index("control")
    assert t.loc["shuffle_features", "verdict"] == "relies on it" and t.loc["shuffle_features", "lost"] > 0.3
    assert t.loc["coordinates_only", "verdict"] == "relies on it"
    assert t.loc["rewire", "lost"] == pytest.approx(0.0) and t.loc["rewire", "verdict"] == "no detectable reliance"
    assert t.loc["rewire", "full"] > 0.9
    assert "tg_gnn_controls" in samples.uns and len(samples.uns["tg_gnn_controls"]["table"]) == len(table)
    with pytest.raises(InputError, match="embed_fn returned shape"):
        gnn_controls(samples, cells, embed_fn=lambda c: np.zeros((3, 2)), label_key="label", controls=("rewire",))
