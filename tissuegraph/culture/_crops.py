"""Single-cell crops -> multichannel CNN / ViT encoders (``tg.models.PatchEncoder``) -> well embeddings.

* :func:`cell_crops`: a fixed ``size`` x ``size`` box around each cell's nucleus centroid, every channel (or
  ``channels=``), scaled per channel to [0, 1] (``normalize='plate'``: the 0.1 / 99.9 percentiles of each
  plate's pixels; ``'site'``: of each site's; ``'none'``: the dtype's range); pixels outside the field are 0.
* :func:`embed_cells`: the crops of every cell through one or several encoders (a timm architecture with random
  weights from ``seed`` or one per ``seeds=``: the untrained twins; or a trained
  :class:`~tissuegraph.models.patch.PatchEncoder`, with its twins in the same pass), batched, pooled per well
  (mean or median over the well's cells) into ``wells.obsm['X_cnn_<arch>_untrained_s<seed>']`` /
  ``['X_cnn_<arch>_<objective>']`` with the provenance record of the tissue side (``tg.emb.patches``: the
  same key naming, record and pooled-embedding loop), so that ``tg.eval.evaluate`` computes the gaps to the
  hand-crafted profile and to the untrained twins.
* :func:`train_cell_encoder`: SimCLR (``tg.models.train_patch_simclr``, the tissue side's training) on the
  crops, with augmentations for fluorescence: per-channel intensity scale and shift (not H&E stain jitter),
  flips and 90° rotations, a small scale jitter (crops of 70-100 % of the area), mild blur.

Images are read twice (a first pass for the per-channel scaling, a second for the crops); crops are made one
site at a time and streamed in batches, so memory does not grow with the plate (``pool='median'`` keeps one
embedding per cell until the wells are pooled).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _keys as K
from .._errors import InputError
from .._logging import logger, progress, timed
from .._settings import settings
from ._cells import NUCLEUS_XY, _channel_index

__all__ = ["cell_crops", "embed_cells", "train_cell_encoder"]

C = K.culture
NORMALIZE = ("plate", "site", "none")
POOLS = ("mean", "median")
_MAX_SAMPLE_PX = 20000  # pixels per site used for the percentiles and the channel statistics


# ----------------------------------------------------------------------------------------------- inputs
def _channels(plate, channels) -> list[int]:
    names = list(plate.channels)
    if channels is None:
        return list(range(len(names)))
    chans = [channels] if isinstance(channels, (str, int, np.integer)) else list(channels)
    if not chans:
        raise InputError("channels is empty; pass channel names or indices, or None for all.")
    idx = [_channel_index(names, c, "crop") for c in chans]
    if len(set(idx)) != len(idx):
        raise InputError(f"channels repeats a channel: {chans}.")
    return idx


def _cell_table(cells, plate):
    """(site index, x, y) of every cell, from cells.obs['site_index'] and the nucleus centroids."""
    if cells is None or not hasattr(cells, "obs"):
        raise InputError("cells must be the cells AnnData of tg.culture.single_cells(plate).")
    if cells.n_obs == 0:
        raise InputError("cells has no rows: no cell to crop.")
    if "site_index" not in cells.obs.columns:
        raise InputError("cells.obs has no 'site_index' column (the plate site of each cell); make cells with "
                         "tg.culture.single_cells(plate).")
    if NUCLEUS_XY in cells.obsm:
        xy = np.asarray(cells.obsm[NUCLEUS_XY], dtype=np.float64)
    elif K.obsm.spatial in cells.obsm:
        logger.info("cells.obsm has no %r; crops are centred on the cell centroids (obsm['spatial']).", NUCLEUS_XY)
        xy = np.asarray(cells.obsm[K.obsm.spatial], dtype=np.float64)
    else:
        raise InputError(f"cells.obsm has neither {NUCLEUS_XY!r} nor 'spatial': no cell positions to crop around.")
    if xy.ndim != 2 or xy.shape != (cells.n_obs, 2) or not np.isfinite(xy).all():
        raise InputError(f"cell positions must be a finite (n_cells, 2) array, got shape {xy.shape}.")
    site = cells.obs["site_index"].to_numpy()
    try:
        site = site.astype(np.int64)
    except (TypeError, ValueError):
        raise InputError("cells.obs['site_index'] must hold integer site indices.") from None
    if site.min() < 0 or site.max() >= len(plate):
        raise InputError(f"cells.obs['site_index'] runs {site.min()}..{site.max()}, but the plate has {len(plate)} "
                         "sites; pass the plate the cells were made from.")
    return site, xy


def _check_options(size, normalize, percentiles, pool, batch_size):
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise InputError(f"size must be an int of at least 8 px, got {size!r}.")
    if normalize not in NORMALIZE:
        raise InputError(f"normalize must be one of {NORMALIZE}, got {normalize!r}.")
    try:
        lo, hi = (float(v) for v in percentiles)
    except (TypeError, ValueError):
        raise InputError(f"percentiles must be two numbers (low, high), got {percentiles!r}.") from None
    if not 0.0 <= lo < hi <= 100.0:
        raise InputError(f"percentiles must be (low, high) with 0 <= low < high <= 100, got {percentiles}.")
    if pool not in POOLS:
        raise InputError(f"pool must be one of {POOLS}, got {pool!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}.")
    return int(size), (lo, hi)


def _read(plate, i: int, chans: list[int]) -> np.ndarray:
    img = np.asarray(plate.read(int(i)))
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise InputError(f"site {i}: expected an (H, W, C) image, got shape {img.shape}.")
    if img.shape[-1] != len(plate.channels):
        raise InputError(f"site {i} has {img.shape[-1]} channels, the plate names {len(plate.channels)}.")
    return img[..., chans]


def _pixels(img: np.ndarray) -> np.ndarray:
    """A regular subsample of at most ~_MAX_SAMPLE_PX pixels, (n, C) float64."""
    step = max(1, int(np.ceil(np.sqrt(img.shape[0] * img.shape[1] / _MAX_SAMPLE_PX))))
    return img[::step, ::step].reshape(-1, img.shape[-1]).astype(np.float64)


class _Scaling:
    """Per-site (low, high) of every channel, and the channel mean / std of the scaled pixels."""

    def __init__(self, plate, sites: Sequence[int], chans: list[int], *, normalize: str, percentiles,
                 show: bool | None):
        self.normalize, self.percentiles = normalize, percentiles
        self.lo: dict[int, np.ndarray] = {}
        self.hi: dict[int, np.ndarray] = {}
        samples: dict[int, np.ndarray] = {}
        plates = plate.sites[C.plate].astype(str).to_numpy() if C.plate in plate.sites.columns else None
        for i in progress(list(sites), desc="crop scaling", unit="site", enabled=show):
            img = _read(plate, i, chans)
            if not np.isfinite(img).all():
                raise InputError(f"site {i} holds NaN or infinite pixels.")
            samples[i] = _pixels(img)
            if normalize == "none":
                hi = float(np.iinfo(img.dtype).max) if np.issubdtype(img.dtype, np.integer) else 1.0
                self.lo[i], self.hi[i] = np.zeros(len(chans)), np.full(len(chans), hi)
            elif normalize == "site":
                self.lo[i], self.hi[i] = self._range(samples[i])
        if normalize == "plate":
            groups: dict[str, list[int]] = {}
            for i in sites:
                groups.setdefault(plates[i] if plates is not None else "", []).append(i)
            for ix in groups.values():
                lo, hi = self._range(np.concatenate([samples[i] for i in ix]))
                for i in ix:
                    self.lo[i], self.hi[i] = lo, hi
        scaled = np.concatenate([self(samples[i], i) for i in sites])
        self.mean = scaled.mean(axis=0)
        self.std = np.maximum(scaled.std(axis=0), 1e-3)

    def _range(self, px: np.ndarray):
        lo, hi = np.percentile(px, self.percentiles, axis=0)
        return lo, np.where(hi > lo, hi, lo + 1.0)

    def __call__(self, img: np.ndarray, i: int) -> np.ndarray:
        lo, hi = self.lo[i], self.hi[i]
        return np.clip((img - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)

    def record(self) -> dict:
        return {"normalize": self.normalize, "percentiles": list(self.percentiles),
                "channel_mean": [round(float(v), 6) for v in self.mean],
                "channel_std": [round(float(v), 6) for v in self.std]}


def _site_crops(scaled: np.ndarray, xy: np.ndarray, size: int) -> np.ndarray:
    """(n, C, size, size) crops of one scaled (H, W, C) field around the points ``xy`` (x, y); zero outside."""
    from numpy.lib.stride_tricks import sliding_window_view

    half = size // 2
    pad = size
    padded = np.pad(scaled, ((pad, pad), (pad, pad), (0, 0)))
    x0 = np.floor(xy[:, 0]).astype(np.int64) - half + pad
    y0 = np.floor(xy[:, 1]).astype(np.int64) - half + pad
    H, W = padded.shape[:2]
    x0 = np.clip(x0, 0, W - size)
    y0 = np.clip(y0, 0, H - size)
    win = sliding_window_view(padded, (size, size), axis=(0, 1))  # (H', W', C, size, size), no copy
    return np.ascontiguousarray(win[y0, x0])


def _stream(plate, site: np.ndarray, xy: np.ndarray, order: np.ndarray, chans, scaling: _Scaling, size: int,
            batch_size: int):
    """Yield (positions in ``order``, (B, C, size, size) float32 array), batches across sites, in ``order``."""
    buf_idx: list[np.ndarray] = []
    buf: list[np.ndarray] = []
    filled = 0
    bounds = np.flatnonzero(np.diff(site[order])) + 1
    for chunk in np.split(np.arange(len(order)), bounds):
        if len(chunk) == 0:
            continue
        i = int(site[order[chunk[0]]])
        crops = _site_crops(scaling(_read(plate, i, chans), i), xy[order[chunk]], size)
        start = 0
        while start < len(chunk):
            take = min(batch_size - filled, len(chunk) - start)
            buf_idx.append(chunk[start:start + take])
            buf.append(crops[start:start + take])
            filled += take
            start += take
            if filled == batch_size:
                yield np.concatenate(buf_idx), np.concatenate(buf)
                buf_idx, buf, filled = [], [], 0
    if filled:
        yield np.concatenate(buf_idx), np.concatenate(buf)


def _prepare(cells, plate, *, channels, size, normalize, percentiles, pool="mean", batch_size=1, progress_=None):
    size, percentiles = _check_options(size, normalize, percentiles, pool, batch_size)
    chans = _channels(plate, channels)
    site, xy = _cell_table(cells, plate)
    order = np.argsort(site, kind="stable")
    with timed(f"crop scaling ({normalize})"):
        scaling = _Scaling(plate, sorted(set(site.tolist())), chans, normalize=normalize, percentiles=percentiles,
                           show=progress_)
    return size, chans, site, xy, order, scaling


def _inputs_name(plate, chans, size, normalize, pool=None) -> str:
    names = "+".join(str(plate.channels[c]) for c in chans)
    return f"cell crops {names},{size}px,{normalize}-scaled" + (f",{pool} per well" if pool else "")


# ----------------------------------------------------------------------------------------------- public
def cell_crops(cells, plate: Any, *, size: int = 32, channels: Sequence[str | int] | None = None,
               normalize: str = "plate", percentiles: Sequence[float] = (0.1, 99.9), rows: Any = None,
               progress: bool | None = None) -> np.ndarray:
    """The crop of every cell: ``(n, C, size, size)`` float32 in [0, 1].

    Parameters
    ----------
    cells
        The cells AnnData of :func:`~tissuegraph.culture.single_cells` (``obs['site_index']``, the nucleus
        centroids in ``obsm['spatial_nucleus']``; ``obsm['spatial']`` is used when those are missing).
    plate
        The :class:`~tissuegraph.culture.PlateImages` or synthetic plate the cells come from.
    size
        Edge of the box around each nucleus centroid, px (native resolution).
    channels
        Channel names or indices (default all, in the plate's order).
    normalize, percentiles
        Per-channel scaling to [0, 1]: ``'plate'`` (the ``percentiles`` of each plate's pixels), ``'site'``
        (of each site's), ``'none'`` (``[0, dtype max]``; ``[0, 1]`` for float images); values are clipped.
    rows
        Indices of the cells to crop (default all), e.g. a random subset for training.
    """
    size, chans, site, xy, _, scaling = _prepare(cells, plate, channels=channels, size=size, normalize=normalize,
                                                 percentiles=percentiles, progress_=progress)
    sel = np.arange(cells.n_obs) if rows is None else np.asarray(rows, dtype=np.int64).ravel()
    if sel.size and (sel.min() < 0 or sel.max() >= cells.n_obs):
        raise InputError(f"rows must index the {cells.n_obs} cells.")
    perm = np.argsort(site[sel], kind="stable")  # one read per site
    out = np.empty((len(sel), len(chans), size, size), dtype=np.float32)
    for pos, x in _stream(plate, site, xy, sel[perm], chans, scaling, size, 1024):
        out[perm[pos]] = x  # back to the caller's order
    return out


def embed_cells(wells, plate: Any, *, cells, model: Any = "resnet18", weights: Any = None, seed: int = 0,
                seeds: Sequence[int] | None = None, size: int = 32, channels: Sequence[str | int] | None = None,
                normalize: str = "plate", percentiles: Sequence[float] = (0.1, 99.9), pool: str = "mean",
                layer: int | Sequence[int] = -1, key_added: str | Sequence[str] | None = None,
                by: Sequence[str] = (C.plate, C.well), batch_size: int = 256, device: str | None = None,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                model_kwargs: dict | None = None, progress: bool | None = None, copy: bool = False):
    """Embed every cell's crop with a multichannel encoder and pool per well into ``wells.obsm``.

    Parameters
    ----------
    wells
        Wells AnnData (e.g. :func:`~tissuegraph.culture.aggregate` of ``cells``): its ``by`` columns name the
        wells; the cells of a well are those with the same ``by`` values in ``cells.obs``.
    plate
        The plate the cells come from (images are read through ``plate.read(site)``).
    cells
        The cells AnnData of :func:`~tissuegraph.culture.single_cells`.
    model, weights, seed, seeds
        As :func:`tissuegraph.emb.patches`: a timm architecture name (random weights from ``seed``; one untrained
        twin per ``seeds=`` entry) or a :class:`~tissuegraph.models.patch.PatchEncoder` (e.g. from
        :func:`train_cell_encoder`; with ``seeds=``, its twins are embedded in the same pass). The encoder's
        ``in_chans`` must equal the number of channels.
    size, channels, normalize, percentiles
        The crops (see :func:`cell_crops`).
    pool
        ``'mean'`` or ``'median'`` of the cell embeddings of each well (median keys end in ``_median``).
    layer, key_added
        As :func:`tissuegraph.emb.patches` (default keys ``X_cnn_<arch>_untrained_s<seed>``,
        ``X_cnn_<arch>_<objective>``, ``X_vit_...``).
    batch_size, device
        Crops per forward pass (across sites); torch device (default ``tg.settings.device``).
    mean, std
        Input normalisation of the encoder built from a name (default: the per-channel mean and std of the
        scaled pixels of this plate, recorded in ``params``).

    Returns
    -------
    ``None`` (or the copy): ``wells.obsm[key]`` float32 ``(n_wells, d)`` (NaN rows for wells without cells,
    with a warning) and ``wells.uns['representations'][key]`` (family ``'cnn'``/``'vit'``, trained, learned,
    objective, architecture, inputs, layer, seed, twin_group, weights_sha256, params).
    """
    from ..emb._patches import _check_layers, _encoders, encoder_record, output_keys, pooled_embeddings
    from ..emb._record import record_representation

    wells = wells.copy() if copy else wells
    if wells.n_obs == 0:
        raise InputError("wells is empty.")
    by = [by] if isinstance(by, str) else list(by)
    for name, ad_ in (("wells", wells), ("cells", cells)):
        missing = [c for c in by if c not in ad_.obs.columns]
        if missing:
            raise InputError(f"{name}.obs has no column(s) {missing} (by= names the well of each cell).")
    size, chans, site, xy, order, scaling = _prepare(cells, plate, channels=channels, size=size,
                                                     normalize=normalize, percentiles=percentiles, pool=pool,
                                                     batch_size=batch_size, progress_=progress)
    in_chans = len(chans)
    from ..models.patch import PatchEncoder

    if isinstance(model, PatchEncoder) and model.in_chans != in_chans:
        raise InputError(f"The encoder takes in_chans={model.in_chans} channel(s), the crops have {in_chans} "
                         f"({[plate.channels[c] for c in chans]}); pass channels= with {model.in_chans} channel(s) "
                         "or an encoder built for these channels.")
    layers = _check_layers(layer)
    encoders = _encoders(model, weights=weights, seed=seed, seeds=seeds, in_chans=in_chans, size=size,
                         mean=list(scaling.mean) if mean is None else mean,
                         std=list(scaling.std) if std is None else std, model_kwargs=model_kwargs)
    for e in encoders:
        for v in layers:
            e._check_layer(v)
    keys = output_keys(encoders, layers, key_added)
    if pool == "median" and key_added is None:
        keys = [k + "_median" for k in keys]
    device = settings.device if device is None else str(device)

    # well of every cell
    wkey = wells.obs[by].astype(str).agg("\x1f".join, axis=1).to_numpy()
    ckey = cells.obs[by].astype(str).agg("\x1f".join, axis=1).to_numpy()
    if len(set(wkey)) != len(wkey):
        raise InputError(f"wells has repeated {by} values; one row per well is needed.")
    pos = {k: i for i, k in enumerate(wkey)}
    well_of = np.array([pos.get(k, -1) for k in ckey], dtype=np.int64)
    if (well_of < 0).any():
        logger.warning("%d cell(s) belong to no row of wells (by=%s) and are left out.", int((well_of < 0).sum()),
                       by)
    order = order[well_of[order] >= 0]
    if len(order) == 0:
        raise InputError(f"no cell matches a well (by={by}); check that wells and cells come from the same plate.")
    n_out = wells.n_obs if pool == "mean" else len(order)
    target = well_of[order] if pool == "mean" else np.arange(len(order))

    import torch

    def stream():
        for p, x in _stream(plate, site, xy, order, chans, scaling, size, int(batch_size)):
            yield target[p], np.ones(len(p)), torch.from_numpy(x)

    desc = f"cell crops {encoders[0].arch}" + (f" x{len(encoders)}" if len(encoders) > 1 else "")
    with timed(f"{desc}: {len(order)} cells, {wells.n_obs} wells, {size} px crops"):
        sums, wsum = pooled_embeddings(encoders, layers, stream(), n=n_out, device=device, total=len(order),
                                       desc=desc, progress=progress, unit="cell")
    n_cells = np.bincount(well_of[order], minlength=wells.n_obs)
    empty = n_cells == 0
    if empty.any():
        logger.warning("%d well(s) have no cells; their rows are NaN: %s", int(empty.sum()),
                       list(wells.obs_names[empty][:5]))
    inputs = _inputs_name(plate, chans, size, normalize, pool)
    outputs = [(e, v) for e in encoders for v in layers]
    for (e, v), key, s in zip(outputs, keys, sums):
        if pool == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                Z = s / wsum[:, None]
        else:
            Z = np.full((wells.n_obs, s.shape[1]), np.nan)
            w = well_of[order]
            srt = np.argsort(w, kind="stable")
            cuts = np.flatnonzero(np.diff(w[srt])) + 1
            for grp in np.split(srt, cuts):
                Z[w[grp[0]]] = np.median(s[grp], axis=0)
        Z = Z.astype(np.float32)
        Z[empty] = np.nan
        rec = encoder_record(e, v, inputs=inputs, params={
            "size": size, "channels": [str(plate.channels[c]) for c in chans], "crop_centre": "nucleus centroid",
            "scaling": scaling.record(), "pool": pool, "by": by, "batch_size": int(batch_size),
            "n_cells": int(len(order)), "device": device})
        record_representation(wells, key, Z, rec)
        logger.info("%s: %s (%d x %d)", desc, key, *Z.shape)
    return wells if copy else None


def train_cell_encoder(cells, plate: Any, *, model: Any = "resnet18", objective: str = "simclr", size: int = 32,
                       channels: Sequence[str | int] | None = None, normalize: str = "plate",
                       percentiles: Sequence[float] = (0.1, 99.9), max_crops: int | None = 4096, seed: int = 0,
                       epochs: int = 10, batch_size: int = 128, crop_scale: Sequence[float] = (0.7, 1.0),
                       intensity_jitter: float = 0.1, blur_p: float = 0.2, mean: Sequence[float] | None = None,
                       std: Sequence[float] | None = None, device: str | None = None, progress: bool | None = None,
                       **train_kwargs):
    """Train a crop encoder self-supervised (SimCLR) on the plate's single-cell crops.

    The tissue side's training (:func:`tissuegraph.models.train_patch_simclr`) with augmentations for
    fluorescence: per-channel intensity scale ``U(1 - 2j, 1 + 2j)`` and shift ``U(-j, j)`` (``j =
    intensity_jitter``; never H&E stain jitter, also for 3 channels), random flips and 90° rotations, a small
    scale jitter (a random crop of ``crop_scale`` of the area, resized back to ``size``) and Gaussian blur with
    probability ``blur_p``. Embed the result with ``embed_cells(wells, plate, cells=cells, model=encoder)``
    (and its untrained twins with ``seeds=``).

    Parameters
    ----------
    cells, plate
        As :func:`embed_cells`.
    model
        Architecture name (random init from ``seed``, input normalised with the plate's channel statistics) or
        a :class:`~tissuegraph.models.patch.PatchEncoder` to continue from.
    objective
        ``'simclr'`` (the only self-supervised objective for crops).
    size, channels, normalize, percentiles
        The crops (see :func:`cell_crops`); embed with the same values.
    max_crops
        At most this many cells (drawn with ``seed``).
    epochs, batch_size, train_kwargs
        Of :func:`tissuegraph.models.train_patch_simclr` (``lr``, ``temperature``, ``proj_dim``, ...).

    Returns
    -------
    ``(encoder, card)``: the trained encoder (``objective='simclr'``) and its JSON-ready card (architecture,
    seed, data hash, loss log, crop settings).
    """
    import torch

    from ..models import _patch_train as T
    from ..models.patch import PatchEncoder

    if objective != "simclr":
        raise InputError(f"objective must be 'simclr' for cell crops, got {objective!r}.")
    if cells is None or not hasattr(cells, "n_obs"):
        raise InputError("cells must be the cells AnnData of tg.culture.single_cells(plate).")
    rng = np.random.default_rng(seed)
    rows = np.arange(cells.n_obs)
    if max_crops is not None and cells.n_obs > int(max_crops):
        rows = np.sort(rng.choice(cells.n_obs, size=int(max_crops), replace=False))
    size, chans, site, xy, order, scaling = _prepare(cells, plate, channels=channels, size=size,
                                                     normalize=normalize, percentiles=percentiles, progress_=progress)
    if isinstance(model, PatchEncoder):
        if model.in_chans != len(chans):
            raise InputError(f"The encoder takes in_chans={model.in_chans} channel(s), the crops have {len(chans)}; "
                             "pass channels= to match.")
        enc = model
    elif isinstance(model, str):
        enc = PatchEncoder(model, in_chans=len(chans), img_size=size, seed=int(seed),
                           mean=list(scaling.mean) if mean is None else mean,
                           std=list(scaling.std) if std is None else std)
    else:
        raise InputError(f"model must be a timm architecture name or a PatchEncoder, got {type(model).__name__}.")
    sub = rows[np.argsort(site[rows], kind="stable")]
    x = np.empty((len(sub), len(chans), size, size), dtype=np.float32)
    with timed(f"reading {len(sub)} training crops of {size} px"):
        for p, b in _stream(plate, site, xy, sub, chans, scaling, size, 1024):
            x[p] = b
    enc, card = T.train_patch_simclr(torch.from_numpy(x), model=enc, size=size, epochs=epochs, batch_size=batch_size,
                                     crop_scale=tuple(crop_scale), stain_jitter=intensity_jitter, blur_p=blur_p,
                                     color="channel", seed=int(seed), device=device, progress=progress,
                                     **train_kwargs)
    card["data"] = {"kind": "cell crops", "inputs": _inputs_name(plate, chans, size, normalize),
                    "n_crops": int(len(sub)), "scaling": scaling.record(), "crop_centre": "nucleus centroid"}
    enc.card = card
    return enc, card
