"""Plots of tg.tl results and of embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _keys as K
from .._errors import InputError
from ._utils import add_legend_or_colorbar, finish, get_ax, need_uns, text_color, values_for

__all__ = ["nhood_enrichment", "co_occurrence", "embedding"]


def _heatmap(ax, M, labels_x, labels_y, *, cmap, title, cbar_label, center=None, annotate=True, fmt="{:.1f}",
             vmin=None, vmax=None):
    import matplotlib.colors as mcolors

    M = np.asarray(M, dtype=float)
    finite = M[np.isfinite(M)]
    norm = None
    if center is not None and finite.size:
        lim = max(abs(finite.min() - center), abs(finite.max() - center), 1e-12)
        norm = mcolors.TwoSlopeNorm(vcenter=center, vmin=center - lim, vmax=center + lim)
    im = ax.imshow(M, cmap=cmap, norm=norm, aspect="auto", **({} if norm is not None else dict(vmin=vmin, vmax=vmax)))
    ax.set_xticks(range(len(labels_x)), labels_x, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels_y)), labels_y, fontsize=8)
    if annotate and M.size <= 400:
        for (i, j), v in np.ndenumerate(M):
            if np.isfinite(v):
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7, color=text_color(im, v))
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cb.set_label(cbar_label)
    ax.set_title(title)
    return im


def nhood_enrichment(adata, *, cluster_key: str, mode: str = "zscore", key: str | None = None,
                     cmap: str = "RdBu_r", title: str | None = None, ax=None, show: bool | None = None,
                     save: Any = None):
    """Heatmap of neighbourhood-enrichment z-scores (or counts) from :func:`tg.tl.nhood_enrichment`
    (or squidpy's ``nhood_enrichment``: same layout). Returns the Axes."""
    what = "tg.pl.nhood_enrichment"
    key = key or K.tl.nhood_enrichment(cluster_key)
    res = need_uns(adata, key, what, f"tg.tl.nhood_enrichment(adata, cluster_key={cluster_key!r})")
    if mode not in ("zscore", "count"):
        raise InputError(f"{what}: mode must be 'zscore' or 'count', got {mode!r}.")
    cats = res.get("categories")
    if cats is None and cluster_key in adata.obs:
        cats = adata.obs[cluster_key].astype("category").cat.categories
    names = [str(c) for c in cats]
    ax = get_ax(ax, figsize=(1.0 + 0.55 * len(names) + 1.5, 0.55 * len(names) + 1.5))
    _heatmap(ax, res[mode], names, names, cmap=cmap if mode == "zscore" else "viridis",
             center=0.0 if mode == "zscore" else None,
             title=title or f"Neighbourhood enrichment ({cluster_key})",
             cbar_label="z-score (vs. label permutations)" if mode == "zscore" else "edges",
             fmt="{:.1f}" if mode == "zscore" else "{:.0f}")
    return finish(ax, show=show, save=save)


def co_occurrence(adata, *, cluster_key: str, clusters: str | list | None = None, key: str | None = None,
                  mpp: float | None = None, ax=None, show: bool | None = None, save: Any = None):
    """Lines of p(other | cluster, d) / p(other) over distance for one or a few clusters (from
    :func:`tg.tl.co_occurrence`). With ``mpp`` (or µm/px in ``uns['spatial']``) the x axis is in µm."""
    what = "tg.pl.co_occurrence"
    key = key or K.tl.co_occurrence(cluster_key)
    res = need_uns(adata, key, what, f"tg.tl.co_occurrence(adata, cluster_key={cluster_key!r})")
    names = [str(c) for c in (res.get("categories") if res.get("categories") is not None
                              else adata.obs[cluster_key].astype("category").cat.categories)]
    occ = np.asarray(res["occ"])
    d = np.asarray(res["interval"], dtype=float)[1:]
    if mpp is None:
        from .._anndata import get_mpp

        try:
            mpp = get_mpp(adata, required=False)
        except InputError:
            mpp = None
    unit = "px"
    if mpp:
        d, unit = d * mpp, "µm"
    clusters = [names[0]] if clusters is None else ([clusters] if isinstance(clusters, str) else list(clusters))
    bad = [c for c in clusters if c not in names]
    if bad:
        raise InputError(f"{what}: clusters {bad} are not categories of {cluster_key!r} ({names}).")
    ax = get_ax(ax, figsize=(6, 4))
    from ._utils import palette

    cols = palette(len(names))
    for c in clusters:
        ci = names.index(c)
        for j, other in enumerate(names):
            ax.plot(d, occ[j, ci], color=cols[j], label=f"{other} | {c}" if len(clusters) > 1 else other,
                    ls="-" if len(clusters) == 1 else ["-", "--", ":", "-."][clusters.index(c) % 4])
    ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel(f"distance ({unit})")
    ax.set_ylabel("p(type | near cluster) / p(type)")
    ax.set_title(f"Co-occurrence around {', '.join(clusters)}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
    return finish(ax, show=show, save=save)


def embedding(adata, *, basis: str = "X_umap", color: str | None = None, components: tuple[int, int] = (0, 1),
              size: float | None = None, cmap: str = "viridis", title: str | None = None, ax=None,
              show: bool | None = None, save: Any = None):
    """Scatter of a 2-D embedding (``obsm[basis]``: UMAP, PCA or any representation's first two
    columns) coloured by an obs column (label, slide, batch, cluster) or a feature. Returns the Axes."""
    what = "tg.pl.embedding"
    key = basis if basis in adata.obsm else K.obsm.rep(basis)
    if key not in adata.obsm:
        rep = basis[:-5] if basis.endswith("_umap") else basis
        raise InputError(f"{what}: adata.obsm has no {basis!r} (has {list(adata.obsm.keys())}). Run "
                         f"tg.tl.embed(adata, use_rep={rep!r}) first (it writes obsm['{rep}_umap']), or "
                         "scanpy's sc.pp.pca / sc.tl.umap.")
    X = np.asarray(adata.obsm[key])
    if X.ndim != 2 or X.shape[1] <= max(components):
        raise InputError(f"{what}: obsm[{key!r}] has shape {X.shape}; components {components} do not exist.")
    xy = X[:, list(components)]
    kind, vals, names, cols = values_for(adata, color, what)
    ax = get_ax(ax, figsize=(6.5, 5))
    s = size if size is not None else max(2.0, min(40.0, 30000 / max(adata.n_obs, 1)))
    finite = np.isfinite(xy).all(axis=1)
    mappable = None
    if kind == "category":
        order = np.random.default_rng(0).permutation(np.flatnonzero(finite))  # no category hides another
        c = np.array([cols[i] if i >= 0 else (0.8, 0.8, 0.8, 1.0) for i in vals[order]], dtype=object)
        ax.scatter(xy[order, 0], xy[order, 1], c=list(c), s=s, linewidths=0, rasterized=True)
    elif kind == "value":
        mappable = ax.scatter(xy[finite, 0], xy[finite, 1], c=vals[finite], s=s, cmap=cmap, linewidths=0,
                              rasterized=True)
    else:
        ax.scatter(xy[finite, 0], xy[finite, 1], s=s, color="0.3", linewidths=0, rasterized=True)
    add_legend_or_colorbar(ax, kind, names, cols, mappable, title=color)
    label = key[2:] if key.startswith("X_") else key
    ax.set_xlabel(f"{label} {components[0] + 1}")
    ax.set_ylabel(f"{label} {components[1] + 1}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or (f"{label} coloured by {color}" if color else label))
    return finish(ax, show=show, save=save)
