"""Vectorised per-label shape kernels.

Every function works on a :class:`Pixels` table (all foreground pixels of a label image, grouped by
label) and returns one value per label, computed with whole-array numpy operations (bincount,
reduceat, gathers), never a Python loop over labels.  Lengths are in pixels here; ``label_features``
scales them.

Definitions that also exist in :func:`skimage.measure.regionprops` follow it exactly (the test-suite
checks every one): pixel-count area, the Benkrid-Crookes ``perimeter`` (4-connected border pixels,
weighted by their border neighbours), the 4-direction Crofton perimeter, the 8-connected Euler number,
moments / inertia tensor / axis lengths / eccentricity / orientation, the convex hull image (pixel
centres inside or on the hull of the pixels' edge midpoints), its area, and the maximum Feret diameter
(largest distance between the 0.5-level marching-squares contour points of the convex hull image).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._contours import _DI, _DJ, _outer_chains

SQRT2 = float(np.sqrt(2.0))

# Neighbour offsets (d_row, d_col) in a fixed order.
UP, DOWN, LEFT, RIGHT, UL, UR, DL, DR = range(8)
_OFFS = ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


USE_NUMBA = True
"""Run the per-pixel passes as numba kernels (:mod:`._numba_kernels`) when numba imports; ``False``
runs the numpy reference code below (the tests compare the two)."""
_NB: object = None


def _nb():
    """The numba kernel module, or ``None`` (numba missing, or ``USE_NUMBA`` off)."""
    global _NB
    if not USE_NUMBA:
        return None
    if _NB is None:
        try:  # lazy: numba is not imported with tissuegraph
            from . import _numba_kernels
        except ImportError:  # pragma: no cover - numba is a dependency
            _NB = False
        else:
            _NB = _numba_kernels
    return _NB or None


# Neighbour codes from whole-image slice comparisons when at least this fraction of the image is
# foreground; below it, from gathers of the foreground pixels' neighbours only (cost ~ foreground).
DENSE_CODE_FRACTION = 0.6


@dataclass
class Pixels:
    """Foreground pixels of a label image, grouped by label (labels renumbered 1..n in ascending order
    of the original ids), row-major inside each group.

    ``g`` is the 0-based group (label index) of each pixel; ``starts``/``counts`` delimit the groups.
    ``padded`` is the renumbered label image with a one-pixel zero border and ``fpad`` each pixel's
    flat index in it.  Building it costs one pass over the image (finding the foreground); everything
    else scales with the number of foreground pixels, so a few nuclei in a large tile are cheap.
    """

    n: int
    padded: np.ndarray = field(repr=False)
    fpad: np.ndarray = field(repr=False)
    g: np.ndarray = field(repr=False)
    r: np.ndarray = field(repr=False)
    c: np.ndarray = field(repr=False)
    starts: np.ndarray = field(repr=False)
    counts: np.ndarray = field(repr=False)
    _same: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_labels(cls, labels: np.ndarray) -> tuple[np.ndarray, "Pixels | None"]:
        """``(ids, pixels)`` of a non-negative integer label image: ``ids`` the labels present
        (ascending, int64) and ``pixels`` their table (``None`` when there is no foreground)."""
        h, w = labels.shape
        nb = _nb()
        if nb is not None and labels.size:
            mx = int(labels.max())
            if mx <= 4 * labels.size + 1024:
                lab2 = np.ascontiguousarray(labels)
                cnt = nb.count_values(lab2, mx)
                cnt[0] = 0
                ids = np.flatnonzero(cnt)
                if ids.size == 0:
                    return np.zeros(0, dtype=np.int64), None
                n = len(ids)
                lut = np.zeros(mx + 1, dtype=np.int64)
                lut[ids] = np.arange(1, n + 1)
                counts = cnt[ids]
                starts = np.zeros(n, dtype=np.int64)
                np.cumsum(counts[:-1], out=starts[1:])
                padded = np.zeros((h + 2, w + 2), dtype=np.uint16 if n < 2 ** 16 else np.int32)
                g, r, c, fpad = nb.group_pixels(lab2, lut, counts, padded)
                return ids.astype(np.int64), cls(n=n, padded=padded, fpad=fpad, g=g, r=r, c=c,
                                                 starts=starts, counts=counts)
        flat = labels.ravel()
        f = np.flatnonzero(flat != 0)  # row-major
        if f.size == 0:
            return np.zeros(0, dtype=np.int64), None
        lab = flat[f]
        mx = int(lab.max())
        if mx <= 4 * f.size + 1024:
            lab = lab.astype(np.intp, copy=False)  # bincount needs a safe cast to intp (e.g. not uint64)
            present = np.bincount(lab, minlength=mx + 1) > 0
            present[0] = False
            ids = np.flatnonzero(present)
            dt = np.uint16 if len(ids) < 2 ** 16 else np.int32
            lut = np.zeros(mx + 1, dtype=dt)
            lut[ids] = np.arange(1, len(ids) + 1, dtype=dt)
            dense = lut[lab]
        else:  # huge label values: sort them once
            ids, inv = np.unique(lab, return_inverse=True)
            dt = np.uint16 if len(ids) < 2 ** 16 else np.int32
            dense = (inv.ravel() + 1).astype(dt)
        n = len(ids)
        # group by label keeping row-major order inside (a radix sort for 16-bit labels)
        order = np.argsort(dense, kind="stable")
        f = f[order]
        gl = dense[order]
        del order, dense, lab
        counts = np.bincount(gl, minlength=n + 1)[1:]
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        g = np.repeat(np.arange(n, dtype=np.int64), counts)  # == gl - 1, written sequentially
        # in-place arithmetic: fewer fresh arrays (each one costs page faults on first touch)
        r = f // w
        c = np.multiply(r, w)
        np.subtract(f, c, out=c)
        wp = w + 2
        fpad = np.multiply(r, 2)
        fpad += f
        fpad += wp + 1  # (r + 1) * (w + 2) + (c + 1)
        del f
        padded = np.zeros((h + 2, wp), dtype=dt)  # calloc: only the pages written below are touched
        padded.ravel()[fpad] = gl
        return ids.astype(np.int64), cls(n=n, padded=padded, fpad=fpad, g=g, r=r, c=c, starts=starts,
                                         counts=counts)

    @classmethod
    def from_dense(cls, dense: np.ndarray, n: int) -> "Pixels":
        """The table of a label image already numbered 1..n (every label present)."""
        ids, px = cls.from_labels(np.asarray(dense))
        if px is None or px.n != n or not np.array_equal(ids, np.arange(1, n + 1)):
            raise ValueError(f"labels must be numbered 1..{n} with every label present")
        return px

    @property
    def dense(self) -> np.ndarray:
        """The renumbered label image (1..n), without the border."""
        return np.ascontiguousarray(self.padded[1:-1, 1:-1])

    @property
    def width_padded(self) -> int:
        return self.padded.shape[1]

    def offset(self, k: int) -> int:
        dr, dc = _OFFS[k]
        return dr * self.width_padded + dc

    @property
    def code(self) -> np.ndarray:
        """8-bit neighbour code per pixel: bit k set when neighbour ``_OFFS[k]`` has the same label."""
        if "code" not in self._same:
            P = self.padded
            h, w = P.shape[0] - 2, P.shape[1] - 2
            nb = _nb()
            if nb is not None:
                self._same["code"] = nb.neighbour_code(P.ravel(), self.fpad, self.width_padded)
            elif len(self.fpad) >= DENSE_CODE_FRACTION * h * w:
                # dense image: whole-image slice comparisons beat eight random gathers
                core = P[1:-1, 1:-1]
                code = np.zeros((h, w), dtype=np.uint8)
                for kk, (dr, dc) in enumerate(_OFFS):
                    eq = P[1 + dr:h + 1 + dr, 1 + dc:w + 1 + dc] == core
                    code |= eq.view(np.uint8) << np.uint8(kk)
                self._same["code"] = code.ravel()[self.r * w + self.c]
            else:  # sparse image: gather the neighbours of the foreground pixels only
                flat = P.ravel()
                f, g = self.fpad, self.g
                lab = flat[f]
                # left / right: the neighbouring pixels in the (label, row-major) order
                nxt = np.zeros(len(f), dtype=bool)
                nxt[:-1] = np.diff(f) == 1
                nxt[:-1] &= g[1:] == g[:-1]
                prv = np.zeros(len(f), dtype=bool)
                prv[1:] = nxt[:-1]
                code = (prv.view(np.uint8) << np.uint8(LEFT)) | (nxt.view(np.uint8) << np.uint8(RIGHT))
                # the other six: gathers from shifted views of the image with one index array
                base = self.width_padded + 1  # -(smallest offset); f >= base (zero border)
                fm = f - base
                for kk in (UP, DOWN, UL, UR, DL, DR):
                    eq = np.take(flat[base + self.offset(kk):], fm) == lab
                    code |= eq.view(np.uint8) << np.uint8(kk)
                self._same["code"] = code
        return self._same["code"]

    def same(self, k: int) -> np.ndarray:
        """Boolean per pixel: is the neighbour in direction ``k`` in the same label?"""
        if k not in self._same:
            self._same[k] = (self.code & np.uint8(1 << k)) != 0
        return self._same[k]

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Per-label sum (pixels of a label are contiguous)."""
        return np.add.reduceat(np.asarray(values, dtype=np.float64), self.starts)


# ------------------------------------------------------------------------------------- basic geometry

def bbox(px: Pixels) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(min_row, min_col, max_row, max_col), inclusive."""
    ends = px.starts + px.counts - 1
    rmin, rmax = px.r[px.starts], px.r[ends]
    cmin = np.minimum.reduceat(px.c, px.starts)
    cmax = np.maximum.reduceat(px.c, px.starts)
    return rmin, cmin, rmax, cmax


def central_moments(px: Pixels) -> dict[str, np.ndarray]:
    """Centroid and central moments ``mu_pq`` (p = row power, q = column power) up to order 3."""
    m00 = px.counts.astype(np.float64)
    nb = _nb()
    if nb is not None:
        m = nb.central_moments(px.r, px.c, px.starts, px.counts)
        return {"00": m00, "cr": m[:, 0], "cc": m[:, 1], "20": m[:, 2], "11": m[:, 3], "02": m[:, 4],
                "30": m[:, 5], "21": m[:, 6], "12": m[:, 7], "03": m[:, 8]}
    # local coordinates (from the bounding-box corner, like regionprops): the results are then
    # bit-identical wherever the label sits in the image
    r0 = px.r[px.starts]
    c0 = np.minimum.reduceat(px.c, px.starts)
    # per-label values are spread with repeat (pixels are grouped by label), and the products reuse
    # two buffers: fewer fresh arrays to fault in
    dr = np.subtract(px.r, np.repeat(r0, px.counts), dtype=np.float64)
    dc = np.subtract(px.c, np.repeat(c0, px.counts), dtype=np.float64)
    lr = px.sum(dr) / m00
    lc = px.sum(dc) / m00
    cr, cc = r0 + lr, c0 + lc
    dr -= np.repeat(lr, px.counts)
    dc -= np.repeat(lc, px.counts)
    sq = np.multiply(dr, dr)
    cube = np.multiply(sq, dr)
    mu = {"00": m00, "cr": cr, "cc": cc, "20": px.sum(sq), "30": px.sum(cube)}
    mu["21"] = px.sum(np.multiply(sq, dc, out=cube))
    np.multiply(dc, dc, out=sq)
    mu["02"] = px.sum(sq)
    mu["03"] = px.sum(np.multiply(sq, dc, out=cube))
    mu["12"] = px.sum(np.multiply(dr, sq, out=cube))
    mu["11"] = px.sum(np.multiply(dr, dc, out=cube))
    return mu


def inertia(mu: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Eigenvalues of skimage's inertia tensor, axis lengths, eccentricity and orientation (px)."""
    m00 = mu["00"]
    a = mu["02"] / m00  # T[0, 0]
    c = mu["20"] / m00  # T[1, 1]
    b = -mu["11"] / m00  # T[0, 1]
    half = 0.5 * (a + c)
    rad = np.sqrt((0.5 * (a - c)) ** 2 + b * b)
    l1 = half + rad
    with np.errstate(invalid="ignore", divide="ignore"):
        l2 = np.where(l1 > 0, (a * c - b * b) / l1, 0.0)
    l1 = np.maximum(l1, 0.0)
    l2 = np.clip(l2, 0.0, l1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ecc = np.where(l1 > 0, np.sqrt(np.maximum(1.0 - l2 / np.where(l1 > 0, l1, 1.0), 0.0)), 0.0)
    diff = c - a
    orient = np.where(a - c == 0, np.where(b < 0, np.pi / 4, -np.pi / 4), 0.5 * np.arctan2(-2 * b, diff))
    return {"l1": l1, "l2": l2, "major": 4 * np.sqrt(l1), "minor": 4 * np.sqrt(l2),
            "eccentricity": ecc, "orientation": orient}


def hu_moments(mu: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Hu's seven invariants of the normalised central moments (same indexing as skimage)."""
    m00 = mu["00"]

    def nu(pq: str) -> np.ndarray:
        p, q = int(pq[0]), int(pq[1])
        return mu[pq] / m00 ** ((p + q) / 2 + 1)

    n20, n02, n11 = nu("20"), nu("02"), nu("11")
    n30, n03, n21, n12 = nu("30"), nu("03"), nu("21"), nu("12")
    t0, t1 = n30 + n12, n21 + n03
    q0, q1 = n30 - 3 * n12, 3 * n21 - n03
    h1 = n20 + n02
    h2 = (n20 - n02) ** 2 + 4 * n11 ** 2
    h3 = q0 ** 2 + q1 ** 2
    h4 = t0 ** 2 + t1 ** 2
    h5 = q0 * t0 * (t0 ** 2 - 3 * t1 ** 2) + q1 * t1 * (3 * t0 ** 2 - t1 ** 2)
    h6 = (n20 - n02) * (t0 ** 2 - t1 ** 2) + 4 * n11 * t0 * t1
    h7 = q1 * t0 * (t0 ** 2 - 3 * t1 ** 2) - q0 * t1 * (3 * t0 ** 2 - t1 ** 2)
    return [h1, h2, h3, h4, h5, h6, h7]


# ------------------------------------------------------------------------------------- boundary counts

# Benkrid & Crookes weights of a border pixel's code 1 + 2 * (4-neighbour border pixels)
# + 10 * (diagonal border pixels), as used by skimage.measure.perimeter(neighborhood=4).
_PERIM_W = np.zeros(50)
_PERIM_W[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIM_W[[21, 33]] = SQRT2
_PERIM_W[[13, 23]] = (1.0 + SQRT2) / 2.0


def perimeter(px: Pixels) -> np.ndarray:
    """skimage's ``perimeter`` per label (px): weighted count of the 4-connected border pixels."""
    nb = _nb()
    if nb is not None:
        return nb.perimeter(px.padded.ravel(), px.fpad, px.code, px.starts, px.counts, px.width_padded,
                            _PERIM_W)
    border = _LUT["border"][px.code]
    bimg = np.zeros(px.padded.size, dtype=bool)
    bimg[px.fpad[border]] = True
    idx = np.flatnonzero(border)
    f = px.fpad[idx]
    code = np.ones(len(idx), dtype=np.int64)
    for k, w in ((UP, 2), (DOWN, 2), (LEFT, 2), (RIGHT, 2), (UL, 10), (UR, 10), (DL, 10), (DR, 10)):
        code += w * (px.same(k)[idx] & bimg[f + px.offset(k)])
    return np.bincount(px.g[idx], weights=_PERIM_W[code], minlength=px.n)


def _code_luts() -> dict[str, np.ndarray]:
    """Per-pixel quantities that depend only on the 8-bit neighbour code, as 256-entry tables."""
    codes = np.arange(256)
    bit = [(codes >> k) & 1 for k in range(8)]
    axis_same = bit[UP] + bit[DOWN] + bit[LEFT] + bit[RIGHT]
    diag_same = bit[UL] + bit[UR] + bit[DL] + bit[DR]
    q1 = np.zeros(256, dtype=np.int64)
    q3 = np.zeros(256, dtype=np.int64)
    qd = np.zeros(256, dtype=np.int64)
    # the four 2x2 windows containing a pixel: (diagonal neighbour, its two axis neighbours)
    for dg, a, b in ((UL, UP, LEFT), (UR, UP, RIGHT), (DL, DOWN, LEFT), (DR, DOWN, RIGHT)):
        k = bit[dg] + bit[a] + bit[b]
        q1 += k == 0
        q3 += k == 2
        qd += (bit[dg] == 1) & (bit[a] == 0) & (bit[b] == 0)
    return {"axis_diff": (4 - axis_same).astype(np.float64), "diag_diff": (4 - diag_same).astype(np.float64),
            "q1": q1.astype(np.float64), "q3": q3.astype(np.float64), "qd": qd.astype(np.float64),
            "border": axis_same < 4}


_LUT = _code_luts()
_LUT_INT = {k: v.astype(np.int64) for k, v in _LUT.items() if k != "border"}


def boundary_counts(px: Pixels) -> dict[str, np.ndarray]:
    """Per label: crack edges, diagonal transitions, Euler number (8-conn) and boundary turns.

    * ``n_axis``: 4-neighbour pixel pairs with exactly one pixel in the label (= crack edges).
    * ``n_diag``: diagonal pixel pairs with exactly one pixel in the label.
    * ``euler``: Gray's bit-quad formula for 8-connected objects, ``(Q1 - Q3 - 2 QD) / 4``.
    * ``turns``: corners where the crack boundary changes direction (``Q1 + Q3 + 2 QD``).

    Each 2x2 window is seen once per label pixel in it: a Q1 window once, Q3 three times, QD twice.
    """
    code = px.code
    nb = _nb()
    if nb is not None:
        t = _LUT_INT
        sums = nb.boundary_sums(code, px.starts, px.counts, t["axis_diff"], t["diag_diff"], t["q1"], t["q3"],
                                t["qd"])
        S1, S3, SD = sums[:, 2], sums[:, 3], sums[:, 4]
        return {"n_axis": sums[:, 0], "n_diag": sums[:, 1],
                "euler": np.rint((S1 - S3 / 3.0 - SD) / 4.0), "turns": S1 + S3 / 3.0 + SD}
    S1 = px.sum(_LUT["q1"][code])
    S3 = px.sum(_LUT["q3"][code])
    SD = px.sum(_LUT["qd"][code])
    return {"n_axis": px.sum(_LUT["axis_diff"][code]), "n_diag": px.sum(_LUT["diag_diff"][code]),
            "euler": np.rint((S1 - S3 / 3.0 - SD) / 4.0), "turns": S1 + S3 / 3.0 + SD}


def crofton_perimeter(counts: dict[str, np.ndarray]) -> np.ndarray:
    """Crofton perimeter with 4 directions (skimage ``perimeter_crofton(directions=4)``), px."""
    return np.pi / 8.0 * (counts["n_axis"] + counts["n_diag"] / SQRT2)


def midpoint_perimeter(counts: dict[str, np.ndarray]) -> np.ndarray:
    """Length of the polygon through the midpoints of the crack edges (all boundaries), px."""
    return counts["n_axis"] - counts["turns"] * (1.0 - SQRT2 / 2.0)


# ------------------------------------------------------------------------------------- convex hull

def _convex_chain(g: np.ndarray, y: np.ndarray, x: np.ndarray, side: int) -> np.ndarray:
    """Indices of the points on the convex chain of each group.

    Points are sorted by (g, y) with one point per (g, y); ``side=-1`` keeps the chain bulging to
    -x (the left side of the hull), ``side=+1`` the right side.  All points of a group that are not
    strictly convex turns are removed in parallel, repeatedly, until none is left (a removed point is
    never a hull vertex, so the fixed point is the hull chain).

    A first pass keeps only the points that reach strictly further out (to -x for ``side=-1``) than
    every point before them or every point after them in their group, and the group's end points:
    any other point lies on or inside the segment between an earlier and a later point that reach
    at least as far, so it is never a strict hull vertex (the chain is unchanged, the loop shorter).
    """
    n_pts = len(g)
    if n_pts > 2:
        v = (x if side < 0 else -x).astype(np.int64)  # smaller = further out
        big = int(v.max()) - int(v.min()) + 1
        gi = g.astype(np.int64)
        first = np.r_[True, gi[1:] != gi[:-1]]
        last = np.r_[first[1:], True]
        # grouped running minima: offsets by group keep earlier (later) groups out of the minimum
        fwd = np.minimum.accumulate(v - gi * big)
        out_before = np.ones(n_pts, dtype=bool)
        out_before[1:] = (v[1:] - gi[1:] * big) < fwd[:-1]
        bwd = np.minimum.accumulate((v + gi * big)[::-1])[::-1]
        out_after = np.ones(n_pts, dtype=bool)
        out_after[:-1] = (v[:-1] + gi[:-1] * big) < bwd[1:]
        idx = np.flatnonzero(first | last | out_before | out_after)
    else:
        idx = np.arange(n_pts)
    while True:
        gg = g[idx]
        inner = np.ones(len(idx), dtype=bool)
        if len(idx):
            inner[0] = inner[-1] = False
        brk = gg[1:] != gg[:-1]
        inner[:-1] &= ~brk
        inner[1:] &= ~brk
        cand = np.flatnonzero(inner)
        if cand.size == 0:
            return idx
        p, c, q = idx[cand - 1], idx[cand], idx[cand + 1]
        # z of (c - p) x (q - p) in (x, y); > 0 when c lies to the ... of p->q
        cross = (x[c] - x[p]) * (y[q] - y[p]) - (y[c] - y[p]) * (x[q] - x[p])
        bad = side * cross <= 0
        if not bad.any():
            return idx
        keep = np.ones(len(idx), dtype=bool)
        keep[cand[bad]] = False
        idx = idx[keep]


def _chain_rows(g: np.ndarray, y: np.ndarray, x: np.ndarray, chain: np.ndarray, ceil: bool):
    """For every chain edge of a group, the even levels ``y = 2v`` it covers (half-open [y0, y1)) and
    ``ceil(x / 2)`` (or ``floor``) of the chain there, exactly (integer arithmetic)."""
    gc, yc, xc = g[chain], y[chain], x[chain]
    same = gc[1:] == gc[:-1]
    e0 = np.flatnonzero(same)
    y0, y1, x0, x1, ge = yc[e0], yc[e0 + 1], xc[e0], xc[e0 + 1], gc[e0]
    v0 = -((-y0) // 2)  # ceil(y0 / 2)
    v1 = -((-y1) // 2)  # exclusive: rows with 2v < y1
    nr = np.maximum(v1 - v0, 0)
    e = np.repeat(np.arange(len(e0)), nr)
    first = np.cumsum(nr) - nr
    v = v0[e] + (np.arange(len(e)) - first[e])
    dy = y1[e] - y0[e]  # > 0
    num = x0[e] * dy + (2 * v - y0[e]) * (x1[e] - x0[e])
    den = 2 * dy
    u = -((-num) // den) if ceil else num // den
    return ge[e], v, u


def convex_hull(px: Pixels, want_feret: bool = True) -> dict[str, np.ndarray]:
    """Convex hull image area, hull perimeter and maximum Feret diameter per label (px units).

    The hull is that of the edge midpoints of the label's pixels (skimage's ``convex_hull_image``);
    the hull image holds the pixel centres inside or on it.  All coordinates are doubled so that
    every computation is exact integer arithmetic.
    """
    # Leftmost and rightmost pixel of every (label, row).
    nb = _nb()
    if nb is not None:
        gr, rr, cl, cr = nb.row_extremes(px.g, px.r, px.c)
    else:
        key = px.g * (px.padded.shape[0] + 1) + px.r
        brk = np.flatnonzero(key[1:] != key[:-1])
        first = np.r_[0, brk + 1]
        last = np.r_[brk, len(key) - 1]
        gr, rr = px.g[first], px.r[first]
        cl, cr = px.c[first], px.c[last]

    def extremes(xs_even, xs_odd, side):
        # points (2r - 1, xs_odd), (2r, xs_even), (2r + 1, xs_odd) per (g, r), already in (g, y)
        # order; consecutive rows share the odd level: keep the extreme x there (side=+1: min)
        G = np.repeat(gr, 3)
        Y = np.stack([2 * rr - 1, 2 * rr, 2 * rr + 1], axis=1).ravel()
        X = np.stack([xs_odd, xs_even, xs_odd], axis=1).ravel()
        dup = np.flatnonzero((G[1:] == G[:-1]) & (Y[1:] == Y[:-1]))
        if dup.size:
            pick = np.minimum if side > 0 else np.maximum
            X[dup + 1] = pick(X[dup], X[dup + 1])
            keep = np.ones(len(G), dtype=bool)
            keep[dup] = False
            G, Y, X = G[keep], Y[keep], X[keep]
        return G, Y, X

    gL, yL, xL = extremes(2 * cl - 1, 2 * cl, +1)  # smallest x first
    gR, yR, xR = extremes(2 * cr + 1, 2 * cr, -1)  # largest x first
    chL = _convex_chain(gL, yL, xL, -1)
    chR = _convex_chain(gR, yR, xR, +1)
    # Lattice points (pixel centres) inside or on the hull, row by row.
    g_a, v_a, a = _chain_rows(gL, yL, xL, chL, ceil=True)
    g_b, v_b, b = _chain_rows(gR, yR, xR, chR, ceil=False)
    if not (np.array_equal(g_a, g_b) and np.array_equal(v_a, v_b)):  # pragma: no cover
        raise RuntimeError("internal error: hull chains cover different rows")
    span = b - a + 1
    area = np.bincount(g_a, weights=np.maximum(span, 0).astype(np.float64), minlength=px.n)

    # Hull perimeter: both chains plus the top and bottom horizontal edges (doubled units).
    def chain_len(gs, ys, xs, ch):
        gc, yc, xc = gs[ch], ys[ch], xs[ch]
        same = gc[1:] == gc[:-1]
        seg = np.hypot(np.diff(xc).astype(np.float64), np.diff(yc).astype(np.float64))
        return np.bincount(gc[1:][same], weights=seg[same], minlength=px.n)

    gcL, gcR = gL[chL], gR[chR]
    startL = np.searchsorted(gcL, np.arange(px.n))
    endL = np.searchsorted(gcL, np.arange(px.n), side="right") - 1
    startR = np.searchsorted(gcR, np.arange(px.n))
    endR = np.searchsorted(gcR, np.arange(px.n), side="right") - 1
    top = xR[chR][startR] - xL[chL][startL]
    bottom = xR[chR][endR] - xL[chL][endL]
    hull_perim = (chain_len(gL, yL, xL, chL) + chain_len(gR, yR, xR, chR) + top + bottom) / 2.0
    out = {"area_convex": area, "convex_perimeter": hull_perim}
    if want_feret:
        out["feret_max"] = _feret_from_spans(g_a, v_a, a, b, px.n)
    return out


def _feret_from_spans(g: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Maximum Feret diameter (skimage ``feret_diameter_max``) from the rows [a_v, b_v] of the hull
    image: the largest distance between midpoints of its boundary crack edges."""
    # Rows of the hull image that hold pixels (a thin hull can miss the lattice on some rows).
    ok = b >= a
    g, v, a, b = g[ok], v[ok], a[ok], b[ok]
    # Candidate extreme points in doubled (y, x) coordinates: horizontal cracks at the row ends;
    # vertical cracks between consecutive rows where the spans differ; all of the top/bottom cracks
    # of a row without a row above/below (their extremes are the span ends).
    adj = (g[1:] == g[:-1]) & (v[1:] == v[:-1] + 1)
    nxt_same = np.r_[adj, False]
    prv_same = np.r_[False, adj]
    a_n = np.r_[a[1:], 0]
    b_n = np.r_[b[1:], 0]
    m = nxt_same & (a != a_n)
    m2 = nxt_same & (b != b_n)
    top = ~prv_same
    bot = ~nxt_same
    # per row: (top level, row level, level below), present where defined; already in (g, y) order
    nrow = len(g)
    G3 = np.repeat(g, 3)
    Y3 = np.stack([2 * v - 1, 2 * v, 2 * v + 1], axis=1).ravel()
    below_l = m | bot
    below_r = m2 | bot
    xl_below = np.where(bot, 2 * a, 2 * np.minimum(a, a_n))
    xr_below = np.where(bot, 2 * b, 2 * np.maximum(b, b_n))
    pts_g, pts_y, pts_x = [], [], []
    for X3, present, side in (
            (np.stack([2 * a, 2 * a - 1, xl_below], axis=1).ravel(),
             np.stack([top, np.ones(nrow, bool), below_l], axis=1).ravel(), -1),
            (np.stack([2 * b, 2 * b + 1, xr_below], axis=1).ravel(),
             np.stack([top, np.ones(nrow, bool), below_r], axis=1).ravel(), +1)):
        G, Y, X = G3[present], Y3[present], X3[present]
        ch = _convex_chain(G, Y, X, side)
        pts_g.append(G[ch]), pts_y.append(Y[ch]), pts_x.append(X[ch])
    G = np.concatenate(pts_g)
    o = np.argsort(G, kind="stable")
    G = G[o]
    Y = np.concatenate(pts_y)[o].astype(np.float64)
    X = np.concatenate(pts_x)[o].astype(np.float64)
    return _max_pairwise(G, Y, X, n) / 2.0


def _max_pairwise(G: np.ndarray, Y: np.ndarray, X: np.ndarray, n: int, budget: int = 2_000_000) -> np.ndarray:
    """Largest distance between two points of the same group (``G`` sorted); groups of similar size
    (within 1.25x + 4 points of each other) are padded to a common size and processed together, in
    chunks of about ``budget`` pairs."""
    counts = np.bincount(G, minlength=n)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    nb = _nb()
    if nb is not None:
        return nb.max_pairwise(starts, counts, Y, X)
    out = np.zeros(n)
    order = np.argsort(counts, kind="stable")
    order = order[counts[order] > 0]
    cs = counts[order]
    i = 0
    while i < len(order):
        lim = int(cs[i]) * 5 // 4 + 4  # padding stays below ~1.6x the pairs of the chunk's groups
        j = min(int(np.searchsorted(cs, lim, side="right")), i + max(1, budget // (lim * lim)))
        j = max(j, i + 1)
        grp = order[i:j]
        kmax = int(cs[j - 1])
        pos = np.arange(kmax)
        # slots beyond a group's size repeat its first point: harmless for a maximum
        ix = starts[grp][:, None] + np.where(pos[None, :] < counts[grp][:, None], pos[None, :], 0)
        yy, xx = Y[ix], X[ix]
        d2 = (yy[:, :, None] - yy[:, None, :]) ** 2 + (xx[:, :, None] - xx[:, None, :]) ** 2
        out[grp] = np.sqrt(d2.reshape(len(grp), -1).max(axis=1))
        i = j
    return out


# ------------------------------------------------------------------------------------- contour shape

def fourier_descriptors(dense: np.ndarray, n: int, n_harmonics: int = 6) -> np.ndarray:
    """Fourier shape descriptors of the outer crack boundary, shape (n, n_harmonics).

    The boundary is sampled at the midpoints of its crack edges (uniform arc length),
    ``z = x + i y``, and ``F_k = mean(z_m exp(-2 pi i k m / N))``.  The contour is positively
    oriented, so ``F_1`` dominates.  Descriptor 1 is ``|F_-1| / |F_1|`` (0 for a circle, grows with
    elongation); descriptor ``k >= 2`` is ``sqrt(|F_k|^2 + |F_-k|^2) / |F_1|``.  They are invariant
    to translation, rotation, scale, reflection and the starting point.  NaN where the boundary has
    fewer than ``2k + 1`` samples (harmonic ``k`` not resolvable).
    """
    chains = _outer_chains(dense)
    out = np.full((n, n_harmonics), np.nan)
    if chains is None:
        return out
    ids, bounds, ci, cj, d = chains
    grp = np.repeat(ids.astype(np.int64) - 1, np.diff(bounds))
    N = np.diff(bounds).astype(np.float64)
    pos = np.arange(len(d)) - np.repeat(bounds[:-1], np.diff(bounds))
    # local coordinates (translation-free, so results do not depend on where the label sits)
    local = np.repeat(np.arange(len(ids)), np.diff(bounds))
    x = cj - np.minimum.reduceat(cj, bounds[:-1])[local] + 0.5 * _DJ[d]
    y = ci - np.minimum.reduceat(ci, bounds[:-1])[local] + 0.5 * _DI[d]
    # centre each boundary first (F_k, k != 0, is translation invariant; this keeps precision)
    x = x - (np.bincount(grp, weights=x, minlength=n) / np.maximum(np.bincount(grp, minlength=n), 1))[grp]
    y = y - (np.bincount(grp, weights=y, minlength=n) / np.maximum(np.bincount(grp, minlength=n), 1))[grp]
    Ng = np.zeros(n)
    Ng[ids - 1] = N
    base = np.exp(-2j * np.pi * pos / Ng[grp])  # exp(-2 pi i m / N); powers give every harmonic
    z = x + 1j * y
    Nsafe = np.where(Ng > 0, Ng, 1.0)
    pos_c, neg_c = {}, {}
    cur = np.ones_like(base)
    for k in range(1, n_harmonics + 1):
        cur = cur * base
        zp, zn = z * cur, z * np.conj(cur)
        pos_c[k] = np.hypot(np.bincount(grp, weights=zp.real, minlength=n),
                            np.bincount(grp, weights=zp.imag, minlength=n)) / Nsafe
        neg_c[k] = np.hypot(np.bincount(grp, weights=zn.real, minlength=n),
                            np.bincount(grp, weights=zn.imag, minlength=n)) / Nsafe
    f1 = pos_c[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        inv_f1 = np.where(f1 > 0, 1.0 / np.where(f1 > 0, f1, 1.0), np.nan)
        out[:, 0] = neg_c[1] * inv_f1
        for k in range(2, n_harmonics + 1):
            out[:, k - 1] = np.hypot(pos_c[k], neg_c[k]) * inv_f1
            out[Ng < 2 * k + 1, k - 1] = np.nan
    return out
