"""GNN embeddings of samples: the bridge between the AnnData levels and :mod:`tissuegraph.models`.

The graph of a sample is the subgraph of the cell graph (``cells.obsp['<graph_key>_connectivities']``)
induced by the sample's member cells (``samples.obsm['cells']``). Many samples are batched into one
block-diagonal graph with vectorised numpy index work (no Python object per sample): for a block of
samples, every (sample, cell) membership pair is a node, so a cell in two overlapping samples is two
nodes, one in each graph; an edge of the cell graph ``i -> j`` becomes an edge of a sample's graph when
both ``i`` and ``j`` are members of that sample. Batches hold about ``batch_nodes`` nodes, so memory
does not grow with the number of cells.

Node inputs (``inputs=``, names joined by ``'+'``, e.g. ``'features+positions'``):

``'features'``
    ``cells.X`` standardised per column (z-scores). Untrained models use the mean and standard
    deviation over the cells that belong to at least one sample (constant columns get std 1); a trained
    model uses the statistics of its training cells (stored in its card).
``'topology'``
    A constant 1 per node: the model sees the graph only.
``'positions'``
    ``(x, y)`` of the cell relative to the sample centre (``samples.obsm['spatial']``), in µm divided by
    ``POSITION_SCALE_UM`` (100 µm), so that a 256 µm patch spans about [-1.3, 1.3].
``'cell_type'``
    One-hot ``cells.obs['cell_type']`` (categories of the cells, or of the training cells for a
    trained model; unknown types are all-zero).

Edge attributes (layers ``'gine'`` and ``'gatv2'``): the edge length in µm divided by
``EDGE_SCALE_UM`` (10 µm), from the centroids.

A sample without member cells gets an all-zero embedding (documented, counted in the provenance
record's ``params['n_empty']``).
"""

from __future__ import annotations

import hashlib
import json
import numbers
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _keys as K
from .._errors import InputError
from .._logging import logger, progress_bar, timed
from ._record import record_representation

__all__ = ["gnn", "gnn_twins", "train_gnn", "INPUTS"]

INPUTS = ("features", "topology", "positions", "cell_type")
POSITION_SCALE_UM = 100.0
EDGE_SCALE_UM = 10.0
DEFAULT_BATCH_NODES = 32768


# ------------------------------------------------------------------------------------------- inputs
def _parse_inputs(inputs: Any) -> tuple[str, ...]:
    if isinstance(inputs, str):
        parts = [p.strip().lower() for p in inputs.replace(",", "+").split("+") if p.strip()]
    elif isinstance(inputs, Sequence):
        parts = [str(p).strip().lower() for p in inputs]
    else:
        raise InputError(f"inputs must be a name or names joined by '+' from {list(INPUTS)}, got {inputs!r}.")
    bad = [p for p in parts if p not in INPUTS]
    if not parts or bad:
        raise InputError(f"inputs={inputs!r}: unknown name(s) {bad}; choose from {list(INPUTS)}, joined by '+' "
                         "(e.g. 'features+positions').")
    if "topology" in parts and len(parts) > 1:
        raise InputError("inputs='topology' (a constant per node) cannot be combined with other inputs.")
    if len(set(parts)) != len(parts):
        raise InputError(f"inputs={inputs!r} names an input twice.")
    return tuple(parts)


def _inputs_name(parts: Sequence[str]) -> str:
    return "+".join(parts)


def _membership(samples, cells) -> sp.csr_matrix:
    """Membership aligned to ``cells`` without copying it when the cells are those of the samples."""
    from ..graph import sample_membership

    key = K.obsm.membership
    m = samples.obsm.get(key) if key in samples.obsm else None
    entry = samples.uns.get(K.uns.membership, {}) or {}
    names = entry.get("obs_names") if isinstance(entry, Mapping) else None
    if m is not None and sp.isspmatrix_csr(m) and names is not None and m.shape == (samples.n_obs, cells.n_obs) \
            and m.has_sorted_indices and len(names) == cells.n_obs and _same_names(names, cells.obs_names):
        return m
    return sample_membership(samples, cells)


def _same_names(a, b, step: int = 65536) -> bool:
    """``a == b`` elementwise, in blocks (no O(n) temporaries for millions of cells)."""
    for lo in range(0, len(a), step):
        x, y = np.asarray(a[lo:lo + step]), np.asarray(b[lo:lo + step])
        if x.shape == y.shape and bool(np.all(x == y)):  # object/str arrays compared as they are (fast)
            continue
        if not np.array_equal(x.astype(str), y.astype(str)):  # e.g. ints on one side, their strings on the other
            return False
    return True


class _SampleGraphs:
    """Everything needed to cut batches of sample graphs out of the cell graph (vectorised)."""

    def __init__(self, samples, cells, *, inputs: tuple[str, ...], graph_key: str, stats: dict | None = None,
                 edge_attr: bool = False, sparse_adj: bool = False, nan: str = "mean", workers: int = 1):
        from ..graph._samples import _cell_slides, _check_cells, _slide_mpp

        if nan not in ("mean", "error"):
            raise InputError(f"nan must be 'mean' (NaN features -> column mean) or 'error', got {nan!r}.")
        self.nan = nan
        self.workers = max(1, int(workers))
        self.n_nonfinite = 0
        self.inputs = inputs
        self.edge_attr = edge_attr
        self.sparse_adj = sparse_adj
        ck = K.obsp.connectivities(graph_key)
        if ck not in cells.obsp:
            raise InputError(f"cells.obsp[{ck!r}] is missing: build the cell graph first, e.g. "
                             f"tg.graph.delaunay(cells, key_added={graph_key!r}) (or pass graph_key=).")
        A = cells.obsp[ck]
        A = A if sp.isspmatrix_csr(A) else sp.csr_matrix(A)
        if not A.has_sorted_indices:
            A = A.sorted_indices()
        self.A_indptr = A.indptr  # int32 or int64; gathered values are cast per batch
        self.A_indices = A.indices
        self.n_cells = cells.n_obs
        self.M = _membership(samples, cells)
        self.n_samples = samples.n_obs
        self.n_nodes = np.diff(self.M.indptr).astype(np.int64)
        need_xy = "positions" in inputs or edge_attr
        if need_xy:
            self.xy = _check_cells(cells)
            codes, slide_ids = _cell_slides(cells)
            mpps = _slide_mpp(cells, slide_ids, what="tg.emb.gnn (positions / edge lengths in µm)")
            self.cell_mpp = mpps[codes]
            if "positions" in inputs:
                c = np.asarray(samples.obsm[K.obsm.spatial], dtype=np.float64) if K.obsm.spatial in samples.obsm \
                    else None
                if c is None or c.shape != (samples.n_obs, 2) or not np.isfinite(c).all():
                    raise InputError("inputs='positions' needs samples.obsm['spatial'] (finite (n_samples, 2) "
                                     "sample centres in level-0 px), as the tg.graph.*_samples constructors write.")
                self.centers = c
        self.stats = dict(stats or {})
        if "features" in inputs:
            self.X = cells.X
            if self.X is None or cells.n_vars == 0:
                raise InputError("inputs='features' needs cells.X (the nucleus features); these cells have none. "
                                 "Use inputs='topology' or compute features with tg.feat.nuclei_features.")
            names = [str(v) for v in cells.var_names]
            if "mean" not in self.stats:
                mean, std = self._fit_standardisation()
                self.stats.update({"feature_names": names, "mean": mean.tolist(), "std": std.tolist()})
            elif list(self.stats.get("feature_names", names)) != names:
                want = list(self.stats["feature_names"])
                missing = [n for n in want if n not in names][:5]
                raise InputError(f"The model was trained on {len(want)} features {want[:5]}... but cells.var_names "
                                 f"differ (missing e.g. {missing}); compute the same features "
                                 "(tg.feat.nuclei_features) or use an untrained twin.")
            self.mean = np.asarray(self.stats["mean"], dtype=np.float32)
            self.std = np.asarray(self.stats["std"], dtype=np.float32)
        if "cell_type" in inputs:
            if K.obs.cell_type not in cells.obs:
                raise InputError(f"inputs='cell_type' needs cells.obs['{K.obs.cell_type}'] (the cell types), "
                                 "which these cells do not have.")
            col = cells.obs[K.obs.cell_type]
            cats = self.stats.get("cell_types")
            if cats is None:
                cats = [str(c) for c in (col.cat.categories if isinstance(col.dtype, pd.CategoricalDtype)
                                          else pd.unique(col.dropna().astype(str)))]
                self.stats["cell_types"] = cats
            lut = {c: i for i, c in enumerate(cats)}
            # unknown or missing types (NaN -> 'nan') map to -1: an all-zero one-hot row
            self.type_codes = pd.Series(col.astype(str).to_numpy()).map(lut).fillna(-1).to_numpy(np.int64)
            self.n_types = len(cats)
        self.in_channels = sum({"features": cells.n_vars if "features" in inputs else 0, "topology": 1,
                                "positions": 2, "cell_type": getattr(self, "n_types", 0)}[p] for p in inputs)
        if self.in_channels == 0:
            raise InputError("The chosen inputs give no node input columns (e.g. no cell types).")

    # ------------------------------------------------------------------------------- standardisation
    def _fit_standardisation(self) -> tuple[np.ndarray, np.ndarray]:
        """Column mean and std over the cells that belong to a sample, in blocks (no copy of X); NaN and
        infinite values are left out of the statistics (and counted).

        One-pass shifted sums (the shift is the first block's mean: numerically stable), one partial sum
        per block of 16,384 cells added in block order, so the result does not depend on ``workers``
        (threads that share the blocks; numpy releases the GIL)."""
        used = np.zeros(self.n_cells, dtype=bool)
        used[self.M.indices] = True
        X = self.X
        d = X.shape[1]
        step = 16384
        starts = [lo for lo in range(0, self.n_cells, step) if used[lo:lo + step].any()]

        def load(lo: int) -> np.ndarray:
            u = used[lo:lo + step]
            block = X[lo:lo + step]
            block = block.toarray() if sp.issparse(block) else np.asarray(block)
            if not u.all():
                block = block[u]
            return block.astype(np.float64)

        shift = None
        if starts:
            b = load(starts[0])
            ok = np.isfinite(b)
            c = ok.sum(0)
            shift = np.where(c > 0, np.where(ok, b, 0.0).sum(0) / np.maximum(c, 1), 0.0)
        parts = np.zeros((len(starts), 3, d))  # s1, s2, count per block
        bad = np.zeros(len(starts), dtype=np.int64)

        def part(k: int) -> None:
            b = load(starts[k])
            colsum = b.sum(0)
            if np.isfinite(colsum).all():  # the usual case: no mask (NaN/inf would propagate into the sum)
                b -= shift
                parts[k, 0] = colsum - len(b) * shift
                parts[k, 1] = np.einsum("ij,ij->j", b, b)
                parts[k, 2] = len(b)
                return
            ok = np.isfinite(b)
            bad[k] = int((~ok).sum())
            b = np.where(ok, b - shift, 0.0)
            parts[k, 0] = b.sum(0)
            parts[k, 1] = np.einsum("ij,ij->j", b, b)
            parts[k, 2] = ok.sum(0)

        if self.workers > 1 and len(starts) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(self.workers, len(starts))) as ex:
                list(ex.map(part, range(len(starts))))
        else:
            for k in range(len(starts)):
                part(k)
        s1 = np.zeros(d)
        s2 = np.zeros(d)
        cnt = np.zeros(d)
        for k in range(len(starts)):  # in block order: the same sums whatever the number of threads
            s1 += parts[k, 0]
            s2 += parts[k, 1]
            cnt += parts[k, 2]
        n_bad = int(bad.sum())
        self.n_nonfinite = n_bad
        if n_bad:
            if self.nan == "error":
                raise InputError(f"cells.X has {n_bad} NaN or infinite feature value(s) in cells that belong to "
                                 "samples; impute or drop them first, or pass nan='mean' (they become the column "
                                 "mean, z-score 0).")
            logger.warning("tg.emb.gnn: %d NaN or infinite feature value(s) in member cells are set to the column "
                           "mean (z-score 0); pass nan='error' to refuse them.", n_bad)
        if shift is None:
            return np.zeros(d), np.ones(d)
        n = np.maximum(cnt, 1)
        m = s1 / n
        std = np.sqrt(np.maximum(s2 / n - m * m, 0.0))
        std[~(std > 1e-6 * np.maximum(np.abs(m + shift), 1.0))] = 1.0
        return m + shift, std

    # ----------------------------------------------------------------------------------- batches
    def blocks(self, order: np.ndarray, batch_nodes: int) -> list[np.ndarray]:
        """Split ``order`` (sample indices) into consecutive blocks of about ``batch_nodes`` nodes."""
        if len(order) == 0:
            return []
        csum = np.cumsum(self.n_nodes[order])
        cuts = []
        start = 0
        while start < len(order):
            base = csum[start - 1] if start else 0
            stop = int(np.searchsorted(csum, base + batch_nodes, side="right"))
            stop = max(stop, start + 1)
            cuts.append(order[start:stop])
            start = stop
        return cuts

    def batch(self, rows: np.ndarray, *, y: np.ndarray | None = None):
        """The block-diagonal :class:`~tissuegraph.models.GraphBatch` of the samples ``rows``."""
        import torch

        from ..models.gnn import GraphBatch

        rows = np.asarray(rows, dtype=np.int64)
        Mi = self.M.indptr
        counts = self.n_nodes[rows]
        nb = len(rows)
        N = int(counts.sum())
        starts = Mi[rows]
        # node k = (graph g_k, cell c_k), graphs in block order, cells sorted within a graph
        g = np.repeat(np.arange(nb, dtype=np.int64), counts)
        if nb and rows[-1] - rows[0] == nb - 1 and (nb == 1 or (np.diff(rows) == 1).all()):
            c = self.M.indices[Mi[rows[0]]:Mi[rows[-1] + 1]].astype(np.int64)  # consecutive samples: a slice
        else:
            offs = np.concatenate([[0], np.cumsum(counts)[:-1]]) if nb else np.zeros(0, np.int64)
            c = self.M.indices[np.repeat(starts - offs, counts) + np.arange(N, dtype=np.int64)].astype(np.int64)
        # every cell-graph edge out of a node's cell, kept when the neighbour is in the same sample
        a_start = self.A_indptr[c].astype(np.int64)
        deg = self.A_indptr[c + 1].astype(np.int64) - a_start
        E0 = int(deg.sum())
        eoffs = np.concatenate([[0], np.cumsum(deg)[:-1]]) if N else np.zeros(0, np.int64)
        tgt = np.repeat(np.arange(N, dtype=np.int64), deg)
        nbr = self.A_indices[np.repeat(a_start - eoffs, deg) + np.arange(E0, dtype=np.int64)]
        gk = g * self.n_cells
        node_keys = gk + c  # sorted (graphs in order, cells sorted within)
        keys = np.repeat(gk, deg)
        keys += nbr
        at = np.minimum(np.searchsorted(node_keys, keys), max(N - 1, 0))
        ok = node_keys[at] == keys if N else np.zeros(0, dtype=bool)
        src = at[ok]
        tgt = tgt[ok]
        x = self._node_inputs(rows, g, c)
        edge_index = torch.from_numpy(np.stack([src, tgt]))
        gb = GraphBatch(x=torch.from_numpy(x), edge_index=edge_index, batch=torch.from_numpy(g), num_graphs=nb,
                        graph_ids=torch.from_numpy(rows))
        if self.edge_attr:
            d = self.xy[c[src]] - self.xy[c[tgt]]
            length = np.sqrt((d * d).sum(1)) * self.cell_mpp[c[tgt]] / EDGE_SCALE_UM
            gb.edge_attr = torch.from_numpy(length.astype(np.float32)[:, None])
        if self.sparse_adj:
            indptr = np.zeros(N + 1, dtype=np.int64)
            np.cumsum(np.bincount(tgt, minlength=N), out=indptr[1:])
            with warnings.catch_warnings():  # "sparse CSR support is in beta": used through PyG's spmm
                warnings.simplefilter("ignore", UserWarning)
                gb.adj_t = torch.sparse_csr_tensor(torch.from_numpy(indptr), torch.from_numpy(src),
                                                   torch.ones(len(src), dtype=torch.float32), size=(N, N))
        if y is not None:
            gb.y = torch.from_numpy(y[rows])
        return gb

    def _node_inputs(self, rows: np.ndarray, g: np.ndarray, c: np.ndarray) -> np.ndarray:
        parts = []
        for name in self.inputs:
            if name == "topology":
                parts.append(np.ones((len(c), 1), dtype=np.float32))
            elif name == "features":
                xb = self.X[c]  # a fresh copy (fancy indexing): standardised in place
                xb = xb.toarray() if sp.issparse(xb) else np.asarray(xb)
                xb = np.asarray(xb, dtype=np.float32)
                np.subtract(xb, self.mean, out=xb)
                np.divide(xb, self.std, out=xb)
                # one pass to find non-finite values (NaN and inf propagate into the sum); the mask only
                # when there are some
                if not np.isfinite(np.add.reduce(xb, axis=None, dtype=np.float64)):
                    bad = ~np.isfinite(xb)
                    if self.nan == "error":
                        raise InputError("cells.X has NaN or infinite feature values in sample member cells; "
                                         "impute or drop them first, or pass nan='mean'.")
                    xb[bad] = 0.0
                parts.append(xb)
            elif name == "positions":
                rel = (self.xy[c] - self.centers[rows[g]]) * self.cell_mpp[c][:, None] / POSITION_SCALE_UM
                parts.append(rel.astype(np.float32))
            else:
                oh = np.zeros((len(c), self.n_types), dtype=np.float32)
                t = self.type_codes[c]
                ok = t >= 0
                oh[np.flatnonzero(ok), t[ok]] = 1.0
                parts.append(oh)
        if len(parts) == 1:
            return np.ascontiguousarray(parts[0])
        return np.ascontiguousarray(np.concatenate(parts, axis=1))

    def iter_batches(self, order: np.ndarray, batch_nodes: int, **kw) -> Iterator:
        for rows in self.blocks(order, batch_nodes):
            yield rows, self.batch(rows, **kw)


# --------------------------------------------------------------------------------------- helpers
def _check_int(v: Any, name: str, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        raise InputError(f"{name} must be an integer >= {lo}, got {v!r}.")
    return int(v)


def _check_pair(samples, cells) -> None:
    from anndata import AnnData

    for name, a in (("samples", samples), ("cells", cells)):
        if not isinstance(a, AnnData):
            raise InputError(f"{name} must be an AnnData, got {type(a).__name__}.")


def _layer_tag(layer: int | str, depth: int) -> str | None:
    """Suffix of keys / twin groups for a layer choice; ``None`` for the last layer (the default)."""
    if isinstance(layer, str):
        layer = layer.lower()
        if layer == "last":
            return None
        return "concat" if layer in ("all", "concat") else layer
    return None if layer % depth == depth - 1 else f"l{layer % depth}"


def _resolve_model(model: Any):
    """``(module or None, card or None, conv name)`` for an architecture name, a folder or a module."""
    import torch

    from ..models.gnn import CONVS, GNNEncoder

    if isinstance(model, str) and model.lower() in CONVS:
        return None, None, model.lower()
    if isinstance(model, (str, Path)):
        from ..models._io import load_model

        module, card = load_model(model)
        if not isinstance(module, GNNEncoder):
            raise InputError(f"{model} holds a {type(module).__name__}, not a GNN encoder.")
        return module, card, module.conv_name
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], torch.nn.Module):
        module, card = model
        return module, dict(card or {}), module.conv_name
    if isinstance(model, GNNEncoder):
        return model, dict(getattr(model, "card", None) or {}), model.conv_name
    raise InputError(f"model must be an architecture name {list(CONVS)}, a model folder (tg.models.save_model), "
                     f"or a GNNEncoder (e.g. from tg.emb.train_gnn); got {type(model).__name__}.")


@contextmanager
def _torch_threads(n_jobs: int | None):
    """Run torch with ``n_jobs`` intra-op threads (default ``tg.settings.n_jobs``), restored afterwards;
    yields ``n_jobs``.

    One thread is the default: on a shared machine torch's thread pool spends most of its time waiting
    for cores on the small operations of a GNN (measured 20x slower under load). Embedding with
    ``n_jobs >= 2`` runs batches in parallel threads instead (see :func:`_run_models`).
    """
    import torch

    from .._settings import settings

    n = settings.resolve_n_jobs(n_jobs)
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old)


def _weights_hash(module) -> str:
    from ..models._io import weights_sha256

    return weights_sha256(module)


def _run_models(graphs: _SampleGraphs, models: list[tuple[Any, int | str]], *, batch_nodes: int, device: str,
                desc: str, workers: int = 1) -> list[np.ndarray]:
    """Embed every sample with each ``(module, layer)``, one pass over the batches.

    With ``workers >= 2`` (CPU), that many threads each cut a batch (numpy) and run the models on it
    (torch with one intra-op thread per worker: the cores work on different batches, with no thread-pool
    barriers inside the small operations of a GNN, which stall on a shared machine); torch and numpy
    release the GIL in their kernels. At most ``workers`` batches are alive at a time. A batch's result
    does not depend on the thread that computed it. Freed batch buffers are kept by the allocator for the
    next batch (no ``malloc_trim`` per batch: returning and re-faulting the pages cost more than the
    model); the free heap is given back once at the end.
    """
    import torch

    from .._compat import release_memory

    outs = [np.zeros((graphs.n_samples, m.out_channels(layer)), dtype=np.float32) for m, layer in models]
    for m, _ in models:
        m.to(device).eval()
    order = np.arange(graphs.n_samples, dtype=np.int64)
    blocks = graphs.blocks(order, batch_nodes)
    workers = max(1, min(int(workers), len(blocks)))

    def work(rows: np.ndarray) -> None:
        with torch.inference_mode():  # thread-local
            gb = graphs.batch(rows).to(device)
            for (m, layer), out in zip(models, outs):
                out[rows] = m.embed(gb, layer=layer).float().cpu().numpy()  # disjoint rows per batch
            del gb

    try:
        with progress_bar(total=len(blocks), desc=desc, unit="batch") as bar:
            if workers == 1:
                for rows in blocks:
                    work(rows)
                    bar.update(1)
            else:
                from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

                old = torch.get_num_threads()
                torch.set_num_threads(1)
                try:
                    with ThreadPoolExecutor(workers, thread_name_prefix="tg-gnn") as ex:
                        pending = set()
                        for rows in blocks:  # a window of `workers` batches in flight (bounded memory)
                            if len(pending) >= workers:
                                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                                for f in done:
                                    f.result()
                                bar.update(len(done))
                            pending.add(ex.submit(work, rows))
                        for f in pending:
                            f.result()
                        bar.update(len(pending))
                finally:
                    torch.set_num_threads(old)
    finally:
        release_memory()
    return outs


def _column_names(key: str, X: np.ndarray) -> list[str]:
    return [f"{key[2:]}_{i}" for i in range(X.shape[1])]


def _architecture_kwargs(conv: str, hidden: int, depth: int, norm: str, pool: str, heads: int) -> dict:
    return {"conv": conv, "hidden": _check_int(hidden, "hidden", 1), "depth": _check_int(depth, "depth", 1),
            "norm": norm, "pool": pool, "heads": _check_int(heads, "heads", 1)}


# ------------------------------------------------------------------------------------------ public
def gnn(samples, cells, *, model: Any = "gin", inputs: str | Sequence[str] = "features", seed: int = 0,
        layer: int | str = -1, hidden: int = 64, depth: int = 3, norm: str = "batch", pool: str = "mean",
        heads: int = 1, key_added: str | None = None, graph_key: str = "spatial", nan: str = "mean",
        batch_nodes: int = DEFAULT_BATCH_NODES, device: str | None = None, n_jobs: int | None = None,
        copy: bool = False):
    """Embed every sample's cell graph with a GNN; fills ``samples.obsm['X_<name>']`` and its provenance.

    Parameters
    ----------
    samples
        Samples AnnData (``tg.graph.*_samples``): membership in ``obsm['cells']``.
    cells
        The cells AnnData with the cell graph in ``obsp['<graph_key>_connectivities']``, features in ``X``.
    model
        An architecture name (``'gin'``, ``'gine'``, ``'sage'``, ``'gcn'``, ``'gatv2'``: an *untrained
        twin* with random weights from ``seed``), a model folder written by ``tg.models.save_model``, a
        trained :class:`~tissuegraph.models.GNNEncoder` (``tg.emb.train_gnn``), or ``(module, card)``.
    inputs
        Node inputs: ``'features'``, ``'topology'``, ``'positions'``, ``'cell_type'`` or names joined by
        ``'+'`` (see the module docs). A trained model's card fixes them.
    seed
        Weight initialisation of an untrained twin.
    layer
        ``-1`` (last layer), a layer index (0-based), or ``'concat'`` (every layer's pooled embedding).
    hidden, depth, norm, pool, heads
        Architecture of an untrained twin (ignored for a trained model).
    key_added
        ``obsm`` key; default ``X_gnn_<conv>_<inputs>_untrained_s<seed>`` or ``X_gnn_<conv>_<inputs>_<objective>``
        (``_l<layer>`` / ``_concat`` appended for other layers).
    graph_key
        Which cell graph (``tg.graph.*(key_added=...)``).
    nan
        NaN or infinite features of member cells: ``'mean'`` (default) sets them to the column mean
        (z-score 0) and leaves them out of the statistics, with a warning and a count in ``params``;
        ``'error'`` raises :class:`~tissuegraph.InputError`.
    batch_nodes
        Nodes per batch (memory bound; results do not depend on it).
    device
        Torch device (default ``tg.settings.device``).
    n_jobs
        CPU cores (default ``tg.settings.n_jobs``, i.e. 1). With 2 or more, that many threads each cut
        a batch of sample graphs and run the model on it (one torch thread each); same results.
    copy
        Return a modified copy instead of writing into ``samples``.

    Returns
    -------
    ``None`` (or the copy): ``samples.obsm[key]`` (n_samples, d) float32, ``samples.uns['<key>_names']``
    and ``samples.uns['representations'][key]`` (family, trained, learned, objective, architecture,
    inputs, layer, seed, twin_group, weights_sha256, params).
    """
    _check_pair(samples, cells)
    samples = samples.copy() if copy else samples
    module, card, conv = _resolve_model(model)
    with _torch_threads(n_jobs) as n:
        if module is None:
            _gnn_untrained(samples, cells, conv=conv, inputs=inputs, seeds=[seed], layer=layer,
                           arch=_architecture_kwargs(conv, hidden, depth, norm, pool, heads), key_added=key_added,
                           graph_key=graph_key, batch_nodes=batch_nodes, device=device, what="tg.emb.gnn", nan=nan,
                           workers=n)
        else:
            _gnn_trained(samples, cells, module=module, card=card, layer=layer, key_added=key_added,
                         graph_key=graph_key, batch_nodes=batch_nodes, device=device, nan=nan, workers=n)
    return samples if copy else None


def gnn_twins(samples, cells, *, model: Any = "gin", inputs: str | Sequence[str] = "features",
              seeds: Sequence[int] = (0, 1, 2, 3, 4), topology: bool = True, layer: int | str = -1,
              hidden: int = 64, depth: int = 3, norm: str = "batch", pool: str = "mean", heads: int = 1,
              graph_key: str = "spatial", nan: str = "mean", batch_nodes: int = DEFAULT_BATCH_NODES,
              device: str | None = None, n_jobs: int | None = None, copy: bool = False):
    """Untrained twins: the same architecture with random weights, one per seed, on the same code path.

    ``model`` is an architecture name, or a trained model (folder, module) whose architecture, inputs and
    layer the twins copy (their ``twin_group`` then equals the trained model's). With ``topology=True``
    the twins are also run on ``inputs='topology'`` (a constant per node), which tells structure from
    features. Keys: ``X_gnn_<conv>_<inputs>_untrained_s<seed>`` (see :func:`gnn`); every seed's batch
    is cut once and embedded by all twins of that input set.
    """
    _check_pair(samples, cells)
    samples = samples.copy() if copy else samples
    seeds = [_check_int(s, "seed") for s in seeds]
    if not seeds:
        raise InputError("seeds is empty; give at least one seed (default: 5 seeds 0..4).")
    module, card, conv = _resolve_model(model)
    if module is not None:
        cfg = module.config()
        arch = {k: cfg[k] for k in ("conv", "hidden", "depth", "norm", "pool", "heads")}
        inputs = card.get("inputs", inputs)
        if layer == -1 and card.get("layer") is not None:
            layer = card["layer"]
    else:
        arch = _architecture_kwargs(conv, hidden, depth, norm, pool, heads)
    input_sets = [inputs]
    if topology and _parse_inputs(inputs) != ("topology",):
        input_sets.append("topology")
    with _torch_threads(n_jobs) as n:
        for inp in input_sets:
            _gnn_untrained(samples, cells, conv=arch["conv"], inputs=inp, seeds=seeds, layer=layer, arch=arch,
                           key_added=None, graph_key=graph_key, batch_nodes=batch_nodes, device=device,
                           what="tg.emb.gnn_twins", nan=nan, workers=n)
    return samples if copy else None


def _base_params(graphs: _SampleGraphs, graph_key: str, batch_nodes: int, n_empty: int) -> dict:
    return {"graph_key": graph_key, "batch_nodes": batch_nodes, "n_empty": n_empty, "nan": graphs.nan,
            "n_nonfinite_features": graphs.n_nonfinite,
            "position_scale_um": POSITION_SCALE_UM, "edge_scale_um": EDGE_SCALE_UM,
            "standardisation": "fitted on the cells used" if "features" in graphs.inputs else "None"}


def _gnn_untrained(samples, cells, *, conv, inputs, seeds, layer, arch, key_added, graph_key, batch_nodes,
                   device, what, nan="mean", workers=1):
    from .._settings import settings
    from ..models.gnn import GNNEncoder

    device = device or settings.device
    batch_nodes = _check_int(batch_nodes, "batch_nodes", 1)
    parts = _parse_inputs(inputs)
    iname = _inputs_name(parts)
    probe = GNNEncoder(1, **arch, edge_dim=1)
    probe._layers(layer)  # validate early
    graphs = _SampleGraphs(samples, cells, inputs=parts, graph_key=graph_key, edge_attr=probe.uses_edge_attr,
                           sparse_adj=conv in ("gin", "sage", "gcn"), nan=nan, workers=workers)
    models = [(GNNEncoder(graphs.in_channels, **arch, edge_dim=1, seed=s), layer) for s in seeds]
    tag = _layer_tag(layer, arch["depth"])
    with timed(f"{what}: {len(seeds)} untrained {models[0][0].architecture} on {iname}"):
        outs = _run_models(graphs, models, batch_nodes=batch_nodes, device=device,
                           desc=f"GNN {models[0][0].architecture} ({iname})", workers=workers)
    n_empty = int((graphs.n_nodes == 0).sum())
    for (m, _), s, X in zip(models, seeds, outs):
        key = key_added if key_added is not None and len(seeds) == 1 else \
            f"X_gnn_{conv}_{iname.replace('+', '-')}_untrained_s{s}" + (f"_{tag}" if tag else "")
        key = K.obsm.rep(key)
        rec = {"family": "gnn", "trained": False, "learned": True, "objective": None,
               "architecture": m.architecture, "inputs": iname, "layer": layer, "seed": s,
               "twin_group": f"gnn:{m.architecture}:{iname}" + (f":{tag}" if tag else ""),
               "weights_sha256": _weights_hash(m),
               "params": {**_base_params(graphs, graph_key, batch_nodes, n_empty), "architecture_kwargs": m.config()}}
        record_representation(samples, key, X, rec, names=_column_names(key, X))
        logger.info("%s: samples.obsm[%r] (%d x %d)", what, key, *X.shape)


def _gnn_trained(samples, cells, *, module, card, layer, key_added, graph_key, batch_nodes, device, nan="mean",
                 workers=1):
    from .._settings import settings

    device = device or settings.device
    batch_nodes = _check_int(batch_nodes, "batch_nodes", 1)
    iname = card.get("inputs")
    if iname is None:
        raise InputError("The model's card does not say its node inputs (card['inputs']); save it with "
                         "tg.models.save_model(..., card={'inputs': 'features', ...}) or use tg.emb.train_gnn.")
    parts = _parse_inputs(iname)
    iname = _inputs_name(parts)
    stats = card.get("input_stats") or None
    if layer == -1 and card.get("layer") is not None:
        layer = card["layer"]
    module._layers(layer)
    graphs = _SampleGraphs(samples, cells, inputs=parts, graph_key=graph_key, stats=stats,
                           edge_attr=module.uses_edge_attr, sparse_adj=module.conv_name in ("gin", "sage", "gcn"),
                           nan=nan, workers=workers)
    if graphs.in_channels != module.in_channels:
        raise InputError(f"The model takes {module.in_channels} input columns but inputs={iname!r} on these cells "
                         f"give {graphs.in_channels}; use cells with the same features / cell types.")
    objective = card.get("objective") or "trained"
    with timed(f"tg.emb.gnn: trained {module.architecture} ({objective}) on {iname}"):
        (X,) = _run_models(graphs, [(module, layer)], batch_nodes=batch_nodes, device=device,
                           desc=f"GNN {module.architecture} ({objective})", workers=workers)
    tag = _layer_tag(layer, module.depth)
    key = K.obsm.rep(key_added if key_added is not None else
                     f"X_gnn_{module.conv_name}_{iname.replace('+', '-')}_{objective}" + (f"_{tag}" if tag else ""))
    n_empty = int((graphs.n_nodes == 0).sum())
    params = {**_base_params(graphs, graph_key, batch_nodes, n_empty), "architecture_kwargs": module.config(),
              "training_data_sha256": card.get("training_data_sha256"), "metrics": card.get("metrics", {}),
              "trained_epochs": card.get("epochs")}
    if stats:
        params["standardisation"] = "the model's training statistics"
    rec = {"family": "gnn", "trained": True, "learned": True, "objective": objective,
           "architecture": module.architecture, "inputs": iname, "layer": layer, "seed": card.get("seed"),
           "twin_group": f"gnn:{module.architecture}:{iname}" + (f":{tag}" if tag else ""),
           "weights_sha256": _weights_hash(module), "params": params}
    record_representation(samples, key, X, rec, names=_column_names(key, X))
    logger.info("tg.emb.gnn: samples.obsm[%r] (%d x %d)", key, *X.shape)


def _training_hash(graphs: _SampleGraphs, samples, rows: np.ndarray, y: np.ndarray | None) -> str:
    """SHA-256 of what training saw: sample ids, member cells, the cell graph rows and inputs' statistics."""
    h = hashlib.sha256()
    h.update(json.dumps([str(s) for s in samples.obs_names[rows]]).encode())
    sub = graphs.M[rows]
    h.update(sub.indptr.astype(np.int64).tobytes())
    h.update(sub.indices.astype(np.int64).tobytes())
    h.update(graphs.A_indptr.astype(np.int64).tobytes())
    h.update(graphs.A_indices.astype(np.int64).tobytes())
    h.update(json.dumps(graphs.stats, sort_keys=True, default=str).encode())
    h.update(json.dumps(list(graphs.inputs)).encode())
    if y is not None:
        h.update(np.ascontiguousarray(y[rows]).tobytes())
    return h.hexdigest()


def train_gnn(samples, cells, *, objective: str = "dgi", model: str = "gin", inputs: str = "features",
              label_key: str | None = None, train: Any = None, epochs: int = 20, seed: int = 0, lr: float = 1e-3,
              hidden: int = 64, depth: int = 3, norm: str = "batch", pool: str = "mean", heads: int = 1,
              layer: int | str = -1, graph_key: str = "spatial", nan: str = "mean", batch_nodes: int = 16384,
              device: str | None = None, n_jobs: int | None = None, save_to: str | Path | None = None,
              **objective_kwargs):
    """Train a GNN encoder on the samples' graphs (offline); return it, with its card in ``module.card``.

    Parameters
    ----------
    samples, cells
        As for :func:`gnn`; the graphs are the samples' (unlabelled for the self-supervised objectives).
    objective
        ``'dgi'`` (deep graph infomax), ``'graphcl'`` (contrastive, edge dropping + feature masking),
        ``'masked'`` (masked-feature reconstruction) or ``'supervised'`` (``samples.obs[label_key]``:
        classes for categorical/string/bool columns, regression for floats). See
        :func:`tissuegraph.models.train_gnn_encoder`.
    model, inputs, hidden, depth, norm, pool, heads
        Architecture (``model`` = conv name) and node inputs.
    label_key
        ``samples.obs`` column for ``'supervised'`` (missing values are ignored).
    train
        Samples to train on: a boolean mask or sample names (default all). Keep evaluation samples out of
        supervised training.
    epochs, seed, lr
        Epochs over the training samples, the seed of the initial weights / batch order / augmentations,
        Adam's learning rate.
    layer
        The layer :func:`gnn` embeds with by default (stored in the card).
    nan
        NaN features: ``'mean'`` or ``'error'`` (see :func:`gnn`).
    batch_nodes
        Nodes per training batch (the batch is also the set of negatives / contrastive partners).
    n_jobs
        Torch CPU threads (default ``tg.settings.n_jobs``, i.e. 1).
    save_to
        Also write the model folder there (``tg.models.save_model``).
    objective_kwargs
        ``mask_rate``, ``drop_rate``, ``temperature``, ``weight_decay`` for the objective.

    Returns
    -------
    The trained :class:`~tissuegraph.models.GNNEncoder` in eval mode; ``module.card`` holds
    architecture, inputs, input statistics, objective, seed, training-data SHA-256, metrics and the
    per-epoch loss log. Pass it to :func:`gnn` as ``model=``.
    """
    from .._settings import settings
    from ..models._gnn_train import OBJECTIVES, train_gnn_encoder
    from ..models._io import save_model
    from ..models.gnn import CONVS, GNNEncoder

    _check_pair(samples, cells)
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}.")
    if not isinstance(model, str) or model.lower() not in CONVS:
        raise InputError(f"model must be an architecture name {list(CONVS)}, got {model!r}.")
    conv = model.lower()
    seed = _check_int(seed, "seed")
    epochs = _check_int(epochs, "epochs", 1)
    batch_nodes = _check_int(batch_nodes, "batch_nodes", 1)
    device = device or settings.device
    parts = _parse_inputs(inputs)
    if objective == "masked" and parts == ("topology",):
        raise InputError("objective='masked' reconstructs node inputs; with inputs='topology' (a constant) there "
                         "is nothing to learn. Use 'dgi' or 'graphcl'.")
    arch = _architecture_kwargs(conv, hidden, depth, norm, pool, heads)
    # rows to train on
    if train is None:
        rows = np.arange(samples.n_obs, dtype=np.int64)
    else:
        t = np.asarray(train)
        if t.dtype == bool:
            if t.shape != (samples.n_obs,):
                raise InputError(f"train= mask must have one entry per sample ({samples.n_obs}), got {t.shape}.")
            rows = np.flatnonzero(t)
        else:
            idx = pd.Index(samples.obs_names).get_indexer([str(v) for v in t])
            if (idx < 0).any():
                raise InputError(f"train= names {int((idx < 0).sum())} sample(s) not in samples.obs_names.")
            rows = np.sort(idx.astype(np.int64))
    y = None
    n_classes = None
    classes = None
    if objective == "supervised":
        if label_key is None or label_key not in samples.obs:
            raise InputError(f"objective='supervised' needs label_key= naming a samples.obs column; got {label_key!r} "
                             f"(columns: {list(samples.obs.columns)[:12]}).")
        col = samples.obs[label_key]
        if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object or pd.api.types.is_bool_dtype(col) \
                or pd.api.types.is_string_dtype(col) or pd.api.types.is_integer_dtype(col):
            cat = col.astype("category") if not isinstance(col.dtype, pd.CategoricalDtype) else col
            cat = cat.cat.remove_unused_categories()
            classes = [str(c) for c in cat.cat.categories]
            y = cat.cat.codes.to_numpy().astype(np.int64)
            n_classes = len(classes)
            if n_classes < 2:
                raise InputError(f"samples.obs[{label_key!r}] has {n_classes} class(es); supervised training needs 2+.")
            rows = rows[y[rows] >= 0]
        else:
            y = pd.to_numeric(col, errors="coerce").to_numpy(np.float32)
            rows = rows[np.isfinite(y[rows])]
    probe = GNNEncoder(1, **arch, edge_dim=1)
    probe._layers(layer)
    graphs = _SampleGraphs(samples, cells, inputs=parts, graph_key=graph_key, edge_attr=probe.uses_edge_attr,
                           sparse_adj=False, nan=nan)
    rows = rows[graphs.n_nodes[rows] > 0]
    if len(rows) == 0:
        raise InputError("No sample with cells (and a label, for supervised training) to train on.")
    encoder = GNNEncoder(graphs.in_channels, **arch, edge_dim=1, seed=seed)

    def batches(epoch: int):
        rng = np.random.default_rng([seed, epoch])
        order = rows[rng.permutation(len(rows))]
        for _, gb in graphs.iter_batches(order, batch_nodes, y=y):
            yield gb

    with timed(f"tg.emb.train_gnn: {encoder.architecture} ({objective}) on {len(rows)} samples"):
        with _torch_threads(n_jobs):
            result = train_gnn_encoder(encoder, batches, objective=objective, epochs=epochs, lr=lr, seed=seed,
                                       device=device, n_classes=n_classes, **objective_kwargs)
    encoder.to("cpu").eval()
    card = {
        "architecture": {"builder": "gnn", "kwargs": encoder.config()},
        "architecture_name": encoder.architecture,
        "inputs": _inputs_name(parts), "input_stats": graphs.stats, "layer": layer,
        "objective": objective, "seed": seed, "epochs": epochs, "lr": lr,
        "label_key": label_key, "classes": classes, "n_train_samples": int(len(rows)),
        "training_data_sha256": _training_hash(graphs, samples, rows, y),
        "graph_key": graph_key, "batch_nodes": batch_nodes,
        "objective_kwargs": dict(objective_kwargs),
        "metrics": result["metrics"], "loss_log": result["loss_log"],
    }
    encoder.card = card
    if save_to is not None:
        save_model(encoder, save_to, card=card)
        card["weights_sha256"] = _weights_hash(encoder)
    return encoder
