"""tg.emb.gnn with several worker threads, the standardisation in blocks and the membership name check."""

from __future__ import annotations

import numpy as np
import pytest

import tissuegraph as tg
from tissuegraph.emb._gnn import _SampleGraphs, _same_names
from tissuegraph.models import GNNEncoder

from ._cells import make_cells
from .test_gnn_emb import _reference


@pytest.fixture(scope="module")
def cells():
    return make_cells(900, side_um=360, n_features=5, seed=4)


@pytest.mark.parametrize("conv", ["gin", "gatv2"])
def test_threads_give_exactly_the_single_thread_embeddings(cells, conv):
    samples = tg.graph.grid_samples(cells, size_um=60, stride_um=45)  # overlapping: cells in two samples
    one = tg.emb.gnn(samples, cells, model=conv, seed=1, batch_nodes=40, n_jobs=1, key_added="a", copy=True)
    three = tg.emb.gnn(samples, cells, model=conv, seed=1, batch_nodes=40, n_jobs=3, key_added="a", copy=True)
    assert np.array_equal(one.obsm["X_a"], three.obsm["X_a"])
    if conv == "gin":  # and both equal the one-graph-at-a-time reference
        ref = _reference(cells, samples, GNNEncoder(cells.n_vars, seed=1))
        np.testing.assert_allclose(three.obsm["X_a"], ref, atol=1e-5)
    # twins on the threaded path: the same as one seed at a time
    tg.emb.gnn_twins(samples, cells, model=conv, seeds=[1], topology=False, batch_nodes=40, n_jobs=2)
    assert np.array_equal(samples.obsm[f"X_gnn_{conv}_features_untrained_s1"], one.obsm["X_a"])


def test_standardisation_blocks_and_threads_match_numpy(cells):
    samples = tg.graph.grid_samples(cells, size_um=60)
    X = np.asarray(cells.X, dtype=np.float64)
    M = tg.graph.sample_membership(samples, cells)
    used = np.unique(M.indices)
    for workers in (1, 3):
        g = _SampleGraphs(samples, cells, inputs=("features",), graph_key="spatial", workers=workers)
        np.testing.assert_allclose(g.stats["mean"], X[used].mean(0), rtol=1e-12)
        np.testing.assert_allclose(g.stats["std"], X[used].std(0), rtol=1e-10)
    # non-finite values are left out of the statistics and counted
    bad = cells.copy()
    Xb = np.asarray(bad.X).copy()
    Xb[used[0], 1] = np.nan
    Xb[used[5], 2] = np.inf
    bad.X = Xb
    g = _SampleGraphs(samples, bad, inputs=("features",), graph_key="spatial", workers=2)
    keep = np.ones(len(used), bool)
    keep[0] = False
    assert g.n_nonfinite == 2
    np.testing.assert_allclose(g.stats["mean"][1], X[used[keep], 1].mean(), rtol=1e-12)
    keep[:] = True
    keep[5] = False
    np.testing.assert_allclose(g.stats["std"][2], X[used[keep], 2].std(), rtol=1e-10)


def test_same_names_compares_values_not_types():
    a = np.array(["1", "2", "3"], dtype=object)
    assert _same_names(a, np.array(["1", "2", "3"]))
    assert _same_names(np.array([1, 2, 3]), a)  # ints and their strings name the same cells
    assert not _same_names(a, np.array(["1", "2", "4"], dtype=object))
    big = np.array([str(i) for i in range(70000)], dtype=object)
    other = big.copy()
    other[69999] = "x"
    assert _same_names(big, big.copy()) and not _same_names(big, other)
