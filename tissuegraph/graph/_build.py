"""Cell graphs from centroids: kNN, radius and Delaunay, squidpy-compatible.

Three layers, each usable on its own:

1. **Kernels** on plain ``(n, 2)`` coordinate arrays: :func:`knn_edges`, :func:`radius_edges`,
   :func:`delaunay_edges` (``(src, dst, dist)`` arrays) and :func:`delaunay_triangles`.
2. **Builders**: small objects describing a graph, :class:`KNNGraph`, :class:`RadiusGraph`,
   :class:`DelaunayGraph`, each with a list of post-processing **steps** (:class:`MaxEdgeLength`,
   :class:`MinEdgeLength`, :class:`Symmetrize`, :class:`AddSelfLoops`) applied in order.
   ``builder.build(points, mpp=...)`` returns the two CSR matrices; ``builder.apply(adata)`` writes them.
3. **AnnData front ends** (scanpy style): :func:`knn`, :func:`radius`, :func:`delaunay` and the generic
   :func:`spatial_neighbors`.  They read ``adata.obsm['spatial']`` (level-0 px), take µm/px from
   ``adata.uns['spatial']``, never connect cells of different slides, and write exactly what
   ``squidpy.gr.spatial_neighbors`` writes:

   - ``obsp['{key_added}_connectivities']``: CSR, ``1.0`` per edge (float32);
   - ``obsp['{key_added}_distances']``: CSR, Euclidean edge length in level-0 px (float64);
   - ``uns['{key_added}_neighbors']``: ``{'connectivities_key', 'distances_key', 'params'}``.

Semantics (identical to ``squidpy.gr.spatial_neighbors(coord_type='generic')`` for points in general
position; the tests and ``benchmarks/bench_graph.py`` check it):

- **kNN** (``n_neighs=6`` in squidpy): row ``i`` holds the ``k`` cells nearest to ``i``, itself excluded.
  The graph is *directed*: ``A[i, j] = 1`` means "j is among i's k nearest", so ``A`` is not symmetric
  and every row has exactly ``k`` entries (column sums vary).  ``Symmetrize('union')`` gives the usual
  undirected kNN graph, ``Symmetrize('mutual')`` the mutual kNN graph.  Ties at the k-th distance are
  broken by the smaller cell index (squidpy leaves them to scikit-learn's traversal order).  With ``n
  <= k`` cells every cell is linked to all others (squidpy raises).  From ``_KNN_GRID_MIN`` (20k)
  cells on the search is an exact grid search compiled with numba (``_knn_kernel``: cells of ~2
  points, a ring/disc search per cell with a top-k buffer); below that, or where numba is missing or
  the points do not suit a grid, a cKDTree query.  The two give bit-identical graphs and distances.
- **radius**: ``i -- j`` iff ``i != j`` and ``|p_i - p_j| <= r`` (inclusive; symmetric).
- **Delaunay**: the edges of the Delaunay triangulation (symmetric).  Inputs with >= 50k cells are
  triangulated in overlapping tiles and every triangle is certified (see :func:`delaunay_triangles`):
  for cells in general position the result is the same as one global triangulation, 2-3x faster.
- No self loops (``AddSelfLoops()`` = squidpy's ``set_diag=True``).  squidpy's ``radius=(lo, hi)`` is
  ``RadiusGraph(..., steps=[MinEdgeLength(...)])``.  squidpy's ``percentile=``, ``transform=`` (spectral
  or cosine re-weighting) and grid (Visium) coordinates have no equivalent here: connectivities are
  always 1.0 per edge.

Lengths given by users are in µm (``radius_um``, ``max_edge_um``, ``MaxEdgeLength(um=...)``) and need the
slide's µm/px; every one has a level-0 pixel twin (``radius_px``, ``max_edge_px``, ``px=``) for data
whose pixel size is unknown.

Degenerate inputs:

- 0, 1 or 2 cells give empty or one-edge graphs, never an error.
- **Coincident cells** are distinct nodes.  kNN and radius treat them like any other pair (distance 0;
  copies at the k-th distance are a tie, resolved by index, where squidpy picks any).  In the Delaunay
  graph each copy gets all edges of its location plus zero-length edges to the other copies (squidpy
  leaves duplicates isolated, because Qhull drops them).
- **Zero-length edges** are present in the connectivities but *not stored* in the distance matrix
  (a CSR matrix reads an absent entry as 0.0; squidpy also calls ``eliminate_zeros`` on it).  So read
  lengths per edge as ``distances[i, j]`` over the connectivity structure, not from ``distances.data``.
- **Collinear cells** (no triangulation exists) give the path along the line as their Delaunay graph.
- NaN or infinite coordinates raise :class:`~tissuegraph.InputError`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.spatial import ConvexHull, Delaunay, QhullError, cKDTree

from .. import _keys as K
from .._anndata import get_mpp, record_params
from .._errors import InputError
from .._logging import logger, timed
from .._settings import settings
from .._validate import check_points, check_positive

__all__ = [
    # AnnData front ends
    "spatial_neighbors",
    "knn",
    "radius",
    "delaunay",
    # builders and steps
    "GraphBuilder",
    "KNNGraph",
    "RadiusGraph",
    "DelaunayGraph",
    "GraphStep",
    "MaxEdgeLength",
    "MinEdgeLength",
    "Symmetrize",
    "AddSelfLoops",
    # kernels on arrays
    "knn_edges",
    "radius_edges",
    "delaunay_edges",
    "delaunay_triangles",
    "edges_to_csr",
]

# Below this many points, spatial sorting does not pay for itself.
_SORT_MIN = 4096
# From this many distinct points on, Delaunay triangulations are computed tile by tile.
_TILE_MIN = 50_000
_TILE_POINTS = 4000  # target points per tile core
_TILE_HALO = 3.0  # halo width, in mean point spacings
_CHUNK = 1 << 16  # rows per block in threaded post-processing
# kNN by the numba grid kernel (``_knn_kernel``) from this many points on; False: always the cKDTree.
_KNN_GRID = True
_KNN_GRID_MIN = 20_000


# =====================================================================================================
# Kernels: canonical CSR triples (indptr, indices, dist) on plain coordinate arrays
# =====================================================================================================
def _index_dtype(n: int, nnz: int):
    return np.int32 if max(n, nnz) < np.iinfo(np.int32).max else np.int64


def _empty(n: int):
    return np.zeros(n + 1, dtype=np.int32), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float64)


def _lengths(points: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Euclidean length ``sqrt(dx*dx + dy*dy)`` of each edge (float64)."""
    if len(src) == 0:
        return np.zeros(0, dtype=np.float64)
    x = np.ascontiguousarray(points[:, 0])
    y = np.ascontiguousarray(points[:, 1])
    dx = x[src]
    dx -= x[dst]
    dx *= dx
    dy = y[src]
    dy -= y[dst]
    dy *= dy
    dx += dy
    return np.sqrt(dx, out=dx)


def _spatial_order(points: np.ndarray) -> np.ndarray | None:
    """Morton (Z-order) permutation of the points, or ``None`` for small inputs.

    Neighbours in space become neighbours in memory, which makes tree queries and Qhull much faster.
    The permutation only changes speed, never a result.
    """
    n = len(points)
    if n < _SORT_MIN:
        return None
    lo = points.min(axis=0)
    span = float((points.max(axis=0) - lo).max())
    if span <= 0:
        return None
    q = ((points - lo) * (65535.0 / span)).astype(np.uint32)  # 16 bits per axis

    def spread(v):  # interleave zeros between the 16 low bits
        v = (v | (v << np.uint32(8))) & np.uint32(0x00FF00FF)
        v = (v | (v << np.uint32(4))) & np.uint32(0x0F0F0F0F)
        v = (v | (v << np.uint32(2))) & np.uint32(0x33333333)
        v = (v | (v << np.uint32(1))) & np.uint32(0x55555555)
        return v

    return np.argsort(spread(q[:, 0]) | (spread(q[:, 1]) << np.uint32(1)))


def _csr_from_edges(n: int, src, dst, values=None):
    """Canonical CSR ``(indptr, indices, values)`` of edges ``src -> dst`` (scipy's C++ counting sort).

    Explicit zero values are kept.  Without ``values`` repeated edges are merged (values: all 1.0);
    with ``values`` the caller guarantees there are none.
    """
    src = np.asarray(src)
    dst = np.asarray(dst)
    m = len(src)
    if m == 0:
        indptr, indices, _ = _empty(n)
        return indptr, indices, np.zeros(0, dtype=np.float64)
    itype = _index_dtype(n, m)
    # Carry each edge's position (1-based; exact in float64 below 2**53) through the conversion, so
    # that zero values survive and values of any dtype can be gathered afterwards.
    pos = np.arange(1, m + 1, dtype=np.float64)
    mat = sparse.csr_matrix((pos, (src.astype(itype, copy=False), dst.astype(itype, copy=False))),
                            shape=(n, n))
    mat.sum_duplicates()
    indptr = mat.indptr.astype(itype, copy=False)
    indices = mat.indices.astype(itype, copy=False)
    if values is None:
        return indptr, indices, np.ones(mat.nnz, dtype=np.float64)
    if mat.nnz != m:
        raise AssertionError("internal error: duplicate edges")  # pragma: no cover
    return indptr, indices, np.asarray(values)[mat.data.astype(np.int64) - 1]


def _csr_to_edges(indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(indptr) - 1
    return np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr)), np.asarray(indices, dtype=np.int64)


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InputError(f"k must be an integer >= 1, got {k!r}.")
    return int(k)


# ------------------------------------------------------------------------------------------------ kNN
def _knn_csr(points, k: int, *, n_jobs: int = 1, impl: Literal["auto", "grid", "tree"] = "auto"):
    """Directed kNN graph of ``points`` (see the module docstring for the exact semantics).

    Two exact implementations give bit-identical results (indices and float64 distances, ties at the
    k-th distance to the smaller original index):

    - ``"grid"``: the numba kernel of :mod:`._knn_kernel`: square cells of ~2 points (smaller where
      points cluster), counting sort by cell (row-major, which also sorts the queries spatially), per
      query the 3 x 3 block of cells, then the cells the disc of the current k-th distance reaches,
      with a branch-free top-(k+1) buffer of squared distances; only rows with ties at the k-th
      rounded distance rank candidates by (distance, original index).  Rows whose search runs over a
      work budget (far outliers, large groups of coincident points) are answered by the tree below;
    - ``"tree"``: Morton sort, a cKDTree query of ``k + 2`` candidates, exact tie resolution
      (:func:`_knn_resolve_ties`), rows sorted by column.

    ``impl="auto"`` (the default) uses the grid from ``_KNN_GRID_MIN`` points on when numba imports,
    unless the points crowd into a few cells (the kernel declines), and the tree otherwise.
    ``"grid"`` forces the kernel (also on tiny and degenerate inputs; for tests), ``"tree"`` the tree.
    """
    pts = check_points(points)
    n = len(pts)
    k = _check_k(k)
    k = min(k, n - 1)
    if k <= 0:
        return _empty(n)
    if impl not in ("auto", "grid", "tree"):
        raise ValueError(f"impl must be 'auto', 'grid' or 'tree', got {impl!r}")
    if impl == "grid" or (impl == "auto" and _KNN_GRID and n >= _KNN_GRID_MIN):
        out = _knn_grid_csr(pts, k, n_jobs=n_jobs, force=impl == "grid")
        if out is not None:
            return out
    order = _spatial_order(pts)
    q = pts if order is None else pts[order]
    tree = cKDTree(q, balanced_tree=False, compact_nodes=False)
    # k + 2 candidates: the point itself, k neighbours, and one more to see ties at the k-th distance
    kq = min(k + 2, n)
    dist, idx = tree.query(q, k=kq, workers=n_jobs)
    orig = np.arange(n) if order is None else order
    rows = np.arange(n)
    if (idx[:, 0] == rows).all():  # the usual case: every point is its own first candidate
        nb, nd = idx[:, 1:k + 1], dist[:, 1:k + 1]
        ok = np.ones(n, dtype=bool)
        if kq - 1 > k:  # a tie between the k-th and the (k+1)-th candidate: resolve below
            ok = dist[:, k + 1] != dist[:, k]
    else:
        is_self = idx == rows[:, None]
        ok = is_self.any(axis=1)  # rows without self among the candidates: > k+1 coincident points
        nb = np.empty((n, k), dtype=np.int64)
        nd = np.empty((n, k), dtype=np.float64)
        keep = ~is_self[ok]
        sub_i = idx[ok][keep].reshape(-1, kq - 1)
        sub_d = dist[ok][keep].reshape(-1, kq - 1)
        nb[ok] = sub_i[:, :k]
        nd[ok] = sub_d[:, :k]
        if kq - 1 > k:
            tie = np.zeros(n, dtype=bool)
            tie[ok] = sub_d[:, k] == sub_d[:, k - 1]
            ok &= ~tie
    bad = np.flatnonzero(~ok)
    if len(bad):
        nb, nd = np.array(nb), np.array(nd)
        _knn_resolve_ties(tree, q, orig, bad, k, nb, nd, n_jobs)
    itype = _index_dtype(n, n * k)
    if order is None:
        inv = None
        cols_of = np.arange(n, dtype=itype)
    else:
        inv = np.empty(n, dtype=np.int64)
        inv[order] = rows
        cols_of = order.astype(itype)
    indices = np.empty(n * k, dtype=itype)
    data = np.empty(n * k, dtype=np.float64)
    bits = max(1, (k - 1).bit_length())
    pos = np.arange(k, dtype=np.int64)

    def finish(lo: int, hi: int) -> None:
        # rows lo:hi of the result, in the caller's order, each sorted by column (distances carried)
        r = slice(lo, hi) if inv is None else inv[lo:hi]
        key = cols_of[nb[r]].astype(np.int64)
        key <<= bits
        key |= pos
        key.sort(axis=1)
        data[lo * k:hi * k] = np.take_along_axis(nd[r], key & ((1 << bits) - 1), axis=1).ravel()
        key >>= bits
        indices[lo * k:hi * k] = key.ravel()

    _run_chunks(n, n_jobs, finish)
    return np.arange(0, n * k + 1, k, dtype=itype), indices, data


def _run_chunks(n: int, n_jobs: int, fn) -> None:
    """``fn(lo, hi)`` over row blocks, on ``n_jobs`` threads (numpy releases the GIL)."""
    chunk = _CHUNK
    bounds = [(lo, min(n, lo + chunk)) for lo in range(0, n, chunk)]
    if n_jobs <= 1 or len(bounds) <= 1:
        for lo, hi in bounds:
            fn(lo, hi)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(n_jobs, len(bounds))) as ex:
        for f in [ex.submit(fn, lo, hi) for lo, hi in bounds]:
            f.result()


def _knn_resolve_ties(tree, q, orig, rows, k, nb, nd, n_jobs, slots=None):
    """For rows whose k-th distance is tied: take the k others with the smallest (distance, original
    index), querying more candidates until the whole tie group is seen.  Row ``rows[j]`` is written to
    ``nb[slots[j]]`` / ``nd[slots[j]]`` (default: ``slots = rows``)."""
    n = len(q)
    kk = min(n, 2 * (k + 2))
    pending = np.asarray(rows, dtype=np.int64)
    pending_slots = pending if slots is None else np.asarray(slots, dtype=np.int64)
    while len(pending):
        dist, idx = tree.query(q[pending], k=kk, workers=n_jobs)
        dist = dist.reshape(len(pending), -1)
        idx = idx.reshape(len(pending), -1)
        still = []
        for j, (r, drow, irow) in enumerate(zip(pending, dist, idx)):
            keep = irow != r
            drow, irow = drow[keep], irow[keep]
            if kk < n and len(drow) > k and drow[-1] <= drow[k - 1]:
                still.append(j)
                continue
            sel = np.lexsort((orig[irow], drow))[:k]
            nb[pending_slots[j]] = irow[sel]
            nd[pending_slots[j]] = drow[sel]
        still = np.asarray(still, dtype=np.int64)
        pending, pending_slots = pending[still], pending_slots[still]
        kk = min(n, 2 * kk)


def _knn_grid_csr(pts: np.ndarray, k: int, *, n_jobs: int = 1, force: bool = False):
    """``_knn_csr`` by the numba grid kernel; ``None`` when numba is missing (unless ``force``) or the
    kernel declines the points (see :mod:`._knn_kernel`)."""
    # lazy: numba is not imported with tissuegraph
    try:
        from ._knn_kernel import knn_grid
    except ImportError:
        if force:
            raise
        return None
    n = len(pts)
    itype = _index_dtype(n, n * k)
    out = knn_grid(pts, k, n_jobs=n_jobs, index_dtype=itype, force=force)
    if out is None:
        return None
    indices, data, hard = out
    if len(hard):  # rows whose grid search was too long: the exact tree search
        tree = cKDTree(pts, balanced_tree=False, compact_nodes=False)
        nb = np.empty((len(hard), k), dtype=np.int64)
        nd = np.empty((len(hard), k), dtype=np.float64)
        _knn_resolve_ties(tree, pts, np.arange(n), hard, k, nb, nd, n_jobs, slots=np.arange(len(hard)))
        o = np.argsort(nb, axis=1)
        at = (hard[:, None] * k + np.arange(k)).ravel()
        indices[at] = np.take_along_axis(nb, o, axis=1).ravel()
        data[at] = np.take_along_axis(nd, o, axis=1).ravel()
    return np.arange(0, n * k + 1, k, dtype=itype), indices, data


# --------------------------------------------------------------------------------------------- radius
def _radius_csr(points, r: float):
    """Symmetric radius graph: ``i -- j`` iff ``i != j`` and ``|p_i - p_j| <= r``."""
    pts = check_points(points)
    n = len(pts)
    if isinstance(r, bool) or not isinstance(r, numbers.Real) or not np.isfinite(r) or r < 0:
        raise InputError(f"the radius must be a finite number >= 0, got {r!r}.")
    if n < 2:
        return _empty(n)
    order = _spatial_order(pts)
    q = pts if order is None else pts[order]
    tree = cKDTree(q, balanced_tree=False, compact_nodes=False)
    pairs = tree.query_pairs(float(r), output_type="ndarray")
    if len(pairs) == 0:
        return _empty(n)
    a, b = pairs[:, 0], pairs[:, 1]
    d = _lengths(q, a, b)
    if order is not None:
        a, b = order[a], order[b]
    itype = _index_dtype(n, 2 * len(a))
    src = np.concatenate([a, b]).astype(itype)
    dst = np.concatenate([b, a]).astype(itype)
    mat = sparse.csr_matrix((np.concatenate([d, d]), (src, dst)), shape=(n, n))  # keeps zero lengths
    mat.sum_duplicates()  # sorts the indices (the pairs are distinct)
    return mat.indptr.astype(itype, copy=False), mat.indices.astype(itype, copy=False), mat.data


# ------------------------------------------------------------------------------------------- Delaunay
def _unique_locations(pts: np.ndarray):
    """``(rep, uniq)``: the location (index into ``uniq``) of every point and the first point of each
    distinct location, in input order; ``(None, None)`` when all points are distinct."""
    n = len(pts)
    if n < 2:
        return None, None
    xs = np.sort(pts[:, 0])
    if not (xs[1:] == xs[:-1]).any():
        return None, None
    o = np.lexsort((pts[:, 1], pts[:, 0]))  # stable: copies stay in index order
    s = pts[o]
    same = (s[1:, 0] == s[:-1, 0]) & (s[1:, 1] == s[:-1, 1])
    if not same.any():
        return None, None
    new_group = np.concatenate([[True], ~same])
    gid = np.cumsum(new_group) - 1
    first = o[new_group]  # smallest original index of each group
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    rep = np.empty(n, dtype=np.int64)
    rep[o] = rank[gid]
    return rep, np.sort(first)


def _expand_copies(rep: np.ndarray, n_loc: int, loc_src: np.ndarray, loc_dst: np.ndarray):
    """Edges between points from edges between locations: every copy of a location gets all of the
    location's edges, and the copies of one location are joined to each other."""
    order = np.argsort(rep, kind="stable")
    counts = np.bincount(rep, minlength=n_loc)
    start = np.concatenate([[0], np.cumsum(counts)])
    ca, cb = counts[loc_src], counts[loc_dst]
    reps = ca * cb
    e = np.repeat(np.arange(len(loc_src)), reps)
    off = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
    src = order[start[loc_src[e]] + off // cb[e]]
    dst = order[start[loc_dst[e]] + off % cb[e]]
    extra_s, extra_d = [src], [dst]
    for g in np.flatnonzero(counts > 1):
        mem = order[start[g]:start[g + 1]]
        aa, bb = np.meshgrid(mem, mem, indexing="ij")
        keep = aa != bb
        extra_s.append(aa[keep])
        extra_d.append(bb[keep])
    return np.concatenate(extra_s), np.concatenate(extra_d)


def _is_collinear(pts: np.ndarray) -> bool:
    c = pts - pts.mean(axis=0)
    s = np.linalg.svd(c, compute_uv=False)
    return len(s) < 2 or s[1] <= 1e-12 * max(s[0], np.finfo(float).tiny)


def _collinear_path(pts: np.ndarray):
    """Distinct collinear points: the path through them in their order along the line."""
    c = pts - pts.mean(axis=0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    o = np.argsort(c @ vt[0], kind="stable")
    a, b = o[:-1], o[1:]
    return np.concatenate([a, b]), np.concatenate([b, a])


def _global_triangles(pts: np.ndarray):
    """``(triangles, near)`` of distinct points with one Qhull call.

    ``near`` maps every point to the vertex it is represented by (itself, or, for the rare points that
    Qhull leaves out because they are closer than its precision to another point, that vertex), or is
    None.  ``triangles`` is None when the points are collinear.
    """
    try:
        tri = Delaunay(pts)
    except QhullError as exc:
        if _is_collinear(pts):
            return None, None
        raise InputError(f"Delaunay triangulation failed: {exc}") from exc
    near = None
    if tri.coplanar.size:
        near = np.arange(len(pts), dtype=np.int64)
        near[tri.coplanar[:, 0]] = tri.coplanar[:, 2]
    return tri, near


def _delaunay_loc_csr(loc: np.ndarray, tile_min: int, tile_points: int, n_jobs: int = 1):
    """Canonical CSR ``(indptr, indices)`` of the Delaunay graph of distinct locations, plus Qhull's
    ``near`` map (see :func:`_global_triangles`) or None."""
    m = len(loc)
    if m < 3:
        src = np.array([0, 1]) if m == 2 else np.zeros(0, np.int64)
        dst = src[::-1].copy()
        indptr, indices, _ = _csr_from_edges(m, src, dst)
        return indptr, indices, None
    if m >= tile_min:
        res = _tiled_delaunay(loc, tile_points, n_jobs)
        if res is not None:
            return res[1], res[2], None
    tri, near = _global_triangles(loc)
    if tri is None:
        indptr, indices, _ = _csr_from_edges(m, *_collinear_path(loc))
        return indptr, indices, None
    indptr, indices = tri.vertex_neighbor_vertices
    itype = _index_dtype(m, len(indices))
    mat = sparse.csr_matrix((np.ones(len(indices)), indices.astype(itype), indptr.astype(itype)), shape=(m, m))
    mat.has_sorted_indices = False
    mat.sort_indices()
    return mat.indptr, mat.indices, near


def _delaunay_csr(points, *, tile_min: int | None = None, tile_points: int | None = None, n_jobs: int = 1):
    """Delaunay graph (see the module docstring); ``tile_min``/``tile_points`` exist for testing."""
    pts = check_points(points)
    n = len(pts)
    if n < 2:
        return _empty(n)
    rep, uniq = _unique_locations(pts)
    loc = pts if uniq is None else pts[uniq]
    indptr, indices, near = _delaunay_loc_csr(loc, _TILE_MIN if tile_min is None else tile_min,
                                              tile_points or _TILE_POINTS, n_jobs)
    if rep is None and near is None:  # all points distinct and triangulated: the usual case
        src, dst = _csr_to_edges(indptr, indices)
        return indptr, indices, _lengths(pts, src, dst)
    ls, ld = _csr_to_edges(indptr, indices)
    m = len(loc)
    if near is not None:
        # points left out by Qhull are represented by their nearest vertex (like exact copies)
        logger.debug("Delaunay: %d point(s) closer than Qhull's precision to another point",
                     int((near != np.arange(m)).sum()))
        rep = near if rep is None else near[rep]
        verts = np.unique(rep)
        remap = np.full(m, -1, dtype=np.int64)
        remap[verts] = np.arange(len(verts))
        ls, ld, rep, m = remap[ls], remap[ld], remap[rep], len(verts)
    src, dst = _expand_copies(rep, m, ls, ld)
    return _csr_from_edges(n, src, dst, _lengths(pts, src, dst))


# ------------------------------------------------------------------------- tiled Delaunay (certified)
def _circumcircles(p: np.ndarray, tris: np.ndarray):
    """Circumcentres and radii; ``tris`` rows hold sorted vertex ids, so the floating-point result for a
    triangle is the same whichever tile computes it."""
    a = p[tris[:, 0]]
    b = p[tris[:, 1]] - a
    c = p[tris[:, 2]] - a
    bb = (b * b).sum(1)
    cc = (c * c).sum(1)
    det = 2.0 * (b[:, 0] * c[:, 1] - b[:, 1] * c[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        ux = (c[:, 1] * bb - b[:, 1] * cc) / det
        uy = (b[:, 0] * cc - c[:, 0] * bb) / det
    return a[:, 0] + ux, a[:, 1] + uy, np.sqrt(ux * ux + uy * uy)


def _tile_triangles(p: np.ndarray, tile_points: int):
    """Certified triangles of overlapping tiles (step 1 of :func:`_tiled_delaunay`)."""
    m = len(p)
    lo, hi = p.min(axis=0), p.max(axis=0)
    w, h = float(hi[0] - lo[0]), float(hi[1] - lo[1])
    spacing = math.sqrt(w * h / m)
    halo = _TILE_HALO * spacing
    n_strips = max(1, int(round(math.sqrt(max(1, m // tile_points) * w / h))))
    ox = np.argsort(p[:, 0], kind="stable")
    xs = p[ox, 0]
    xb = np.unique(np.concatenate([[-np.inf], xs[(np.arange(1, n_strips) * m) // n_strips], [np.inf]]))
    kept, pending = [], []
    for s in range(len(xb) - 1):
        x0, x1 = xb[s], xb[s + 1]
        c0, c1 = np.searchsorted(xs, [x0, x1], side="left")
        if c1 <= c0:
            continue
        l0 = np.searchsorted(xs, x0 - halo, side="left") if np.isfinite(x0) else 0
        l1 = np.searchsorted(xs, x1 + halo, side="right") if np.isfinite(x1) else m
        cand = ox[l0:l1]
        cand = cand[np.argsort(p[cand, 1], kind="stable")]
        ys = p[cand, 1]
        core_y = np.sort(p[ox[c0:c1], 1])
        ny = max(1, int(round(len(core_y) / tile_points)))
        yb = np.unique(np.concatenate([[-np.inf], core_y[(np.arange(1, ny) * len(core_y)) // ny], [np.inf]]))
        for t in range(len(yb) - 1):
            y0, y1 = yb[t], yb[t + 1]
            a0 = np.searchsorted(ys, y0 - halo, side="left") if np.isfinite(y0) else 0
            a1 = np.searchsorted(ys, y1 + halo, side="right") if np.isfinite(y1) else len(ys)
            local = cand[a0:a1]  # sorted by y within a narrow strip: a coherent order for Qhull
            if len(local) < 3:
                continue  # the verification finds the gap
            try:
                simp = Delaunay(p[local]).simplices
            except QhullError:
                continue
            simp = np.sort(local[simp], axis=1)
            cx, cy, r = _circumcircles(p, simp)
            own = (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1) & np.isfinite(r)
            simp, cx, cy, r = simp[own], cx[own], cy[own], r[own]
            margin = 1e-9 * (r + spacing)
            inside = np.ones(len(simp), dtype=bool)
            if np.isfinite(x0):
                inside &= cx - r >= x0 - halo + margin
            if np.isfinite(x1):
                inside &= cx + r <= x1 + halo - margin
            if np.isfinite(y0):
                inside &= cy - r >= y0 - halo + margin
            if np.isfinite(y1):
                inside &= cy + r <= y1 + halo - margin
            kept.append(simp[inside])
            pending.append(simp[~inside])
    tris = np.concatenate(kept) if kept else np.zeros((0, 3), dtype=np.int64)
    pend = np.concatenate(pending) if pending else np.zeros((0, 3), dtype=np.int64)
    return tris, pend


def _tiled_delaunay(p: np.ndarray, tile_points: int, n_jobs: int = 1):
    """``(triangles, indptr, indices)`` of the Delaunay triangulation of many distinct points, computed
    in overlapping tiles, or None when the result cannot be certified (the caller then runs Qhull once
    on everything).

    Qhull's cost per point grows with the problem size (about 3x from 5k to 1M points), so small tiles
    are faster in total.  Correctness does not rest on the halo being wide enough:

    1. each tile triangulates its core plus a halo.  A local triangle is *owned* by the tile whose core
       contains its circumcentre (computed from sorted global vertex ids, hence bit-identical in every
       tile; outer tiles extend to infinity), and kept when *certified*: its circumdisk lies inside the
       tile's halo box (then no point outside the local set can lie in it, so it is a triangle of the
       global triangulation), or a query on a tree of all points finds the disk empty.  So every kept
       triangle is a Delaunay triangle, and none is kept twice;
    2. completeness is verified by counting: a triangulation of ``m`` points with ``b`` of them on the
       convex hull boundary has exactly ``2m - b - 2`` triangles, every edge lies in at most two of
       them, and exactly ``b`` edges (the hull's) lie in one;
    3. otherwise the points around the gaps (unused points, ends of one-sided non-hull edges) are
       triangulated together and the missing empty-circle triangles taken from there, then step 2 again.
    """
    m = len(p)
    lo, hi = p.min(axis=0), p.max(axis=0)
    if float(hi[0] - lo[0]) <= 0 or float(hi[1] - lo[1]) <= 0 or _is_collinear(p):
        return None
    try:
        hull = ConvexHull(p, qhull_options="Qc")  # not "Qbb": it rescales the caller's array in place
    except QhullError:
        return None
    b = len(hull.vertices) + (len(np.unique(hull.coplanar[:, 0])) if hull.coplanar.size else 0)
    hull_edges = np.sort(hull.simplices, axis=1)
    tris, pend = _tile_triangles(p, tile_points)
    tree = None
    if len(pend):
        tree = cKDTree(p)
        tris = np.concatenate([tris, pend[_empty_circles(tree, p, pend, n_jobs)]])
    n_pending = len(pend)
    for attempt in range(2):
        indptr, indices, up = _triangle_edges(m, tris)
        mult = up.data
        if len(tris) == 2 * m - b - 2 and mult.max(initial=0) <= 2 and int((mult == 1).sum()) == b:
            logger.debug("tiled Delaunay: %d triangles (%d certified by a tree query, %d repair rounds)",
                         len(tris), n_pending, attempt)
            return tris, indptr, indices
        if attempt == 1:
            break
        bad = _gap_points(m, indptr, up, hull_edges)
        if len(bad) > max(1000, m // 20):
            break
        tree = tree if tree is not None else cKDTree(p)
        tris = _repair(p, tris, bad, tree, n_jobs)
    logger.info("tiled Delaunay could not be certified; using one global triangulation")
    return None


def _gap_points(m, indptr, up, hull_edges) -> np.ndarray:
    """Points next to missing triangles: unused points and the ends of edges that lie in only one kept
    triangle but are not convex-hull edges (or in more than two triangles)."""
    deg = np.diff(indptr)
    src, dst = _csr_to_edges(up.indptr, up.indices)
    odd = (up.data == 1) | (up.data > 2)
    s, d = src[odd], dst[odd]  # s < d
    hkey = hull_edges[:, 0].astype(np.int64) * m + hull_edges[:, 1]
    not_hull = ~np.isin(s * m + d, hkey)
    return np.unique(np.concatenate([np.flatnonzero(deg == 0), s[not_hull], d[not_hull]]))


def _empty_circles(tree, p, tris, n_jobs: int = 1) -> np.ndarray:
    """True where no point lies strictly inside the triangle's circumcircle."""
    cx, cy, r = _circumcircles(p, tris)
    ok = np.isfinite(r)
    res = np.zeros(len(tris), dtype=bool)
    if ok.any():
        cnt = tree.query_ball_point(np.column_stack([cx[ok], cy[ok]]), r[ok] * (1 - 1e-9), return_length=True,
                                    workers=n_jobs)
        res[ok] = cnt == 0
    return res


def _repair(p, tris, bad, tree, n_jobs: int = 1):
    """Add the triangles missing around ``bad`` points: triangulate those points alone and keep the
    empty-circle triangles that are not present yet (all corners of a missing triangle are bad)."""
    if len(bad) < 3:
        return tris
    try:
        sub = Delaunay(p[bad])
    except QhullError:
        return tris
    cand = np.sort(bad[sub.simplices], axis=1)
    cand = cand[_empty_circles(tree, p, cand, n_jobs)]
    in_bad = np.zeros(len(p), dtype=bool)
    in_bad[bad] = True
    have = set(map(tuple, tris[in_bad[tris].all(axis=1)].tolist()))
    new = [t for t in map(tuple, cand.tolist()) if t not in have]
    if not new:
        return tris
    return np.concatenate([tris, np.asarray(new, dtype=tris.dtype)])


def _triangle_edges(m: int, tris: np.ndarray):
    """Canonical CSR ``(indptr, indices)`` of the triangles' edges (both directions), and the upper
    triangle ``U`` (``i < j``) whose values count the triangles containing each edge."""
    itype = _index_dtype(m, 6 * len(tris))
    a, b, c = (tris[:, i].astype(itype) for i in range(3))  # rows sorted: a < b < c
    up = sparse.csr_matrix((np.ones(3 * len(tris), dtype=np.float32),
                            (np.concatenate([a, b, a]), np.concatenate([b, c, c]))), shape=(m, m))
    up.sum_duplicates()
    full = (up + up.T).tocsr()
    full.sort_indices()
    return full.indptr.astype(itype, copy=False), full.indices.astype(itype, copy=False), up


# ----------------------------------------------------------------------------------- public kernels
def knn_edges(points, k: int = 6, *, n_jobs: int | None = None):
    """Directed k-nearest-neighbour edges of ``points``.

    Parameters
    ----------
    points
        ``(n, 2)`` coordinates (any unit; finite).
    k
        Neighbours per point (capped at ``n - 1``).
    n_jobs
        Threads for the neighbour search (default ``tg.settings.n_jobs``; ``-1`` = all cores).

    Returns
    -------
    ``(src, dst, dist)``: int64, int64, float64 arrays sorted by ``(src, dst)``; ``dst`` is one of the
    ``k`` points nearest to ``src`` (itself excluded; ties broken by the smaller index); ``dist`` is the
    Euclidean length in the unit of ``points``.  Every point is a ``src`` exactly ``min(k, n - 1)``
    times.
    """
    indptr, indices, dist = _knn_csr(points, k, n_jobs=settings.resolve_n_jobs(n_jobs))
    src, dst = _csr_to_edges(indptr, indices)
    return src, dst, dist


def radius_edges(points, r: float):
    """Edges between all pairs of distinct points at distance ``<= r`` (both directions).

    Parameters
    ----------
    points
        ``(n, 2)`` coordinates.
    r
        Radius, in the unit of ``points`` (inclusive).

    Returns
    -------
    ``(src, dst, dist)`` sorted by ``(src, dst)``; each pair appears in both directions.
    """
    indptr, indices, dist = _radius_csr(points, r)
    src, dst = _csr_to_edges(indptr, indices)
    return src, dst, dist


def delaunay_edges(points, *, n_jobs: int | None = None):
    """Edges of the Delaunay triangulation of ``points`` (both directions).

    Coincident points: every copy gets the edges of its location and zero-length edges to the other
    copies.  Collinear points: the path along the line.  Large inputs (>= 50k distinct points) are
    triangulated in certified tiles (see :func:`delaunay_triangles`), with the same result.

    Parameters
    ----------
    points
        ``(n, 2)`` coordinates.
    n_jobs
        Threads for the tree queries that certify tile triangles (Qhull itself is single-threaded).

    Returns
    -------
    ``(src, dst, dist)`` sorted by ``(src, dst)``.
    """
    indptr, indices, dist = _delaunay_csr(points, n_jobs=settings.resolve_n_jobs(n_jobs))
    src, dst = _csr_to_edges(indptr, indices)
    return src, dst, dist


def delaunay_triangles(points, *, n_jobs: int | None = None) -> np.ndarray:
    """Triangles ``(t, 3)`` (int64 point indices) of the Delaunay triangulation of ``points``.

    Only one copy of coincident points takes part (the one with the smallest index); collinear or
    fewer than three distinct points give no triangle.  With >= 50k distinct points the triangulation
    is computed in overlapping tiles (2-3x faster than one Qhull call): every triangle is certified to
    have an empty circumcircle and the triangle and hull-edge counts are checked against Euler's
    formula, otherwise one global Qhull triangulation is used.  For points in general position the
    result is the Delaunay triangulation itself; where four or more points are exactly co-circular
    (e.g. on a lattice) any valid choice of diagonal may be returned, so it can differ from scipy's.

    Parameters
    ----------
    points
        ``(n, 2)`` coordinates.
    n_jobs
        Threads for the tree queries that certify tile triangles.
    """
    pts = check_points(points)
    _, uniq = _unique_locations(pts)
    loc = pts if uniq is None else pts[uniq]
    back = np.arange(len(pts)) if uniq is None else uniq
    if len(loc) < 3:
        return np.zeros((0, 3), dtype=np.int64)
    res = _tiled_delaunay(loc, _TILE_POINTS, settings.resolve_n_jobs(n_jobs)) if len(loc) >= _TILE_MIN else None
    tris = None if res is None else res[0]
    if tris is None:
        tri, near = _global_triangles(loc)
        if tri is None:
            return np.zeros((0, 3), dtype=np.int64)
        tris = tri.simplices
    return back[tris].astype(np.int64)


def edges_to_csr(src, dst, *, n_nodes: int, dist=None) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Connectivity and distance CSR matrices from an edge list, in squidpy's layout.

    Parameters
    ----------
    src, dst
        Edge end points (int arrays of equal length; no repeated edge).
    n_nodes
        Number of nodes.
    dist
        Edge lengths (default: all 1.0).

    Returns
    -------
    ``(connectivities, distances)``: float32 CSR with 1.0 per edge, and float64 CSR with the lengths,
    where zero lengths are not stored (as in squidpy).  Both have sorted indices.
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    if src.shape != dst.shape or src.ndim != 1:
        raise InputError(f"src and dst must be 1-D arrays of equal length, got {src.shape} and {dst.shape}.")
    n_nodes = int(n_nodes)
    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n_nodes):
        raise InputError(f"edge end points must lie in [0, {n_nodes}).")
    values = np.ones(len(src)) if dist is None else np.asarray(dist, dtype=np.float64)
    if values.shape != src.shape:
        raise InputError(f"dist must have one value per edge ({len(src)}), got shape {values.shape}.")
    mat = sparse.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n_nodes, n_nodes))
    mat.sum_duplicates()
    if mat.nnz != len(src):
        raise InputError("the edge list contains repeated edges.")
    indptr, indices, values = _csr_from_edges(n_nodes, src, dst, values)
    return _to_matrices(n_nodes, indptr, indices, values)


def _to_matrices(n: int, indptr, indices, dist):
    conn = sparse.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(n, n))
    dmat = sparse.csr_matrix((np.asarray(dist, dtype=np.float64), indices.copy(), indptr.copy()), shape=(n, n))
    dmat.eliminate_zeros()
    conn.has_sorted_indices = True
    dmat.has_sorted_indices = True
    return conn, dmat


# =====================================================================================================
# Post-processing steps
# =====================================================================================================
class _Graph:
    """One slide's graph during building: canonical CSR structure plus the length of every entry."""

    __slots__ = ("n", "indptr", "indices", "dist")

    def __init__(self, n, indptr, indices, dist):
        self.n, self.indptr, self.indices, self.dist = n, indptr, indices, dist

    def rows(self) -> np.ndarray:
        return np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.indptr))

    def select(self, keep: np.ndarray) -> _Graph:
        counts = np.bincount(self.rows()[keep], minlength=self.n)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(self.indptr.dtype)
        return _Graph(self.n, indptr, self.indices[keep], self.dist[keep])

    def structure(self) -> sparse.csr_matrix:
        return sparse.csr_matrix((np.ones(len(self.indices)), self.indices, self.indptr), shape=(self.n, self.n))

    @classmethod
    def from_structure(cls, mat: sparse.csr_matrix, points: np.ndarray) -> _Graph:
        mat = mat.tocsr()
        mat.sum_duplicates()
        mat.sort_indices()
        src, dst = _csr_to_edges(mat.indptr, mat.indices)
        return cls(mat.shape[0], mat.indptr, mat.indices, _lengths(points, src, dst))


class GraphStep:
    """A post-processing step of a graph builder (subclasses implement ``_apply``).

    Steps see one slide at a time, with its coordinates in level-0 px and its µm/px.
    """

    needs_mpp: bool = False

    def _apply(self, g: _Graph, points: np.ndarray, mpp: float | None) -> _Graph:  # pragma: no cover
        raise NotImplementedError

    def _fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._fields().items())})"


def _length_limit(um, px, name: str) -> tuple[float | None, float | None]:
    if (um is None) == (px is None):
        raise InputError(f"{name} needs exactly one of um= (micrometres) or px= (level-0 pixels), "
                         f"got um={um!r}, px={px!r}.")
    if um is not None:
        return float(check_positive(um, f"{name}(um=...)")), None
    return None, float(check_positive(px, f"{name}(px=...)"))


def _limit_px(um, px, mpp, what: str) -> float:
    if px is not None:
        return px
    if mpp is None:  # pragma: no cover - the front ends resolve mpp first
        raise InputError(f"{what} is in µm but no µm/px was given.")
    return um / mpp


@dataclasses.dataclass(frozen=True, repr=False)
class _EdgeLengthStep(GraphStep):
    """Keep the edges whose length passes ``_keep(length, limit_px)``; the limit is ``um`` (needs µm/px)
    or ``px`` (level-0 px), exactly one of them."""

    um: float | None = None
    px: float | None = None

    def __post_init__(self):
        um, px = _length_limit(self.um, self.px, type(self).__name__)
        object.__setattr__(self, "um", um)
        object.__setattr__(self, "px", px)

    @property
    def needs_mpp(self) -> bool:  # type: ignore[override]
        return self.um is not None

    @staticmethod
    def _keep(length: np.ndarray, limit: float) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _apply(self, g, points, mpp):
        return g.select(self._keep(g.dist, _limit_px(self.um, self.px, mpp, repr(self))))


@dataclasses.dataclass(frozen=True, repr=False)
class MaxEdgeLength(_EdgeLengthStep):
    """Remove edges longer than ``um`` micrometres (or ``px`` level-0 pixels); equal lengths are kept.

    Parameters
    ----------
    um
        Longest edge kept, µm (needs the slide's µm/px).
    px
        Longest edge kept, level-0 px (the pixel escape hatch; give either ``um`` or ``px``).
    """

    @staticmethod
    def _keep(length, limit):
        return length <= limit


@dataclasses.dataclass(frozen=True, repr=False)
class MinEdgeLength(_EdgeLengthStep):
    """Remove edges shorter than ``um`` micrometres (or ``px`` level-0 px); equal lengths are kept.

    ``RadiusGraph(radius_px=b, steps=[MinEdgeLength(px=a)])`` is squidpy's ``radius=(a, b)``.  It also
    removes the zero-length edges between coincident cells.

    Parameters
    ----------
    um
        Shortest edge kept, µm.
    px
        Shortest edge kept, level-0 px.
    """

    @staticmethod
    def _keep(length, limit):
        return length >= limit


@dataclasses.dataclass(frozen=True, repr=False)
class Symmetrize(GraphStep):
    """Make a directed graph (kNN) undirected.

    Parameters
    ----------
    mode
        ``'union'``: ``i -- j`` if either is among the other's neighbours (``A | A.T``);
        ``'mutual'``: only if each is among the other's neighbours (``A & A.T``).
    """

    mode: Literal["union", "mutual"] = "union"

    def __post_init__(self):
        if self.mode not in ("union", "mutual"):
            raise InputError(f"Symmetrize(mode=...) must be 'union' or 'mutual', got {self.mode!r}.")

    def _fields(self):
        return {"mode": self.mode}

    def _apply(self, g, points, mpp):
        a = g.structure()
        s = a.maximum(a.T) if self.mode == "union" else a.minimum(a.T)
        return _Graph.from_structure(s, points)


@dataclasses.dataclass(frozen=True, repr=False)
class AddSelfLoops(GraphStep):
    """Link every cell to itself (connectivity 1.0, distance 0.0, i.e. not stored in the distances).

    squidpy's ``set_diag=True``.
    """

    def _fields(self):
        return {}

    def _apply(self, g, points, mpp):
        s = g.structure() + sparse.identity(g.n, format="csr")
        return _Graph.from_structure(s, points)


# =====================================================================================================
# Builders
# =====================================================================================================
def _check_steps(steps) -> tuple[GraphStep, ...]:
    if steps is None:
        return ()
    if isinstance(steps, GraphStep):
        steps = (steps,)
    steps = tuple(steps)
    for s in steps:
        if not isinstance(s, GraphStep):
            raise InputError(f"steps must be GraphStep objects (e.g. MaxEdgeLength(um=30)), got {s!r}.")
    return steps


class GraphBuilder:
    """Base class: a base graph (kNN, radius, Delaunay) followed by post-processing ``steps``.

    Builders are immutable descriptions; ``then(*steps)`` returns a new builder with more steps.
    """

    method: str = ""
    steps: tuple[GraphStep, ...] = ()

    # -- to implement
    def _base(self, points: np.ndarray, mpp: float | None, n_jobs: int) -> _Graph:  # pragma: no cover
        raise NotImplementedError

    def _own_fields(self) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    @property
    def _own_needs_mpp(self) -> bool:
        return False

    # -- generic
    @property
    def needs_mpp(self) -> bool:
        """True when a parameter is in µm, so the slide's µm/px is required."""
        return self._own_needs_mpp or any(s.needs_mpp for s in self.steps)

    def then(self, *steps: GraphStep) -> GraphBuilder:
        """A copy of this builder with ``steps`` appended."""
        return dataclasses.replace(self, steps=self.steps + _check_steps(steps))  # type: ignore[type-var]

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self._own_fields().items()]
        if self.steps:
            parts.append(f"steps=[{', '.join(map(repr, self.steps))}]")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _graph(self, points: np.ndarray, mpp: float | None, n_jobs: int) -> _Graph:
        g = self._base(points, mpp, n_jobs)
        for step in self.steps:
            g = step._apply(g, points, mpp)
        return g

    def build(self, points, *, mpp: float | None = None, n_jobs: int | None = None
              ) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
        """Connectivities and distances (CSR, squidpy layout) of ``points`` in level-0 px.

        Parameters
        ----------
        points
            ``(n, 2)`` centroids, level-0 px.
        mpp
            µm per px, required when a parameter is in µm.
        n_jobs
            Threads for the kNN search and tree queries (default ``tg.settings.n_jobs``).
        """
        pts = check_points(points)
        mpp = self._check_mpp(mpp)
        g = self._graph(pts, mpp, settings.resolve_n_jobs(n_jobs))
        return _to_matrices(g.n, g.indptr, g.indices, g.dist)

    def edges(self, points, *, mpp: float | None = None, n_jobs: int | None = None):
        """``(src, dst, dist)`` arrays of the graph of ``points`` (see :meth:`build`), sorted by
        ``(src, dst)``; ``dist`` in level-0 px, zero for coincident cells and self loops."""
        pts = check_points(points)
        g = self._graph(pts, self._check_mpp(mpp), settings.resolve_n_jobs(n_jobs))
        src, dst = _csr_to_edges(g.indptr, g.indices)
        return src, dst, g.dist

    def _check_mpp(self, mpp):
        if mpp is None:
            if self.needs_mpp:
                from .._validate import check_mpp

                check_mpp(None, what=repr(self))
            return None
        return float(check_positive(mpp, "mpp (µm/px)"))

    def apply(self, adata, **kwargs):
        """``spatial_neighbors(adata, self, **kwargs)``."""
        return spatial_neighbors(adata, self, **kwargs)

    def _params(self) -> dict[str, Any]:
        return {"method": self.method, "builder": repr(self), **self._own_fields(),
                "steps": [repr(s) for s in self.steps]}


@dataclasses.dataclass(frozen=True, repr=False)
class KNNGraph(GraphBuilder):
    """Directed k-nearest-neighbour graph: row ``i`` links ``i`` to its ``k`` nearest other cells.

    Identical to ``squidpy.gr.spatial_neighbors(coord_type='generic', n_neighs=k)``.  Add
    ``Symmetrize('union')`` or ``Symmetrize('mutual')`` for an undirected graph.

    Parameters
    ----------
    k
        Neighbours per cell (capped at ``n - 1`` on slides with fewer cells).
    steps
        Post-processing steps, applied in order.
    """

    k: int = 6
    steps: tuple[GraphStep, ...] = ()
    method = "knn"

    def __post_init__(self):
        object.__setattr__(self, "k", _check_k(self.k))
        object.__setattr__(self, "steps", _check_steps(self.steps))

    def _own_fields(self):
        return {"k": self.k}

    def _base(self, points, mpp, n_jobs):
        return _Graph(len(points), *_knn_csr(points, self.k, n_jobs=n_jobs))


@dataclasses.dataclass(frozen=True, repr=False)
class RadiusGraph(GraphBuilder):
    """All pairs of cells at most ``radius_um`` apart (inclusive; symmetric).

    Identical to ``squidpy.gr.spatial_neighbors(coord_type='generic', radius=r)`` with ``r`` in px.

    Parameters
    ----------
    radius_um
        Radius in µm (needs the slide's µm/px).
    radius_px
        Radius in level-0 px instead (escape hatch for data without µm/px); give exactly one.
    steps
        Post-processing steps.
    """

    radius_um: float | None = None
    radius_px: float | None = None
    steps: tuple[GraphStep, ...] = ()
    method = "radius"

    def __post_init__(self):
        if (self.radius_um is None) == (self.radius_px is None):
            raise InputError("RadiusGraph needs exactly one of radius_um= (µm) or radius_px= (level-0 px), "
                             f"got radius_um={self.radius_um!r}, radius_px={self.radius_px!r}.")
        if self.radius_um is not None:
            object.__setattr__(self, "radius_um", float(check_positive(self.radius_um, "radius_um")))
        else:
            object.__setattr__(self, "radius_px", float(check_positive(self.radius_px, "radius_px")))
        object.__setattr__(self, "steps", _check_steps(self.steps))

    @property
    def _own_needs_mpp(self):
        return self.radius_um is not None

    def _own_fields(self):
        return {"radius_um": self.radius_um} if self.radius_um is not None else {"radius_px": self.radius_px}

    def radius_in_px(self, mpp: float | None) -> float:
        """The radius in level-0 px for a slide with ``mpp`` µm/px."""
        return self.radius_px if self.radius_px is not None else self.radius_um / mpp

    def _base(self, points, mpp, n_jobs):
        return _Graph(len(points), *_radius_csr(points, self.radius_in_px(mpp)))


@dataclasses.dataclass(frozen=True, repr=False)
class DelaunayGraph(GraphBuilder):
    """Edges of the Delaunay triangulation (symmetric).

    Identical to ``squidpy.gr.spatial_neighbors(coord_type='generic', delaunay=True)`` for cells in
    general position (coincident cells: see the module docstring).  Long edges across empty space
    are usually removed with ``MaxEdgeLength(um=...)``.

    Parameters
    ----------
    steps
        Post-processing steps.
    """

    steps: tuple[GraphStep, ...] = ()
    method = "delaunay"

    def __post_init__(self):
        object.__setattr__(self, "steps", _check_steps(self.steps))

    def _own_fields(self):
        return {}

    def _base(self, points, mpp, n_jobs):
        return _Graph(len(points), *_delaunay_csr(points, n_jobs=n_jobs))


# =====================================================================================================
# AnnData front ends
# =====================================================================================================
def _get_points(adata, spatial_key: str) -> np.ndarray:
    if spatial_key not in adata.obsm:
        raise InputError(f"adata.obsm[{spatial_key!r}] is missing: the cell graph needs the centroids "
                         "(x, y) in level-0 px there (tg.feat.nuclei_features writes it).")
    try:
        return check_points(np.asarray(adata.obsm[spatial_key]), f"adata.obsm[{spatial_key!r}]")
    except InputError:
        raise
    except Exception as exc:  # pragma: no cover - exotic containers
        raise InputError(f"adata.obsm[{spatial_key!r}] is not an (n, 2) numeric array: {exc}") from exc


def _resolve_library(adata, library_key):
    """``(key or None, codes (n,), labels)`` of the slides whose cells must not be connected."""
    if library_key == "auto":
        if K.obs.slide not in adata.obs:
            return None, None, [None]
        library_key = K.obs.slide
    if library_key is None:
        return None, None, [None]
    if library_key not in adata.obs:
        raise InputError(f"library_key={library_key!r} is not a column of adata.obs "
                         f"(columns: {list(adata.obs.columns)}).")
    col = adata.obs[library_key]
    if col.isna().any():
        raise InputError(f"adata.obs[{library_key!r}] has {int(col.isna().sum())} missing value(s); "
                         "every cell needs a slide.")
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = col.cat.codes.to_numpy().astype(np.int64)
        labels = list(col.cat.categories)
    else:
        codes, labels = pd.factorize(col, sort=True)
        labels = list(labels)
    return library_key, codes, labels


def _slide_mpp(adata, label, what: str, *, required: bool) -> float | None:
    """µm/px of one slide: its own ``uns['spatial']`` entry, else the value common to the AnnData."""
    if label is not None:
        v = get_mpp(adata, str(label), required=False)
        if v is not None:
            return v
    if not required:
        try:
            return get_mpp(adata, required=False)
        except InputError:  # several different values and none for this slide: not needed anyway
            return None
    return get_mpp(adata, required=True, what=what)


def spatial_neighbors(adata, builder: GraphBuilder | None = None, *, spatial_key: str = K.obsm.spatial,
                      library_key: str | None = "auto", key_added: str = "spatial", n_jobs: int | None = None,
                      copy: bool = False):
    """Build a cell graph with ``builder`` and store it the way squidpy does.

    Parameters
    ----------
    adata
        Cells AnnData with centroids in ``obsm[spatial_key]`` (level-0 px) and, when the builder has a
        parameter in µm, µm/px in ``uns['spatial'][slide]['scalefactors']['mpp']``.
    builder
        :class:`KNNGraph`, :class:`RadiusGraph` or :class:`DelaunayGraph` with optional steps
        (default ``KNNGraph(k=6)``, squidpy's default for generic coordinates).
    spatial_key
        Key of the centroids in ``obsm``.
    library_key
        ``obs`` column of slide ids; cells of different slides are never connected and each slide uses
        its own µm/px.  ``'auto'`` (default): ``'slide'`` when that column exists.  ``None``: treat all
        cells as one slide (then a parameter in µm needs one µm/px common to the AnnData).
    key_added
        Writes ``obsp[f'{key_added}_connectivities']``, ``obsp[f'{key_added}_distances']`` and
        ``uns[f'{key_added}_neighbors']`` (squidpy's names; ``'spatial'`` is what squidpy reads).
    n_jobs
        Threads for the kNN search, and for the queries that certify tiled
        Delaunay triangles (default ``tg.settings.n_jobs``; ``-1`` = all cores).  The radius search and
        Qhull are single-threaded.  Results never depend on it.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    None, or the copy with ``copy=True``.  Connectivities are float32 CSR with 1.0 per edge (row ``i``
    = the neighbours of cell ``i``); distances are float64 CSR in level-0 px without zero-length
    entries.  ``uns[f'{key_added}_neighbors']['params']`` records the builder, the slides and µm/px,
    and squidpy's own fields (``n_neighbors``, ``coord_type``, ``radius`` in px, ``transform``).
    """
    if builder is None:
        builder = KNNGraph()
    if not isinstance(builder, GraphBuilder):
        raise InputError(f"builder must be a KNNGraph, RadiusGraph or DelaunayGraph, got {builder!r}.")
    if not isinstance(key_added, str) or not key_added:
        raise InputError(f"key_added must be a non-empty string, got {key_added!r}.")
    if copy:
        adata = adata.copy()
    pts = _get_points(adata, spatial_key)
    n = len(pts)
    lib_key, codes, labels = _resolve_library(adata, library_key)
    jobs = settings.resolve_n_jobs(n_jobs)
    what = f"tg.graph with {builder!r}"
    mpps: dict[str, float] = {}
    parts = []
    with timed(f"cell graph {builder!r} on {n} cells, {len(labels)} slide(s)"):
        for s, label in enumerate(labels):
            idx = np.arange(n) if codes is None else np.flatnonzero(codes == s)
            if len(idx) == 0 and codes is not None:
                continue  # an unused category
            mpp = _slide_mpp(adata, label, what, required=builder.needs_mpp)
            if mpp is not None:
                mpps[str(label)] = mpp
            g = builder._graph(pts[idx], mpp if builder.needs_mpp else None, jobs)
            parts.append((idx, g))
        if codes is None or (len(parts) == 1 and len(parts[0][0]) == n):  # one slide: no re-indexing
            g = parts[0][1] if parts else _Graph(n, *_empty(n))
            indptr, indices, dist = g.indptr, g.indices, g.dist
        else:
            src = np.concatenate([idx[g.rows()] for idx, g in parts]) if parts else np.zeros(0, np.int64)
            dst = np.concatenate([idx[g.indices] for idx, g in parts]) if parts else np.zeros(0, np.int64)
            dd = np.concatenate([g.dist for _, g in parts]) if parts else np.zeros(0)
            indptr, indices, dist = _csr_from_edges(n, src, dst, dd)
        conn, dmat = _to_matrices(n, indptr, indices, dist)

    conns_key, dists_key = K.obsp.connectivities(key_added), K.obsp.distances(key_added)
    neighs_key = K.uns.spatial_neighbors(key_added)
    adata.obsp[conns_key] = conn
    adata.obsp[dists_key] = dmat
    adata.uns[neighs_key] = {"connectivities_key": conns_key, "distances_key": dists_key}
    own = builder._own_fields()
    radius_px = None
    if isinstance(builder, RadiusGraph):
        radius_px = builder.radius_px if builder.radius_px is not None else (
            {k: builder.radius_um / v for k, v in mpps.items()} if len(mpps) > 1 else
            builder.radius_um / next(iter(mpps.values())))
    record_params(adata, neighs_key, {
        **builder._params(),
        "spatial_key": spatial_key,
        "library_key": lib_key,
        "mpp": (None if not mpps else next(iter(mpps.values())) if len(mpps) == 1 else mpps),
        "distance_unit": "px",
        "directed": bool(isinstance(builder, KNNGraph)
                         and not any(isinstance(s, Symmetrize) for s in builder.steps)),
        # squidpy's own fields
        "n_neighbors": own.get("k"),
        "coord_type": "generic",
        "radius": radius_px,
        "transform": None,
        "set_diag": any(isinstance(s, AddSelfLoops) for s in builder.steps),
    })
    logger.info("cell graph: %d edges -> obsp[%r], obsp[%r]", conn.nnz, conns_key, dists_key)
    return adata if copy else None


def _front_steps(max_edge_um, max_edge_px) -> list[GraphStep]:
    if max_edge_um is not None and max_edge_px is not None:
        raise InputError("give max_edge_um= or max_edge_px=, not both.")
    if max_edge_um is not None:
        return [MaxEdgeLength(um=max_edge_um)]
    if max_edge_px is not None:
        return [MaxEdgeLength(px=max_edge_px)]
    return []


def knn(adata, *, k: int = 6, symmetrize: Literal["union", "mutual"] | None = None,
        max_edge_um: float | None = None, max_edge_px: float | None = None,
        spatial_key: str = K.obsm.spatial, library_key: str | None = "auto", key_added: str = "spatial",
        n_jobs: int | None = None, copy: bool = False):
    """k-nearest-neighbour cell graph (squidpy's default graph).

    Parameters
    ----------
    adata
        Cells AnnData (centroids in ``obsm['spatial']``, level-0 px).
    k
        Neighbours per cell.
    symmetrize
        ``None`` (default): directed, row ``i`` = the ``k`` nearest cells of ``i``, exactly as
        ``squidpy.gr.spatial_neighbors(coord_type='generic', n_neighs=k)``; ``'union'``: undirected,
        ``i -- j`` if either is a neighbour of the other; ``'mutual'``: only if both are.
    max_edge_um, max_edge_px
        Then remove edges longer than this (µm, or level-0 px).
    spatial_key, library_key, key_added, n_jobs, copy
        See :func:`spatial_neighbors`.

    Returns
    -------
    None, or the copy with ``copy=True``; writes ``obsp['spatial_connectivities']``,
    ``obsp['spatial_distances']`` and ``uns['spatial_neighbors']`` (names follow ``key_added``).
    """
    steps: list[GraphStep] = []
    if symmetrize is not None:
        steps.append(Symmetrize(symmetrize))
    steps += _front_steps(max_edge_um, max_edge_px)
    return spatial_neighbors(adata, KNNGraph(k=k, steps=tuple(steps)), spatial_key=spatial_key,
                             library_key=library_key, key_added=key_added, n_jobs=n_jobs, copy=copy)


def radius(adata, *, radius_um: float | None = None, radius_px: float | None = None,
           min_edge_um: float | None = None, spatial_key: str = K.obsm.spatial,
           library_key: str | None = "auto", key_added: str = "spatial", n_jobs: int | None = None,
           copy: bool = False):
    """Radius cell graph: every pair of cells at most ``radius_um`` apart.

    Parameters
    ----------
    adata
        Cells AnnData (centroids in ``obsm['spatial']``, level-0 px; µm/px in ``uns['spatial']``).
    radius_um
        Radius in µm (inclusive).  A slide without µm/px raises :class:`~tissuegraph.MissingMppError`.
    radius_px
        Radius in level-0 px instead, for data without a known pixel size; give exactly one.
    min_edge_um
        Also drop edges shorter than this (µm); with it the graph is squidpy's ``radius=(min, max)``.
    spatial_key, library_key, key_added, n_jobs, copy
        See :func:`spatial_neighbors`.

    Returns
    -------
    None, or the copy with ``copy=True``.
    """
    steps = [MinEdgeLength(um=min_edge_um)] if min_edge_um is not None else []
    return spatial_neighbors(adata, RadiusGraph(radius_um=radius_um, radius_px=radius_px, steps=tuple(steps)),
                             spatial_key=spatial_key, library_key=library_key, key_added=key_added,
                             n_jobs=n_jobs, copy=copy)


def delaunay(adata, *, max_edge_um: float | None = None, max_edge_px: float | None = None,
             spatial_key: str = K.obsm.spatial, library_key: str | None = "auto", key_added: str = "spatial",
             n_jobs: int | None = None, copy: bool = False):
    """Delaunay cell graph, optionally without edges longer than ``max_edge_um``.

    Parameters
    ----------
    adata
        Cells AnnData (centroids in ``obsm['spatial']``, level-0 px).
    max_edge_um
        Remove edges longer than this (µm; needs µm/px).  ``None`` (default) keeps all edges, like
        ``squidpy.gr.spatial_neighbors(coord_type='generic', delaunay=True)``.
    max_edge_px
        The same limit in level-0 px.
    spatial_key, library_key, key_added, n_jobs, copy
        See :func:`spatial_neighbors`.

    Returns
    -------
    None, or the copy with ``copy=True``.
    """
    return spatial_neighbors(adata, DelaunayGraph(steps=tuple(_front_steps(max_edge_um, max_edge_px))),
                             spatial_key=spatial_key, library_key=library_key, key_added=key_added,
                             n_jobs=n_jobs, copy=copy)
