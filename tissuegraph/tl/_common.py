"""Shared input checks of the tl front ends (cluster labels, graphs, features)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from .. import _keys as K
from .._errors import DependencyError, InputError


def check_adata(adata, what: str):
    try:
        import anndata
    except ImportError:  # pragma: no cover
        anndata = None
    if anndata is not None and not isinstance(adata, anndata.AnnData):
        raise InputError(f"{what} takes the cells AnnData first, got {type(adata).__name__}.")
    if adata.n_obs == 0:
        raise InputError(f"{what}: the AnnData has no cells (0 rows).")


def import_scanpy(what: str):
    """``scanpy``, imported lazily; a :class:`DependencyError` naming ``what`` when it is not installed."""
    try:
        import scanpy as sc
    except ImportError as exc:  # pragma: no cover
        raise DependencyError(f"{what} needs scanpy (pip install scanpy leidenalg igraph).") from exc
    return sc


def categories(adata, cluster_key: str, what: str) -> tuple[np.ndarray, pd.Index, np.ndarray]:
    """Integer codes (-1 = missing), the category names and the mask of labelled cells."""
    if not isinstance(cluster_key, str) or cluster_key not in adata.obs:
        cols = [c for c in adata.obs.columns if not pd.api.types.is_numeric_dtype(adata.obs[c])]
        raise InputError(f"{what}: adata.obs has no column {cluster_key!r} (categorical columns: {cols}). "
                         "Pass cluster_key= the name of a cell type or cluster column, e.g. one made by "
                         "tg.tl.niches or scanpy's sc.tl.leiden.")
    col = adata.obs[cluster_key]
    if not isinstance(col.dtype, pd.CategoricalDtype):
        if pd.api.types.is_float_dtype(col):
            raise InputError(f"{what}: adata.obs[{cluster_key!r}] is a float column, not cluster labels; "
                             "convert it with adata.obs[key] = adata.obs[key].astype('category').")
        col = col.astype("category")
    codes = col.cat.codes.to_numpy().astype(np.int64)
    cats = col.cat.categories
    mask = codes >= 0
    if len(cats) < 2:
        raise InputError(f"{what}: adata.obs[{cluster_key!r}] has {len(cats)} category; at least 2 are needed.")
    if not mask.any():
        raise InputError(f"{what}: every value of adata.obs[{cluster_key!r}] is missing (NaN).")
    return codes, cats, mask


def graph(adata, connectivity_key: str | None, what: str) -> sparse.csr_matrix:
    key = connectivity_key or K.obsp.connectivities()
    if key not in adata.obsp:
        have = list(adata.obsp.keys())
        raise InputError(f"{what}: adata.obsp has no graph {key!r} (has {have}). Build the cell graph first "
                         "with tg.graph.delaunay(adata), tg.graph.knn(adata) or tg.graph.radius(adata), "
                         "or pass connectivity_key=.")
    g = adata.obsp[key]
    if not sparse.issparse(g):
        raise InputError(f"{what}: adata.obsp[{key!r}] is a dense array; tissuegraph works on sparse graphs "
                         "(scipy.sparse.csr_matrix(...)).")
    g = sparse.csr_matrix(g)
    if g.shape != (adata.n_obs, adata.n_obs):
        raise InputError(f"{what}: adata.obsp[{key!r}] has shape {g.shape}, expected {(adata.n_obs,) * 2}.")
    return g


def spatial(adata, spatial_key: str, what: str) -> np.ndarray:
    if spatial_key not in adata.obsm:
        raise InputError(f"{what}: adata.obsm has no {spatial_key!r} coordinates. The cells AnnData from "
                         "tg.feat.nuclei_features has them; otherwise set adata.obsm['spatial'] = (n, 2) x, y.")
    pts = np.asarray(adata.obsm[spatial_key], dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise InputError(f"{what}: adata.obsm[{spatial_key!r}] must be (n, 2), got {pts.shape}.")
    pts = pts[:, :2]
    if not np.isfinite(pts).all():
        raise InputError(f"{what}: adata.obsm[{spatial_key!r}] contains NaN or infinite coordinates; drop "
                         "those cells first (adata = adata[np.isfinite(adata.obsm['spatial']).all(1)].copy()).")
    return pts


def feature_matrix(adata, features: Any, what: str, *, layer: str | None = None) -> tuple[np.ndarray, list[str]]:
    """(n, f) float64 values of var names or numeric obs columns (one list may mix both)."""
    if features is None:
        features = list(adata.var_names)
    elif isinstance(features, str):
        features = [features]
    features = list(features)
    if not features:
        raise InputError(f"{what}: no features given.")
    cols = []
    var_index = {v: i for i, v in enumerate(adata.var_names)}
    X = adata.X if layer is None else adata.layers[layer]
    for f in features:
        if f in var_index:
            col = X[:, var_index[f]]
            col = col.toarray().ravel() if sparse.issparse(col) else np.asarray(col).ravel()
        elif f in adata.obs:
            if not pd.api.types.is_numeric_dtype(adata.obs[f]):
                raise InputError(f"{what}: adata.obs[{f!r}] is not numeric; for cell types use cluster_key= "
                                 "functions (nhood_enrichment, interaction_matrix) or one-hot encode it.")
            col = adata.obs[f].to_numpy()
        else:
            raise InputError(f"{what}: {f!r} is neither a var name nor an obs column. Var names start with "
                             f"{list(adata.var_names[:5])}; obs columns are {list(adata.obs.columns)}.")
        cols.append(np.asarray(col, dtype=np.float64))
    return np.column_stack(cols), [str(f) for f in features]


def store(adata, key: str, value: Any, *, copy: bool):
    adata.uns[key] = value
    return adata if copy else None
