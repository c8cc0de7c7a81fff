"""Profiling metrics: nearest-neighbour mechanism accuracy (NSC, NSCB) and percent replicating.

* **NSC** (not-same-compound; Ljosa et al. 2013, J Biomol Screen 18:1321): each treatment profile is
  assigned the label (mechanism of action) of its most similar profile among those of *other compounds*;
  NSC is the fraction of treatments whose assigned label is right.  **NSCB** also excludes profiles from the
  query's batch (Ando et al. 2017), which removes the batch shortcut.
* **Percent replicating** (Way et al. 2021, Cell Systems; cytominer-eval's ``percent_replicating``): for
  every group of replicates (e.g. a compound) the median pairwise similarity of its replicates is compared
  with the 95th percentile of a null of medians of same-size sets of *non-replicate* profiles; the score is
  the fraction of groups above it.

Similarities are those of :mod:`tissuegraph.eval._retrieval` (``'cosine'``, ``'correlation'`` = Pearson,
``'spearman'`` = Pearson on each profile's ranks, ``'euclidean'`` = ``1/(1+distance)``), computed in blocks
of queries, never as one n x n matrix.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .._errors import InputError
from ._retrieval import _rows_per_block, encode_labels, prepare_profiles, similarity_block

__all__ = ["nn_accuracy", "nsc", "nscb", "percent_replicating"]


def _as_groups(values: Any, n: int, name: str) -> np.ndarray:
    codes, _ = encode_labels(values, n, name=name)
    return codes


def nn_accuracy(X: Any, labels: Any, *, exclude: Sequence[Any] = (), metric: str = "cosine",
                block_size: int = 2048, return_predictions: bool = False) -> float | tuple[float, pd.DataFrame]:
    """1-nearest-neighbour label accuracy, leaving out candidates that share a group with the query.

    Parameters
    ----------
    X
        (n, d) profiles (e.g. one per treatment), finite.
    labels
        (n,) the label to predict (e.g. mechanism of action).
    exclude
        Sequence of (n,) group vectors (e.g. ``[compound]`` for NSC, ``[compound, batch]`` for NSCB): a
        candidate is left out when it equals the query in *any* of them.  The query itself is always left out.
    metric
        ``'cosine'``, ``'correlation'``, ``'spearman'`` or ``'euclidean'``.
    return_predictions
        Also return a per-query table (``neighbor``, ``similarity``, ``predicted``, ``correct``,
        ``scored``).

    Returns
    -------
    Accuracy over the scored queries.  A query is *not scored* when no candidate is left, or when no
    remaining candidate has its label (it could not be right whatever the representation; e.g. in BBBC021
    NSCB the mechanisms whose compounds all sit in one batch).  Ties in similarity go to the lower row index.
    """
    P = prepare_profiles(X, metric)
    n = P.shape[0]
    y, uniques = encode_labels(labels, n)
    groups = [_as_groups(g, n, f"exclude[{i}]") for i, g in enumerate(exclude)]
    sq = np.einsum("ij,ij->i", P, P) if metric == "euclidean" else None
    step = _rows_per_block(block_size, n)
    nbr = np.full(n, -1, dtype=np.int64)
    sim = np.full(n, np.nan)
    matchable = np.zeros(n, dtype=bool)
    for q0 in range(0, n, step):
        rows = slice(q0, min(q0 + step, n))
        S = similarity_block(P, rows, metric, sq=sq)
        q = np.arange(rows.start, rows.stop)
        allowed = np.ones(S.shape, dtype=bool)
        allowed[np.arange(q.size), q] = False
        for g in groups:
            allowed &= g[q][:, None] != g[None, :]
        S[~allowed] = -np.inf
        j = np.argmax(S, axis=1)  # first maximum: ties go to the lower index
        has = allowed.any(axis=1)
        nbr[q[has]] = j[has]
        sim[q[has]] = S[np.arange(q.size), j][has]
        matchable[q] = (allowed & (y[q][:, None] == y[None, :])).any(axis=1)
    scored = (nbr >= 0) & matchable
    pred = np.where(nbr >= 0, y[np.maximum(nbr, 0)], -1)
    correct = scored & (pred == y)
    acc = float(correct.sum() / scored.sum()) if scored.any() else float("nan")
    if not return_predictions:
        return acc
    table = pd.DataFrame({
        "label": uniques[y],
        "neighbor": nbr,
        "similarity": sim,
        "predicted": np.where(nbr >= 0, uniques[np.maximum(pred, 0)], None),
        "correct": correct,
        "scored": scored,
    })
    return acc, table


def nsc(X: Any, labels: Any, *, compound: Any, metric: str = "cosine", block_size: int = 2048,
        return_predictions: bool = False):
    """Not-same-compound 1-NN accuracy: the nearest profile of another compound gives the label.

    ``X`` holds one profile per treatment (compound x concentration), ``labels`` its mechanism.  See
    :func:`nn_accuracy` for the return value and which queries are scored.
    """
    return nn_accuracy(X, labels, exclude=[compound], metric=metric, block_size=block_size,
                       return_predictions=return_predictions)


def nscb(X: Any, labels: Any, *, compound: Any, batch: Any, metric: str = "cosine", block_size: int = 2048,
         return_predictions: bool = False):
    """Not-same-compound-or-batch 1-NN accuracy: candidates of the query's compound or batch are left out.

    Queries whose mechanism has no candidate outside the query's compound and batch are not scored (the
    usual practice on BBBC021, where two mechanisms have all their compounds in one batch).
    """
    return nn_accuracy(X, labels, exclude=[compound, batch], metric=metric, block_size=block_size,
                       return_predictions=return_predictions)


def percent_replicating(X: Any, labels: Any, *, metric: str = "correlation", null_size: int = 1000,
                        percentile: float = 95.0, seed: int = 0,
                        control: Any | None = None) -> tuple[float, pd.DataFrame]:
    """Percent replicating: share of replicate groups more self-similar than non-replicates.

    Parameters
    ----------
    X, labels
        Profiles (n, d) and replicate groups (e.g. compound, or compound x dose).
    metric
        Pairwise similarity (default Pearson correlation, as in Way et al. 2021).
    null_size
        Random non-replicate sets per group size; each takes one random profile from each of ``k`` distinct
        random groups.
    percentile
        Null percentile a group's median replicate similarity must exceed.
    control
        Label(s) of control groups (e.g. ``'DMSO'``): not scored, but their profiles may enter the null.

    Returns
    -------
    (percent in [0, 100], table per scored group: ``label``, ``n``, ``median_similarity``, ``threshold``,
    ``replicating``).
    """
    P = prepare_profiles(X, metric)
    n = P.shape[0]
    y, uniques = encode_labels(labels, n)
    if isinstance(null_size, bool) or not isinstance(null_size, (int, np.integer)) or null_size < 1:
        raise InputError(f"null_size must be a positive integer, got {null_size!r}.")
    if not (0 < percentile < 100):
        raise InputError(f"percentile must be in (0, 100), got {percentile!r}.")
    controls = set() if control is None else set(np.atleast_1d(np.asarray(control, dtype=object)).tolist())
    sq = np.einsum("ij,ij->i", P, P) if metric == "euclidean" else None
    counts = np.bincount(y)
    order = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    n_groups = counts.size
    if n_groups < 2:
        raise InputError("percent_replicating needs at least two groups (the null draws from other groups).")
    rng = np.random.default_rng(seed)

    def median_sim(idx: np.ndarray) -> np.ndarray:
        """Median of the pairwise similarities within each row of ``idx`` (sets x k)."""
        k = idx.shape[1]
        iu = np.triu_indices(k, 1)
        A = P[idx]  # (sets, k, d)
        if metric == "euclidean":
            d2 = sq[idx][:, :, None] + sq[idx][:, None, :] - 2 * np.einsum("skd,sld->skl", A, A)
            S = 1.0 / (1.0 + np.sqrt(np.maximum(d2, 0)))
        else:
            S = np.einsum("skd,sld->skl", A, A)
        return np.median(S[:, iu[0], iu[1]], axis=1)

    rows = []
    thresholds: dict[int, float] = {}
    for c in range(n_groups):
        k = int(counts[c])
        if k < 2 or uniques[c] in controls:
            continue
        if k not in thresholds:
            if n_groups < k:
                raise InputError(f"a group has {k} replicates but there are only {n_groups} groups; the null "
                                 "needs k distinct groups.")
            g = np.argsort(rng.random((null_size, n_groups)), axis=1)[:, :k]  # k distinct random groups
            pick = starts[g] + (rng.random((null_size, k)) * counts[g]).astype(np.int64)
            thresholds[k] = float(np.percentile(median_sim(order[pick]), percentile))
        members = order[starts[c]:starts[c + 1]]
        med = float(median_sim(members[None, :])[0])
        rows.append((uniques[c], k, med, thresholds[k], med > thresholds[k]))
    table = pd.DataFrame(rows, columns=["label", "n", "median_similarity", "threshold", "replicating"])
    if table.empty:
        raise InputError("no label has two or more profiles: percent replicating needs replicates.")
    return 100.0 * float(table["replicating"].mean()), table
