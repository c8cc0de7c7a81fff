"""Label-free profile operations: replicate ICC, rank transform, factor analysis, CORAL (against scipy /
scikit-learn / hand-worked values)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import tissuegraph as tg
from tissuegraph import InputError


def _wells(seed=0, n_treat=8, reps=3, n_ctrl=12, d=6, batches=2):
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(batches):
        for t in range(n_treat):
            for r in range(reps):
                rows.append(dict(compound=f"c{t}", concentration=1.0, batch=f"B{b}", plate=f"B{b}P{r}", is_control=False))
        for c in range(n_ctrl):
            rows.append(dict(compound="DMSO", concentration=0.0, batch=f"B{b}", plate=f"B{b}P{c % reps}", is_control=True))
    obs = pd.DataFrame(rows)
    obs.index = [f"w{i}" for i in range(len(obs))]
    codes = pd.factorize(obs.compound)[0]
    X = rng.normal(size=(len(obs), d))
    X[:, :3] += 3 * rng.normal(size=(codes.max() + 1, 3))[codes]  # features 0-2 carry the treatment
    a = ad.AnnData(obs=obs)
    a.obsm["X_profile"] = X.astype(np.float32)
    a.uns["X_profile_names"] = np.array([f"f{i}" for i in range(d)], dtype=object)
    return a


def test_feature_icc_equals_anova_for_balanced_groups():
    from scipy.stats import f_oneway

    a = _wells()
    icc = tg.culture.feature_reproducibility(a, by=["compound", "concentration"])
    X = a.obsm["X_profile"].astype(float)[~a.obs.is_control.to_numpy()]
    g = a.obs.compound[~a.obs.is_control].to_numpy()
    k = 6  # replicates per group: 3 in each of 2 batches
    for j in range(X.shape[1]):
        F = f_oneway(*[X[g == c, j] for c in np.unique(g)]).statistic
        assert icc.iloc[j] == pytest.approx((F - 1) / (F + k - 1), rel=1e-9)  # ICC(1) from the one-way F
    assert (icc.iloc[:3] > 0.5).all() and (icc.iloc[3:] < 0.3).all()


def test_feature_icc_hand_worked_unbalanced():
    obs = pd.DataFrame({"compound": ["a", "a", "b", "b", "b", "c"], "concentration": 1, "is_control": False},
                       index=list("123456"))
    a = ad.AnnData(obs=obs)
    a.obsm["X_profile"] = np.array([[1.0], [3.0], [4.0], [6.0], [5.0], [100.0]])
    icc = tg.culture.feature_reproducibility(a)  # the single well of 'c' is ignored
    # groups a: mean 2 (ss 2), b: mean 5 (ss 2); grand 3.8; MSW = 4/3; MSB = (2*1.8^2 + 3*1.2^2)/1 = 10.8
    n0 = 5 - (4 + 9) / 5
    assert icc.iloc[0] == pytest.approx((10.8 - 4 / 3) / (10.8 + (n0 - 1) * 4 / 3))


def test_select_reproducible_keeps_the_signal_and_records_params():
    a = _wells()
    tg.culture.select_reproducible(a, min_icc=0.5)
    assert list(a.uns["X_profile_names"]) == ["f0", "f1", "f2"]
    step = a.uns["representations"]["X_profile"]["params"]["steps"]
    last = step[sorted(step)[-1]]
    assert last["step"] == "select_reproducible" and last["n_kept"] == 3 and len(last["icc"]) == 6
    with pytest.raises(InputError, match="min_icc"):
        tg.culture.select_reproducible(_wells(), min_icc=0.9999)
    with pytest.raises(InputError, match="no column"):
        tg.culture.feature_reproducibility(_wells(), by=["nope"])


@pytest.mark.parametrize("method", ["inverse_normal", "uniform"])
def test_rank_transform_per_plate(method):
    from scipy.stats import norm, rankdata

    a = _wells()
    X = a.obsm["X_profile"].astype(float).copy()
    X[0, 0] = np.nan
    X[1, 1] = X[2, 1]  # a tie (same plate? not required)
    a.obsm["X_profile"] = X
    b = tg.culture.rank_transform(a, method=method, copy=True)
    Y = b.obsm["X_profile"].astype(float)
    assert np.isnan(Y[0, 0]) and np.isfinite(Y[1:, 0]).all()
    for p in a.obs.plate.unique():
        ix = np.flatnonzero(a.obs.plate.to_numpy() == p)
        for j in range(X.shape[1]):
            col = X[ix, j]
            ok = np.isfinite(col)
            u = (rankdata(col[ok]) - 0.5) / ok.sum()
            ref = norm.ppf(u) if method == "inverse_normal" else u - 0.5
            np.testing.assert_allclose(Y[ix[ok], j], ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(InputError, match="method"):
        tg.culture.rank_transform(a, method="nope")


def test_factor_analysis_equals_sklearn():
    from sklearn.decomposition import FactorAnalysis

    a = _wells(d=8)
    X = a.obsm["X_profile"].astype(np.float32).astype(float)
    tg.culture.factor_analysis(a, n_components=3, seed=4, key_added="fa")
    ref = FactorAnalysis(n_components=3, random_state=4, max_iter=1000).fit(X[a.obs.is_control.to_numpy()]).transform(X)
    np.testing.assert_allclose(a.obsm["X_fa"], ref, rtol=1e-4, atol=1e-4)
    assert list(a.uns["X_fa_names"]) == ["F1", "F2", "F3"]
    assert a.uns["representations"]["X_fa"]["params"]["steps"]["00_factor_analysis"]["n_components"] == 3
    with pytest.raises(InputError, match="n_components"):
        tg.culture.factor_analysis(a, n_components=100)


def test_coral_aligns_each_batch_to_the_pooled_controls():
    a = _wells(n_ctrl=40, d=4)
    X = a.obsm["X_profile"].astype(float)
    b = a.obs.batch.to_numpy() == "B1"
    X[b] = X[b] @ np.diag([3.0, 0.5, 1.0, 2.0]) + 5.0  # a batch effect: scale and shift
    a.obsm["X_profile"] = X
    tg.culture.coral(a, epsilon=0.0)
    Y = a.obsm["X_profile"].astype(float)
    c = a.obs.is_control.to_numpy()
    target_mean, target_cov = X[c].mean(0), np.cov(X[c], rowvar=False)
    for bb in ("B0", "B1"):
        m = c & (a.obs.batch.to_numpy() == bb)
        np.testing.assert_allclose(Y[m].mean(0), target_mean, atol=1e-4)
        np.testing.assert_allclose(np.cov(Y[m], rowvar=False), target_cov, atol=1e-3, rtol=1e-4)
    # hand-worked 1-D case: x' = (x - m_g) / s_g * s + m
    obs = pd.DataFrame({"batch": ["a", "a", "a", "b", "b", "b"], "is_control": [True, True, False, True, True, False]},
                       index=list("123456"))
    one = ad.AnnData(obs=obs)
    one.obsm["X_profile"] = np.array([[0.0], [2.0], [4.0], [10.0], [30.0], [20.0]])
    tg.culture.coral(one, epsilon=0.0)
    s_all = np.std([0, 2, 10, 30], ddof=1)
    m_all = 10.5
    np.testing.assert_allclose(one.obsm["X_profile"][:, 0],
                               [(0 - 1) / np.sqrt(2) * s_all + m_all, (2 - 1) / np.sqrt(2) * s_all + m_all,
                                (4 - 1) / np.sqrt(2) * s_all + m_all, (10 - 20) / np.sqrt(200) * s_all + m_all,
                                (30 - 20) / np.sqrt(200) * s_all + m_all, 0 * s_all + m_all], rtol=1e-6)
    with pytest.raises(InputError, match="epsilon"):
        tg.culture.coral(one, epsilon=-1)


def test_weight_reproducible_scales_by_icc_and_drops_nonpositive():
    a = _wells(seed=3)
    X = a.obsm["X_profile"].astype(float).copy()
    icc = tg.culture.feature_reproducibility(a).to_numpy()
    b = tg.culture.weight_reproducible(a, power=2.0, copy=True)
    keep = np.flatnonzero(icc > 0)
    assert list(b.uns["X_profile_names"]) == [f"f{j}" for j in keep]
    np.testing.assert_allclose(b.obsm["X_profile"], X[:, keep] * icc[keep] ** 2, rtol=1e-5)
    step = b.uns["representations"]["X_profile"]["params"]["steps"]
    last = step[sorted(step)[-1]]
    assert last["step"] == "weight_reproducible" and last["power"] == 2.0
    np.testing.assert_allclose(last["weights"], icc[keep] ** 2)
    # power 0 keeps the features with ICC > 0 unweighted (= select_reproducible with min_icc 0)
    c = tg.culture.weight_reproducible(a, power=0.0, copy=True)
    d = tg.culture.select_reproducible(a, min_icc=0.0, copy=True)
    np.testing.assert_allclose(c.obsm["X_profile"], d.obsm["X_profile"])
    assert np.array_equal(a.obsm["X_profile"], X.astype(np.float32))  # copy=True left the input alone
    with pytest.raises(InputError, match="power"):
        tg.culture.weight_reproducible(a, power=-1)


def test_weight_reproducible_hand_worked():
    obs = pd.DataFrame({"compound": ["a", "a", "b", "b", "b", "c"], "concentration": 1, "is_control": False},
                       index=list("123456"))
    a = ad.AnnData(obs=obs)
    # column 0: the hand-worked ICC of test_feature_icc_hand_worked_unbalanced; column 1: no agreement (ICC < 0)
    a.obsm["X_profile"] = np.array([[1.0, 0.0], [3.0, 5.0], [4.0, 0.0], [6.0, 5.0], [5.0, 2.5], [100.0, 1.0]])
    tg.culture.weight_reproducible(a)
    n0 = 5 - (4 + 9) / 5
    icc = (10.8 - 4 / 3) / (10.8 + (n0 - 1) * 4 / 3)
    np.testing.assert_allclose(a.obsm["X_profile"][:, 0], np.array([1.0, 3, 4, 6, 5, 100]) * icc, rtol=1e-6)
    assert a.obsm["X_profile"].shape == (6, 1)


def test_profile_pipeline_post_transform_and_weight():
    from tissuegraph.culture._bench import _profile_pipeline

    a = _wells(n_ctrl=30, d=6)
    manual = a.copy()
    _profile_pipeline(a, normalize="standardize", select="icc 0.1", align="ZCA eps 0.3", post="inverse_normal",
                      weight="icc 1")
    tg.culture.normalize(manual, method="standardize")
    tg.culture.select_features(manual, operations=["missing", "variance"], na_cutoff=0.0)
    tg.culture.select_reproducible(manual, min_icc=0.1)
    tg.culture.spherize(manual, method="ZCA", epsilon=0.3, relative=True)
    tg.culture.rank_transform(manual, method="inverse_normal", by=None)
    tg.culture.weight_reproducible(manual, power=1.0)
    np.testing.assert_allclose(a.obsm["X_profile"], manual.obsm["X_profile"], rtol=1e-5, atol=1e-6)
    steps = [s["step"] for s in a.uns["representations"]["X_profile"]["params"]["steps"].values()]
    assert steps[-3:] == ["spherize", "rank_transform", "weight_reproducible"]
    with pytest.raises(InputError, match="post"):
        _profile_pipeline(_wells(), normalize="standardize", post="nope")
    with pytest.raises(InputError, match="weight"):
        _profile_pipeline(_wells(), normalize="standardize", weight="pca 2")
