"""Thin scanpy wrappers: neighbours, UMAP and Leiden on any ``obsm`` representation of either level."""

from __future__ import annotations

import numpy as np

from .. import _keys as K
from .._anndata import _plain
from .._errors import InputError
from .._logging import timed
from .._settings import settings
from ._common import check_adata, import_scanpy

__all__ = ["embed"]


def embed(adata, *, use_rep: str, n_neighbors: int = 15, metric: str = "euclidean", umap: bool = True,
          leiden: bool = True, resolution: float = 1.0, min_dist: float = 0.5, seed: int | None = None,
          key_added: str | None = None, copy: bool = False):
    """``sc.pp.neighbors`` + ``sc.tl.umap`` + ``sc.tl.leiden`` on ``obsm[use_rep]`` of cells or samples.

    Keys are derived from the representation so that several can live side by side: with
    ``use_rep='X_structural'`` and no ``key_added`` the graph is ``uns['X_structural_neighbors']``
    (``obsp['X_structural_neighbors_connectivities' / '_distances']``), the UMAP
    ``obsm['X_structural_umap']`` and the clusters ``obs['X_structural_leiden']``.

    Parameters
    ----------
    adata
        Cells or samples AnnData.
    use_rep
        ``obsm`` key of the representation (``'X_structural'``, ``'X_pca'``, ``'X_gnn_...'``), or ``'X'``.
    n_neighbors, metric
        Passed to ``sc.pp.neighbors``.
    umap, leiden
        Which steps to run after the neighbour graph.
    resolution, min_dist
        Leiden resolution; UMAP ``min_dist``.
    seed
        ``random_state`` of every step (default ``tg.settings.seed``).
    key_added
        Prefix of the keys (default ``use_rep``).
    copy
        Work on a copy of ``adata`` and return it.
    """
    what = "tg.tl.embed"
    check_adata(adata, what)
    if copy:
        adata = adata.copy()
    sc = import_scanpy(what)
    if use_rep != "X":
        rep = K.obsm.rep(use_rep) if use_rep not in adata.obsm else use_rep
        if rep not in adata.obsm:
            raise InputError(f"{what}: adata.obsm has no {use_rep!r} (has {list(adata.obsm.keys())}). "
                             "Compute it first (tg.graph.descriptors for 'X_structural', tg.emb for learned ones, "
                             "sc.pp.pca for 'X_pca').")
        values = np.asarray(adata.obsm[rep])
        use_rep = rep
    else:
        values = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    if values.ndim != 2 or values.shape[0] != adata.n_obs:
        raise InputError(f"{what}: {use_rep!r} must be a 2-D (n_obs, d) array, got shape {values.shape}.")
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values).all(axis=1)).sum())
        raise InputError(f"{what}: {use_rep!r} has {bad} rows with NaN/inf (e.g. samples without cells); "
                         "subset them away first: adata = adata[np.isfinite(adata.obsm[rep]).all(1)].copy().")
    if adata.n_obs < 3:
        raise InputError(f"{what}: {adata.n_obs} rows are too few for a neighbour graph.")
    seed = settings.seed if seed is None else int(seed)
    prefix = key_added or use_rep
    nkey = f"{prefix}_neighbors"
    k = int(min(n_neighbors, adata.n_obs - 1))
    with timed(f"embed {use_rep}: neighbors (k={k})"):
        sc.pp.neighbors(adata, n_neighbors=k, use_rep=use_rep, metric=metric, random_state=seed, key_added=nkey)
    if umap:
        with timed(f"embed {use_rep}: umap"):
            sc.tl.umap(adata, min_dist=min_dist, random_state=seed, neighbors_key=nkey, key_added=f"{prefix}_umap")
    if leiden:
        with timed(f"embed {use_rep}: leiden"):
            sc.tl.leiden(adata, resolution=resolution, random_state=seed, neighbors_key=nkey,
                         key_added=f"{prefix}_leiden", flavor="igraph", n_iterations=2, directed=False)
    adata.uns[f"{prefix}_embed"] = {"params": _plain(dict(use_rep=use_rep, n_neighbors=k, metric=metric, umap=umap,
                                                         leiden=leiden, resolution=resolution, min_dist=min_dist,
                                                         seed=seed))}
    return adata if copy else None
