"""Linear CKA and k-NN overlap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from tissuegraph import InputError
from tissuegraph.eval import knn_indices, knn_overlap, linear_cka


def _gram_cka(X, Y, debiased=False):
    """Reference: CKA from the n x n Gram matrices (Kornblith et al.'s gram_linear / cka)."""
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    K, L = X @ X.T, Y @ Y.T
    n = len(K)
    if not debiased:
        H = np.eye(n) - 1 / n
        Kc, Lc = H @ K @ H, H @ L @ H
        return np.sum(Kc * Lc) / np.sqrt(np.sum(Kc * Kc) * np.sum(Lc * Lc))

    def hsic(K, L):
        K, L = K.copy(), L.copy()
        np.fill_diagonal(K, 0)
        np.fill_diagonal(L, 0)
        one = np.ones(n)
        return (np.trace(K @ L) + one @ K @ one * (one @ L @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ K @ L @ one) / (n * (n - 3))

    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_equals_the_gram_matrix_definition(debiased):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 8))
    Y = X[:, :4] @ rng.normal(size=(4, 6)) + rng.normal(size=(50, 6))
    assert linear_cka(X, Y, debiased=debiased) == pytest.approx(_gram_cka(X, Y, debiased), rel=1e-9)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_invariances_and_identity(debiased):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 10))
    Y = np.tanh(X @ rng.normal(size=(10, 7))) + 0.3 * rng.normal(size=(80, 7))
    base = linear_cka(X, Y, debiased=debiased)
    Q = ortho_group.rvs(10, random_state=2)
    assert linear_cka(X @ Q, Y, debiased=debiased) == pytest.approx(base, rel=1e-9)
    assert linear_cka(3.7 * X, 0.01 * Y, debiased=debiased) == pytest.approx(base, rel=1e-9)
    assert linear_cka(X + 5.0, Y, debiased=debiased) == pytest.approx(base, rel=1e-9)
    assert linear_cka(X, X, debiased=debiased) == pytest.approx(1.0)
    assert 0 <= base < 1
    # not invariant to a non-isotropic scaling (sanity: the test above would catch a constant function)
    assert linear_cka(X * np.r_[10.0, np.ones(9)], Y, debiased=debiased) != pytest.approx(base, rel=1e-3)


def test_cka_errors():
    with pytest.raises(InputError):
        linear_cka(np.zeros((5, 2)), np.zeros((6, 2)))
    with pytest.raises(InputError):
        linear_cka(np.array([[np.nan, 1.0], [1.0, 2.0]]), np.ones((2, 2)))
    assert np.isnan(linear_cka(np.ones((5, 2)), np.random.default_rng(0).normal(size=(5, 2))))


def test_knn_indices_and_overlap_hand_worked():
    # points on a line: neighbours are obvious (euclidean)
    X = np.array([[0.0], [1.0], [3.0], [7.0]])
    ind = knn_indices(X, k=2, metric="euclidean")
    assert [set(r) for r in ind.tolist()] == [{1, 2}, {0, 2}, {1, 0}, {2, 1}]
    A = np.array([[1, 2], [0, 2], [0, 1]])
    B = np.array([[2, 1], [0, 3], [3, 4]])
    assert knn_overlap(A, B) == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert knn_overlap(A, A) == 1.0
    with pytest.raises(InputError):
        knn_overlap(A, B[:, :1])


def test_knn_indices_match_brute_force_cosine():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 5))
    ind = knn_indices(X, k=5)
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Z @ Z.T
    np.fill_diagonal(S, -np.inf)
    ref = np.argsort(-S, axis=1)[:, :5]
    assert all(set(a) == set(b) for a, b in zip(ind.tolist(), ref.tolist()))
    assert not (ind == np.arange(60)[:, None]).any()
