"""Per-nucleus embeddings pooled from a tile's feature map (``tg.emb.cells``), never one crop per nucleus.

The slide is cut into square *cores* of ``tile_size`` px at ``mpp`` on a lattice anchored at the slide's
corner; every nucleus belongs to the core that holds its centroid (``cells.obsm['spatial']``), so each is
embedded exactly once. Only cores that hold nuclei are read, each with a margin of ``margin`` px on every
side, and each tile goes through the network **once**, to the feature map of a chosen block (timm
``forward_intermediates``: ResNet stages, ConvNeXt stages, ...; for a ViT the patch-token grid). A
nucleus's embedding is then the mean of the feature-map cells under its mask.

Geometry
--------
* Tile pixel ``u`` covers level-0 edge coordinates ``[X + u s, X + (u + 1) s)`` (``s`` = level-0 px per
  model px); feature-map cell ``j`` of a block with stride ``S`` covers tile pixels ``[j S, (j + 1) S)``
  (the ``aligned=True`` convention of ROIAlign / detectron2).
* ``pool='mask'``: the nucleus contour (nucleus table, level-0 px through pixel corners) is rasterised on
  the tile's pixel grid (a pixel is inside when its centre is); every feature cell weighs by the number of
  the nucleus's pixels inside it (area-weighted mean). A nucleus too small to cover any pixel centre at
  ``mpp`` takes the cell under its centroid.
* ``pool='centroid'``: the map sampled bilinearly at the centroid (cell centres at ``(j + 0.5) S - 0.5``
  tile px; clamped at the map's border) — for a cells AnnData without contours.

Tile seams
----------
Tile origins sit on a lattice of the block's stride, so every tile sees the same feature grid. For a CNN
``margin='auto'`` is the block's receptive-field radius (measured once per architecture and block on the
architecture, not the weights: see :func:`receptive_radius`) plus the largest nucleus extent plus one stride, rounded
up to the stride: every feature cell a nucleus touches is then computed from pixels inside the tile only
(never from the zero padding), so the embeddings do not depend on ``tile_size`` (up to float32 rounding;
the tests pin ≤ 1e-5 at native resolution and at 1 µm/px read from a 0.5 µm/px slide: a tile's pixels are
resampled from its own box, and the resampler gives every pixel of the lattice the same value whichever
tile reads it; a resampler that did not would add its rounding).
A ViT attends over the whole tile, so no margin makes its tokens tile-independent: ``margin='auto'`` is two
patches there and results depend (slightly) on the tile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _keys as K
from .._anndata import get_mpp
from .._contours import _polygon_pixels, tile_offset
from .._errors import InputError
from .._logging import logger, progress_bar, timed
from .._settings import settings
from ._patches import (_Reader, _check_layers, _encoders, _prefetch, _slug, encoder_record,
                       open_slides_channels, output_keys, unique_keys)
from ._record import record_representation

__all__ = ["cells"]

_RF_CACHE: dict = {}


def receptive_radius(encoder, layer: int, *, max_size: int = 2048) -> int:
    """Receptive-field radius (model px from a cell's centre) of block ``layer`` of a CNN encoder.

    Measured on the *architecture*, not on the current weights (a trained network and its untrained twin,
    whose timm ResNet blocks start with a zero last-norm gain, get the same margin): a copy of the network
    with every weight set positive and max-pools replaced by average pools of the same window is run on a
    positive input, and the furthest input pixel with a non-zero gradient of the centre cell of the map is
    taken (the input grows until the gradient stays inside it). Cached per architecture, channels, kwargs
    and block.
    """
    import copy

    import torch
    from torch import nn

    key = (encoder.arch, encoder.in_chans, repr(sorted(encoder.model_kwargs.items())), int(layer) % encoder.n_blocks)
    if key in _RF_CACHE:
        return _RF_CACHE[key]
    S = encoder.layer_stride(layer)
    probe = copy.deepcopy(encoder).to("cpu").eval()
    for name, mod in list(probe.model.named_modules()):
        for cname, child in list(mod.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(mod, cname, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                 ceil_mode=child.ceil_mode, count_include_pad=False))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(12345)
        for p in probe.model.parameters():
            p.copy_(torch.rand_like(p) * 0.5 + 0.5)
        for b in probe.model.buffers():
            if b.is_floating_point():
                b.fill_(0.0)
        for mod in probe.model.modules():
            if hasattr(mod, "running_var") and mod.running_var is not None:
                mod.running_var.fill_(1.0)
        probe.mean.zero_()
        probe.std.fill_(1.0)
    size = int(math.ceil(max(128, 8 * S) / S) * S)
    while True:
        x = torch.full((1, encoder.in_chans, size, size), 0.5, requires_grad=True)
        fm = probe.feature_maps(x, layers=[layer])[0]
        h, w = fm.shape[-2:]
        fm[0, :, h // 2, w // 2].sum().backward()
        g = x.grad.detach().abs().sum(dim=(0, 1))
        rows = torch.nonzero(g.sum(1) > 0).flatten()
        cols = torch.nonzero(g.sum(0) > 0).flatten()
        if len(rows) == 0:
            raise InputError(f"{encoder.arch} block {layer}: no input pixel reaches the feature map "
                             "(cannot measure the receptive field); pass margin= in px.")
        touches = bool(rows.min() == 0 or cols.min() == 0 or rows.max() == size - 1 or cols.max() == size - 1)
        if not touches or size >= max_size:
            break
        size = int(math.ceil(2 * size / S) * S)
    cy, cx = (h // 2 + 0.5) * S - 0.5, (w // 2 + 0.5) * S - 0.5
    r = max(abs(float(rows.min()) - cy), abs(float(rows.max()) - cy),
            abs(float(cols.min()) - cx), abs(float(cols.max()) - cx))
    if touches:
        logger.warning("%s block %d: the receptive field reaches past %d px; margins use that size.",
                       encoder.arch, layer, size)
    out = int(math.ceil(r))
    _RF_CACHE[key] = out
    return out


def _read_nuclei_table(nuclei):
    import pandas as pd

    if isinstance(nuclei, pd.DataFrame):
        return nuclei
    try:
        df = pd.read_parquet(nuclei)
    except Exception as exc:  # noqa: BLE001 - any reading failure is the caller's input
        raise InputError(f"nuclei= must be the nucleus table (DataFrame) or its nuclei.parquet; reading "
                         f"{nuclei!r} failed: {exc}") from exc
    if K.nuclei.contour in df.columns:  # tissuegraph run writes contours flattened
        df[K.nuclei.contour] = [None if c is None else np.asarray(c, np.float64).reshape(-1, 2)
                                for c in df[K.nuclei.contour]]
    return df


def _contours_for(cells, nuclei, slide_ids) -> list[np.ndarray]:
    """The contour of every cell (row order), matched by ``nucleus_id`` (and slide when both have one)."""
    import pandas as pd

    nuc = _read_nuclei_table(nuclei)
    for c in (K.nuclei.id, K.nuclei.contour):
        if c not in nuc.columns:
            raise InputError(f"The nucleus table lacks column {c!r} (it needs nucleus_id and contour, as written "
                             "by tg.seg.nuclei / nuclei.parquet of tissuegraph run).")
    if K.obs.nucleus_id in cells.obs.columns:
        ids = cells.obs[K.obs.nucleus_id].to_numpy()
    else:
        try:
            ids = cells.obs_names.astype(np.int64).to_numpy()
        except (TypeError, ValueError) as exc:
            raise InputError("cells.obs has no 'nucleus_id' and its obs_names are not nucleus ids; cannot match "
                             "the nucleus table.") from exc
    use_slide = K.nuclei.slide in nuc.columns and len(set(slide_ids)) > 1
    left = pd.DataFrame({"id": np.asarray(ids, dtype=np.int64), "row": np.arange(cells.n_obs)})
    right = pd.DataFrame({"id": nuc[K.nuclei.id].to_numpy(dtype=np.int64), "pos": np.arange(len(nuc))})
    on = ["id"]
    if use_slide:
        left["sid"] = np.asarray(slide_ids).astype(str)
        right["sid"] = nuc[K.nuclei.slide].astype(str).to_numpy()
        on.append("sid")
    if right.duplicated(on).any():
        raise InputError("The nucleus table has duplicate nucleus ids" + (" within a slide" if use_slide else "")
                         + "; pass the table of these cells' slide(s) only.")
    m = left.merge(right, on=on, how="left").sort_values("row")
    miss = m["pos"].isna().to_numpy()
    if miss.any():
        raise InputError(f"{int(miss.sum())} cell(s) have no nucleus in the nucleus table (e.g. nucleus_id "
                         f"{left['id'].to_numpy()[miss][:5].tolist()}); pass the table the cells were made from.")
    contours = nuc[K.nuclei.contour].to_numpy()
    out = []
    for r, p in enumerate(m["pos"].to_numpy(dtype=np.int64)):
        a = np.asarray(contours[p], dtype=np.float64) if contours[p] is not None else np.zeros((0, 2))
        if a.ndim == 1 and a.size % 2 == 0:  # flattened (x0, y0, x1, y1, ...) as in nuclei.parquet
            a = a.reshape(-1, 2)
        if a.ndim != 2 or a.shape[1] != 2 or len(a) < 3 or not np.isfinite(a).all():
            raise InputError(f"The contour of cell {cells.obs_names[r]!r} is not a finite (n >= 3, 2) polygon.")
        out.append(a)
    return out


def _bilinear(F: np.ndarray, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """Sample F (h, w, C) at feature coordinates (cell centres at integers), clamped at the border."""
    h, w = F.shape[:2]
    fx = np.clip(fx, 0, w - 1)
    fy = np.clip(fy, 0, h - 1)
    x0 = np.minimum(np.floor(fx).astype(np.int64), w - 1)
    y0 = np.minimum(np.floor(fy).astype(np.int64), h - 1)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    ax, ay = (fx - x0)[:, None], (fy - y0)[:, None]
    return ((1 - ay) * ((1 - ax) * F[y0, x0] + ax * F[y0, x1]) + ay * ((1 - ax) * F[y1, x0] + ax * F[y1, x1]))


def _pool_tile(F: np.ndarray, S: int, T: int, X: float, Y: float, s: float, cx, cy, polys, pool: str):
    """Embeddings (k, C) of the k nuclei of one tile from its feature map F (h, w, C) (float64)."""
    import scipy.sparse as sp

    h, w, C = F.shape
    ux = (cx - X + 0.5) / s - 0.5  # tile px (centre convention) of the centroids
    uy = (cy - Y + 0.5) / s - 0.5
    if pool == "centroid":
        return _bilinear(F, (ux + 0.5) / S - 0.5, (uy + 0.5) / S - 0.5), 0
    k = len(polys)
    off = np.asarray(tile_offset((X, Y), s))
    flat, vals = _polygon_pixels(polys, np.arange(k, dtype=np.int64), T, T, off, s)
    r, c = np.divmod(flat, T)
    cell = np.minimum(r // S, h - 1) * w + np.minimum(c // S, w - 1)
    A = sp.csr_matrix((np.ones(len(flat)), (vals, cell)), shape=(k, h * w))
    cnt = np.asarray(A.sum(axis=1)).ravel()
    Z = A @ F.reshape(h * w, C)
    small = cnt == 0
    if small.any():  # covers no pixel centre: the cell under the centroid
        jx = np.clip(np.floor((ux[small] + 0.5) / S).astype(np.int64), 0, w - 1)
        jy = np.clip(np.floor((uy[small] + 0.5) / S).astype(np.int64), 0, h - 1)
        Z[small] = F[jy, jx]
        cnt[small] = 1.0
    return Z / cnt[:, None], int(small.sum())


def cells(cells, slide: Any = None, *, nuclei: Any = None, model: Any = "resnet18", weights: Any = None,
          seed: int = 0, seeds: Sequence[int] | None = None, mpp: float | None = 0.5,
          layer: int | Sequence[int] = 2, tile_size: int = 512, margin: int | str = "auto",
          pool: str = "auto", key_added: str | Sequence[str] | None = None, batch_size: int = 4,
          device: str | None = None, num_workers: int = 1, channels: Sequence[int] | None = None,
          value_range: Sequence[float] | None = None, mean: Sequence[float] | None = None,
          std: Sequence[float] | None = None, model_kwargs: dict | None = None, slide_mpp: float | None = None,
          progress: bool | None = None, copy: bool = False):
    """Per-nucleus embeddings pooled from each tile's feature map: ``cells.obsm['X_<name>']``.

    Each tile of ``tile_size`` px at ``mpp`` (plus ``margin`` on every side) goes through the network once;
    a nucleus's embedding is the mean of the block-``layer`` feature cells under its mask (see the module
    docs for the geometry, the small-nucleus rule and tile seams). Never one crop per nucleus.

    Parameters
    ----------
    cells
        Cells AnnData (``tg.feat.nuclei_features``): centroids in ``obsm['spatial']`` (level-0 px), the slide
        id in ``obs['slide']`` and ``nucleus_id`` in ``obs``.
    slide
        The slide (path, :class:`~tissuegraph.io.Slide` or array) or ``{slide_id: slide}``.
    nuclei
        The nucleus table with contours (``tg.seg.nuclei`` / the ``nuclei.parquet`` of ``tissuegraph run``,
        DataFrame or path), matched to the cells by ``nucleus_id``; needed for ``pool='mask'``.
    model, weights, seed, seeds
        As in :func:`tissuegraph.emb.patches`: a timm name (CNNs; ViTs give their patch-token grid) or a
        :class:`~tissuegraph.models.patch.PatchEncoder`, random weights from ``seed`` (untrained twin),
        a local weights file, or several twins in one pass (``seeds=``).
    mpp
        µm/px the tiles are read at (``None``: native pixels).
    layer
        Block(s) whose feature map is pooled (ResNets: 0 = stem (stride 2), 1-4 = stages (stride 4-32);
        ViTs: transformer blocks). ``2`` (ResNet stride 8: about 4 µm cells at 0.5 µm/px) by default.
    tile_size
        Core edge in px at ``mpp`` (rounded down to a multiple of the block's stride); results do not
        depend on it (CNNs, ``margin='auto'``). ViTs: the tile edge the network sees (core + margins) is
        ``tile_size``, or the ``img_size`` of a given :class:`~tissuegraph.models.patch.PatchEncoder`.
    margin
        Context px read on every side of a core: ``'auto'`` (CNNs: receptive-field radius + largest
        nucleus + one stride; ViTs: two patches) or an int (rounded up to the stride).
    pool
        ``'mask'`` (area-weighted mean over the nucleus mask; needs ``nuclei``), ``'centroid'`` (bilinear
        sample at the centroid) or ``'auto'`` (``'mask'`` when ``nuclei`` is given).
    key_added
        obsm key (default ``X_<family>_<arch>_l<layer>_<pool>_untrained_s<seed>`` / ``..._<objective>``),
        a prefix for several outputs, or one name per (encoder, layer).
    batch_size, device, num_workers
        Tiles per forward pass, torch device (default ``tg.settings.device``), reader threads.
    channels, value_range, mean, std, model_kwargs, slide_mpp
        As in :func:`tissuegraph.emb.patches` (``slide_mpp`` defaults to ``cells.uns['spatial']``).
    progress, copy
        Progress bar (tiles); return a copy instead of writing into ``cells``.

    Returns
    -------
    ``None`` (or the copy): ``cells.obsm[key]`` float32 ``(n_cells, d)`` and the provenance record in
    ``cells.uns['representations'][key]`` (same contract as the sample-level representations; ``params``
    adds pool, stride, margin, tile size, tiles read and the number of nuclei that took their centroid cell).
    An empty cells AnnData gets ``(0, d)`` arrays.
    """
    cells = cells.copy() if copy else cells
    if pool not in ("auto", "mask", "centroid"):
        raise InputError(f"pool must be 'mask', 'centroid' or 'auto', got {pool!r}.")
    if pool == "auto":
        pool = "mask" if nuclei is not None else "centroid"
    if pool == "mask" and nuclei is None:
        raise InputError("pool='mask' needs the nucleus contours: pass nuclei=<the nucleus table of tg.seg.nuclei "
                         "or the nuclei.parquet of tissuegraph run>, or use pool='centroid'.")
    tile_size = int(tile_size)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise InputError(f"batch_size must be positive, got {batch_size}.")
    if mpp is not None and not (float(mpp) > 0):
        raise InputError(f"mpp must be positive (µm/px) or None, got {mpp}.")
    if not (isinstance(margin, str) and margin == "auto") and (
            isinstance(margin, (bool, str)) or not isinstance(margin, (int, np.integer)) or margin < 0):
        raise InputError(f"margin must be 'auto' or a non-negative int (px), got {margin!r}.")
    layers = _check_layers(layer)
    if any(v == -1 for v in layers):
        raise InputError("layer=-1 is a pooled embedding without a feature map; choose a block >= 0 "
                         "(ResNets: 1-4 = stages).")
    device = settings.device if device is None else str(device)
    n = cells.n_obs
    if K.obsm.spatial not in cells.obsm:
        raise InputError(f"cells.obsm['{K.obsm.spatial}'] (nucleus centroids, level-0 px) is missing; make the "
                         "cells AnnData with tg.feat.nuclei_features.")
    xy = np.asarray(cells.obsm[K.obsm.spatial], dtype=np.float64)
    if xy.shape != (n, 2) or not np.isfinite(xy).all():
        raise InputError(f"cells.obsm['{K.obsm.spatial}'] must be finite (n_cells, 2) centroids, got shape "
                         f"{xy.shape}" + ("" if xy.shape != (n, 2) else " with NaN/inf") + ".")
    if slide_mpp is None and n and K.uns.spatial in cells.uns:
        sids0 = sorted(set(cells.obs[K.obs.slide].astype(str))) if K.obs.slide in cells.obs.columns else []
        if len(sids0) == 1:
            slide_mpp = get_mpp(cells, sids0[0], required=False)
    slides, ids, channels, in_chans = open_slides_channels(cells, slide, slide_mpp=slide_mpp, channels=channels)

    # ViT: the network's input is the whole tile (core + 2 margins) = tile_size
    encoders = _encoders(model, weights=weights, seed=seed, seeds=seeds, in_chans=in_chans, size=tile_size,
                         mean=mean, std=std, model_kwargs=model_kwargs)
    family = encoders[0].family
    for e in encoders:
        for v in layers:
            e._check_layer(v)
            if e.family != family:
                raise InputError("All encoders of one call must be CNNs or all ViTs.")
    S = max(e.layer_stride(v) for e in encoders for v in layers)
    strides = {v: encoders[0].layer_stride(v) for v in layers}
    if any(S % st for st in strides.values()):
        raise InputError(f"The blocks {layers} have strides {strides} that do not divide each other; embed them "
                         "in separate calls.")

    contours = _contours_for(cells, nuclei, ids) if (pool == "mask" and n) else None
    scales = {}
    for sid, sl in slides.items():
        scales[sid] = 1.0 if mpp is None else float(mpp) / sl.require_mpp(f"reading cells at {mpp} µm/px "
                                                                             "(pass slide_mpp= if the slide lacks it)")
    # largest nucleus extent from its centroid, model px
    ext = 0.0
    if contours is not None:
        for r, a in enumerate(contours):
            s_r = scales[ids[r]]
            ext = max(ext, float(np.abs(a - xy[r]).max()) / s_r + 1.0)
    if family == "vit":
        T = int(encoders[0].img_size or tile_size)
        M = 2 * S if margin == "auto" else int(math.ceil(int(margin) / S) * S)
        C = T - 2 * M
        if C < S or T % S:
            raise InputError(f"tile_size={T} px with margin={M} px leaves no core for a ViT with {S}-px patches; "
                             "use a larger tile_size (a multiple of the patch size) or a smaller margin.")
    else:
        if margin == "auto":
            rf = max(receptive_radius(e, v) for e in encoders[:1] for v in layers)
            M = int(math.ceil((rf + ext + S) / S) * S)
        else:
            M = int(math.ceil(int(margin) / S) * S)
            rf = None
        C = max(S, (tile_size // S) * S)
        T = C + 2 * M
    outputs = [(e, v) for e in encoders for v in layers]
    keys = _cell_keys(encoders, layers, key_added, pool)
    Zs = [np.full((n, e.layer_width(v)), np.nan, dtype=np.float32) for e, v in outputs]

    # plan: each nucleus to the core holding its centroid; only cores with nuclei are read
    items, groups = [], []
    for sid in sorted(slides):
        rows = np.flatnonzero(ids == sid)
        if not len(rows):
            continue
        sl, s = slides[sid], scales[sid]
        Wd, Hd = sl.dimensions
        out = (xy[rows, 0] < -0.5) | (xy[rows, 0] >= Wd - 0.5) | (xy[rows, 1] < -0.5) | (xy[rows, 1] >= Hd - 0.5)
        if out.any():
            bad = rows[out][:5]
            raise InputError(f"{int(out.sum())} nucleus centroid(s) lie outside slide {sid!r} ({Wd} x {Hd} px), "
                             f"e.g. {list(cells.obs_names[bad])} at {xy[bad].tolist()}; pass the slide the cells "
                             "were segmented on.")
        core = C * s
        gx = np.floor((xy[rows, 0] + 0.5) / core).astype(np.int64)
        gy = np.floor((xy[rows, 1] + 0.5) / core).astype(np.int64)
        order = np.lexsort((gx, gy))
        key = np.stack([gy[order], gx[order]], 1)
        brk = np.flatnonzero(np.any(key[1:] != key[:-1], axis=1)) + 1
        for part in np.split(order, brk):
            X, Y = gx[part[0]] * core - M * s, gy[part[0]] * core - M * s
            items.append((len(items), sid, float(X), float(Y), s))
            groups.append(rows[part])
    reader = _Reader(slides, size=T, channels=channels, value_range=value_range)
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    desc = f"cells {encoders[0].arch}" + (f" x{len(encoders)}" if len(encoders) > 1 else "")
    n_small = 0
    if n:
        import torch

        for e in encoders:
            e.to(device).eval()
        res = "native" if mpp is None else f"{float(mpp):g} µm/px"
        with timed(f"{desc}: {n} nuclei in {len(items)} tiles of {T} px at {res}"), torch.inference_mode(), \
                progress_bar(total=len(items), desc=desc, enabled=progress, unit="tile") as bar:
            for batch, x in _prefetch(reader, batches, int(num_workers)):
                x = x.to(device, non_blocking=True)
                maps = [fm for e in encoders for fm in e.feature_maps(x, layers=layers)]
                for o, fm in enumerate(maps):
                    F = fm.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
                    St = outputs[o][0].layer_stride(outputs[o][1])
                    for b, (ti, sid, X, Y, s) in enumerate(batch):
                        rows = groups[ti]
                        polys = None if contours is None else [contours[r] for r in rows]
                        Z, small = _pool_tile(F[b], St, T, X, Y, s, xy[rows, 0], xy[rows, 1], polys, pool)
                        Zs[o][rows] = Z
                        if o == 0:
                            n_small += small
                bar.update(len(batch))
        if n_small:
            logger.info("%d nucleus mask(s) cover no pixel centre at %s; they take the feature cell under their "
                        "centroid.", n_small, res)
    else:
        logger.warning("cells is empty: writing (0, d) embeddings.")
    kind = "rgb" if in_chans == 3 else f"{in_chans}ch"
    inputs = f"{kind}@{'native' if mpp is None else f'{float(mpp):g}um/px'},nucleus-{pool}"
    for (e, v), key, Z in zip(outputs, keys, Zs):
        rec = encoder_record(e, v, inputs=inputs, params={
            "level": "cells", "pool": pool, "mpp": mpp, "stride": e.layer_stride(v), "tile_size": C,
            "margin": M, "tile_input": T, "receptive_radius": None if family == "vit" else rf,
            "n_tiles": len(items), "n_centroid_cell": int(n_small), "batch_size": batch_size,
            "channels": channels, "value_range": value_range, "device": device,
            "geometry": "cell j covers tile px [jS, (j+1)S); mask: area-weighted over pixel centres"})
        record_representation(cells, key, Z, rec)
        logger.info("%s: %s (%d x %d)", desc, key, *Z.shape)
    return cells if copy else None


def _cell_keys(encoders, layers, key_added, pool) -> list[str]:
    """Default names say the layer and the pooling; a prefix or a list of names works as for tg.emb.patches."""
    if key_added is not None:
        return output_keys(encoders, layers, key_added)
    keys = []
    for e in encoders:
        a = _slug(e.arch)
        if a.startswith(e.family + "_"):
            a = a[len(e.family) + 1:]
        tail = f"untrained_s{e.seed}" if e.objective is None else _slug(e.objective)
        keys += [f"X_{e.family}_{a}_l{v}_{pool}_{tail}" for v in layers]
    return unique_keys(keys)
