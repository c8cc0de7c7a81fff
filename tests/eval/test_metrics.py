"""Each metric against scikit-learn / scipy / hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, roc_auc_score

from tissuegraph.eval._protocols import (auroc_ovr_macro, balanced_accuracy, binary_auroc, classification_split,
                                         macro_f1, pearson_columns, regression_split, retrieval_split)


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    k = 4
    y = rng.integers(0, k, 60)
    pred = np.where(rng.random(60) < 0.6, y, rng.integers(0, k, 60))
    if seed == 1:
        pred[pred == 3] = 2  # a class never predicted
    if seed == 2:
        y[y == 3] = 0  # a class predicted but absent from y_true
    assert macro_f1(y, pred) == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = balanced_accuracy_score(y, pred)
    assert balanced_accuracy(y, pred) == pytest.approx(ref)
    proba = rng.dirichlet(np.ones(k), 60)
    proba[:5] = proba[5]  # ties
    present = np.unique(y)
    if len(present) == k:
        ref = roc_auc_score(y, proba, multi_class="ovr", average="macro")
    else:
        ref = np.mean([roc_auc_score(y == c, proba[:, c]) for c in present])
    assert auroc_ovr_macro(y, proba) == pytest.approx(ref)


def test_binary_auroc_hand_worked_and_ties():
    # positives score 0.9, 0.4; negatives 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) -> 3/4
    assert binary_auroc(np.array([1, 1, 0, 0], bool), np.array([0.9, 0.4, 0.5, 0.1])) == 0.75
    # a tie counts one half
    assert binary_auroc(np.array([1, 0], bool), np.array([0.3, 0.3])) == 0.5
    assert np.isnan(binary_auroc(np.array([1, 1], bool), np.array([0.3, 0.2])))
    rng = np.random.default_rng(0)
    pos = rng.random(50) < 0.3
    s = np.round(rng.random(50), 1)  # many ties
    assert binary_auroc(pos, s) == pytest.approx(roc_auc_score(pos, s))
    # binary case of the macro function equals sklearn's binary AUROC
    y = rng.integers(0, 2, 40)
    p1 = rng.random(40)
    assert auroc_ovr_macro(y, np.c_[1 - p1, p1]) == pytest.approx(roc_auc_score(y, p1))
    assert np.isnan(auroc_ovr_macro(np.zeros(5, int), np.c_[np.ones(5), np.zeros(5)]))


def test_linear_probe_and_knn_match_sklearn_pipelines():
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 150)
    X = np.eye(3)[y] + rng.normal(0, 1.0, (150, 3))
    X = np.c_[X, rng.normal(size=(150, 5))] * rng.uniform(0.1, 10, 8)
    tr, te = np.arange(100), np.arange(100, 150)
    got = {(p, m): v for p, m, v in classification_split(X, y, tr, te, n_classes=3, has_nan=False, knn_k=7)}
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X[tr], y[tr])
    kn = make_pipeline(StandardScaler(), KNeighborsClassifier(7, metric="cosine", algorithm="brute")).fit(X[tr], y[tr])
    for name, model in (("linear_probe", lr), ("knn", kn)):
        pred = model.predict(X[te])
        assert got[(name, "macro_f1")] == pytest.approx(f1_score(y[te], pred, average="macro"))
        assert got[(name, "balanced_accuracy")] == pytest.approx(balanced_accuracy_score(y[te], pred))
        assert got[(name, "auroc")] == pytest.approx(roc_auc_score(y[te], model.predict_proba(X[te]),
                                                                   multi_class="ovr"))


def test_class_missing_from_training_scores_as_never_predicted():
    rng = np.random.default_rng(4)
    y = np.r_[rng.integers(0, 2, 80), np.full(20, 2)]
    X = np.eye(3)[y] * 3 + rng.normal(size=(100, 3))
    tr, te = np.arange(60), np.arange(60, 100)  # class 2 only in test
    got = {(p, m): v for p, m, v in classification_split(X, y, tr, te, n_classes=3, has_nan=False)}
    # class 2 has recall 0: balanced accuracy <= 2/3
    assert got[("linear_probe", "balanced_accuracy")] <= 2 / 3 + 1e-12
    # its AUROC is 0.5 (constant score), averaged in
    assert 0.5 < got[("linear_probe", "auroc")] < 1.0


def test_pearson_columns_equal_scipy():
    rng = np.random.default_rng(5)
    Y = rng.normal(size=(30, 4))
    P = Y + rng.normal(size=(30, 4))
    r = pearson_columns(Y, P)
    for j in range(4):
        assert r[j] == pytest.approx(pearsonr(Y[:, j], P[:, j]).statistic)
    Y[:, 2] = 1.0
    assert np.isnan(pearson_columns(Y, P)[2])


def test_hest_regression_protocol_equals_the_hest_recipe():
    """StandardScaler -> PCA(256) fitted on train -> Ridge(lsqr, alpha=100/(k*t), no intercept)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(6)
    n, d, t = 400, 300, 5
    X = rng.normal(size=(n, d))
    Y = X[:, :t] * 2 + rng.normal(size=(n, t)) + 5.0  # non-centred targets, as log1p counts are
    tr, te = np.arange(300), np.arange(300, 400)
    got = dict((m, v) for _, m, v in regression_split(X, Y, tr, te, target_names=[f"g{j}" for j in range(t)],
                                                       has_nan=False, seed=0))
    sc = StandardScaler().fit(X[tr])
    k = min(256, len(tr), d)
    pca = PCA(n_components=k, random_state=0).fit(sc.transform(X[tr]))
    Ztr, Zte = pca.transform(sc.transform(X[tr])), pca.transform(sc.transform(X[te]))
    reg = Ridge(solver="lsqr", alpha=100 / (k * t), fit_intercept=False, max_iter=1000, random_state=0).fit(Ztr, Y[tr])
    P = reg.predict(Zte)
    per = [pearsonr(Y[te][:, j], P[:, j]).statistic for j in range(t)]
    for j in range(t):
        assert got[f"pearson_r:g{j}"] == pytest.approx(per[j], abs=1e-9)
    assert got["pearson_r"] == pytest.approx(np.mean(per), abs=1e-9)
    assert got["pearson_r"] > 0.5


def test_retrieval_map_equals_sklearn_per_query():
    """mAP of same-label neighbours: mean over queries of sklearn's average_precision_score, ranking the
    other test samples by cosine similarity (continuous data: no ties)."""
    rng = np.random.default_rng(7)
    n = 90
    y = rng.integers(0, 3, n)
    X = np.eye(3)[y] + rng.normal(0, 0.8, (n, 3))
    X = np.c_[X, rng.normal(size=(n, 2))]
    test = np.sort(rng.choice(n, 60, replace=False))
    got = retrieval_split(X, y, test)[0][2]
    Xt, yt = X[test], y[test]
    Z = Xt / np.linalg.norm(Xt, axis=1, keepdims=True)
    S = Z @ Z.T
    aps = []
    for i in range(len(test)):
        others = np.arange(len(test)) != i
        rel = yt[others] == yt[i]
        if rel.any():
            aps.append(average_precision_score(rel, S[i, others]))
    assert got == pytest.approx(np.mean(aps), abs=1e-9)
    # the kernel itself, query by query
    from tissuegraph.eval._retrieval import average_precision

    ap = average_precision(Xt, yt, metric="cosine")
    assert np.allclose(ap[np.isfinite(ap)], aps, atol=1e-9)
