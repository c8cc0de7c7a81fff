"""Moran's I of any feature on the cell graph, with the analytic p-value under normality."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse, stats

from .. import _keys as K
from .._anndata import _plain
from ._common import check_adata, feature_matrix, graph

__all__ = ["morans_i"]


def _moments(w: sparse.csr_matrix) -> tuple[float, float, float]:
    s0 = float(w.sum())
    t = (w + w.T).tocsr()
    s1 = float(t.multiply(t).sum()) / 2.0
    s2 = float(((np.asarray(w.sum(axis=1)).ravel() + np.asarray(w.sum(axis=0)).ravel()) ** 2).sum())
    return s0, s1, s2


def morans_i(adata, *, features=None, connectivity_key: str | None = None, transformation: bool = True,
             two_tailed: bool = False, layer: str | None = None, key_added: str = K.tl.moran, copy: bool = False):
    """Global Moran's I of features on the cell graph (the statistic squidpy's ``spatial_autocorr``
    computes, and its normality p-value).

    ``I = n / S0 * sum_ij w_ij z_i z_j / sum_i z_i^2`` with ``z`` the centred feature and ``w`` the
    graph weights (row-normalised with ``transformation=True``, squidpy's default). The p-value uses
    the variance of I under normality (Cliff & Ord; pysal/esda ``VI_norm``); ``E[I] = -1 / (n - 1)``.

    Parameters
    ----------
    adata
        Cells AnnData with a graph in ``obsp``.
    features
        Var names and/or numeric ``obs`` columns (default: every var).
    connectivity_key
        ``obsp`` key of the graph (default ``'spatial_connectivities'``).
    transformation
        Row-normalise the weights (each cell's neighbours weigh 1 in total).
    two_tailed
        Two-tailed p-values (default one-tailed, like squidpy).
    layer
        Read var features from ``adata.layers[layer]`` instead of ``X``.
    key_added
        ``uns`` key of the result table (default ``'moranI'``, squidpy's).
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    None (or the copy). ``uns[key_added]`` = DataFrame indexed by feature with ``I``, ``pval_norm``,
    ``var_norm``, ``pval_norm_fdr_bh``, sorted by ``I`` (largest first); constant or NaN-holding features
    get NaN. Parameters in ``uns[key_added + '_params']``.
    """
    what = "tg.tl.morans_i"
    check_adata(adata, what)
    if copy:
        adata = adata.copy()
    w = graph(adata, connectivity_key, what).astype(np.float64)
    if transformation:
        rs = np.asarray(w.sum(axis=1)).ravel()
        with np.errstate(divide="ignore"):
            inv = np.where(rs != 0, 1.0 / rs, 0.0)
        w = sparse.diags(inv) @ w
    w = sparse.csr_matrix(w)
    vals, names = feature_matrix(adata, features, what, layer=layer)
    n = vals.shape[0]
    z = vals - vals.mean(axis=0)
    num = np.einsum("ij,ij->j", z, w @ z)
    den = (z * z).sum(axis=0)
    s0, s1, s2 = _moments(w)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = n / s0 * num / den
    score[~np.isfinite(score)] = np.nan
    expected = -1.0 / (n - 1)
    var = (n * n * s1 - n * s2 + 3 * s0 * s0) / ((n - 1) * (n + 1) * s0 * s0) - expected ** 2
    zn = (score - expected) / np.sqrt(var)
    p = np.where(zn > 0, stats.norm.sf(zn), stats.norm.cdf(zn))
    if two_tailed:
        p = p * 2.0
    p = np.where(np.isfinite(score), p, np.nan)
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(np.clip(p[ok], 0, 1), method="bh")
    df = pd.DataFrame({"I": score, "pval_norm": p, "var_norm": var, "pval_norm_fdr_bh": q}, index=names)
    df = df.sort_values("I", ascending=False)
    adata.uns[key_added] = df
    adata.uns[key_added + K.tl.params_suffix] = _plain(dict(connectivity_key=connectivity_key, transformation=transformation,
                                                  two_tailed=two_tailed, layer=layer, n_cells=n))
    return adata if copy else None
