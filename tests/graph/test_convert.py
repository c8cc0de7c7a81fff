"""Converters: PyG (both ways), networkx, and concatenation of slides with their graphs."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import tissuegraph as tg
from tissuegraph._anndata import set_slide_metadata

torch = pytest.importorskip("torch")


def make_cells(xy, *, mpp=0.5, slide="s1", types=None, X=None, prefix="c"):
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    n = len(xy)
    obs = pd.DataFrame(index=[f"{prefix}{i}" for i in range(n)])
    obs["slide"] = pd.Categorical([slide] * n)
    if types is not None:
        obs["cell_type"] = pd.Categorical(list(types))
    X = np.arange(n * 2, dtype=np.float32).reshape(n, 2) if X is None else X
    a = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=["area_um2", "eccentricity"]))
    a.obsm["spatial"] = xy
    if mpp is not None:
        set_slide_metadata(a, slide, mpp=mpp)
    return a


LINE = [[0, 0], [2, 0], [6, 0], [14, 0]]


def edges_of(data):
    return set(map(tuple, data.edge_index.t().tolist()))


# ------------------------------------------------------------------------------------------ to_pyg
def test_to_pyg_hand_worked_directed_knn():
    a = make_cells(LINE, types=["t", "s", "t", None])
    tg.graph.knn(a, k=1)  # 0->1, 1->0, 2->1, 3->2 (row = the cell, column = its neighbour)
    d = tg.graph.to_pyg(a, y="cell_type")
    # PyG: messages flow source -> target, so each cell receives from its neighbour: edge j -> i
    assert edges_of(d) == {(1, 0), (0, 1), (1, 2), (2, 3)}
    assert d.edge_index.dtype == torch.int64 and d.edge_index.shape == (2, 4)
    assert d.edge_attr.shape == (4, 1) and d.edge_attr.dtype == torch.float32
    lengths = {e: float(w) for e, w in zip(map(tuple, d.edge_index.t().tolist()), d.edge_attr[:, 0])}
    assert lengths[(1, 2)] == pytest.approx(4 * 0.5) and lengths[(2, 3)] == pytest.approx(8 * 0.5)  # µm
    assert d.unit == "um"
    np.testing.assert_allclose(d.pos.numpy(), np.asarray(LINE) * 0.5)
    np.testing.assert_allclose(d.x.numpy(), a.X)
    assert d.y_categories == ["s", "t"] and d.y.tolist() == [1, 0, 1, -1]  # -1 = missing
    assert d.feature_names == ["area_um2", "eccentricity"] and d.obs_names == ["c0", "c1", "c2", "c3"]
    assert d.num_nodes == 4


def test_to_pyg_px_without_mpp_and_feature_choices():
    a = make_cells(LINE, mpp=None)
    a.obsm["X_emb"] = np.ones((4, 3))
    tg.graph.delaunay(a)
    d = tg.graph.to_pyg(a, features=["eccentricity"])
    assert d.unit == "px" and "mpp" not in d
    assert sorted(float(v) for v in d.edge_attr[:, 0]) == [2, 2, 4, 4, 8, 8]
    np.testing.assert_allclose(d.x.numpy()[:, 0], a[:, "eccentricity"].X[:, 0])
    assert tg.graph.to_pyg(a, features="X_emb").x.shape == (4, 3)
    assert tg.graph.to_pyg(a, features="area_um2").x.shape == (4, 1)
    assert tg.graph.to_pyg(a, features=[]).x is None
    with pytest.raises(tg.InputError, match="var_names"):
        tg.graph.to_pyg(a, features=["nope"])
    with pytest.raises(tg.InputError, match="obsm key"):
        tg.graph.to_pyg(a, features="nope")
    with pytest.raises(tg.InputError, match="obs"):
        tg.graph.to_pyg(a, y="nope")
    with pytest.raises(tg.InputError, match="build a cell graph first"):
        tg.graph.to_pyg(a, key="other")


def test_to_pyg_zero_length_edges_have_length_zero():
    a = make_cells([[0, 0], [0, 0], [4, 0]])
    tg.graph.delaunay(a)
    d = tg.graph.to_pyg(a)
    lengths = {e: float(w) for e, w in zip(map(tuple, d.edge_index.t().tolist()), d.edge_attr[:, 0])}
    assert lengths[(0, 1)] == 0 and lengths[(1, 2)] == pytest.approx(2.0)


def test_pyg_round_trip():
    rng = np.random.default_rng(0)
    a = make_cells(rng.uniform(0, 200, (50, 2)), types=rng.choice(["t", "s"], 50),
                   X=rng.normal(size=(50, 2)).astype(np.float32))
    tg.graph.knn(a, k=4)
    d = tg.graph.to_pyg(a, y="cell_type")
    b = tg.graph.from_pyg(d)
    assert list(b.obs_names) == list(a.obs_names) and list(b.var_names) == list(a.var_names)
    np.testing.assert_allclose(b.X, a.X)
    np.testing.assert_allclose(b.obsm["spatial"], a.obsm["spatial"], rtol=1e-6)
    assert (b.obsp["spatial_connectivities"] != a.obsp["spatial_connectivities"]).nnz == 0
    np.testing.assert_allclose(b.obsp["spatial_distances"].toarray(), a.obsp["spatial_distances"].toarray(),
                               rtol=1e-6)
    assert b.obs["cell_type"].equals(a.obs["cell_type"])
    assert list(b.obs["slide"]) == list(a.obs["slide"])
    assert tg._anndata.get_mpp(b, "s1") == 0.5
    # from_pyg on a plain PyG graph (no tissuegraph attributes)
    from torch_geometric.data import Data

    plain = Data(edge_index=torch.tensor([[0, 1], [1, 0]]), pos=torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    c = tg.graph.from_pyg(plain, mpp=0.25)
    assert c.n_obs == 2 and c.obsp["spatial_distances"][0, 1] == pytest.approx(5.0)
    assert tg._anndata.get_mpp(c) == 0.25


# ------------------------------------------------------------------------------------- to_networkx
def test_to_networkx():
    a = make_cells(LINE, types=["t", "s", "t", "s"])
    tg.graph.knn(a, k=1)
    G = tg.graph.to_networkx(a, node_attrs=["cell_type"])
    import networkx as nx

    assert isinstance(G, nx.DiGraph) and set(G.edges) == {(0, 1), (1, 0), (2, 1), (3, 2)}
    assert G.nodes[2] == {"name": "c2", "pos": (6.0, 0.0), "cell_type": "t", "slide": "s1"}
    assert G.edges[3, 2]["distance"] == 8 and G.edges[3, 2]["distance_um"] == 4
    tg.graph.delaunay(a)
    G = tg.graph.to_networkx(a)
    assert type(G) is nx.Graph and set(map(frozenset, G.edges)) == {frozenset(e) for e in [(0, 1), (1, 2), (2, 3)]}
    with pytest.raises(tg.InputError, match="node_attrs"):
        tg.graph.to_networkx(a, node_attrs=["nope"])


# ------------------------------------------------------------------------------------------ concat
def test_concat_keeps_block_diagonal_graphs_and_metadata():
    a = make_cells([[0, 0], [1, 0], [2, 0]], slide="A", mpp=0.5)
    b = make_cells([[0, 0], [1, 0]], slide="B", mpp=0.25)
    for x in (a, b):
        tg.graph.delaunay(x)
        tg.graph.knn(x, k=1, key_added="knn")
    c = tg.graph.concat([a, b])
    assert c.n_obs == 5 and list(c.obs["slide"]) == ["A"] * 3 + ["B"] * 2
    assert list(c.obs_names) == ["c0-A", "c1-A", "c2-A", "c0-B", "c1-B"]  # made unique
    for key in ("spatial", "knn"):
        A = c.obsp[f"{key}_connectivities"].toarray()
        np.testing.assert_array_equal(A[:3, :3], a.obsp[f"{key}_connectivities"].toarray())
        np.testing.assert_array_equal(A[3:, 3:], b.obsp[f"{key}_connectivities"].toarray())
        assert A[:3, 3:].sum() == 0 and A[3:, :3].sum() == 0
        assert c.uns[f"{key}_neighbors"]["connectivities_key"] == f"{key}_connectivities"
    # the inputs' parameters differ (µm/px), so each input's are kept
    p = c.uns["spatial_neighbors"]["params"]
    assert p["method"] == "concat" and [q["method"] for q in p["inputs"]] == ["delaunay", "delaunay"]
    assert c.uns["knn_neighbors"]["params"]["method"] == "concat"
    assert tg._anndata.get_mpp(c, "A") == 0.5 and tg._anndata.get_mpp(c, "B") == 0.25
    # a graph built on the concatenation per slide equals the concatenated graphs
    tg.graph.delaunay(c, key_added="again")
    assert (c.obsp["again_connectivities"] != c.obsp["spatial_connectivities"]).nnz == 0


def test_concat_keys_mapping_and_errors(caplog):
    a = make_cells([[0, 0], [1, 0]], slide="A")
    b = make_cells([[5, 5], [6, 5]], slide="B")
    tg.graph.knn(a, k=1)
    with caplog.at_level(logging.WARNING, logger="tissuegraph"):
        c = tg.graph.concat([a, b])
    assert "spatial_connectivities" not in c.obsp and "not present in every input" in caplog.text
    a2, b2 = a.copy(), b.copy()
    for x in (a2, b2):
        del x.obs["slide"]
    c = tg.graph.concat({"left": a2, "right": b2}, label="slide")
    assert list(c.obs["slide"]) == ["left", "left", "right", "right"]
    with pytest.raises(tg.InputError, match="already has"):
        tg.graph.concat([a, b], keys=["x", "y"])
    with pytest.raises(tg.InputError, match="some inputs"):
        tg.graph.concat([a, b2])
    b3 = make_cells([[5, 5]], slide="A", mpp=0.3)
    with pytest.raises(tg.InputError, match="µm/px"):
        tg.graph.concat([a, b3])
    with pytest.raises(tg.InputError, match="at least one"):
        tg.graph.concat([])
