"""Exact areas of samples inside the image and inside a tissue mask (used by the sample constructors).

Conventions (level-0 pixels): tissuegraph's coordinates put pixel centres at integers, so the image
covers ``[-0.5, W - 0.5) x [-0.5, H - 0.5)``. A :class:`tissuegraph.io.TissueMask` pixel ``(r, c)``
covers ``[c dx - 0.5, (c + 1) dx - 0.5) x [r dy - 0.5, (r + 1) dy - 0.5)`` in these coordinates
(``dx = W / mask_width``, ``dy = H / mask_height``), so the mask covers exactly the image.

Every tissue area here is **exact with respect to the mask's pixels**: the tissue is the union of the
mask's tissue pixels (axis-aligned rectangles of ``dx x dy`` level-0 px), and the area of a sample
inside the tissue is the exact area of the sample's geometry intersected with that union, with no
rasterisation of the sample and no sampling:

- boxes (grid patches): the summed-area table of the mask, bilinearly interpolated at the box corners
  (the bilinear interpolant of a summed-area table *is* the integral of the piecewise-constant mask),
  one vectorised pass for all boxes;
- discs (spots): the closed-form area of a disc intersected with each mask pixel of its bounding box
  (``circular segment`` integrals), vectorised over all spots;
- polygons (regions): ``area(P ∩ tissue) = Σ_nodes D[node] Φ_P(node)``, where ``D`` is the second
  difference of the mask (non-zero only at corners of the tissue outline) and ``Φ_P(X, Y)`` the area
  of ``P ∩ {x < X, y < Y}``, computed in closed form from the polygon's edges (Green's theorem with
  the integrand clamped at ``Y``), holes included.

The image area of a sample is its geometry intersected with the image rectangle (exact). How well
the mask follows the real tissue is the mask's business (its resolution, ``tg.io.tissue_mask``'s
thresholds); these areas add no error of their own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError

__all__ = ["SlideArea", "resolve_tissue", "box_areas", "disc_areas", "polygon_areas", "whole_areas"]

_CHUNK = 4_000_000  # bound on the size of the intermediate arrays


@dataclass
class SlideArea:
    """What is known about one slide's extent: its level-0 size and (optionally) its tissue mask."""

    width: int
    height: int
    mask: np.ndarray | None  # bool (rows, cols) covering exactly the image, or None (tissue unknown)
    source: str  # 'mask' (a TissueMask given), 'slide' (tissue_mask(slide) computed)
    params: dict

    @property
    def downsample(self) -> tuple[float, float]:
        return self.width / self.mask.shape[1], self.height / self.mask.shape[0]

    def sat(self) -> np.ndarray:
        """Summed-area table ``S[r, c] = mask[:r, :c].sum()`` (shape ``(rows + 1, cols + 1)``)."""
        if getattr(self, "_sat", None) is None:
            m = self.mask
            s = np.zeros((m.shape[0] + 1, m.shape[1] + 1), dtype=np.float64)
            np.cumsum(np.cumsum(m, axis=0, dtype=np.int64), axis=1, out=s[1:, 1:], dtype=np.float64)
            self._sat = s
        return self._sat


def _one(value: Any, what: str) -> SlideArea:
    from ..io import Slide, TissueMask, open_slide, tissue_mask

    if isinstance(value, SlideArea):
        return value
    if isinstance(value, TissueMask):
        w, h = value.level0_size
        return SlideArea(w, h, np.asarray(value.mask, dtype=bool), "mask", dict(value.params))
    if isinstance(value, (str, Path)) or isinstance(value, Slide):
        slide = open_slide(value) if not isinstance(value, Slide) else value
        tm = tissue_mask(slide)
        w, h = tm.level0_size
        return SlideArea(w, h, tm.mask, "slide", {**tm.params, "slide_id": slide.slide_id})
    if isinstance(value, np.ndarray):
        raise InputError(f"{what}: a bare mask array does not say which level-0 area it covers; wrap it as "
                         "tg.io.TissueMask(mask, (width, height)) with the slide's level-0 size.")
    raise InputError(f"{what} must be a tg.io.TissueMask, a Slide or a slide path (its tissue mask is then "
                     f"computed with tg.io.tissue_mask), or a mapping {{slide_id: one of those}}; got "
                     f"{type(value).__name__}.")


def resolve_tissue(tissue: Any, slide_ids: list[str], used: list[int], *, default: int | None,
                   what: str = "tissue") -> dict[int, SlideArea]:
    """``tissue=`` argument → ``{slide index: SlideArea}`` for the slides it describes."""
    if tissue is None:
        return {}
    if isinstance(tissue, Mapping):
        out = {}
        for sid, v in tissue.items():
            if str(sid) not in slide_ids:
                raise InputError(f"{what} names slide {sid!r}, which is not among the cells' slides "
                                 f"{slide_ids[:10]}.")
            out[slide_ids.index(str(sid))] = _one(v, f"{what}[{sid!r}]")
        return out
    if default is None:
        if len(used) != 1:
            raise InputError(f"The samples span {len(used)} slides; pass {what} as a mapping "
                             "{slide_id: TissueMask or slide} (one entry per slide).")
        default = used[0]
    return {default: _one(tissue, what)}


# ------------------------------------------------------------------------------------------------ boxes
def _sat_at(S: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Integral of the mask over ``[0, u) x [0, v)`` (mask-pixel units) by bilinear interpolation of S."""
    rows, cols = S.shape[0] - 1, S.shape[1] - 1
    u = np.clip(u, 0.0, cols)
    v = np.clip(v, 0.0, rows)
    c = np.minimum(np.floor(u).astype(np.int64), cols - 1)
    r = np.minimum(np.floor(v).astype(np.int64), rows - 1)
    a = u - c
    b = v - r
    s00, s01, s10, s11 = S[r, c], S[r, c + 1], S[r + 1, c], S[r + 1, c + 1]
    return s00 + a * (s01 - s00) + b * (s10 - s00) + a * b * (s11 - s01 - s10 + s00)


def box_areas(sa: SlideArea, x0, y0, x1, y1) -> tuple[np.ndarray, np.ndarray | None]:
    """Image and tissue areas (level-0 px²) of boxes ``[x0, x1) x [y0, y1)`` (pixel-centre coordinates)."""
    e = [np.asarray(v, dtype=np.float64) + 0.5 for v in (x0, y0, x1, y1)]  # edge coordinates
    wx = np.clip(np.minimum(e[2], sa.width) - np.maximum(e[0], 0.0), 0.0, None)
    wy = np.clip(np.minimum(e[3], sa.height) - np.maximum(e[1], 0.0), 0.0, None)
    image = wx * wy
    if sa.mask is None:
        return image, None
    dx, dy = sa.downsample
    S = sa.sat()
    u0, u1, v0, v1 = e[0] / dx, e[2] / dx, e[1] / dy, e[3] / dy
    t = _sat_at(S, u1, v1) - _sat_at(S, u0, v1) - _sat_at(S, u1, v0) + _sat_at(S, u0, v0)
    return image, np.clip(t, 0.0, None) * dx * dy


# ------------------------------------------------------------------------------------------------ discs
def _segment_integral(x: np.ndarray, h: np.ndarray, r: float) -> np.ndarray:
    """∫_0^x (sqrt(r² - t²) - h) dt for |x| <= r."""
    return 0.5 * (x * np.sqrt(np.maximum(r * r - x * x, 0.0)) + r * r * np.arcsin(np.clip(x / r, -1.0, 1.0))) - h * x


def _disc_strip(x0: np.ndarray, x1: np.ndarray, h: np.ndarray, r: float) -> np.ndarray:
    """Area of the disc (centre 0, radius r) ∩ [x0, x1] x [h, ∞), for h >= 0."""
    s = np.sqrt(np.maximum(r * r - h * h, 0.0))
    return _segment_integral(np.clip(x1, -s, s), h, r) - _segment_integral(np.clip(x0, -s, s), h, r)


def _disc_box(x0, x1, y0, y1, r: float) -> np.ndarray:
    """Exact area of the disc (centre 0, radius r) ∩ [x0, x1] x [y0, y1] (x0 <= x1, y0 <= y1)."""
    zero = np.zeros_like(np.asarray(y0, dtype=np.float64))
    top = _disc_strip(x0, x1, zero, r)

    def w(y):  # signed area of the disc ∩ [x0, x1] x [0, y]
        return np.sign(y) * (top - _disc_strip(x0, x1, np.abs(y), r))

    return np.clip(w(np.asarray(y1, np.float64)) - w(np.asarray(y0, np.float64)), 0.0, None)


def disc_areas(sa: SlideArea, cx: np.ndarray, cy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Image and tissue areas (level-0 px²) of discs centred at (cx, cy) (pixel-centre coordinates)."""
    cx = np.asarray(cx, dtype=np.float64) + 0.5  # edge coordinates
    cy = np.asarray(cy, dtype=np.float64) + 0.5
    r = float(radius)
    image = _disc_box(-cx, sa.width - cx, -cy, sa.height - cy, r)
    if sa.mask is None:
        return image, None
    m = sa.mask
    rows, cols = m.shape
    dx, dy = sa.downsample
    kx = int(math.ceil(2 * r / dx)) + 2
    ky = int(math.ceil(2 * r / dy)) + 2
    tissue = np.zeros(len(cx))
    step = max(1, _CHUNK // (kx * ky))
    jx, jy = np.arange(kx), np.arange(ky)
    for a in range(0, len(cx), step):
        b = min(len(cx), a + step)
        c = np.floor((cx[a:b] - r) / dx).astype(np.int64)[:, None] + jx[None, :]  # (n, kx) mask columns
        rr = np.floor((cy[a:b] - r) / dy).astype(np.int64)[:, None] + jy[None, :]  # (n, ky) mask rows
        vx0, vx1 = c * dx - cx[a:b, None], (c + 1) * dx - cx[a:b, None]
        vy0, vy1 = rr * dy - cy[a:b, None], (rr + 1) * dy - cy[a:b, None]
        inside = (rr[:, :, None] >= 0) & (rr[:, :, None] < rows) & (c[:, None, :] >= 0) & (c[:, None, :] < cols)
        val = np.zeros(inside.shape, dtype=bool)
        val[inside] = m[np.broadcast_to(rr[:, :, None], inside.shape)[inside],
                        np.broadcast_to(c[:, None, :], inside.shape)[inside]]
        shape = val.shape
        area = _disc_box(np.broadcast_to(vx0[:, None, :], shape), np.broadcast_to(vx1[:, None, :], shape),
                         np.broadcast_to(vy0[:, :, None], shape), np.broadcast_to(vy1[:, :, None], shape), r)
        tissue[a:b] = (area * val).sum(axis=(1, 2))
    return image, tissue


# --------------------------------------------------------------------------------------------- polygons
def _edges(geom) -> np.ndarray:
    """Directed edges (xa, ya, xb, yb) of every ring, exteriors counter-clockwise (positive shoelace
    area), holes clockwise, so that -∮ y dx over all rings is the polygon's area."""
    import shapely
    from shapely.geometry.polygon import orient

    out = []
    for poly in shapely.get_parts(geom):
        if poly.is_empty:
            continue
        poly = orient(poly, sign=1.0)
        for ring in [poly.exterior, *poly.interiors]:
            xy = np.asarray(ring.coords, dtype=np.float64)
            out.append(np.column_stack([xy[:-1], xy[1:]]))
    return np.concatenate(out) if out else np.zeros((0, 4))


def _quadrant_area(edges: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Φ(X, Y) = area of the polygon ∩ {x < X, y < Y} for every (X, Y), from its directed edges."""
    xa, ya, xb, yb = edges.T
    keep = xa != xb  # vertical edges add nothing to ∫ y dx
    xa, ya, xb, yb = xa[keep], ya[keep], xb[keep], yb[keep]
    sgn = np.sign(xb - xa)
    fwd = xb > xa
    lo = np.where(fwd, xa, xb)
    hi = np.where(fwd, xb, xa)
    ylo = np.where(fwd, ya, yb)
    yhi = np.where(fwd, yb, ya)
    slope = (yhi - ylo) / (hi - lo)
    out = np.zeros(len(X))
    if len(lo) == 0:
        return out
    step = max(1, _CHUNK // len(lo))
    for a in range(0, len(X), step):
        Xs, Ys = X[a:a + step, None], Y[a:a + step, None]
        t = np.minimum(hi[None, :], Xs)
        w = np.clip(t - lo[None, :], 0.0, None)
        yt = ylo[None, :] + slope[None, :] * w
        p = ylo[None, :] - Ys
        q = yt - Ys
        with np.errstate(invalid="ignore", divide="ignore"):
            excess = np.where((p >= 0) & (q >= 0), w * (p + q) / 2,
                              np.where((p <= 0) & (q <= 0), 0.0,
                                       w * np.maximum(p, q) ** 2 / (2 * np.abs(p - q))))
        integral = w * (ylo[None, :] + yt) / 2 - excess  # ∫_lo^t min(y(x), Y) dx
        out[a:a + step] = -(sgn[None, :] * integral).sum(axis=1)
    return out


def _polygon_tissue(sa: SlideArea, geom) -> float:
    """Exact area (level-0 px²) of ``geom`` (pixel-centre coordinates) inside the mask's tissue pixels."""
    import shapely

    if geom.is_empty:
        return 0.0
    dx, dy = sa.downsample
    m = sa.mask
    rows, cols = m.shape
    # to mask-pixel units (edge coordinates / downsample): pixel (r, c) = [c, c+1) x [r, r+1)
    g = shapely.transform(geom, lambda xy: (xy + 0.5) / np.array([dx, dy]))
    u0, v0, u1, v1 = g.bounds
    c0, c1 = max(int(math.floor(u0)), 0), min(int(math.ceil(u1)), cols)
    r0, r1 = max(int(math.floor(v0)), 0), min(int(math.ceil(v1)), rows)
    if c1 <= c0 or r1 <= r0:
        return 0.0
    P = np.pad(m[r0:r1, c0:c1].astype(np.int8), 1)
    D = P[:-1, :-1] - P[:-1, 1:] - P[1:, :-1] + P[1:, 1:]  # weight of the node (r0 + i, c0 + j)
    i, j = np.nonzero(D)
    if len(i) == 0:
        return 0.0
    phi = _quadrant_area(_edges(g), (c0 + j).astype(np.float64), (r0 + i).astype(np.float64))
    return max(float((D[i, j] * phi).sum()), 0.0) * dx * dy


def polygon_areas(sa: SlideArea, geoms: list) -> tuple[np.ndarray, np.ndarray | None]:
    """Image and tissue areas (level-0 px²) of polygons (pixel-centre coordinates)."""
    import shapely

    box = shapely.box(-0.5, -0.5, sa.width - 0.5, sa.height - 0.5)
    image = shapely.area(shapely.intersection(np.asarray(geoms, dtype=object), box)).astype(np.float64)
    if sa.mask is None:
        return image, None
    return image, np.array([_polygon_tissue(sa, g) for g in geoms], dtype=np.float64)


def whole_areas(sa: SlideArea) -> tuple[float, float | None]:
    """Image and tissue areas (level-0 px²) of the whole slide."""
    image = float(sa.width) * float(sa.height)
    if sa.mask is None:
        return image, None
    dx, dy = sa.downsample
    return image, float(np.count_nonzero(sa.mask)) * dx * dy
