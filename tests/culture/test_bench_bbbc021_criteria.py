"""The label-free criteria of benchmarks/bench_bbbc021.py (compound mAP, within-batch compound mAP, replicate and
DMSO batch mAP, the compound halves of the held-out check) against hand computations with scikit-learn."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from tests.helpers import load_benchmark_script


@pytest.fixture(scope="module")
def script():
    return load_benchmark_script("bench_bbbc021")


def _screen(seed=0):
    """3 batches x 2 plates; 2-3 compounds per batch with 1-3 concentrations, 2 wells each; 4 DMSO per plate."""
    rng = np.random.default_rng(seed)
    rows = []
    plan = {"B0": {"a": 3, "b": 2, "c": 1}, "B1": {"d": 2, "e": 2}, "B2": {"f": 3, "g": 1, "h": 2}}
    moa = {"a": "m1", "b": "m2", "c": "m1", "d": "m1", "e": "m2", "f": "m2", "g": "m1", "h": "m3"}
    for b, comps in plan.items():
        for c, n_conc in comps.items():
            for k in range(n_conc):
                for p in range(2):
                    rows.append(dict(compound=c, concentration=float(k + 1), batch=b, plate=f"{b}p{p}",
                                     is_control=False, moa=moa[c]))
        for p in range(2):
            for _ in range(4):
                rows.append(dict(compound="DMSO", concentration=0.0, batch=b, plate=f"{b}p{p}", is_control=True,
                                 moa="control"))
    obs = pd.DataFrame(rows)
    obs.index = [f"w{i}" for i in range(len(obs))]
    codes = pd.factorize(obs.compound)[0]
    X = rng.normal(size=(len(obs), 5)) + 1.5 * rng.normal(size=(codes.max() + 1, 5))[codes]
    a = ad.AnnData(obs=obs)
    a.obsm["X_profile"] = X.astype(np.float32)
    a.uns["X_profile_names"] = np.array([f"f{i}" for i in range(5)], dtype=object)
    return a


def _cosine(X):
    Y = X / np.linalg.norm(X, axis=1, keepdims=True)
    return Y @ Y.T


def _map(S, labels, candidates):
    """Mean over queries with a positive of sklearn's average precision (query left out)."""
    from sklearn.metrics import average_precision_score

    aps = []
    for i in range(len(labels)):
        c = candidates[i].copy()
        c[i] = False
        y = labels[c] == labels[i]
        if y.any():
            aps.append(average_precision_score(y, S[i, c]))
    return float(np.mean(aps)), aps


def test_label_free_criteria_match_sklearn(script):
    a = _screen()
    ha, hb = script.halves(a.obs.loc[~a.obs.is_control, "compound"])
    t = script.consensus_profiles(a, "median")
    lf = script.label_free(a, "cosine", t, ha)
    T = t.obsm["X_profile"].astype(float)
    comp = t.obs.compound.astype(str).to_numpy()
    bat = t.obs.batch.astype(str).to_numpy()
    n = len(comp)
    S = _cosine(T)
    every = np.ones((n, n), dtype=bool)
    assert lf["compound_mAP"] == pytest.approx(_map(S, comp, every)[0], abs=1e-9)
    same_batch = bat[:, None] == bat[None, :]
    assert lf["batch_compound_mAP"] == pytest.approx(_map(S, comp, same_batch)[0], abs=1e-9)
    # halves: the compound mAP over half A's queries only
    in_a = np.isin(comp, list(ha))
    from sklearn.metrics import average_precision_score

    per_query = []
    for i in np.flatnonzero(in_a):
        c = np.arange(n) != i
        y = comp[c] == comp[i]
        if y.any():
            per_query.append(average_precision_score(y, S[i, c]))
    assert lf["compound_mAP_A"] == pytest.approx(np.mean(per_query), abs=1e-9)
    # DMSO batch mAP and replicate mAP (wells)
    X = a.obsm["X_profile"].astype(float)
    ctrl = a.obs.is_control.to_numpy()
    Sw = _cosine(X)
    b = a.obs.batch.to_numpy()
    assert lf["dmso_batch_mAP"] == pytest.approx(
        _map(Sw[np.ix_(ctrl, ctrl)], b[ctrl], np.ones((ctrl.sum(), ctrl.sum()), dtype=bool))[0], abs=1e-9)
    treat = (a.obs.compound.astype(str) + "@" + a.obs.concentration.astype(str)).to_numpy()[~ctrl]
    m = (~ctrl).sum()
    assert lf["replicate_mAP"] == pytest.approx(
        _map(Sw[np.ix_(~ctrl, ~ctrl)], treat, np.ones((m, m), dtype=bool))[0], abs=1e-9)


def test_halves_and_split_nsc(script):
    a = _screen(1)
    comps = a.obs.loc[~a.obs.is_control, "compound"]
    ha, hb = script.halves(comps)
    assert (ha, hb) == script.halves(comps[::-1]) and not ha & hb and ha | hb == set(comps)
    assert len(ha) == len(set(comps)) // 2
    t = script.consensus_profiles(a, "median")
    ev = script.evaluate(t, "cosine", ha)
    from tissuegraph.eval._profiling import nsc

    acc, tab = nsc(t.obsm["X_profile"].astype(float), t.obs.moa, compound=t.obs.compound, return_predictions=True)
    assert ev["NSC"] == pytest.approx(acc)
    in_a = np.isin(t.obs.compound.astype(str).to_numpy(), list(ha))
    sc = tab["scored"].to_numpy()
    ok = tab["correct"].to_numpy()
    assert ev["NSC_A"] == pytest.approx(ok[sc & in_a].mean()) and ev["NSC_B"] == pytest.approx(ok[sc & ~in_a].mean())


def test_choose_takes_the_highest_score(script):
    df = pd.DataFrame({"replicate_mAP": [0.3, 0.2, 0.1], "compound_mAP": [0.5, 0.9, 0.9],
                       "batch_compound_mAP": [0.8, 0.6, 0.7], "dmso_batch_mAP": [0.1, 0.1, 0.3],
                       **{f"{c}_{h}": [0.1, 0.2, 0.3] for c in ("replicate_mAP", "compound_mAP", "batch_compound_mAP")
                          for h in "AB"}})
    df = script.add_scores(df)
    assert script.choose(df, "v1").name == 0       # 0.3 - 0.1
    assert script.choose(df, "v2").name == 1       # 0.9 - 0.1 beats 0.9 - 0.3
    assert script.choose(df, "v3").name == 0       # 0.8 - 0.1
    assert script.choose(df, "v1", "A").name == 1  # half A: 0.2 - 0.1 beats 0.1 - 0.1 and 0.3 - 0.3
