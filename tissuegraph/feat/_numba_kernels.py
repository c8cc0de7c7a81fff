"""numba kernels of the per-pixel passes of :mod:`tissuegraph.feat._shape` (imported lazily).

Each kernel is one loop over the pixels (no temporary arrays), and gives the same values as the numpy
code it replaces in :mod:`._shape`, which stays the reference and the fallback when numba is missing:

* :func:`group_pixels`: the grouping of :meth:`Pixels.from_labels` by a two-pass counting sort
  (identical arrays);
* :func:`neighbour_code`: the 8-bit same-label neighbour code (identical);
* :func:`boundary_sums`: crack edges, diagonal transitions and bit-quad counts per label (exact
  integer sums, identical);
* :func:`perimeter`: the Benkrid-Crookes perimeter, summed in the same order as ``np.bincount``
  (identical);
* :func:`central_moments`: centroid and central moments up to order 3 in local coordinates, summed
  sequentially (numpy's ``reduceat`` sums pairwise, so the last bits may differ, ~1e-16 relative).

Compiled on first use and cached on disk (``cache=True``), like the kNN kernel of ``tg.graph``.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def _jit(fn):
    """``njit(cache=True, nogil=True)``; without caching when no cache directory is writable."""
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True)(fn)


@_jit
def count_values(labels, mx):
    """Pixels per label value (0..mx) of a 2-D label image."""
    h, w = labels.shape
    cnt = np.zeros(mx + 1, np.int64)
    for i in range(h):
        for j in range(w):
            cnt[labels[i, j]] += 1
    return cnt


@_jit
def group_pixels(labels, lut, counts, padded):
    """Foreground pixels grouped by label (``lut[value]`` = 1..n), row-major inside each group.

    Returns ``(g, r, c, fpad)`` and writes the renumbered labels into ``padded`` (one-pixel border).
    """
    h, w = labels.shape
    n = len(counts)
    wp = w + 2
    pos = np.zeros(n, np.int64)
    acc = 0
    for k in range(n):
        pos[k] = acc
        acc += counts[k]
    g = np.empty(acc, np.int64)
    r = np.empty(acc, np.int64)
    c = np.empty(acc, np.int64)
    fpad = np.empty(acc, np.int64)
    pf = padded.ravel()
    for i in range(h):
        for j in range(w):
            v = labels[i, j]
            if v != 0:
                k = lut[v]
                p = pos[k - 1]
                pos[k - 1] = p + 1
                g[p] = k - 1
                r[p] = i
                c[p] = j
                f = (i + 1) * wp + j + 1
                fpad[p] = f
                pf[f] = k
    return g, r, c, fpad


@_jit
def neighbour_code(pf, fpad, wp):
    """Bit k set when neighbour k (up, down, left, right, up-left, up-right, down-left, down-right)
    of each pixel has its label; ``pf`` is the flat padded label image."""
    n = len(fpad)
    code = np.empty(n, np.uint8)
    for p in range(n):
        f = fpad[p]
        v = pf[f]
        cd = 0
        if pf[f - wp] == v:
            cd |= 1
        if pf[f + wp] == v:
            cd |= 2
        if pf[f - 1] == v:
            cd |= 4
        if pf[f + 1] == v:
            cd |= 8
        if pf[f - wp - 1] == v:
            cd |= 16
        if pf[f - wp + 1] == v:
            cd |= 32
        if pf[f + wp - 1] == v:
            cd |= 64
        if pf[f + wp + 1] == v:
            cd |= 128
        code[p] = cd
    return code


@_jit
def boundary_sums(code, starts, counts, axis_diff, diag_diff, q1, q3, qd):
    """Per label, the sums of five 256-entry code tables (integer valued), as float64 (n, 5)."""
    n = len(starts)
    out = np.empty((n, 5), np.float64)
    for k in range(n):
        a = 0
        d = 0
        s1 = 0
        s3 = 0
        sd = 0
        for p in range(starts[k], starts[k] + counts[k]):
            cd = code[p]
            a += axis_diff[cd]
            d += diag_diff[cd]
            s1 += q1[cd]
            s3 += q3[cd]
            sd += qd[cd]
        out[k, 0] = a
        out[k, 1] = d
        out[k, 2] = s1
        out[k, 3] = s3
        out[k, 4] = sd
    return out


@_jit
def perimeter(pf, fpad, code, starts, counts, wp, weights):
    """skimage's perimeter per label: border pixels (a 4-neighbour outside the label) weighted by the
    border pixels among their 8 neighbours (2 per side, 10 per diagonal), summed in pixel order."""
    n = len(starts)
    out = np.zeros(n, np.float64)
    offs = np.array([-wp, wp, -1, 1, -wp - 1, -wp + 1, wp - 1, wp + 1], np.int64)
    wts = np.array([2, 2, 2, 2, 10, 10, 10, 10], np.int64)
    for k in range(n):
        acc = 0.0
        for p in range(starts[k], starts[k] + counts[k]):
            cd = code[p]
            if (cd & 15) == 15:  # all four 4-neighbours inside: not a border pixel
                continue
            f = fpad[p]
            v = pf[f]
            s = 1
            for kk in range(8):
                if cd & (1 << kk):
                    q = f + offs[kk]
                    if pf[q - wp] != v or pf[q + wp] != v or pf[q - 1] != v or pf[q + 1] != v:
                        s += wts[kk]
            acc += weights[s]
        out[k] = acc
    return out


@_jit
def central_moments(r, c, starts, counts):
    """Per label: centroid row/column and mu20, mu11, mu02, mu30, mu21, mu12, mu03 (n, 9), from
    local coordinates (from the bounding-box corner), summed sequentially."""
    n = len(starts)
    out = np.empty((n, 9), np.float64)
    for k in range(n):
        s = starts[k]
        e = s + counts[k]
        r0 = r[s]
        c0 = c[s]
        for p in range(s + 1, e):
            if c[p] < c0:
                c0 = c[p]
        m00 = float(counts[k])
        sr = 0.0
        sc = 0.0
        for p in range(s, e):
            sr += float(r[p] - r0)
            sc += float(c[p] - c0)
        lr = sr / m00
        lc = sc / m00
        m20 = m11 = m02 = m30 = m21 = m12 = m03 = 0.0
        for p in range(s, e):
            dr = float(r[p] - r0) - lr
            dc = float(c[p] - c0) - lc
            dr2 = dr * dr
            dc2 = dc * dc
            m20 += dr2
            m11 += dr * dc
            m02 += dc2
            m30 += dr2 * dr
            m21 += dr2 * dc
            m12 += dr * dc2
            m03 += dc2 * dc
        out[k, 0] = r0 + lr
        out[k, 1] = c0 + lc
        out[k, 2] = m20
        out[k, 3] = m11
        out[k, 4] = m02
        out[k, 5] = m30
        out[k, 6] = m21
        out[k, 7] = m12
        out[k, 8] = m03
    return out


@_jit
def row_extremes(g, r, c):
    """Per (label, row) of the grouped pixels: label, row, leftmost and rightmost column."""
    n = len(g)
    m = 0
    for p in range(n):
        if p == 0 or g[p] != g[p - 1] or r[p] != r[p - 1]:
            m += 1
    gr = np.empty(m, np.int64)
    rr = np.empty(m, np.int64)
    cl = np.empty(m, np.int64)
    cr = np.empty(m, np.int64)
    k = -1
    for p in range(n):
        if p == 0 or g[p] != g[p - 1] or r[p] != r[p - 1]:
            k += 1
            gr[k] = g[p]
            rr[k] = r[p]
            cl[k] = c[p]
        cr[k] = c[p]
    return gr, rr, cl, cr


@_jit
def max_pairwise(starts, counts, Y, X):
    """Largest distance between two points of each group (points of a group are contiguous)."""
    n = len(starts)
    out = np.zeros(n, np.float64)
    for k in range(n):
        s = starts[k]
        e = s + counts[k]
        best = 0.0
        for i in range(s, e):
            for j in range(i + 1, e):
                dy = Y[i] - Y[j]
                dx = X[i] - X[j]
                d2 = dy * dy + dx * dx
                if d2 > best:
                    best = d2
        out[k] = np.sqrt(best)
    return out
