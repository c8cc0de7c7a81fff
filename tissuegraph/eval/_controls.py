"""GNN controls: perturb the cell graph or the node features, re-embed, and measure the score lost.

The perturbations are pure functions on a cells AnnData (they return a perturbed copy) and
:func:`gnn_controls` runs any re-embedding callable on each of them, so the controls work with
``tg.emb`` GNNs and with a user's own model alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _keys as K
from .._anndata import record_params
from .._errors import InputError
from .._logging import logger

__all__ = ["rewire_degree_preserving", "perturb_cells", "gnn_controls", "CONTROLS"]

CONTROLS = ("rewire", "shuffle_features", "topology_only", "coordinates_only")


def _undirected_upper(adjacency) -> tuple[np.ndarray, np.ndarray, int]:
    if not sp.issparse(adjacency):
        adjacency = np.asarray(adjacency)
        if adjacency.ndim != 2:
            raise InputError(f"adjacency must be a 2-D (sparse) matrix, got shape {adjacency.shape}.")
    A = sp.csr_matrix(adjacency)
    n, m = A.shape
    if n != m:
        raise InputError(f"adjacency must be square, got shape {A.shape}.")
    A = A.tocoo()
    keep = (A.row != A.col) & (A.data != 0)
    u = np.minimum(A.row[keep], A.col[keep]).astype(np.int64)
    v = np.maximum(A.row[keep], A.col[keep]).astype(np.int64)
    key = np.unique(u * n + v)
    return key // n, key % n, n


def rewire_degree_preserving(adjacency, *, n_swaps: int | None = None, seed: int = 0,
                             max_rounds: int = 10_000) -> sp.csr_matrix:
    """Degree-preserving randomisation of an undirected graph by double-edge swaps.

    A swap takes two edges ``(a, b), (c, d)`` and replaces them by ``(a, d), (c, b)`` (or ``(a, c),
    (b, d)``, chosen at random), rejected when it would create a self loop or an edge that already
    exists, so every node keeps its degree and the graph stays simple. Swaps run in vectorised rounds:
    each round pairs up disjoint edges at random and applies every valid swap at once (a new edge that
    two swaps of the round would both create rejects both).

    Parameters
    ----------
    adjacency
        (n, n) sparse or dense matrix. Taken as undirected and unweighted: any stored non-zero ``(i, j)``
        or ``(j, i)`` is one edge; self loops are dropped (a directed kNN graph becomes its union).
    n_swaps
        Accepted swaps to make; default ``10 x`` the number of edges (the usual mixing rule).
    seed
        Random seed.
    max_rounds
        Stop (with a warning) after this many rounds, e.g. for a nearly complete graph where few swaps
        are possible.

    Returns
    -------
    Symmetric CSR matrix (float32, 1.0 per edge) with the same degree sequence.
    """
    u, v, n = _undirected_upper(adjacency)
    m = len(u)
    if n_swaps is None:
        n_swaps = 10 * m
    if isinstance(n_swaps, bool) or int(n_swaps) != n_swaps or n_swaps < 0:
        raise InputError(f"n_swaps must be an integer >= 0, got {n_swaps!r}.")
    n_swaps = int(n_swaps)
    rng = np.random.default_rng(seed)
    done = 0
    rounds = 0
    if m >= 2:
        keys = np.sort(u * n + v)
        while done < n_swaps and rounds < max_rounds:
            rounds += 1
            perm = rng.permutation(m)
            half = min(m // 2, n_swaps - done)
            e1, e2 = perm[:half], perm[half:2 * half]
            a, b, c, d = u[e1], v[e1], u[e2], v[e2]
            flip = rng.random(half) < 0.5
            c, d = np.where(flip, d, c), np.where(flip, c, d)
            # new edges (a, d) and (c, b)
            p1, q1 = np.minimum(a, d), np.maximum(a, d)
            p2, q2 = np.minimum(c, b), np.maximum(c, b)
            k1, k2 = p1 * n + q1, p2 * n + q2
            ok = (a != d) & (c != b) & (k1 != k2)

            def exists(k):
                i = np.searchsorted(keys, k)
                i[i == len(keys)] = 0
                return keys[i] == k

            ok &= ~exists(k1) & ~exists(k2)
            cand = np.concatenate([k1[ok], k2[ok]])
            uniq, cnt = np.unique(cand, return_counts=True)
            dup = uniq[cnt > 1]
            if len(dup):
                ok &= ~np.isin(k1, dup) & ~np.isin(k2, dup)
            if not ok.any():
                continue
            u[e1[ok]], v[e1[ok]] = p1[ok], q1[ok]
            u[e2[ok]], v[e2[ok]] = p2[ok], q2[ok]
            done += int(ok.sum())
            keys = np.sort(u * n + v)
        if done < n_swaps:
            logger.warning("rewire_degree_preserving: %d of %d swaps after %d rounds (few valid swaps exist in "
                           "this graph).", done, n_swaps, rounds)
    data = np.ones(2 * m, dtype=np.float32)
    out = sp.csr_matrix((data, (np.concatenate([u, v]), np.concatenate([v, u]))), shape=(n, n))
    out.sum_duplicates()
    out.sort_indices()
    return out


def _slide_codes(cells) -> np.ndarray:
    if K.obs.slide in cells.obs:
        return pd.Categorical(cells.obs[K.obs.slide].astype(str)).codes.astype(np.int64)
    return np.zeros(cells.n_obs, dtype=np.int64)


def _feature_means(X) -> np.ndarray:
    X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        mu = np.nanmean(X, axis=0) if X.size else np.zeros(X.shape[1])
    return np.nan_to_num(mu)


def perturb_cells(cells, control: str, *, seed: int = 0, graph_key: str = "spatial", n_swaps: int | None = None):
    """A perturbed copy of a cells AnnData for one GNN control.

    ``'rewire'``
        The graph in ``obsp['<graph_key>_connectivities']`` replaced by a degree-preserving rewiring
        (:func:`rewire_degree_preserving`); edge lengths in ``obsp['<graph_key>_distances']`` recomputed
        from the centroids. Features and positions unchanged: what is lost is *which* cells touch.
    ``'shuffle_features'``
        The rows of ``X`` permuted among the cells of each slide; graph and positions unchanged: what is
        lost is which cell carries which morphology.
    ``'coordinates_only'``
        Every cell's features replaced by the column means (no morphology); positions, graph and edge
        lengths unchanged: only geometry remains.
    ``'topology_only'``
        Features replaced by the column means, edge lengths set to 1, and centroids replaced by random
        positions inside each slide's bounding box: only the graph's wiring remains.

    Sample membership (``samples.obsm['cells']``) is untouched by every control, so the re-embedded
    samples contain the same cells.
    """
    if control not in CONTROLS:
        raise InputError(f"Unknown control {control!r}; choose from {list(CONTROLS)}.")
    rng = np.random.default_rng(seed)
    out = cells.copy()
    ck, dk = K.obsp.connectivities(graph_key), K.obsp.distances(graph_key)
    needs_graph = control in ("rewire", "topology_only")
    if needs_graph and ck not in out.obsp:
        raise InputError(f"cells.obsp['{ck}'] is missing: build a cell graph first (tg.graph.knn / radius / "
                         "delaunay) or pass graph_key=.")
    xy = np.asarray(out.obsm[K.obsm.spatial], dtype=np.float64) if K.obsm.spatial in out.obsm else None
    if control == "rewire":
        A = rewire_degree_preserving(out.obsp[ck], n_swaps=n_swaps, seed=seed)
        out.obsp[ck] = A
        if xy is not None:
            coo = A.tocoo()
            length = np.hypot(*(xy[coo.row] - xy[coo.col]).T)
            D = sp.csr_matrix((length, (coo.row, coo.col)), shape=A.shape)
            out.obsp[dk] = D
        elif dk in out.obsp:
            del out.obsp[dk]
    elif control == "shuffle_features":
        codes = _slide_codes(out)
        perm = np.arange(out.n_obs)
        for s in np.unique(codes):
            idx = np.flatnonzero(codes == s)
            perm[idx] = idx[rng.permutation(len(idx))]
        out.X = out.X[perm]
    else:
        mu = _feature_means(out.X).astype(np.float32)
        out.X = np.broadcast_to(mu, (out.n_obs, len(mu))).copy()
        if control == "topology_only":
            if ck in out.obsp:
                A = sp.csr_matrix(out.obsp[ck])
                D = A.copy().astype(np.float64)
                D.data[:] = 1.0
                out.obsp[dk] = D
            if xy is not None:
                codes = _slide_codes(out)
                new = np.empty_like(xy)
                for s in np.unique(codes):
                    idx = np.flatnonzero(codes == s)
                    lo, hi = xy[idx].min(axis=0), xy[idx].max(axis=0)
                    new[idx] = lo + rng.random((len(idx), 2)) * (hi - lo)
                out.obsm[K.obsm.spatial] = new
    return out


def gnn_controls(samples, cells, *, embed_fn: Callable, label_key: str, rep: str | None = None,
                 task: str | Sequence[str] = "classification", controls: Sequence[str] = CONTROLS,
                 group_key: str | None = None, n_splits: int = 5, seeds: Sequence[int] = (0, 1, 2),
                 graph_key: str = "spatial", n_swaps: int | None = None, seed: int = 0,
                 key_added: str = "tg_gnn_controls", n_boot: int = 2000, copy: bool = False,
                 **evaluate_kwargs) -> pd.DataFrame:
    """Score a GNN representation after each control perturbation and report the score it loses.

    Parameters
    ----------
    samples, cells
        The samples AnnData (labels in ``obs``) and the cells AnnData the GNN embeds.
    embed_fn
        ``embed_fn(cells_perturbed) -> ndarray (samples.n_obs, d)``: re-embeds every sample from a
        (perturbed) cells AnnData with the *same* trained weights, e.g.
        ``lambda c: tg.emb.gnn(c, samples, ..., weights=...)``.
    rep
        ``samples.obsm`` key of the unperturbed representation; ``None`` calls ``embed_fn(cells)``.
    label_key, task, group_key, n_splits, seeds
        As in :func:`tissuegraph.eval.evaluate`; the full and every perturbed representation are
        scored on the same splits.
    controls
        Any of ``'rewire'``, ``'shuffle_features'``, ``'topology_only'``, ``'coordinates_only'``
        (see :func:`perturb_cells`).
    key_added
        The table goes to ``samples.uns[key_added]`` as ``{'table': DataFrame, 'results': DataFrame,
        'params': {...}}``.

    Returns
    -------
    DataFrame[control, protocol, metric, full, perturbed, lost, ci_low, ci_high, verdict]: ``lost`` =
    full − perturbed score, paired over the splits and seeds, with its 95 % bootstrap interval;
    ``verdict`` is ``'relies on it'`` when the interval lies above 0, ``'gains without it'`` below 0,
    ``'no detectable reliance'`` otherwise.
    """
    import anndata as ad

    from ._evaluate import _HEADLINE_FOR_GAPS, _pair_table, evaluate
    from ._stats import paired_difference

    bad = [c for c in controls if c not in CONTROLS]
    if bad:
        raise InputError(f"Unknown control(s) {bad}; choose from {list(CONTROLS)}.")
    if not callable(embed_fn):
        raise InputError("embed_fn must be a callable taking a cells AnnData and returning (n_samples, d).")
    if copy:
        samples = samples.copy()

    def embed(c, what):
        Z = np.asarray(embed_fn(c))
        if Z.ndim != 2 or Z.shape[0] != samples.n_obs:
            raise InputError(f"embed_fn returned shape {Z.shape} for {what}; expected ({samples.n_obs}, d).")
        return Z.astype(np.float32)

    if rep is not None:
        if rep not in samples.obsm:
            raise InputError(f"samples.obsm[{rep!r}] is missing (available: {sorted(samples.obsm.keys())}).")
        full = np.asarray(samples.obsm[rep], dtype=np.float32)
    else:
        full = embed(cells, "the unperturbed cells")
    tmp = ad.AnnData(obs=samples.obs.copy())
    tmp.obsm["X_full"] = full
    for k, control in enumerate(controls):
        logger.info("GNN control %s: perturbing and re-embedding", control)
        tmp.obsm[f"X_{control}"] = embed(perturb_cells(cells, control, seed=seed + k, graph_key=graph_key,
                                                       n_swaps=n_swaps), control)
    res = evaluate(tmp, reps=None, label_key=label_key, task=task, group_key=group_key, n_splits=n_splits,
                   seeds=seeds, baseline=None, diagnostics=False, similarity=False, key_added="_controls",
                   n_boot=n_boot, **evaluate_kwargs)
    rows = []
    for (proto, metric), sub in res.groupby(["protocol", "metric"], sort=False):
        if metric not in _HEADLINE_FOR_GAPS.get(proto, ()):
            continue
        wide = _pair_table(sub)
        for control in controls:
            a, b = wide["X_full"].to_numpy(), wide[f"X_{control}"].to_numpy()
            pdiff = paired_difference(a, b, n_boot=n_boot, seed=seed)
            v = {"better": "relies on it", "worse": "gains without it"}.get(pdiff["verdict"],
                                                                             "no detectable reliance")
            rows.append({"control": control, "protocol": proto, "metric": metric, "full": float(np.nanmean(a)),
                         "perturbed": float(np.nanmean(b)), "lost": pdiff["diff"], "ci_low": pdiff["ci_low"],
                         "ci_high": pdiff["ci_high"], "verdict": v})
    table = pd.DataFrame(rows, columns=["control", "protocol", "metric", "full", "perturbed", "lost", "ci_low",
                                        "ci_high", "verdict"])
    samples.uns[key_added] = {"table": table, "results": res.reset_index(drop=True)}
    record_params(samples, key_added, {"rep": rep, "label_key": label_key, "task": task, "controls": list(controls),
                                       "group_key": group_key, "n_splits": n_splits, "seeds": list(seeds),
                                       "graph_key": graph_key, "n_swaps": n_swaps, "seed": seed, "n_boot": n_boot})
    return samples if copy else table
