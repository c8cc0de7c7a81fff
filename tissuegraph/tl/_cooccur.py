"""Co-occurrence of clusters over distance thresholds (squidpy's ``co_occurrence`` definition).

squidpy compares every pair of cells (O(n^2) time and an (n, bins * k^2) buffer).  Here the pair
counts come from dual-tree counting (``scipy.spatial.cKDTree.count_neighbors``) between the cells of
each pair of clusters, by chunks of query cells: integer counts, so the result is the same for any
chunk size, and memory stays O(n).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._anndata import _plain
from .._errors import InputError
from .._logging import progress_bar, timed
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
    d = lambda a, b: float(np.sqrt(((pts[a].astype(np.float64) - pts[b]) ** 2).sum()))  # noqa: E731
    tmin = np.float32(d(lo1, lo2))
    tmax = np.float32(d(lo1, hi) / 2.0)
    return np.linspace(tmin, tmax, num=n, dtype=np.float32)


def co_occurrence_counts(points: np.ndarray, codes: np.ndarray, *, n_clusters: int, radii: np.ndarray,
                         chunk_size: int = 200_000, n_jobs: int = 1, progress: bool | None = None) -> np.ndarray:
    """Ordered pairs ``(i, j)``, ``i != j``, of cluster ``(a, b)`` with distance ``<= r`` for each radius.

    Returns an int64 array ``(n_clusters, n_clusters, len(radii))``; symmetric in ``(a, b)``.
    """
    from scipy.spatial import cKDTree

    radii = np.asarray(radii, dtype=np.float64)
    order = np.argsort(radii, kind="stable")
    members = [np.flatnonzero(codes == a) for a in range(n_clusters)]
    trees = [cKDTree(points[m]) if len(m) else None for m in members]
    jobs = []
    for a in range(n_clusters):
        for lo in range(0, len(members[a]), chunk_size):
            for b in range(a, n_clusters):
                if trees[b] is not None:
                    jobs.append((a, lo, b))
    out = np.zeros((n_clusters, n_clusters, len(radii)), np.int64)
    chunk_trees: dict[tuple[int, int], object] = {}

    def chunk_tree(a, lo):
        key = (a, lo)
        if key not in chunk_trees:
            m = members[a]
            chunk_trees[key] = trees[a] if len(m) <= chunk_size else cKDTree(points[m[lo:lo + chunk_size]])
        return chunk_trees[key]

    for a in range(n_clusters):  # build chunk trees up front (not thread-safe to do lazily)
        for lo in range(0, len(members[a]), chunk_size):
            chunk_tree(a, lo)

    def one(job):
        a, lo, b = job
        c = chunk_tree(a, lo).count_neighbors(trees[b], radii[order], cumulative=True)
        res = np.empty(len(radii), np.int64)
        res[order] = c
        return job, res

    with progress_bar(total=len(jobs), desc="co_occurrence", enabled=progress, unit="pair") as bar:
        def consume(results):
            for (a, _lo, b), res in results:
                out[a, b] += res
                bar.update()
        if n_jobs <= 1:
            consume(map(one, jobs))
        else:
            with ThreadPoolExecutor(n_jobs) as ex:
                consume(ex.map(one, jobs))
    for a in range(n_clusters):
        out[a, a] -= len(members[a])  # each cell with itself (distance 0)
        for b in range(a + 1, n_clusters):
            out[b, a] = out[a, b]
    return out


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


def co_occurrence(adata, *, cluster_key: str, spatial_key: str = "spatial", interval: int | np.ndarray = 50,
                  interval_um: np.ndarray | None = None, chunk_size: int = 200_000, n_jobs: int | None = None,
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
        Query cells per KD-tree chunk (memory; the result does not depend on it).
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
    with timed(f"co_occurrence ({len(pts)} cells, {k} clusters, {len(interval) - 1} thresholds)"):
        counts = co_occurrence_counts(pts, codes, n_clusters=k, radii=interval[1:], chunk_size=int(chunk_size), n_jobs=n_jobs,
                                      progress=progress)
    occ = _probabilities(counts)
    key = key_added or f"{cluster_key}_co_occurrence"
    adata.uns[key] = {"occ": occ, "interval": interval, "counts": counts,
                      "categories": np.asarray(cats.astype(str)),
                      "params": _plain(dict(cluster_key=cluster_key, spatial_key=spatial_key,
                                            n_thresholds=len(interval), chunk_size=int(chunk_size),
                                            n_cells=int(len(pts))))}
    return adata if copy else None
