"""Where each sample's pixels are: slides of a samples AnnData, sample geometry, tiles at a target µm/px.

Coordinates: sample geometry in ``obs`` / ``obsm['spatial']`` is in level-0 *pixel-index* coordinates
(pixel (r, c) has its centre at (c, r)); the readers (:func:`tissuegraph.io._resample.read_resampled`)
take level-0 *edge* coordinates (pixel c covers [c, c+1)), so geometry is shifted by +0.5 here.

- grid patch: its box ``bbox_x0..bbox_y1`` (half-open in index coordinates);
- spot: the square of side ``diameter_um`` around its centre (``obsm['spatial']``); pixel-exact statistics
  (the colour control) keep the pixels whose centre lies within ``diameter_um / 2`` of it;
- region: its polygon ``geometry_wkt``; tiles cover its bounding box and weigh by the fraction of their
  area inside the polygon (tiles outside are skipped); pixel statistics keep pixels whose centre lies
  inside the polygon;
- image: the whole slide, tissue tiles only (:func:`tissuegraph.io.tile_grid` with the tissue mask),
  weighted by their tissue fraction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .. import _keys as K
from .._errors import InputError

__all__: list[str] = []

KINDS = ("grid", "spot", "region", "image")


@dataclass
class Geometry:
    kind: str
    box: tuple[float, float, float, float] | None  # level-0 edge coordinates (x0, y0, x1, y1)
    center: tuple[float, float] | None = None  # spot centre, index coordinates
    radius: float | None = None  # spot radius, level-0 px
    polygon: Any = None  # shapely polygon, index coordinates


def open_slides(samples, slide: Any, *, slide_mpp: float | None = None) -> tuple[dict, np.ndarray]:
    """``({slide_id: Slide}, per-row slide id)`` for the samples' rows.

    ``slide`` is one slide (a :class:`~tissuegraph.io.Slide`, path or array) when every sample comes from
    one slide, or ``{slide_id: slide}``.
    """
    from ..io import open_slide

    n = samples.n_obs
    if K.obs.slide in samples.obs.columns:
        col = samples.obs[K.obs.slide]
        if col.isna().any():
            raise InputError(f"samples.obs['{K.obs.slide}'] has {int(col.isna().sum())} missing value(s).")
        ids = col.astype(str).to_numpy()
    else:
        ids = None
    if isinstance(slide, Mapping):
        slides = {str(k): open_slide(v, mpp=slide_mpp) for k, v in slide.items()}
        if ids is None:
            if len(slides) != 1:
                raise InputError("samples.obs has no 'slide' column, so slide= must be one slide, not a mapping "
                                 f"of {len(slides)}.")
            ids = np.full(n, next(iter(slides)), dtype=object)
        missing = sorted(set(ids) - set(slides))
        if missing:
            raise InputError(f"slide= has no entry for the slide(s) {missing[:5]} of these samples; pass "
                             "slide={slide_id: path, ...} covering every value of samples.obs['slide'].")
        return slides, ids
    if slide is None:
        raise InputError("slide= is required: the slide (path, Slide or array) the samples were drawn from.")
    s = open_slide(slide, mpp=slide_mpp)
    present = sorted(set(ids)) if ids is not None else []
    if len(present) > 1:
        raise InputError(f"The samples come from {len(present)} slides ({present[:5]}); pass "
                         "slide={slide_id: path, ...}.")
    sid = present[0] if present else s.slide_id
    return {sid: s}, np.full(n, sid, dtype=object) if ids is None else ids


def sample_kind(samples) -> np.ndarray:
    obs = samples.obs
    if K.obs.sample_kind in obs.columns:
        kinds = obs[K.obs.sample_kind].astype(str).to_numpy()
    elif all(c in obs.columns for c in K.obs.bbox):
        kinds = np.full(samples.n_obs, "grid", dtype=object)
    elif K.obs.geometry in obs.columns:
        kinds = np.full(samples.n_obs, "region", dtype=object)
    elif K.obs.diameter_um in obs.columns:
        kinds = np.full(samples.n_obs, "spot", dtype=object)
    else:
        kinds = np.full(samples.n_obs, "image", dtype=object)
    bad = sorted(set(kinds) - set(KINDS))
    if bad:
        raise InputError(f"Samples of kind {bad} have no pixel geometry (only {KINDS} do); cell groups "
                         "('group') can be turned into regions with tg.graph.region_samples.")
    return kinds


def geometries(samples, slides: dict, ids: np.ndarray) -> list[Geometry]:
    """The pixel geometry of every sample (level-0 px of its own slide)."""
    kinds = sample_kind(samples)
    obs = samples.obs
    out: list[Geometry] = []
    need = {"grid": list(K.obs.bbox), "region": [K.obs.geometry], "spot": [K.obs.diameter_um]}
    for kind, cols in need.items():
        if (kinds == kind).any():
            miss = [c for c in cols if c not in obs.columns]
            if miss:
                raise InputError(f"{kind} samples need samples.obs columns {miss} (made by tg.graph.{kind}_samples).")
    if (kinds == "spot").any():
        centers = np.asarray(samples.obsm.get(K.obsm.spatial), dtype=np.float64) \
            if K.obsm.spatial in samples.obsm else None
        if centers is None or centers.shape != (samples.n_obs, 2):
            raise InputError(f"spot samples need their centres in samples.obsm['{K.obsm.spatial}'] (n, 2).")
    polys = {}
    if (kinds == "region").any():
        import shapely

        wkt = obs[K.obs.geometry].to_numpy()
        sel = np.flatnonzero(kinds == "region")
        try:
            geoms = shapely.from_wkt(wkt[sel].astype(str))
        except Exception as exc:  # shapely raises GEOSException
            raise InputError(f"samples.obs['{K.obs.geometry}'] holds invalid WKT ({exc}).") from exc
        polys = dict(zip(sel.tolist(), geoms))
    for i in range(samples.n_obs):
        kind = kinds[i]
        if kind == "grid":
            b = [float(obs[c].iat[i]) for c in K.obs.bbox]
            if not all(math.isfinite(v) for v in b) or b[2] <= b[0] or b[3] <= b[1]:
                raise InputError(f"Sample {obs.index[i]!r} has an invalid box {b}.")
            out.append(Geometry("grid", (b[0] + 0.5, b[1] + 0.5, b[2] + 0.5, b[3] + 0.5)))
        elif kind == "spot":
            mpp0 = slides[ids[i]].require_mpp("spot samples (diameter in µm)")
            d = float(obs[K.obs.diameter_um].iat[i])
            cx, cy = (float(v) for v in centers[i])
            if not (math.isfinite(d) and d > 0 and math.isfinite(cx) and math.isfinite(cy)):
                raise InputError(f"Spot {obs.index[i]!r} has an invalid centre or diameter ({cx}, {cy}, {d}).")
            r = d / 2 / mpp0
            out.append(Geometry("spot", (cx + 0.5 - r, cy + 0.5 - r, cx + 0.5 + r, cy + 0.5 + r), (cx, cy), r))
        elif kind == "region":
            g = polys[i]
            if g is None or g.is_empty or g.area <= 0:
                out.append(Geometry("region", None, polygon=g))
                continue
            x0, y0, x1, y1 = g.bounds
            out.append(Geometry("region", (x0 + 0.5, y0 + 0.5, x1 + 0.5, y1 + 0.5), polygon=g))
        else:
            w, h = slides[ids[i]].dimensions
            out.append(Geometry("image", (0.0, 0.0, float(w), float(h))))
    return out


def _starts(lo: float, hi: float, tile: float, n: int) -> np.ndarray:
    """``n`` tile origins covering [lo, hi) evenly (overlapping when the span is not a multiple)."""
    if n == 1:
        return np.array([(lo + hi) / 2 - tile / 2])
    return lo + np.arange(n) * ((hi - lo) - tile) / (n - 1)


def plan_tiles(geom: Geometry, slide, *, scale: float, size: int, tolerance: float = 0.02,
               mask: Any = "auto") -> list[tuple[float, float, float, float]]:
    """Tiles ``(x0, y0, scale, weight)`` (level-0 edge origin, level-0 px per model px) of one sample.

    A sample no larger than ``size`` model px at ``scale`` (within ``tolerance``) is one tile: its square
    box resampled to ``size`` px (a smaller sample is enlarged). A larger one is covered by
    ``ceil(side / size)`` tiles per axis at exactly ``scale``, spread evenly (they overlap when the side
    is not a multiple of the tile), to be mean-pooled.
    """
    if geom.box is None:
        return []
    if geom.kind == "image":
        from ..io import tile_grid

        mpp0 = slide.mpp
        if mpp0 is None and abs(scale - 1.0) > 1e-9:
            raise InputError("Image samples of a slide without µm/px can only be read at native resolution "
                             "(mpp=None).")
        grid = tile_grid(slide, mpp=None if mpp0 is None else scale * mpp0, size=size, overlap=0, mask=mask)
        tiles = [(s.x0, s.y0, s.scale, float(s.tissue_fraction)) for s in grid.specs]
        if not tiles:  # no tissue found: use the whole image
            grid = tile_grid(slide, mpp=grid.mpp, size=size, overlap=0, mask=None)
            tiles = [(s.x0, s.y0, s.scale, 1.0) for s in grid.specs]
        return tiles
    x0, y0, x1, y1 = geom.box
    tile = size * scale  # level-0 px per tile side
    nx = max(1, math.ceil((x1 - x0) / tile - tolerance))
    ny = max(1, math.ceil((y1 - y0) / tile - tolerance))
    if nx == 1 and ny == 1:
        side = max(x1 - x0, y1 - y0)
        return [((x0 + x1) / 2 - side / 2, (y0 + y1) / 2 - side / 2, side / size, 1.0)]
    xs, ys = _starts(x0, x1, tile, nx), _starts(y0, y1, tile, ny)
    gx, gy = np.meshgrid(xs, ys)  # row-major: y outer
    gx, gy = gx.ravel(), gy.ravel()
    if geom.kind == "region":
        import shapely

        # polygon in edge coordinates
        poly = shapely.affinity.translate(geom.polygon, 0.5, 0.5)
        boxes = shapely.box(gx, gy, gx + tile, gy + tile)
        w = shapely.area(shapely.intersection(boxes, poly)) / (tile * tile)
        keep = w > 1e-9
        return [(float(a), float(b), scale, float(c)) for a, b, c in zip(gx[keep], gy[keep], w[keep])]
    return [(float(a), float(b), scale, 1.0) for a, b in zip(gx, gy)]


def read_tile(slide, x0: float, y0: float, scale: float, size: int) -> np.ndarray:
    """(size, size, C) pixels of the square ``size * scale`` level-0 px from edge origin (x0, y0)."""
    from ..io._resample import read_resampled

    img = read_resampled(slide, x0, y0, scale, (size, size))
    return img[..., None] if img.ndim == 2 else img


def pixel_chunks(geom: Geometry, slide, *, scale: float, chunk: int = 1024) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(pixels (n, C), )`` of the sample's own pixels at ``scale`` (level-0 px per px), chunk by chunk.

    Yields ``(image (h, w, C), inside (h, w) bool)``: pixels whose centre lies inside the sample (box,
    spot circle or region polygon) and inside the slide. Image samples cover the whole slide.
    """
    from ..io._resample import read_resampled

    if geom.box is None:
        return
    x0, y0, x1, y1 = geom.box
    # a lattice of pixels of side `scale` anchored at the slide's corner (at native resolution: the slide's
    # own pixels, no resampling); pixels count when their centre lies inside the sample
    i0, j0 = math.floor(x0 / scale + 1e-9), math.floor(y0 / scale + 1e-9)
    nx = max(1, math.ceil(x1 / scale - 1e-9) - i0)
    ny = max(1, math.ceil(y1 / scale - 1e-9) - j0)
    sx = scale
    W, H = slide.dimensions
    poly = None
    if geom.kind == "region":
        import shapely

        poly = geom.polygon
        shapely.prepare(poly)
    for r0 in range(0, ny, chunk):
        for c0 in range(0, nx, chunk):
            h, w = min(chunk, ny - r0), min(chunk, nx - c0)
            ox, oy = (i0 + c0) * sx, (j0 + r0) * sx
            img = read_resampled(slide, ox, oy, sx, (w, h))
            if img.ndim == 2:
                img = img[..., None]
            # pixel centres, level-0 index coordinates
            cx = ox + (np.arange(w) + 0.5) * sx - 0.5
            cy = oy + (np.arange(h) + 0.5) * sx - 0.5
            inside = ((cy >= -0.5) & (cy < H - 0.5))[:, None] & ((cx >= -0.5) & (cx < W - 0.5))[None, :]
            if geom.kind == "grid":  # half-open box, as for cell membership
                inside &= ((cy >= y0 - 0.5) & (cy < y1 - 0.5))[:, None] & ((cx >= x0 - 0.5) & (cx < x1 - 0.5))[None, :]
            if geom.kind == "spot":
                ccx, ccy = geom.center
                inside &= ((cy - ccy)[:, None] ** 2 + (cx - ccx)[None, :] ** 2) <= geom.radius ** 2
            elif poly is not None:
                import shapely

                gx, gy = np.meshgrid(cx, cy)
                inside &= shapely.contains_xy(poly, gx, gy)
            yield img, inside
