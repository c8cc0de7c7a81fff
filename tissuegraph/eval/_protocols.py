"""Evaluation protocols on one train/test split: pure functions on arrays (scikit-learn, scanpy).

Each ``*_split`` function returns a list of ``(protocol, metric, value)`` triples for one split.
Representations arrive as float arrays; missing values are imputed *inside* the training pipeline
(median of the training rows) and every protocol standardises the columns with the training rows'
mean and standard deviation when ``standardize`` is on, so that a baseline made of descriptors in
different units (µm, counts, fractions) is compared on the same footing as a network embedding.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._logging import logger

__all__ = ["classification_split", "regression_split", "retrieval_split", "clustering_split",
           "auroc_ovr_macro", "binary_auroc", "macro_f1", "balanced_accuracy", "pearson_columns", "HEADLINE"]

# protocol -> metrics used for baseline gaps, verdicts and metric-disagreement checks
HEADLINE = {
    "linear_probe": ("macro_f1", "balanced_accuracy", "auroc"),
    "knn": ("macro_f1", "balanced_accuracy", "auroc"),
    "hest_ridge": ("pearson_r",),
    "retrieval": ("mAP",),
    "leiden": ("ARI", "NMI"),
}


def _prep_steps(has_nan: bool, standardize: bool) -> list:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    steps = []
    if has_nan:
        steps.append(("impute", SimpleImputer(strategy="median", keep_empty_features=True)))
    if standardize:
        steps.append(("scale", StandardScaler()))
    return steps


def binary_auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve from the Mann-Whitney statistic (ties count one half, as scikit-learn's
    ``roc_auc_score``); NaN unless both classes are present."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)  # average ranks for ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc_ovr_macro(y_true: np.ndarray, proba: np.ndarray) -> float:
    """One-vs-rest macro AUROC over the classes present in ``y_true`` (codes 0..K-1, ``proba`` (n, K)).

    Equal to ``sklearn.metrics.roc_auc_score(..., multi_class='ovr', average='macro')`` when every
    class is present; classes absent from the test fold are left out (their AUROC is undefined), and a
    class the model never saw in training has score 0 everywhere (AUROC 0.5, not a free pass).
    NaN when the test fold holds a single class.
    """
    present = np.unique(y_true)
    if len(present) < 2:
        return float("nan")
    if len(present) == 2 and proba.shape[1] == 2:
        return binary_auroc(y_true == present[1], proba[:, present[1]])
    return float(np.mean([binary_auroc(y_true == c, proba[:, c]) for c in present]))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro F1 over the classes in ``y_true`` or ``y_pred`` (scikit-learn's default labels,
    ``zero_division=0``)."""
    labels = np.union1d(y_true, y_pred)
    t = np.searchsorted(labels, y_true)
    p = np.searchsorted(labels, y_pred)
    k = len(labels)
    tp = np.bincount(t[t == p], minlength=k).astype(np.float64)
    n_true = np.bincount(t, minlength=k)
    n_pred = np.bincount(p, minlength=k)
    den = n_true + n_pred
    f1 = np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)
    return float(f1.mean())


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (scikit-learn's ``balanced_accuracy_score``)."""
    labels, t = np.unique(y_true, return_inverse=True)
    hit = (y_true == y_pred)
    recall = np.bincount(t, weights=hit, minlength=len(labels)) / np.bincount(t, minlength=len(labels))
    return float(recall.mean())


def _class_metrics(y_te: np.ndarray, pred: np.ndarray, proba: np.ndarray) -> list[tuple[str, float]]:
    # numpy versions of the scikit-learn metrics (tests check equality): scikit-learn's input
    # validation costs more than the metric itself when called thousands of times
    return [("macro_f1", macro_f1(y_te, pred)), ("balanced_accuracy", balanced_accuracy(y_te, pred)),
            ("auroc", auroc_ovr_macro(y_te, proba))]


def _full_proba(model, X, n_classes: int) -> np.ndarray:
    p = model.predict_proba(X)
    out = np.zeros((len(X), n_classes))
    out[:, np.asarray(model.classes_, dtype=int)] = p
    return out


def classification_split(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, *, n_classes: int,
                         has_nan: bool, standardize: bool = True, knn_k: int = 20, C: float = 1.0,
                         max_iter: int = 1000, protocols=("linear_probe", "knn")) -> list[tuple[str, str, float]]:
    """Linear probe (standardised logistic regression) and cosine kNN on one split.

    ``y`` holds class codes 0..n_classes-1. Returns NaN metrics (and logs) when the training data hold
    a single class.
    """
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline

    from ._similarity import KNN_WORKING_MEMORY_MB

    y_tr, y_te = y[train], y[test]
    out: list[tuple[str, str, float]] = []
    if len(np.unique(y_tr)) < 2:
        logger.warning("A training fold holds a single class; its classification metrics are NaN.")
        for proto in protocols:
            out += [(proto, m, float("nan")) for m in HEADLINE[proto]]
        return out
    for proto in protocols:
        if proto == "linear_probe":
            est = LogisticRegression(C=C, max_iter=max_iter)
        elif proto == "knn":
            # brute force with the cosine metric: sklearn computes the distances in bounded chunks
            est = KNeighborsClassifier(n_neighbors=min(knn_k, len(train)), metric="cosine", algorithm="brute")
        else:  # pragma: no cover - guarded by the caller
            raise ValueError(proto)
        model = Pipeline(_prep_steps(has_nan, standardize) + [("est", est)])
        with warnings.catch_warnings(), sklearn.config_context(working_memory=KNN_WORKING_MEMORY_MB):
            warnings.simplefilter("ignore", category=UserWarning)
            from sklearn.exceptions import ConvergenceWarning

            warnings.simplefilter("ignore", category=ConvergenceWarning)
            model.fit(X[train], y_tr)
            proba = _full_proba(model, X[test], n_classes)  # kNN: distances in bounded chunks
        pred = np.asarray(model.classes_, dtype=int)[np.argmax(proba[:, model.classes_], axis=1)]
        out += [(proto, m, v) for m, v in _class_metrics(y_te, pred, proba)]
    return out


def pearson_columns(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of ``Y`` and ``P`` (NaN for a constant column)."""
    Yc = Y - Y.mean(axis=0)
    Pc = P - P.mean(axis=0)
    num = (Yc * Pc).sum(axis=0)
    den = np.sqrt((Yc * Yc).sum(axis=0) * (Pc * Pc).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    r[~(den > 0)] = np.nan
    return r


HEST_COMPONENTS = 256  # the HEST-Benchmark's PCA width before the ridge


def regression_split(X: np.ndarray, Y: np.ndarray, train: np.ndarray, test: np.ndarray, *, target_names,
                     has_nan: bool, seed: int, n_components: int = HEST_COMPONENTS) -> list[tuple[str, str, float]]:
    """The HEST-Benchmark protocol on one split.

    As in HEST (``hest/bench/benchmark.py`` and ``trainer.py``): standardise, PCA to
    ``n_components`` (256) fitted on the training rows, then ``Ridge(solver='lsqr', fit_intercept=False,
    alpha=100 / (n_components * n_targets))``; Pearson r per target on the test rows and their mean.
    (PCA centres the inputs, so the missing intercept does not change the slopes or the correlations.)
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline

    k = int(min(n_components, len(train), X.shape[1]))
    pre = Pipeline(_prep_steps(has_nan, True) + [("pca", PCA(n_components=k, random_state=seed))])
    Z_tr = pre.fit_transform(X[train])
    Z_te = pre.transform(X[test])
    n_t = Y.shape[1]
    reg = Ridge(solver="lsqr", alpha=100.0 / (Z_tr.shape[1] * n_t), fit_intercept=False, max_iter=1000,
                random_state=seed)
    reg.fit(Z_tr, Y[train])
    P = reg.predict(Z_te).reshape(len(test), n_t)
    r = pearson_columns(Y[test], P)
    n_const = int(np.isnan(r).sum())
    if n_const:
        logger.debug("%d target(s) constant in a test fold: Pearson r undefined (left out of the mean).", n_const)
    out = [("hest_ridge", "pearson_r", float(np.nanmean(r)) if np.isfinite(r).any() else float("nan"))]
    if n_t > 1:
        out += [("hest_ridge", f"pearson_r:{name}", float(v)) for name, v in zip(target_names, r)]
    return out


def retrieval_split(Xs: np.ndarray, y: np.ndarray, test: np.ndarray, *, metric: str = "cosine"
                    ) -> list[tuple[str, str, float]]:
    """Mean average precision of same-label neighbours among the test samples (the retrieval kernel).

    ``Xs`` is the prepared (imputed, standardised) representation. Each test sample queries the other
    test samples; queries without a same-label partner are left out of the mean.
    """
    from ._retrieval import average_precision

    ap = average_precision(Xs[test], y[test], metric=metric)
    ap = np.asarray(ap, dtype=np.float64)
    val = float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")
    return [("retrieval", "mAP", val)]


def clustering_split(Xs: np.ndarray, y: np.ndarray, test: np.ndarray, *, seed: int, n_neighbors: int = 15,
                     resolution: float = 1.0) -> list[tuple[str, str, float]]:
    """ARI and NMI of Leiden clusters of the test samples against their labels (scanpy).

    ``sc.pp.neighbors`` (cosine, ``n_neighbors``) on the prepared representation, then
    ``sc.tl.leiden(flavor='igraph', n_iterations=2, resolution=resolution, random_state=seed)``.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from .._compat import before_tensorflow

    before_tensorflow()  # scanpy can pull in tensorflow; triton must come first (issue 15)
    import anndata as ad
    import scanpy as sc

    a = ad.AnnData(np.zeros((len(test), 0), dtype=np.float32))
    a.obsm["X_rep"] = np.ascontiguousarray(Xs[test], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.neighbors(a, use_rep="X_rep", n_neighbors=min(n_neighbors, len(test) - 1), metric="cosine",
                        random_state=seed)
        sc.tl.leiden(a, flavor="igraph", n_iterations=2, resolution=resolution, random_state=seed,
                     key_added="cluster")
    cl = a.obs["cluster"].to_numpy()
    yt = y[test]
    return [("leiden", "ARI", float(adjusted_rand_score(yt, cl))),
            ("leiden", "NMI", float(normalized_mutual_info_score(yt, cl)))]
