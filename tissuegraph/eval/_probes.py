"""Shortcut, confound and biological probes: what else a representation predicts besides the label.

A probe predicts one quantity from a representation with cross-validation:

- categorical quantities (slide, batch, plate, patient, the label itself): standardised logistic
  regression, stratified (ungrouped: the question is whether the *seen* slides can be told apart)
  K-fold, scored by chance-adjusted balanced accuracy (0 = chance, 1 = perfect, so a 2-class label and a
  20-slide column are on one scale);
- continuous quantities (colour, nucleus count, density, nuclear size, composition, glands): standardised
  ridge regression (``RidgeCV``), K-fold grouped like the evaluation when a group column is given,
  scored by the out-of-fold R² (averaged over the columns of a multi-column quantity).

A representation is flagged as encoding a shortcut when it predicts a confound column (slide, batch,
...) with a chance-adjusted balanced accuracy of at least 0.1 and more than 0.05 above the label's
(both at chance is not a finding).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import _keys as K
from .._errors import InputError
from .._logging import logger

__all__ = ["probe_targets", "categorical_probe", "continuous_probe"]

# a representation is flagged when it predicts a confound column clearly above chance (chance-adjusted
# balanced accuracy >= CONFOUND_MIN) and by more than CONFOUND_MARGIN better than the label
CONFOUND_MIN = 0.1
CONFOUND_MARGIN = 0.05
_CONFOUND_COLUMNS = ("slide", "batch", "plate", "patient", "scanner", "site", "center", "centre", "donor")
_COLOUR_OBS = ("mean_r", "mean_g", "mean_b", "mean_od", "stain_h", "stain_e", "mean_rgb_r", "mean_rgb_g",
               "mean_rgb_b")
_INTENSITY_OBS = ("mean_intensity", "intensity_mean")


def _names(samples, key: str) -> list[str] | None:
    names = samples.uns.get(K.uns.feature_names(key))
    return None if names is None else [str(x) for x in np.asarray(names).ravel()]


def _resolve_spec(samples, spec) -> tuple[np.ndarray, list[str]]:
    """A target spec -> (n, t) float matrix. Spec: obs column, ``'X_key'`` (all columns),
    ``'X_key:col'`` (a named column), or a list of those."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    cols, names = [], []
    for s in specs:
        s = str(s)
        if s in samples.obs.columns:
            v = pd.to_numeric(samples.obs[s], errors="coerce").to_numpy(dtype=np.float64)
            cols.append(v[:, None])
            names.append(s)
            continue
        key, _, col = s.partition(":")
        if key in samples.obsm:
            M = samples.obsm[key]
            M = M.toarray() if hasattr(M, "toarray") else np.asarray(M)
            M = np.asarray(M, dtype=np.float64).reshape(samples.n_obs, -1)
            nm = _names(samples, key) or [f"{key}[{j}]" for j in range(M.shape[1])]
            if col:
                if col not in nm:
                    raise InputError(f"Probe target {s!r}: column {col!r} is not in uns['{K.uns.feature_names(key)}'].")
                j = nm.index(col)
                cols.append(M[:, [j]])
                names.append(col)
            else:
                cols.append(M)
                names += nm
            continue
        raise InputError(f"Probe target {s!r} is neither a samples.obs column nor an obsm key (available obs "
                         f"columns: {list(samples.obs.columns)[:20]}, obsm: {sorted(samples.obsm.keys())}).")
    return np.concatenate(cols, axis=1), names


def probe_targets(samples, *, label_key: str | None, group_key: str | None, probes: Mapping | None,
                  confounds: Mapping | Sequence | None, baseline: str | None = "X_structural"):
    """The quantities to probe: ``(categorical, continuous)``.

    ``categorical``: list of ``(name, codes)`` (``-1`` = missing); ``continuous``: list of
    ``(name, kind, matrix)``. User mappings ``probes`` (biological) and ``confounds`` (shortcut) map a
    display name to a spec (obs column, ``'X_key'``, ``'X_key:column'`` or a list); a confound given as
    a plain list of obs columns is categorical. Defaults (when ``None``): categorical confounds among the
    obs columns slide/batch/plate/patient/... and the group column; stain colour from ``X_color`` (all
    columns) or obs colour columns; nucleus count from ``obs['n_cells']`` or the baseline's ``n_cells``;
    mean intensity from obs or the baseline's nuclear ``red/green/blue_mean__mean``; biological: cell-type
    composition (baseline ``type_frac__*``), mean nuclear size (``area_um2__mean``), density
    (``density_per_mm2``) and obs columns whose name contains ``gland``.
    """
    n = samples.n_obs
    categorical: list[tuple[str, np.ndarray]] = []
    continuous: list[tuple[str, str, np.ndarray]] = []
    base_names = _names(samples, baseline) if baseline and baseline in samples.obsm else None

    def base_cols(cols: Sequence[str]) -> np.ndarray | None:
        if base_names is None:
            return None
        idx = [base_names.index(c) for c in cols if c in base_names]
        if not idx:
            return None
        M = np.asarray(samples.obsm[baseline], dtype=np.float64)
        return M[:, idx]

    def add_categorical(col: str) -> None:
        if col == label_key or any(c[0] == col for c in categorical):
            return
        s = samples.obs[col]
        codes = pd.Categorical(s.astype("object").where(s.notna(), None)).codes.astype(np.int64)
        n_lev = len(np.unique(codes[codes >= 0]))
        if 2 <= n_lev <= max(2, n // 2):
            categorical.append((col, codes))

    # --- shortcuts / confounds -----------------------------------------------------------------------
    if confounds is None:
        for col in [group_key, *_CONFOUND_COLUMNS]:
            if col is not None and col in samples.obs.columns:
                add_categorical(col)
        colour = None
        if "X_color" in samples.obsm:
            colour = _resolve_spec(samples, "X_color")[0]
        else:
            have = [c for c in _COLOUR_OBS if c in samples.obs.columns]
            if have:
                colour = _resolve_spec(samples, have)[0]
        if colour is not None:
            continuous.append(("stain colour", "shortcut", colour))
        if K.obs.n_cells in samples.obs.columns:
            continuous.append(("nucleus count", "shortcut", _resolve_spec(samples, K.obs.n_cells)[0]))
        elif (m := base_cols([K.obs.n_cells])) is not None:
            continuous.append(("nucleus count", "shortcut", m))
        have = [c for c in _INTENSITY_OBS if c in samples.obs.columns]
        if have:
            continuous.append(("mean intensity", "shortcut", _resolve_spec(samples, have[0])[0]))
        elif (m := base_cols(["red_mean__mean", "green_mean__mean", "blue_mean__mean"])) is not None:
            continuous.append(("mean intensity", "shortcut", m.mean(axis=1, keepdims=True)))
    elif isinstance(confounds, Mapping):
        for name, spec in confounds.items():
            if isinstance(spec, str) and spec in samples.obs.columns and not pd.api.types.is_numeric_dtype(
                    samples.obs[spec]):
                add_categorical(spec)
            else:
                continuous.append((str(name), "shortcut", _resolve_spec(samples, spec)[0]))
    else:
        for col in confounds:
            if col not in samples.obs.columns:
                raise InputError(f"confound column {col!r} is not in samples.obs.")
            add_categorical(col)

    # --- biological ------------------------------------------------------------------------------------
    if probes is None:
        if base_names is not None:
            comp = [c for c in base_names if c.startswith("type_frac__")]
            if comp:
                continuous.append(("cell-type composition", "biological", base_cols(comp)))
            for label, col in (("mean nuclear size", "area_um2__mean"), ("density", "density_per_mm2")):
                if (m := base_cols([col])) is not None:
                    continuous.append((label, "biological", m))
        gl = [c for c in samples.obs.columns if "gland" in str(c).lower()
              and pd.api.types.is_numeric_dtype(samples.obs[c])]
        if gl:
            continuous.append(("gland structure", "biological", _resolve_spec(samples, gl)[0]))
    else:
        for name, spec in probes.items():
            continuous.append((str(name), "biological", _resolve_spec(samples, spec)[0]))
    return categorical, continuous


def _pipe(has_nan: bool, est):
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))] if has_nan else []
    return Pipeline(steps + [("scale", StandardScaler()), ("est", est)])


def categorical_probe(X: np.ndarray, codes: np.ndarray, *, has_nan: bool = False, n_splits: int = 5,
                      seed: int = 0) -> float:
    """Chance-adjusted balanced accuracy of predicting ``codes`` (``-1`` = missing) from ``X``.

    Stratified (ungrouped) K-fold, standardised logistic regression, out-of-fold predictions pooled.
    Levels with fewer than ``n_splits`` samples are left out. NaN when fewer than 2 levels remain.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    ok = codes >= 0
    lev, cnt = np.unique(codes[ok], return_counts=True)
    keep_lev = lev[cnt >= n_splits]
    ok &= np.isin(codes, keep_lev)
    if len(keep_lev) < 2:
        return float("nan")
    y = codes[ok]
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = cross_val_predict(_pipe(has_nan, LogisticRegression(max_iter=1000)), X[ok], y, cv=cv)
        return float(balanced_accuracy_score(y, pred, adjusted=True))


def continuous_probe(X: np.ndarray, Y: np.ndarray, *, has_nan: bool = False, groups=None, n_splits: int = 5,
                     seed: int = 0) -> float:
    """Out-of-fold R² of predicting ``Y`` (n, t) from ``X`` by standardised ridge (``RidgeCV``).

    Rows with a missing target are left out; R² is averaged over the target columns that vary. K-fold
    (grouped by ``groups`` when given and there are enough groups), shuffled with ``seed``.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GroupKFold, KFold, cross_val_predict

    Y = np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
    ok = np.isfinite(Y).all(axis=1)
    Y = Y[ok]
    var = Y.var(axis=0) > 1e-12 * np.maximum(1.0, np.abs(Y).mean(axis=0)) ** 2 if len(Y) else np.array([])
    if ok.sum() < 2 * n_splits or not var.any():
        return float("nan")
    Y = Y[:, var]
    Xo = X[ok]
    est = _pipe(has_nan, RidgeCV(alphas=np.logspace(-3, 4, 15)))
    if groups is not None and len(np.unique(np.asarray(groups)[ok])) >= n_splits:
        cv = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        split_groups = np.asarray(groups)[ok]
    else:
        cv = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
        split_groups = None
    # standardise the targets so the ridge penalty treats every column alike
    mu, sd = Y.mean(axis=0), Y.std(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P = cross_val_predict(est, Xo, (Y - mu) / sd, cv=cv, groups=split_groups)
    return float(r2_score((Y - mu) / sd, P.reshape(len(Y), -1), multioutput="uniform_average"))


def run_probes(samples, arrays: Mapping[str, tuple[np.ndarray, bool]], *, label_key: str, label_codes,
               group_key: str | None, probes, confounds, baseline, n_splits: int, seed: int,
               progress_fn=None) -> tuple[pd.DataFrame, list[str]]:
    """Every probe for every representation; returns the probes table and the confound flags."""
    categorical, continuous = probe_targets(samples, label_key=label_key, group_key=group_key, probes=probes,
                                            confounds=confounds, baseline=baseline)
    groups = None
    if group_key is not None:
        groups = pd.Categorical(samples.obs[group_key].astype(str)).codes
    rows = []
    flags = []
    items = list(arrays.items())
    it = progress_fn(items, total=len(items), desc="probes") if progress_fn else items
    for rep, (X, has_nan) in it:
        label_score = float("nan")
        if label_codes is not None:
            label_score = categorical_probe(X, label_codes, has_nan=has_nan, n_splits=n_splits, seed=seed)
            rows.append((rep, label_key, "label", "adjusted_balanced_accuracy", label_score))
        for name, codes in categorical:
            v = categorical_probe(X, codes, has_nan=has_nan, n_splits=n_splits, seed=seed)
            rows.append((rep, name, "shortcut", "adjusted_balanced_accuracy", v))
            if np.isfinite(v) and np.isfinite(label_score) and v >= CONFOUND_MIN and v > label_score + CONFOUND_MARGIN:
                flags.append(f"{rep} predicts {name!r} better than the label {label_key!r} (chance-adjusted balanced "
                             f"accuracy {v:.2f} vs {label_score:.2f}): it encodes a shortcut/confound.")
        for name, kind, Y in continuous:
            v = continuous_probe(X, Y, has_nan=has_nan, groups=groups, n_splits=n_splits, seed=seed)
            rows.append((rep, name, kind, "R2", v))
    if not categorical and not continuous:
        logger.info("probes: no confound or biological quantity found in samples.obs / the baseline's columns.")
    table = pd.DataFrame(rows, columns=["representation", "target", "kind", "metric", "value"])
    return table, flags
