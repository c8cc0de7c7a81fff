"""Neighbourhood enrichment (permutation z-scores) and the cell-type interaction matrix.

Definitions and output layout are squidpy's (``squidpy.gr.nhood_enrichment``,
``squidpy.gr.interaction_matrix``), so ``squidpy.pl.nhood_enrichment`` reads the result, but the
counts are one sparse pass over the edges per permutation (never an n x n matrix) and every
permutation draws from its own child of one :class:`numpy.random.SeedSequence`, so the z-scores are
the same for any ``n_jobs``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from .. import _keys as K
from .._anndata import _plain
from .._errors import InputError
from .._logging import logger, progress_bar, timed
from .._settings import settings
from ._common import categories, check_adata, graph

__all__ = ["nhood_enrichment", "interaction_matrix", "nhood_counts"]


class _EdgeCounter:
    """``onehot.T @ A @ onehot`` for the 0/1 pattern of a CSR graph, for many labelings.

    A symmetric pattern is counted over its upper triangle only (``C + C.T`` then, the diagonal once);
    labels are kept as int16 so the random gather stays in cache.
    """

    def __init__(self, adjacency, n_clusters: int):
        from scipy import sparse

        a = sparse.csr_matrix(adjacency, copy=True)
        a.data = np.ones(len(a.data), np.int8)  # stored entries count once each, weights ignored
        a.sum_duplicates()  # no-op for canonical CSR
        self.k = int(n_clusters)
        self.dtype = np.int16 if self.k * self.k < 2 ** 15 else np.int64
        self.symmetric = a.shape[0] == a.shape[1] and (a != a.T).nnz == 0
        if self.symmetric:
            self.diag = np.flatnonzero(a.diagonal() != 0)
            a = sparse.triu(a, k=1, format="csr")
        else:
            self.diag = None
        self.deg = np.diff(a.indptr)
        self.indices = a.indices

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        k, dt = self.k, self.dtype
        codes = np.asarray(codes).astype(dt, copy=False)
        pair = np.repeat(codes * dt(k), self.deg)
        pair += codes[self.indices]
        m = np.bincount(pair, minlength=k * k).reshape(k, k)
        if self.symmetric:
            m = m + m.T
            if len(self.diag):
                m[np.diag_indices(k)] += np.bincount(codes[self.diag], minlength=k)
        return m.astype(np.int64, copy=False)


def nhood_counts(adjacency, codes: np.ndarray, *, n_clusters: int) -> np.ndarray:
    """Edge counts between clusters: ``onehot.T @ A @ onehot`` for the 0/1 pattern of a CSR graph.

    ``codes`` are cluster codes 0..n_clusters-1 per node; every stored entry counts once (like
    squidpy, weights are ignored). One gather and one ``bincount`` over the edges (the sparse
    product, never n x n).
    """
    return _EdgeCounter(adjacency, n_clusters)(codes)


def _subgraph(g, mask):
    if mask.all():
        return g
    return g[mask][:, mask]


def nhood_enrichment(adata, *, cluster_key: str, library_key: str | None = None,
                     connectivity_key: str | None = None, n_perms: int = 1000, seed: int | None = None,
                     n_jobs: int | None = None, key_added: str | None = None, copy: bool = False,
                     progress: bool | None = None):
    """Neighbourhood enrichment of cluster pairs by a label-permutation test (squidpy's definition).

    ``count[a, b]`` is the number of graph edges from a cell of cluster ``a`` to a cell of cluster
    ``b`` (stored entries of the CSR in ``obsp``; weights ignored, directed graphs counted by row).
    The cluster labels are shuffled ``n_perms`` times (within each ``library_key`` group when given)
    and ``zscore = (count - mean(perm)) / std(perm)``.

    Parameters
    ----------
    adata
        Cells AnnData with a graph in ``obsp`` (``tg.graph.delaunay`` / ``knn`` / ``radius``).
    cluster_key
        Categorical ``obs`` column (cell type, niche, leiden). Cells with a missing label are left out
        together with their edges.
    library_key
        Optional ``obs`` column (e.g. ``'slide'``): labels are shuffled only within each group.
    connectivity_key
        ``obsp`` key of the graph (default ``'spatial_connectivities'``).
    n_perms
        Number of permutations.
    seed
        Seed (default ``tg.settings.seed``). Permutation ``p`` uses child ``p`` of
        ``SeedSequence(seed)``, so the result does not depend on ``n_jobs``.
    n_jobs
        Threads (default ``tg.settings.n_jobs``).
    key_added
        ``uns`` key (default ``f'{cluster_key}_nhood_enrichment'``, squidpy's).
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    None (or the copy). Writes ``uns[key_added] = {'zscore': (k, k), 'count': (k, k), 'categories',
    'params'}``.
    """
    what = "tg.tl.nhood_enrichment"
    check_adata(adata, what)
    if copy:
        adata = adata.copy()
    if int(n_perms) < 2:
        raise InputError(f"{what}: n_perms must be >= 2, got {n_perms}.")
    n_perms = int(n_perms)
    codes, cats, mask = categories(adata, cluster_key, what)
    g = _subgraph(graph(adata, connectivity_key, what), mask)
    codes = codes[mask]
    k = len(cats)
    counter = _EdgeCounter(g, k)
    small = counter.dtype
    codes = codes.astype(np.int64)
    groups = None
    if library_key is not None:
        if library_key not in adata.obs:
            raise InputError(f"{what}: adata.obs has no column {library_key!r} (library_key).")
        lib = pd.Categorical(adata.obs[library_key].to_numpy()[mask])
        groups = [np.flatnonzero(lib.codes == i) for i in range(len(lib.categories))]
        groups = [gr for gr in groups if len(gr) > 1]
    count = counter(codes)
    seed = settings.seed if seed is None else int(seed)
    children = np.random.SeedSequence(seed).spawn(n_perms)
    perms = np.empty((n_perms, k, k), np.int64)
    n_jobs = settings.resolve_n_jobs(n_jobs)
    codes_small = codes.astype(small)

    def one(p: int) -> None:
        rng = np.random.default_rng(children[p])
        if groups is None:
            shuffled = rng.permutation(codes_small)
        else:
            shuffled = codes_small.copy()  # only within each library
            for gr in groups:
                shuffled[gr] = codes_small[gr[rng.permutation(len(gr))]]
        perms[p] = counter(shuffled)

    with timed(f"nhood_enrichment ({g.nnz} edges, {k} clusters, {n_perms} permutations)"), \
            progress_bar(total=n_perms, desc="nhood_enrichment", enabled=progress, unit="perm") as bar:
        if n_jobs <= 1:
            for p in range(n_perms):
                one(p)
                bar.update()
        else:
            with ThreadPoolExecutor(n_jobs) as ex:
                for _ in ex.map(one, range(n_perms)):
                    bar.update()
    mean = perms.mean(axis=0)
    std = perms.std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        zscore = (count - mean) / std
    if np.any(std == 0):
        logger.info("nhood_enrichment: %d cluster pairs have no variance under permutation (z = NaN/inf).",
                    int((std == 0).sum()))
    key = key_added or K.tl.nhood_enrichment(cluster_key)
    adata.uns[key] = {"zscore": zscore, "count": count, "categories": np.asarray(cats.astype(str)),
                      "params": _plain(dict(cluster_key=cluster_key, library_key=library_key,
                                            connectivity_key=connectivity_key, n_perms=n_perms, seed=seed,
                                            n_cells=int(mask.sum()), n_edges=int(g.nnz)))}
    return adata if copy else None


def interaction_matrix(adata, *, cluster_key: str, connectivity_key: str | None = None,
                       normalized: bool = False, weights: bool = False, key_added: str | None = None,
                       copy: bool = False):
    """Cluster-by-cluster sum of graph edges (squidpy's ``interaction_matrix`` definition).

    ``M[a, b]`` = number (``weights=False``) or summed weight (``weights=True``) of edges from a cell of
    cluster ``a`` to a cell of cluster ``b``; with ``normalized=True`` each row sums to 1. Cells with
    a missing label are left out.

    Parameters
    ----------
    adata
        Cells AnnData with a graph in ``obsp``.
    cluster_key
        Categorical ``obs`` column.
    connectivity_key
        ``obsp`` key of the graph (default ``'spatial_connectivities'``).
    normalized
        Divide each row by its sum.
    weights
        Sum the stored edge weights instead of counting edges.
    key_added
        ``uns`` key (default ``f'{cluster_key}_interactions'``, squidpy's); the matrix is stored as an
        array like squidpy's, and its parameters under ``uns[key_added + '_params']``.
    copy
        Work on a copy of ``adata`` and return it.
    """
    what = "tg.tl.interaction_matrix"
    check_adata(adata, what)
    if copy:
        adata = adata.copy()
    codes, cats, mask = categories(adata, cluster_key, what)
    g = _subgraph(graph(adata, connectivity_key, what), mask)
    codes = codes[mask].astype(np.int64)
    k = len(cats)
    src = np.repeat(codes, np.diff(g.indptr))
    pair = src * k + codes[g.indices]
    if weights:
        out = np.bincount(pair, weights=g.data.astype(np.float64), minlength=k * k).reshape(k, k)
    else:
        out = np.bincount(pair, minlength=k * k).reshape(k, k)
        if np.issubdtype(g.dtype, np.floating):  # squidpy returns floats for a float graph
            out = out.astype(np.float64)
    if normalized:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = out / out.sum(axis=1, keepdims=True)
    key = key_added or K.tl.interactions(cluster_key)
    adata.uns[key] = out
    adata.uns[key + K.tl.params_suffix] = _plain(dict(cluster_key=cluster_key, connectivity_key=connectivity_key,
                                            normalized=normalized, weights=weights,
                                            categories=list(cats.astype(str))))
    return adata if copy else None
