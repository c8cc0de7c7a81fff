"""Samples: the units that carry a label (grid patch, annotated region, spot, whole image, cell group).

Every constructor returns a new **samples AnnData** (one row per sample, see docs/architecture.md):

- ``obs_names``: sample ids (str), unique across slides (the slide id is part of generated ids);
- ``obs['slide']`` (categorical), ``obs['sample_kind']`` (``'grid'``, ``'region'``, ``'spot'``,
  ``'image'`` or ``'group'``), ``obs['n_cells']`` and ``obs['area_um2']`` (the sample's area, used for
  densities), plus the geometry of its kind: grid patches ``bbox_x0, bbox_y0, bbox_x1, bbox_y1``
  (level-0 px, half-open) and ``grid_col``/``grid_row``; regions ``geometry_wkt`` (the polygon as WKT
  in level-0 px, pixel-centre convention), ``label``, ``name`` and the other scalar GeoJSON properties;
  spots ``diameter_um``; groups the grouping column; when the slide or its tissue mask is known
  (``tissue=``), also ``image_area_um2`` (the part of the sample inside the image),
  ``tissue_area_um2`` (the part inside the mask's tissue pixels, exact with respect to those pixels,
  see :mod:`tissuegraph.graph._areas`) and ``tissue_fraction = tissue_area_um2 / area_um2``;
- ``obsm['spatial']``: the sample centre (x, y) in level-0 px (patch/spot centre, polygon centroid,
  centre of the cells' bounding box for images and groups);
- ``uns['spatial'][slide]['scalefactors']['mpp']`` copied from the cells.

Membership (which cells belong to which sample)
-----------------------------------------------
Samples may overlap (overlapping regions, grid patches with ``stride_um < size_um``, spots closer than
their diameter), so membership is a sparse ``(n_samples, n_cells)`` CSR matrix (1.0 = member), stored in
``samples.obsm['cells']`` (the key is ``tissuegraph._keys.obsm.membership``). AnnData only requires the
*first* dimension of an ``obsm`` entry to be ``n_obs``, so this matrix

- stays aligned with the samples when they are subset (``samples[mask]`` keeps the matching rows),
- survives ``write_h5ad``/``read_h5ad`` unchanged (sparse ``obsm`` entries are supported by anndata),
- costs one int32 index + one float32 per (sample, cell) pair.

Its columns are the cells' ``obs_names`` at construction time, stored in
``samples.uns['cells']['obs_names']`` (with the constructor's ``params`` next to it). Readers never
assume that the cells are still in that order: :func:`sample_membership` re-aligns the matrix to a
cells AnnData by name, so permuting or re-loading the cells does not change any result; cells that
have been removed since are reported as an error. The geometry in ``obs`` is kept as well, so the
membership can always be recomputed from it.

Membership rules: a cell (its centroid, ``obsm['spatial']``) belongs to a grid patch when
``x0 <= x < x1`` and ``y0 <= y < y1`` (half-open, so non-overlapping patches partition the plane); to a
region when the polygon strictly contains it (``shapely.contains_xy``: centroids exactly on the
outline are outside); to a spot when its distance to the centre is ``<= diameter / 2``; to an image
when it is on that slide. Only cells of the sample's slide can be members.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _keys as K
from .._anndata import get_mpp, record_params, set_slide_metadata
from .._errors import InputError, MissingMppError
from .._logging import logger, timed
from .._settings import settings
from .._validate import check_nonnegative_int, check_positive

__all__ = [
    "grid_samples",
    "region_samples",
    "spot_samples",
    "image_samples",
    "group_samples",
    "sample_membership",
]

# The level-0 pixel grid: pixel (r, c) covers [c - 0.5, c + 0.5) x [r - 0.5, r + 0.5), so the image's
# top-left corner is at (-0.5, -0.5). Grid patches are anchored there, so a patch of integer pixel size
# covers whole pixels of the image.
_GRID_ORIGIN = -0.5


# ---------------------------------------------------------------------------------------------------
# helpers shared with _descriptors
# ---------------------------------------------------------------------------------------------------
def _check_cells(cells, what: str = "cells") -> np.ndarray:
    """Return the (n, 2) float64 centroids of a cells AnnData, with clear errors."""
    try:
        from anndata import AnnData
    except ImportError:  # pragma: no cover - anndata is a hard dependency
        AnnData = None  # type: ignore[assignment]
    if AnnData is not None and not isinstance(cells, AnnData):
        raise InputError(f"{what} must be an AnnData with one row per cell, got {type(cells).__name__}.")
    if K.obsm.spatial not in cells.obsm:
        raise InputError(f"{what}.obsm['{K.obsm.spatial}'] is missing: it must hold the (n, 2) cell "
                         "centroids (x, y) in level-0 pixels (tg.feat / tg.seg write it).")
    xy = np.asarray(cells.obsm[K.obsm.spatial])
    if xy.ndim != 2 or xy.shape[1] < 2:
        raise InputError(f"{what}.obsm['{K.obsm.spatial}'] must have shape (n_cells, 2), got {xy.shape}.")
    xy = np.ascontiguousarray(xy[:, :2], dtype=np.float64)
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        raise InputError(f"{what}.obsm['{K.obsm.spatial}'] has {int(bad.sum())} row(s) with NaN or infinite "
                         f"coordinates (first: cell {cells.obs_names[np.flatnonzero(bad)[0]]!r}).")
    return xy


def _cell_slides(cells) -> tuple[np.ndarray, list[str]]:
    """Slide of each cell as integer codes into a list of slide ids (str)."""
    spatial = cells.uns.get(K.uns.spatial, {}) or {}
    if K.obs.slide in cells.obs:
        col = cells.obs[K.obs.slide]
        if col.isna().any():
            raise InputError(f"cells.obs['{K.obs.slide}'] has {int(col.isna().sum())} missing value(s); every "
                             "cell must name its slide.")
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.cat.remove_unused_categories()
            names = [str(c) for c in col.cat.categories]
            if len(set(names)) == len(names):
                return np.asarray(col.cat.codes, dtype=np.int64), names
        cat = pd.Categorical(col.astype(str))
        return np.asarray(cat.codes, dtype=np.int64), [str(c) for c in cat.categories]
    if len(spatial) > 1:
        raise InputError(f"cells.obs['{K.obs.slide}'] is missing but cells.uns['{K.uns.spatial}'] describes "
                         f"{len(spatial)} slides; add the slide of each cell to cells.obs['{K.obs.slide}'].")
    sid = str(next(iter(spatial))) if spatial else "slide"
    return np.zeros(cells.n_obs, dtype=np.int64), [sid]


def _slide_mpp(cells, slide_ids: Sequence[str], *, what: str) -> np.ndarray:
    """µm/px of each slide (MissingMppError naming the slide when unknown)."""
    spatial = cells.uns.get(K.uns.spatial, {}) or {}
    out = np.empty(len(slide_ids))
    for i, sid in enumerate(slide_ids):
        if sid in spatial:
            mpp = get_mpp(cells, sid, required=False)
        elif len(spatial) == 1:  # cells without obs['slide']: the one recorded slide
            mpp = get_mpp(cells, None, required=False)
        else:
            mpp = None
        if mpp is None:
            raise MissingMppError(
                f"{what} needs the pixel size (µm/px) of slide {sid!r}, but cells.uns['{K.uns.spatial}'] does "
                "not record it. Set it with tg.io.open_slide(path, mpp=...) before segmentation, or "
                f"cells.uns['{K.uns.spatial}'][{sid!r}] = {{'scalefactors': {{'mpp': <µm/px>}}}}.")
        out[i] = mpp
    return out


def _resolve_slide(slide: str | None, slide_ids: list[str], what: str) -> int:
    """Index of ``slide`` in ``slide_ids`` (``None`` is allowed when there is one slide)."""
    if slide is None:
        if len(slide_ids) != 1:
            raise InputError(f"The cells come from {len(slide_ids)} slides {slide_ids[:5]}; pass slide= to say "
                             f"which one the {what} belong to (or a mapping {{slide: ...}}).")
        return 0
    slide = str(slide)
    if slide not in slide_ids:
        raise InputError(f"slide {slide!r} is not among the cells' slides {slide_ids[:10]}.")
    return slide_ids.index(slide)


def _unique(a: np.ndarray, return_inverse: bool = False):
    """Sorted unique values (and inverse) via one sort; faster than np.unique's hashing on big arrays."""
    a = np.asarray(a)
    if return_inverse:
        order = np.argsort(a, kind="stable")
        s = a[order]
    else:
        s = np.sort(a)
    first = np.ones(len(s), dtype=bool)
    first[1:] = s[1:] != s[:-1]
    uniq = s[first]
    if not return_inverse:
        return uniq
    inv = np.empty(len(a), dtype=np.int64)
    inv[order] = np.cumsum(first) - 1
    return uniq, inv


def _present(codes: np.ndarray, n: int) -> list[int]:
    """Slide indices that have at least one cell."""
    return np.flatnonzero(np.bincount(codes, minlength=n)).tolist()


def _n_jobs(n_jobs: int | None) -> int:
    return settings.resolve_n_jobs(n_jobs)


def _hull_area_px2(xy: np.ndarray) -> float:
    """Area of the convex hull of points (0 when fewer than 3 points or all collinear)."""
    if len(xy) < 3:
        return 0.0
    from scipy.spatial import ConvexHull, QhullError

    try:
        return float(ConvexHull(xy).volume)
    except QhullError:  # collinear or coincident points: the hull is degenerate
        return 0.0


def _assemble(cells, *, obs: pd.DataFrame, centers: np.ndarray, rows: np.ndarray, cols: np.ndarray,
              slide_ids: Sequence[str], slide_mpp: Mapping[str, float] | None, params: dict[str, Any]):
    """Build the samples AnnData from obs, centres and (sample, cell) member pairs."""
    from anndata import AnnData

    n_samples = len(obs)
    if not obs.index.is_unique:
        dup = obs.index[obs.index.duplicated()].unique()[:5].tolist()
        raise InputError(f"Sample ids must be unique; duplicated: {dup}.")
    membership = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
        shape=(n_samples, cells.n_obs))
    membership.sum_duplicates()
    membership.data[:] = 1.0
    membership.sort_indices()
    obs = obs.copy()
    obs.index = obs.index.astype(str)
    obs.index.name = None
    obs[K.obs.slide] = pd.Categorical(obs[K.obs.slide].astype(str), categories=list(slide_ids))
    obs[K.obs.n_cells] = np.diff(membership.indptr).astype(np.int64)
    samples = AnnData(obs=obs)
    samples.obsm[K.obsm.spatial] = np.asarray(centers, dtype=np.float64).reshape(n_samples, 2)
    samples.obsm[K.obsm.membership] = membership
    record_params(samples, K.uns.membership, params)
    samples.uns[K.uns.membership]["obs_names"] = np.asarray(cells.obs_names.astype(str), dtype=object)
    for sid in slide_ids:
        mpp = None if slide_mpp is None else slide_mpp.get(sid)
        set_slide_metadata(samples, sid, mpp=mpp)
    return samples


def sample_membership(samples, cells) -> sp.csr_matrix:
    """Membership of ``cells`` in ``samples`` as a CSR matrix aligned to the current cells.

    Parameters
    ----------
    samples
        Samples AnnData made by one of the ``tg.graph.*_samples`` constructors (it holds the
        membership in ``obsm['cells']`` and the cells' names in ``uns['cells']['obs_names']``).
    cells
        The cells AnnData the samples were made from, in any order (it may hold extra cells).

    Returns
    -------
    ``(n_samples, cells.n_obs)`` CSR matrix of float32 with 1.0 where a cell belongs to a sample,
    canonical (sorted indices, no duplicates). Column ``j`` is ``cells.obs_names[j]``.
    """
    key = K.obsm.membership
    if key not in samples.obsm:
        raise InputError(f"samples.obsm['{key}'] (cell membership) is missing; make the samples with "
                         "tg.graph.grid_samples, region_samples, spot_samples, image_samples or group_samples.")
    m = samples.obsm[key]
    m = sp.csr_matrix(m) if not sp.issparse(m) else m.tocsr()
    if m.shape[0] != samples.n_obs:
        raise InputError(f"samples.obsm['{key}'] has {m.shape[0]} rows for {samples.n_obs} samples.")
    entry = samples.uns.get(K.uns.membership, {}) or {}
    names = entry.get("obs_names") if isinstance(entry, Mapping) else None
    if names is None:
        if m.shape[1] != cells.n_obs:
            raise InputError(
                f"samples.obsm['{key}'] has {m.shape[1]} columns but cells has {cells.n_obs} rows, and "
                f"samples.uns['{K.uns.membership}']['obs_names'] (which cells the columns are) is missing "
                "(anndata.concat drops uns unless uns_merge='same'). Remake the samples from these cells.")
        logger.warning("samples.uns['%s']['obs_names'] is missing; assuming the membership columns follow the "
                       "current order of the cells.", K.uns.membership)
        out = m.astype(np.float32, copy=True)
    else:
        names = pd.Index(np.asarray(names).astype(str))
        if len(names) != m.shape[1]:
            raise InputError(f"samples.uns['{K.uns.membership}']['obs_names'] names {len(names)} cells but "
                             f"samples.obsm['{key}'] has {m.shape[1]} columns.")
        cell_names = pd.Index(cells.obs_names.astype(str))
        if len(names) == len(cell_names) and names.equals(cell_names):
            out = m.astype(np.float32, copy=True)
        else:
            if not cell_names.is_unique:
                raise InputError("cells.obs_names must be unique to match the samples' membership by name.")
            pos = cell_names.get_indexer(names)
            coo = m.tocoo()
            missing = pos[coo.col] < 0
            if missing.any():
                lost = names[np.unique(coo.col[missing])]
                raise InputError(f"{len(lost)} member cell(s) of the samples are not in cells (e.g. "
                                 f"{list(lost[:3])}); the cells were subset after the samples were made. "
                                 "Remake the samples from these cells.")
            out = sp.csr_matrix((np.ones(coo.nnz, dtype=np.float32), (coo.row, pos[coo.col])),
                                shape=(m.shape[0], cells.n_obs))
    out.eliminate_zeros()
    out.sum_duplicates()
    out.data[:] = 1.0
    out.sort_indices()
    return out


# ---------------------------------------------------------------------------------------------------
# grid patches
# ---------------------------------------------------------------------------------------------------
def grid_samples(cells, *, size_um: float, stride_um: float | None = None, min_cells: int = 1,
                 slide: str | None = None, tissue: Any = None, min_tissue_fraction: float | None = None):
    """Square patches on a regular grid, one set per slide.

    The grid is anchored at the image's top-left corner (level-0 ``(-0.5, -0.5)``, the outer corner of
    pixel (0, 0)), so patches sit at the same place whatever cells a slide holds; patch ``(col, row)``
    covers ``x0 <= x < x0 + size`` with ``x0 = -0.5 + col * stride`` (and the same for ``y``), in level-0
    px converted from µm with each slide's own µm/px.

    Parameters
    ----------
    cells
        Cells AnnData (``obsm['spatial']`` centroids, ``obs['slide']``, µm/px in ``uns['spatial']``).
    size_um
        Side of a patch in µm.
    stride_um
        Distance between neighbouring patch origins in µm; ``None`` = ``size_um`` (no overlap). With
        ``stride_um < size_um`` patches overlap and a cell belongs to several of them.
    min_cells
        Keep patches with at least this many cells. ``0`` keeps every patch of the grid that intersects
        the bounding box of the slide's cells, empty ones included.
    slide
        Only this slide (default: every slide of the cells).
    tissue
        What is known about the slide's extent: a :class:`tissuegraph.io.TissueMask`, or the
        :class:`~tissuegraph.io.Slide` / slide path (its mask is then computed with
        :func:`tissuegraph.io.tissue_mask`), or ``{slide_id: one of those}`` for several slides. With
        it every patch also gets ``image_area_um2`` (its part inside the image), ``tissue_area_um2``
        (its part inside the mask's tissue pixels, exact with respect to those pixels, see
        :mod:`tissuegraph.graph._areas`) and ``tissue_fraction`` = ``tissue_area_um2 / area_um2``;
        the structural descriptors then use the tissue area for densities.
    min_tissue_fraction
        Keep only patches whose ``tissue_fraction`` is at least this (e.g. ``0.5`` drops patches that
        are mostly glass or mostly outside the image, as whole-slide patching tools do); needs
        ``tissue``. ``None`` keeps every patch.

    Returns
    -------
    Samples AnnData: ids ``'<slide>__r<row>_c<col>'``; ``obs``: ``slide``, ``sample_kind='grid'``,
    ``grid_col``, ``grid_row``, ``bbox_x0/y0/x1/y1`` (level-0 px), ``area_um2`` (= ``size_um²``: the full
    patch, also where it extends beyond the tissue or the image), ``n_cells``, and with ``tissue``
    ``image_area_um2``, ``tissue_area_um2``, ``tissue_fraction``; ``obsm['spatial']`` = patch centre;
    membership in ``obsm['cells']`` (see module docs).
    """
    from ._areas import box_areas, resolve_tissue

    size_um = float(check_positive(size_um, "size_um"))
    stride_um = size_um if stride_um is None else float(check_positive(stride_um, "stride_um"))
    min_cells = check_nonnegative_int(min_cells, "min_cells")
    if min_tissue_fraction is not None:
        min_tissue_fraction = float(min_tissue_fraction)
        if not 0.0 <= min_tissue_fraction <= 1.0:
            raise InputError(f"min_tissue_fraction must lie in [0, 1], got {min_tissue_fraction!r}.")
        if tissue is None:
            raise InputError("min_tissue_fraction needs to know where the tissue is: pass tissue= (a "
                             "tg.io.TissueMask, the slide, or {slide_id: ...}).")
    xy = _check_cells(cells)
    codes, slide_ids = _cell_slides(cells)
    which = _present(codes, len(slide_ids)) if slide is None else [_resolve_slide(slide, slide_ids, "patches")]
    mpps = _slide_mpp(cells, [slide_ids[i] for i in which], what="tg.graph.grid_samples")
    areas = resolve_tissue(tissue, slide_ids, which, default=None if slide is None else which[0])
    if min_tissue_fraction is not None and (missing := [slide_ids[i] for i in which if i not in areas]):
        raise InputError(f"min_tissue_fraction is set but tissue= does not describe slide(s) {missing[:5]}.")
    n_dropped = 0
    span = int(math.ceil(size_um / stride_um))

    obs_parts, center_parts, row_parts, col_parts = [], [], [], []
    n_done = 0
    with timed("grid_samples", level=10):
        for si, mpp in zip(which, mpps):
            sid = slide_ids[si]
            idx = np.flatnonzero(codes == si)
            size, stride = size_um / mpp, stride_um / mpp
            pts = xy[idx]
            if len(idx) == 0:
                continue

            def candidates(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                # the patches i with o + i*stride <= v < o + i*stride + size form an integer interval;
                # return its first index and length (candidates around floor() checked exactly)
                last = np.floor((v - _GRID_ORIGIN) / stride).astype(np.int64)
                ii = last[:, None] - np.arange(-1, span + 1)[None, :]
                start = _GRID_ORIGIN + ii * stride
                ok = (start <= v[:, None]) & (v[:, None] < start + size)
                first = np.where(ok, ii, np.iinfo(np.int64).max).min(axis=1)
                return first, ok.sum(axis=1)

            fx, nx_ = candidates(pts[:, 0])
            fy, ny_ = candidates(pts[:, 1])
            pc, pr, pcell = [], [], []
            for a in range(int(nx_.max())):
                for b in range(int(ny_.max())):
                    ok = (a < nx_) & (b < ny_)
                    pc.append(fx[ok] + a)
                    pr.append(fy[ok] + b)
                    pcell.append(idx[ok])
            pc, pr, pcell = np.concatenate(pc), np.concatenate(pr), np.concatenate(pcell)
            if min_cells == 0:
                c_range = np.arange(pc.min(), pc.max() + 1)
                r_range = np.arange(pr.min(), pr.max() + 1)
                rr, cc = np.meshgrid(r_range, c_range, indexing="ij")
                patches = np.stack([rr.ravel(), cc.ravel()], axis=1)
            else:
                width = pc.max() - pc.min() + 1
                k = _unique((pr - pr.min()) * width + (pc - pc.min()))  # sorted by row, then col
                patches = np.stack([k // width + pr.min(), k % width + pc.min()], axis=1)
            # map each (cell, patch) pair to the patch's position in `patches`
            key_c0, key_r0 = patches[:, 1].min(), patches[:, 0].min()
            width = patches[:, 1].max() - key_c0 + 1
            pkeys = (patches[:, 0] - key_r0) * width + (patches[:, 1] - key_c0)
            lut = np.full(int(pkeys.max()) + 1, -1, dtype=np.int64)  # grid positions of the bounding box
            lut[pkeys] = np.arange(len(pkeys))
            pos = lut[(pr - key_r0) * width + (pc - key_c0)]
            counts = np.bincount(pos, minlength=len(patches))
            keep = counts >= min_cells
            area_cols = {}
            if si in areas:
                x0 = _GRID_ORIGIN + patches[:, 1] * stride
                y0 = _GRID_ORIGIN + patches[:, 0] * stride
                img_px, tis_px = box_areas(areas[si], x0, y0, x0 + size, y0 + size)
                frac = tis_px / (size * size)
                area_cols = {K.obs.image_area_um2: img_px * mpp * mpp, K.obs.tissue_area_um2: tis_px * mpp * mpp,
                             K.obs.tissue_fraction: frac}
                if min_tissue_fraction is not None:
                    # a relative tolerance keeps a patch exactly at the threshold despite rounding
                    ok = frac >= min_tissue_fraction - 1e-12
                    n_dropped += int((keep & ~ok).sum())
                    keep &= ok
                area_cols = {k: v[keep] for k, v in area_cols.items()}
            new_index = np.cumsum(keep) - 1
            sel = keep[pos]
            patches = patches[keep]
            rows_local = new_index[pos[sel]]
            row_parts.append(rows_local + n_done)
            col_parts.append(pcell[sel])
            x0 = _GRID_ORIGIN + patches[:, 1] * stride
            y0 = _GRID_ORIGIN + patches[:, 0] * stride
            ids = [f"{sid}__r{r}_c{c}" for r, c in patches]
            obs_parts.append(pd.DataFrame({
                K.obs.slide: sid,
                K.obs.sample_kind: "grid",
                "grid_col": patches[:, 1].astype(np.int64),
                "grid_row": patches[:, 0].astype(np.int64),
                K.obs.bbox[0]: x0, K.obs.bbox[1]: y0, K.obs.bbox[2]: x0 + size, K.obs.bbox[3]: y0 + size,
                K.obs.area_um2: size_um * size_um,
                **area_cols,
            }, index=pd.Index(ids)))
            center_parts.append(np.stack([x0 + size / 2, y0 + size / 2], axis=1))
            n_done += len(patches)
    obs, centers, rows, cols = _concat_parts(obs_parts, center_parts, row_parts, col_parts)
    logger.info("grid_samples: %d patches of %g µm (stride %g µm) on %d slide(s)%s.", len(obs), size_um,
                stride_um, len(mpps), f"; {n_dropped} patch(es) below min_tissue_fraction={min_tissue_fraction} "
                "dropped" if min_tissue_fraction is not None else "")
    return _assemble(cells, obs=obs, centers=centers, rows=rows, cols=cols, slide_ids=slide_ids,
                     slide_mpp={slide_ids[i]: m for i, m in zip(which, mpps)},
                     params={"kind": "grid", "size_um": size_um, "stride_um": stride_um,
                             "min_cells": min_cells, "slide": slide, "min_tissue_fraction": min_tissue_fraction,
                             "n_dropped_tissue": n_dropped, **_tissue_params(areas, slide_ids)})


def _tissue_params(areas: Mapping, slide_ids: Sequence[str]) -> dict[str, Any]:
    """What the sample constructor knew about each slide's image and tissue (recorded in uns)."""
    if not areas:
        return {"tissue": None}
    return {"tissue": {slide_ids[i]: {"source": a.source, "image_size": [a.width, a.height],
                                      "mask_shape": list(a.mask.shape),
                                      "mask_method": a.params.get("method"),
                                      "area": "exact intersection with the mask's tissue pixels"}
                       for i, a in areas.items()}}


def _add_area_columns(obs: pd.DataFrame, values: Mapping[str, np.ndarray]) -> None:
    for k in (K.obs.image_area_um2, K.obs.tissue_area_um2, K.obs.tissue_fraction):
        obs[k] = values[k]


def _concat_parts(obs_parts, center_parts, row_parts, col_parts):
    if obs_parts:
        obs = pd.concat(obs_parts)
        centers = np.concatenate(center_parts)
        rows = np.concatenate(row_parts)
        cols = np.concatenate(col_parts)
    else:
        obs = pd.DataFrame({K.obs.slide: pd.Series([], dtype=str)})
        centers = np.zeros((0, 2))
        rows = cols = np.zeros(0, dtype=np.int64)
    return obs, centers, rows, cols


# ---------------------------------------------------------------------------------------------------
# regions (GeoJSON / shapely polygons)
# ---------------------------------------------------------------------------------------------------
def _load_geojson(regions: Any) -> Any:
    if isinstance(regions, (str, Path)):
        text = str(regions).lstrip()
        if text.startswith("{") or text.startswith("["):
            return json.loads(text)
        path = Path(regions)
        if not path.is_file():
            raise InputError(f"GeoJSON file not found: {str(path)!r}.")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{str(path)!r} is not valid JSON/GeoJSON: {exc}.") from exc
    return regions


def _to_polygonal(geom, where: str):
    """Return a Polygon/MultiPolygon (made valid if needed) or raise a clear error."""
    import shapely
    from shapely.geometry import MultiPolygon, Polygon

    if geom is None:
        raise InputError(f"{where} has no geometry.")
    if geom.geom_type == "GeometryCollection":
        parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon")]
        if len(parts) != len(shapely.get_parts(geom)):
            logger.warning("%s: ignoring non-polygon parts of a GeometryCollection.", where)
        polys = [p for g in parts for p in shapely.get_parts(g)]
        geom = MultiPolygon(polys) if polys else Polygon()
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise InputError(f"{where} is a {geom.geom_type}; regions must be Polygon or MultiPolygon "
                         "(points and lines have no area: use tg.graph.spot_samples for points).")
    if not geom.is_empty and not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        fixed = shapely.make_valid(geom)
        polys = [p for p in shapely.get_parts(fixed) if p.geom_type == "Polygon"]
        geom = polys[0] if len(polys) == 1 else MultiPolygon(polys)
        logger.warning("%s is not a valid polygon (%s); repaired with shapely.make_valid.", where, reason)
    return geom


def _parse_regions(regions: Any) -> tuple[list, list[dict], list[str | None], bool]:
    """Regions → (geometries, properties, feature ids, came_from_geojson)."""
    import shapely
    from shapely.geometry import shape
    from shapely.geometry.base import BaseGeometry

    regions = _load_geojson(regions)
    if isinstance(regions, pd.DataFrame) and hasattr(regions, "geometry"):  # geopandas GeoDataFrame
        props = regions.drop(columns=[regions.geometry.name]).to_dict("records")
        geoms = [_to_polygonal(g, f"region {i}") for i, g in enumerate(regions.geometry)]
        return geoms, props, [None] * len(geoms), False
    if isinstance(regions, BaseGeometry):
        regions = [regions]
    if isinstance(regions, Mapping):
        kind = regions.get("type")
        if kind == "FeatureCollection":
            feats = regions.get("features")
            if not isinstance(feats, list):
                raise InputError("GeoJSON FeatureCollection has no 'features' list.")
        elif kind == "Feature":
            feats = [regions]
        elif kind in ("Polygon", "MultiPolygon", "GeometryCollection"):
            feats = [{"type": "Feature", "geometry": regions, "properties": {}}]
        else:
            raise InputError(f"Unsupported GeoJSON object of type {kind!r}; expected a FeatureCollection, a "
                             "Feature, a Polygon or a MultiPolygon.")
    elif isinstance(regions, Sequence) and not isinstance(regions, (str, bytes)):
        feats = list(regions)
    else:
        raise InputError("regions must be a GeoJSON path/str/dict (e.g. a QuPath export), a list of GeoJSON "
                         f"features, or a list of shapely polygons; got {type(regions).__name__}.")
    geoms, props, fids = [], [], []
    from_geojson = False
    for i, f in enumerate(feats):
        if isinstance(f, BaseGeometry):
            geoms.append(_to_polygonal(f, f"region {i}"))
            props.append({})
            fids.append(None)
            continue
        if not isinstance(f, Mapping):
            raise InputError(f"region {i} is a {type(f).__name__}; expected a GeoJSON feature or a shapely polygon.")
        from_geojson = True
        if f.get("type") == "Feature" or "geometry" in f:
            gj = f.get("geometry")
            p = dict(f.get("properties") or {})
            fid = f.get("id", p.get("id"))
        else:
            gj, p, fid = f, {}, None
        if gj is None:
            raise InputError(f"GeoJSON feature {i} has no geometry.")
        try:
            g = shape(gj)
        except Exception as exc:  # shapely raises several types for malformed input
            raise InputError(f"GeoJSON feature {i} has an invalid geometry: {exc}.") from exc
        geoms.append(_to_polygonal(g, f"GeoJSON feature {i}"))
        props.append(p)
        fids.append(None if fid is None else str(fid))
    shapely.prepare(geoms)
    return geoms, props, fids, from_geojson


def _label_of(p: Mapping) -> Any:
    cls = p.get("classification")
    if isinstance(cls, Mapping) and cls.get("name") is not None:  # QuPath
        return cls["name"]
    if isinstance(cls, str):
        return cls
    for k in (K.obs.label, "class", "classification_name"):
        if p.get(k) is not None and not isinstance(p.get(k), (Mapping, list)):
            return p[k]
    return None


def _property_columns(props: list[dict]) -> dict[str, list]:
    """Scalar GeoJSON properties as obs columns (nested values such as QuPath colours are skipped)."""
    skip = {"classification", "id", K.obs.label, K.obs.name, K.obs.slide, K.obs.sample_kind, K.obs.n_cells,
            K.obs.area_um2, K.obs.geometry, "objectType"}
    keys: list[str] = []
    for p in props:
        for k, v in p.items():
            if k not in skip and k not in keys and (v is None or isinstance(v, (str, numbers.Number, np.generic))):
                keys.append(k)
    out = {}
    for k in keys:
        vals = [p.get(k) for p in props]
        if any(isinstance(v, (Mapping, list)) for v in vals):
            continue
        present = [v for v in vals if v is not None]
        if all(isinstance(v, (numbers.Number, np.generic)) and not isinstance(v, (bool, np.bool_)) for v in present):
            out[k] = [np.nan if v is None else float(v) for v in vals]
        elif all(isinstance(v, (bool, np.bool_)) for v in present) and len(present) == len(vals):
            out[k] = [bool(v) for v in vals]
        else:
            out[k] = [None if v is None else str(v) for v in vals]
    return out


def region_samples(cells, regions: Any, *, labels: Sequence | None = None, ids: Sequence[str] | None = None,
                   slide: str | None = None, pixel_origin: Literal["corner", "center"] | None = None,
                   n_jobs: int | None = None, tissue: Any = None):
    """Samples from annotated regions (polygons), e.g. a QuPath GeoJSON export. Regions may overlap.

    Parameters
    ----------
    cells
        Cells AnnData.
    regions
        One of: a path to a ``.geojson``/``.json`` file, a GeoJSON string or dict (``FeatureCollection``,
        ``Feature``, ``Polygon``, ``MultiPolygon``), a list of GeoJSON features (older QuPath exports),
        a list of shapely (Multi)Polygons, or a geopandas GeoDataFrame; or a mapping
        ``{slide_id: <any of those>}`` for several slides. Coordinates are level-0 pixels. Invalid
        polygons (self-intersections from hand drawing) are repaired with ``shapely.make_valid``
        (logged); holes are honoured; points and lines are refused.
    labels
        One label per region; default: QuPath's ``properties.classification.name``, else
        ``properties.label`` (missing → NaN). Stored in ``obs['label']`` (categorical).
    ids
        Sample ids; default: the GeoJSON feature ids (QuPath UUIDs) when every feature has a unique one,
        else ``'<slide>__region<i>'``.
    slide
        The slide the regions belong to (needed when the cells come from several slides and ``regions``
        is not a mapping).
    pixel_origin
        Where the regions' ``(0, 0)`` lies. ``'corner'``: at the top-left *corner* of the first pixel, as
        in QuPath and most annotation tools (pixel ``i`` spans ``[i, i+1)``); the polygons are shifted by
        −0.5 px into tissuegraph's pixel-centre convention. ``'center'``: already in tissuegraph
        coordinates (pixel centres at integers), used as is. Default: ``'corner'`` for GeoJSON input,
        ``'center'`` for shapely geometries and GeoDataFrames (assumed built from tissuegraph data).
    n_jobs
        Threads for the point-in-polygon tests (default ``tg.settings.n_jobs``).
    tissue
        A :class:`tissuegraph.io.TissueMask`, the slide (or its path), or ``{slide_id: ...}``: adds
        ``image_area_um2``, ``tissue_area_um2`` (the polygon intersected exactly with the mask's tissue
        pixels) and ``tissue_fraction`` (see :func:`grid_samples`).

    Returns
    -------
    Samples AnnData with ``obs``: ``slide``, ``sample_kind='region'``, ``label``, ``name``,
    ``geometry_wkt`` (level-0 px, pixel-centre convention), ``area_um2`` (polygon area, holes
    excluded), ``n_cells`` and the other scalar properties of each feature; ``obsm['spatial']`` = polygon
    centroid; membership in ``obsm['cells']``: cells whose centroid lies strictly inside the polygon.
    """
    import shapely

    xy = _check_cells(cells)
    codes, slide_ids = _cell_slides(cells)
    if pixel_origin not in (None, "corner", "center"):
        raise InputError(f"pixel_origin must be 'corner', 'center' or None, got {pixel_origin!r}.")
    if isinstance(regions, Mapping) and "type" not in regions:
        if labels is not None or ids is not None:
            raise InputError("labels= and ids= cannot be combined with a {slide: regions} mapping; put labels "
                             "in the GeoJSON properties instead.")
        groups = [(str(s), r) for s, r in regions.items()]
    else:
        groups = [(slide, regions)]

    geoms, props, fids, slide_of, origin_of = [], [], [], [], []
    for s, r in groups:
        si = _resolve_slide(s, slide_ids, "regions")
        g, p, f, from_geojson = _parse_regions(r)
        geoms += g
        props += p
        fids += f
        slide_of += [si] * len(g)
        origin = pixel_origin or ("corner" if from_geojson else "center")
        origin_of += [origin] * len(g)
    n = len(geoms)
    if n == 0:
        raise InputError("regions holds no polygon.")
    if labels is not None and len(labels) != n:
        raise InputError(f"labels has {len(labels)} entries for {n} regions.")
    if ids is not None and len(ids) != n:
        raise InputError(f"ids has {len(ids)} entries for {n} regions.")
    geoms = [shapely.transform(g, lambda c: c - 0.5) if o == "corner" else g for g, o in zip(geoms, origin_of)]
    shapely.prepare(geoms)
    used_slides = sorted(set(slide_of))
    mpp_arr = _slide_mpp(cells, [slide_ids[i] for i in used_slides], what="tg.graph.region_samples")
    mpp_of = dict(zip(used_slides, mpp_arr))

    # cells of each slide sorted by x, for a fast bounding-box pre-filter
    by_slide: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for si in used_slides:
        idx = np.flatnonzero(codes == si)
        order = idx[np.argsort(xy[idx, 0], kind="stable")]
        by_slide[si] = (order, xy[order, 0])

    def members(i: int) -> np.ndarray:
        g = geoms[i]
        if g.is_empty:
            return np.zeros(0, dtype=np.int64)
        order, xs = by_slide[slide_of[i]]
        x0, y0, x1, y1 = g.bounds
        lo, hi = np.searchsorted(xs, x0, "left"), np.searchsorted(xs, x1, "right")
        cand = order[lo:hi]
        cand = cand[(xy[cand, 1] >= y0) & (xy[cand, 1] <= y1)]
        inside = shapely.contains_xy(g, xy[cand, 0], xy[cand, 1])
        return np.sort(cand[inside])

    with timed(f"region_samples: {n} regions", level=10):
        jobs = _n_jobs(n_jobs)
        if jobs > 1 and n > 1:
            with ThreadPoolExecutor(jobs) as ex:
                mem = list(ex.map(members, range(n)))
        else:
            mem = [members(i) for i in range(n)]

    if ids is None:
        if all(f is not None for f in fids) and len(set(fids)) == n:
            ids = list(fids)
        else:
            ids = [f"{slide_ids[s]}__region{i}" for i, s in enumerate(slide_of)]
    lab = list(labels) if labels is not None else [_label_of(p) for p in props]
    centroids = np.array([[g.centroid.x, g.centroid.y] if not g.is_empty else [np.nan, np.nan] for g in geoms])
    obs = pd.DataFrame({
        K.obs.slide: [slide_ids[s] for s in slide_of],
        K.obs.sample_kind: "region",
        K.obs.label: pd.Categorical([None if v is None else str(v) for v in lab]),
        K.obs.name: [None if p.get("name") is None else str(p.get("name")) for p in props],
        K.obs.geometry: shapely.to_wkt(np.array(geoms, dtype=object), rounding_precision=-1),
        K.obs.area_um2: [g.area * mpp_of[s] ** 2 for g, s in zip(geoms, slide_of)],
    }, index=pd.Index([str(i) for i in ids]))
    if "objectType" in set().union(*[p.keys() for p in props]):
        obs["object_type"] = [None if p.get("objectType") is None else str(p.get("objectType")) for p in props]
    for k, v in _property_columns(props).items():
        if k not in obs:
            obs[k] = v
    if obs[K.obs.name].isna().all():
        obs = obs.drop(columns=[K.obs.name])
    from ._areas import polygon_areas, resolve_tissue

    areas = resolve_tissue(tissue, slide_ids, used_slides,
                           default=slide_of[0] if len(groups) == 1 else None)
    if areas:
        slide_arr = np.asarray(slide_of)
        cols_ = {k: np.full(n, np.nan) for k in (K.obs.image_area_um2, K.obs.tissue_area_um2, K.obs.tissue_fraction)}
        for si, sa in areas.items():
            sel = np.flatnonzero(slide_arr == si)
            if len(sel) == 0:
                continue
            with timed(f"region_samples: tissue areas of {len(sel)} regions", level=10):
                img_px, tis_px = polygon_areas(sa, [geoms[i] for i in sel])
            m2 = mpp_of[si] ** 2
            cols_[K.obs.image_area_um2][sel] = img_px * m2
            cols_[K.obs.tissue_area_um2][sel] = tis_px * m2
            with np.errstate(invalid="ignore", divide="ignore"):
                cols_[K.obs.tissue_fraction][sel] = tis_px * m2 / obs[K.obs.area_um2].to_numpy()[sel]
        _add_area_columns(obs, cols_)
    rows = np.concatenate([np.full(len(m), i, dtype=np.int64) for i, m in enumerate(mem)])
    cols = np.concatenate(mem).astype(np.int64)
    return _assemble(cells, obs=obs, centers=centroids, rows=rows, cols=cols, slide_ids=slide_ids,
                     slide_mpp={slide_ids[s]: m for s, m in mpp_of.items()},
                     params={"kind": "region", "n_regions": n, "pixel_origin": pixel_origin,
                             "membership": "centroid strictly inside polygon (shapely.contains_xy)",
                             **_tissue_params(areas, slide_ids)})


# ---------------------------------------------------------------------------------------------------
# spots
# ---------------------------------------------------------------------------------------------------
def spot_samples(cells, centers: Any, *, diameter_um: float, ids: Sequence[str] | None = None,
                 obs: pd.DataFrame | None = None, slide: str | Sequence[str] | None = None, tissue: Any = None):
    """Circular spots (Visium / HEST-like): a cell belongs to a spot if its centroid is within the circle.

    Parameters
    ----------
    cells
        Cells AnnData.
    centers
        ``(n_spots, 2)`` spot centres (x, y) in level-0 px (HEST: ``pxl_col_in_fullres``,
        ``pxl_row_in_fullres``).
    diameter_um
        Spot diameter in µm (Visium: 55). Membership: distance to the centre ``<= diameter_um / 2``.
    ids
        Spot ids (e.g. barcodes); default: the index of ``obs`` when it is not a plain range, else
        ``'<slide>__spot<i>'``.
    obs
        Per-spot metadata (labels, ...) in the order of ``centers``; its columns are copied to
        ``samples.obs``.
    slide
        Slide of the spots: one id, or one per spot; needed when the cells come from several slides.
    tissue
        A :class:`tissuegraph.io.TissueMask`, the slide (or its path), or ``{slide_id: ...}``: adds
        ``image_area_um2``, ``tissue_area_um2`` (the disc intersected exactly with the mask's tissue
        pixels, closed-form circular-segment areas) and ``tissue_fraction`` (see :func:`grid_samples`).

    Returns
    -------
    Samples AnnData with ``obs``: ``slide``, ``sample_kind='spot'``, ``diameter_um``, ``area_um2``
    (``π d² / 4``), ``n_cells`` (+ the columns of ``obs``); ``obsm['spatial']`` = the centres;
    membership in ``obsm['cells']``.
    """
    from scipy.spatial import cKDTree

    diameter_um = float(check_positive(diameter_um, "diameter_um"))
    xy = _check_cells(cells)
    codes, slide_ids = _cell_slides(cells)
    c = np.asarray(centers, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 2:
        if c.size == 0:
            c = c.reshape(0, 2)
        else:
            raise InputError(f"centers must have shape (n_spots, 2), got {c.shape}.")
    if not np.isfinite(c).all():
        raise InputError(f"centers has {int((~np.isfinite(c)).any(axis=1).sum())} row(s) with NaN or infinite values.")
    n = len(c)
    if obs is not None:
        if not isinstance(obs, pd.DataFrame):
            raise InputError(f"obs must be a pandas DataFrame, got {type(obs).__name__}.")
        if len(obs) != n:
            raise InputError(f"obs has {len(obs)} rows for {n} spot centres.")
    if slide is None or isinstance(slide, str):
        si = _resolve_slide(slide, slide_ids, "spots")
        spot_slide = np.full(n, si, dtype=np.int64)
    else:
        slide = [str(s) for s in slide]
        if len(slide) != n:
            raise InputError(f"slide has {len(slide)} entries for {n} spots.")
        spot_slide = np.array([_resolve_slide(s, slide_ids, "spots") for s in slide], dtype=np.int64)
    if ids is None:
        if obs is not None and not isinstance(obs.index, pd.RangeIndex):
            ids = obs.index.astype(str).tolist()
        else:
            ids = [f"{slide_ids[s]}__spot{i}" for i, s in enumerate(spot_slide)]
    elif len(ids) != n:
        raise InputError(f"ids has {len(ids)} entries for {n} spot centres.")
    used = np.unique(spot_slide)
    mpp_arr = _slide_mpp(cells, [slide_ids[i] for i in used], what="tg.graph.spot_samples")
    rows, cols = [], []
    for si, mpp in zip(used, mpp_arr):
        r = diameter_um / 2 / mpp
        sidx = np.flatnonzero(spot_slide == si)
        cidx = np.flatnonzero(codes == si)
        if len(cidx) == 0 or len(sidx) == 0:
            continue
        res = cKDTree(c[sidx]).sparse_distance_matrix(cKDTree(xy[cidx]), r * (1 + 1e-9) + 1e-9,
                                                     output_type="ndarray")
        # the tree's bound is padded by rounding slack; the exact test decides
        d2 = ((c[sidx[res["i"]]] - xy[cidx[res["j"]]]) ** 2).sum(axis=1)
        ok = d2 <= r * r
        rows.append(sidx[res["i"][ok]])
        cols.append(cidx[res["j"][ok]])
    rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    cols = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    mpp_of = dict(zip(used.tolist(), mpp_arr))
    df = pd.DataFrame({
        K.obs.slide: [slide_ids[s] for s in spot_slide],
        K.obs.sample_kind: "spot",
        K.obs.diameter_um: diameter_um,
        K.obs.area_um2: math.pi * diameter_um ** 2 / 4,
    }, index=pd.Index([str(i) for i in ids]))
    from ._areas import disc_areas, resolve_tissue

    areas = resolve_tissue(tissue, slide_ids, used.tolist(),
                           default=int(spot_slide[0]) if n and len(used) == 1 else None) if n else {}
    if areas:
        cols_ = {k: np.full(n, np.nan) for k in (K.obs.image_area_um2, K.obs.tissue_area_um2, K.obs.tissue_fraction)}
        for si, sa in areas.items():
            sel = np.flatnonzero(spot_slide == si)
            if len(sel) == 0:
                continue
            mpp = mpp_of[si]
            img_px, tis_px = disc_areas(sa, c[sel, 0], c[sel, 1], diameter_um / 2 / mpp)
            cols_[K.obs.image_area_um2][sel] = img_px * mpp * mpp
            cols_[K.obs.tissue_area_um2][sel] = tis_px * mpp * mpp
            cols_[K.obs.tissue_fraction][sel] = tis_px * mpp * mpp / (math.pi * diameter_um ** 2 / 4)
        _add_area_columns(df, cols_)
    if obs is not None:
        for k in obs.columns:
            if str(k) in df.columns:
                raise InputError(f"obs column {k!r} clashes with a column written by spot_samples.")
            df[str(k)] = obs[k].to_numpy()
    return _assemble(cells, obs=df, centers=c, rows=rows, cols=cols, slide_ids=slide_ids,
                     slide_mpp={slide_ids[s]: m for s, m in mpp_of.items()},
                     params={"kind": "spot", "diameter_um": diameter_um,
                             "membership": "distance to centre <= diameter / 2", **_tissue_params(areas, slide_ids)})


# ---------------------------------------------------------------------------------------------------
# whole images and groups of cells
# ---------------------------------------------------------------------------------------------------
def _area_of(area_um2: Any, sid: str, hull_px2: float, mpp: float) -> float:
    if area_um2 is None:
        return hull_px2 * mpp * mpp
    if isinstance(area_um2, Mapping):
        if sid not in area_um2:
            raise InputError(f"area_um2 has no entry for slide {sid!r}.")
        v = area_um2[sid]
    else:
        v = area_um2
    return float(check_positive(v, f"area_um2 of {sid!r}"))


def image_samples(cells, *, area_um2: float | Mapping[str, float] | None = None, tissue: Any = None):
    """One sample per slide / image.

    Parameters
    ----------
    cells
        Cells AnnData.
    area_um2
        The area used for densities, in µm²: one number, or ``{slide_id: area}`` (e.g. the tissue area
        from a tissue mask, or the image area ``width * height * mpp²`` for fully covered images).
        Default: the area of the convex hull of the slide's cells (0 with fewer than 3 non-collinear
        cells, which makes the density NaN). The hull includes holes and gaps inside the tissue, so it
        underestimates the density of fragmented tissue. With ``tissue`` the default is the image area.
    tissue
        A :class:`tissuegraph.io.TissueMask`, the slide (or its path), or ``{slide_id: ...}``: adds
        ``image_area_um2`` (``width * height * mpp²``), ``tissue_area_um2`` (the mask's tissue pixels)
        and ``tissue_fraction``; the structural descriptors then use the tissue area for densities.

    Returns
    -------
    Samples AnnData with ids = slide ids; ``obs``: ``slide``, ``sample_kind='image'``, ``area_um2``,
    ``n_cells``; ``obsm['spatial']`` = centre of the cells' bounding box; membership in ``obsm['cells']``.
    """
    xy = _check_cells(cells)
    codes, slide_ids = _cell_slides(cells)
    present = _present(codes, len(slide_ids))
    mpps = _slide_mpp(cells, [slide_ids[i] for i in present], what="tg.graph.image_samples")
    areas, centers = [], []
    for si, mpp in zip(present, mpps):
        pts = xy[codes == si]
        areas.append(_area_of(area_um2, slide_ids[si], _hull_area_px2(pts), mpp))
        centers.append((pts.min(axis=0) + pts.max(axis=0)) / 2)
    pos = {s: i for i, s in enumerate(present)}
    rows = np.array([pos[c] for c in range(len(slide_ids))], dtype=np.int64)[codes] if len(codes) else codes
    from ._areas import resolve_tissue, whole_areas

    known = resolve_tissue(tissue, slide_ids, present, default=None)
    extra = {k: np.full(len(present), np.nan) for k in (K.obs.image_area_um2, K.obs.tissue_area_um2,
                                                        K.obs.tissue_fraction)}
    for j, (si, mpp) in enumerate(zip(present, mpps)):
        if si not in known:
            continue
        img_px, tis_px = whole_areas(known[si])
        extra[K.obs.image_area_um2][j] = img_px * mpp * mpp
        extra[K.obs.tissue_area_um2][j] = tis_px * mpp * mpp
        if area_um2 is None:
            areas[j] = img_px * mpp * mpp
        extra[K.obs.tissue_fraction][j] = tis_px * mpp * mpp / areas[j]
    obs = pd.DataFrame({K.obs.slide: [slide_ids[i] for i in present], K.obs.sample_kind: "image",
                        K.obs.area_um2: areas}, index=pd.Index([slide_ids[i] for i in present]))
    if known:
        _add_area_columns(obs, extra)
    how = "given" if area_um2 is not None else ("image" if known else "convex hull of cells")
    return _assemble(cells, obs=obs, centers=np.array(centers).reshape(-1, 2), rows=rows,
                     cols=np.arange(cells.n_obs), slide_ids=slide_ids,
                     slide_mpp={slide_ids[s]: m for s, m in zip(present, mpps)},
                     params={"kind": "image", "area": how, **_tissue_params(known, slide_ids)})


def group_samples(cells, groupby: str):
    """One sample per (slide, value of ``cells.obs[groupby]``), e.g. annotated tissue regions per cell.

    Parameters
    ----------
    cells
        Cells AnnData.
    groupby
        Column of ``cells.obs`` (e.g. ``'region'``); cells with a missing value belong to no sample.

    Returns
    -------
    Samples AnnData with ids ``'<slide>__<value>'``; ``obs``: ``slide``, ``sample_kind='group'``,
    ``<groupby>`` (the value), ``area_um2`` (convex hull of the group's cells, which overestimates the
    area of scattered groups), ``n_cells``; ``obsm['spatial']`` = centre of the cells' bounding box;
    membership in ``obsm['cells']``.
    """
    xy = _check_cells(cells)
    if groupby not in cells.obs:
        raise InputError(f"cells.obs has no column {groupby!r}; available: {list(cells.obs.columns)[:20]}.")
    codes, slide_ids = _cell_slides(cells)
    col = cells.obs[groupby]
    cat = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype("category")
    gcodes = np.asarray(cat.cat.codes, dtype=np.int64)
    ok = gcodes >= 0
    n_g = len(cat.cat.categories)
    key = codes * max(n_g, 1) + gcodes
    uniq, inv = _unique(key[ok], return_inverse=True)
    present_slides = np.unique(uniq // max(n_g, 1)).tolist()  # few values
    mpps = dict(zip(present_slides, _slide_mpp(cells, [slide_ids[i] for i in present_slides],
                                               what="tg.graph.group_samples")))
    cell_idx = np.flatnonzero(ok)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
    areas, centers, ids, s_of, values = [], [], [], [], []
    for g, k in enumerate(uniq):
        si, gi = divmod(int(k), max(n_g, 1))
        pts = xy[cell_idx[order[bounds[g]:bounds[g + 1]]]]
        areas.append(_hull_area_px2(pts) * mpps[si] ** 2)
        centers.append((pts.min(axis=0) + pts.max(axis=0)) / 2)
        value = cat.cat.categories[gi]
        ids.append(f"{slide_ids[si]}__{value}")
        s_of.append(slide_ids[si])
        values.append(value)
    obs = pd.DataFrame({K.obs.slide: s_of, K.obs.sample_kind: "group", K.obs.area_um2: areas},
                       index=pd.Index(ids))
    obs[str(groupby)] = pd.Categorical(values, categories=cat.cat.categories)
    return _assemble(cells, obs=obs, centers=np.array(centers).reshape(-1, 2), rows=inv, cols=cell_idx,
                     slide_ids=slide_ids, slide_mpp={slide_ids[s]: m for s, m in mpps.items()},
                     params={"kind": "group", "groupby": groupby, "area": "convex hull of cells"})
