"""Profiles on AnnData: pycytominer's operations (aggregate, normalize, spherize, feature_select, consensus).

Each operation reads a representation ``samples.obsm[rep]`` (default ``'X_profile'``), writes the result to
``obsm[key_added]`` (default: ``rep`` itself), keeps the column names in ``uns['<key>_names']``, and appends
its parameters to the representation's provenance record (``uns['representations'][key]['params']['steps']``).
They are fitted per group (``by='plate'``) on the control wells (``controls='is_control'``) as in
pycytominer's ``normalize(samples="Metadata_... == 'DMSO'")``; where pycytominer computes the same thing the
results are equal (see the tests).
"""

from __future__ import annotations

import copy as _copy
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import _keys as K
from .._errors import InputError
from .._logging import logger
from ._io import profile_record, set_representation

__all__ = ["aggregate", "normalize", "spherize", "select_features", "consensus", "feature_reproducibility",
           "select_reproducible", "weight_reproducible", "rank_transform", "factor_analysis", "coral"]

C = K.culture


# ------------------------------------------------------------------------------------------- helpers

def _get(samples, rep: str) -> tuple[str, np.ndarray, list[str]]:
    key = K.obsm.rep(rep)
    if key not in samples.obsm:
        raise InputError(f"samples.obsm has no {key!r} (it has {list(samples.obsm)}); read profiles first "
                         "(tg.culture.read_profiles / read_bbbc021_profiles / aggregate).")
    X = np.asarray(samples.obsm[key], dtype=np.float64)
    names = samples.uns.get(K.uns.feature_names(key))
    names = [str(n) for n in names] if names is not None else [f"f{i}" for i in range(X.shape[1])]
    if len(names) != X.shape[1]:
        raise InputError(f"uns[{K.uns.feature_names(key)!r}] has {len(names)} names for {X.shape[1]} columns.")
    return key, X, names


def _add_step(rec: dict, step: dict) -> None:
    """Append a processing step to a provenance record: params['steps'] = {'00_normalize': {...}, ...} (a dict,
    so that the record can be written to .h5ad)."""
    steps = rec.setdefault("params", {}).setdefault("steps", {})
    if isinstance(steps, list):  # an older record
        steps = {f"{i:02d}_{st.get('step', 'step')}": st for i, st in enumerate(steps)}
        rec["params"]["steps"] = steps
    steps[f"{len(steps):02d}_{step['step']}"] = step


def _put(samples, rep_in: str, key_added: str | None, X: np.ndarray, names: Sequence[str], step: dict) -> str:
    src = K.obsm.rep(rep_in)
    key = K.obsm.rep(key_added) if key_added else src
    rec = _copy.deepcopy(samples.uns.get(K.uns.representations, {}).get(src) or profile_record())
    _add_step(rec, step)
    set_representation(samples, key, X, names, rec)
    return key


def _mask(samples, controls: Any, what: str) -> np.ndarray:
    """Rows to fit on: None = all; a bool obs column name; a pandas query string; or a bool array."""
    n = samples.n_obs
    if controls is None:
        return np.ones(n, dtype=bool)
    if isinstance(controls, str):
        if controls in samples.obs.columns:
            m = samples.obs[controls].to_numpy()
            if m.dtype != bool:
                raise InputError(f"obs[{controls!r}] must be boolean to mark the {what} rows.")
            return m
        try:
            m = samples.obs.eval(controls)
        except Exception as exc:
            raise InputError(f"controls={controls!r} is neither a boolean obs column nor a valid query on obs "
                             f"({exc}).") from exc
        return np.asarray(m, dtype=bool)
    m = np.asarray(controls, dtype=bool)
    if m.shape != (n,):
        raise InputError(f"controls mask has shape {m.shape}, expected ({n},).")
    return m


def _groups(samples, by: str | Sequence[str] | None) -> list[np.ndarray]:
    if by is None:
        return [np.arange(samples.n_obs)]
    cols = [by] if isinstance(by, str) else list(by)
    missing = [c for c in cols if c not in samples.obs.columns]
    if missing:
        raise InputError(f"obs has no column(s) {missing} to group by.")
    return [np.asarray(ix) for ix in samples.obs.groupby(cols, observed=True, sort=True).indices.values()]


def _prepare(samples, copy: bool):
    if copy:
        return samples.copy()
    return samples


def _prepare_finite(samples, rep: str, copy: bool):
    """:func:`_prepare` and :func:`_get` for operations that need every value finite."""
    samples = _prepare(samples, copy)
    key, X, names = _get(samples, rep)
    if not np.isfinite(X).all():
        raise InputError(f"obsm[{key!r}] has NaN/inf values; run tg.culture.select_features first.")
    return samples, key, X, names


def _check_epsilon(epsilon: float) -> None:
    if not np.isfinite(epsilon) or epsilon < 0:
        raise InputError(f"epsilon must be a finite number >= 0, got {epsilon!r}.")


# -------------------------------------------------------------------------------------------- aggregate

def aggregate(cells, *, by: Sequence[str] = (C.plate, C.well), method: str = "median", layer: str | None = None,
              key_added: str = "profile"):
    """Single cells -> one profile per well (pycytominer ``aggregate``): the median or mean of each feature.

    ``cells.X`` (or ``cells.layers[layer]``) holds the per-cell features, ``cells.obs`` the ``by`` columns.
    Returns a new wells AnnData: ``obs`` = the ``by`` columns, every other obs column that is constant within
    each well, and ``n_cells``; ``obsm['X_<key_added>']`` = the aggregated features.
    """
    if method not in ("median", "mean"):
        raise InputError(f"method must be 'median' or 'mean', got {method!r}.")
    import anndata as ad

    cols = [by] if isinstance(by, str) else list(by)
    missing = [c for c in cols if c not in cells.obs.columns]
    if missing:
        raise InputError(f"cells.obs has no column(s) {missing}; these name the well of each cell.")
    if cells.n_obs == 0:
        raise InputError("cells has no rows: nothing to aggregate.")
    X = cells.layers[layer] if layer else cells.X
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X, dtype=np.float64)
    df = pd.DataFrame(X, columns=[str(v) for v in cells.var_names])
    keys = cells.obs[cols].reset_index(drop=True)
    g = df.groupby([keys[c] for c in cols], observed=True, sort=True)
    agg = g.median() if method == "median" else g.mean()
    obs = agg.index.to_frame(index=False)
    # metadata constant within wells
    meta = cells.obs.drop(columns=cols).reset_index(drop=True)
    if meta.shape[1]:
        gm = meta.groupby([keys[c] for c in cols], observed=True, sort=True)
        nun = gm.nunique(dropna=False)
        const = [c for c in meta.columns if (nun[c] <= 1).all()]
        if const:
            obs = pd.concat([obs, gm[const].first().reset_index(drop=True)], axis=1)
    obs[K.obs.n_cells] = g.size().to_numpy()
    obs.index = ["/".join(map(str, t)) for t in agg.index.to_flat_index()] if len(cols) > 1 else agg.index.astype(str)
    out = ad.AnnData(obs=obs)
    set_representation(out, key_added, agg.to_numpy(), list(df.columns), profile_record(
        architecture=str(cells.uns.get("culture_features", {}).get("architecture", "cell features")),
        inputs="single cells", params={"steps": {"00_aggregate": {"step": "aggregate", "method": method, "by": cols}}}))
    return out


# -------------------------------------------------------------------------------------------- normalize

def normalize(samples, *, rep: str = C.profile, method: str = "mad_robustize", by: str | Sequence[str] | None = C.plate,
              controls: Any = C.control, epsilon: float = 1e-18, key_added: str | None = None, copy: bool = False):
    """Per-group feature scaling fitted on the control wells (pycytominer ``normalize``).

    method
        ``'mad_robustize'`` (``(x - median) / (1.4826 MAD + epsilon)``, pycytominer's RobustMAD),
        ``'robustize'`` (``(x - median) / IQR``, scikit-learn's RobustScaler), ``'standardize'``
        (``(x - mean) / std``, ddof 0, scikit-learn's StandardScaler; a zero std counts as 1), or ``'center'``.
    by
        obs column(s) fitted separately (default ``'plate'``; ``None`` = all wells together).
    controls
        Boolean obs column, pandas query on obs, or mask: the rows each group's statistics are fitted on
        (default ``'is_control'``; ``None`` = all rows).  A group without control rows raises.
    """
    if method not in ("mad_robustize", "robustize", "standardize", "center"):
        raise InputError(f"method must be 'mad_robustize', 'robustize', 'standardize' or 'center', got {method!r}.")
    samples = _prepare(samples, copy)
    key, X, names = _get(samples, rep)
    fit = _mask(samples, controls, "control")
    out = np.full_like(X, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        for ix in _groups(samples, by):
            ref = X[ix[fit[ix]]]
            if ref.shape[0] == 0:
                raise InputError(f"a group of by={by!r} (rows {ix[:3].tolist()}...) has no control rows to fit on; "
                                 "check controls= or normalise with by=None.")
            if method == "mad_robustize":
                med = np.nanmedian(ref, axis=0)
                mad = 1.4826 * np.nanmedian(np.abs(ref - med), axis=0)
                out[ix] = (X[ix] - med) / (mad + epsilon)
            elif method == "robustize":
                med = np.nanmedian(ref, axis=0)
                q1, q3 = np.nanpercentile(ref, [25, 75], axis=0)
                iqr = q3 - q1
                iqr = np.where(iqr == 0, 1.0, iqr)
                out[ix] = (X[ix] - med) / iqr
            elif method == "standardize":
                mu = np.nanmean(ref, axis=0)
                sd = np.nanstd(ref, axis=0)
                sd = np.where(sd < 10 * np.finfo(float).eps * np.maximum(np.abs(mu), 1.0), 1.0, sd)
                out[ix] = (X[ix] - mu) / sd
            else:
                out[ix] = X[ix] - np.nanmedian(ref, axis=0)
    bad = ~np.isfinite(out) & np.isfinite(X)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0))
        logger.info("normalize: %d features became non-finite (zero spread in the controls), e.g. %s; "
                    "select_features drops them.", cols.size, [names[c] for c in cols[:3]])
        out[bad] = np.nan
    _put(samples, key, key_added, out, names, {"step": "normalize", "method": method,
                                               "by": by, "controls": str(controls), "epsilon": epsilon})
    return samples if copy else None


# --------------------------------------------------------------------------------------------- spherize

def _spherize_weights(R: np.ndarray, method: str, epsilon: float, relative: bool, center: bool):
    """pycytominer's Spherize.fit on the fit rows ``R``: returns (mean, scale, W)."""
    n, d = R.shape
    mu = R.mean(axis=0) if center else np.zeros(d)
    sc = np.ones(d)
    if method.endswith("-cor"):
        sc = R.std(axis=0)
        if (sc == 0).any():
            raise InputError("spherize: some features are constant in the fit rows; run select_features first.")
    Z = (R - mu) / sc
    r = np.linalg.matrix_rank(Z)
    _, S, Vt = np.linalg.svd(Z, full_matrices=True)
    if n <= d:  # pad the missing singular values with the last non-zero one (as pycytominer)
        S = np.concatenate((S[:r], np.repeat(S[r - 1], d - r)))
    eps = epsilon * S[0] if relative else epsilon
    S = S + eps
    W = (Vt / S[:, None]).T * np.sqrt(n - 1)
    if method.startswith("ZCA"):
        W = W @ Vt
    return mu, sc, W


def spherize(samples, *, rep: str = C.profile, method: str = "ZCA", epsilon: float = 1e-6, relative: bool = False,
             by: str | Sequence[str] | None = None, controls: Any = C.control, center: bool = True,
             key_added: str | None = None, copy: bool = False):
    """Whitening fitted on the control wells (pycytominer ``normalize(method='spherize')``; with ``'PCA'`` and
    controls this is typical variation normalisation, TVN, Ando et al. 2017).

    method
        ``'ZCA'``, ``'PCA'``, ``'ZCA-cor'``, ``'PCA-cor'`` (pycytominer's Spherize, bit for bit up to BLAS).
    epsilon
        Added to the singular values of the centred fit rows before inverting (regularisation); with
        ``relative=True`` it is a fraction of the largest singular value (scale-free).
    by
        Fit separately per group (e.g. ``'batch'``); default one fit on all control rows.
    Features must be finite (run :func:`select_features` first).
    """
    if method not in ("ZCA", "PCA", "ZCA-cor", "PCA-cor"):
        raise InputError(f"method must be one of 'ZCA', 'PCA', 'ZCA-cor', 'PCA-cor', got {method!r}.")
    _check_epsilon(epsilon)
    samples, key, X, names = _prepare_finite(samples, rep, copy)
    fit = _mask(samples, controls, "control")
    out = np.empty_like(X)
    for ix in _groups(samples, by):
        R = X[ix[fit[ix]]]
        if R.shape[0] < 2:
            raise InputError(f"spherize needs at least 2 control rows per group, got {R.shape[0]} in rows "
                             f"{ix[:3].tolist()}...")
        mu, sc, W = _spherize_weights(R, method, epsilon, relative, center)
        out[ix] = ((X[ix] - mu) / sc) @ W
    new = names if method.startswith("ZCA") else [f"PC{i + 1}" for i in range(X.shape[1])]
    _put(samples, key, key_added, out, new, {"step": "spherize", "method": method, "epsilon": epsilon,
                                             "relative": relative, "by": by, "controls": str(controls)})
    return samples if copy else None


# ------------------------------------------------------------------------------------- feature selection

def _corr_exclude(X: np.ndarray, names: list[str], threshold: float) -> set[str]:
    """pycytominer's correlation_threshold: for every pair with Pearson r > threshold (signed), drop the
    feature with the larger sum of |r| over all features."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if np.isnan(X).any():
            R = pd.DataFrame(X, columns=names).corr().to_numpy()
        else:
            R = np.corrcoef(X, rowvar=False)
    total = pd.Series(np.nansum(np.abs(R), axis=0), index=names).sort_values()
    pos = pd.Series(np.arange(len(names)), index=total.index).reindex(names).to_numpy()
    a, b = np.nonzero(np.tril(R > threshold, k=-1))
    return {names[i] if pos[i] > pos[j] else names[j] for i, j in zip(a, b)}


def select_features(samples, *, rep: str = C.profile,
                    operations: Sequence[str] = ("missing", "variance", "correlation"),
                    na_cutoff: float = 0.05, min_variance: float = 1e-6, corr_threshold: float = 0.9,
                    rows: Any = None, key_added: str | None = None, copy: bool = False):
    """Drop uninformative features (pycytominer ``feature_select``); each operation is decided on all input
    features and the exclusions are pooled, as pycytominer does.

    operations
        ``'missing'``: more than ``na_cutoff`` of the rows are NaN/inf (``drop_na_columns``);
        ``'variance'``: population variance <= ``min_variance`` (``variance_threshold``);
        ``'correlation'``: one of every pair with Pearson r > ``corr_threshold`` (``correlation_threshold``).
    rows
        Rows the decisions are made on (as ``controls`` in :func:`normalize`; default all).
    """
    ops = [operations] if isinstance(operations, str) else list(operations)
    bad_ops = [o for o in ops if o not in ("missing", "variance", "correlation")]
    if bad_ops:
        raise InputError(f"unknown operations {bad_ops}; use 'missing', 'variance', 'correlation'.")
    samples = _prepare(samples, copy)
    key, X, names = _get(samples, rep)
    R = X[_mask(samples, rows, "fit")]
    R = np.where(np.isfinite(R), R, np.nan)
    excluded: set[str] = set()
    for op in ops:
        if op == "missing":
            excluded |= {names[j] for j in np.flatnonzero(np.isnan(R).mean(axis=0) > na_cutoff)}
        elif op == "variance":
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: dropped as missing anyway
                var = np.nanvar(R, axis=0)
            excluded |= {names[j] for j in np.flatnonzero(~(var > min_variance))}
        else:
            excluded |= _corr_exclude(R, names, corr_threshold)
    keep = [j for j, nm in enumerate(names) if nm not in excluded]
    if not keep:
        raise InputError("select_features removed every feature; loosen the thresholds.")
    logger.info("select_features: kept %d of %d features", len(keep), len(names))
    _put(samples, key, key_added, X[:, keep], [names[j] for j in keep],
         {"step": "select_features", "operations": ops, "na_cutoff": na_cutoff, "min_variance": min_variance,
          "corr_threshold": corr_threshold, "n_kept": len(keep), "n_in": len(names)})
    return samples if copy else None


# -------------------------------------------------------------------------------------------- consensus

def consensus(samples, *, by: Sequence[str] = (C.compound, C.concentration), method: str = "median",
              reps: Sequence[str] | None = None, rows: Any = None):
    """Treatment profiles: one row per ``by`` group (e.g. compound x concentration), the median or mean of its
    wells for every representation in ``reps`` (default all ``X_*`` in obsm).

    Returns a new samples AnnData whose obs holds the ``by`` columns, every column constant within each group,
    ``n_wells``, and ``batch`` joined with '|' when a group spans batches.  ``rows`` restricts the wells
    (e.g. ``'~is_control'``).
    """
    if method not in ("median", "mean"):
        raise InputError(f"method must be 'median' or 'mean', got {method!r}.")
    import anndata as ad

    cols = [by] if isinstance(by, str) else list(by)
    keep = _mask(samples, rows, "selected")
    sub = samples[keep]
    if sub.n_obs == 0:
        raise InputError("consensus: no rows selected.")
    missing = [c for c in cols if c not in sub.obs.columns]
    if missing:
        raise InputError(f"obs has no column(s) {missing} to form treatments.")
    reps = list(reps) if reps is not None else [k for k in sub.obsm if k.startswith("X_")]
    obs = sub.obs.reset_index(drop=True)
    g = obs.groupby(cols, observed=True, sort=True)
    groups = list(g.indices.values())
    first = obs.iloc[[ix[0] for ix in groups]].reset_index(drop=True)
    const = [c for c in obs.columns if c in cols or (g[c].nunique(dropna=False) <= 1).all()]
    out_obs = first[const].copy()
    if C.batch in obs.columns and C.batch not in const:
        out_obs[C.batch] = ["|".join(sorted(map(str, obs[C.batch].iloc[ix].unique()))) for ix in groups]
    out_obs[C.n_wells] = [len(ix) for ix in groups]
    out_obs.index = ["/".join(map(str, t)) for t in out_obs[cols].itertuples(index=False)]
    out = ad.AnnData(obs=out_obs)
    f = np.nanmedian if method == "median" else np.nanmean
    for r in reps:
        key, X, names = _get(sub, r)
        with np.errstate(invalid="ignore"), pd.option_context("mode.chained_assignment", None):
            Y = np.stack([f(X[ix], axis=0) if len(ix) > 1 else X[ix[0]] for ix in groups])
        rec = _copy.deepcopy(sub.uns.get(K.uns.representations, {}).get(key) or profile_record())
        _add_step(rec, {"step": "consensus", "by": cols, "method": method})
        set_representation(out, key, Y, names, rec)
    return out


# ------------------------------------------------------------------ replicate reproducibility (label-free)

def _icc1(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """One-way random-effects intraclass correlation ICC(1) of every column: the share of the variance that
    lies between groups, ``(MSB - MSW) / (MSB + (n0 - 1) MSW)`` with ``n0`` the usual size for unequal groups
    (NaN where a column is constant or not finite)."""
    codes, _ = pd.factorize(groups)
    k = codes.max() + 1
    n = codes.size
    cnt = np.bincount(codes, minlength=k).astype(np.float64)
    sums = np.zeros((k, X.shape[1]))
    np.add.at(sums, codes, X)
    means = sums / cnt[:, None]
    grand = X.mean(axis=0)
    ssw = ((X - means[codes]) ** 2).sum(axis=0)
    ssb = (cnt[:, None] * (means - grand) ** 2).sum(axis=0)
    msw = ssw / (n - k)
    msb = ssb / (k - 1)
    n0 = (n - (cnt ** 2).sum() / n) / (k - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        icc = (msb - msw) / (msb + (n0 - 1) * msw)
    icc[~np.isfinite(icc)] = np.nan
    return icc


def feature_reproducibility(samples, *, rep: str = C.profile, by: Sequence[str] = (C.compound, C.concentration),
                            rows: Any = f"~{C.control}") -> pd.Series:
    """How reproducible each feature is across replicate wells: ICC(1) of the feature over the groups ``by``
    (default compound x concentration; wells of groups with a single well are ignored).

    Label-free: only the replicate identity is used, never a mechanism.  1 = the replicate wells agree
    exactly and differ between treatments; 0 or below = no more alike than wells of different treatments.
    ``rows`` selects the wells (default the treated ones, ``'~is_control'``; a boolean obs column, a query
    on obs or a mask).  Returns a Series indexed by feature name (NaN for a feature that is constant or has
    missing values in those wells).
    """
    key, X, names = _get(samples, rep)
    cols = [by] if isinstance(by, str) else list(by)
    missing = [c for c in cols if c not in samples.obs.columns]
    if missing:
        raise InputError(f"obs has no column(s) {missing} naming the replicate groups.")
    m = _mask(samples, rows, "replicate")
    grp = samples.obs.loc[m, cols].astype(str).agg("\x1f".join, axis=1).to_numpy()
    sizes = pd.Series(grp).map(pd.Series(grp).value_counts()).to_numpy()
    keep = sizes >= 2
    if np.unique(grp[keep]).size < 2:
        raise InputError(f"feature_reproducibility needs at least 2 groups of {cols} with 2 or more wells each; "
                         "check by= and rows=.")
    Xm = X[m][keep]
    icc = np.full(X.shape[1], np.nan)
    finite = np.isfinite(Xm).all(axis=0)
    icc[finite] = _icc1(Xm[:, finite], grp[keep])
    return pd.Series(icc, index=names, name="icc")


def select_reproducible(samples, *, rep: str = C.profile, min_icc: float = 0.2,
                        by: Sequence[str] = (C.compound, C.concentration), rows: Any = f"~{C.control}",
                        key_added: str | None = None, copy: bool = False):
    """Keep the features that replicate wells reproduce: ICC(1) across the ``by`` groups (see
    :func:`feature_reproducibility`) above ``min_icc``.  A label-free feature selection (replicate identity
    only); the per-feature ICCs are kept in the step's parameters (``'icc'``, in input-feature order)."""
    if not (-1.0 <= float(min_icc) < 1.0):
        raise InputError(f"min_icc must be in [-1, 1), got {min_icc!r}.")
    samples = _prepare(samples, copy)
    key, X, names = _get(samples, rep)
    icc = feature_reproducibility(samples, rep=rep, by=by, rows=rows).to_numpy()
    keep = np.flatnonzero(np.nan_to_num(icc, nan=-np.inf) > min_icc)
    if keep.size == 0:
        raise InputError(f"no feature has ICC above {min_icc} (max {np.nanmax(icc):.3f}); lower min_icc.")
    logger.info("select_reproducible: kept %d of %d features (ICC > %g)", keep.size, len(names), min_icc)
    _put(samples, key, key_added, X[:, keep], [names[j] for j in keep],
         {"step": "select_reproducible", "min_icc": float(min_icc), "by": [by] if isinstance(by, str) else list(by),
          "rows": str(rows), "n_kept": int(keep.size), "n_in": len(names), "icc": np.nan_to_num(icc, nan=-9.0)})
    return samples if copy else None


def weight_reproducible(samples, *, rep: str = C.profile, power: float = 1.0,
                        by: Sequence[str] = (C.compound, C.concentration), rows: Any = f"~{C.control}",
                        key_added: str | None = None, copy: bool = False):
    """Weight every feature by how reproducible it is: column ``j`` is multiplied by ``max(ICC_j, 0) ** power``
    (ICC(1) across the replicate groups ``by``, see :func:`feature_reproducibility`); features with ICC <= 0 or
    NaN get weight 0 and are dropped.  A soft form of :func:`select_reproducible` (label-free: replicate
    identity only).  Use it last: a later rank transform or whitening undoes the weights.  The ICCs and
    weights of the kept features are kept in the step's parameters."""
    if not np.isfinite(power) or power < 0:
        raise InputError(f"power must be a finite number >= 0, got {power!r}.")
    samples = _prepare(samples, copy)
    key, X, names = _get(samples, rep)
    icc = feature_reproducibility(samples, rep=rep, by=by, rows=rows).to_numpy()
    keep = np.flatnonzero(np.nan_to_num(icc, nan=-np.inf) > 0)
    if keep.size == 0:
        raise InputError(f"no feature has ICC above 0 (max {np.nanmax(icc) if np.isfinite(icc).any() else np.nan}); "
                         "the replicate wells do not agree on any feature.")
    w = icc[keep] ** float(power)
    logger.info("weight_reproducible: %d of %d features with ICC > 0", keep.size, len(names))
    _put(samples, key, key_added, X[:, keep] * w[None, :], [names[j] for j in keep],
         {"step": "weight_reproducible", "power": float(power), "by": [by] if isinstance(by, str) else list(by),
          "rows": str(rows), "n_kept": int(keep.size), "n_in": len(names), "icc": icc[keep], "weights": w})
    return samples if copy else None


# ------------------------------------------------------------------------------ rank / inverse-normal

def rank_transform(samples, *, rep: str = C.profile, method: str = "inverse_normal",
                   by: str | Sequence[str] | None = C.plate, key_added: str | None = None, copy: bool = False):
    """Per-feature rank transform within each group ``by`` (default per plate; ``None`` = all wells).

    method
        ``'inverse_normal'``: ``Phi^-1((r - 1/2) / n)`` of the average-tie rank ``r`` among the ``n`` finite
        values of the group (rank-based inverse normal transform); ``'uniform'``: ``(r - 1/2) / n - 1/2``.
    NaNs stay NaN and are not ranked.  Robust to outliers and monotone feature scales; no control wells needed.
    """
    if method not in ("inverse_normal", "uniform"):
        raise InputError(f"method must be 'inverse_normal' or 'uniform', got {method!r}.")
    from scipy.stats import norm, rankdata

    samples = _prepare(samples, copy)
    key, X, names = _get(samples, rep)
    out = np.full_like(X, np.nan)
    for ix in _groups(samples, by):
        B = np.where(np.isfinite(X[ix]), X[ix], np.nan)
        r = rankdata(B, axis=0, nan_policy="omit")
        cnt = np.isfinite(B).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            u = (r - 0.5) / cnt
        out[ix] = norm.ppf(u) if method == "inverse_normal" else u - 0.5
    _put(samples, key, key_added, out, names, {"step": "rank_transform", "method": method, "by": by})
    return samples if copy else None


# ----------------------------------------------------------------------------------- factor analysis

def factor_analysis(samples, *, rep: str = C.profile, n_components: int = 50, controls: Any = C.control,
                    seed: int | None = None, max_iter: int = 1000, key_added: str | None = None, copy: bool = False):
    """Factor analysis of the profiles (Ljosa et al. 2013's route): scikit-learn's ``FactorAnalysis`` fitted
    on the ``controls`` rows (default the control wells; ``None`` = all rows), every row replaced by its
    ``n_components`` factor scores (columns ``F1..Fk``).  Features must be finite (run
    :func:`select_features` first).  ``seed`` defaults to ``tg.settings.seed``.
    """
    from sklearn.decomposition import FactorAnalysis

    from .._settings import settings

    samples, key, X, names = _prepare_finite(samples, rep, copy)
    fit = _mask(samples, controls, "fit")
    n_fit = int(fit.sum())
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or \
            not 1 <= n_components <= min(n_fit, X.shape[1]):
        raise InputError(f"n_components must be an integer in [1, min(fit rows, features) = "
                         f"{min(n_fit, X.shape[1])}], got {n_components!r}.")
    seed = settings.seed if seed is None else seed
    fa = FactorAnalysis(n_components=int(n_components), random_state=seed, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning is reported below
        fa.fit(X[fit])
    if fa.n_iter_ >= max_iter:
        logger.warning("factor_analysis: not converged after %d iterations; raise max_iter.", max_iter)
    out = fa.transform(X)
    _put(samples, key, key_added, out, [f"F{i + 1}" for i in range(out.shape[1])],
         {"step": "factor_analysis", "n_components": int(n_components), "controls": str(controls), "seed": seed,
          "n_iter": int(fa.n_iter_), "n_fit_rows": n_fit})
    return samples if copy else None


# -------------------------------------------------------------------------- CORAL batch alignment

def _sym_power(C: np.ndarray, power: float, epsilon: float, relative: bool) -> np.ndarray:
    w, V = np.linalg.eigh((C + C.T) / 2)
    w = np.maximum(w, 0.0)
    w = w + (epsilon * w.max() if relative else epsilon)
    if (w <= 0).any():
        raise InputError("coral: a control covariance is singular and epsilon is 0; use epsilon > 0.")
    return (V * w ** power) @ V.T


def coral(samples, *, rep: str = C.profile, by: str | Sequence[str] = C.batch, controls: Any = C.control,
          epsilon: float = 0.1, relative: bool = True, key_added: str | None = None, copy: bool = False):
    """Align every group's profiles to the pooled controls using the controls only (CORAL, Sun et al. 2016):
    ``x' = (x - m_g) C_g^{-1/2} C^{1/2} + m`` where ``m_g, C_g`` are the mean and covariance of group ``g``'s
    control wells (default: per batch) and ``m, C`` those of all control wells.  After it every group's
    controls have the pooled mean and (with ``epsilon=0``) the pooled covariance; treatments are moved by the
    same map.  ``epsilon`` is added to the eigenvalues of each covariance (relative to its largest when
    ``relative``) so that groups with fewer controls than features stay invertible.
    """
    _check_epsilon(epsilon)
    samples, key, X, names = _prepare_finite(samples, rep, copy)
    fit = _mask(samples, controls, "control")
    if fit.sum() < 2:
        raise InputError("coral needs at least 2 control rows.")
    R = X[fit]
    m = R.mean(axis=0)
    target = _sym_power(np.atleast_2d(np.cov(R, rowvar=False)), 0.5, epsilon, relative)
    out = np.empty_like(X)
    for ix in _groups(samples, by):
        Rg = X[ix[fit[ix]]]
        if Rg.shape[0] < 2:
            raise InputError(f"coral needs at least 2 control rows per group of by={by!r}, got {Rg.shape[0]} in rows "
                             f"{ix[:3].tolist()}...")
        cg = np.atleast_2d(np.cov(Rg, rowvar=False))
        out[ix] = (X[ix] - Rg.mean(axis=0)) @ _sym_power(cg, -0.5, epsilon, relative) @ target + m
    _put(samples, key, key_added, out, names, {"step": "coral", "by": by, "controls": str(controls),
                                               "epsilon": epsilon, "relative": relative})
    return samples if copy else None
