"""Exact k-nearest-neighbour search on a uniform grid, compiled with numba.

Used by :func:`tissuegraph.graph._build._knn_csr` (imported lazily there: ``import tissuegraph`` does
not import numba).  The result is identical, bit for bit, to the cKDTree path of ``_knn_csr``:

- row ``i`` holds the ``k`` points nearest to ``i``, itself excluded, ranked by ``(distance, original
  index)``: ties at the k-th distance go to the smaller index of the caller's order;
- distances are ``sqrt(dx*dx + dy*dy)`` in float64, evaluated in that order without fused
  multiply-adds, as scipy's cKDTree does for ``p=2``; ties are decided on these rounded distances,
  exactly as the tree path decides them;
- each row's neighbours are sorted by index, distances carried.

Method.  The bounding box is cut into square cells, sized so that a point's own cell holds about
``_target_occupancy(k)`` points (3.25 for k = 6), made smaller while the points crowd (clusters and
empty space).  A counting sort buckets the points by cell, row-major, so that each row of cells is one
contiguous slice of memory (this is also the spatial sort: queries run in cell order and touch data
that is already in cache).  Per query (:func:`_knn_one`):

1. the ``k + 1`` smallest squared distances, with their points, over the 3 x 3 block of cells around
   it (rings farther out while fewer than ``k`` points were seen), then over every further cell that
   the disc of radius ``sqrt(T)`` reaches, ``T`` the current k-th squared distance (shrinking as cells
   are scanned).  Insertion is a branch-free compare-exchange chain.  Cell radii carry a margin
   (``1e-14`` of the box size, far above the rounding in cell coordinates and distances), so no point
   tied at the k-th distance is missed;
2. if the (k+1)-th squared distance is above ``T (1 + 1e-14)``, the ``k`` found are the answer: no
   other point can have the same *rounded* distance ``sqrt(T)`` (``sqrt(d2) <= sqrt(T)`` implies
   ``d2 <= T (1 + 2**-51)``).  Otherwise (ties; coincident points) every point within that bound is
   collected and ranked by (rounded distance, original index);
3. the row is sorted by index and written out (a block of rows at a time, in the original order).

A query whose search exceeds a work budget (an isolated point far from everything, a location with
hundreds of coincident copies) stops and is reported as *hard*; the caller answers those few rows with
the exact tree search.  Inputs that do not suit a grid at all (most points crowded into a few cells
even after refinement: extreme clusters, far outliers, all points identical) make :func:`knn_grid`
return ``None`` and the caller uses the tree for every row.

Threads (``n_jobs > 1``): blocks of query rows on a ``ThreadPoolExecutor``; the kernels release the GIL.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


def _jit(fn=None, **kw):
    """``njit(cache=True, nogil=True)``; without caching when no cache directory is writable."""
    if fn is None:
        return lambda f: _jit(f, **kw)
    try:
        return njit(cache=True, nogil=True, **kw)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True, **kw)(fn)


def _target_occupancy(k: int) -> float:
    """Aimed-for mean number of points in a point's own cell (itself included), measured best."""
    return 1.75 + k / 4.0


_MAX_CELLS_PER_POINT = 4  # memory cap on the grid: cells <= 4 n + 64
_OCC_CAP = 64  # cells fuller than this count as this full in the occupancy estimate
_REFINE_AT = 1.25  # refine the grid while the occupancy is > 1.25x the target
_GIVE_UP_AT = 8.0  # after refinement, > 8x the target: use the tree for every row
_BLOCK = 1 << 16  # query rows per block (threads)


def _budget(k: int) -> int:
    """Work allowed per query (cells visited + points examined) before it is handed to the tree."""
    return 1024 + 64 * k


# ------------------------------------------------------------------------------------------ numba
@_jit
def _cell_counts(x, y, x0, y0, inv_h, nx, ny, cell):
    """Cell id (row-major) of every point into ``cell``; returns counts shifted by one (``c[id+1]``)."""
    counts = np.zeros(nx * ny + 1, dtype=np.int64)
    for i in range(len(x)):
        cx = int((x[i] - x0) * inv_h)
        cy = int((y[i] - y0) * inv_h)
        if cx >= nx:
            cx = nx - 1
        elif cx < 0:
            cx = 0
        if cy >= ny:
            cy = ny - 1
        elif cy < 0:
            cy = 0
        c = cy * nx + cx
        cell[i] = c
        counts[c + 1] += 1
    return counts


@_jit
def _occupancy(counts, n, cap):
    """Mean number of points in a point's own cell, each cell counted as at most ``cap`` full."""
    s = 0.0
    for c in counts:
        s += c * min(c, cap)
    return s / max(n, 1)


@_jit
def _bucket(x, y, cell, counts):
    """Counting sort by cell (stable): coordinates and original indices in cell order, cell starts."""
    n = len(x)
    start = counts  # in place: becomes the exclusive prefix sum
    for c in range(1, len(start)):
        start[c] += start[c - 1]
    fill = start[:-1].copy()
    xs = np.empty(n, dtype=np.float64)
    ys = np.empty(n, dtype=np.float64)
    perm = np.empty(n, dtype=np.int64)
    for i in range(n):
        c = cell[i]
        p = fill[c]
        fill[c] = p + 1
        xs[p] = x[i]
        ys[p] = y[i]
        perm[p] = i
    return xs, ys, perm, start


@_jit
def _smallest(a, b, p, px, py, xs, ys, buf, bj):
    """Merge the points ``a:b`` (cell order; ``p``, the query itself, excluded) into ``buf``/``bj``: the
    ``len(buf)`` smallest squared distances from ``(px, py)`` seen so far, ascending, with positions."""
    m = len(buf)
    last = buf[m - 1]
    for j in range(a, b):
        dx = xs[j] - px
        dy = ys[j] - py
        v = dx * dx + dy * dy
        if v < last and j != p:
            w = j
            for t in range(m):  # branch-free insertion: a compare-exchange chain
                bt = buf[t]
                wt = bj[t]
                lt = v < bt
                buf[t] = v if lt else bt
                bj[t] = w if lt else wt
                v = bt if lt else v
                w = wt if lt else w
            last = buf[m - 1]


@_jit
def _collect(a, b, p, px, py, xs, ys, lim2, sd, sj, cnt):
    """Append the points of ``a:b`` (except ``p``) within squared distance ``lim2`` to ``sd``/``sj``
    (squared distance, cell-order position); returns the new count.  Branch-free: the caller guarantees
    ``len(sd) > cnt + b - a``."""
    for j in range(a, b):
        dx = xs[j] - px
        dy = ys[j] - py
        d2 = dx * dx + dy * dy
        sd[cnt] = d2
        sj[cnt] = j
        cnt += (d2 <= lim2) & (j != p)
    return cnt


@_jit
def _row_span(yy, fx, fy, cx, cy, rr, nx):
    """Cells ``xa..xb`` of row ``yy`` that come within ``rr`` (cell units) of ``(fx, fy)``; ``xa > xb``
    if none.  Row ``yy`` covers ``[yy, yy + 1)`` in cell units, cell ``x`` covers ``[x, x + 1)``."""
    if yy < cy:
        gy = fy - (yy + 1)
    elif yy > cy:
        gy = yy - fy
    else:
        gy = 0.0
    gy = max(gy, 0.0)
    w2 = rr * rr - gy * gy
    if w2 < 0.0:
        return 1, 0
    w = math.sqrt(w2)
    xa = max(math.ceil(fx - w - 1.0), 0)
    xb = min(math.floor(fx + w), nx - 1)
    return xa, xb


@_jit(inline="always")  # numba-level inlining: ~10% faster than a call per query
def _knn_one(p, xs, ys, perm, start, nx, ny, x0, y0, inv_h, tol, k, budget, buf, bj, sd, sj, so):
    """The kNN row of the point at cell-order position ``p``: ``so[:k]`` (original indices, ascending)
    and ``sd[:k]`` (distances); ``False`` if the search ran over ``budget`` (cells + points).

    Steps 1-3 of the module docstring; ``tol`` is the margin for rounding in real units (the cell
    radii carry ``2 tol``).  ``buf``/``bj`` (k + 1), ``sd``/``sj``/``so`` (budget + 2): work space.
    """
    big = float(nx + ny + 4)  # more cells than the grid has, in any direction
    px = xs[p]
    py = ys[p]
    fx = (px - x0) * inv_h
    fy = (py - y0) * inv_h
    cx = min(int(fx), nx - 1)
    cy = min(int(fy), ny - 1)
    for t in range(k + 1):
        buf[t] = np.inf
        bj[t] = -1
    cost = 0
    # (1) Passes over rows of cells, each adding what is not yet in the square already scanned
    # (columns sa..sb x rows ya..yb, empty at first): the 3 x 3 block (r = 1), squares r = 2, 3, ...
    # while fewer than k points were seen, then the disc of radius sqrt(T (1 + 1e-14)) + margin.
    sa, sb, ya, yb = 0, -1, 0, -1
    r = 1
    disc = False
    while True:
        qa = max(cx - r, 0)
        qb = min(cx + r, nx - 1)
        if disc:
            rr = min((math.sqrt(buf[k - 1] * (1.0 + 1e-14)) + 2.0 * tol) * inv_h, big)
            # does the disc reach beyond the square at all?  (the test _row_span makes, per side)
            if not ((sa > 0 and rr >= fx - sa) or (sb < nx - 1 and rr >= sb + 1 - fx)
                    or (ya > 0 and rr >= fy - ya) or (yb < ny - 1 and rr >= yb + 1 - fy)):
                break
            ylo = max(math.ceil(fy - rr - 1.0), 0)
            yhi = min(math.floor(fy + rr), ny - 1)
        else:
            ylo = max(cy - r, 0)
            yhi = min(cy + r, ny - 1)
        for yy in range(ylo, yhi + 1):
            if disc:  # T only shrinks: the span of each row is taken with the current one
                rr = min((math.sqrt(buf[k - 1] * (1.0 + 1e-14)) + 2.0 * tol) * inv_h, big)
                qa, qb = _row_span(yy, fx, fy, cx, cy, rr, nx)
            if ya <= yy <= yb:  # the row crosses the square: the parts left and right of it
                a1, b1, a2, b2 = qa, min(qb, sa - 1), max(qa, sb + 1), qb
            else:
                a1, b1, a2, b2 = qa, qb, 1, 0
            for side in range(2):
                u, v = (a1, b1) if side == 0 else (a2, b2)
                if u > v:
                    continue
                a = start[yy * nx + u]
                b = start[yy * nx + v + 1]
                cost += b - a + v - u + 1
                if cost > budget:
                    return False
                _smallest(a, b, p, px, py, xs, ys, buf, bj)
        if disc:
            break
        sa, sb, ya, yb = qa, qb, max(cy - r, 0), min(cy + r, ny - 1)
        if buf[k - 1] < np.inf:
            disc = True
        elif sa == 0 and sb == nx - 1 and ya == 0 and yb == ny - 1:
            return False  # the whole grid seen: only with squared distances overflowing to inf
        else:
            r += 1
    # (2) the k best by (rounded distance, original index).  Every point with squared distance
    # <= lim2 has been seen, and sqrt(d2) <= sqrt(T) (both rounded) implies d2 <= T (1 + 2**-51):
    # when the (k+1)-th smallest is above lim2, the k in the buffer are the answer; otherwise
    # (ties) collect all points within lim2 and rank them exactly.
    lim2 = buf[k - 1] * (1.0 + 1e-14)
    cnt = 0
    if buf[k] <= lim2:
        rr = min((math.sqrt(lim2) + 2.0 * tol) * inv_h, big)
        ylo = max(math.ceil(fy - rr - 1.0), 0)
        yhi = min(math.floor(fy + rr), ny - 1)
        for yy in range(ylo, yhi + 1):
            xa, xb = _row_span(yy, fx, fy, cx, cy, rr, nx)
            if xa > xb:
                continue
            a = start[yy * nx + xa]
            b = start[yy * nx + xb + 1]
            cost += b - a + xb - xa + 1
            if cost > budget:  # also keeps cnt + b - a < len(sd)
                return False
            cnt = _collect(a, b, p, px, py, xs, ys, lim2, sd, sj, cnt)
    if cnt == 0:
        for t in range(k):
            so[t] = perm[bj[t]]
            sd[t] = math.sqrt(buf[t])
    else:
        for t in range(cnt):
            so[t] = perm[sj[t]]
            sd[t] = math.sqrt(sd[t])
        for t in range(1, cnt):
            d = sd[t]
            o = so[t]
            u = t
            while u > 0 and (sd[u - 1] > d or (sd[u - 1] == d and so[u - 1] > o)):
                sd[u] = sd[u - 1]
                so[u] = so[u - 1]
                u -= 1
            sd[u] = d
            so[u] = o
    # the row, sorted by index
    for t in range(1, k):
        d = sd[t]
        o = so[t]
        u = t
        while u > 0 and so[u - 1] > o:
            sd[u] = sd[u - 1]
            so[u] = so[u - 1]
            u -= 1
        sd[u] = d
        so[u] = o
    return True


@_jit
def _query(xs, ys, perm, start, nx, ny, x0, y0, inv_h, tol, k, budget, lo, hi, out_idx, out_dist, hard):
    """kNN rows of the points at cell-order positions ``lo:hi`` (see :func:`_knn_one`), written to
    ``out_*[i*k : i*k + k]`` for the original index ``i``; returns how many positions went to
    ``hard`` instead (their rows are left as they were).

    Rows are computed in cell order, kept in a small buffer, and written out a block at a time (a
    tight loop of scattered writes is faster than writes scattered among the searches).
    """
    buf = np.empty(k + 1, dtype=np.float64)  # the k + 1 smallest squared distances seen
    bj = np.empty(k + 1, dtype=np.int64)  # and their cell-order positions
    sd = np.empty(budget + 2, dtype=np.float64)
    sj = np.empty(budget + 2, dtype=np.int64)
    so = np.empty(budget + 2, dtype=np.int64)
    rows = 1024
    bo = np.empty(rows * k, dtype=np.int64)
    bd = np.empty(rows * k, dtype=np.float64)
    done = np.zeros(rows, dtype=np.bool_)
    nhard = 0
    for c0 in range(lo, hi, rows):
        c1 = min(hi, c0 + rows)
        for p in range(c0, c1):
            if _knn_one(p, xs, ys, perm, start, nx, ny, x0, y0, inv_h, tol, k, budget, buf, bj, sd, sj, so):
                done[p - c0] = True
                at = (p - c0) * k
                for t in range(k):
                    bo[at + t] = so[t]
                    bd[at + t] = sd[t]
            else:
                hard[nhard] = p
                nhard += 1
        for p in range(c0, c1):
            if done[p - c0]:
                done[p - c0] = False
                at = (p - c0) * k
                row = perm[p] * k
                for t in range(k):
                    out_idx[row + t] = bo[at + t]
                    out_dist[row + t] = bd[at + t]
    return nhard


# ------------------------------------------------------------------------------------------ driver
def _grid_size(span_x: float, span_y: float, n_cells: float):
    """``(1 / h, nx, ny)``: square cells of side ``h``, about ``n_cells`` of them over the box; ``None``
    when the box is a point (or too thin to be gridded in floating point)."""
    smax = max(span_x, span_y)
    if not smax > 0:
        return None
    n_cells = max(1.0, n_cells)
    h = max(math.sqrt(span_x) * math.sqrt(span_y) / math.sqrt(n_cells), smax / n_cells)
    inv_h = 1.0 / h
    if not (h > 0 and math.isfinite(inv_h) and math.isfinite(h)):
        return None
    nx = int(span_x * inv_h) + 1
    ny = int(span_y * inv_h) + 1
    return inv_h, nx, ny


def knn_grid(pts: np.ndarray, k: int, *, n_jobs: int = 1, index_dtype=None, force: bool = False):
    """Exact kNN of ``pts`` (``(n, 2)`` float64, finite; ``1 <= k <= n - 1``) on a grid.

    Returns ``(indices, data, hard)``: ``indices``/``data`` hold ``k`` entries per row in the caller's
    order (rows sorted by index); the rows listed in ``hard`` (original indices) are left unfilled for
    the caller.  Returns ``None`` when the points do not suit a grid (unless ``force``).
    """
    n = len(pts)
    if index_dtype is None:  # as _build._index_dtype
        index_dtype = np.int32 if max(n, n * k) < np.iinfo(np.int32).max else np.int64
    x = np.ascontiguousarray(pts[:, 0], dtype=np.float64)
    y = np.ascontiguousarray(pts[:, 1], dtype=np.float64)
    x0, x1 = float(x.min()), float(x.max())
    y0, y1 = float(y.min()), float(y.max())
    sx, sy = x1 - x0, y1 - y0
    target = _target_occupancy(k)
    max_cells = _MAX_CELLS_PER_POINT * n + 64
    cell = np.empty(n, dtype=np.int64)
    # Uniform points with c per cell have occupancy c + 1 (Poisson): start from the bounding box ...
    grid = _grid_size(sx, sy, n / (target - 1.0))
    if grid is None:  # all points coincide: a single cell
        grid = (0.0, 1, 1)
    inv_h, nx, ny = grid
    counts = _cell_counts(x, y, x0, y0, inv_h, nx, ny, cell)
    occ = _occupancy(counts, n, _OCC_CAP)
    for _ in range(4):  # ... and make cells smaller while the points crowd (clusters, empty space)
        if occ <= _REFINE_AT * target or inv_h == 0.0:
            break
        more = min((occ - 1.0) / (target - 1.0), 64.0)
        finer = _grid_size(sx, sy, min(nx * ny * more, max_cells / 3))  # <= max_cells
        if finer is None or finer[1] * finer[2] <= nx * ny:
            break
        c2 = np.empty(n, dtype=np.int64)
        counts2 = _cell_counts(x, y, x0, y0, *finer, c2)
        occ2 = _occupancy(counts2, n, _OCC_CAP)
        if occ2 >= occ:
            break
        gain = occ2 < 0.85 * occ
        inv_h, nx, ny = finer
        cell, counts, occ = c2, counts2, occ2
        if not gain:  # duplicates, or at the memory cap
            break
    if occ > _GIVE_UP_AT * target and not force:
        return None
    xs, ys, perm, start = _bucket(x, y, cell, counts)
    del cell, counts
    # Rigorous margin for rounding in the cell coordinates, the cell size and the distances: all errors
    # are a few units in the last place of the box size.
    tol = 1e-14 * (sx + sy)
    indices = np.empty(n * k, dtype=index_dtype)
    data = np.empty(n * k, dtype=np.float64)
    budget = _budget(k)
    bounds = [(lo, min(n, lo + _BLOCK)) for lo in range(0, n, _BLOCK)]

    def query(lo, hi):
        hard = np.empty(hi - lo, dtype=np.int64)
        nh = _query(xs, ys, perm, start, nx, ny, x0, y0, inv_h, tol, k, budget, lo, hi, indices, data, hard)
        return hard[:nh]

    if n_jobs <= 1 or len(bounds) <= 1:
        hard = [query(lo, hi) for lo, hi in bounds]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(n_jobs, len(bounds))) as ex:
            hard = list(ex.map(lambda b: query(*b), bounds))
    hard = np.concatenate(hard) if hard else np.zeros(0, dtype=np.int64)
    return indices, data, np.sort(perm[hard])
