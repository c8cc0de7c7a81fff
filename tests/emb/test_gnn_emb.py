"""tg.emb.gnn / gnn_twins / train_gnn on tiny synthetic cells."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import tissuegraph as tg
from tissuegraph.models import GNNEncoder

from ._cells import make_cells

REC_KEYS = {"family", "trained", "learned", "objective", "architecture", "inputs", "layer", "seed", "twin_group",
            "weights_sha256", "params"}


@pytest.fixture(scope="module")
def cells():
    return make_cells(600, side_um=300)


@pytest.fixture
def samples(cells):
    return tg.graph.grid_samples(cells, size_um=64)


def _reference(cells, samples, model, inputs="features"):
    """Independent per-sample reference: induced subgraph A[idx][:, idx] -> one graph at a time."""
    A = cells.obsp["spatial_connectivities"].tocsr()
    M = tg.graph.sample_membership(samples, cells)
    X = np.asarray(cells.X, dtype=np.float64)
    used = np.unique(M.indices)
    mean, std = X[used].mean(0), X[used].std(0)
    out = []
    for r in range(samples.n_obs):
        idx = M[r].indices
        sub = A[idx][:, idx].tocoo()
        x = (X[idx] - mean) / std if inputs == "features" else np.ones((len(idx), 1))
        ei = torch.from_numpy(np.stack([sub.col, sub.row]).astype(np.int64))
        with torch.no_grad():
            out.append(model(torch.from_numpy(x.astype(np.float32)), ei)[0].numpy())
    return np.stack(out)


def test_gnn_equals_per_sample_reference_and_records_provenance(cells, samples):
    tg.emb.gnn(samples, cells, model="gin", seed=2, batch_nodes=50)  # many small batches
    key = "X_gnn_gin_features_untrained_s2"
    X = samples.obsm[key]
    assert X.dtype == np.float32 and X.shape == (samples.n_obs, 64)
    ref = _reference(cells, samples, GNNEncoder(cells.n_vars, seed=2))
    np.testing.assert_allclose(X, ref, atol=1e-5)
    rec = samples.uns["representations"][key]
    assert REC_KEYS <= set(rec)
    assert rec["family"] == "gnn" and rec["trained"] is False and rec["learned"] is True
    assert rec["objective"] is None and rec["twin_group"] == "gnn:gin-3x64:features" and rec["seed"] == 2
    assert rec["weights_sha256"] == tg.models.weights_sha256(GNNEncoder(cells.n_vars, seed=2))
    assert len(samples.uns[f"{key}_names"]) == 64
    # batch size does not change the result
    tg.emb.gnn(samples, cells, model="gin", seed=2, batch_nodes=10**6, key_added="big")
    np.testing.assert_allclose(samples.obsm["X_big"], X, atol=1e-5)


def test_overlapping_samples_duplicate_cells(cells):
    samples = tg.graph.grid_samples(cells, size_um=64, stride_um=32)
    assert (np.asarray(samples.obsm["cells"].sum(0)).ravel() > 1).any()
    tg.emb.gnn(samples, cells, model="sage", seed=0, layer="concat", key_added="o")
    m = GNNEncoder(cells.n_vars, conv="sage", seed=0)
    ref = _reference(cells, samples, lambda x, ei: m(x, ei, layer="concat"))
    np.testing.assert_allclose(samples.obsm["X_o"], ref, atol=1e-5)


def test_seeds_twins_and_topology(cells, samples):
    tg.emb.gnn_twins(samples, cells, seeds=[0, 1, 0 + 0], topology=True)
    a, b = samples.obsm["X_gnn_gin_features_untrained_s0"], samples.obsm["X_gnn_gin_features_untrained_s1"]
    assert not np.allclose(a, b)
    again = tg.emb.gnn(samples, cells, seed=0, key_added="again", copy=True)
    assert np.array_equal(again.obsm["X_again"], a)  # same seed -> identical
    topo = samples.obsm["X_gnn_gin_topology_untrained_s0"]
    rec = samples.uns["representations"]["X_gnn_gin_topology_untrained_s0"]
    assert rec["inputs"] == "topology" and rec["twin_group"] == "gnn:gin-3x64:topology"
    # topology only ignores the features: shuffle them (and the cell types)
    shuffled = cells.copy()
    rng = np.random.default_rng(0)
    shuffled.X = shuffled.X[rng.permutation(cells.n_obs)]
    tg.emb.gnn(samples, shuffled, inputs="topology", seed=0, key_added="topo_shuffled")
    assert np.array_equal(samples.obsm["X_topo_shuffled"], topo)
    tg.emb.gnn(samples, shuffled, inputs="features", seed=0, key_added="feat_shuffled")
    assert not np.allclose(samples.obsm["X_feat_shuffled"], a)
    np.testing.assert_allclose(topo, _reference(cells, samples, GNNEncoder(1, seed=0), inputs="topology"), atol=1e-5)


def test_relabelled_cells_give_the_same_embeddings(cells, samples):
    tg.emb.gnn(samples, cells, model="gcn", inputs="features+positions+cell_type", seed=1, key_added="a")
    perm = np.random.default_rng(1).permutation(cells.n_obs)
    permuted = cells[perm].copy()  # obsp rows/cols permuted together; membership matched by name
    tg.emb.gnn(samples, permuted, model="gcn", inputs="features+positions+cell_type", seed=1, key_added="b")
    np.testing.assert_allclose(samples.obsm["X_a"], samples.obsm["X_b"], atol=1e-5)


def test_empty_single_node_and_edgeless_samples():
    cells = make_cells(300, side_um=300)
    # an isolated cell far from the others, and a cell graph with no edges in one region
    samples = tg.graph.grid_samples(cells, size_um=50, min_cells=0)
    n_cells = samples.obs["n_cells"].to_numpy()
    assert (n_cells == 0).any() and (n_cells == 1).any()
    tg.emb.gnn(samples, cells, model="gatv2", inputs="features+positions", seed=0, key_added="g")
    X = samples.obsm["X_g"]
    assert np.isfinite(X).all()
    assert np.array_equal(X[n_cells == 0], np.zeros_like(X[n_cells == 0]))
    assert np.abs(X[n_cells == 1]).sum() > 0
    assert samples.uns["representations"]["X_g"]["params"]["n_empty"] == int((n_cells == 0).sum())
    edgeless = cells.copy()
    edgeless.obsp["spatial_connectivities"] = sp.csr_matrix((cells.n_obs, cells.n_obs), dtype=np.float32)
    tg.emb.gnn(samples, edgeless, model="gin", seed=0, key_added="e")
    # without edges a GIN node sees itself only: the graph embedding is the mean of per-node MLP outputs
    m = GNNEncoder(cells.n_vars, seed=0)
    ref = _reference(edgeless, samples[n_cells > 0], m)
    np.testing.assert_allclose(samples.obsm["X_e"][n_cells > 0], ref, atol=1e-5)


def test_inputs_errors(cells, samples):
    with pytest.raises(tg.InputError, match="unknown name"):
        tg.emb.gnn(samples, cells, inputs="morphology")
    with pytest.raises(tg.InputError, match="cannot be combined"):
        tg.emb.gnn(samples, cells, inputs="topology+features")
    no_types = cells.copy()
    del no_types.obs["cell_type"]
    with pytest.raises(tg.InputError, match="cell_type"):
        tg.emb.gnn(samples, no_types, inputs="cell_type")
    bad = cells.copy()
    bad.X[3, 1] = np.nan
    with pytest.raises(tg.InputError, match="NaN"):
        tg.emb.gnn(samples, bad, nan="error")
    # default: the NaN becomes the column mean (z-score 0), statistics without it
    tg.emb.gnn(samples, bad, key_added="nan_mean")
    assert np.isfinite(samples.obsm["X_nan_mean"]).all()
    assert samples.uns["representations"]["X_nan_mean"]["params"]["n_nonfinite_features"] == 1
    from tissuegraph.emb._gnn import _SampleGraphs

    g = _SampleGraphs(samples, bad, inputs=("features",), graph_key="spatial")
    member = np.zeros(cells.n_obs, bool)
    member[tg.graph.sample_membership(samples, cells).indices] = True
    col = np.asarray(cells.X[:, 1], dtype=np.float64)[member & (np.arange(cells.n_obs) != 3)]
    assert g.mean[1] == pytest.approx(col.mean(), rel=1e-5) and g.std[1] == pytest.approx(col.std(), rel=1e-4)
    gb = g.batch(np.arange(samples.n_obs))
    node = np.flatnonzero(tg.graph.sample_membership(samples, cells).indices == 3)
    assert gb.x[node, 1].abs().max() == 0.0  # the NaN cell's input is the mean (z-score 0)
    with pytest.raises(tg.InputError, match="knn_connectivities"):
        tg.emb.gnn(samples, cells, graph_key="knn")
    with pytest.raises(tg.InputError, match="architecture name"):
        tg.emb.gnn(samples, cells, model=3)


@pytest.mark.parametrize("objective", ["dgi", "graphcl", "masked"])
def test_self_supervised_training_is_seeded_and_differs_from_twin(cells, samples, objective, tmp_path):
    kw = dict(objective=objective, epochs=2, seed=7, batch_nodes=150, hidden=16, depth=2)
    m1 = tg.emb.train_gnn(samples, cells, **kw)
    m2 = tg.emb.train_gnn(samples, cells, **kw)
    assert tg.models.weights_sha256(m1) == tg.models.weights_sha256(m2)
    card = m1.card
    assert card["objective"] == objective and len(card["loss_log"]) == 2
    assert all(np.isfinite(e["loss"]) for e in card["loss_log"])
    tg.emb.gnn(samples, cells, model=m1)
    key = f"X_gnn_gin_features_{objective}"
    rec = samples.uns["representations"][key]
    assert rec["trained"] is True and rec["objective"] == objective and rec["twin_group"] == "gnn:gin-2x16:features"
    tg.emb.gnn_twins(samples, cells, model=m1, seeds=[7], topology=False)
    twin = samples.obsm["X_gnn_gin_features_untrained_s7"]
    assert samples.uns["representations"]["X_gnn_gin_features_untrained_s7"]["twin_group"] == rec["twin_group"]
    assert not np.allclose(samples.obsm[key], twin, atol=1e-4)  # trained != its untrained twin (same seed)
    # save / load through a folder gives the same embeddings
    tg.models.save_model(m1, tmp_path / "m", card=m1.card)
    tg.emb.gnn(samples, cells, model=tmp_path / "m", key_added="loaded")
    np.testing.assert_array_equal(samples.obsm["X_loaded"], samples.obsm[key])


def test_supervised_training_learns_the_label(cells):
    samples = tg.graph.grid_samples(cells, size_um=40)
    samples.obs["side"] = np.where(samples.obsm["spatial"][:, 0] * 0.5 > 150, "right", "left")
    m = tg.emb.train_gnn(samples, cells, objective="supervised", label_key="side", epochs=30, seed=0, lr=5e-3,
                         hidden=16, depth=2, batch_nodes=200)
    log = m.card["loss_log"]
    assert log[-1]["loss"] < log[0]["loss"] and m.card["metrics"]["train_accuracy"] >= 0.9
    assert m.card["classes"] == ["left", "right"]
    with pytest.raises(tg.InputError, match="label_key"):
        tg.emb.train_gnn(samples, cells, objective="supervised", label_key="nope")


def test_h5ad_round_trip(cells, samples, tmp_path):
    tg.emb.gnn(samples, cells, seed=0)
    samples.write_h5ad(tmp_path / "s.h5ad")
    back = ad.read_h5ad(tmp_path / "s.h5ad")
    rec = back.uns["representations"]["X_gnn_gin_features_untrained_s0"]
    assert rec["objective"] is None and rec["trained"] is False and rec["layer"] == -1
    np.testing.assert_array_equal(back.obsm["X_gnn_gin_features_untrained_s0"],
                                  samples.obsm["X_gnn_gin_features_untrained_s0"])


def test_node_inputs_against_hand_computed(cells, samples):
    """Features = z-scores over the member cells (sklearn's StandardScaler), positions relative to the
    sample centre in µm / 100, one-hot cell types; edges = the cell graph between members."""
    from sklearn.preprocessing import StandardScaler

    from tissuegraph.emb._gnn import _SampleGraphs

    g = _SampleGraphs(samples, cells, inputs=("features", "positions", "cell_type"), graph_key="spatial")
    M = tg.graph.sample_membership(samples, cells)
    rows = np.array([3, 0, 5])
    gb = g.batch(rows)
    used = np.unique(M.indices)
    scaler = StandardScaler().fit(np.asarray(cells.X, dtype=np.float64)[used])
    types = list(cells.obs["cell_type"].cat.categories)
    A = cells.obsp["spatial_connectivities"].tocsr()
    off = 0
    for k, r in enumerate(rows):
        idx = M[r].indices
        x = gb.x[off:off + len(idx)].numpy()
        np.testing.assert_allclose(x[:, :6], scaler.transform(np.asarray(cells.X)[idx]), atol=1e-5)
        rel = (cells.obsm["spatial"][idx] - samples.obsm["spatial"][r]) * 0.5 / 100.0
        np.testing.assert_allclose(x[:, 6:8], rel, atol=1e-5)
        onehot = np.eye(len(types))[[types.index(t) for t in cells.obs["cell_type"].iloc[idx]]]
        np.testing.assert_array_equal(x[:, 8:], onehot)
        assert (gb.batch[off:off + len(idx)] == k).all()
        sub = A[idx][:, idx].tocoo()
        ei = gb.edge_index.numpy()
        inside = (ei[1] >= off) & (ei[1] < off + len(idx))
        got = sorted(zip(ei[0][inside] - off, ei[1][inside] - off))
        assert got == sorted(zip(sub.col.tolist(), sub.row.tolist()))
        off += len(idx)
    assert off == gb.num_nodes


def test_supervised_regression_on_a_training_subset(cells, samples):
    samples = samples.copy()
    samples.obs["density"] = samples.obs["n_cells"].astype(float)
    samples.obs.loc[samples.obs_names[0], "density"] = np.nan  # unlabelled: ignored
    train = np.arange(samples.n_obs) % 2 == 0
    m = tg.emb.train_gnn(samples, cells, objective="supervised", label_key="density", train=train, epochs=2,
                         seed=1, hidden=8, depth=1)
    assert m.card["classes"] is None and m.card["n_train_samples"] == int(train.sum()) - 1
    tg.emb.gnn(samples, cells, model=(m, m.card), key_added="reg")
    assert samples.obsm["X_reg"].shape == (samples.n_obs, 8)
    rec = samples.uns["representations"]["X_reg"]
    assert rec["objective"] == "supervised" and rec["params"]["training_data_sha256"] == m.card["training_data_sha256"]
    with pytest.raises(tg.InputError, match="not in samples.obs_names"):
        tg.emb.train_gnn(samples, cells, objective="dgi", train=["nope"], epochs=1)
