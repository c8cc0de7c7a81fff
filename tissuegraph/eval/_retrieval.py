"""Retrieval metrics: average precision and mean average precision (mAP), equal to ``copairs``.

The definitions follow ``copairs.map.average_precision`` / ``copairs.map.mean_average_precision`` with
``pos_sameby=[label]``, ``neg_diffby=[label]`` (and nothing else): every row is a query; its positives are
the other rows with the same label, its negatives all rows with a different label; the query itself is not
ranked.  What copairs does, and what this module therefore does too:

* similarities are computed in float64 and stored as float32; the ranking key is ``1 - similarity`` in
  float32, ascending.  Two candidates whose keys are equal at float32 precision are tied, and a tied
  positive is ranked before a tied negative (copairs' stable ``lexsort`` over positives-then-negatives).
* ``AP = (1/M) sum_j  j / rank_j`` over the query's M positives in ranked order (precision at each
  positive).  A query without a positive has AP NaN.
* ``'cosine'`` similarity is ``x.y / (|x||y|)``; ``'correlation'`` is Pearson's r of the two rows (each row
  centred on its own mean); ``'euclidean'`` is ``1 / (1 + ||x - y||)``.
* mAP of a label = mean AP of its queries.  Its p-value: each query has a null distribution of APs of random
  rankings with the same (positives, candidates) configuration, generated exactly as copairs does (seed
  stream, permutation, float32 APs); the null of the label is the element-wise mean of its queries' nulls,
  ``p = (1 + #(null > mAP)) / (1 + null_size)``; q-values are Benjamini-Hochberg over all labels.

What differs is the cost: similarities come from blocked matrix products (``block_size`` queries at a time;
never an n x n matrix), and each query's ranks come from a compiled pass over its row, O(n log M), instead of
materialising and sorting every pair.  The null distributions replay copairs' random stream draw for draw in a
compiled kernel (:mod:`._null_kernel`: numpy's PCG64 and Fisher-Yates shuffle, one row at a time, with the
AP of each row computed in the kernel), so memory stays O(n) (copairs allocates ``null_size x n`` at once);
with ``n_jobs > 1`` the configurations are drawn in threads while the APs are computed.

Within the precision of the float32 keys the results equal copairs' (the tests check 1e-9 on AP and mAP
and identical p-values).  Only candidates whose float64 similarities straddle a float32 rounding boundary
by less than ~1e-16 could be ordered differently.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np
import pandas as pd

from .._errors import InputError
from .._logging import logger, progress

__all__ = ["average_precision", "mean_average_precision", "similarity_block", "prepare_profiles",
           "encode_labels", "METRICS"]

METRICS = ("cosine", "correlation", "euclidean", "spearman")

# rows of the (block x n) float64 similarity block: keep it near 256 MiB whatever n is
_BLOCK_ELEMENTS = 1 << 25


# ----------------------------------------------------------------------------------------- input checks

def encode_labels(labels: Any, n: int, *, name: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (0..k-1, int64) and the unique values of a label vector; missing labels raise."""
    lab = pd.Series(np.asarray(labels, dtype=object) if not isinstance(labels, pd.Series) else labels.values)
    if len(lab) != n:
        raise InputError(f"{name} has {len(lab)} entries but X has {n} rows; pass one label per row.")
    if lab.isna().any():
        bad = np.flatnonzero(lab.isna().to_numpy())[:5].tolist()
        raise InputError(f"{name} has missing values (rows {bad}...); drop those rows or give them a label.")
    codes, uniques = pd.factorize(lab, sort=False)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def prepare_profiles(X: Any, metric: str, *, name: str = "X") -> np.ndarray:
    """Validate ``X`` (2-D, finite) and return the float64 matrix that ``similarity_block`` works on.

    cosine: rows scaled to unit norm; correlation: rows centred then scaled; spearman: rows replaced by their
    (average-tie) ranks, then as correlation; euclidean: the raw rows.
    """
    if metric not in METRICS:
        raise InputError(f"metric must be one of {METRICS}, got {metric!r}.")
    if hasattr(X, "toarray"):
        X = X.toarray()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (profiles x features), got shape {X.shape}.")
    if X.shape[0] < 2 or X.shape[1] < 1:
        raise InputError(f"{name} needs at least 2 rows and 1 column, got shape {X.shape}.")
    if not np.isfinite(X).all():
        rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
        raise InputError(f"{name} has NaN or infinite values in {rows.size} rows (first {rows[:5].tolist()}); "
                         "impute or drop them first (e.g. tg.culture.select_features drops features with NaNs).")
    if metric == "euclidean":
        return np.ascontiguousarray(X)
    if metric == "spearman":
        from scipy.stats import rankdata

        X = rankdata(X, axis=1)
    if metric in ("correlation", "spearman"):
        X = X - X.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    if (norms == 0).any():
        rows = np.flatnonzero(norms == 0)
        what = "all-zero" if metric == "cosine" else "constant"
        raise InputError(f"{name} has {rows.size} {what} rows (first {rows[:5].tolist()}); their {metric} "
                         "similarity is undefined. Drop them or use metric='euclidean'.")
    return np.ascontiguousarray(X / norms[:, None])


def similarity_block(P: np.ndarray, rows: slice, metric: str, *, sq: np.ndarray | None = None) -> np.ndarray:
    """Similarities (float64) of the query rows ``P[rows]`` against every row of ``P`` (from
    :func:`prepare_profiles`).  Euclidean similarity is ``1 / (1 + distance)`` (copairs' convention)."""
    S = P[rows] @ P.T
    if metric != "euclidean":
        return S
    if sq is None:
        sq = np.einsum("ij,ij->i", P, P)
    S *= -2.0
    S += sq[rows][:, None]
    S += sq[None, :]
    np.maximum(S, 0.0, out=S)
    np.sqrt(S, out=S)
    S += 1.0
    np.reciprocal(S, out=S)
    return S


def _rows_per_block(block_size: int, n: int) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise InputError(f"block_size must be a positive integer, got {block_size!r}.")
    return int(max(1, min(block_size, _BLOCK_ELEMENTS // max(n, 1))))


# ------------------------------------------------------------------------------------ compiled kernel

_KERNEL = None
_FEW_POSITIVES = 12  # up to this many positives a query's ranks come from counting passes, else a binary search


def _kernel():
    """Compile (once per process) the per-row AP kernel.  numba is imported here, not at module import."""
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    from numba import njit

    def ap_rows(S, q0, codes, order, starts, out):  # pragma: no cover - compiled
        b, n = S.shape
        one = np.float32(1.0)
        keys = np.empty(n, dtype=np.float32)
        for r in range(b):
            q = q0 + r
            c = codes[q]
            lo = starts[c]
            hi = starts[c + 1]
            m = hi - lo - 1
            if m <= 0:
                out[r] = np.nan
                continue
            pk = np.empty(m, dtype=np.float32)
            t = 0
            for i in range(lo, hi):
                j = order[i]
                if j != q:
                    pk[t] = one - np.float32(S[r, j])  # copairs stores similarities as float32
                    t += 1
            pk.sort()
            s = 0.0
            if m <= _FEW_POSITIVES:
                # few positives: the negatives ranked before positive k are the candidates with a key below
                # pk[k] (a tied negative comes after), minus the positives below it and the query itself.
                # One branch-free (vectorised) counting pass per positive.
                for j in range(n):
                    keys[j] = one - np.float32(S[r, j])
                kq = keys[q]
                below = 0  # positives with a key strictly below pk[k]
                for k in range(m):
                    while below < k and pk[below] < pk[k]:
                        below += 1
                    v = pk[k]
                    cnt = 0
                    for j in range(n):
                        cnt += keys[j] < v
                    neg = cnt - below - (1 if kq < v else 0)
                    s += (k + 1.0) / (k + 1.0 + neg)
                out[r] = s / m
                continue
            cnt = np.zeros(m + 1, dtype=np.int64)
            for j in range(n):
                if codes[j] == c:
                    continue
                v = one - np.float32(S[r, j])
                # number of positive keys <= v (binary search, side='right')
                a = 0
                z = m
                while a < z:
                    mid = (a + z) >> 1
                    if pk[mid] <= v:
                        a = mid + 1
                    else:
                        z = mid
                cnt[a] += 1
            acc = 0
            for k in range(m):
                acc += cnt[k]  # negatives strictly before the k-th positive
                s += (k + 1.0) / (k + 1.0 + acc)
            out[r] = s / m

    try:
        _KERNEL = njit(nogil=True, cache=True)(ap_rows)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available" (read-only install)
        _KERNEL = njit(nogil=True)(ap_rows)
    return _KERNEL


_NULL_KERNEL = None


def _null_kernel():
    """The compiled null-distribution kernel (:mod:`._null_kernel`; numba is imported on first use)."""
    global _NULL_KERNEL
    if _NULL_KERNEL is None:
        from ._null_kernel import null_aps

        # compile (or load from numba's cache) here, in one thread, before any thread pool calls it
        lanes, jump = _pcg_lanes(0)
        null_aps(lanes, jump, 1, 1, 3, np.empty(1, dtype=np.float32))
        _NULL_KERNEL = null_aps
    return _NULL_KERNEL


_BLAS_LOCK = threading.Lock()
_BLAS_STATE: dict = {"users": 0, "limiter": None}


@contextlib.contextmanager
def _blas_single_thread():
    """BLAS on one thread while inside (threadpoolctl; a no-op where it is not installed).  Process-wide, as
    BLAS's thread count is: concurrent calls share one limit, and the first to enter sets it and the last to
    leave restores the previous setting (so calls from several threads cannot leave BLAS limited)."""
    with _BLAS_LOCK:
        if _BLAS_STATE["users"] == 0:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:  # pragma: no cover - a dependency of scikit-learn
                threadpool_limits = None
            _BLAS_STATE["limiter"] = threadpool_limits(1, user_api="blas") if threadpool_limits else None
        _BLAS_STATE["users"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["users"] -= 1
            if _BLAS_STATE["users"] == 0 and _BLAS_STATE["limiter"] is not None:
                _BLAS_STATE["limiter"].restore_original_limits()
                _BLAS_STATE["limiter"] = None


def _average_precision(P: np.ndarray, codes: np.ndarray, metric: str, block_size: int,
                       desc: str = "average precision", n_jobs: int = 1, pool=None) -> np.ndarray:
    """AP of every row.  With ``n_jobs > 1`` the row blocks are tasks of a thread pool (``pool``, else one of
    its own): each computes its similarity block and ranks it, BLAS on one thread per task (set by the caller
    when it passes a pool), so that the tasks, and other work on the same pool, share the cores without
    BLAS's own threads competing with them."""
    n = P.shape[0]
    order = np.argsort(codes, kind="stable").astype(np.int64)
    starts = np.zeros(codes.max() + 2, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=codes.max() + 1), out=starts[1:])
    kernel = _kernel()
    sq = np.einsum("ij,ij->i", P, P) if metric == "euclidean" else None
    step = _rows_per_block(block_size, n)
    out = np.empty(n, dtype=np.float64)

    def block(q0, q1):
        S = similarity_block(P, slice(q0, q1), metric, sq=sq)  # float64; the kernel rounds each to float32
        kernel(S, q0, codes, order, starts, out[q0:q1])

    if n_jobs <= 1:
        blocks = range(0, n, step)
        for q0 in progress(blocks, total=len(blocks), desc=desc, unit="block"):
            block(q0, min(q0 + step, n))
        return out
    # at least 4 tasks per thread (balance); n_jobs blocks are in memory at a time: together ~ one block
    step = max(1, min(step // n_jobs, -(-n // (4 * n_jobs))))
    bounds = [(q0, min(q0 + step, n)) for q0 in range(0, n, step)]
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_jobs) as own, _blas_single_thread():
            return _average_precision(P, codes, metric, block_size, desc, n_jobs, pool=own)
    from concurrent.futures import as_completed

    futs = [pool.submit(block, q0, q1) for q0, q1 in bounds]
    for f in progress(as_completed(futs), total=len(futs), desc=desc, unit="block"):
        f.result()
    return out


# ----------------------------------------------------------------------------------------- public API

def average_precision(X: Any, labels: Any, *, metric: str = "cosine", block_size: int = 2048,
                      n_jobs: int | None = None) -> np.ndarray:
    """Average precision of every row as a query against all other rows (copairs' definition).

    Parameters
    ----------
    X
        (n, d) profiles, finite.
    labels
        (n,) labels; positives of a query are the other rows with its label, negatives all others.
    metric
        ``'cosine'`` (default), ``'correlation'`` (Pearson), ``'euclidean'`` (similarity ``1/(1+d)``), or
        ``'spearman'`` (Pearson on each row's ranks; not in copairs).
    block_size
        Queries per block; memory is ``block_size x n`` float64 (capped at ~256 MiB).
    n_jobs
        Threads (default ``tg.settings.n_jobs``).  With 1, the blocks run one after another and the matrix
        products use BLAS's own threads; with more, the row blocks (matrix product and ranking) are tasks of a
        thread pool and BLAS runs on one thread per task while the call lasts (process-wide, restored after).

    Returns
    -------
    (n,) float64 AP; NaN for a query whose label occurs only once.
    """
    from .._settings import settings

    P = prepare_profiles(X, metric)
    codes, _ = encode_labels(labels, P.shape[0])
    return _average_precision(P, codes, metric, block_size, n_jobs=settings.resolve_n_jobs(n_jobs))


# ------------------------------------------------------------------------------ null distributions

_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645  # PCG_DEFAULT_MULTIPLIER_128
_M128 = (1 << 128) - 1


def _pcg_lanes(seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """numpy's ``default_rng(seed)`` as the 4 interleaved PCG64 lanes of :func:`._null_kernel.null_aps`: the
    states after 1, 2, 3 and 4 outputs (hi, lo) and the 4-step jump (multiplier**4, increment of 4 steps)."""
    bg = np.random.default_rng(seed).bit_generator
    st = bg.state
    if st["bit_generator"] != "PCG64" or st["has_uint32"]:  # pragma: no cover - default_rng is PCG64 since 1.17
        raise RuntimeError(f"numpy's default_rng gives {st['bit_generator']!r} (buffered: {st['has_uint32']}); "
                           "expected a fresh PCG64")
    s, c = st["state"]["state"], st["state"]["inc"]
    lanes = []
    for _ in range(4):
        s = (s * _PCG_MULT + c) & _M128
        lanes.append(s)
    a4 = pow(_PCG_MULT, 4, 1 << 128)
    c4 = (c * (1 + _PCG_MULT + _PCG_MULT ** 2 + _PCG_MULT ** 3)) & _M128
    m64 = (1 << 64) - 1
    split = lambda v: (v >> 64, v & m64)  # noqa: E731
    return (np.array([split(v) for v in lanes], dtype=np.uint64),
            np.array([*split(a4), *split(c4)], dtype=np.uint64))


def _random_ap(null_size: int, num_pos: int, total: int, seed: int | None) -> np.ndarray:
    """copairs.compute.random_ap, bit for bit (same seed stream, shuffle and float32 AP; see
    :mod:`._null_kernel`), in O(null_size + total) memory (copairs: null_size x total)."""
    if total <= 1 or num_pos >= total:  # every sample keeps positions 0..num_pos-1: AP 1, whatever is drawn
        return np.ones(null_size, dtype=np.float32)
    lanes, jump = _pcg_lanes(seed)
    out = np.empty(null_size, dtype=np.float32)
    _null_kernel()(lanes, jump, null_size, num_pos, total, out)
    return out


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (statsmodels' ``multipletests(method='fdr_bh')``)."""
    p = np.asarray(p, dtype=np.float64)
    n = p.size
    if n == 0:
        return p
    order = np.argsort(p, kind="mergesort")
    ranked = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


def _expected_ap(M: np.ndarray, L: np.ndarray) -> np.ndarray:
    """copairs.map.normalization.expected_ap (exact AP of a random ranking), vectorised (the harmonic number
    is computed once per distinct L)."""
    M = np.asarray(M, dtype=np.float64)
    L = np.asarray(L, dtype=np.float64)
    uL, inv = np.unique(L, return_inverse=True)
    H = np.array([np.sum(1.0 / np.arange(1, int(ll) + 1)) if ll > 0 else 0.0 for ll in uL])[inv.ravel()]
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = (1.0 / L) * (((M - 1.0) / (L - 1.0)) * (L - H) + H)
    mu = np.where(L == 1, np.where(M == 1, 1.0, 0.0), mu)
    mu = np.where(M == 0, 0.0, mu)
    mu = np.where(M == L, 1.0, mu)
    return mu


def _null_distributions(uconfs: np.ndarray, null_size: int, seed: int | None, n_jobs: int, pool=None):
    """copairs.compute.get_null_dists without its disk cache: one null per (num_pos, total) configuration,
    configuration i drawn from ``default_rng(seeds[i])`` with ``seeds = default_rng(seed).integers(8096, ...)``.

    Each configuration is one task (its stream is serial).  With a thread ``pool`` the tasks are submitted to
    it (the largest first) and a function that waits for them and returns the nulls is returned, so that other
    work can run meanwhile; without one the nulls are returned (computed in ``n_jobs`` threads)."""
    seeds = np.random.default_rng(seed).integers(8096, size=len(uconfs))
    nulls = np.empty((len(uconfs), null_size), dtype=np.float32)

    def one(i):
        nulls[i] = _random_ap(null_size, int(uconfs[i, 0]), int(uconfs[i, 1]), int(seeds[i]))

    _null_kernel()  # compile (or load) before threads start
    order = np.argsort(-uconfs[:, 1], kind="stable") if len(uconfs) else []  # the longest streams first

    def finish(futs=None):
        if futs is None:
            for i in progress(order, total=len(order), desc="mAP null distributions", unit="conf"):
                one(i)
        else:
            from concurrent.futures import as_completed

            for f in progress(as_completed(futs), total=len(futs), desc="mAP null distributions", unit="conf"):
                f.result()
        return nulls

    if pool is not None:
        futs = [pool.submit(one, i) for i in order]
        return lambda: finish(futs)
    if n_jobs > 1 and len(order) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_jobs) as own:
            return finish([own.submit(one, i) for i in order])
    return finish()


def mean_average_precision(X: Any, labels: Any, *, metric: str = "cosine", null_size: int = 10000,
                           seed: int | None = 0, threshold: float = 0.05, block_size: int = 2048,
                           ap: np.ndarray | None = None, n_jobs: int | None = None) -> pd.DataFrame:
    """mAP per label with a permutation p-value and a Benjamini-Hochberg q-value (copairs' procedure).

    Parameters
    ----------
    X, labels, metric, block_size
        As in :func:`average_precision`.
    null_size
        Random rankings per (positives, candidates) configuration.
    seed
        Seed of the null distributions (copairs' seed stream: the same seed gives the same p-values).
    threshold
        Significance level of ``below_p`` / ``below_q``.
    ap
        Precomputed :func:`average_precision` of the same ``X``/``labels``/``metric`` (skips recomputing).
    n_jobs
        Threads (default ``tg.settings.n_jobs``).  With more than one, one thread pool runs the null
        distributions (which depend only on the label counts; each configuration's random stream is serial,
        one task) and, meanwhile, the APs' row blocks as in :func:`average_precision`; the values do not
        depend on it.

    Returns
    -------
    DataFrame, one row per label that occurs at least twice (in order of first appearance): ``label``,
    ``n`` (queries), ``mAP``, ``mAP_normalized`` (copairs' scale-free mean normalised AP), ``p_value``,
    ``q_value``, ``below_p``, ``below_q``.
    """
    from .._settings import settings

    if isinstance(null_size, bool) or not isinstance(null_size, (int, np.integer)) or null_size < 1:
        raise InputError(f"null_size must be a positive integer, got {null_size!r}.")
    if not (0 < float(threshold) < 1):
        raise InputError(f"threshold must be in (0, 1), got {threshold!r}.")
    n_jobs = settings.resolve_n_jobs(n_jobs)
    P = None
    if ap is None:
        P = prepare_profiles(X, metric)
        n = P.shape[0]
    else:
        ap = np.asarray(ap, dtype=np.float64)
        n = np.shape(X)[0]
        if ap.shape != (n,):
            raise InputError(f"ap must have one value per row of X ({n}), got shape {ap.shape}.")
    codes, uniques = encode_labels(labels, n)
    counts = np.bincount(codes)
    npos = counts[codes] - 1
    cols = ["label", "n", "mAP", "mAP_normalized", "p_value", "q_value", "below_p", "below_q"]
    # the null configurations depend on the labels only (copairs drops queries whose AP is NaN, which here
    # happens exactly for queries without a positive: every other row is a candidate)
    idx = np.flatnonzero(npos > 0)
    total = np.full(idx.size, n - 1, dtype=np.int64)
    confs = np.stack([npos[idx], total], axis=1)
    uconfs, rev = np.unique(confs, axis=0, return_inverse=True)
    rev = rev.ravel()
    nulls = finish = pool = None
    with contextlib.ExitStack() as stack:
        if n_jobs > 1 and (idx.size or P is not None):
            # one pool of n_jobs threads for everything: the null distributions (their tasks first: each is
            # one serial stream) and the APs' row blocks, BLAS on one thread per task
            from concurrent.futures import ThreadPoolExecutor

            pool = stack.enter_context(ThreadPoolExecutor(n_jobs))
            stack.callback(pool.shutdown, cancel_futures=True)
            stack.enter_context(_blas_single_thread())
            if idx.size:
                finish = _null_distributions(uconfs, null_size, seed, n_jobs, pool=pool)
        if P is not None:
            ap = _average_precision(P, codes, metric, block_size, n_jobs=n_jobs, pool=pool)
        if finish is not None:
            nulls = finish()
        elif idx.size:
            nulls = _null_distributions(uconfs, null_size, seed, n_jobs)
    valid = (npos > 0) & ~np.isnan(ap)
    if not valid.any():
        logger.warning("mean_average_precision: no label occurs twice; nothing to score.")
        return pd.DataFrame(columns=cols)
    if not valid[idx].all():  # a finite X gives finite APs; keep copairs' filter all the same
        keep = valid[idx]
        idx, total, rev = idx[keep], total[keep], rev[keep]
    nap = np.clip((ap[idx] - (mu := _expected_ap(npos[idx], total))) / np.maximum(1 - mu, 1e-10), -1.0, 1.0)
    gcodes = codes[idx]
    # per label, in order of first appearance: mAP and mean normalised AP as copairs computes them (pandas'
    # groupby mean over the rows in their original order), the number of queries, and the configuration of
    # its queries (one per label: every query of a label has the same positives and candidates counts)
    grouped = pd.DataFrame({"ap": ap[idx], "nap": nap, "row": np.arange(idx.size)}).groupby(
        gcodes, sort=False)
    means = grouped[["ap", "nap"]].mean()
    labs = means.index.to_numpy()
    score = means["ap"].to_numpy()
    size = grouped.size().to_numpy()
    conf = rev[grouped["row"].first().to_numpy()]
    # the label's null is the mean of its queries' nulls (copairs: null_dists[rev_ix[indices]].mean(axis=0)),
    # the same for every label with the same configuration and size; copairs counts (null > score) with the
    # score a Python float, i.e. compared at float32 (NEP 50)
    above = np.empty(labs.size, dtype=np.int64)
    key = conf.astype(np.int64) * (int(size.max()) + 1) + size
    for kv in np.unique(key):
        sel = np.flatnonzero(key == kv)
        c, k = int(conf[sel[0]]), int(size[sel[0]])
        sn = np.sort(nulls[np.full(k, c)].mean(axis=0))
        above[sel] = null_size - np.searchsorted(sn, score[sel].astype(np.float32), side="right")
    p = (above + 1) / (null_size + 1)
    rows = {"label": uniques[labs], "n": size, "mAP": score, "mAP_normalized": means["nap"].to_numpy(),
            "p_value": p}
    out = pd.DataFrame(rows, columns=cols[:5])
    out["q_value"] = _bh(out["p_value"].to_numpy())
    out["below_p"] = out["p_value"] < threshold
    out["below_q"] = out["q_value"] < threshold
    return out
