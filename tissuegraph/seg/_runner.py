"""The tiled whole-slide segmentation runner, shared by every backend.

Tiles overlap by more than the largest nucleus; each nucleus belongs to the one tile whose core
contains its centroid (StarDist ``predict_instances_big``'s rule), so there are no duplicates and no
nuclei cut at tile borders.  Global ids are given in tile order after all tiles are done, so the
result does not depend on ``n_jobs``; slide-wide calibration (normalisation percentiles, thresholds)
is computed once from fixed patches, so it does not depend on the tile size either.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import _keys as K
from .._compat import release_memory, tune_allocator
from .._contours import label_centroids, label_contours, rasterize_contours, tile_offset
from .._errors import InputError
from .._logging import logger, progress_bar
from .._settings import settings
from .._validate import check_positive

__all__ = ["nuclei", "write_labels", "NUCLEI_COLUMNS"]

NUCLEI_COLUMNS = K.nuclei.columns


# Beyond the slide edge tiles are mirrored (as StarDist pads images), not filled with background: a
# nucleus cut by the edge of a field of view then looks like a nucleus to the backend, and whatever is
# found outside the slide is cropped away before measuring (see _objects_of_tile).
_TILE_PAD = "reflect"


def _empty_table(slide_id: str) -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype=t) for c, t in [
        (K.nuclei.id, np.int64), (K.nuclei.x, np.float64), (K.nuclei.y, np.float64),
        *[(b, np.int64) for b in K.nuclei.bbox], (K.nuclei.area_px, np.int64),
        (K.nuclei.area_um2, np.float64), (K.nuclei.contour, object), (K.nuclei.tile, np.int64),
        (K.nuclei.score, np.float64), (K.nuclei.slide, object)]})
    return df


# --------------------------------------------------------------------------------------------------------
# per-tile work
# --------------------------------------------------------------------------------------------------------
def _objects_of_tile(spec, labels: np.ndarray, scores: np.ndarray | None, slide_size: tuple[int, int],
                     ) -> dict[str, Any]:
    """Keep the objects whose centroid lies in the tile's core; measure them in level-0 coordinates."""
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    if labels.shape != (spec.height, spec.width):
        raise InputError(f"The backend returned labels of shape {labels.shape} for a tile of shape "
                         f"{(spec.height, spec.width)}.")
    if labels.dtype.kind not in "iu":
        raise InputError(f"The backend returned labels of dtype {labels.dtype}; integer labels expected.")
    # objects are cropped to the slide: what a backend finds in the padding beyond the edge is not there
    rows, cols = spec.inside_mask(slide_size)
    if rows.start > 0 or cols.start > 0 or rows.stop < spec.height or cols.stop < spec.width:
        cropped = np.zeros_like(labels)
        cropped[rows, cols] = labels[rows, cols]
        labels = cropped
    n_max = int(labels.max()) if labels.size else 0
    empty = dict(x=np.zeros(0), y=np.zeros(0), area=np.zeros(0, np.int64), score=np.zeros(0),
                 contours=[], cut=0)
    if n_max == 0:
        return empty
    present, area, cx, cy = label_centroids(labels)
    xy0 = spec.to_level0(np.stack([cx, cy], axis=1))
    own = spec.owns(xy0[:, 0], xy0[:, 1])
    ids = present[own]
    if ids.size == 0:
        return empty
    # objects touching a tile edge that lies inside the slide may be cut: count them (overlap too small)
    slices = ndi.find_objects(labels, max_label=n_max)
    w0, h0 = slide_size
    edge_inside = (spec.x0 > 0, spec.y0 > 0, spec.x0 + spec.width * spec.scale < w0,
                   spec.y0 + spec.height * spec.scale < h0)
    cut = 0
    for i in ids:
        sl = slices[i - 1]
        if ((sl[1].start == 0 and edge_inside[0]) or (sl[0].start == 0 and edge_inside[1])
                or (sl[1].stop == spec.width and edge_inside[2]) or (sl[0].stop == spec.height and edge_inside[3])):
            cut += 1
    off = tile_offset((spec.x0, spec.y0), spec.scale)
    cont = label_contours(labels, ids=ids, offset=off, scale=spec.scale)
    if scores is None:
        sc = np.full(ids.size, np.nan)
    else:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape[0] < n_max:
            raise InputError(f"The backend returned {scores.shape[0]} scores for labels up to {n_max}.")
        sc = scores[ids - 1]
    return dict(x=xy0[own, 0], y=xy0[own, 1], area=area[own], score=sc,
                contours=[cont[int(i)] for i in ids], cut=cut)


def _read_tile(spec, slide, slide_size, margin: int) -> np.ndarray:
    """The tile image, cut at ``margin`` px beyond the slide's right and bottom edges.

    A tile at the slide's far edge would otherwise be mostly mirrored padding: segmenting it costs
    time and finds nothing that is kept. ``margin`` (half the overlap) keeps the same context beyond
    the edge that every inner border has."""
    image = spec.read(slide, pad=_TILE_PAD)
    rows, cols = spec.inside_mask(slide_size)
    h, w = min(spec.height, rows.stop + margin), min(spec.width, cols.stop + margin)
    if (h, w) != (spec.height, spec.width):
        image = np.ascontiguousarray(image[:h, :w])
    return image


def _full_tile(spec, labels, shape: tuple[int, int]) -> np.ndarray:
    """Labels of a tile image of ``shape`` (cut by :func:`_read_tile`), checked and padded back to the
    tile's shape."""
    labels = np.asarray(labels)
    if labels.shape != tuple(shape):
        raise InputError(f"The backend returned labels of shape {labels.shape} for an image of shape "
                         f"{tuple(shape)}.")
    if labels.shape != (spec.height, spec.width):
        full = np.zeros((spec.height, spec.width), dtype=labels.dtype)
        full[:labels.shape[0], :labels.shape[1]] = labels
        return full
    return labels


def _process_tile(spec, slide, backend, calibration, slide_size, margin: int):
    if getattr(backend, "reads_labels", False):
        labels, scores = backend.read_labels(spec), None
    else:
        image = _read_tile(spec, slide, slide_size, margin)
        kwargs = {"mpp": _tile_mpp(spec, slide)}
        if calibration is not None:
            kwargs["calibration"] = calibration
        shape = image.shape[:2]
        labels, scores = backend.segment(image, **kwargs)
        del image
        labels = _full_tile(spec, labels, shape)
    r = _objects_of_tile(spec, labels, scores, slide_size)
    del labels, scores
    release_memory()  # see tg.settings.release_memory
    return r


def _pipelined(todo, slide, backend, calibration, ckpt, n_jobs: int, margin: int):
    """Yield (index, result) for two-phase backends: ``predict`` tile after tile here, ``postprocess``
    (NMS, polygon rendering, ownership, contours) of earlier tiles in ``max(1, n_jobs)`` threads.
    At most ``2 * workers`` predictions wait, so memory stays bounded."""
    from collections import deque

    workers = max(1, n_jobs)
    slide_size = slide.dimensions

    def post(spec, raw, shape):
        labels, scores = backend.postprocess(raw, image_shape=shape)
        r = _objects_of_tile(spec, _full_tile(spec, labels, shape), scores, slide_size)
        del labels, scores, raw
        release_memory()
        ckpt.save(spec.index, r)
        return spec.index, r

    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=workers) as ex:
        for spec in todo:
            kwargs = {"mpp": _tile_mpp(spec, slide)}
            if calibration is not None:
                kwargs["calibration"] = calibration
            image = _read_tile(spec, slide, slide_size, margin)
            raw = backend.predict(image, **kwargs)
            pending.append(ex.submit(post, spec, raw, image.shape[:2]))
            del image
            while len(pending) > 2 * workers or (pending and pending[0].done()):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _tile_mpp(spec, slide) -> float | None:
    return None if slide.mpp is None else slide.mpp * spec.scale


# --------------------------------------------------------------------------------------------------------
# checkpointing (resume after a crash)
# --------------------------------------------------------------------------------------------------------
class _Checkpoint:
    def __init__(self, directory: str | os.PathLike | None, key: dict):
        self.dir = None if directory is None else Path(directory)
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        manifest = self.dir / "checkpoint.json"
        if manifest.exists():
            old = json.loads(manifest.read_text())
            if old.get("digest") != digest:
                raise InputError(f"The checkpoint folder {self.dir} belongs to a different run (other slide or "
                                 "parameters). Use a new folder, or delete it to start over.")
        else:
            manifest.write_text(json.dumps({"digest": digest, "key": key}, default=str, indent=1))

    def load(self, index: int):
        if self.dir is None:
            return None
        p = self.dir / f"tile_{index:07d}.pkl"
        if not p.exists():
            return None
        try:
            with open(p, "rb") as fh:
                return pickle.load(fh)
        except Exception:  # noqa: BLE001 - a file cut by the crash: redo that tile
            return None

    def save(self, index: int, result) -> None:
        if self.dir is None:
            return
        p = self.dir / f"tile_{index:07d}.pkl"
        tmp = p.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, p)  # atomic: a crash never leaves a half-written tile


# --------------------------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------------------------
def _calibration_patches(slide, grid, tmask, *, n: int = 8, size: int = 512, seed: int = 0) -> list:
    """Fixed patches (independent of tile size) from the tissue for slide-wide calibration."""
    from ..io._resample import read_resampled

    s = grid.scale
    w0, h0 = slide.dimensions
    extent = size * s
    if tmask is not None and not tmask.empty:
        xs, ys = tmask.pixel_centres_level0()
    else:
        xs, ys = np.array([w0 / 2]), np.array([h0 / 2])
    rng = np.random.default_rng(seed)
    pick = rng.choice(xs.size, size=min(n, xs.size), replace=False)
    out = []
    for i in np.sort(pick):
        x0 = float(np.clip(xs[i] - extent / 2, 0, max(0.0, w0 - extent)))
        y0 = float(np.clip(ys[i] - extent / 2, 0, max(0.0, h0 - extent)))
        pw, ph = min(size, max(1, int(w0 / s))), min(size, max(1, int(h0 / s)))
        out.append(read_resampled(slide, x0, y0, s, (pw, ph), level=grid.specs[0].level if grid.specs else 0))
    return out


def nuclei(slide_or_image, *, method: Any = "auto", model: Any = None, labels: Any = None,
           mpp: float | None = None, slide_mpp: float | None = None, modality: str = "auto",
           tile_size: int = 1024, overlap: int | None = None, mask: Any = "auto",
           n_jobs: int | None = None, progress: bool | None = None, checkpoint: str | os.PathLike | None = None,
           labels_out: str | os.PathLike | None = None, slide_id: str | None = None, seed: int | None = None,
           **backend_kwargs: Any) -> pd.DataFrame:
    """Segment the nuclei of a whole slide (or a plain image), tile by tile, into one nucleus table.

    Parameters
    ----------
    slide_or_image
        A :class:`~tissuegraph.io.Slide`, a path, or an (H, W[, C]) array.
    method
        ``'auto'`` (best measured backend), ``'watershed'``, ``'stardist'``, ``'labels'`` or a backend
        object; see :func:`get_backend`. For ``'labels'``, ``labels`` is a label image/TIFF/zarr in
        level-0 px, or a QuPath GeoJSON / CSV of nuclei (then no tiling happens).
    model
        StarDist model name or folder.
    mpp
        µm/px to segment at. Default: the backend's training resolution when both it and the slide's
        µm/px are known, else the slide's native resolution.
    slide_mpp
        Overrides the slide's µm/px (same as ``open_slide(path, mpp=...)``).
    modality
        ``'he'`` (brightfield RGB), ``'fluorescence'`` or ``'auto'`` (decided once per slide: an RGB
        slide with a light background is H&E). Picks the default backend and model for
        ``method='auto'``: the one that measured best for the modality
        (``benchmarks/results/seg_accuracy*.md``).
    tile_size, overlap
        Tile edge and overlap in working px. The default overlap is twice the largest object the
        backend returns plus a margin, so that every nucleus lies whole inside the tile owning it.
    mask
        Tissue mask (see :func:`tissuegraph.io.tile_grid`); ``'all'`` segments everywhere. ``'auto'``
        detects tissue on brightfield slides and segments everywhere on fluorescence images.
    n_jobs
        Tiles processed in parallel (threads). Results do not depend on it.
    checkpoint
        Folder for per-tile results: an interrupted run started again with the same folder and
        parameters resumes where it stopped.
    labels_out
        Also write the instance labels (ids = ``nucleus_id``) as a pyramidal TIFF at the working
        resolution, strip by strip from the contours (never one whole-slide array in memory).

    Returns
    -------
    pandas.DataFrame
        The nucleus table (columns in docs/architecture.md); ``df.attrs`` holds µm/px and parameters.
    """
    from ..io import open_slide, tile_grid
    from ..io._tissue import TissueMask, tissue_mask
    from ._backends import get_backend

    t_start = time.perf_counter()
    tune_allocator()  # see tg.settings.release_memory
    slide = open_slide(slide_or_image, mpp=slide_mpp, slide_id=slide_id)
    sid = slide.slide_id
    n_jobs = settings.resolve_n_jobs(n_jobs)
    seed = settings.seed if seed is None else seed

    if method == "labels" and isinstance(labels, (str, os.PathLike)) and \
            Path(labels).suffix.lower() in (".geojson", ".json", ".csv"):
        from ._byo import nuclei_from_csv, nuclei_from_geojson

        reader = nuclei_from_csv if Path(labels).suffix.lower() == ".csv" else nuclei_from_geojson
        df = reader(labels, slide_id=sid, mpp=slide.mpp)
        df.attrs.update(method="labels", source=str(labels), slide_mpp=slide.mpp, seg_mpp=slide.mpp, mpp=slide.mpp)
        return df

    if modality == "auto" and method != "labels":
        # decide once per slide (not per tile): brightfield RGB with a light background is H&E
        modality = "he" if slide.is_rgb and float(np.mean(slide.background)) > 127 else "fluorescence"
    backend = get_backend(method, model=model, labels=labels, modality=modality, **backend_kwargs)
    # working resolution
    if mpp is not None:
        check_positive(mpp, "mpp")
        work_mpp = float(mpp)
        slide.require_mpp(f"segmenting at {mpp} µm/px")
    elif backend.mpp is not None and slide.mpp is not None:
        work_mpp = float(backend.mpp)
    else:
        if backend.mpp is not None and slide.mpp is None:
            warnings.warn(f"{sid}: the slide's µm/px is unknown, so the {backend.name} model (trained at "
                          f"{backend.mpp} µm/px) runs at the image's native resolution. Pass slide_mpp= (or "
                          "--mpp) for correct scaling.", stacklevel=2)
        work_mpp = None
    tile_size = check_positive(tile_size, "tile_size", integer=True)
    min_overlap = 2 * int(math.ceil(backend.max_object_px)) + 16
    if overlap is None:
        overlap = min_overlap
    elif overlap < min_overlap:
        warnings.warn(f"overlap={overlap} px is less than twice the largest object the {backend.name} backend "
                      f"returns ({backend.max_object_px} px); nuclei may be cut at tile borders. "
                      f"Use overlap >= {min_overlap}.", stacklevel=2)
    if tile_size <= overlap + 16:
        raise InputError(f"tile_size={tile_size} is too small for overlap={overlap}; use at least "
                         f"{overlap + 64}.")
    if isinstance(mask, str) and mask == "auto" and modality == "fluorescence":
        tmask = None  # fields of view of cells have no glass to skip; dark is not "no tissue" here
    elif isinstance(mask, str) and mask == "auto":
        tmask = tissue_mask(slide)
    elif mask is None or (isinstance(mask, str) and mask == "all"):
        tmask = None
    else:
        tmask = mask if isinstance(mask, TissueMask) else TissueMask(mask, slide.dimensions)
    grid = tile_grid(slide, mpp=work_mpp, size=tile_size, overlap=overlap, mask=tmask if tmask is not None else None)
    if len(grid) == 0:
        logger.warning("%s: no tissue found; the nucleus table is empty.", sid)
    elif len(grid) > 4 and tile_size - overlap < overlap:
        # every tile segments tile_size² px to own only a (tile_size - overlap)² core
        logger.warning("%s: tile_size=%d with an overlap of %d px leaves a %d px core per tile (%d tiles, "
                       "each segmenting %.0f x its core); tile_size >= %d would do the same work much faster.",
                       sid, tile_size, overlap, tile_size - overlap, len(grid),
                       (tile_size / (tile_size - overlap)) ** 2, 2 * overlap)

    calibration = None
    if hasattr(backend, "calibrate") and len(grid) and not getattr(backend, "reads_labels", False):
        import inspect

        patches = _calibration_patches(slide, grid, tmask, seed=seed)
        kw = {}
        if "mpp" in inspect.signature(backend.calibrate).parameters:  # optional part of the protocol
            kw["mpp"] = None if slide.mpp is None else slide.mpp * grid.scale
        calibration = backend.calibrate(patches, **kw)

    key = dict(slide=str(slide.path) if slide.path else sid, size=slide.dimensions, method=backend.name,
               model=str(model), work_mpp=work_mpp, tile_size=tile_size, overlap=overlap,
               n_tiles=len(grid), backend_kwargs=backend_kwargs,
               calibration=None if calibration is None else {k: np.asarray(v).tolist() for k, v in calibration.items()})
    ckpt = _Checkpoint(checkpoint, key)

    results: list[dict | None] = [None] * len(grid)
    todo = []
    for spec in grid.specs:
        r = ckpt.load(spec.index)
        if r is not None:
            results[spec.index] = r
        else:
            todo.append(spec)
    if len(todo) < len(grid):
        logger.info("%s: resuming, %d of %d tiles already done", sid, len(grid) - len(todo), len(grid))

    def work(spec):
        r = _process_tile(spec, slide, backend, calibration, slide.dimensions, overlap // 2)
        ckpt.save(spec.index, r)
        return spec.index, r

    two_phase = (hasattr(backend, "predict") and hasattr(backend, "postprocess")
                 and not getattr(backend, "reads_labels", False))
    with progress_bar(total=len(todo), desc=f"segment {sid} ({backend.name})", enabled=progress,
                      unit="tile") as bar:
        if two_phase and len(todo) > 1:
            # network phase in this thread (the framework uses all cores), while non-maximum
            # suppression and measurement of earlier tiles run in parallel worker threads
            for i, r in _pipelined(todo, slide, backend, calibration, ckpt, n_jobs, overlap // 2):
                results[i] = r
                bar.update()
        elif n_jobs == 1 or len(todo) <= 1:
            for spec in todo:
                i, r = work(spec)
                results[i] = r
                bar.update()
        else:
            with ThreadPoolExecutor(max_workers=n_jobs) as ex:
                for i, r in ex.map(work, todo):
                    results[i] = r
                    bar.update()

    df = _assemble(results, grid, sid, work_mpp if work_mpp is not None else slide.mpp)
    n_cut = int(sum(r["cut"] for r in results if r is not None))
    if n_cut:
        logger.warning("%s: %d nuclei touch an inner tile border (larger than the %d px overlap allows); "
                       "they may be cut. Increase overlap.", sid, n_cut, overlap)
    df.attrs.update(dict(method=backend.name, model=str(model) if model is not None else None,
                         slide_mpp=slide.mpp, seg_mpp=work_mpp if work_mpp is not None else slide.mpp,
                         mpp=slide.mpp, scale=grid.scale, tile_size=tile_size, overlap=overlap,
                         n_tiles=len(grid), n_cut=n_cut, slide_size=list(slide.dimensions),
                         seconds=time.perf_counter() - t_start,
                         calibration=None if calibration is None else
                         {k: np.asarray(v).tolist() for k, v in calibration.items()},
                         # the settings the backend ran with (defaults from a model card included)
                         backend_params={k: getattr(backend, k) for k in
                                         ("mpp", "prob_thresh", "nms_thresh", "tta", "stain_norm")
                                         if isinstance(getattr(backend, k, None), (int, float, str))
                                         or (k == "stain_norm" and hasattr(backend, k))}))
    logger.info("%s: %d nuclei in %d tiles (%s, %.1fs)", sid, len(df), len(grid), backend.name,
                df.attrs["seconds"])
    if labels_out is not None:
        write_labels(df, labels_out, slide_size=slide.dimensions, scale=grid.scale,
                     mpp=None if work_mpp is None and slide.mpp is None else
                     (work_mpp if work_mpp is not None else slide.mpp))
    return df


def _assemble(results, grid, sid: str, seg_mpp: float | None) -> pd.DataFrame:
    parts = [(spec.index, r) for spec, r in zip(grid.specs, results) if r is not None and len(r["x"])]
    if not parts:
        return _empty_table(sid)
    x = np.concatenate([r["x"] for _, r in parts])
    y = np.concatenate([r["y"] for _, r in parts])
    area = np.concatenate([r["area"] for _, r in parts])
    score = np.concatenate([r["score"] for _, r in parts])
    tile = np.concatenate([np.full(len(r["x"]), i, np.int64) for i, r in parts])
    contours = [c for _, r in parts for c in r["contours"]]
    mins = np.array([c.min(axis=0) for c in contours])
    maxs = np.array([c.max(axis=0) for c in contours])
    # contour vertices are pixel corners (pixel-index coords at half-integers in level 0 units)
    bx0 = np.floor(mins[:, 0] + 0.5 + 1e-6).astype(np.int64)
    by0 = np.floor(mins[:, 1] + 0.5 + 1e-6).astype(np.int64)
    bx1 = np.ceil(maxs[:, 0] + 0.5 - 1e-6).astype(np.int64)
    by1 = np.ceil(maxs[:, 1] + 0.5 - 1e-6).astype(np.int64)
    n = len(x)
    df = pd.DataFrame({
        K.nuclei.id: np.arange(1, n + 1, dtype=np.int64),
        K.nuclei.x: x, K.nuclei.y: y,
        K.nuclei.bbox[0]: bx0, K.nuclei.bbox[1]: by0, K.nuclei.bbox[2]: bx1, K.nuclei.bbox[3]: by1,
        K.nuclei.area_px: area,
        K.nuclei.area_um2: area * seg_mpp ** 2 if seg_mpp is not None else np.full(n, np.nan),
        K.nuclei.contour: pd.Series(contours, dtype=object),
        K.nuclei.tile: tile,
        K.nuclei.score: score,
        K.nuclei.slide: sid,
    })
    return df


def write_labels(nuclei_table: pd.DataFrame, path: str | os.PathLike, *, slide_size: tuple[int, int],
                 scale: float = 1.0, mpp: float | None = None, tile_size: int = 512,
                 progress: bool | None = None) -> Path:
    """Write the nuclei as an instance-label pyramid TIFF (ids = ``nucleus_id``) at ``scale`` level-0 px
    per pixel, strip by strip from the contours: memory holds one strip, never the whole image."""
    from ..io import SlideWriter

    w0, h0 = slide_size
    W, H = max(1, int(round(w0 / scale))), max(1, int(round(h0 / scale)))
    ids = nuclei_table[K.nuclei.id].to_numpy(np.int64)
    dtype = np.uint32 if (ids.max() if ids.size else 0) < 2 ** 32 else np.uint64
    contours = nuclei_table[K.nuclei.contour].to_numpy()
    valid = np.array([c is not None and len(c) >= 3 for c in contours], bool)
    by0 = nuclei_table[K.nuclei.bbox[1]].to_numpy(np.float64) / scale
    by1 = nuclei_table[K.nuclei.bbox[3]].to_numpy(np.float64) / scale
    order = np.argsort(by0, kind="stable")
    with SlideWriter(path, shape=(H, W), dtype=dtype, mpp=mpp, tile_size=tile_size, resample="nearest") as wr, \
            progress_bar(total=math.ceil(H / tile_size), desc="write labels", enabled=progress) as bar:
        for r0 in range(0, H, tile_size):
            bar.update()
            h = min(tile_size, H - r0)
            sel = order[(by0[order] < r0 + h + 1) & (by1[order] > r0 - 1)]
            sel = sel[valid[sel]]
            strip = np.zeros((h, W), dtype)
            if sel.size:
                off = tile_offset((0.0, r0 * scale), scale)
                strip = rasterize_contours(list(contours[sel]), (h, W), ids=ids[sel], offset=off, scale=scale,
                                           dtype=dtype)
            wr.write(strip)
    return Path(path)
