"""Converters: cell graphs to PyTorch Geometric and networkx, back from PyG, and slide concatenation.

torch, torch_geometric and networkx are imported inside the functions, so ``import tissuegraph``
stays light.

Edge direction.  A cell graph's connectivity matrix has ``A[i, j] = 1`` when ``j`` is a neighbour of
``i`` (row ``i`` = the neighbourhood of ``i``; only the kNN graph is directed).  In PyG, messages flow
from ``edge_index[0]`` (source) to ``edge_index[1]`` (target), so :func:`to_pyg` writes the edge
``j -> i``: every cell aggregates its own neighbours, as with ``torch_geometric.nn.knn_graph``'s default
``flow='source_to_target'``.  :func:`to_networkx` keeps the matrix direction (edge ``i -> j``), like
``networkx.from_scipy_sparse_array``.  For symmetric graphs (radius, Delaunay, symmetrised kNN) both
conventions give the same edges.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from .. import _keys as K
from .._anndata import get_mpp, record_params, set_slide_metadata
from .._errors import DependencyError, InputError
from .._logging import logger

__all__ = ["to_pyg", "from_pyg", "to_networkx", "concat"]


# ----------------------------------------------------------------------------------------- helpers
def _import(name: str, pip: str):
    import importlib

    from .._compat import before_torch

    before_torch()
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(f"this function needs {name}: pip install {pip}") from exc


def _graph(adata, key: str) -> tuple[sparse.csr_matrix, sparse.csr_matrix | None]:
    ck, dk = K.obsp.connectivities(key), K.obsp.distances(key)
    if ck not in adata.obsp:
        raise InputError(f"adata.obsp[{ck!r}] is missing: build a cell graph first, e.g. "
                         f"tg.graph.knn(adata, key_added={key!r}) or tg.graph.delaunay(adata, key_added={key!r}).")
    conn = sparse.csr_matrix(adata.obsp[ck])
    conn.sum_duplicates()
    conn.sort_indices()
    dist = None
    if dk in adata.obsp:
        dist = sparse.csr_matrix(adata.obsp[dk])
        dist.sum_duplicates()
        dist.sort_indices()
    return conn, dist


def _edge_lengths_px(adata, conn: sparse.csr_matrix, dist: sparse.csr_matrix | None,
                     pos: np.ndarray | None) -> np.ndarray:
    """Length (level-0 px) of every stored connectivity entry, in CSR order.

    Read from the distance matrix (an absent entry there means 0, e.g. between coincident cells, as in
    squidpy); recomputed from the centroids when the graph has no distance matrix.
    """
    n = conn.shape[0]
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(conn.indptr))
    cols = conn.indices.astype(np.int64)
    if dist is None:
        if pos is None:
            return np.full(len(cols), np.nan)
        d = pos[rows] - pos[cols]
        return np.sqrt((d * d).sum(1))
    dkeys = np.repeat(np.arange(n, dtype=np.int64), np.diff(dist.indptr)) * n + dist.indices
    keys = rows * n + cols
    at = np.searchsorted(dkeys, keys)
    at_c = np.minimum(at, max(len(dkeys) - 1, 0))
    found = (at < len(dkeys)) & (dkeys[at_c] == keys) if len(dkeys) else np.zeros(len(keys), bool)
    out = np.zeros(len(keys))
    out[found] = dist.data[at_c[found]]
    return out


def _graph_edges(adata, key: str, spatial_key: str):
    """``(conn, pos_px, rows, cols, lengths_px)`` of the graph ``key``: its connectivities, the centroids
    (or ``None``), and every stored edge ``rows[e] -> cols[e]`` in CSR order with its length."""
    conn, dist = _graph(adata, key)
    n = adata.n_obs
    pos = np.asarray(adata.obsm[spatial_key], dtype=np.float64) if spatial_key in adata.obsm else None
    lengths = _edge_lengths_px(adata, conn, dist, pos)
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(conn.indptr))
    return conn, pos, rows, conn.indices.astype(np.int64), lengths


def _node_mpp(adata) -> np.ndarray | None:
    """µm/px of every cell (from its slide), or None when any cell's slide has no µm/px."""
    n = adata.n_obs
    col = adata.obs[K.obs.slide] if K.obs.slide in adata.obs else None
    if col is None:
        v = get_mpp(adata, required=False)
        return None if v is None else np.full(n, v)
    labels = col.astype(str).to_numpy()
    out = np.empty(n)
    for lab in pd.unique(labels):
        v = get_mpp(adata, lab, required=False)
        if v is None:
            try:
                v = get_mpp(adata, required=False)
            except InputError:
                v = None
        if v is None:
            return None
        out[labels == lab] = v
    return out


def _features(adata, features) -> tuple[np.ndarray | None, list[str]]:
    if features is None:
        if adata.X is None or adata.n_vars == 0:
            return None, []
        X = adata.X
        names = list(map(str, adata.var_names))
    elif isinstance(features, str):
        if features in adata.obsm:
            X = adata.obsm[features]
            if isinstance(X, pd.DataFrame):
                names = list(map(str, X.columns))
            else:
                stored = adata.uns.get(K.uns.feature_names(features)) if features.startswith("X_") else None
                ncol = X.shape[1] if np.ndim(X) == 2 else 1
                names = list(map(str, stored)) if stored is not None and len(stored) == ncol else \
                    [f"{features}_{i}" for i in range(ncol)]
        elif features in adata.var_names:
            return _features(adata, [features])
        else:
            raise InputError(f"features={features!r} is neither an obsm key ({list(adata.obsm.keys())}) nor "
                             "a var name.")
    else:
        names = [str(f) for f in features]
        missing = [f for f in names if f not in adata.var_names]
        if missing:
            raise InputError(f"features not in adata.var_names: {missing}.")
        if not names:
            return None, []
        X = adata[:, names].X
    if isinstance(X, pd.DataFrame):
        X = X.to_numpy()
    X = X.toarray() if sparse.issparse(X) else np.asarray(X)
    X = X.reshape(len(X), -1).astype(np.float32)
    bad = int((~np.isfinite(X)).sum())
    if bad:
        logger.warning("to_pyg: %d feature value(s) are NaN or infinite; clean them before training", bad)
    return X, names


def _labels(adata, y) -> tuple[np.ndarray | None, list[str] | None]:
    if y is None:
        return None, None
    if y not in adata.obs:
        raise InputError(f"y={y!r} is not a column of adata.obs (columns: {list(adata.obs.columns)}).")
    col = adata.obs[y]
    if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object or pd.api.types.is_string_dtype(col) \
            or pd.api.types.is_bool_dtype(col):
        cat = col.astype("category") if not isinstance(col.dtype, pd.CategoricalDtype) else col
        return cat.cat.codes.to_numpy().astype(np.int64), [str(c) for c in cat.cat.categories]
    values = col.to_numpy()
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64), None
    return values.astype(np.float32), None


# ------------------------------------------------------------------------------------------- to_pyg
def to_pyg(adata, *, key: str = "spatial", features: str | Sequence[str] | None = None, y: str | None = None,
           spatial_key: str = K.obsm.spatial):
    """A cell graph as a :class:`torch_geometric.data.Data` object.

    Parameters
    ----------
    adata
        Cells AnnData with a graph in ``obsp[f'{key}_connectivities']`` (and ``_distances``).
    key
        The graph's ``key_added``.
    features
        Node features ``x``: ``None`` = all of ``adata.X``; a list of var names; or one obsm key (e.g. an
        embedding ``'X_cnn'``).  An empty list gives no ``x``.
    y
        ``obs`` column used as node label.  Categorical/string columns become int64 codes (``-1`` =
        missing) with the category order in ``data.y_categories``; numeric columns are kept.
    spatial_key
        Centroids in ``obsm`` (level-0 px).

    Returns
    -------
    ``Data`` with ``x`` (n, F) float32, ``edge_index`` (2, E) int64 with edge ``j -> i`` for every
    neighbour ``j`` of ``i`` (see the module docstring), ``edge_attr`` (E, 1) float32 edge lengths,
    ``pos`` (n, 2) float32 centroids, and ``y``.  Lengths and positions are in µm when every cell's slide
    has a known µm/px (``data.unit == 'um'``, with the per-cell µm/px in ``data.mpp``), otherwise in
    level-0 px (``data.unit == 'px'``).  ``data.obs_names``, ``data.feature_names`` and, when present,
    ``data.slide`` (int64 codes) with ``data.slide_categories`` allow :func:`from_pyg` to rebuild the
    AnnData.
    """
    torch = _import("torch", "torch")
    pyg_data = _import("torch_geometric.data", "torch-geometric")
    conn, pos_px, rows, cols, lengths = _graph_edges(adata, key, spatial_key)
    n = adata.n_obs
    mpp = _node_mpp(adata)
    unit = "um" if mpp is not None else "px"
    if mpp is not None:
        lengths = lengths * mpp[rows]
    x, names = _features(adata, features)
    yv, ycats = _labels(adata, y)
    data = pyg_data.Data(edge_index=torch.from_numpy(np.stack([cols, rows])),
                         edge_attr=torch.from_numpy(lengths.astype(np.float32)).reshape(-1, 1),
                         num_nodes=n)
    if x is not None:
        data.x = torch.from_numpy(x)
    if pos_px is not None:
        pos = pos_px * mpp[:, None] if mpp is not None else pos_px
        data.pos = torch.from_numpy(pos.astype(np.float32))
    if yv is not None:
        data.y = torch.from_numpy(yv)
        if ycats is not None:
            data.y_categories = ycats
        data.y_name = y
    data.unit = unit
    if mpp is not None:
        data.mpp = torch.from_numpy(mpp.astype(np.float64))
    data.obs_names = list(map(str, adata.obs_names))
    data.feature_names = names
    if K.obs.slide in adata.obs:
        s = adata.obs[K.obs.slide].astype("category")
        data.slide = torch.from_numpy(s.cat.codes.to_numpy().astype(np.int64))
        data.slide_categories = [str(c) for c in s.cat.categories]
    return data


def from_pyg(data, *, key: str = "spatial", mpp: float | None = None, y_key: str | None = None):
    """Cells AnnData from a :class:`torch_geometric.data.Data` graph (the inverse of :func:`to_pyg`).

    Parameters
    ----------
    data
        ``Data`` with ``edge_index`` and optionally ``x``, ``pos``, ``edge_attr`` (lengths), ``y``.
        The attributes written by :func:`to_pyg` (``unit``, ``mpp``, ``obs_names``, ``feature_names``,
        ``slide``, ``y_categories``) are used when present.
    key
        ``key_added`` of the graph to write.
    mpp
        µm/px to record for graphs that do not carry one (``pos`` is then taken as level-0 px).
    y_key
        ``obs`` column for ``data.y`` (default: the name recorded by :func:`to_pyg`, else ``'y'``).

    Returns
    -------
    AnnData with ``X`` (float32 features, or no columns), ``obsm['spatial']`` (level-0 px),
    ``obsp[f'{key}_connectivities']`` with ``A[i, j] = 1`` for every edge ``j -> i``,
    ``obsp[f'{key}_distances']`` (px), ``obs['slide']`` and ``uns['spatial']`` when known.
    """
    import anndata as ad

    n = int(data.num_nodes)
    ei = np.asarray(data.edge_index.detach().cpu().numpy(), dtype=np.int64)
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise InputError(f"data.edge_index must have shape (2, E), got {ei.shape}.")
    unit = getattr(data, "unit", None)
    node_mpp = getattr(data, "mpp", None)
    if node_mpp is not None:
        node_mpp = np.asarray(node_mpp.detach().cpu().numpy() if hasattr(node_mpp, "detach") else node_mpp,
                              dtype=np.float64).reshape(-1)
        if node_mpp.size == 1:
            node_mpp = np.full(n, float(node_mpp[0]))
    if unit == "um" and node_mpp is None:
        raise InputError("data.unit is 'um' but data.mpp is missing: cannot convert back to pixels.")
    if mpp is not None and node_mpp is None:
        node_mpp = np.full(n, float(mpp))
    scale = node_mpp if unit == "um" else None  # divide µm values by this to get px

    x = getattr(data, "x", None)
    X = np.zeros((n, 0), dtype=np.float32) if x is None else np.asarray(x.detach().cpu().numpy(), np.float32)
    names = list(getattr(data, "feature_names", []) or [])
    var_names = names if len(names) == X.shape[1] else [f"f{i}" for i in range(X.shape[1])]
    obs_names = list(getattr(data, "obs_names", []) or [])
    obs = pd.DataFrame(index=pd.Index(obs_names if len(obs_names) == n else [str(i) for i in range(n)]))
    slide = getattr(data, "slide", None)
    slide_cats = getattr(data, "slide_categories", None)
    if slide is not None and slide_cats is not None:
        codes = np.asarray(slide.detach().cpu().numpy(), dtype=np.int64)
        obs[K.obs.slide] = pd.Categorical.from_codes(codes, categories=list(slide_cats))
    yv = getattr(data, "y", None)
    if yv is not None:
        yk = y_key or getattr(data, "y_name", None) or "y"
        yarr = np.asarray(yv.detach().cpu().numpy()).reshape(n, -1)
        yarr = yarr[:, 0] if yarr.shape[1] == 1 else yarr
        cats = getattr(data, "y_categories", None)
        if cats is not None and yarr.ndim == 1:
            obs[yk] = pd.Categorical.from_codes(yarr.astype(np.int64), categories=list(cats))
        elif yarr.ndim == 1:
            obs[yk] = yarr
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index(var_names)))
    pos = getattr(data, "pos", None)
    pos_px = None
    if pos is not None:
        pos_px = np.asarray(pos.detach().cpu().numpy(), dtype=np.float64)
        if scale is not None:
            pos_px = pos_px / scale[:, None]
        adata.obsm[K.obsm.spatial] = pos_px
    src, dst = ei[0], ei[1]
    conn = sparse.csr_matrix((np.ones(len(src), dtype=np.float32), (dst, src)), shape=(n, n))
    conn.sum_duplicates()
    conn.data[:] = 1.0
    ea = getattr(data, "edge_attr", None)
    if ea is not None and ea.numel() == len(src):
        lengths = np.asarray(ea.detach().cpu().numpy(), dtype=np.float64).reshape(-1)
        if scale is not None:
            lengths = lengths / scale[dst]
    elif pos_px is not None:
        d = pos_px[dst] - pos_px[src]
        lengths = np.sqrt((d * d).sum(1))
    else:
        lengths = None
    ck, dk, nk = K.obsp.connectivities(key), K.obsp.distances(key), K.uns.spatial_neighbors(key)
    adata.obsp[ck] = conn
    if lengths is not None:
        dist = sparse.csr_matrix((lengths, (dst, src)), shape=(n, n))
        dist.sum_duplicates()
        dist.eliminate_zeros()
        adata.obsp[dk] = dist
    adata.uns[nk] = {"connectivities_key": ck, "distances_key": dk}
    record_params(adata, nk, {"method": "from_pyg", "distance_unit": "px"})
    if node_mpp is not None:
        if K.obs.slide in adata.obs:
            for s in adata.obs[K.obs.slide].cat.categories:
                m = node_mpp[(adata.obs[K.obs.slide] == s).to_numpy()]
                if len(m):
                    set_slide_metadata(adata, str(s), mpp=float(m[0]))
        else:
            set_slide_metadata(adata, "slide", mpp=float(node_mpp[0]))
    return adata


# -------------------------------------------------------------------------------------- to_networkx
def to_networkx(adata, *, key: str = "spatial", node_attrs: Sequence[str] | None = None,
                spatial_key: str = K.obsm.spatial):
    """A cell graph as a networkx graph.

    Parameters
    ----------
    adata
        Cells AnnData with a graph in ``obsp[f'{key}_connectivities']``.
    key
        The graph's ``key_added``.
    node_attrs
        ``obs`` columns to copy onto the nodes (``'slide'`` is always copied when present).
    spatial_key
        Centroids in ``obsm`` (level-0 px).

    Returns
    -------
    :class:`networkx.Graph` when the connectivities are symmetric, else :class:`networkx.DiGraph` with
    an edge ``i -> j`` for ``A[i, j] = 1`` (j is a neighbour of i).  Nodes are ``0..n-1`` with
    ``name`` (obs name), ``pos`` ((x, y) level-0 px) and the requested attributes; edges carry
    ``distance`` (level-0 px) and, when µm/px is known, ``distance_um``.
    """
    nx = _import("networkx", "networkx")
    conn, pos, rows, cols, lengths = _graph_edges(adata, key, spatial_key)
    n = adata.n_obs
    symmetric = (conn != conn.T).nnz == 0
    G = nx.Graph() if symmetric else nx.DiGraph()
    attrs = list(node_attrs or [])
    missing = [a for a in attrs if a not in adata.obs]
    if missing:
        raise InputError(f"node_attrs not in adata.obs: {missing}.")
    if K.obs.slide in adata.obs and K.obs.slide not in attrs:
        attrs.append(K.obs.slide)
    columns = {a: adata.obs[a].tolist() for a in attrs}
    names = list(map(str, adata.obs_names))
    for i in range(n):
        d: dict[str, Any] = {"name": names[i]}
        if pos is not None:
            d["pos"] = (float(pos[i, 0]), float(pos[i, 1]))
        for a, v in columns.items():
            d[a] = v[i]
        G.add_node(i, **d)
    mpp = _node_mpp(adata)
    keep = np.ones(len(rows), bool) if not symmetric else rows <= cols
    r, c, ln = rows[keep], cols[keep], lengths[keep]
    if mpp is None:
        G.add_edges_from((int(a), int(b), {"distance": float(x)}) for a, b, x in zip(r, c, ln))
    else:
        um = ln * mpp[r]
        G.add_edges_from((int(a), int(b), {"distance": float(x), "distance_um": float(u)})
                         for a, b, x, u in zip(r, c, ln, um))
    return G


# ------------------------------------------------------------------------------------------- concat
def _graph_keys(adata) -> set[str]:
    suffix = K.obsp.connectivities("")  # "_connectivities"
    return {k[: -len(suffix)] for k in adata.obsp.keys() if k.endswith(suffix)}


def concat(adatas: Sequence | Mapping, *, label: str = K.obs.slide, keys: Sequence[str] | None = None,
           join: str = "inner"):
    """Concatenate cells AnnData objects (e.g. one per slide) keeping their cell graphs.

    ``anndata.concat`` drops ``obsp``; here every graph present in all inputs is kept as a
    block-diagonal matrix (no edge between inputs), ``uns['spatial']`` entries are merged, and the graph
    metadata ``uns[f'{key}_neighbors']`` is kept.

    Parameters
    ----------
    adatas
        A sequence of AnnData, or a mapping ``{slide id: AnnData}``.
    label
        ``obs`` column identifying the input of each cell.  When every input already has this column
        (e.g. ``'slide'`` from segmentation) its values are kept; otherwise it is filled with ``keys``
        (default: the mapping keys, or ``'0', '1', ...``).
    keys
        Names of the inputs, used when ``label`` is not yet a column.
    join
        ``'inner'`` (default) or ``'outer'`` join of the variables, as in ``anndata.concat``.

    Returns
    -------
    The concatenated AnnData.  Duplicate obs names across inputs get ``'-<label value>'`` appended.
    Graphs, obsm entries and uns entries missing from some inputs are dropped (with a warning for
    graphs).  Raises when two inputs record different µm/px for the same slide id.
    """
    import anndata as ad

    if isinstance(adatas, Mapping):
        if keys is not None:
            raise InputError("give keys= or a mapping of AnnData objects, not both.")
        keys = [str(k) for k in adatas.keys()]
        items = list(adatas.values())
    else:
        items = list(adatas)
    if not items:
        raise InputError("concat needs at least one AnnData.")
    if not all(isinstance(a, ad.AnnData) for a in items):
        raise InputError("concat takes AnnData objects.")
    has = [label in a.obs for a in items]
    if all(has):
        if keys is not None:
            raise InputError(f"every input already has obs[{label!r}]; pass label= another column name to "
                             "record keys=, or drop keys=.")
        labels_per_input = None
    elif any(has):
        raise InputError(f"obs[{label!r}] exists in some inputs but not in others.")
    else:
        keys = [str(i) for i in range(len(items))] if keys is None else [str(k) for k in keys]
        if len(keys) != len(items) or len(set(keys)) != len(keys):
            raise InputError(f"keys must be {len(items)} distinct names, got {keys}.")
        labels_per_input = keys

    # slide metadata: union, no conflicting µm/px
    spatial: dict[str, Any] = {}
    for a in items:
        for sid, entry in (a.uns.get(K.uns.spatial, {}) or {}).items():
            if sid in spatial:
                m0 = spatial[sid].get("scalefactors", {}).get("mpp")
                m1 = entry.get("scalefactors", {}).get("mpp")
                same = (m0 == m1) or (m0 is not None and m1 is not None and np.isnan(m0) and np.isnan(m1))
                if not same:
                    raise InputError(f"slide {sid!r} has µm/px {m0} in one input and {m1} in another.")
            else:
                spatial[sid] = entry
    graph_sets = [_graph_keys(a) for a in items]
    common = set.intersection(*graph_sets)
    dropped = set.union(*graph_sets) - common
    if dropped:
        logger.warning("concat: graphs %s are not present in every input and are dropped", sorted(dropped))

    parts = []
    for i, a in enumerate(items):
        b = a.copy()
        for k in list(b.obsp.keys()):
            if not any(k in (K.obsp.connectivities(g), K.obsp.distances(g)) for g in common):
                del b.obsp[k]
        if labels_per_input is not None:
            b.obs[label] = labels_per_input[i]
        b.obs[label] = b.obs[label].astype(str)
        parts.append(b)
    with warnings.catch_warnings():  # duplicate obs names are made unique just below
        warnings.filterwarnings("ignore", message="Observation names are not unique")
        out = ad.concat(parts, join=join, merge="same", uns_merge="same", pairwise=True)
    if not out.obs_names.is_unique:
        out.obs_names = [f"{n}-{s}" for n, s in zip(out.obs_names, out.obs[label].astype(str))]
        if not out.obs_names.is_unique:
            out.obs_names_make_unique()
    out.obs[label] = pd.Categorical(out.obs[label].astype(str))
    if spatial:
        out.uns[K.uns.spatial] = spatial
    for g in common:
        nk = K.uns.spatial_neighbors(g)
        entries = [a.uns.get(nk) for a in items]
        ck, dk = K.obsp.connectivities(g), K.obsp.distances(g)
        base = {"connectivities_key": ck, "distances_key": dk}
        params = [e.get("params", {}) if isinstance(e, Mapping) else {} for e in entries]
        same = all(_same(params[0], p) for p in params[1:])
        out.uns[nk] = base
        if same:
            out.uns[nk]["params"] = params[0]
        else:
            record_params(out, nk, {"method": "concat", "inputs": params})
        if ck not in out.obsp:  # pragma: no cover - anndata keeps pairwise entries present in all inputs
            raise InputError(f"graph {g!r} was lost in concatenation.")
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple, np.ndarray)) and isinstance(b, (list, tuple, np.ndarray)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # pragma: no cover
        return False
