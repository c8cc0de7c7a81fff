"""Slide overlay (image + nuclei + graph + samples) and the segmentation quality grid."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .. import _keys as K
from .._errors import InputError
from .._logging import logger
from ._utils import add_legend_or_colorbar, finish, get_ax, plt, values_for

__all__ = ["slide_overlay", "segmentation_grid"]

MAX_DISPLAY_PX = 8192


def _open(slide, mpp=None):
    if slide is None:
        return None
    from ..io import Slide, open_slide

    return slide if isinstance(slide, Slide) else open_slide(slide, mpp=mpp)


def _read_view(s, region, ds):
    """RGB(A)/gray view of level-0 ``region`` (x0, y0, x1, y1) at ``ds`` level-0 px per display px."""
    from PIL import Image

    x0, y0, x1, y1 = region
    W0, H0 = s.dimensions
    out_w, out_h = max(1, int(round((x1 - x0) / ds))), max(1, int(round((y1 - y0) / ds)))
    if out_w * out_h > MAX_DISPLAY_PX ** 2:
        raise InputError(f"the view would be {out_w} x {out_h} px; choose a coarser mpp= or a smaller region=.")
    if (x0, y0, x1, y1) == (0, 0, W0, H0):
        img = s.get_thumbnail((out_w, out_h))
    else:
        level = s.get_best_level_for_downsample(ds)
        lds = s.level_downsamples[level]
        size = (max(1, int(np.ceil((x1 - x0) / lds))), max(1, int(np.ceil((y1 - y0) / lds))))
        img = s.read_region((int(x0), int(y0)), level, size)
        if img.shape[1] != out_w or img.shape[0] != out_h:
            if img.dtype != np.uint8:
                img = _to_uint8(img)
            img = np.asarray(Image.fromarray(np.ascontiguousarray(img.squeeze())).resize((out_w, out_h),
                                                                                      Image.Resampling.BILINEAR))
    return _to_uint8(img) if img.dtype != np.uint8 else img


def _to_uint8(img):
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 3 and img.shape[2] not in (3, 4):
        img = img[..., :3] if img.shape[2] > 3 else img.max(axis=2)
    lo, hi = np.nanpercentile(img, [1, 99.5]) if img.size else (0, 1)
    return (np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1) * 255).astype(np.uint8)


def _contours_for(nuclei: pd.DataFrame, ids: np.ndarray) -> list:
    if K.nuclei.contour not in nuclei:
        raise InputError("the nuclei table has no 'contour' column (tg.seg.nuclei / tg.pipeline.read_nuclei "
                         "tables have it); pass nuclei=None to draw centroids.")
    table = nuclei.set_index(K.nuclei.id)[K.nuclei.contour]
    return [table.get(i) for i in ids]


def _cell_ids(cells) -> np.ndarray:
    if K.obs.nucleus_id in cells.obs:
        return cells.obs[K.obs.nucleus_id].to_numpy()
    try:
        return cells.obs_names.astype(int).to_numpy()
    except (TypeError, ValueError):
        return np.arange(1, cells.n_obs + 1)


def _scale_bar(ax, region, mpp):
    if not mpp:
        return
    width_um = (region[2] - region[0]) * mpp
    nice = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
    length = max([v for v in nice if v <= width_um / 5] or [nice[0]])
    px = length / mpp
    x = region[0] + 0.04 * (region[2] - region[0])
    y = region[3] - 0.05 * (region[3] - region[1])
    ax.plot([x, x + px], [y, y], color="black", lw=3, solid_capstyle="butt")
    ax.plot([x, x + px], [y, y], color="white", lw=1.2, solid_capstyle="butt")
    ax.text(x + px / 2, y - 0.015 * (region[3] - region[1]), f"{length:g} µm", ha="center", va="bottom",
            fontsize=8, color="black", bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7))


def _draw_samples(ax, samples, region, sample_color, what):
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle, Rectangle

    obs = samples.obs
    kind, vals, names, cols = values_for(samples, sample_color, what)
    patches, colors = [], []
    spots = K.obs.diameter_um in obs and obs.get(K.obs.sample_kind, pd.Series(dtype=str)).astype(str).eq("spot").any()
    mpp = None
    if spots:
        from .._anndata import get_mpp

        mpp = get_mpp(samples, required=False)
    for i in range(samples.n_obs):
        c = cols[vals[i]] if kind == "category" and vals[i] >= 0 else "#ffcc00"
        if all(b in obs for b in K.obs.bbox) and np.isfinite(obs[K.obs.bbox[0]].iloc[i]):
            bx0, by0, bx1, by1 = (float(obs[b].iloc[i]) for b in K.obs.bbox)
            if bx1 < region[0] or bx0 > region[2] or by1 < region[1] or by0 > region[3]:
                continue
            patches.append(Rectangle((bx0, by0), bx1 - bx0, by1 - by0))
        elif spots and mpp and K.obsm.spatial in samples.obsm:
            cx, cy = samples.obsm[K.obsm.spatial][i][:2]
            patches.append(Circle((cx, cy), float(obs[K.obs.diameter_um].iloc[i]) / mpp / 2))
        else:
            continue
        colors.append(c)
    if patches:
        ax.add_collection(PatchCollection(patches, facecolor="none", edgecolor=colors, linewidth=1.0, alpha=0.9))
    elif K.obsm.spatial in samples.obsm:
        xy = np.asarray(samples.obsm[K.obsm.spatial])
        ax.scatter(xy[:, 0], xy[:, 1], marker="s", s=12, facecolor="none", edgecolor="#ffcc00")
    if kind == "category":
        add_legend_or_colorbar(ax, kind, names, cols, title=sample_color)


def slide_overlay(cells=None, *, slide: Any = None, nuclei: pd.DataFrame | None = None, color: str | None = None,
                  region: Sequence[float] | None = None, mpp: float | None = None, max_size: int = 1200,
                  outlines: bool | None = None, edges: bool = True, connectivity_key: str | None = None,
                  samples=None, sample_color: str | None = None, point_size: float | None = None,
                  cmap: str = "viridis", slide_mpp: float | None = None, title: str | None = None, ax=None,
                  show: bool | None = None, save: Any = None):
    """The slide (thumbnail or a region at a chosen µm/px) with nuclei, graph edges and samples on top.

    Parameters
    ----------
    cells
        Cells AnnData (centroids in ``obsm['spatial']``, level-0 px; graph in ``obsp``), or None to draw
        only the image and samples.
    slide
        Path / array / :class:`tissuegraph.io.Slide`; None = no image.
    nuclei
        Nucleus table with ``contour`` (``tg.seg.nuclei`` or ``tg.pipeline.read_nuclei``): outlines are
        drawn for the cells in view; without it, centroids.
    color
        obs column (cell type, cluster, niche: categorical colours) or var name / numeric obs column.
    region
        ``(x0, y0, x1, y1)`` in level-0 px; default the whole slide (or the cells' extent).
    mpp
        µm per display pixel of the view (e.g. 0.5 for full detail of a 20x region); default: fit
        ``max_size`` px.
    outlines
        Draw outlines (default: when ``nuclei`` is given and at most 20,000 nuclei are in view).
    edges
        Draw the graph (``obsp[connectivity_key]``) as line segments (at most 300,000 in view).
    samples, sample_color
        Samples AnnData: grid boxes (bbox columns) or spots (``diameter_um``), coloured by an obs column.
    slide_mpp
        µm/px of the slide when neither the slide nor ``cells.uns['spatial']`` has it.
    """
    from matplotlib.collections import LineCollection, PolyCollection

    what = "tg.pl.slide_overlay"
    s = _open(slide, mpp=slide_mpp)
    if cells is None and s is None:
        raise InputError(f"{what}: give cells= (a cells AnnData from tg.feat.nuclei_features) and/or slide=.")
    xy = None
    if cells is not None:
        if K.obsm.spatial not in cells.obsm:
            raise InputError(f"{what}: cells.obsm has no 'spatial' centroids; make the cells AnnData with "
                             "tg.feat.nuclei_features (or tg.pipeline.run) first.")
        xy = np.asarray(cells.obsm[K.obsm.spatial], dtype=float)[:, :2]
    base_mpp = slide_mpp or (s.mpp if s is not None else None)
    if base_mpp is None and cells is not None:
        from .._anndata import get_mpp

        try:
            base_mpp = get_mpp(cells, required=False)
        except InputError:
            base_mpp = None
    if region is None:
        if s is not None:
            region = (0, 0, *s.dimensions)
        else:
            lo, hi = np.nanmin(xy, axis=0), np.nanmax(xy, axis=0)
            pad = 0.02 * max(hi - lo)
            region = (lo[0] - pad, lo[1] - pad, hi[0] + pad, hi[1] + pad)
    region = tuple(float(v) for v in region)
    if not (region[2] > region[0] and region[3] > region[1]):
        raise InputError(f"{what}: region must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {region}.")
    rw, rh = region[2] - region[0], region[3] - region[1]
    if mpp is not None:
        if not base_mpp:
            raise InputError(f"{what}: mpp= needs the slide's µm/px; pass slide_mpp=.")
        ds = float(mpp) / base_mpp
    else:
        ds = max(rw, rh) / max_size
    ax = get_ax(ax, figsize=(8, 8 * rh / rw + 0.3) if rw >= rh else (8 * rw / rh + 1.5, 8))
    if s is not None:
        img = _read_view(s, tuple(int(round(v)) for v in region), ds)
        ax.imshow(img, extent=(region[0] - 0.5, region[2] - 0.5, region[3] - 0.5, region[1] - 0.5),
                  cmap="gray" if img.ndim == 2 else None, interpolation="antialiased")
    if cells is not None:
        inside = ((xy[:, 0] >= region[0]) & (xy[:, 0] < region[2]) & (xy[:, 1] >= region[1]) &
                  (xy[:, 1] < region[3]))
        idx = np.flatnonzero(inside)
        kind, vals, names, cols = values_for(cells, color, what)
        if edges:
            from scipy import sparse

            key = connectivity_key or K.obsp.connectivities()
            if key not in cells.obsp:
                raise InputError(f"{what}: cells.obsp has no {key!r}; build the graph with tg.graph.delaunay(cells) "
                                 "(or knn/radius) first, or pass edges=False.")
            g = sparse.coo_matrix(cells.obsp[key])
            keep = (g.row < g.col) & inside[g.row] & inside[g.col]
            src, dst = g.row[keep], g.col[keep]
            if len(src) > 300_000:
                logger.info("%s: %d edges in view; drawing 300,000 of them (zoom in with region=)", what, len(src))
                pick = np.random.default_rng(0).choice(len(src), 300_000, replace=False)
                src, dst = src[pick], dst[pick]
            segs = np.stack([xy[src], xy[dst]], axis=1)
            ax.add_collection(LineCollection(segs, colors="#222222", linewidths=max(0.2, min(1.0, 200 / (len(idx) ** 0.5 + 1))),
                                             alpha=0.55, zorder=2))
        if kind == "category":
            rgba = np.array([cols[v] if v >= 0 else (0.7, 0.7, 0.7) for v in vals[idx]], dtype=object)
            face = [tuple(c) if not isinstance(c, str) else c for c in rgba]
            mappable = None
        elif kind == "value":
            import matplotlib

            norm = matplotlib.colors.Normalize(np.nanpercentile(vals, 1), np.nanpercentile(vals, 99))
            mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
            face = list(mappable.to_rgba(vals[idx]))
        else:
            face, mappable = ["#ffd700"] * len(idx), None
        draw_outlines = outlines if outlines is not None else (nuclei is not None and len(idx) <= 20_000)
        if draw_outlines:
            if nuclei is None:
                raise InputError(f"{what}: outlines=True needs nuclei= (the nucleus table with contours).")
            polys = _contours_for(nuclei, _cell_ids(cells)[idx])
            ok = [i for i, p in enumerate(polys) if p is not None and len(p) >= 3]
            ax.add_collection(PolyCollection([np.asarray(polys[i]) for i in ok], facecolors="none",
                                             edgecolors=[face[i] for i in ok], linewidths=1.0, zorder=3))
        else:
            sz = point_size if point_size is not None else max(0.5, min(20.0, 20000 / max(len(idx), 1)))
            ax.scatter(xy[idx, 0], xy[idx, 1], c=face, s=sz, linewidths=0, zorder=3, rasterized=True)
        add_legend_or_colorbar(ax, kind, names, cols, mappable, title=color)
    if samples is not None:
        _draw_samples(ax, samples, region, sample_color, what)
    ax.set_xlim(region[0] - 0.5, region[2] - 0.5)
    ax.set_ylim(region[3] - 0.5, region[1] - 0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    _scale_bar(ax, region, base_mpp)
    view = f"{ds * base_mpp:.2g} µm/px" if base_mpp else f"{ds:.2g} px/px"
    ax.set_title(title or (f"{getattr(s, 'slide_id', '') or 'cells'} — {view}" + (f", colour: {color}" if color else "")),
                 fontsize=10)
    return finish(ax, show=show, save=save)


def _truth_polygons(truth, box):
    """Outlines of ground truth inside ``box``: from a label image (array) or a table with contours."""
    from .._contours import label_contours

    x0, y0, x1, y1 = box
    if isinstance(truth, np.ndarray):
        crop = truth[max(0, y0):y1, max(0, x0):x1]
        return list(label_contours(crop, offset=(max(0, x0), max(0, y0))).values()), None
    if isinstance(truth, pd.DataFrame):
        if K.nuclei.contour in truth:
            m = (truth[K.nuclei.x] >= x0) & (truth[K.nuclei.x] < x1) & (truth[K.nuclei.y] >= y0) & (truth[K.nuclei.y] < y1)
            return [np.asarray(c) for c in truth.loc[m, K.nuclei.contour] if c is not None], None
        m = (truth["x"] >= x0) & (truth["x"] < x1) & (truth["y"] >= y0) & (truth["y"] < y1)
        return None, truth.loc[m, ["x", "y"]].to_numpy()
    raise InputError("truth must be a label image (2-D array) or a table with contour or x, y columns.")


def segmentation_grid(slide: Any, *, nuclei: pd.DataFrame, truth: Any = None, n_tiles: int = 6,
                      tile_px: int = 256, locations: Sequence[tuple[float, float]] | None = None,
                      seed: int = 0, ncols: int = 3, slide_mpp: float | None = None, ax=None,
                      show: bool | None = None, save: Any = None):
    """Tiles of the slide at full resolution with the segmented outlines (yellow) and, where there
    is one, the ground truth (cyan: outlines from a label image / table, or crosses at centroids).

    Tiles are centred on ``locations`` (level-0 px) or on nuclei drawn at random (``seed``), so they
    show tissue. Returns the array of Axes (``ax=`` may pass ``n_tiles`` Axes).
    """
    from matplotlib.collections import PolyCollection

    what = "tg.pl.segmentation_grid"
    if nuclei is None or not {K.nuclei.x, K.nuclei.y}.issubset(getattr(nuclei, "columns", [])):
        raise InputError(f"{what}: nuclei= must be the nucleus table of tg.seg.nuclei (run it first, or "
                         "tg.pipeline.read_nuclei(outdir / 'nuclei.parquet')).")
    s = _open(slide, mpp=slide_mpp)
    W, H = s.dimensions
    if locations is None:
        if len(nuclei) == 0:
            raise InputError(f"{what}: the nucleus table is empty; nothing to show.")
        pick = np.random.default_rng(seed).choice(len(nuclei), size=min(n_tiles, len(nuclei)), replace=False)
        locations = nuclei[[K.nuclei.x, K.nuclei.y]].to_numpy()[np.sort(pick)]
    locations = [tuple(map(float, p)) for p in locations]
    n = len(locations)
    if ax is None:
        nrows = int(np.ceil(n / ncols))
        fig, axes = plt().subplots(nrows, min(ncols, n), figsize=(3.2 * min(ncols, n), 3.2 * nrows), squeeze=False)
        axes = axes.ravel()
        for a in axes[n:]:
            a.axis("off")
    else:
        axes = np.ravel(np.asarray(ax, dtype=object))
        if len(axes) < n:
            raise InputError(f"{what}: {n} tiles but {len(axes)} Axes given.")
    half = tile_px // 2
    xs, ys = nuclei[K.nuclei.x].to_numpy(), nuclei[K.nuclei.y].to_numpy()
    for a, (cx, cy) in zip(axes, locations):
        x0 = int(np.clip(round(cx) - half, 0, max(0, W - tile_px)))
        y0 = int(np.clip(round(cy) - half, 0, max(0, H - tile_px)))
        box = (x0, y0, x0 + tile_px, y0 + tile_px)
        img = s.read_region((x0, y0), 0, (tile_px, tile_px))
        if img.dtype != np.uint8:
            img = _to_uint8(img)
        a.imshow(img, extent=(x0 - 0.5, x0 + tile_px - 0.5, y0 + tile_px - 0.5, y0 - 0.5),
                 cmap="gray" if img.ndim == 2 else None)
        m = (xs >= x0 - 50) & (xs < box[2] + 50) & (ys >= y0 - 50) & (ys < box[3] + 50)
        if K.nuclei.contour in nuclei:
            polys = [np.asarray(c) for c in nuclei.loc[m, K.nuclei.contour] if c is not None and len(c) >= 3]
            # outlines run through pixel corners (x +- 0.5), the same frame as the imshow extent
            a.add_collection(PolyCollection(polys, facecolors="none", edgecolors="#ffd700",
                                            linewidths=1.0))
        else:
            a.scatter(xs[m], ys[m], s=8, color="#ffd700")
        n_truth = None
        if truth is not None:
            tpolys, tpts = _truth_polygons(truth, box)
            if tpolys is not None:
                a.add_collection(PolyCollection(tpolys, facecolors="none", edgecolors="#00e5ff",
                                                linewidths=0.8, linestyles="--"))
                n_truth = len(tpolys)
            else:
                a.scatter(tpts[:, 0], tpts[:, 1], marker="+", s=25, color="#00e5ff", linewidths=1)
                n_truth = len(tpts)
        inside = int(((xs >= x0) & (xs < box[2]) & (ys >= y0) & (ys < box[3])).sum())
        a.set_xlim(x0 - 0.5, box[2] - 0.5)
        a.set_ylim(box[3] - 0.5, y0 - 0.5)
        a.set_xticks([])
        a.set_yticks([])
        a.set_title(f"({x0}, {y0}): {inside} found" + (f", {n_truth} true" if n_truth is not None else ""),
                    fontsize=8)
    fig = axes[0].figure
    legend = "yellow: segmented" + (", cyan: ground truth" if truth is not None else "")
    fig.suptitle(f"Segmentation check — {legend}", fontsize=10)
    return finish(axes, show=show, save=save)
