"""Co-occurrence of clusters over distance thresholds (squidpy's ``co_occurrence`` definition).

squidpy compares every pair of cells (O(n^2) time and an (n, bins * k^2) buffer).  Here the pair
counts come from all pairs within the largest threshold, listed by chunks of query cells with a KD-tree and binned:
integer counts, so the result is the same for any chunk size, and memory stays O(n + chunk pairs).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import _keys as K
from .._anndata import _plain
from .._errors import InputError
from .._logging import logger, progress_bar, timed
from .._settings import settings
from ._common import categories, check_adata, spatial

__all__ = ["co_occurrence", "co_occurrence_counts", "default_interval"]


def default_interval(points: np.ndarray, n: int = 50) -> np.ndarray:
    """squidpy's default thresholds: ``n`` values from the two points with the smallest x + y
    (their distance) to half the distance from the smallest to the largest x + y (float32, like squidpy)."""
    pts = np.asarray(points, dtype=np.float32)
    s = pts.sum(axis=1)
    lo1, lo2 = np.argpartition(s, 2)[:2]
    hi = np.argmax(s)
    try:  # squidpy measures these two distances with scikit-learn on float32: the same arithmetic
        from sklearn.metrics import pairwise_distances as d
    except ImportError:  # pragma: no cover
        def d(a, b):
            return np.sqrt(((a.astype(np.float64) - b) ** 2).sum(keepdims=True))
    tmax = np.float32(d(pts[lo1].reshape(1, -1), pts[hi].reshape(1, -1))[0, 0] / 2.0)
    tmin = np.float32(d(pts[lo1].reshape(1, -1), pts[lo2].reshape(1, -1))[0, 0])
    return np.linspace(tmin, tmax, num=n, dtype=np.float32)


def co_occurrence_counts(points: np.ndarray, codes: np.ndarray, *, n_clusters: int, radii: np.ndarray,
                         chunk_size: int = 10_000, n_jobs: int = 1, progress: bool | None = None) -> np.ndarray:
    """Ordered pairs ``(i, j)``, ``i != j``, of clusters ``(a, b)`` at distance ``<= r``, for each radius.

    One KD-tree of all points; query cells are taken in chunks of ``chunk_size`` in the tree's leaf
    order (spatially compact), every pair within the largest radius is listed for the chunk
    (``cKDTree.sparse_distance_matrix``), binned by radius and cluster pair with one ``bincount``,
    and the integer histograms are summed (so the result is the same for any chunk size or ``n_jobs``).
    Time and memory grow with the number of pairs within ``max(radii)``, never with n^2 storage.

    Returns an int64 array ``(n_clusters, n_clusters, len(radii))``; symmetric in ``(a, b)``.
    """
    from scipy.spatial import cKDTree

    radii = np.asarray(radii, dtype=np.float64)
    order = np.argsort(radii, kind="stable")
    rs = radii[order]
    R = len(rs)
    k = int(n_clusters)
    codes = np.asarray(codes, dtype=np.int64)
    tree = cKDTree(points)
    leaf_order = tree.indices
    n = len(points)
    starts = list(range(0, n, int(chunk_size)))
    hist = np.zeros(k * k * (R + 1), np.int64)

    def one(lo: int) -> np.ndarray:
        q = leaf_order[lo:lo + chunk_size]
        pairs = cKDTree(points[q]).sparse_distance_matrix(tree, rs[-1], output_type="ndarray")
        i = q[pairs["i"]]
        j = pairs["j"]
        keep = i != j
        b = np.searchsorted(rs, pairs["v"][keep], side="left")  # first radius >= d
        idx = (codes[i[keep]] * k + codes[j[keep]]) * (R + 1) + b
        return np.bincount(idx, minlength=k * k * (R + 1))

    with progress_bar(total=len(starts), desc="co_occurrence", enabled=progress, unit="chunk") as bar:
        if n_jobs <= 1:
            for lo in starts:
                hist += one(lo)
                bar.update()
        else:
            with ThreadPoolExecutor(n_jobs) as ex:
                for h in ex.map(one, starts):
                    hist += h
                    bar.update()
    cum = np.cumsum(hist.reshape(k, k, R + 1)[:, :, :R], axis=2)
    out = np.empty_like(cum)
    out[:, :, order] = cum
    return out


def _expected_pairs(points: np.ndarray, r: float) -> float:
    """Rough number of ordered pairs within ``r`` (uniform density over the bounding box)."""
    span = np.ptp(points, axis=0)
    area = max(float(span[0]) * float(span[1]), 1.0)
    return len(points) ** 2 * min(np.pi * r * r / area, 1.0)


def _probabilities(counts: np.ndarray) -> np.ndarray:
    """squidpy's ``occ[i, c, r] = (counts[c, i, r] / rowsum[c, r]) / (rowsum[i, r] / total[r])``."""
    counts = counts.astype(np.float64)
    row = counts.sum(axis=1)  # (k, R)
    total = row.sum(axis=0)  # (R,)
    with np.errstate(divide="ignore", invalid="ignore"):
        probs = row / total  # (k, R)
        cond = counts / row[:, None, :]  # cond[c, i, r] = counts[c, i, r] / row[c, r]
        occ = np.transpose(cond, (1, 0, 2)) / probs[:, None, :]  # occ[i, c, r]
    ok = (probs[:, None, :] != 0) & (row[None, :, :] != 0)
    return np.where(ok, occ, 0.0)


def co_occurrence(adata, *, cluster_key: str, spatial_key: str = K.obsm.spatial, interval: int | np.ndarray = 50,
                  interval_um: np.ndarray | None = None, chunk_size: int = 10_000, n_jobs: int | None = None,
                  key_added: str | None = None, copy: bool = False, progress: bool | None = None):
    """Co-occurrence probability of clusters at increasing distances (squidpy's definition).

    For each threshold ``t`` of ``interval[1:]``: ``p(b | a, t)`` = share of cluster ``b`` among the
    cells within ``t`` of a cell of cluster ``a``, divided by the share of ``b`` among all such
    pairs; stored as ``occ[b, a, r]`` like squidpy.

    Parameters
    ----------
    adata
        Cells AnnData with centroids in ``obsm[spatial_key]``.
    cluster_key
        Categorical ``obs`` column; cells with a missing label are left out.
    spatial_key
        ``obsm`` key of the coordinates (level-0 px).
    interval
        Thresholds in the unit of ``obsm[spatial_key]`` (px): an int = that many thresholds spread as
        squidpy spreads them (float32, from the smallest pair distance to half the extent), or an array.
    interval_um
        Thresholds in µm instead (converted with the µm/px in ``uns['spatial']``).
    chunk_size
        Most query cells per KD-tree chunk (made smaller when the thresholds are long, so a chunk lists
        at most ~20 M pairs); the result does not depend on it.
    n_jobs
        Threads (default ``tg.settings.n_jobs``).
    key_added
        ``uns`` key (default ``f'{cluster_key}_co_occurrence'``, squidpy's).
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    None (or the copy). Writes ``uns[key_added] = {'occ': (k, k, len(interval) - 1), 'interval',
    'counts', 'params'}``.
    """
    what = "tg.tl.co_occurrence"
    check_adata(adata, what)
    if copy:
        adata = adata.copy()
    codes, cats, mask = categories(adata, cluster_key, what)
    pts = spatial(adata, spatial_key, what)[mask]
    codes = codes[mask]
    if int(chunk_size) < 1:
        raise InputError(f"{what}: chunk_size must be >= 1, got {chunk_size}.")
    if interval_um is not None:
        from .._anndata import get_mpp

        mpp = get_mpp(adata, what=what)
        interval = np.sort(np.asarray(interval_um, dtype=np.float64)) / mpp
    elif isinstance(interval, (int, np.integer)):
        interval = default_interval(pts, int(interval))
    else:
        interval = np.sort(np.asarray(interval, dtype=np.float64))
    if len(interval) < 2 or not np.isfinite(interval).all() or interval[0] < 0:
        raise InputError(f"{what}: interval needs >= 2 finite, non-negative thresholds, got {interval!r}.")
    k = len(cats)
    n_jobs = settings.resolve_n_jobs(n_jobs)
    n_pairs = _expected_pairs(pts, float(interval[-1]))
    if n_pairs > 2e9:
        logger.warning("co_occurrence: about %.1e cell pairs lie within the largest threshold (%.0f px); this "
                       "takes long. squidpy's default thresholds reach half the slide; pass interval_um= up to "
                       "a few hundred µm for cell-scale co-occurrence.", n_pairs, float(interval[-1]))
    # keep a chunk's pair list to ~20 M pairs (~0.5 GB) whatever the thresholds (the result does not change)
    per_query = max(1.0, n_pairs / max(len(pts), 1))
    chunk = int(min(int(chunk_size), max(256, 2e7 / per_query)))
    with timed(f"co_occurrence ({len(pts)} cells, {k} clusters, {len(interval) - 1} thresholds)"):
        counts = co_occurrence_counts(pts, codes, n_clusters=k, radii=interval[1:], chunk_size=chunk,
                                      n_jobs=n_jobs,
                                      progress=progress)
    occ = _probabilities(counts)
    key = key_added or K.tl.co_occurrence(cluster_key)
    adata.uns[key] = {"occ": occ, "interval": interval, "counts": counts,
                      "categories": np.asarray(cats.astype(str)),
                      "params": _plain(dict(cluster_key=cluster_key, spatial_key=spatial_key,
                                            n_thresholds=len(interval), chunk_size=int(chunk_size),
                                            n_cells=int(len(pts))))}
    return adata if copy else None
