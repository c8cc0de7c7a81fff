"""``tg.eval.evaluate``: every representation x every protocol on the same grouped splits, with diagnostics.

Only the samples AnnData is read: labels and groups from ``obs``, representations from ``obsm['X_*']``,
their provenance from ``uns['representations']``. Everything lands in ``samples.uns[key_added]``
(tables as DataFrames, so the object round-trips through ``.h5ad``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import _keys as K
from .._anndata import _plain
from .._errors import InputError
from .._logging import logger, progress
from .._settings import settings
from ._protocols import (HEADLINE, HEST_COMPONENTS, classification_split, clustering_split, regression_split,
                         retrieval_split)
from ._similarity import knn_indices, knn_overlap, linear_cka
from ._splits import make_splits
from ._stats import bootstrap_ci, paired_difference

__all__ = ["evaluate"]

TASKS = ("classification", "regression", "retrieval", "clustering")
_HEADLINE_FOR_GAPS = HEADLINE
_VIS_EMBEDDINGS = ("X_umap", "X_tsne", "X_draw_graph_fa", "X_draw_graph_fr", "X_phate")
RESULT_COLUMNS = ["representation", "protocol", "metric", "split", "seed", "value"]
UNS_REPRESENTATIONS = K.uns.representations


# ----------------------------------------------------------------------------------------- inputs
def _tasks(task) -> list[str]:
    tasks = [task] if isinstance(task, str) else list(task)
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise InputError(f"Unknown task(s) {bad or tasks}; choose from {list(TASKS)} (or a list of them).")
    return list(dict.fromkeys(tasks))


def _resolve_reps(samples, reps, *, exclude: Sequence[str] = ()) -> list[str]:
    if reps is None:
        names = [k for k in samples.obsm.keys() if str(k).startswith("X_") and k not in _VIS_EMBEDDINGS
                 and k != K.obsm.membership and k not in exclude]
        if not names:
            raise InputError("samples.obsm holds no representation ('X_*' key). Add one, e.g. with "
                             "tg.graph.descriptors (X_structural) or tg.emb, or pass reps=[...].")
        return names
    reps = [reps] if isinstance(reps, str) else list(reps)
    reps = [K.obsm.rep(r) if r not in samples.obsm else r for r in reps]
    missing = [r for r in reps if r not in samples.obsm]
    if missing:
        raise InputError(f"Representation(s) {missing} not in samples.obsm (available: "
                         f"{sorted(k for k in samples.obsm.keys() if k != K.obsm.membership)}).")
    if len(set(reps)) != len(reps):
        raise InputError(f"reps lists a representation twice: {reps}.")
    return reps


def _rep_array(samples, name: str, *, nan_policy: str, nan_ok_default: bool) -> tuple[np.ndarray, bool, int]:
    """(float32 array, has_nan, dropped all-NaN columns) with clear errors for bad content."""
    M = samples.obsm[name]
    if isinstance(M, pd.DataFrame):
        M = M.to_numpy()
    if sp.issparse(M):
        M = M.toarray()
    M = np.asarray(M)
    if M.ndim != 2:
        raise InputError(f"samples.obsm[{name!r}] must be 2-D (n_samples, d), got shape {M.shape}.")
    if M.shape[0] != samples.n_obs:
        raise InputError(f"samples.obsm[{name!r}] has {M.shape[0]} rows but samples has {samples.n_obs}.")
    if M.dtype == object or not (np.issubdtype(M.dtype, np.number) or M.dtype == bool):
        raise InputError(f"samples.obsm[{name!r}] must be numeric, got dtype {M.dtype}.")
    if M.shape[1] == 0:
        raise InputError(f"samples.obsm[{name!r}] has no columns.")
    X = M.astype(np.float32, copy=False)
    inf = np.isinf(X)
    if inf.any():
        raise InputError(f"samples.obsm[{name!r}] contains {int(inf.sum())} infinite value(s) in "
                         f"{int(inf.any(axis=1).sum())} sample(s); replace them (e.g. by NaN with "
                         "nan_policy='impute') or fix the step that made them.")
    nan = np.isnan(X)
    if not nan.any():
        return X, False, 0
    allowed = nan_policy == "impute" or (nan_policy == "auto" and nan_ok_default)
    if not allowed:
        raise InputError(f"samples.obsm[{name!r}] contains {int(nan.sum())} NaN value(s) in "
                         f"{int(nan.any(axis=1).sum())} sample(s) (e.g. rows "
                         f"{np.flatnonzero(nan.any(axis=1))[:5].tolist()}). "
                         "Remove those samples, fix the representation, or pass nan_policy='impute' to fill them "
                         "with the training folds' column medians.")
    empty = nan.all(axis=0)
    if empty.all():
        raise InputError(f"samples.obsm[{name!r}] is NaN everywhere.")
    if empty.any():
        X = X[:, ~empty]
    logger.info("%s: %d NaN value(s) imputed with the training folds' column medians%s.", name,
                int(nan[:, ~empty].sum()), f"; {int(empty.sum())} all-NaN column(s) dropped" if empty.any() else "")
    return X, True, int(empty.sum())


def _prepared(X: np.ndarray, has_nan: bool, standardize: bool) -> np.ndarray:
    """Imputed (column medians of all rows) and standardised copy for the label-free protocols."""
    Z = X.astype(np.float64, copy=True)
    if has_nan:
        med = np.nanmedian(Z, axis=0)
        r, c = np.nonzero(np.isnan(Z))
        Z[r, c] = med[c]
    if standardize:
        Z -= Z.mean(axis=0)
        sd = Z.std(axis=0)
        sd[sd == 0] = 1.0
        Z /= sd
    return Z.astype(np.float32)


def _provenance(samples, name: str) -> dict:
    rec = (samples.uns.get(UNS_REPRESENTATIONS) or {}).get(name)
    low = name.lower()
    if isinstance(rec, Mapping) and "learned" in rec:
        learned = bool(rec.get("learned"))
        trained = bool(rec.get("trained", False))
        family = str(rec.get("family", ""))
        tg_ = rec.get("twin_group")
        twin_group = None if tg_ in (None, "None", "") else str(tg_)
    else:
        family = "structural" if "structural" in low else ("color" if ("color" in low or "colour" in low) else "")
        learned = not any(t in low for t in ("structural", "color", "colour", "profile"))
        trained = learned and "untrained" not in low
        twin_group = None
    return {"learned": learned, "trained": trained, "twin_group": twin_group, "family": family}


def _twins(name: str, prov: Mapping[str, dict]) -> list[str]:
    me = prov[name]
    if not (me["learned"] and me["trained"]):
        return []
    if me["twin_group"] is not None:
        return [r for r, p in prov.items() if r != name and p["learned"] and not p["trained"]
                and p["twin_group"] == me["twin_group"]]
    out = []
    for r, p in prov.items():  # naming convention X_<...>_untrained_s<seed> <-> X_<...>_<objective>
        if r == name or not p["learned"] or p["trained"] or p["twin_group"] is not None:
            continue
        m = re.match(r"^(.*)_untrained(_s\d+)?$", r)
        if m and name.startswith(m.group(1) + "_"):
            out.append(r)
    return out


def _categorical_labels(samples, label_key: str) -> tuple[np.ndarray, list[str]]:
    if label_key not in samples.obs.columns:
        raise InputError(f"label_key {label_key!r} is not a samples.obs column (available: "
                         f"{list(samples.obs.columns)[:30]}).")
    s = samples.obs[label_key]
    if pd.api.types.is_float_dtype(s) and not pd.api.types.is_bool_dtype(s):
        vals = s.dropna().to_numpy()
        if len(vals) and (not np.all(vals == np.round(vals)) or len(np.unique(vals)) > max(20, len(vals) // 10)):
            raise InputError(f"samples.obs[{label_key!r}] looks continuous ({len(np.unique(vals))} distinct float "
                             "values); use task='regression' for it.")
    cat = pd.Categorical(s.astype("object").where(s.notna(), None))
    codes = cat.codes.astype(np.int64)
    return codes, [str(c) for c in cat.categories]


def _regression_targets(samples, label_key, targets) -> tuple[np.ndarray, list[str]]:
    """(n, t) float64 targets from obs column(s), an obsm key, a layer, or ``'X'``."""
    keys = [label_key] if isinstance(label_key, str) else list(label_key)
    if len(keys) > 1 or keys[0] in samples.obs.columns:
        missing = [k for k in keys if k not in samples.obs.columns]
        if missing:
            raise InputError(f"label column(s) {missing} not in samples.obs.")
        Y = np.column_stack([pd.to_numeric(samples.obs[k], errors="coerce").to_numpy(dtype=np.float64)
                             for k in keys])
        names = [str(k) for k in keys]
    else:
        key = keys[0]
        if key in samples.obsm:
            M = samples.obsm[key]
            names = samples.uns.get(K.uns.feature_names(key))
            if isinstance(M, pd.DataFrame):
                names, M = list(M.columns), M.to_numpy()
        elif key in samples.layers:
            M, names = samples.layers[key], list(samples.var_names)
        elif key == "X" and samples.X is not None:
            M, names = samples.X, list(samples.var_names)
        else:
            raise InputError(f"label_key {key!r} is not an obs column, obsm key, layer, or 'X' of samples.")
        M = M.toarray() if sp.issparse(M) else np.asarray(M)
        M = np.asarray(M, dtype=np.float64).reshape(samples.n_obs, -1)
        names = [str(x) for x in np.asarray(names).ravel()] if names is not None else \
            [f"{key}[{j}]" for j in range(M.shape[1])]
        if len(names) != M.shape[1]:
            names = [f"{key}[{j}]" for j in range(M.shape[1])]
        if targets is not None:
            want = [targets] if isinstance(targets, str) else list(targets)
            missing = [t for t in want if t not in names]
            if missing:
                raise InputError(f"targets {missing[:10]} are not among the columns of {key!r}.")
            idx = [names.index(t) for t in want]
            M, names = M[:, idx], [names[i] for i in idx]
        Y = M
    if np.isinf(Y).any():
        raise InputError(f"The regression targets ({label_key!r}) contain infinite values.")
    return Y, names


# ----------------------------------------------------------------------------------------- tables
def _pair_table(sub: pd.DataFrame) -> pd.DataFrame:
    """Wide table: rows (seed, split), columns representations, for one (protocol, metric)."""
    return sub.pivot_table(index=["seed", "split"], columns="representation", values="value", aggfunc="first",
                           dropna=False)


def _summary(results: pd.DataFrame, *, n_boot: int, level: float) -> pd.DataFrame:
    rows = []
    for (rep, proto, metric), g in results.groupby(["representation", "protocol", "metric"], sort=False):
        mean, lo, hi = bootstrap_ci(g["value"].to_numpy(), n_boot=n_boot, level=level, seed=0)
        rows.append((rep, proto, metric, mean, lo, hi, int(np.isfinite(g["value"].to_numpy()).sum())))
    return pd.DataFrame(rows, columns=["representation", "protocol", "metric", "mean", "ci_low", "ci_high", "n"])


def _gaps(results: pd.DataFrame, reps: list[str], prov: dict, baseline: str | None, *, n_boot: int,
          level: float) -> pd.DataFrame:
    rows = []
    heads = results[[m in _HEADLINE_FOR_GAPS.get(p, ()) for p, m in zip(results["protocol"], results["metric"])]]
    for (proto, metric), sub in heads.groupby(["protocol", "metric"], sort=False):
        wide = _pair_table(sub)
        for rep in reps:
            if not prov[rep]["learned"] or rep not in wide:
                continue
            refs = []
            if baseline is not None and baseline in wide and rep != baseline:
                refs.append((baseline, wide[baseline].to_numpy()))
            tw = [t for t in _twins(rep, prov) if t in wide]
            if tw:
                refs.append(("untrained twins", wide[tw].mean(axis=1, skipna=False).to_numpy()))
            for ref, b in refs:
                d = paired_difference(wide[rep].to_numpy(), b, n_boot=n_boot, level=level, seed=0)
                rows.append((rep, ref, proto, metric, d["diff"], d["ci_low"], d["ci_high"], d["verdict"], d["n"]))
    return pd.DataFrame(rows, columns=["representation", "reference", "protocol", "metric", "diff", "ci_low",
                                       "ci_high", "verdict", "n"])


def _kendall_disagreement(summary: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Compare the ordering of representations by accuracy-type metrics with retrieval / clustering."""
    from scipy.stats import kendalltau

    acc = [("linear_probe", "balanced_accuracy"), ("linear_probe", "macro_f1"), ("knn", "balanced_accuracy")]
    other = [("retrieval", "mAP"), ("leiden", "ARI"), ("leiden", "NMI")]
    s = {key: g.set_index("representation")["mean"] for key, g in summary.groupby(["protocol", "metric"])}
    rows, flags = [], []
    for a in acc:
        if a not in s:
            continue
        for b in other:
            if b not in s:
                continue
            va, vb = s[a], s[b]
            common = [r for r in va.index if r in vb.index and np.isfinite(va[r]) and np.isfinite(vb[r])]
            if len(common) < 3:
                continue
            x, y = va[common].to_numpy(), vb[common].to_numpy()
            tau = float(kendalltau(x, y).statistic)
            flips = [(common[i], common[j]) for i in range(len(common)) for j in range(i + 1, len(common))
                     if (x[i] - x[j]) * (y[i] - y[j]) < 0]
            rows.append((f"{a[0]} {a[1]}", f"{b[0]} {b[1]}", tau, len(flips), len(common) * (len(common) - 1) // 2))
            if flips and tau < 0.5:
                ex = "; ".join(f"{p} vs {q}" for p, q in flips[:3])
                flags.append(f"Metric disagreement: {a[0]} {a[1]} and {b[0]} {b[1]} order the representations "
                             f"differently (Kendall tau {tau:.2f}, {len(flips)} of {rows[-1][4]} pairs flipped, e.g. "
                             f"{ex}).")
    return pd.DataFrame(rows, columns=["accuracy_metric", "other_metric", "kendall_tau", "n_flipped", "n_pairs"]), flags


def _verdict_flags(gaps: pd.DataFrame) -> list[str]:
    flags = []
    for (rep, ref), g in gaps.groupby(["representation", "reference"], sort=False):
        if (g["verdict"] != "better").all():
            n_worse = int((g["verdict"] == "worse").sum())
            flags.append(f"{rep} is not better than {ref} on any headline metric ({len(g)} compared, {n_worse} worse).")
    return flags


def _storable(v: Any) -> Any:
    """uns content that h5ad can write: DataFrames with plain columns, lists as arrays, no None."""
    if isinstance(v, pd.DataFrame):
        df = v.copy()
        for c in df.columns:
            if df[c].dtype == object:
                df[c] = df[c].astype(str)
        df.columns = [str(c) for c in df.columns]
        df.index = df.index.astype(str)
        return df
    if isinstance(v, dict):
        return {str(k): _storable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
        return np.asarray(list(v), dtype=str) if len(v) else np.zeros(0, dtype="U1")
    return _plain(v)


# ----------------------------------------------------------------------------------------- main
def _underdetermined_ridge_flags(plans, widths: Mapping[str, int], n_components: int = HEST_COMPONENTS
                                 ) -> list[str]:
    """Flags for the HEST ridge where a representation has at least as many columns as the smallest
    training fold has rows (and that is within the PCA's ``n_components``): PCA then keeps every direction of
    the training rows and the ridge, whose alpha is ``100 / (components x targets)``, barely regularises, so
    the fit interpolates the training rows and a low test score can be overfitting, not missing information
    (HEST's own sets have thousands of spots per fold)."""
    n_train = [len(s.train) for kind, _, _, splits in plans if kind != "categorical" for s in splits]
    if not n_train:
        return []
    n_min = min(n_train)
    if n_min > n_components:
        return []
    return [f"{r}: {w} columns for as few as {n_min} training rows: the HEST ridge's PCA keeps every direction of "
            f"the training rows and its ridge barely regularises, so this regression score can reflect "
            f"overfitting rather than missing information (fewer samples than HEST's {n_components} components)."
            for r, w in widths.items() if w >= n_min]


def evaluate(samples, *, label_key: str | Sequence[str], reps: str | Sequence[str] | None = None,
             task: str | Sequence[str] = "classification", group_key: str | None = None, n_splits: int = 5,
             seeds: Sequence[int] = (0, 1, 2), baseline: str | None = "X_structural", targets=None,
             probes: Mapping | None = None, confounds: Mapping | Sequence | None = None,
             diagnostics: bool = True, similarity: bool = True, standardize: bool = True,
             nan_policy: str = "auto", knn_k: int = 20, leiden_resolution: float = 1.0,
             cka_debiased: bool = False, n_boot: int = 2000, level: float = 0.95, key_added: str = "tg_eval",
             n_jobs: int | None = None, copy: bool = False):
    """Evaluate every representation on the same grouped splits, with the diagnostics that tell what it learned.

    Parameters
    ----------
    samples
        Samples AnnData: labels and groups in ``obs``, representations in ``obsm['X_*']``, provenance
        in ``uns['representations']`` (learned / trained / twin_group; see docs/architecture.md).
    label_key
        Classification, retrieval, clustering: a categorical ``obs`` column (samples with a missing
        label are left out, and logged). Regression: an ``obs`` column or list of columns, an ``obsm``
        key (e.g. spot expression, column names from ``uns['<key>_names']``), a layer, or ``'X'``
        (``var_names`` name the targets); ``targets=`` picks columns by name. Rows with a missing
        target are left out.
    reps
        ``obsm`` keys to evaluate; ``None`` = every ``X_*`` key (not the membership ``'cells'``, not
        2-D visualisations such as ``X_umap``, not the regression target).
    task
        ``'classification'`` (linear probe: standardised logistic regression; cosine kNN; macro-F1,
        balanced accuracy, one-vs-rest macro AUROC), ``'regression'`` (HEST-Benchmark: PCA to 256
        components fitted on the training rows, then ridge; Pearson r per target and their mean),
        ``'retrieval'`` (mean average precision of same-label neighbours among the test samples),
        ``'clustering'`` (ARI and NMI of scanpy Leiden clusters of the test samples), or a list.
    group_key
        ``obs`` column (patient, slide, plate) that splits are grouped by: no group is in both the
        training and the test data. ``None``: samples are split individually.
    n_splits, seeds
        K-fold splits (stratified for the label-based tasks) for each seed; every metric is computed
        on every (split, seed) so that representations are compared pairwise on identical data.
    baseline
        The structural baseline that learned representations are compared with (``None``: no
        baseline gap).
    probes, confounds
        Biological and shortcut quantities to probe (mapping display name -> obs column, ``'X_key'``,
        ``'X_key:column'`` or a list); ``None`` uses the defaults described in
        :func:`tissuegraph.eval.probe_targets`.
    diagnostics, similarity
        Run the probes and metric-disagreement checks / the CKA and k-NN-overlap matrices.
    standardize
        Standardise every representation's columns (training-fold statistics for the supervised
        protocols, all samples for retrieval, clustering and similarity), so descriptors in mixed
        units and network embeddings are treated alike.
    nan_policy
        ``'raise'``: NaN in a representation is an error; ``'impute'``: NaN are replaced by the training
        folds' column medians (all-NaN columns dropped); ``'auto'`` (default): impute for
        non-learned representations (the structural baseline documents NaN for undefined descriptors,
        e.g. edge statistics of a one-cell sample), raise for learned ones. Infinite values always raise.
    knn_k
        Neighbours for the kNN classifier and the k-NN overlap.
    leiden_resolution
        Leiden resolution for the clustering protocol.
    cka_debiased
        Use the debiased linear CKA.
    n_boot, level
        Bootstrap resamples and interval level of the summary and the gaps.
    key_added
        Results go to ``samples.uns[key_added]``.
    n_jobs
        Threads over representations (``None``: ``tg.settings.n_jobs``). Results do not depend on it.
    copy
        Work on a copy and return it.

    Returns
    -------
    The tidy results DataFrame ``[representation, protocol, metric, split, seed, value]`` (or the
    annotated copy with ``copy=True``). ``samples.uns[key_added]`` holds ``results``; ``summary``
    (mean and percentile-bootstrap interval over the splits x seeds); ``gaps`` (each learned
    representation minus the baseline and minus the mean of its untrained twins, paired over the same
    splits and seeds, with interval and verdict ``better`` / ``not distinguishable`` / ``worse``);
    ``cka``, ``knn_overlap``; ``probes``; ``disagreement``; ``splits`` (sizes and classes missing from
    each training/test fold); ``flags`` (plain-language warnings); ``params``.

    Notes
    -----
    The interval of a mean over repeated K-fold splits reflects split-to-split variation; the splits
    share samples, so it is narrower than an interval over independent test sets would be, and a
    verdict is a statement about these data, not about new patients.
    """
    if nan_policy not in ("auto", "raise", "impute"):
        raise InputError(f"nan_policy must be 'auto', 'raise' or 'impute', got {nan_policy!r}.")
    tasks = _tasks(task)
    seeds = [int(s) for s in ([seeds] if np.isscalar(seeds) else seeds)]
    if not seeds:
        raise InputError("seeds must name at least one seed.")
    if int(knn_k) != knn_k or knn_k < 1:
        raise InputError(f"knn_k must be a positive integer, got {knn_k!r}.")
    if samples.n_obs == 0:
        raise InputError("samples is empty (0 rows).")
    if copy:
        samples = samples.copy()
    exclude = [label_key] if isinstance(label_key, str) else []
    names = _resolve_reps(samples, reps, exclude=exclude)
    prov = {r: _provenance(samples, r) for r in names}
    arrays: dict[str, tuple[np.ndarray, bool]] = {}
    dropped: dict[str, int] = {}
    for r in names:
        X, has_nan, n_drop = _rep_array(samples, r, nan_policy=nan_policy, nan_ok_default=not prov[r]["learned"])
        arrays[r] = (X, has_nan)
        if n_drop:
            dropped[r] = n_drop
    if baseline is not None and baseline not in names:
        logger.info("The baseline %s is not among the evaluated representations; no baseline gaps.", baseline)

    groups_all = None
    if group_key is not None:
        if group_key not in samples.obs.columns:
            raise InputError(f"group_key {group_key!r} is not a samples.obs column (available: "
                             f"{list(samples.obs.columns)[:30]}).")
        g = samples.obs[group_key]
        if g.isna().any():
            raise InputError(f"samples.obs[{group_key!r}] has {int(g.isna().sum())} missing value(s); every sample "
                             "needs a group so that no group can leak between training and test data.")
        groups_all = pd.Categorical(g.astype(str)).codes.astype(np.int64)

    warnings_: list[str] = []
    plans = []  # (kind, index of samples used, labels, splits)
    cat_tasks = [t for t in tasks if t != "regression"]
    y_codes = None
    class_names: list[str] = []
    if cat_tasks:
        if not isinstance(label_key, str):
            raise InputError(f"Tasks {cat_tasks} need one categorical label column; got label_key={label_key!r}.")
        y_codes, class_names = _categorical_labels(samples, label_key)
        idx = np.flatnonzero(y_codes >= 0)
        if len(idx) < samples.n_obs:
            w = f"{samples.n_obs - len(idx)} sample(s) without a label ({label_key!r}) are left out."
            warnings_.append(w)
            logger.warning(w)
        if len(np.unique(y_codes[idx])) < 2:
            raise InputError(f"samples.obs[{label_key!r}] has fewer than 2 classes; nothing to evaluate.")
        splits = make_splits(len(idx), y=y_codes[idx], groups=None if groups_all is None else groups_all[idx],
                             n_splits=n_splits, seeds=seeds, stratify=True)
        plans.append(("categorical", idx, y_codes[idx], splits))
    Y = None
    target_names: list[str] = []
    if "regression" in tasks:
        Y, target_names = _regression_targets(samples, label_key, targets)
        idx = np.flatnonzero(np.isfinite(Y).all(axis=1))
        if len(idx) < samples.n_obs:
            w = f"{samples.n_obs - len(idx)} sample(s) with a missing regression target are left out."
            warnings_.append(w)
            logger.warning(w)
        splits = make_splits(len(idx), groups=None if groups_all is None else groups_all[idx], n_splits=n_splits,
                             seeds=seeds, stratify=False)
        plans.append(("regression", idx, Y[idx], splits))

    for kind, idx, _, splits in plans:
        for s in splits:
            if s.missing_train:
                w = (f"seed {s.seed} split {s.split}: class(es) {[class_names[c] for c in s.missing_train]} absent "
                     "from the training data (counted as never predicted in that split).")
                warnings_.append(w)

    need_prepared = similarity or any(t in tasks for t in ("retrieval", "clustering"))
    n_classes = len(class_names)
    jobs = settings.resolve_n_jobs(n_jobs)
    n_units = sum(len(p[3]) for p in plans)
    neighbours: dict[str, np.ndarray] = {}
    prepared: dict[str, np.ndarray] = {}

    timings: dict[str, float] = {}

    def clock(what: str, t0: float) -> None:
        timings[what] = timings.get(what, 0.0) + time.perf_counter() - t0

    def run_rep(rep: str) -> list[tuple]:
        X, has_nan = arrays[rep]
        t0 = time.perf_counter()
        Xs = _prepared(X, has_nan, standardize) if need_prepared else None
        clock("prepare", t0)
        rows = []
        for kind, idx, lab, splits in plans:
            Xk = X[idx]
            Xsk = Xs[idx] if Xs is not None else None
            for s in splits:
                vals = []
                if kind == "categorical":
                    protos = ["linear_probe", "knn"] if "classification" in tasks else []
                    for proto in protos:
                        t0 = time.perf_counter()
                        vals += classification_split(Xk, lab, s.train, s.test, n_classes=n_classes, has_nan=has_nan,
                                                     standardize=standardize, knn_k=int(knn_k), protocols=(proto,))
                        clock(proto, t0)
                    if "retrieval" in tasks:
                        t0 = time.perf_counter()
                        vals += retrieval_split(Xsk, lab, s.test)
                        clock("retrieval", t0)
                    if "clustering" in tasks:
                        t0 = time.perf_counter()
                        vals += clustering_split(Xsk, lab, s.test, seed=s.seed, resolution=leiden_resolution)
                        clock("leiden", t0)
                else:
                    t0 = time.perf_counter()
                    vals += regression_split(Xk, lab, s.train, s.test, target_names=target_names, has_nan=has_nan,
                                             seed=s.seed)
                    clock("hest_ridge", t0)
                rows += [(rep, p, m, s.split, s.seed, v) for p, m, v in vals]
        if similarity:
            t0 = time.perf_counter()
            neighbours[rep] = knn_indices(Xs, k=int(knn_k))
            clock("knn_overlap", t0)
            prepared[rep] = Xs
        logger.debug("evaluate: %s done", rep)
        return rows

    logger.info("evaluate: %d representation(s) x %s x %d split(s) x %d seed(s) on %d samples", len(names),
                "/".join(tasks), n_splits, len(seeds), samples.n_obs)
    all_rows: list[tuple] = []
    if jobs > 1 and len(names) > 1:
        with ThreadPoolExecutor(max_workers=jobs) as ex:
            for rows in progress(ex.map(run_rep, names), total=len(names), desc="evaluate", unit="rep"):
                all_rows += rows
    else:
        for rep in progress(names, total=len(names), desc="evaluate", unit="rep"):
            all_rows += run_rep(rep)
    results = pd.DataFrame(all_rows, columns=RESULT_COLUMNS)
    results["split"] = results["split"].astype(np.int64)
    results["seed"] = results["seed"].astype(np.int64)
    results["value"] = results["value"].astype(np.float64)

    summary = _summary(results, n_boot=n_boot, level=level)
    base = baseline if (baseline is not None and baseline in names) else None
    gaps = _gaps(results, names, prov, base, n_boot=n_boot, level=level)

    cka = pd.DataFrame(np.nan, index=names, columns=names)
    overlap = pd.DataFrame(np.nan, index=names, columns=names)
    if similarity:
        for i, a in enumerate(names):
            for b in names[i:]:
                t0 = time.perf_counter()
                c = linear_cka(prepared[a], prepared[b], debiased=cka_debiased) if a != b else 1.0
                clock("cka", t0)
                t0 = time.perf_counter()
                o = knn_overlap(neighbours[a], neighbours[b]) if a != b else 1.0
                clock("knn_overlap", t0)
                cka.loc[a, b] = cka.loc[b, a] = c
                overlap.loc[a, b] = overlap.loc[b, a] = o
    prepared.clear()

    flags: list[str] = []
    probes_table = pd.DataFrame(columns=["representation", "target", "kind", "metric", "value"])
    disagreement = pd.DataFrame(columns=["accuracy_metric", "other_metric", "kendall_tau", "n_flipped", "n_pairs"])
    if diagnostics:
        from ._probes import run_probes

        t0 = time.perf_counter()
        cat_idx_codes = y_codes if cat_tasks else None
        probes_table, confound_flags = run_probes(
            samples, arrays, label_key=label_key if isinstance(label_key, str) else str(label_key),
            label_codes=cat_idx_codes, group_key=group_key, probes=probes, confounds=confounds, baseline=baseline,
            n_splits=n_splits, seed=seeds[0], progress_fn=progress)
        clock("probes", t0)
        disagreement, dis_flags = _kendall_disagreement(summary)
        flags += confound_flags + dis_flags
    flags += _verdict_flags(gaps)
    n_missing = sum(1 for w in warnings_ if "absent from the training data" in w)
    if n_missing:
        flags.append(f"{n_missing} of {n_units} split(s) left at least one class out of the training data "
                     "(see warnings); use fewer splits or more groups per class.")
    for r, nd in dropped.items():
        flags.append(f"{r}: {nd} all-NaN column(s) dropped.")
    for r, (X, has_nan) in arrays.items():
        if has_nan:
            flags.append(f"{r}: missing values imputed with training-fold column medians.")
    flags += _underdetermined_ridge_flags(plans, {r: X.shape[1] for r, (X, _) in arrays.items()})

    def n_groups(idx, part):
        return int(len(np.unique(groups_all[idx][part]))) if groups_all is not None else len(part)

    split_rows = []
    for kind, idx, lab, splits in plans:
        for s in splits:
            split_rows.append({
                "task": kind, "seed": s.seed, "split": s.split, "n_train": len(s.train), "n_test": len(s.test),
                "n_train_groups": n_groups(idx, s.train), "n_test_groups": n_groups(idx, s.test),
                "classes_missing_train": ",".join(class_names[c] for c in s.missing_train),
                "classes_missing_test": ",".join(class_names[c] for c in s.missing_test)})
    splits_table = pd.DataFrame(split_rows)

    rep_table = pd.DataFrame([{"representation": r, "dim": arrays[r][0].shape[1], **{
        k: ("" if v is None else v) for k, v in prov[r].items()}} for r in names])
    params = {"label_key": label_key, "reps": names, "task": tasks, "group_key": group_key, "n_splits": n_splits,
              "seeds": seeds, "baseline": baseline, "targets": targets, "standardize": standardize,
              "nan_policy": nan_policy, "knn_k": knn_k, "leiden_resolution": leiden_resolution,
              "cka_debiased": cka_debiased, "n_boot": n_boot, "level": level, "diagnostics": diagnostics,
              "similarity": similarity, "n_samples": samples.n_obs, "classes": class_names,
              "probes": dict(probes) if isinstance(probes, Mapping) else probes,
              "confounds": dict(confounds) if isinstance(confounds, Mapping) else confounds,
              "protocols": {"linear_probe": "StandardScaler + LogisticRegression(C=1, max_iter=1000)",
                            "knn": f"StandardScaler + KNeighborsClassifier(k={knn_k}, cosine, brute)",
                            "hest_ridge": "StandardScaler + PCA(256) + Ridge(lsqr, no intercept, alpha=100/(k*t))",
                            "retrieval": "average precision of same-label test samples (cosine)",
                            "leiden": f"sc.pp.neighbors(cosine, 15) + sc.tl.leiden(igraph, {leiden_resolution})",
                            "interval": f"percentile bootstrap over splits x seeds, {n_boot} resamples"}}
    entry = {"results": results, "summary": summary, "gaps": gaps, "cka": cka, "knn_overlap": overlap,
             "probes": probes_table, "disagreement": disagreement, "splits": splits_table,
             "representations": rep_table, "flags": flags, "warnings": warnings_,
             "timings": {k: float(v) for k, v in timings.items()},
             "params": {k: _plain(v) for k, v in params.items()}}
    samples.uns[key_added] = {k: _storable(v) if k != "params" else v for k, v in entry.items()}
    for f in flags:
        logger.info("flag: %s", f)
    return samples if copy else results
