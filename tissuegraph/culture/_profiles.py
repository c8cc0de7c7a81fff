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

__all__ = ["aggregate", "normalize", "spherize", "select_features", "consensus"]

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
    if not np.isfinite(epsilon) or epsilon < 0:
        raise InputError(f"epsilon must be a finite number >= 0, got {epsilon!r}.")
    samples = _prepare(samples, copy)
    key, X, names = _get(samples, rep)
    if not np.isfinite(X).all():
        raise InputError(f"obsm[{key!r}] has NaN/inf values; run tg.culture.select_features first.")
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
