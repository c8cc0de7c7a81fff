"""Structural descriptors per sample: the baseline that learned representations are compared with.

:func:`descriptors` reads a cells AnnData (centroids, cell graph, nucleus features, cell types) and a
samples AnnData (made by ``tg.graph.grid_samples`` & co., with the cell membership in
``samples.obsm['cells']``, see :mod:`tissuegraph.graph._samples`) and writes one row of named
descriptors per sample to ``samples.obsm['X_structural']``, the column names to
``samples.uns['X_structural_names']`` and the parameters to ``samples.uns['X_structural']['params']``.

Definitions (all lengths in µm, areas in µm², converted with each slide's own µm/px):

``n_cells``, ``sample_area_um2``, ``density_per_mm2``
    Member count; the sample's area from its geometry (``samples.obs['area_um2']``: patch, spot or
    polygon area; convex hull of the cells, or a given tissue area, for images and groups);
    ``n_cells / area * 1e6`` per mm², where the area is the sample's **tissue area**
    (``samples.obs['tissue_area_um2']``, the part of the sample inside the image and the tissue mask)
    when the samples were made with ``tissue=``, else ``area_um2``. Which one each sample used is
    recorded in ``uns['<key>']['params']['density_area']`` (and the count of each). Density is 0 for an
    empty sample with area, NaN when the area is unknown or 0 (a sample with no tissue).
``nn_dist_um__*``
    Distance from each member cell to its nearest other cell **on the whole slide** (not only in the
    sample), so that cells near a sample border are not given too long distances. Coincident cells
    have distance 0; a cell alone on its slide has none.
``n_edges``, ``degree__*``, ``clustering__mean/std``, ``transitivity``, ``degree_assortativity``,
``edge_length_um__*``, ``n_components``, ``largest_component_frac``, ``isolated_frac``
    On the subgraph of ``cells.obsp['<graph_key>_connectivities']`` **induced by the sample's cells**
    (edges with both ends in the sample), taken as undirected and unweighted: any stored non-zero entry
    ``(i, j)`` or ``(j, i)`` is an edge; self loops are ignored. Local clustering ``2 T_i / (d_i (d_i - 1))``
    with ``T_i`` the triangles at ``i``, 0 for cells with degree < 2 (the networkx convention, so
    ``clustering__mean`` equals ``networkx.average_clustering``); transitivity = 3 × triangles /
    connected triples (``networkx.transitivity``, except that it is NaN, not 0, without any connected
    triple); degree assortativity = Pearson correlation of the
    degrees at the two ends of every edge, each edge counted in both directions
    (``networkx.degree_assortativity_coefficient``), NaN without edges or when all ends have the same
    degree. Edge lengths are Euclidean distances between the centroids. Components include isolated
    cells; ``n_components`` is 0 for an empty sample. Overlapping samples each get their own subgraph.
``delaunay_area_um2__*``
    Areas of the triangles of the Delaunay triangulation of **all cells of the slide** whose three
    vertices belong to the sample (the slide's triangulation restricted to the sample, so the sample's
    outline does not create artificial long thin triangles), from
    :func:`tissuegraph.graph.delaunay_triangles` (one copy of coincident cells takes part). Independent
    of the graph in ``obsp``. On large slides this triangulation is the most expensive step
    (``delaunay=False`` skips it).
``type_frac__<t>``, ``edge_type_frac__<a>__<b>``, ``same_type_edge_frac``, ``type_assortativity``
    With ``types_key``: fraction of the sample's cells of each type (over cells with a known type);
    fraction of the induced-subgraph edges joining types ``a`` and ``b`` (``a <= b`` in category order;
    over edges whose two ends have a known type); fraction of same-type edges (homophily); Newman's
    attribute assortativity ``(Σ e_tt − Σ a_t²) / (1 − Σ a_t²)``
    (``networkx.attribute_assortativity_coefficient``), NaN when undefined (no typed edge, or a single type).
``<feature>__*``
    Aggregates of every column of ``cells.X`` over the sample's cells (the variable name keeps its
    unit, e.g. ``area_um2__mean``); NaN feature values are left out.

``__*`` stands for ``__mean``, ``__std`` (population standard deviation, ``ddof=0``) and one
``__q<100 q>`` per requested quantile (linear interpolation, as ``numpy.quantile``). Every statistic
over an empty set of values is NaN, never 0; counts (``n_cells``, ``n_edges``, ``n_components``) are
their true value, 0 included. A sample with one cell has degree 0, clustering 0, std 0 and NaN
edge/triangle statistics.

Computation is vectorised over all (sample, cell) member pairs at once (sparse products, bincount,
one sort per statistic); there is no Python loop over cells or samples. The induced subgraphs of all
samples are built as one disjoint-union graph whose nodes are the member pairs, so overlapping samples
cost only their extra pairs. Triangles are enumerated per edge as ``U[i] ∘ U[j]`` on the upper-
triangular adjacency (the chunked equivalent of ``A·A ∘ A``). Results do not depend on the order of
the cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _keys as K
from .._anndata import record_params
from .._errors import InputError
from .._logging import logger, timed
from .._settings import settings
from ._samples import _cell_slides, _check_cells, _slide_mpp, sample_membership

__all__ = ["descriptors"]

_DEFAULT_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
_TRI_CHUNK_NNZ = 4_000_000  # bound on the intermediate sparse rows used to enumerate triangles


def _q_name(q: float) -> str:
    return f"q{100 * q:g}"


def _check_quantiles(quantiles: Any) -> tuple[float, ...]:
    if quantiles is None:
        return ()
    try:
        qs = tuple(float(q) for q in quantiles)
    except TypeError as exc:
        raise InputError(f"quantiles must be a sequence of numbers in [0, 1], got {quantiles!r}.") from exc
    for q in qs:
        if not (0.0 <= q <= 1.0):
            raise InputError(f"quantiles must lie in [0, 1], got {q!r}.")
    names = [_q_name(q) for q in qs]
    if len(set(names)) != len(names):
        raise InputError(f"quantiles must be distinct, got {quantiles!r}.")
    return qs


def _group_stats(values: np.ndarray, groups: np.ndarray, n_groups: int, quantiles: Sequence[float],
                 *, index: np.ndarray | None = None, with_quantiles: bool = True) -> dict[str, np.ndarray]:
    """Mean, population std and quantiles per group, ignoring non-finite values.

    Item ``k`` has the value ``values[index[k]]`` (``index=None``: ``values[k]``) and belongs to group
    ``groups[k]`` (integers in ``[0, n_groups)``, any order); with ``index`` one value can be shared by
    several items (a cell in overlapping samples). Empty groups give NaN. Quantiles interpolate
    linearly, as ``numpy.quantile``.
    """
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    index = np.arange(len(values), dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
    fin = np.isfinite(values)
    if not fin.all():
        keep = fin[index]
        index, groups = index[keep], groups[keep]
    v = values[index]
    n = np.bincount(groups, minlength=n_groups).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(groups, weights=v, minlength=n_groups) / n
        dev = v - mean[groups]
        std = np.sqrt(np.bincount(groups, weights=dev * dev, minlength=n_groups) / n)
    out = {"mean": mean, "std": std}
    if with_quantiles and quantiles:
        # sort within groups with one integer sort: key = group * n_values + rank of the value
        order = np.argsort(values, kind="stable")  # NaNs last; they are not referenced
        rank = np.empty(len(values), dtype=np.int64)
        rank[order] = np.arange(len(values), dtype=np.int64)
        key = groups * max(len(values), 1) + rank[index]
        key.sort()
        vs = values[order[key % max(len(values), 1)]]
        counts = n.astype(np.int64)
        start = np.concatenate(([0], np.cumsum(counts)[:-1]))
        has = counts > 0
        for q in quantiles:
            res = np.full(n_groups, np.nan)
            pos = q * (counts[has] - 1)
            lo = np.floor(pos).astype(np.int64)
            hi = np.minimum(lo + 1, counts[has] - 1)
            frac = pos - lo
            a, b = vs[start[has] + lo], vs[start[has] + hi]
            res[has] = np.where(frac < 0.5, a + (b - a) * frac, b - (b - a) * (1 - frac))  # numpy's lerp
            out[_q_name(q)] = res
    return out


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


class _Columns:
    """Ordered (name, column) collection with duplicate detection."""

    def __init__(self, n_rows: int):
        self.n_rows = n_rows
        self.names: list[str] = []
        self.values: list[np.ndarray] = []

    def add(self, name: str, values: np.ndarray) -> None:
        if name in self.names:
            raise InputError(f"Descriptor column {name!r} would appear twice (a feature in cells.var_names or a "
                             "cell type clashes with a structural descriptor name); rename it.")
        v = np.asarray(values, dtype=np.float64).reshape(self.n_rows)
        self.names.append(name)
        self.values.append(v)

    def add_stats(self, prefix: str, stats: dict[str, np.ndarray], keys: Sequence[str] | None = None) -> None:
        for k in keys or stats:
            self.add(f"{prefix}__{k}", stats[k])

    def matrix(self) -> np.ndarray:
        if not self.values:
            return np.zeros((self.n_rows, 0))
        return np.column_stack(self.values)


def _undirected_edges(A) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges (i < j) of a sparse adjacency: any stored non-zero, either direction."""
    B = sp.csr_matrix(A, copy=True)
    B.data = (B.data != 0).astype(np.int8)
    B.eliminate_zeros()
    B = sp.triu(B + B.T, k=1, format="csr")  # the sum merges (i, j) and (j, i); triu drops loops
    B.sort_indices()
    i = np.repeat(np.arange(B.shape[0], dtype=np.int64), np.diff(B.indptr))
    return i, B.indices.astype(np.int64)


class _Pairs:
    """The (sample, cell) member pairs, and lookups from cells to their pair ids."""

    def __init__(self, M: sp.csr_matrix):
        self.n_samples, self.n_cells = M.shape
        self.rows = np.repeat(np.arange(self.n_samples, dtype=np.int64), np.diff(M.indptr))  # sample of pair
        self.cols = M.indices.astype(np.int64)  # cell of pair
        self.n = len(self.cols)
        self.member_count = np.bincount(self.cols, minlength=self.n_cells)
        self.single = self.n == 0 or self.member_count.max() <= 1
        if self.single:  # no cell in two samples: one pair id per cell
            self.pid_of_cell = np.full(self.n_cells, -1, dtype=np.int64)
            self.pid_of_cell[self.cols] = np.arange(self.n, dtype=np.int64)
        else:  # (n_cells, n_samples) with data = pair id + 1
            T = sp.csr_matrix((np.arange(1, self.n + 1, dtype=np.float64), self.cols,
                               np.asarray(M.indptr, dtype=np.int64)), shape=M.shape).T.tocsr()
            T.sort_indices()
            self.Bt_pid = T
            self.Bt = sp.csr_matrix((np.ones(T.nnz, dtype=np.int8), T.indices, T.indptr), shape=T.shape)

    def incidence(self, vertex_lists: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Items (edges, triangles: one vertex array per corner) inside samples.

        Returns ``(item, sample, pair ids)``: one entry per (item, sample) with every vertex of the
        item in the sample, and for each corner the pair id of that vertex in that sample.
        """
        if self.single:
            pids = [self.pid_of_cell[v] for v in vertex_lists]
            ok = pids[0] >= 0
            s0 = self.rows[np.maximum(pids[0], 0)]
            for pv in pids[1:]:
                ok &= (pv >= 0) & (self.rows[np.maximum(pv, 0)] == s0)
            item = np.flatnonzero(ok)
            return item, s0[item], [pv[item] for pv in pids]
        pattern = self.Bt[vertex_lists[0]]
        for v in vertex_lists[1:]:
            pattern = pattern.multiply(self.Bt[v]).tocsr()
        pattern.eliminate_zeros()
        pattern.sort_indices()
        item = np.repeat(np.arange(pattern.shape[0], dtype=np.int64), np.diff(pattern.indptr))
        sample = pattern.indices.astype(np.int64)
        pids = []
        for v in vertex_lists:
            r = self.Bt_pid[v].multiply(pattern).tocsr()  # pair ids where the pattern is set
            r.sort_indices()
            if r.nnz != pattern.nnz or not np.array_equal(r.indices, pattern.indices):  # pragma: no cover
                raise RuntimeError("internal error: misaligned sample incidence")
            pids.append(np.rint(r.data).astype(np.int64) - 1)
        return item, sample, pids


def _triangles_per_node(p: np.ndarray, q: np.ndarray, n_nodes: int) -> np.ndarray:
    """Number of triangles at each node of the graph with undirected edges (p < q)."""
    t = np.zeros(n_nodes, dtype=np.int64)
    if len(p) == 0:
        return t
    U = sp.csr_matrix((np.ones(len(p), dtype=np.int8), (p, q)), shape=(n_nodes, n_nodes))
    U.sum_duplicates()
    out_deg = np.diff(U.indptr)
    work = np.cumsum(out_deg[p].astype(np.int64) + 1)
    bounds = np.searchsorted(work, np.arange(0, work[-1] + _TRI_CHUNK_NNZ, _TRI_CHUNK_NNZ)[1:], "right")
    bounds = np.unique(np.concatenate(([0], np.minimum(bounds, len(p)), [len(p)])))
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b <= a:
            continue
        # k in U[p] ∩ U[q]  <=>  triangle p < q < k, counted once
        W = U[p[a:b]].multiply(U[q[a:b]]).tocoo()
        if W.nnz == 0:
            continue
        r = W.row[W.data != 0]
        k = W.col[W.data != 0]
        t += np.bincount(p[a:b][r], minlength=n_nodes)
        t += np.bincount(q[a:b][r], minlength=n_nodes)
        t += np.bincount(k, minlength=n_nodes)
    return t


def _type_codes(cells, types_key: str) -> tuple[np.ndarray, list[str]]:
    col = cells.obs[types_key]
    cat = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype("category")
    return np.asarray(cat.cat.codes, dtype=np.int64), [str(c) for c in cat.cat.categories]


def _feature_matrix(cells, features: Any) -> tuple[Any, list[str], list[int]]:
    if features is False or features is None:
        return None, [], []
    if cells.X is None or cells.n_vars == 0:
        if features is True:
            return None, [], []
        raise InputError("features were requested but cells.X is empty.")
    names = [str(v) for v in cells.var_names]
    if features is True:
        idx = list(range(len(names)))
    else:
        if isinstance(features, str):
            features = [features]
        missing = [f for f in features if f not in names]
        if missing:
            raise InputError(f"features {missing} are not in cells.var_names (available: {names[:20]}).")
        idx = [names.index(f) for f in features]
    X = cells.X
    if sp.issparse(X):
        X = sp.csc_matrix(X)
    elif not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if not sp.issparse(X) and not np.issubdtype(X.dtype, np.number):
        raise InputError(f"cells.X must be numeric, got dtype {X.dtype}.")
    return X, [names[i] for i in idx], idx


def _column(X, j: int) -> np.ndarray:
    if sp.issparse(X):
        return np.asarray(X[:, j].toarray()).ravel().astype(np.float64)
    return np.asarray(X[:, j], dtype=np.float64)


def descriptors(cells, samples, *, graph_key: str | None = "spatial", features: bool | Sequence[str] = True,
                types_key: str | None = "cell_type", quantiles: Sequence[float] | None = _DEFAULT_QUANTILES,
                delaunay: bool = True, key_added: str = K.obsm.structural, n_jobs: int | None = None,
                copy: bool = False):
    """Structural descriptors of every sample (the structural baseline representation).

    See the module documentation for the exact definition of every column.

    Parameters
    ----------
    cells
        Cells AnnData: ``obsm['spatial']`` centroids (level-0 px), ``obs['slide']``, µm/px in
        ``uns['spatial']``, the cell graph in ``obsp`` (unless ``graph_key=None``), nucleus features in
        ``X`` and optionally cell types in ``obs[types_key]``. Its cells may be in any order and may
        include cells that belong to no sample (they still count as nearest neighbours and Delaunay
        vertices).
    samples
        Samples AnnData made by ``tg.graph.grid_samples``, ``region_samples``, ``spot_samples``,
        ``image_samples`` or ``group_samples`` from these cells.
    graph_key
        Prefix of the graph in ``cells.obsp`` (``'<graph_key>_connectivities'``, the squidpy name); ``None``
        skips the graph descriptors.
    features
        ``True``: aggregate every column of ``cells.X``; ``False``: none; or a list of var names.
    types_key
        Column of ``cells.obs`` with cell types (composition and mixing descriptors). The default
        ``'cell_type'`` is skipped (logged) when absent; any other missing name is an error. ``None``
        skips them.
    quantiles
        Quantiles reported for every distribution (names ``q10``, ``q25``, ...); ``()`` for none.
    delaunay
        Compute the Delaunay triangle-area descriptors (one triangulation per slide).
    key_added
        ``samples.obsm`` key of the result (``'X_'`` is prepended if missing); column names go to
        ``samples.uns['<key>_names']`` and parameters to ``samples.uns['<key>']['params']``.
    n_jobs
        Threads for per-slide work and per-feature statistics (default ``tg.settings.n_jobs``); the
        result does not depend on it.
    copy
        Return a modified copy of ``samples`` instead of writing into it.

    Returns
    -------
    ``None`` (or the copy with ``copy=True``); writes ``samples.obsm[key]`` (float64, one row per
    sample, NaN where a descriptor is undefined), ``samples.uns['<key>_names']`` and
    ``samples.uns['<key>']['params']``.
    """
    qs = _check_quantiles(quantiles)
    key = K.obsm.rep(key_added)
    names_key = K.uns.feature_names(key)
    xy = _check_cells(cells)
    n_cells_total = cells.n_obs
    if graph_key is not None:
        conn_key = K.obsp.connectivities(graph_key)
        if conn_key not in cells.obsp:
            raise InputError(
                f"cells.obsp['{conn_key}'] is missing: build a cell graph first, e.g. tg.graph.knn(cells, k=...), "
                f"tg.graph.radius(cells, radius_um=...) or tg.graph.delaunay(cells) (or squidpy.gr.spatial_neighbors), "
                "or pass graph_key=None to skip the graph descriptors.")
    if types_key is not None and types_key not in cells.obs:
        if types_key == "cell_type":
            logger.info("descriptors: cells.obs has no 'cell_type' column; skipping type descriptors.")
            types_key = None
        else:
            raise InputError(f"cells.obs has no column {types_key!r} (types_key); available: "
                             f"{list(cells.obs.columns)[:20]}. Pass types_key=None to skip type descriptors.")
    X, feat_names, feat_idx = _feature_matrix(cells, features)
    jobs = settings.resolve_n_jobs(n_jobs)
    if copy:
        samples = samples.copy()

    M = sample_membership(samples, cells)
    S, N = M.shape
    counts = np.diff(M.indptr).astype(np.int64)
    pairs = _Pairs(M)  # (sample, cell) member pairs, sorted by sample then cell
    rows, cols, P, member_count = pairs.rows, pairs.cols, pairs.n, pairs.member_count

    codes, slide_ids = _cell_slides(cells)
    used = np.flatnonzero(np.bincount(codes[cols], minlength=len(slide_ids)))
    mpp_cell = np.full(N, np.nan)
    if len(used):
        mpps = _slide_mpp(cells, [slide_ids[i] for i in used], what="tg.graph.descriptors")
        lut = np.full(len(slide_ids), np.nan)
        lut[used] = mpps
        mpp_cell = lut[codes]

    out = _Columns(S)
    timings: dict[str, float] = {}

    # --- counts, area, density --------------------------------------------------------------------
    if K.obs.area_um2 in samples.obs:
        area = pd.to_numeric(samples.obs[K.obs.area_um2], errors="coerce").to_numpy(dtype=np.float64)
    else:
        logger.warning("samples.obs['%s'] is missing; densities will be NaN.", K.obs.area_um2)
        area = np.full(S, np.nan)
    dens_area = area
    n_tissue = 0
    if K.obs.tissue_area_um2 in samples.obs:
        tis = pd.to_numeric(samples.obs[K.obs.tissue_area_um2], errors="coerce").to_numpy(dtype=np.float64)
        known = ~np.isnan(tis)
        dens_area = np.where(known, tis, area)
        n_tissue = int(known.sum())
    density_area = {"tissue_area_um2": n_tissue, "area_um2": S - n_tissue,
                    "used": (K.obs.tissue_area_um2 if n_tissue == S and S else
                             K.obs.area_um2 if n_tissue == 0 else "tissue_area_um2 where known, else area_um2")}
    out.add(K.obs.n_cells, counts)
    out.add("sample_area_um2", area)
    out.add("density_per_mm2", _safe_div(counts * 1e6, dens_area))

    # --- nearest-neighbour distance on the whole slide -----------------------------------------------
    with timed("descriptors: nearest neighbours", level=10, timings=timings):
        from scipy.spatial import cKDTree

        nn = np.full(N, np.nan)
        members = np.flatnonzero(member_count > 0)

        def nn_slide(si: int) -> None:
            idx = np.flatnonzero(codes == si)
            if len(idx) < 2:
                return
            q_idx = members[codes[members] == si]
            d, _ = cKDTree(xy[idx]).query(xy[q_idx], k=2, workers=jobs)
            nn[q_idx] = d[:, 1] * mpp_cell[q_idx]

        for si in used.tolist():
            nn_slide(si)
        out.add_stats("nn_dist_um", _group_stats(nn, rows, S, qs, index=cols))

    # --- graph on the induced subgraphs ----------------------------------------------------------------
    if graph_key is not None:
        with timed("descriptors: graph", level=10, timings=timings):
            A = cells.obsp[conn_key]
            if A.shape != (N, N):
                raise InputError(f"cells.obsp['{conn_key}'] has shape {A.shape}, expected ({N}, {N}).")
            A = sp.csr_matrix(A) if not sp.issparse(A) else A
            ei, ej = _undirected_edges(A)
            keep = (member_count[ei] > 0) & (member_count[ej] > 0)
            ei, ej = ei[keep], ej[keep]
            base_len = np.hypot(*(xy[ei] - xy[ej]).T) * mpp_cell[ei]
            e_item, es, (p, q) = pairs.incidence([ei, ej])  # p < q: same sample, cells sorted
            ei, ej = ei[e_item], ej[e_item]
            n_edges = np.bincount(es, minlength=S)
            deg = (np.bincount(p, minlength=P) + np.bincount(q, minlength=P)).astype(np.float64)
            tri = _triangles_per_node(p, q, P).astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                clust = np.where(deg >= 2, 2 * tri / (deg * (deg - 1)), 0.0)
            transitivity = _safe_div(np.bincount(rows, weights=tri, minlength=S),
                                     np.bincount(rows, weights=deg * (deg - 1) / 2, minlength=S))
            # degree assortativity: Pearson over both directions of every edge
            x, y = deg[p], deg[q]
            mu = _safe_div(np.bincount(es, weights=x + y, minlength=S), 2 * n_edges)
            dx, dy = x - mu[es], y - mu[es]
            cov = _safe_div(np.bincount(es, weights=dx * dy, minlength=S), n_edges)
            var = _safe_div(np.bincount(es, weights=dx * dx + dy * dy, minlength=S), 2 * n_edges)
            ok = var > 1e-12 * np.maximum(1.0, np.nan_to_num(mu) ** 2)
            assort = np.full(S, np.nan)
            assort[ok] = cov[ok] / var[ok]
            # connected components of the disjoint union of the induced subgraphs
            n_comp = np.zeros(S, dtype=np.int64)
            largest = np.zeros(S, dtype=np.int64)
            if P:
                from scipy.sparse.csgraph import connected_components

                G = sp.csr_matrix((np.ones(len(p), dtype=np.int8), (p, q)), shape=(P, P))
                nc, labels = connected_components(G, directed=False)
                comp_sample = np.empty(nc, dtype=np.int64)
                comp_sample[labels] = rows
                sizes = np.bincount(labels, minlength=nc)
                n_comp = np.bincount(comp_sample, minlength=S)
                np.maximum.at(largest, comp_sample, sizes)
            out.add("n_edges", n_edges)
            out.add_stats("degree", _group_stats(deg, rows, S, qs))
            out.add_stats("clustering", _group_stats(clust, rows, S, qs, with_quantiles=False))
            out.add("transitivity", transitivity)
            out.add("degree_assortativity", assort)
            out.add_stats("edge_length_um", _group_stats(base_len, es, S, qs, index=e_item))
            out.add("n_components", n_comp)
            out.add("largest_component_frac", _safe_div(largest, counts))
            out.add("isolated_frac", _safe_div(np.bincount(rows, weights=(deg == 0), minlength=S), counts))

    # --- Delaunay triangles of each slide, restricted to the samples ------------------------------------
    if delaunay:
        with timed("descriptors: Delaunay", level=10, timings=timings):
            tris = _run(lambda si: _slide_triangles(xy, np.flatnonzero(codes == si)), used.tolist(), jobs)
            tri = np.concatenate(tris) if tris else np.zeros((0, 3), dtype=np.int64)
            tri = tri[(member_count[tri] > 0).all(axis=1)] if len(tri) else tri
            t_item, ts, _ = pairs.incidence([tri[:, 0], tri[:, 1], tri[:, 2]])
            a, b, c = xy[tri[:, 0]], xy[tri[:, 1]], xy[tri[:, 2]]
            ab, ac = b - a, c - a
            area_px = 0.5 * np.abs(ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0])
            area_um2 = area_px * mpp_cell[tri[:, 0]] ** 2
            out.add_stats("delaunay_area_um2", _group_stats(area_um2, ts, S, qs, index=t_item))

    # --- cell types: composition and mixing --------------------------------------------------------
    if types_key is not None:
        with timed("descriptors: cell types", level=10, timings=timings):
            tc, tnames = _type_codes(cells, types_key)
            T = len(tnames)
            tp = tc[cols]
            typed = tp >= 0
            comp = np.bincount(rows[typed] * T + tp[typed], minlength=S * T).reshape(S, T) if T else np.zeros((S, 0))
            n_typed = comp.sum(axis=1)
            for k, name in enumerate(tnames):
                out.add(f"type_frac__{name}", _safe_div(comp[:, k], n_typed))
            if graph_key is not None and T:
                ta, tb = tc[ei], tc[ej]
                ok = (ta >= 0) & (tb >= 0)
                ta, tb, se = ta[ok], tb[ok], es[ok]
                lo, hi = np.minimum(ta, tb), np.maximum(ta, tb)
                n_pairs = T * (T + 1) // 2
                pidx = lo * T - lo * (lo - 1) // 2 + (hi - lo)
                pc = np.bincount(se * n_pairs + pidx, minlength=S * n_pairs).reshape(S, n_pairs)
                m_t = pc.sum(axis=1)
                for a_ in range(T):
                    for b_ in range(a_, T):
                        k = a_ * T - a_ * (a_ - 1) // 2 + (b_ - a_)
                        out.add(f"edge_type_frac__{tnames[a_]}__{tnames[b_]}", _safe_div(pc[:, k], m_t))
                same = _safe_div(np.bincount(se, weights=(ta == tb), minlength=S), m_t)
                ends = (np.bincount(se * T + ta, minlength=S * T) + np.bincount(se * T + tb, minlength=S * T)
                        ).reshape(S, T)
                a2 = (_safe_div(ends, 2 * m_t[:, None]) ** 2).sum(axis=1)
                den = 1 - a2
                r = np.full(S, np.nan)
                okr = (m_t > 0) & (den > 1e-12)
                r[okr] = (same[okr] - a2[okr]) / den[okr]
                out.add("same_type_edge_frac", same)
                out.add("type_assortativity", r)

    # --- nucleus features --------------------------------------------------------------------------
    if feat_names:
        with timed("descriptors: features", level=10, timings=timings):
            stats = _run(lambda j: _group_stats(_column(X, j), rows, S, qs, index=cols), feat_idx, jobs)
            for name, st in zip(feat_names, stats):
                out.add_stats(name, st)

    mat = out.matrix()
    samples.obsm[key] = mat
    samples.uns[names_key] = np.asarray(out.names, dtype=object)
    record_params(samples, key, {
        "graph_key": graph_key, "features": feat_names if features not in (True, False, None) else bool(features),
        "types_key": types_key, "quantiles": list(qs), "delaunay": bool(delaunay),
        "n_cells": n_cells_total, "nn_scope": "whole slide", "graph_scope": "subgraph induced by the sample's cells",
        "delaunay_scope": "slide triangulation restricted to triangles with all vertices in the sample",
        "std": "population (ddof=0)", "clustering_degree_lt_2": 0.0,
        "density_area": density_area,
    })
    logger.info("descriptors: %d samples x %d descriptors (%s)", S, mat.shape[1],
                ", ".join(f"{k.split(': ')[-1]} {v:.2f}s" for k, v in timings.items()))
    return samples if copy else None


def _run(fn, items: list, jobs: int) -> list:
    if jobs > 1 and len(items) > 1:
        with ThreadPoolExecutor(min(jobs, len(items))) as ex:
            return list(ex.map(fn, items))
    return [fn(i) for i in items]


def _slide_triangles(xy: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Delaunay triangles (global cell indices) of one slide's cells; none when degenerate.

    Uses :func:`tissuegraph.graph.delaunay_triangles` (certified tiles for large slides; one copy of
    coincident cells takes part).
    """
    if len(idx) < 3:
        return np.zeros((0, 3), dtype=np.int64)
    from ._build import delaunay_triangles

    try:
        tri = delaunay_triangles(xy[idx])
    except InputError as exc:  # Qhull failure on a degenerate slide: no triangle rather than no result
        logger.warning("descriptors: no Delaunay triangles for a slide of %d cells (%s)", len(idx), exc)
        return np.zeros((0, 3), dtype=np.int64)
    return idx[tri].astype(np.int64)
