"""Profile operations on AnnData: equal to pycytominer where it computes the same thing."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import tissuegraph as tg
from tissuegraph import InputError

pyc = pytest.importorskip("pycytominer")

FEATS = [f"Cells_F{i}" for i in range(6)] + [f"Nuclei_G{i}" for i in range(4)]


def _wells(seed=0, plates=3, per_plate=20):
    rng = np.random.default_rng(seed)
    n = plates * per_plate
    plate = np.repeat([f"P{i}" for i in range(plates)], per_plate)
    compound = np.where(np.arange(n) % 4 == 0, "DMSO", [f"c{i % 7}" for i in range(n)])
    X = rng.lognormal(size=(n, len(FEATS))) * (1 + np.arange(len(FEATS))) + np.repeat(rng.normal(size=(plates, 1)), per_plate, 0)
    X[:, 3] = 2 * X[:, 2] + 0.01 * rng.normal(size=n)  # highly correlated pair
    X[:, 7] = 5.0  # constant
    X[rng.random(n) < 0.2, 8] = np.nan  # many missing
    df = pd.DataFrame(X, columns=FEATS)
    df.insert(0, "Metadata_Plate", plate)
    df.insert(1, "Metadata_Well", [f"{'ABCDEFGH'[i % 8]}{1 + i // 8:02d}" for i in range(n)])
    df.insert(2, "Metadata_compound", compound)
    return df


def _adata(df):
    a = tg.culture.read_profiles(df)
    a.obs["is_control"] = a.obs["Metadata_compound"].eq("DMSO").to_numpy()
    return a


@pytest.mark.parametrize("method", ["mad_robustize", "standardize", "robustize"])
def test_normalize_per_plate_equals_pycytominer(method):
    df = _wells()
    feats = [f for f in FEATS if f not in ("Nuclei_G1", "Nuclei_G2")]  # no constant / NaN columns here
    a = _adata(df)
    tg.culture.normalize(a, method=method)
    got = pd.DataFrame(a.obsm["X_profile"].astype(float), columns=a.uns["X_profile_names"])
    for p, sub in df.groupby("Metadata_Plate"):
        ref = pyc.normalize(sub, features=feats, meta_features=["Metadata_Plate", "Metadata_Well", "Metadata_compound"],
                            samples="Metadata_compound == 'DMSO'", method=method)
        rows = np.flatnonzero(df["Metadata_Plate"].eq(p).to_numpy())
        np.testing.assert_allclose(got.iloc[rows][feats].to_numpy(), ref[feats].to_numpy(), rtol=2e-6, atol=1e-5)


@pytest.mark.parametrize("method", ["ZCA", "PCA", "ZCA-cor", "PCA-cor"])
def test_spherize_equals_pycytominer(method):
    df = _wells(per_plate=40)
    feats = [f for f in FEATS if f not in ("Nuclei_G1", "Nuclei_G2", "Cells_F3")]
    a = _adata(df[["Metadata_Plate", "Metadata_Well", "Metadata_compound", *feats]])
    tg.culture.spherize(a, method=method, epsilon=1e-6)
    ref = pyc.normalize(df, features=feats, meta_features=["Metadata_Plate", "Metadata_Well", "Metadata_compound"],
                        samples="Metadata_compound == 'DMSO'", method="spherize", spherize_method=method,
                        spherize_epsilon=1e-6)
    got = a.obsm["X_profile"].astype(float)
    refv = ref.drop(columns=["Metadata_Plate", "Metadata_Well", "Metadata_compound"]).to_numpy()
    if method.startswith("PCA"):  # principal axes are defined up to sign
        s = np.sign((got * refv).sum(axis=0))
        refv = refv * s
    np.testing.assert_allclose(got, refv, rtol=1e-4, atol=1e-4)
    # the controls are white: identity covariance (up to epsilon)
    ctrl = got[a.obs["is_control"].to_numpy()]
    np.testing.assert_allclose(np.cov(ctrl, rowvar=False), np.eye(len(feats)), atol=1e-3)


def test_select_features_equals_pycytominer():
    df = _wells()
    a = _adata(df)
    tg.culture.select_features(a, operations=["missing", "variance", "correlation"], corr_threshold=0.9)
    ref = pyc.feature_select(df, features=FEATS, operation=["drop_na_columns", "variance_threshold",
                                                            "correlation_threshold"], corr_threshold=0.9)
    kept_ref = [c for c in ref.columns if c in FEATS]
    assert list(a.uns["X_profile_names"]) == kept_ref
    assert "Nuclei_G1" not in kept_ref and "Nuclei_G2" not in kept_ref
    # the provenance record grows with every step
    steps = a.uns["representations"]["X_profile"]["params"]["steps"]
    last = steps[sorted(steps)[-1]]
    assert last["step"] == "select_features" and last["n_kept"] == len(kept_ref)


@pytest.mark.parametrize("method", ["median", "mean"])
def test_aggregate_equals_pycytominer(method):
    rng = np.random.default_rng(1)
    n = 300
    cells = pd.DataFrame(rng.normal(size=(n, 4)), columns=["Cells_a", "Cells_b", "Nuclei_c", "Nuclei_d"])
    cells.insert(0, "Metadata_Plate", rng.choice(["P1", "P2"], n))
    cells.insert(1, "Metadata_Well", rng.choice(["A01", "B02", "C03"], n))
    ref = pyc.aggregate(cells, strata=["Metadata_Plate", "Metadata_Well"], operation=method)
    adata = ad.AnnData(cells[["Cells_a", "Cells_b", "Nuclei_c", "Nuclei_d"]].to_numpy(),
                       obs=cells[["Metadata_Plate", "Metadata_Well"]].rename(
                           columns={"Metadata_Plate": "plate", "Metadata_Well": "well"}).astype(str))
    adata.obs_names = [str(i) for i in range(n)]
    adata.var_names = ["Cells_a", "Cells_b", "Nuclei_c", "Nuclei_d"]
    w = tg.culture.aggregate(adata, method=method)
    ref = ref.sort_values(["Metadata_Plate", "Metadata_Well"])
    np.testing.assert_allclose(w.obsm["X_profile"], ref[["Cells_a", "Cells_b", "Nuclei_c", "Nuclei_d"]].to_numpy(),
                               rtol=1e-6)
    assert w.obs["n_cells"].sum() == n
    assert w.uns["representations"]["X_profile"]["family"] == "profile"


def test_consensus_and_errors():
    df = _wells()
    a = _adata(df)
    a.obs["batch"] = np.where(a.obs["plate"].eq("P2"), "B2", "B1")
    t = tg.culture.consensus(a, by=["Metadata_compound"], rows="~is_control")
    assert set(t.obs["Metadata_compound"]) == {f"c{i}" for i in range(7)} - set()
    X = a.obsm["X_profile"].astype(float)
    rows = np.flatnonzero(a.obs["Metadata_compound"].eq("c1").to_numpy())
    np.testing.assert_allclose(t[t.obs["Metadata_compound"] == "c1"].obsm["X_profile"][0], np.nanmedian(X[rows], 0),
                               rtol=1e-6)
    assert set(t.obs["batch"]) <= {"B1", "B2", "B1|B2"}
    with pytest.raises(InputError, match="no control rows"):
        b = a.copy()
        b.obs["is_control"] = False
        tg.culture.normalize(b)
    with pytest.raises(InputError, match="NaN"):
        tg.culture.spherize(a)
    with pytest.raises(InputError, match="obsm has no"):
        tg.culture.normalize(a, rep="X_missing")
    with pytest.raises(InputError, match="method"):
        tg.culture.normalize(a, method="zscore")
