"""Representation similarity: linear CKA and k-nearest-neighbour overlap (no n x n matrix)."""

from __future__ import annotations

import numpy as np

from .._errors import InputError

__all__ = ["linear_cka", "knn_indices", "knn_overlap"]

KNN_WORKING_MEMORY_MB = 128  # bound on each chunk of the distance matrix in brute-force kNN (scikit-learn)


def _check_pair(X, Y) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise InputError(f"CKA needs two 2-D arrays with the same number of rows, got {X.shape} and {Y.shape}.")
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise InputError("CKA inputs contain NaN or infinite values; impute or drop them first.")
    return X, Y


def linear_cka(X, Y, *, debiased: bool = False) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019) between two representations of the same rows.

    Computed in feature space: ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred
    ``Xc, Yc``, O(n d^2) time and O(d^2) memory (never the n x n Gram matrices). ``debiased=True`` uses
    the unbiased HSIC estimator (Song et al. 2012), as ``feature_space_linear_cka(..., debiased=True)``
    in Kornblith's reference code, expanded so that it too needs no n x n matrix. Invariant to
    orthogonal transforms and isotropic scaling of either side; 1 for a representation with itself.
    NaN when one side is constant.
    """
    X, Y = _check_pair(X, Y)
    n = len(X)
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    if not debiased:
        xy = np.sum((X.T @ Y) ** 2)
        xx = np.sqrt(np.sum((X.T @ X) ** 2))
        yy = np.sqrt(np.sum((Y.T @ Y) ** 2))
        if xx == 0 or yy == 0:
            return float("nan")
        return float(xy / (xx * yy))
    if n < 4:
        raise InputError("debiased CKA needs at least 4 rows.")

    def hsic(A, B, a2, b2):
        # unbiased HSIC of K = A A^T, L = B B^T with zeroed diagonals, in O(n d^2)
        tr = np.sum((A.T @ B) ** 2) - np.dot(a2, b2)
        k1 = A @ A.sum(axis=0) - a2  # K~ 1
        l1 = B @ B.sum(axis=0) - b2  # L~ 1
        s_k, s_l = k1.sum(), l1.sum()
        return (tr + s_k * s_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * np.dot(k1, l1)) / (n * (n - 3))

    x2 = np.einsum("ij,ij->i", X, X)
    y2 = np.einsum("ij,ij->i", Y, Y)
    xy = hsic(X, Y, x2, y2)
    xx = hsic(X, X, x2, x2)
    yy = hsic(Y, Y, y2, y2)
    if not (xx > 0 and yy > 0):
        return float("nan")
    return float(xy / np.sqrt(xx * yy))


def knn_indices(X, *, k: int = 20, metric: str = "cosine") -> np.ndarray:
    """Indices (n, k) of each row's ``k`` nearest other rows (self excluded), brute force in chunks."""
    from sklearn.neighbors import NearestNeighbors

    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    k = int(min(k, n - 1))
    if k < 1:
        raise InputError("k-NN overlap needs at least 2 samples.")
    import sklearn

    nn = NearestNeighbors(n_neighbors=k + 1, metric=metric, algorithm="brute").fit(X)
    with sklearn.config_context(working_memory=KNN_WORKING_MEMORY_MB):
        ind = nn.kneighbors(X, return_distance=False)  # distances in row chunks of <= 128 MiB, never n x n
    # drop self (usually column 0; with duplicate rows self may sit elsewhere)
    is_self = ind == np.arange(n)[:, None]
    has_self = is_self.any(axis=1)
    keep = ~is_self
    keep[~has_self, -1] = False
    return ind[keep].reshape(n, k)


def knn_overlap(A: np.ndarray, B: np.ndarray) -> float:
    """Mean fraction of shared neighbours between two (n, k) neighbour-index arrays (same k)."""
    A = np.asarray(A)
    B = np.asarray(B)
    if A.shape != B.shape:
        raise InputError(f"neighbour arrays must have the same shape, got {A.shape} and {B.shape}.")
    k = A.shape[1]
    both = np.sort(np.concatenate([A, B], axis=1), axis=1)
    shared = (both[:, 1:] == both[:, :-1]).sum(axis=1)
    return float(shared.mean() / k)
