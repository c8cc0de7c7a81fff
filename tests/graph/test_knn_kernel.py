"""The numba grid kNN kernel (``_knn_kernel``) against the cKDTree path of ``_knn_csr``: bit-identical
indptr, indices and distances on uniform, clustered, tied, duplicated, collinear and tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from tissuegraph.graph import _build as B
from tissuegraph.graph import _knn_kernel as KK

KS = (1, 6, 15)


def _same(a, b):
    for u, v in zip(a, b):
        assert u.dtype == v.dtype and u.shape == v.shape
        if u.dtype == np.float64:  # bitwise, not just ==
            u, v = u.view(np.int64), v.view(np.int64)
        np.testing.assert_array_equal(u, v)


def _check(points, k, **kw):
    grid = B._knn_csr(points, k, impl="grid", **kw)
    tree = B._knn_csr(points, k, impl="tree")
    _same(grid, tree)
    return grid


def _rng(seed=0):
    return np.random.default_rng(seed)


def _lattice(m):
    return np.stack(np.meshgrid(np.arange(m), np.arange(m)), -1).reshape(-1, 2).astype(float)


CASES = {
    "uniform": lambda: _rng(0).random((20_000, 2)) * 1000,
    "clustered": lambda: np.concatenate([_rng(1).normal(c, 5.0, (400, 2)) for c in _rng(2).random((10, 2)) * 1e4]),
    "integer_points": lambda: np.round(_rng(3).random((4000, 2)) * 40),  # massive ties
    "lattice": lambda: _lattice(50),  # 4 or 8 points at every distance
    "duplicates": lambda: np.repeat(_rng(4).random((500, 2)), 4, axis=0),
    "many_copies": lambda: np.concatenate([np.full((40, 2), 0.5), _rng(5).random((2000, 2))]),  # > k+1 copies
    "horizontal": lambda: np.c_[_rng(6).random(3000), np.zeros(3000)],
    "vertical_ties": lambda: np.c_[np.full(3000, 7.0), np.round(_rng(7).random(3000) * 500)],
    "diagonal": lambda: np.c_[np.arange(2000), np.arange(2000)] * 0.3,
    "huge_range": lambda: np.concatenate([_rng(8).random((1500, 2)) * 1e-6, _rng(9).random((1500, 2)) * 1e9]),
    "far_offset": lambda: 1e12 + _rng(10).random((3000, 2)) * 1e3,
    "outlier": lambda: np.concatenate([_rng(11).random((3000, 2)), [[1e7, -1e7]]]),
}


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("case", list(CASES))
def test_grid_equals_tree(case, k):
    _check(CASES[case](), k)


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("n_extra", [0, 1, 2, "k", "k+1"])
def test_tiny_inputs(n_extra, k):
    n = {"k": k, "k+1": k + 1}.get(n_extra, n_extra)
    rng = _rng(n)
    for pts in (rng.random((n, 2)), np.zeros((n, 2)), np.round(rng.random((n, 2)) * 2)):
        _, indices, _ = _check(pts, k)
        assert len(indices) == n * min(k, max(n - 1, 0))


def test_all_points_identical():
    pts = np.full((300, 2), 3.5)
    _, indices, data = _check(pts, 6)
    assert (data == 0).all()
    np.testing.assert_array_equal(indices.reshape(300, 6)[10], [0, 1, 2, 3, 4, 5])  # ties: smallest index
    assert KK.knn_grid(pts, 6) is None  # one cell: the kernel declines, the tree answers


def test_distances_are_numpys_sqrt_dx2_dy2():
    pts = _rng(12).random((5000, 2)) * 3e4
    indptr, indices, data = B._knn_csr(pts, 6, impl="grid")
    src = np.repeat(np.arange(len(pts)), np.diff(indptr))
    ref = B._lengths(pts, src, indices.astype(np.int64))
    np.testing.assert_array_equal(data.view(np.int64), ref.view(np.int64))


def test_threads_give_the_same_rows(monkeypatch):
    monkeypatch.setattr(KK, "_BLOCK", 1000)  # several blocks, so that the threads do run
    for pts in (CASES["uniform"](), CASES["many_copies"]()):
        one = B._knn_csr(pts, 6, impl="grid", n_jobs=1)
        two = B._knn_csr(pts, 6, impl="grid", n_jobs=2)
        _same(one, two)
        _same(two, B._knn_csr(pts, 6, impl="tree"))


def test_rows_over_budget_go_to_the_tree(monkeypatch):
    monkeypatch.setattr(KK, "_budget", lambda k: 30)
    for case in ("uniform", "integer_points", "many_copies", "outlier"):
        pts = CASES[case]()[-2500:]  # the hard rows take the tree's per-row path: keep it short
        out = KK.knn_grid(pts, 6, force=True)
        assert len(out[2]) > 0
        _check(pts, 6)
        _check(pts, 6, n_jobs=2)


def test_auto_dispatch(monkeypatch):
    pts = CASES["uniform"]()
    tree = B._knn_csr(pts, 6, impl="tree")
    monkeypatch.setattr(B, "_KNN_GRID_MIN", 1000)
    calls = []
    real = KK.knn_grid
    monkeypatch.setattr(KK, "knn_grid", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    _same(B._knn_csr(pts, 6), tree)
    assert calls  # the grid ran
    monkeypatch.setattr(B, "_KNN_GRID", False)
    calls.clear()
    _same(B._knn_csr(pts, 6), tree)
    assert not calls
    # declined by the kernel (one far outlier squeezes every point into a few cells): the tree answers
    far = np.concatenate([pts, [[1e9, 1e9]]])
    assert real(far, 6) is None
    monkeypatch.setattr(B, "_KNN_GRID", True)
    _same(B._knn_csr(far, 6), B._knn_csr(far, 6, impl="tree"))


def test_public_knn_edges_unchanged(monkeypatch):
    pts = CASES["integer_points"]()
    monkeypatch.setattr(B, "_KNN_GRID", False)
    ref = B.knn_edges(pts, 6)
    monkeypatch.setattr(B, "_KNN_GRID", True)
    monkeypatch.setattr(B, "_KNN_GRID_MIN", 0)
    for u, v in zip(B.knn_edges(pts, 6), ref):
        np.testing.assert_array_equal(u, v)


def test_bad_impl():
    with pytest.raises(ValueError):
        B._knn_csr(np.zeros((5, 2)), 1, impl="nope")
