"""Exact nucleus outlines: label image <-> pixel-corner ("crack") polygons.

Conventions (see ``docs/architecture.md``)
------------------------------------------
* Coordinates are ``(x, y)`` = (column, row).  Pixel *centres* sit at integer coordinates, so pixel
  ``(row r, col c)`` covers ``[c - 0.5, c + 0.5) x [r - 0.5, r + 0.5)`` and its corners are at
  half-integers.
* A contour is the closed outer boundary of a mask, running along pixel edges (the crack boundary).
  It is an ``(n, 2)`` float32 array of the vertices where the direction changes (collinear runs are
  merged; the closing edge from the last vertex back to the first is implied, the first vertex is not
  repeated).  Example: the single pixel ``(r=2, c=3)`` gives
  ``[[2.5, 1.5], [3.5, 1.5], [3.5, 2.5], [2.5, 2.5]]``.
* Orientation: every contour has a **positive** shoelace area
  ``0.5 * sum(x[k] * y[k+1] - x[k+1] * y[k])``: counter-clockwise in a y-up (mathematical) frame,
  which is *clockwise as displayed* on screen with the y axis pointing down (like ``shapely``'s
  ``orient(polygon, sign=1.0)``).  The first vertex is the top-left corner of the leftmost pixel of
  the top row of the mask, and the first edge runs along the top of that pixel towards +x.
* Masks are treated as 8-connected (background as 4-connected): two pixels touching only at a corner
  belong to the same piece, and the outline passes through that shared corner twice (it touches
  itself at a point there, which does not change which pixel centres are inside).
* Holes are filled: only the outer boundary is returned.  A label made of several pieces keeps the
  piece whose outer boundary encloses the largest area (ties: the piece that starts first in
  row-major order); the others are dropped (``tg.seg`` guarantees connected masks, so this only
  matters for foreign label images).

:func:`rasterize_contours` is the exact inverse: a pixel belongs to a polygon iff its centre is
inside (even-odd rule), so ``rasterize_contours(label_contours(m), m.shape)`` equals ``m`` for every
label image whose masks are connected and hole-free.

Mapping between a tile and level-0 coordinates
----------------------------------------------
Both functions take ``offset`` and ``scale``: a coordinate ``p`` in the contour's space and a pixel
position ``u`` in the array relate by ``p = offset + scale * u`` (``u = (p - offset) / scale``).  For
a tile whose level-0 origin is ``(X, Y)`` and that has ``s`` level-0 px per tile px (the convention
``level0 = X + (u + 0.5) * s - 0.5``), use ``offset = (X + 0.5 * s - 0.5, Y + 0.5 * s - 0.5)`` and
``scale = s``; :func:`tile_offset` computes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._errors import InputError
from ._validate import check_labels, check_positive

__all__ = ["label_contours", "rasterize_contours", "tile_offset", "polygon_area", "label_centroids"]

# Edge directions in (d_row, d_col) on the corner grid: 0 = +x, 1 = +y, 2 = -x, 3 = -y.
_DI = np.array([0, 1, 0, -1], dtype=np.int64)
_DJ = np.array([1, 0, -1, 0], dtype=np.int64)
_DENSE_MAP_MAX = 2 ** 25  # corner-direction keys up to which a dense edge map is used (128 MiB)


def tile_offset(origin: Sequence[float], scale: float = 1.0) -> tuple[float, float]:
    """``offset`` for a tile with level-0 origin ``(X, Y)`` and ``scale`` level-0 px per tile px.

    Tile pixel ``u`` has its centre at level-0 ``X + (u + 0.5) * scale - 0.5 = offset + scale * u``.
    """
    scale = float(check_positive(scale, "scale"))
    x0, y0 = (float(v) for v in origin)
    return (x0 + 0.5 * scale - 0.5, y0 + 0.5 * scale - 0.5)


def _check_offset_scale(offset: Any, scale: Any) -> tuple[np.ndarray, float]:
    off = np.asarray(offset, dtype=np.float64)
    if off.shape != (2,) or not np.isfinite(off).all():
        raise InputError(f"offset must be a finite (x, y) pair, got {offset!r}.")
    return off, float(check_positive(scale, "scale"))


def label_centroids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, area, cx, cy)`` of the objects of a label image, ascending ids (0 = background excluded).

    Centroids are means of pixel-centre coordinates (x = column, y = row); areas are pixel counts.
    One pass of ``np.bincount`` (``np.unique`` only when the ids are sparse and huge).
    """
    labels = check_labels(labels)
    flat = labels.ravel()
    n_max = int(flat.max()) if flat.size else 0
    if n_max == 0:
        z = np.zeros(0)
        return np.zeros(0, np.int64), np.zeros(0, np.int64), z, z
    fg = np.flatnonzero(flat)
    rows, cols = np.divmod(fg, labels.shape[1])
    lab = flat[fg].astype(np.int64)
    if n_max > 4 * flat.size + 1024:  # sparse huge ids (e.g. hashed): compress them first
        uniq, lab = np.unique(lab, return_inverse=True)
        lab = lab + 1
    else:
        uniq = None
    n = int(lab.max()) + 1
    area = np.bincount(lab, minlength=n)
    sx = np.bincount(lab, weights=cols, minlength=n)
    sy = np.bincount(lab, weights=rows, minlength=n)
    present = np.flatnonzero(area)
    present = present[present > 0]
    ids = present if uniq is None else uniq[present - 1].astype(np.int64)
    a = area[present]
    return ids.astype(np.int64), a.astype(np.int64), sx[present] / a, sy[present] / a


def polygon_area(polygon: np.ndarray) -> float:
    """Signed shoelace area of a closed polygon ``(n, 2)`` (x, y); positive for tissuegraph contours."""
    p = np.asarray(polygon, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise InputError(f"polygon must have shape (n, 2), got {p.shape}.")
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _crack_edges(labels: np.ndarray):
    """All directed boundary edges: (start corner row, start corner col, direction, label).

    The region is on the left of each edge in a y-up frame (positive orientation).
    """
    h, w = labels.shape
    p = np.pad(labels, 1)
    core = p[1:-1, 1:-1]
    fg = core > 0
    out = []
    # (neighbour slice, start-corner offset (di, dj), direction)
    specs = (
        (p[:-2, 1:-1], (0, 0), 0),  # top edge: (r, c) -> (r, c+1)
        (p[1:-1, 2:], (0, 1), 1),  # right edge: (r, c+1) -> (r+1, c+1)
        (p[2:, 1:-1], (1, 1), 2),  # bottom edge: (r+1, c+1) -> (r+1, c)
        (p[1:-1, :-2], (1, 0), 3),  # left edge: (r+1, c) -> (r, c)
    )
    for nb, (di, dj), d in specs:
        r, c = np.nonzero(fg & (core != nb))
        out.append((r + di, c + dj, np.full(len(r), d, dtype=np.int8), core[r, c]))
    ci = np.concatenate([o[0] for o in out]).astype(np.int64)
    cj = np.concatenate([o[1] for o in out]).astype(np.int64)
    d = np.concatenate([o[2] for o in out]).astype(np.int64)
    lab = np.concatenate([o[3] for o in out])
    return ci, cj, d, lab


def label_contours(labels: np.ndarray, *, ids: Sequence[int] | np.ndarray | None = None,
                   offset: Sequence[float] = (0.0, 0.0), scale: float = 1.0) -> dict[int, np.ndarray]:
    """Exact pixel-corner outlines of every object in an instance-label image.

    Parameters
    ----------
    labels
        2-D integer label image, 0 = background.
    ids
        Labels to outline (in this order).  Default: every label present, ascending.  Every id must be
        present in ``labels``.
    offset, scale
        Map array positions ``u`` to output coordinates ``offset + scale * u`` (see the module
        docstring; the default keeps array coordinates, pixel centres at integers).

    Returns
    -------
    dict
        ``{label: (n, 2) float32 array of (x, y) vertices}``, in the order of ``ids``.  Orientation,
        vertex order, 8-connectivity, filled holes and the "largest piece" rule are described in
        :mod:`tissuegraph._contours`.
    """
    labels = check_labels(labels)
    off, scale = _check_offset_scale(offset, scale)
    if ids is not None:
        ids_arr = np.asarray(ids)
        if ids_arr.ndim != 1 or (ids_arr.size and not np.issubdtype(ids_arr.dtype, np.integer)):
            raise InputError(f"ids must be a 1-D sequence of integer labels, got {ids!r:.200}.")
        if (ids_arr <= 0).any():
            raise InputError("ids must be labels > 0 (0 is background).")
        if len(np.unique(ids_arr)) != len(ids_arr):
            raise InputError("ids contains duplicates.")
        if ids_arr.size == 0:
            return {}
        present = np.isin(ids_arr, labels.ravel()) if labels.size else np.zeros(len(ids_arr), bool)
        if not present.all():
            missing = ids_arr[~present][:5].tolist()
            raise InputError(f"{int((~present).sum())} of the requested ids are not in the label image, "
                             f"e.g. {missing}.")
        # Other labels do not change these labels' boundaries: blank them to skip their edges.
        keep = np.isin(labels, ids_arr)
        labels = np.where(keep, labels, 0)
    chains = _outer_chains(labels)
    if chains is None:
        return {}
    lab_ids, bounds, ci, cj, d = chains
    # Keep only the corners where the direction changes.
    g_start, g_end = bounds[:-1], bounds[1:]
    prev_d = np.empty_like(d)
    prev_d[1:] = d[:-1]
    prev_d[g_start] = d[g_end - 1]
    keep = d != prev_d
    counts = np.add.reduceat(keep.astype(np.int64), g_start)
    vx = (cj[keep] - 0.5) * scale + off[0]
    vy = (ci[keep] - 0.5) * scale + off[1]
    verts = np.stack([vx, vy], axis=1).astype(np.float32)
    pieces = np.split(verts, np.cumsum(counts)[:-1])
    by_label = dict(zip(lab_ids.tolist(), pieces))
    if ids is None:
        return by_label
    return {int(k): by_label[int(k)] for k in ids_arr}


def _outer_chains(labels: np.ndarray):
    """Ordered crack edges of the outer boundary of every label (the engine of :func:`label_contours`).

    Returns ``None`` for an image without objects, else ``(ids, bounds, ci, cj, d)``: ``ids`` the
    labels (ascending); the edges of ``ids[k]`` are ``bounds[k]:bounds[k+1]``, in boundary order
    starting at the top-left corner; edge ``e`` starts at corner ``(ci[e], cj[e])`` (the top-left
    corner of pixel ``(ci, cj)``) and runs in direction ``d[e]`` (0 = +x, 1 = +y, 2 = -x, 3 = -y).
    """
    if labels.size == 0 or not labels.any():
        return None
    h, w = labels.shape
    ci, cj, d, lab = _crack_edges(labels)
    n_edges = len(ci)
    n_cols = w + 1
    key = (ci * n_cols + cj) * 4 + d  # unique per edge (a corner and direction fix the left pixel)
    n_keys = 4 * (h + 1) * n_cols
    if n_keys <= _DENSE_MAP_MAX:
        # dense key -> edge map: O(1) look-ups
        emap = np.full(n_keys, -1, dtype=np.int32)
        emap[key] = np.arange(n_edges, dtype=np.int32)

        def lookup(k: np.ndarray) -> np.ndarray:
            return emap[k].astype(np.int64)
    else:  # huge images: binary search in the sorted keys
        korder = np.argsort(key)
        skey = key[korder]

        def lookup(k: np.ndarray) -> np.ndarray:
            pos = np.minimum(np.searchsorted(skey, k), n_edges - 1)
            return np.where(skey[pos] == k, korder[pos], -1)

    # Successor: at the end corner, the first existing edge of the same label among right turn,
    # straight on, left turn.  Only at a "pinch" (two pixels of the label touching at a corner) are
    # there two candidates; the right turn joins the two pixels (8-connectivity) and keeps holes
    # separate from the outer boundary.
    ei, ej = ci + _DI[d], cj + _DJ[d]
    end_corner = (ei * n_cols + ej) * 4
    nxt = np.full(n_edges, -1, dtype=np.int64)
    for turn in (3, 0, 1):  # right, straight, left
        todo = np.flatnonzero(nxt < 0)
        if todo.size == 0:
            break
        cand = lookup(end_corner[todo] + (d[todo] + turn) % 4)
        ok = cand >= 0
        ok[ok] = lab[cand[ok]] == lab[todo[ok]]
        nxt[todo[ok]] = cand[ok]
    if (nxt < 0).any():  # pragma: no cover - impossible for a crack boundary
        raise RuntimeError("internal error: open crack boundary")

    # Start of every cycle = its edge with the smallest key (the top-left corner, going +x), found by
    # pointer doubling: converges in log2(cycle length) steps.
    cyc = key.copy()
    jump = nxt.copy()
    while True:
        new = np.minimum(cyc, cyc[jump])
        if np.array_equal(new, cyc):
            break
        cyc = new
        jump = jump[jump]
    start = lookup(cyc)  # start edge of each edge's cycle

    # Rank within the cycle, from the start edge (list ranking, Wyllie's pointer jumping).
    last = nxt == start
    link = np.where(last, -1, nxt)
    dist = (~last).astype(np.int64)  # steps to the last edge of the cycle
    active = np.flatnonzero(link >= 0)
    while active.size:
        tgt = link[active]
        dist[active] += dist[tgt]
        link[active] = link[tgt]
        active = active[link[active] >= 0]

    # Twice the signed area of every cycle (exact integer arithmetic on the corner grid, x=j, y=i).
    cross = (cj * ei - ej * ci).astype(np.float64)
    area2 = np.bincount(start, weights=cross, minlength=n_edges)
    size = np.bincount(start, minlength=n_edges)
    starts = np.flatnonzero(size)  # one per cycle
    cyc_label = lab[starts]
    # Per label: the cycle with the largest area (outer boundaries are positive, holes negative);
    # ties: the cycle starting first in row-major order.
    pick = np.lexsort((key[starts], -area2[starts], cyc_label))
    cl = cyc_label[pick]
    first = np.ones(len(pick), dtype=bool)
    first[1:] = cl[1:] != cl[:-1]
    chosen = starts[pick[first]]  # start edges, ordered by label
    chosen_labels = cyc_label[pick[first]]

    # Scatter the edges of the chosen cycles: label order, then along the cycle from its start.
    lengths = size[chosen]
    bounds = np.zeros(len(chosen) + 1, dtype=np.int64)
    np.cumsum(lengths, out=bounds[1:])
    slot = np.full(n_edges, -1, dtype=np.int64)
    slot[chosen] = bounds[:-1]
    base = slot[start]
    e = np.flatnonzero(base >= 0)
    pos = base[e] + (size[start[e]] - 1 - dist[e])
    order = np.empty(bounds[-1], dtype=np.int64)
    order[pos] = e
    return chosen_labels, bounds, ci[order], cj[order], d[order]


def _as_polygons(contours: Any, ids: Any) -> tuple[list[np.ndarray], np.ndarray]:
    if isinstance(contours, Mapping):
        polys = list(contours.values())
        default_ids = list(contours.keys())
    else:
        if hasattr(contours, "tolist") and not isinstance(contours, np.ndarray):
            contours = contours.tolist()  # pandas Series of arrays
        if isinstance(contours, np.ndarray) and contours.ndim == 2:
            raise InputError("contours must be a sequence (or dict) of (n, 2) polygons, got a single "
                             "2-D array; wrap it in a list.")
        polys = list(contours)
        default_ids = list(range(1, len(polys) + 1))
    ids_arr = np.asarray(default_ids if ids is None else ids)
    if ids_arr.ndim != 1 or len(ids_arr) != len(polys):
        raise InputError(f"ids must be 1-D with one id per contour ({len(polys)}), got shape {ids_arr.shape}.")
    if ids_arr.size and (not np.issubdtype(ids_arr.dtype, np.integer) or (ids_arr <= 0).any()):
        raise InputError("ids must be integers > 0 (0 is background).")
    out = []
    for k, p in enumerate(polys):
        a = np.asarray(p, dtype=np.float64)
        if a.size == 0:
            a = a.reshape(0, 2)
        if a.ndim != 2 or a.shape[1] != 2:
            raise InputError(f"contour {k} (id {ids_arr[k]}) must have shape (n, 2), got {a.shape}.")
        if not np.isfinite(a).all():
            raise InputError(f"contour {k} (id {ids_arr[k]}) contains NaN or infinite coordinates.")
        out.append(a)
    return out, ids_arr.astype(np.int64)


def _polygon_pixels(polys: list[np.ndarray], ids_arr: np.ndarray, h: int, w: int, off: np.ndarray,
                    scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (row-major in an (h, w) array) of the pixels whose centre is inside each polygon,
    and the id of that polygon, in polygon order (pixels of overlapping polygons appear twice)."""
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=ids_arr.dtype))
    if not polys or h == 0 or w == 0:
        return empty
    n_v = np.array([len(p) for p in polys], dtype=np.int64)
    valid = n_v >= 3
    if not valid.any():
        return empty
    vpolys = [p for p, v in zip(polys, valid) if v]
    pid = np.repeat(np.nonzero(valid)[0], n_v[valid])
    pts = (np.concatenate(vpolys) - off) / scale  # pixel coordinates, centres at integers
    # Edge k goes from vertex k to vertex k+1 of the same polygon (wrapping around).
    n_valid = n_v[valid]
    first = np.cumsum(np.r_[0, n_valid[:-1]])
    nxt = np.arange(len(pts)) + 1
    nxt[first + n_valid - 1] = first
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = pts[nxt, 0], pts[nxt, 1]
    # Rows crossed (half-open in y): centre row v with min(y) <= v < max(y).
    ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
    v0 = np.maximum(np.ceil(ylo), 0).astype(np.int64)
    v1 = np.minimum(np.ceil(yhi), h).astype(np.int64)  # exclusive
    n_rows = np.maximum(v1 - v0, 0)
    # Crossings with rows outside the array are not needed: spans are per row.
    sel = np.nonzero(n_rows > 0)[0]
    if sel.size == 0:
        return empty
    reps = n_rows[sel]
    e = np.repeat(sel, reps)
    starts = np.cumsum(reps) - reps
    v = v0[e] + (np.arange(len(e)) - np.repeat(starts, reps))
    t = (v - y0[e]) / (y1[e] - y0[e])
    xc = x0[e] + t * (x1[e] - x0[e])
    p_of = pid[e]
    o = np.lexsort((xc, v, p_of))
    xc, v, p_of = xc[o], v[o], p_of[o]
    # Every (polygon, row) group holds an even number of crossings: pair them up.
    xa, xb = xc[0::2], xc[1::2]
    vv, pp = v[0::2], p_of[0::2]
    ua = np.maximum(np.ceil(xa), 0).astype(np.int64)
    ub = np.minimum(np.ceil(xb), w).astype(np.int64)  # exclusive
    length = ub - ua
    ok = length > 0
    ua, length, vv, pp = ua[ok], length[ok], vv[ok], pp[ok]
    if ua.size == 0:
        return empty
    total = int(length.sum())
    span_start = np.cumsum(length) - length
    flat = np.repeat(vv * w + ua - span_start, length) + np.arange(total)
    vals = ids_arr[np.repeat(pp, length)]
    return flat, vals


def rasterize_contours(contours: Mapping[int, np.ndarray] | Sequence[np.ndarray], shape: tuple[int, int], *,
                       ids: Sequence[int] | np.ndarray | None = None,
                       offset: Sequence[float] = (0.0, 0.0), scale: float = 1.0,
                       dtype: Any = None) -> np.ndarray:
    """Fill polygons into a label image: pixel ``(r, c)`` gets a polygon's id iff its centre is inside.

    The exact inverse of :func:`label_contours` (for connected, hole-free masks).

    Parameters
    ----------
    contours
        ``{id: (n, 2) polygon}`` or a sequence of polygons (e.g. ``nuclei['contour']``); vertices
        ``(x, y)``, closed implicitly, either orientation.
    shape
        ``(height, width)`` of the output.
    ids
        Label of each polygon (default: the dict keys, or ``1..n`` for a sequence).
    offset, scale
        Array pixel ``u`` has its centre at contour coordinate ``offset + scale * u``; equivalently
        ``pixel = (coord - offset) / scale``.  For a tile with level-0 origin ``(X, Y)`` at ``s``
        level-0 px per tile px use ``offset=tile_offset((X, Y), s)``, ``scale=s``.
    dtype
        Output dtype (default ``int32``, or ``int64`` when an id does not fit).

    Returns
    -------
    numpy.ndarray
        Label image of ``shape``, 0 = background.

    Notes
    -----
    Inside-ness follows the even-odd rule with half-open spans, so a pixel centre lying exactly on an
    edge is inside for left and top edges and outside for right and bottom ones (never happens for
    pixel-corner polygons, whose vertices are at half-integers).  Where polygons overlap the one
    listed later wins.  Parts outside the array are clipped.
    """
    try:
        h, w = (int(s) for s in shape)
    except Exception as exc:
        raise InputError(f"shape must be (height, width), got {shape!r}.") from exc
    if h < 0 or w < 0:
        raise InputError(f"shape must be non-negative, got {shape!r}.")
    off, scale = _check_offset_scale(offset, scale)
    polys, ids_arr = _as_polygons(contours, ids)
    if dtype is None:
        dtype = np.int32 if (ids_arr.size == 0 or ids_arr.max() <= np.iinfo(np.int32).max) else np.int64
    out = np.zeros((h, w), dtype=dtype)

    flat, vals = _polygon_pixels(polys, ids_arr, h, w, off, scale)
    # Spans are in polygon order; make "later polygon wins" explicit where they overlap.
    if len(polys) > 1 and flat.size and np.bincount(flat, minlength=h * w).max() > 1:
        uniq, last = np.unique(flat[::-1], return_index=True)
        flat, vals = uniq, vals[::-1][last]
    out.ravel()[flat] = vals
    return out
