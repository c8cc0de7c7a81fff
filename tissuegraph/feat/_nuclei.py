"""``nuclei_features``: the cells AnnData from a nucleus table and its slide."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .. import _keys as K
from .._anndata import record_params, set_slide_metadata
from .._contours import _polygon_pixels, tile_offset
from .._errors import InputError
from .._logging import logger, progress as _progress, timed
from .._settings import settings
from .._validate import check_positive
from ._kernels import _resolve_features, _resolve_stain, feature_catalog, label_features

__all__ = ["nuclei_features"]

_MARGIN = 8  # working px around each block: resampling filters never reach a nucleus from the edge


def _check_table(nuclei: Any) -> pd.DataFrame:
    if not isinstance(nuclei, pd.DataFrame):
        raise InputError(f"nuclei must be the nucleus table (a pandas DataFrame from tg.seg.nuclei), got "
                         f"{type(nuclei).__name__}.")
    need = [K.nuclei.id, K.nuclei.x, K.nuclei.y, K.nuclei.contour]
    missing = [c for c in need if c not in nuclei.columns]
    if missing:
        raise InputError(f"The nucleus table lacks column(s) {missing}; it needs {need} "
                         "(see docs/architecture.md, 'Nucleus table').")
    ids = nuclei[K.nuclei.id].to_numpy()
    if len(ids) and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 1):
        raise InputError("nucleus_id must hold integers >= 1.")
    if len(np.unique(ids)) != len(ids):
        raise InputError("nucleus_id has duplicates; every nucleus needs its own id.")
    xy = nuclei[[K.nuclei.x, K.nuclei.y]].to_numpy(dtype=np.float64)
    if len(xy) and not np.isfinite(xy).all():
        raise InputError("The centroid columns x, y contain NaN or infinite values.")
    return nuclei


def _contour_arrays(contours: pd.Series) -> tuple[list[np.ndarray], np.ndarray]:
    polys = []
    for k, c in enumerate(contours.tolist()):
        a = np.asarray(c, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != 2 or len(a) < 3:
            raise InputError(f"contour of row {k} must be an (n >= 3, 2) polygon, got shape {a.shape}.")
        if not np.isfinite(a).all():
            raise InputError(f"contour of row {k} contains NaN or infinite coordinates.")
        polys.append(a)
    n_v = np.array([len(p) for p in polys], dtype=np.int64)
    return polys, n_v


def _layers(flat: np.ndarray, vals: np.ndarray) -> dict[int, int]:
    """Greedy colouring of the nuclei whose pixels overlap: {local id: layer >= 1}."""
    o = np.argsort(flat, kind="stable")
    f, v = flat[o], vals[o]
    dup = np.flatnonzero(f[1:] == f[:-1])
    if dup.size == 0:
        return {}
    pairs = np.unique(np.sort(np.stack([v[dup], v[dup + 1]], axis=1), axis=1), axis=0)
    nbrs: dict[int, set[int]] = {}
    for a, b in pairs.tolist():
        if a == b:
            continue
        nbrs.setdefault(a, set()).add(b)
        nbrs.setdefault(b, set()).add(a)
    layer: dict[int, int] = {}
    for node in sorted(nbrs):
        used = {layer[m] for m in nbrs[node] if m in layer}
        k = 1
        while k in used:
            k += 1
        layer[node] = k
    # the first colour shares the pass of the nuclei that overlap nothing
    return {k: v - 1 for k, v in layer.items()}


def _read_block(slide, u0: int, v0: int, w: int, h: int, scale: float, lock: threading.Lock) -> np.ndarray:
    """Working-grid pixels [u0, u0 + w) x [v0, v0 + h); pixel u covers level-0 edge coordinates
    [u * scale, (u + 1) * scale) (pixel centre (u + 0.5) * scale - 0.5)."""
    with lock:
        if abs(scale - 1.0) < 1e-12:
            img = slide.read_region((u0, v0), 0, (w, h))
        else:
            from ..io._resample import read_resampled

            img = read_resampled(slide, u0 * scale, v0 * scale, scale, (w, h))
    return np.asarray(img)


def nuclei_features(nuclei: pd.DataFrame, slide: Any, *, features: str | Sequence[str] = "all",
                    mpp: float | None = None, stain: str = "auto", tile_size: int = 1024,
                    n_jobs: int | None = None, progress: bool | None = None,
                    channel_names: Sequence[str] | None = None, texture_levels: int = 16,
                    texture_range: str | tuple[float, float] = "nucleus",
                    texture_channel: str | int | None = None):
    """Per-nucleus features of a whole slide as the cells AnnData.

    Nuclei are grouped into square blocks of ``tile_size`` working pixels (by centroid); each block's
    image is read once (covering its nuclei entirely), its contours are rasterised exactly into a
    label image (:func:`tissuegraph._contours.rasterize_contours`) and :func:`label_features` measures
    all of them at once.  Results do not depend on ``tile_size`` or ``n_jobs``; nuclei whose masks
    overlap are measured in separate passes so that each keeps its whole mask.

    Parameters
    ----------
    nuclei
        The nucleus table of ``tg.seg.nuclei`` (columns ``nucleus_id``, ``x``, ``y``, ``contour`` in
        level-0 px; optional ``slide``, ``tile``, ``cell_type``).  ``nuclei.attrs['seg_mpp']`` is
        the µm/px the segmentation ran at.
    slide
        The slide the nuclei come from (:func:`tissuegraph.io.open_slide`), or an image array (then
        ``mpp`` is its µm/px).
    features
        ``'all'``, a group (``'shape'``, ``'intensity'``, ``'texture'``), names, or a list (see
        :func:`tissuegraph.feat.feature_catalog`).
    mpp
        Resolution to measure at, µm/px.  Default: the segmentation resolution
        (``nuclei.attrs['seg_mpp']``), else the slide's.  At the segmentation resolution the masks are
        exactly the segmented ones; at another resolution the contours are re-rasterised on a grid
        whose pixel ``u`` is centred at level-0 ``(u + 0.5) * s - 0.5``, ``s = mpp / slide mpp``.
    stain
        ``'he'``, ``'fluorescence'`` or ``'auto'`` (``'he'`` for RGB uint8 slides); see
        :func:`label_features`.
    tile_size
        Block size in working pixels; results do not change with it.  1024 was fastest in
        ``benchmarks`` runs (larger blocks fall out of CPU caches, smaller ones add overhead).
    n_jobs
        Worker threads (default ``tg.settings.n_jobs``).
    progress
        Show a progress bar (default ``tg.settings.progress``).
    channel_names, texture_levels, texture_range, texture_channel
        Passed to :func:`label_features`.

    Returns
    -------
    anndata.AnnData
        One row per nucleus (table order): ``X`` float32 features (``var_names`` carry units,
        ``var['unit']``, ``var['group']``, ``var['description']``), ``obs`` = ``nucleus_id``,
        ``slide`` (categorical), ``tile``, ``cell_type`` (when the table has it), ``obsm['spatial']``
        = centroids (x, y) in level-0 px, ``uns['spatial'][slide]`` = µm/px, and
        ``uns['nuclei_features']['params']``.
    """
    import anndata as ad

    nuclei = _check_table(nuclei)
    if isinstance(slide, np.ndarray):
        from ..io import open_slide

        slide = open_slide(slide, mpp=mpp)
    for attr in ("read_region", "level_downsamples"):
        if not hasattr(slide, attr):
            raise InputError(f"slide must be a tissuegraph Slide (tg.io.open_slide) or an array, got "
                             f"{type(slide).__name__}.")
    tile_size = check_positive(tile_size, "tile_size", integer=True)
    attrs = dict(getattr(nuclei, "attrs", {}) or {})
    slide_mpp = slide.mpp if getattr(slide, "mpp", None) is not None else attrs.get("slide_mpp")
    if slide_mpp is None:
        slide_mpp = slide.require_mpp("tg.feat.nuclei_features (lengths in µm)")
    slide_mpp = float(check_positive(slide_mpp, "slide µm/px"))
    seg_mpp = attrs.get("seg_mpp", attrs.get("mpp"))
    work_mpp = float(check_positive(mpp, "mpp")) if mpp is not None else \
        float(seg_mpp) if seg_mpp is not None and np.isfinite(float(seg_mpp)) else slide_mpp
    scale = work_mpp / slide_mpp
    if abs(scale - round(scale)) < 1e-9:
        scale = float(round(scale)) if round(scale) > 0 else scale

    n_ch = int(getattr(slide, "channels", 3))
    probe = np.zeros((1, 1, n_ch) if n_ch > 1 else (1, 1), dtype=getattr(slide, "dtype", np.uint8))
    stain_r = _resolve_stain(stain, probe)
    catalog = feature_catalog(stain=stain_r, n_channels=n_ch, channel_names=channel_names,
                              texture_channel=texture_channel)
    specs = [f for f in _resolve_features(features, catalog) if f.group != "position"]
    if not specs:
        raise InputError("No per-nucleus features selected (position columns are in obsm['spatial']).")
    names = [f.name for f in specs]

    slide_col = K.nuclei.slide
    if slide_col in nuclei.columns and len(nuclei):
        sids = pd.unique(nuclei[slide_col].astype(str))
        if len(sids) > 1:
            raise InputError(f"The nucleus table holds {len(sids)} slides ({list(sids[:3])}...); call "
                             "nuclei_features once per slide and join with anndata.concat.")
        slide_id = str(sids[0])
    else:
        slide_id = str(getattr(slide, "slide_id", None) or "slide")

    n = len(nuclei)
    X = np.full((n, len(names)), np.nan, dtype=np.float32)
    if n:
        polys, n_v = _contour_arrays(nuclei[K.nuclei.contour])
        allpts = np.concatenate(polys)
        # contour extent in working-pixel-centre coordinates: w = (p + 0.5) / s - 0.5
        wpts = (allpts + 0.5) / scale - 0.5
        starts = np.r_[0, np.cumsum(n_v)[:-1]]
        lo = np.minimum.reduceat(wpts, starts, axis=0)
        hi = np.maximum.reduceat(wpts, starts, axis=0)
        u_lo = np.floor(lo).astype(np.int64)  # pixels whose centre can be inside
        u_hi = np.ceil(hi).astype(np.int64)
        cx = nuclei[K.nuclei.x].to_numpy(dtype=np.float64)
        cy = nuclei[K.nuclei.y].to_numpy(dtype=np.float64)
        bx = np.floor(((cx + 0.5) / scale - 0.5) / tile_size).astype(np.int64)
        by = np.floor(((cy + 0.5) / scale - 0.5) / tile_size).astype(np.int64)
        order = np.lexsort((np.arange(n), bx, by))
        key = np.stack([by[order], bx[order]], axis=1)
        brk = np.flatnonzero(np.any(key[1:] != key[:-1], axis=1)) + 1
        blocks = np.split(order, brk)
        lock = threading.Lock()
        kw = dict(spacing=work_mpp, features=names, stain=stain_r, channel_names=channel_names,
                  texture_levels=texture_levels, texture_range=texture_range, texture_channel=texture_channel)

        def run(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            U0 = int(u_lo[rows, 0].min()) - _MARGIN
            V0 = int(u_lo[rows, 1].min()) - _MARGIN
            U1 = int(u_hi[rows, 0].max()) + _MARGIN + 1
            V1 = int(u_hi[rows, 1].max()) + _MARGIN + 1
            w, h = U1 - U0, V1 - V0
            image = _read_block(slide, U0, V0, w, h, scale, lock)
            if image.shape[:2] != (h, w):
                raise InputError(f"slide.read_region returned shape {image.shape}, expected ({h}, {w}, ...).")
            off = np.asarray(tile_offset((U0 * scale, V0 * scale), scale))
            local = np.arange(1, len(rows) + 1, dtype=np.int64)
            flat, vals = _polygon_pixels([polys[r] for r in rows], local, h, w, off, scale)
            layer_of = _layers(flat, vals)
            out = np.full((len(rows), len(names)), np.nan)
            lay = np.zeros(len(rows) + 1, dtype=np.int64)
            for k, v in layer_of.items():
                lay[k] = v
            for L in np.unique(lay[1:]):
                keep = lay[vals] == L
                lab = np.zeros(h * w, dtype=np.int32)
                lab[flat[keep]] = vals[keep]
                lab = lab.reshape(h, w)
                if L > 0:  # few overlapping nuclei: crop to them
                    rr, cc = np.nonzero(lab)
                    r0, r1 = max(rr.min() - 1, 0), min(rr.max() + 2, h)
                    c0, c1 = max(cc.min() - 1, 0), min(cc.max() + 2, w)
                    lab_c, img_c = lab[r0:r1, c0:c1], image[r0:r1, c0:c1]
                else:
                    lab_c, img_c = lab, image
                if not lab_c.any():
                    continue
                df = label_features(lab_c, img_c, **kw)
                out[df.index.to_numpy() - 1] = df[names].to_numpy()
            return rows, out

        n_workers = settings.resolve_n_jobs(n_jobs)
        with timed(f"nuclei_features: {n} nuclei in {len(blocks)} block(s)"):
            if n_workers > 1 and len(blocks) > 1:
                with ThreadPoolExecutor(n_workers) as pool:
                    results = _progress(pool.map(run, blocks), total=len(blocks), desc="nucleus features",
                                        enabled=progress, unit="block")
                    for rows, out in results:
                        X[rows] = out
            else:
                for rows, out in _progress(map(run, blocks), total=len(blocks), desc="nucleus features",
                                           enabled=progress, unit="block"):
                    X[rows] = out
        empty = np.isnan(X).all(axis=1)
        if empty.any():
            logger.warning("%d nucleus contour(s) cover no pixel centre at %.4g µm/px; their features are NaN.",
                           int(empty.sum()), work_mpp)

    ids = nuclei[K.nuclei.id].to_numpy().astype(np.int64)
    obs = pd.DataFrame(index=pd.Index(ids.astype(str), name=None))
    obs[K.obs.nucleus_id] = ids
    obs[K.obs.slide] = pd.Categorical([slide_id] * n)
    if K.nuclei.tile in nuclei.columns:
        obs[K.obs.tile] = nuclei[K.nuclei.tile].to_numpy().astype(np.int64)
    else:
        obs[K.obs.tile] = np.full(n, -1, dtype=np.int64)
    if K.nuclei.cell_type in nuclei.columns:
        obs[K.obs.cell_type] = pd.Categorical(nuclei[K.nuclei.cell_type].to_numpy())
    var = pd.DataFrame(index=pd.Index(names))
    var[K.var.unit] = [f.unit for f in specs]
    var[K.var.group] = pd.Categorical([f.group for f in specs])
    var[K.var.description] = [f.description for f in specs]
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.obsm[K.obsm.spatial] = nuclei[[K.nuclei.x, K.nuclei.y]].to_numpy(dtype=np.float64)
    set_slide_metadata(adata, slide_id, mpp=slide_mpp, seg_mpp=None if seg_mpp is None else float(seg_mpp),
                       feature_mpp=work_mpp, method=attrs.get("method"))
    record_params(adata, K.uns.nuclei_features, {
        "features": "all" if features == "all" else list(names), "mpp": work_mpp, "stain": stain_r,
        "tile_size": tile_size, "texture_levels": texture_levels,
        "texture_range": texture_range if isinstance(texture_range, str) else list(texture_range),
        "texture_channel": texture_channel, "channel_names": channel_names,
    })
    return adata
