"""Cellular niches: features (or cell-type shares) averaged over graph neighbourhoods, then Leiden."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from .. import _keys as K
from .._anndata import _plain
from .._errors import InputError
from .._logging import timed
from .._settings import settings
from ._common import check_adata, feature_matrix, graph, import_scanpy

__all__ = ["neighborhood_features", "niches"]


def _reach(g: sparse.csr_matrix, n_hops: int) -> sparse.csr_matrix:
    """0/1 matrix of cells within ``n_hops`` edges (self included), undirected."""
    a = g.copy()
    a.data = np.ones_like(a.data, dtype=np.float32)
    a = ((a + a.T) > 0).astype(np.float32)
    step = (a + sparse.identity(a.shape[0], dtype=np.float32, format="csr")).tocsr()
    step.data[:] = 1.0
    reach = step
    for _ in range(n_hops - 1):
        reach = (reach @ step).tocsr()
        reach.data[:] = 1.0
    return reach


def neighborhood_features(adata, *, cluster_key: str | None = None, features=None, n_hops: int = 1,
                          connectivity_key: str | None = None, key_added: str = K.tl.niche_features,
                          copy: bool = False):
    """Mean of cell-type one-hots (``cluster_key``) and/or features over each cell's graph neighbourhood.

    The neighbourhood of a cell is every cell within ``n_hops`` edges of it, the cell itself included
    (edges taken as undirected). Written to ``obsm[key_added]`` (float32) with column names in
    ``uns[key_added + '_names']``.

    Parameters
    ----------
    adata
        Cells AnnData with a graph in ``obsp``.
    cluster_key
        Categorical ``obs`` column: its shares in the neighbourhood (missing labels count as none).
    features
        Var names and/or numeric obs columns to average (standardised first, so units do not weigh).
    n_hops
        Neighbourhood radius in edges (1 = direct neighbours).
    connectivity_key
        ``obsp`` key of the graph.
    key_added
        ``obsm`` key.
    copy
        Work on a copy of ``adata`` and return it.
    """
    what = "tg.tl.neighborhood_features"
    check_adata(adata, what)
    if copy:
        adata = adata.copy()
    if cluster_key is None and features is None:
        raise InputError(f"{what}: pass cluster_key= (cell types) and/or features= (var names).")
    if int(n_hops) < 1:
        raise InputError(f"{what}: n_hops must be >= 1, got {n_hops}.")
    g = graph(adata, connectivity_key, what)
    blocks, names = [], []
    if cluster_key is not None:
        from ._common import categories

        codes, cats, mask = categories(adata, cluster_key, what)
        rows = np.flatnonzero(mask)
        onehot = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, codes[mask])),
                                   shape=(adata.n_obs, len(cats)))
        blocks.append(onehot)
        names += [f"{cluster_key}:{c}" for c in cats.astype(str)]
    if features is not None:
        vals, fnames = feature_matrix(adata, features, what)
        if not np.isfinite(vals).all():
            raise InputError(f"{what}: features contain NaN/inf; impute or drop them first.")
        sd = vals.std(axis=0)
        vals = (vals - vals.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        blocks.append(sparse.csr_matrix(vals.astype(np.float32)))
        names += list(fnames)
    X = sparse.hstack(blocks).tocsr()
    with timed(f"neighbourhood features ({n_hops} hop(s))"):
        reach = _reach(g, int(n_hops))
        agg = reach @ X
        agg = np.asarray(agg.todense() if sparse.issparse(agg) else agg, dtype=np.float32)
        agg /= np.asarray(reach.sum(axis=1), dtype=np.float32)
    adata.obsm[key_added] = agg
    adata.uns[key_added + "_names"] = np.asarray(names, dtype=object)
    adata.uns[key_added + K.tl.params_suffix] = _plain(dict(cluster_key=cluster_key, features=features, n_hops=n_hops,
                                                  connectivity_key=connectivity_key))
    return adata if copy else None


def niches(adata, *, cluster_key: str | None = None, features=None, n_hops: int = 1,
           connectivity_key: str | None = None, n_neighbors: int = 15, resolution: float = 0.5,
           seed: int | None = None, key_added: str = K.tl.niche, copy: bool = False):
    """Cellular niches: Leiden clusters (scanpy) of neighbourhood-aggregated cell types / features.

    1. :func:`neighborhood_features` -> ``obsm['X_niche_features']``;
    2. a symmetric kNN graph (``n_neighbors``, Euclidean) on those vectors (KD-tree, sparse);
    3. ``scanpy.tl.leiden`` (igraph flavour, seeded) on it -> ``obs[key_added]`` (categorical).

    Parameters
    ----------
    adata
        Cells AnnData with a graph in ``obsp``.
    cluster_key, features, n_hops, connectivity_key
        As in :func:`neighborhood_features`.
    n_neighbors
        Neighbours of the feature-space kNN graph.
    resolution
        Leiden resolution (higher = more niches).
    seed
        Seed of Leiden (default ``tg.settings.seed``).
    key_added
        ``obs`` column of the niche labels; parameters in ``uns[key_added]['params']``.
    copy
        Work on a copy of ``adata`` and return it.
    """
    what = "tg.tl.niches"
    check_adata(adata, what)
    if copy:
        adata = adata.copy()
    sc = import_scanpy(what)
    feat_key = K.tl.niche_features
    neighborhood_features(adata, cluster_key=cluster_key, features=features, n_hops=n_hops,
                          connectivity_key=connectivity_key, key_added=feat_key)
    X = adata.obsm[feat_key].astype(np.float64)
    n = X.shape[0]
    if n < 3:
        raise InputError(f"{what}: {n} cells are too few to cluster.")
    k = int(min(n_neighbors, n - 1))
    from scipy.spatial import cKDTree

    with timed(f"niches: {k}-NN graph on {X.shape[1]} neighbourhood features"):
        _, idx = cKDTree(X).query(X, k=k + 1)
        rows = np.repeat(np.arange(n), k)
        cols = idx[:, 1:].ravel()
        adj = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n))
        adj = ((adj + adj.T) > 0).astype(np.float32).tocsr()
    seed = settings.seed if seed is None else int(seed)
    with timed("niches: leiden"):
        sc.tl.leiden(adata, resolution=resolution, adjacency=adj, key_added=key_added, random_state=seed,
                     flavor="igraph", n_iterations=2, directed=False)
    adata.obs[key_added] = pd.Categorical(adata.obs[key_added].astype(str))
    adata.uns[key_added] = {"params": _plain(dict(cluster_key=cluster_key, features=features, n_hops=n_hops,
                                                  connectivity_key=connectivity_key, n_neighbors=k,
                                                  resolution=resolution, seed=seed,
                                                  features_key=feat_key))}
    return adata if copy else None
