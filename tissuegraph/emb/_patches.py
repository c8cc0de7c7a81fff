"""Patch-encoder (CNN / ViT) embeddings of every sample, read from the slide at a chosen µm/px.

``tg.emb.patches(samples, slide, model='resnet18', mpp=0.5)`` reads each sample's pixels through
:mod:`tissuegraph.io` (grid patch = its box; spot = the square around it; region = tiles over its polygon,
weighted by the area inside; image = the tissue tiles of the whole slide), runs a
:class:`~tissuegraph.models.patch.PatchEncoder` and stores ``samples.obsm['X_<name>']`` with its provenance
in ``samples.uns['representations']``. A sample larger than the model input is tiled at the chosen
µm/px and its tiles mean-pooled; a smaller one is resized to the input. Batches stream through a reader
thread that prefetches the next batches while the network runs, so memory does not grow with the slide.

Untrained twins (``seeds=(0, 1, 2, 3, 4)`` or :func:`patch_twins`) are random-weight copies of the same
architecture run through the same code path, in the same pass over the slide.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .. import _keys as K
from .._errors import InputError
from .._logging import logger, progress_bar, timed
from .._settings import settings
from . import _pixels as P
from ._record import record_representation

__all__ = ["patches", "patch_twins", "train_patches"]

DEFAULT_TWIN_SEEDS = (0, 1, 2, 3, 4)


def _slug(s: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", s).strip("_").lower()


def rep_name(family: str, arch: str, layer: int, objective: str | None, seed: int | None) -> str:
    """``X_cnn_resnet18_untrained_s0``, ``X_cnn_resnet18_l2_simclr``, ``X_vit_small_patch16_224_pretrained``."""
    a = _slug(arch)
    if a.startswith(family + "_"):
        a = a[len(family) + 1:]
    layer_tag = "" if layer == -1 else f"_l{layer}"
    tail = f"untrained_s{seed}" if objective is None else _slug(objective)
    return f"X_{family}_{a}{layer_tag}_{tail}"


# ---------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------
def _scale_values(dtype: np.dtype, value_range) -> tuple[float, float]:
    if value_range is not None:
        lo, hi = (float(v) for v in value_range)
        if not hi > lo:
            raise InputError(f"value_range must be (low, high) with high > low, got {value_range}.")
        return lo, hi
    if np.issubdtype(dtype, np.integer):
        return 0.0, float(np.iinfo(dtype).max)
    return 0.0, 1.0


class _Reader:
    """Reads a batch of planned tiles into a (B, C, H, W) float tensor in [0, 1] (thread-safe per slide)."""

    def __init__(self, slides: dict, *, size: int, channels: Sequence[int] | None, value_range):
        self.slides, self.size, self.channels = slides, size, None if channels is None else list(channels)
        self.value_range = value_range

    def __call__(self, items):
        import torch

        imgs = []
        for sid, x0, y0, s in items:
            slide = self.slides[sid]
            img = P.read_tile(slide, x0, y0, s, self.size)
            if self.channels is not None:
                img = img[..., self.channels]
            imgs.append(img)
        arr = np.stack(imgs)
        lo, hi = _scale_values(arr.dtype, self.value_range)
        # (B, H, W, C) memory seen as (B, C, H, W): the channels-last layout oneDNN convolutions prefer, so no
        # transposing copy is made here
        t = torch.from_numpy(arr).permute(0, 3, 1, 2)
        if arr.dtype == np.uint8 and lo == 0.0 and hi == 255.0:
            return t.float().div_(255.0)
        return t.float().sub_(lo).div_(hi - lo)


def _prefetch(fn, batches, num_workers: int):
    """Yield ``(batch, fn(batch))`` in order, computing up to ``num_workers + 1`` batches ahead in threads."""
    if num_workers <= 0:
        for b in batches:
            yield b, fn([t[1:5] for t in b])
        return
    with ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="tg-patch-reader") as ex:
        queue: deque = deque()
        it = iter(batches)
        for b in it:
            queue.append((b, ex.submit(fn, [t[1:5] for t in b])))
            if len(queue) > num_workers:
                break
        while queue:
            b, fut = queue.popleft()
            nxt = next(it, None)
            if nxt is not None:
                queue.append((nxt, ex.submit(fn, [t[1:5] for t in nxt])))
            yield b, fut.result()


def _plan(samples, slides, ids, *, mpp, size, mask):
    geoms = P.geometries(samples, slides, ids)
    items = []  # (row, slide_id, x0, y0, scale, weight)
    for i, g in enumerate(geoms):
        slide = slides[ids[i]]
        scale = 1.0 if mpp is None else float(mpp) / slide.require_mpp(f"reading patches at {mpp} µm/px")
        for x0, y0, s, w in P.plan_tiles(g, slide, scale=scale, size=size, mask=mask):
            items.append((i, ids[i], x0, y0, s, w))
    return geoms, items


# ---------------------------------------------------------------------------------------------------
# encoders
# ---------------------------------------------------------------------------------------------------
def _check_layers(layer) -> list[int]:
    layers = [layer] if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool) else list(layer)
    if not layers or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in layers):
        raise InputError(f"layer must be an int or a sequence of ints, got {layer!r}.")
    if len(set(int(v) for v in layers)) != len(layers):
        raise InputError(f"layer has repeated entries: {layer!r}.")
    return [int(v) for v in layers]


def _encoders(model, *, weights, seed, seeds, in_chans, size, mean, std, model_kwargs):
    """List of PatchEncoders to run in one pass (a trained/given one first, then twins)."""
    from ..models.patch import PatchEncoder

    out = []
    if isinstance(model, PatchEncoder):
        if weights is not None:
            raise InputError("weights= applies to an architecture name; a PatchEncoder already has its weights.")
        if model.in_chans != in_chans:
            raise InputError(f"The encoder takes in_chans={model.in_chans}, the slide gives {in_chans} channel(s); "
                             "choose channels=.")
        out.append(model)
        if seeds is not None:
            cfg = dict(model.config())
            cfg["objective"] = None
            for s in seeds:
                out.append(PatchEncoder.from_config({**cfg, "seed": int(s)}))
        return out
    if not isinstance(model, str):
        raise InputError(f"model must be a timm architecture name or a tg.models.PatchEncoder, got "
                         f"{type(model).__name__}.")
    kw = dict(in_chans=in_chans, img_size=size, mean=mean, std=std, model_kwargs=model_kwargs)
    if seeds is not None:
        if weights is not None:
            raise InputError("seeds= makes untrained twins (random weights); it cannot be combined with weights=. "
                             "Embed the pretrained model and its twins in two calls, or pass model=<PatchEncoder> "
                             "with seeds= to get both in one pass.")
        seeds = [int(s) for s in seeds]
        if len(set(seeds)) != len(seeds) or not seeds:
            raise InputError(f"seeds must be distinct ints, got {seeds}.")
        return [PatchEncoder(model, seed=s, **kw) for s in seeds]
    return [PatchEncoder(model, seed=int(seed), weights=weights, **kw)]


def _inputs_name(channels: int, mpp, size: int, value_range) -> str:
    res = "native" if mpp is None else f"{float(mpp):g}um/px"
    kind = "rgb" if channels == 3 else f"{channels}ch"
    vr = "" if value_range is None else f",range={list(value_range)}"
    return f"{kind}@{res},{size}px{vr}"


# ---------------------------------------------------------------------------------------------------
# shared by tg.emb.patches and tg.culture.embed_cells
# ---------------------------------------------------------------------------------------------------
def open_slides_channels(adata, slide, *, slide_mpp, channels):
    """The slides of ``adata`` (one channel count for all), the checked ``channels`` selection and the number
    of input channels it gives the network: ``(slides, ids, channels, in_chans)``."""
    slides, ids = P.open_slides(adata, slide, slide_mpp=slide_mpp)
    n_ch = {s.channels for s in slides.values()}
    if len(n_ch) != 1:
        raise InputError(f"The slides have different channel counts {sorted(n_ch)}.")
    n_ch = n_ch.pop()
    if channels is not None:
        channels = [int(c) for c in channels]
        if not channels or any(c < 0 or c >= n_ch for c in channels):
            raise InputError(f"channels must index the slide's {n_ch} channel(s), got {channels}.")
    return slides, ids, channels, (n_ch if channels is None else len(channels))


def explicit_keys(key_added: Sequence[str], n_outputs: int) -> list[str]:
    """``obsm`` keys from a user's list of names, one per output (encoders x layers)."""
    keys = [K.obsm.rep(k) for k in key_added]
    if len(keys) != n_outputs:
        raise InputError(f"key_added has {len(keys)} names for {n_outputs} outputs (encoders x layers).")
    return keys


def unique_keys(keys: list[str]) -> list[str]:
    if len(set(keys)) != len(keys):
        raise InputError(f"Output keys collide: {keys}; pass key_added= with one name per output.")
    return keys


def output_keys(encoders, layers: Sequence[int], key_added) -> list[str]:
    """One obsm key per (encoder, layer) output: default names (:func:`rep_name`), a prefix that gets
    ``_s<seed>`` / ``_<objective>`` / ``_l<layer>`` suffixes, or one name per output."""
    outputs = [(e, v) for e in encoders for v in layers]
    if key_added is None or isinstance(key_added, str):
        keys = []
        for e, v in outputs:
            if key_added is None:
                keys.append(rep_name(e.family, e.arch, v, e.objective, e.seed))
            else:
                k = K.obsm.rep(key_added)
                if len(encoders) > 1 and e.objective is None:
                    k += f"_s{e.seed}"
                elif len(encoders) > 1:
                    k += f"_{_slug(e.objective)}"
                if len(layers) > 1:
                    k += f"_l{v}"
                keys.append(k)
    else:
        keys = explicit_keys(key_added, len(outputs))
    return unique_keys(keys)


def pooled_embeddings(encoders, layers: Sequence[int], stream, *, n: int, device: str, total: int, desc: str,
                      progress: bool | None = None, unit: str = "tile"):
    """Run every encoder on every batch of ``stream`` and sum the outputs per row.

    ``stream`` yields ``(rows, weights, x)``: the output row of each image (int array), its weight and the
    ``(B, C, H, W)`` float tensor in [0, 1]. Returns ``(sums, wsum)``: one float64 ``(n, width)`` array of
    weighted sums per (encoder, layer) output, in the order (encoder, layer), and the total weight per row.
    Every image goes through each encoder once, in batches (never one model call per image).
    """
    import torch

    sums = [np.zeros((n, e.layer_width(v)), dtype=np.float64) for e in encoders for v in layers]
    wsum = np.zeros(n, dtype=np.float64)
    for e in encoders:
        e.to(device).eval()
    with torch.inference_mode(), progress_bar(total=total, desc=desc, enabled=progress, unit=unit) as bar:
        for r, w, x in stream:
            r = np.asarray(r, dtype=np.int64)
            w = np.asarray(w, dtype=np.float64)
            np.add.at(wsum, r, w)
            x = x.to(device, non_blocking=True)
            o = 0
            for e in encoders:
                for z in e.embed(x, layers=list(layers)):
                    z = z.detach().to("cpu", torch.float64).numpy()
                    np.add.at(sums[o], r, z * w[:, None])
                    o += 1
            bar.update(len(r))
    return sums, wsum


def encoder_record(e, layer: int, *, inputs: str, params: dict) -> dict:
    """The provenance record (docs/architecture.md) of one encoder output; ``params`` adds to the encoder's
    own (normalisation, in_chans, weights, card)."""
    trained = e.objective is not None
    cfg = e.config()
    return {
        "family": e.family, "trained": bool(trained), "learned": True, "objective": e.objective,
        "architecture": e.arch, "inputs": inputs, "layer": int(layer), "seed": int(e.seed),
        "twin_group": f"{e.family}:{e.arch}:{inputs}:layer{layer}",
        "weights_sha256": e.weights_sha256 if e.weights_sha256 else e.parameters_sha256(),
        "params": {**params, "mean": cfg["mean"], "std": cfg["std"], "in_chans": e.in_chans,
                   "img_size": e.img_size, "model_kwargs": e.model_kwargs,
                   "weights": e.weights_path if e.weights_path else ("random" if not trained else "in memory"),
                   "card": getattr(e, "card", None) or {}},
    }


# ---------------------------------------------------------------------------------------------------
# public
# ---------------------------------------------------------------------------------------------------
def patches(samples, slide: Any = None, *, model: Any = "resnet18", weights: Any = None, seed: int = 0,
            seeds: Sequence[int] | None = None, mpp: float | None = 0.5, size: int = 224,
            layer: int | Sequence[int] = -1, key_added: str | Sequence[str] | None = None, batch_size: int = 32,
            device: str | None = None, num_workers: int = 1, channels: Sequence[int] | None = None,
            value_range: Sequence[float] | None = None, mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None, model_kwargs: dict | None = None, mask: Any = "auto",
            slide_mpp: float | None = None, progress: bool | None = None, copy: bool = False):
    """Embed every sample's pixels with a timm patch encoder (CNN or ViT): ``samples.obsm['X_<name>']``.

    Parameters
    ----------
    samples
        Samples AnnData (``tg.graph.grid_samples`` / ``spot_samples`` / ``region_samples`` /
        ``image_samples``): geometry in ``obs`` (and spot centres in ``obsm['spatial']``).
    slide
        The slide the samples come from (path, :class:`~tissuegraph.io.Slide` or array), or
        ``{slide_id: slide}`` when they come from several (keys = values of ``samples.obs['slide']``).
    model
        A timm architecture name (``'resnet18'``, ``'resnet50'``, ``'vit_small_patch16_224'``, ...) or a
        :class:`~tissuegraph.models.patch.PatchEncoder` (e.g. one trained with :func:`train_patches`).
    weights
        ``None`` (random weights from ``seed``: an untrained twin) or a local state dict / safetensors file
        (timm or torchvision layout; e.g. a pathology foundation model kept in timm form:
        ``model='vit_large_patch16_224', weights='/models/uni.safetensors'``). Never downloaded.
    seed, seeds
        Seed of the random weights; ``seeds=(0, 1, 2, 3, 4)`` embeds one untrained twin per seed in the same
        pass (with ``model=<PatchEncoder>``: that encoder *and* its twins).
    mpp
        µm/px the pixels are read at (``None``: the slide's native pixels).
    size
        Model input edge in px. A sample larger than ``size`` px at ``mpp`` is tiled at ``mpp`` and its
        tiles mean-pooled (regions: weighted by their area inside the polygon; images: by tissue
        fraction); a smaller one is resized to ``size``.
    layer
        ``-1`` = the network's own embedding; ``i`` = block ``i`` averaged over positions (see
        :class:`~tissuegraph.models.patch.PatchEncoder`); a sequence computes several in one pass.
    key_added
        obsm key (default ``X_<family>_<arch>[_l<layer>]_untrained_s<seed>`` or ``..._<objective>``); with
        several encoders or layers, one key per output in the order (encoder, layer) or a prefix that gets
        ``_s<seed>`` / ``_l<layer>`` suffixes.
    batch_size, device, num_workers
        Tiles per forward pass; torch device (default ``tg.settings.device``); reader threads that
        prefetch the next batches (0 = read in the calling thread).
    channels, value_range
        Slide channels to use (default all; their number must match the encoder's ``in_chans``) and the
        intensity range mapped to [0, 1] (default: the dtype's range; [0, 1] for floats).
    mean, std, model_kwargs
        Normalisation of the [0, 1] input (default: the architecture's, ImageNet) and extra
        ``timm.create_model`` arguments.
    mask
        Tissue mask for image samples (``'auto'``, ``None`` = every tile, or a :class:`~tissuegraph.io.TissueMask`).
    slide_mpp
        The slide's µm/px when its metadata lacks it.

    Returns
    -------
    ``None`` (or the copy): ``samples.obsm[key]`` float32 ``(n_samples, d)`` (NaN rows for samples without
    pixels, e.g. an empty polygon, with a warning) and ``samples.uns['representations'][key]`` (family
    ``'cnn'``/``'vit'``, trained, learned, objective, architecture, inputs, layer, seed, twin_group,
    weights_sha256, params).
    """
    samples = samples.copy() if copy else samples
    if samples.n_obs == 0:
        raise InputError("samples is empty.")
    size = int(size)
    if size < 8:
        raise InputError(f"size must be at least 8 px, got {size}.")
    batch_size = int(batch_size)
    if batch_size < 1:
        raise InputError(f"batch_size must be positive, got {batch_size}.")
    if mpp is not None and not (float(mpp) > 0):
        raise InputError(f"mpp must be positive (µm/px) or None, got {mpp}.")
    layers = _check_layers(layer)
    device = settings.device if device is None else str(device)
    slides, ids, channels, in_chans = open_slides_channels(samples, slide, slide_mpp=slide_mpp, channels=channels)
    encoders = _encoders(model, weights=weights, seed=seed, seeds=seeds, in_chans=in_chans, size=size, mean=mean,
                         std=std, model_kwargs=model_kwargs)
    for enc in encoders:
        for v in layers:
            enc._check_layer(v)
    outputs = [(e, v) for e in encoders for v in layers]
    keys = output_keys(encoders, layers, key_added)

    geoms, items = _plan(samples, slides, ids, mpp=mpp, size=size, mask=mask)
    n = samples.n_obs
    rows = np.fromiter((t[0] for t in items), dtype=np.int64, count=len(items))
    wts = np.fromiter((t[5] for t in items), dtype=np.float64, count=len(items))
    reader = _Reader(slides, size=size, channels=channels, value_range=value_range)
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    desc = f"patches {encoders[0].arch}" + (f" x{len(encoders)}" if len(encoders) > 1 else "")

    def stream():
        for b_i, (batch, x) in enumerate(_prefetch(reader, batches, int(num_workers))):
            start = b_i * batch_size
            yield rows[start:start + len(batch)], wts[start:start + len(batch)], x

    with timed(f"{desc}: {n} samples, {len(items)} tiles of {size} px at "
               f"{'native' if mpp is None else f'{mpp:g} µm/px'}"):
        sums, wsum = pooled_embeddings(encoders, layers, stream(), n=n, device=device, total=len(items),
                                       desc=desc, progress=progress, unit="tile")
    empty = wsum <= 0
    if empty.any():
        logger.warning("%d sample(s) have no pixels to embed (e.g. empty polygons); their rows are NaN: %s",
                       int(empty.sum()), list(samples.obs_names[empty][:5]))
    for (e, v), key, s in zip(outputs, keys, sums):
        with np.errstate(invalid="ignore", divide="ignore"):
            Z = (s / wsum[:, None]).astype(np.float32)
        Z[empty] = np.nan
        inputs = _inputs_name(in_chans, mpp, size, value_range)
        rec = encoder_record(e, v, inputs=inputs, params={
            "mpp": mpp, "size": size, "batch_size": batch_size, "channels": channels, "value_range": value_range,
            "n_tiles": int(len(items)), "pooling": "mean over tiles (regions: area inside; images: tissue)",
            "sample_kinds": sorted(set(g.kind for g in geoms)), "device": device})
        record_representation(samples, key, Z, rec)
        logger.info("%s: %s (%d x %d)", desc, key, *Z.shape)
    return samples if copy else None


def patch_twins(samples, slide: Any = None, *, model: Any = "resnet18", seeds: Sequence[int] = DEFAULT_TWIN_SEEDS,
                **kwargs):
    """Untrained twins of a patch encoder: :func:`patches` with one random-weight copy per seed.

    ``model`` is an architecture name, or a trained :class:`~tissuegraph.models.patch.PatchEncoder`: then
    the encoder itself and its twins (same architecture, input and layer) are embedded in one pass. Keys:
    ``X_<family>_<arch>[_l<layer>]_untrained_s<seed>``; all share the ``twin_group`` of the trained model.
    Other keyword arguments are those of :func:`patches`.
    """
    if "weights" in kwargs and kwargs["weights"] is not None:
        raise InputError("patch_twins makes random-weight twins; weights= is not accepted.")
    return patches(samples, slide, model=model, seeds=seeds, **kwargs)


def train_patches(samples, slide: Any = None, *, model: Any = "resnet18", objective: str = "simclr",
                  label: str | None = None, mpp: float | None = 0.5, size: int = 96, crop_size: int | None = None,
                  max_crops: int | None = 4096, seed: int = 0, channels: Sequence[int] | None = None,
                  value_range: Sequence[float] | None = None, slide_mpp: float | None = None,
                  progress: bool | None = None, **train_kwargs):
    """Train a patch encoder offline on the samples' own pixels (self-supervised or on a label column).

    Reads one crop per tile that :func:`patches` would embed (the same geometry at ``mpp``), enlarged around
    the tile's centre to ``crop_size`` px (default ``size * 1.25``, so random crops have room), then runs
    :func:`tissuegraph.models.train_patch_simclr` (``objective='simclr'``) or
    :func:`tissuegraph.models.train_patch_supervised` (``objective='supervised'``, ``label=`` column of
    ``samples.obs``; samples with a missing label are left out). Embed the result with
    ``tg.emb.patches(samples, slide, model=encoder, mpp=mpp, size=size)`` (and its twins with
    ``seeds=``).

    Parameters
    ----------
    samples, slide
        As in :func:`patches`.
    model
        Architecture name or a :class:`~tissuegraph.models.patch.PatchEncoder` to fine-tune (e.g. loaded
        from local pretrained weights).
    objective
        ``'simclr'`` or ``'supervised'``.
    label
        ``samples.obs`` column for ``objective='supervised'``.
    mpp, size, crop_size
        Resolution, the training input size and the size of the crops read (random crops of them are
        resized to ``size``).
    max_crops
        At most this many training crops (drawn with ``seed`` from all tiles of all samples).
    seed
        Seed of the crop choice, initialisation, augmentations and batch order.
    train_kwargs
        ``epochs``, ``batch_size``, ``lr``, ``temperature``, ``device``, ... of the training function.

    Returns
    -------
    ``(encoder, card)``: the trained :class:`~tissuegraph.models.patch.PatchEncoder` (``objective`` set,
    ``card`` attached) and a JSON-ready dict (architecture config, objective, seed, data hash, loss log,
    timings) for :func:`tissuegraph.models.save_model`.
    """
    import hashlib

    from ..models import _patch_train as T

    if objective not in ("simclr", "supervised"):
        raise InputError(f"objective must be 'simclr' or 'supervised', got {objective!r}.")
    size = int(size)
    crop_size = int(round(size * 1.25)) if crop_size is None else int(crop_size)
    if crop_size < size:
        raise InputError(f"crop_size ({crop_size}) must be at least size ({size}).")
    slides, ids = P.open_slides(samples, slide, slide_mpp=slide_mpp)
    # the tiles the embedding reads (size px at mpp), each enlarged around its centre to crop_size px
    _, items = _plan(samples, slides, ids, mpp=mpp, size=size, mask="auto")
    m = (crop_size - size) / 2
    items = [(r, sid, x0 - m * sc, y0 - m * sc, sc, w) for r, sid, x0, y0, sc, w in items]
    y = None
    if objective == "supervised":
        if label is None or label not in samples.obs.columns:
            raise InputError(f"objective='supervised' needs label= naming a samples.obs column; got {label!r}.")
        col = samples.obs[label]
        ok = ~col.isna().to_numpy()
        items = [t for t in items if ok[t[0]]]
        classes, codes = np.unique(col[ok].astype(str).to_numpy(), return_inverse=True)
        full = np.full(samples.n_obs, -1, dtype=np.int64)
        full[np.flatnonzero(ok)] = codes
        if len(classes) < 2:
            raise InputError(f"label {label!r} has fewer than 2 classes among the samples.")
    if not items:
        raise InputError("No sample has pixels to train on.")
    rng = np.random.default_rng(seed)
    if max_crops is not None and len(items) > int(max_crops):
        pick = np.sort(rng.choice(len(items), size=int(max_crops), replace=False))
        items = [items[i] for i in pick]
    reader = _Reader(slides, size=crop_size, channels=channels, value_range=value_range)
    with timed(f"reading {len(items)} training crops of {crop_size} px"):
        chunks = [reader([t[1:5] for t in items[i:i + 64]]) for i in range(0, len(items), 64)]
    import torch

    images = torch.cat(chunks)
    data_hash = hashlib.sha256(images.numpy().tobytes()).hexdigest()
    common = dict(seed=seed, size=size, progress=progress, **train_kwargs)
    if objective == "simclr":
        enc, card = T.train_patch_simclr(images, model=model, **common)
    else:
        yy = torch.from_numpy(full[[t[0] for t in items]])
        enc, card = T.train_patch_supervised(images, yy, model=model, **common)
        card["classes"] = [str(c) for c in classes]
        card["label"] = label
    card["data_sha256"] = data_hash
    card["data"] = {"n_crops": int(len(items)), "crop_size": crop_size, "mpp": mpp,
                    "n_samples": int(samples.n_obs), "slides": sorted(slides)}
    enc.card = card
    return enc, card
