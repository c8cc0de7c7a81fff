"""Grey-level co-occurrence (GLCM, Haralick) texture per label, vectorised over labels.

Pairs: pixel ``p`` and ``p + offset`` for the offsets (0, 1), (1, 1), (1, 0), (1, -1) (angles 0, 45,
90 and 135 degrees, distance 1), counted only when **both pixels belong to the same label**.  Each
matrix is made symmetric (a pair counts as (i, j) and (j, i)) and normalised to sum 1, one matrix per
label and angle, built with a single ``np.bincount`` over ``(label, i, j)`` codes.  Properties follow
:func:`skimage.feature.graycoprops` (``entropy`` with the natural log) and are averaged over the
angles that have at least one pair; NaN for a label without any pair (a single pixel).
"""

from __future__ import annotations

import numpy as np

from ._shape import DL, DOWN, DR, RIGHT, Pixels

__all__ = ["GLCM_PROPS", "quantize", "glcm_features"]

GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "asm", "energy", "correlation", "entropy")
_ANGLE_DIRS = (RIGHT, DR, DOWN, DL)
_CHUNK_CELLS = 4_000_000  # 0, 45 (down-right), 90, 135 degrees; symmetric matrices


def quantize(px: Pixels, values: np.ndarray, levels: int, value_range: str | tuple[float, float]) -> np.ndarray:
    """Grey levels 0..levels-1 per pixel.

    ``value_range='nucleus'``: each label's own [min, max] is split into ``levels`` equal bins
    (texture independent of the label's brightness, which the intensity features describe);
    ``(lo, hi)``: one fixed range for all labels, values outside are clipped.
    """
    v = values.astype(np.float64, copy=False)
    if isinstance(value_range, str):
        lo = np.minimum.reduceat(v, px.starts)[px.g]
        hi = np.maximum.reduceat(v, px.starts)[px.g]
    else:
        lo = np.full(len(v), float(value_range[0]))
        hi = np.full(len(v), float(value_range[1]))
    width = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.floor((v - lo) / np.where(width > 0, width, 1.0) * levels)
    q = np.where(width > 0, q, 0.0)
    return np.clip(q, 0, levels - 1).astype(np.int64)


def glcm_features(px: Pixels, q: np.ndarray, levels: int) -> dict[str, np.ndarray]:
    """GLCM properties per label (see the module docstring) from grey levels ``q`` (per pixel).

    Each symmetric count matrix is built by one bincount over both orders of every pair; the
    properties are then sums over its non-zero cells only (normalisation by the pair total is applied
    to the sums), so the cost follows the number of pairs, not ``labels x levels^2`` dense algebra.
    """
    n, L = px.n, levels
    L2 = L * L
    qimg = np.zeros(px.padded.size, dtype=np.int64)
    qimg[px.fpad] = q
    sums = {p: np.zeros(n) for p in GLCM_PROPS}
    n_angles = np.zeros(n)
    # labels are processed in chunks so that a chunk's count table stays below _CHUNK_CELLS cells
    chunk = max(1, _CHUNK_CELLS // L2)
    for k in _ANGLE_DIRS:
        sel = np.flatnonzero(px.same(k))  # pixels are grouped by label, so pairs are too
        i = q[sel]
        j = qimg[px.fpad[sel] + px.offset(k)]
        gs = px.g[sel]
        cuts = np.searchsorted(gs, np.arange(0, n + chunk, chunk))
        nz_parts, c_parts = [], []
        for a in range(len(cuts) - 1):
            lo, hi = cuts[a], cuts[a + 1]
            if hi <= lo:
                continue
            g0 = a * chunk
            base = (gs[lo:hi] - g0) * L2
            ii, jj = i[lo:hi], j[lo:hi]
            cnt = np.bincount(np.concatenate([base + ii * L + jj, base + jj * L + ii]))
            nzc = np.flatnonzero(cnt)
            nz_parts.append(nzc + g0 * L2)
            c_parts.append(cnt[nzc])
        nz = np.concatenate(nz_parts) if nz_parts else np.zeros(0, dtype=np.int64)
        c = (np.concatenate(c_parts) if c_parts else np.zeros(0)).astype(np.float64)
        row = nz // L2
        ci = (nz % L2) // L
        cj = nz % L
        tot = np.bincount(row, weights=c, minlength=n)
        has = tot > 0
        t = np.where(has, tot, 1.0)
        d2 = ((ci - cj) ** 2).astype(np.float64)
        contrast = np.bincount(row, weights=c * d2, minlength=n) / t
        dissim = np.bincount(row, weights=c * np.sqrt(d2), minlength=n) / t
        homog = np.bincount(row, weights=c / (1.0 + d2), minlength=n) / t
        asm = np.bincount(row, weights=c * c, minlength=n) / (t * t)
        entropy = np.log(t) - np.bincount(row, weights=c * np.log(c), minlength=n) / t
        # correlation: the matrix is symmetric, so both marginals are equal
        mu = np.bincount(row, weights=c * ci, minlength=n) / t
        di = ci - mu[row]
        dj = cj - mu[row]
        var = np.bincount(row, weights=c * di * di, minlength=n) / t
        cov = np.bincount(row, weights=c * di * dj, minlength=n) / t
        flat = np.sqrt(var) < 1e-15
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.where(flat, 1.0, cov / np.where(flat, 1.0, var))
        for name, val in (("contrast", contrast), ("dissimilarity", dissim), ("homogeneity", homog),
                          ("asm", asm), ("energy", np.sqrt(asm)), ("correlation", corr),
                          ("entropy", entropy)):
            sums[name] += np.where(has, val, 0.0)
        n_angles += has
    with np.errstate(invalid="ignore", divide="ignore"):
        return {p: np.where(n_angles > 0, s / np.where(n_angles > 0, n_angles, 1.0), np.nan)
                for p, s in sums.items()}
