"""tg.models GNN encoders: seeding, batching, invariances, degenerate graphs, values, save/load."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

import tissuegraph as tg
from tissuegraph.models import GNNEncoder, load_model, save_model, weights_sha256

CONVS = ["gin", "gine", "sage", "gcn", "gatv2"]


def _random_graph(n, p=0.3, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.random((n, n)) < p
    A = np.triu(A, 1)
    A = A | A.T
    src, dst = np.nonzero(A)
    return (torch.from_numpy(rng.normal(size=(n, 5)).astype(np.float32)),
            torch.from_numpy(np.stack([src, dst]).astype(np.int64)),
            torch.from_numpy(rng.uniform(0.5, 3, (len(src), 1)).astype(np.float32)))


def _batch(graphs):
    xs, eis, eas, bs = [], [], [], []
    off = 0
    for g, (x, ei, ea) in enumerate(graphs):
        xs.append(x)
        eis.append(ei + off)
        eas.append(ea)
        bs.append(torch.full((len(x),), g, dtype=torch.long))
        off += len(x)
    return torch.cat(xs), torch.cat(eis, 1), torch.cat(eas), torch.cat(bs)


def _adj(ei, n):
    order = torch.argsort(ei[1] * n + ei[0])
    src, tgt = ei[0][order], ei[1][order]
    indptr = torch.zeros(n + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(torch.bincount(tgt, minlength=n), 0)
    return torch.sparse_csr_tensor(indptr, src, torch.ones(len(src)), size=(n, n))


@pytest.mark.parametrize("conv", CONVS)
def test_same_seed_same_weights_and_different_seeds_differ(conv):
    x, ei, ea = _random_graph(12)
    a = GNNEncoder(5, conv=conv, hidden=16, depth=2, seed=3)
    b = GNNEncoder(5, conv=conv, hidden=16, depth=2, seed=3)
    c = GNNEncoder(5, conv=conv, hidden=16, depth=2, seed=4)
    state = torch.get_rng_state()
    ea_ = ea if a.uses_edge_attr else None
    assert torch.equal(a(x, ei, edge_attr=ea_), b(x, ei, edge_attr=ea_))
    assert not torch.allclose(a(x, ei, edge_attr=ea_), c(x, ei, edge_attr=ea_))
    assert weights_sha256(a) == weights_sha256(b) != weights_sha256(c)
    assert torch.equal(state, torch.get_rng_state())  # seeding leaves the global RNG alone
    a.reset_parameters(seed=4)
    assert weights_sha256(a) == weights_sha256(c)


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("pool", ["mean", "max", "sum", "attention"])
def test_batching_relabelling_and_degenerate_graphs(conv, pool):
    graphs = [_random_graph(n, seed=i) for i, n in enumerate([9, 1, 0, 14, 4])]
    # graph 3 without edges
    graphs[3] = (graphs[3][0], graphs[3][1][:, :0], graphs[3][2][:0])
    m = GNNEncoder(5, conv=conv, hidden=8, depth=3, pool=pool, norm="layer", seed=0)
    x, ei, ea, b = _batch(graphs)
    kw = dict(edge_attr=ea) if m.uses_edge_attr else {}
    batched = m(x, ei, b, num_graphs=len(graphs), **kw, layer="concat")
    assert batched.shape == (5, 24) and torch.isfinite(batched).all()
    assert torch.equal(batched[2], torch.zeros(24))  # no nodes: zeros
    if conv in ("gin", "sage", "gcn"):
        sparse = m(x, ei, b, num_graphs=len(graphs), adj_t=_adj(ei, len(x)), layer="concat")
        assert torch.allclose(sparse, batched, atol=1e-5)
    for g, (xg, eig, eag) in enumerate(graphs):
        kw = dict(edge_attr=eag) if m.uses_edge_attr else {}
        single = m(xg, eig, torch.zeros(len(xg), dtype=torch.long), num_graphs=1, **kw, layer="concat")
        assert torch.allclose(single[0], batched[g], atol=1e-5), g
        if len(xg) > 1:  # relabel the nodes
            perm = torch.randperm(len(xg), generator=torch.Generator().manual_seed(g))
            inv = torch.argsort(perm)
            relab = m(xg[perm], inv[eig], torch.zeros(len(xg), dtype=torch.long), num_graphs=1, **kw,
                      layer="concat")
            assert torch.allclose(relab, single, atol=1e-5)


def test_layers_are_slices_of_concat():
    x, ei, _ = _random_graph(10)
    m = GNNEncoder(5, hidden=8, depth=3, seed=0)
    cat = m(x, ei, layer="concat")
    for i in range(3):
        assert torch.allclose(m(x, ei, layer=i), cat[:, 8 * i:8 * (i + 1)])
    assert torch.allclose(m(x, ei), m(x, ei, layer=2))
    assert m.out_channels("concat") == 24
    with pytest.raises(tg.InputError, match="out of range"):
        m(x, ei, layer=3)


def test_gin_values_against_numpy():
    """One GIN layer, no normalisation, sum pooling, computed by hand from the weights."""
    x, ei, _ = _random_graph(7, seed=2)
    m = GNNEncoder(5, conv="gin", hidden=6, depth=1, norm="none", pool="sum", seed=1)
    got = m(x, ei).detach().numpy()[0]
    X = x.numpy().astype(np.float64)
    agg = X.copy()
    for s, t in ei.numpy().T:
        agg[t] += X[s]
    mlp = m.convs[0].nn
    W1, b1 = mlp[0].weight.detach().numpy(), mlp[0].bias.detach().numpy()
    W2, b2 = mlp[2].weight.detach().numpy(), mlp[2].bias.detach().numpy()
    h = np.maximum(np.maximum(agg @ W1.T + b1, 0) @ W2.T + b2, 0)
    np.testing.assert_allclose(got, h.sum(0), rtol=1e-5, atol=1e-5)


def test_bad_options():
    with pytest.raises(tg.InputError, match="conv must be one of"):
        GNNEncoder(3, conv="transformer")
    with pytest.raises(tg.InputError, match="pool must be one of"):
        GNNEncoder(3, pool="median")
    m = GNNEncoder(3, hidden=4, depth=1, seed=0)
    with pytest.raises(tg.InputError, match=r"shape \(n_nodes, 3\)"):
        m(torch.zeros(4, 2), torch.zeros(2, 0, dtype=torch.long))


def test_save_load_round_trip(tmp_path):
    x, ei, ea = _random_graph(10)
    m = GNNEncoder(5, conv="gatv2", hidden=8, depth=2, pool="attention", seed=5)
    out = save_model(m, tmp_path / "m", card={"inputs": "features", "seed": 5, "metrics": {"loss": np.float32(0.5)}})
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "model.safetensors"]
    m2, card = load_model(out)
    assert isinstance(m2, GNNEncoder) and m2.config() == m.config()
    assert torch.equal(m(x, ei, edge_attr=ea), m2(x, ei, edge_attr=ea))
    assert card["weights_sha256"] == weights_sha256(m) and card["architecture"]["builder"] == "gnn"
    assert card["metrics"]["loss"] == 0.5 and card["inputs"] == "features"


def _saved(tmp_path):
    from safetensors.torch import load_file, save_file

    m = GNNEncoder(4, hidden=8, depth=2, seed=0)
    d = save_model(m, tmp_path / "m", card={"inputs": "topology"})
    state = load_file(str(d / "model.safetensors"))
    card = json.loads((d / "card.json").read_text())
    card.pop("weights_sha256")
    (d / "card.json").write_text(json.dumps(card))
    return d, state, save_file


def test_load_missing_extra_and_wrong_shape_keys_are_named(tmp_path):
    d, state, save_file = _saved(tmp_path)
    key = "convs.0.nn.0.weight"
    broken = dict(state)
    del broken[key]
    broken["convs.0.extra"] = state["convs.1.nn.2.bias"]
    broken["convs.1.nn.2.bias"] = state["convs.1.nn.2.bias"][:3].clone()
    save_file(broken, str(d / "model.safetensors"))
    with pytest.raises(tg.InputError) as err:
        load_model(d)
    msg = str(err.value)
    assert f"missing keys ['{key}']" in msg and "unexpected keys ['convs.0.extra']" in msg
    assert "convs.1.nn.2.bias: file (3,) vs model (8,)" in msg


def test_pickle_in_weights_file_is_refused(tmp_path):
    d, state, _ = _saved(tmp_path)
    torch.save(state, d / "model.safetensors")  # a (zip) pickle under the safetensors name
    with pytest.raises(tg.InputError, match="pickle"):
        load_model(d)
    (d / "model.safetensors").write_bytes(pickle.dumps({"a": 1}, protocol=2))  # plain pickle
    with pytest.raises(tg.InputError, match="pickle"):
        load_model(d)
    (d / "model.safetensors").write_bytes(b"not a weights file at all")
    with pytest.raises(tg.InputError, match="not a readable safetensors"):
        load_model(d)


def test_card_hash_mismatch_and_missing_files(tmp_path):
    m = GNNEncoder(4, hidden=8, depth=2, seed=0)
    d = save_model(m, tmp_path / "a", card={})
    d2 = save_model(GNNEncoder(4, hidden=8, depth=2, seed=1), tmp_path / "b", card={})
    (d / "model.safetensors").write_bytes((d2 / "model.safetensors").read_bytes())
    with pytest.raises(tg.InputError, match="SHA-256"):
        load_model(d)
    with pytest.raises(tg.InputError, match="not a tissuegraph model folder"):
        load_model(tmp_path / "nothing")


def test_models_module_is_light():
    import subprocess
    import sys

    code = "import tissuegraph as tg, sys; tg.models; tg.emb; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
