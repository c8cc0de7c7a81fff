"""tg.eval.evaluate end to end on constructed representations of known quality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tissuegraph as tg
from tissuegraph import InputError

from .conftest import make_samples

FAST = dict(n_splits=3, seeds=(0, 1), n_boot=500)


@pytest.fixture(scope="module")
def evaluated():
    a = make_samples()
    res = tg.eval.evaluate(a, label_key="label", task=["classification", "retrieval"], group_key="patient",
                           **FAST)
    return a, res


def test_results_table_and_summary(evaluated):
    a, res = evaluated
    assert list(res.columns) == ["representation", "protocol", "metric", "split", "seed", "value"]
    ev = a.uns["tg_eval"]
    reps = set(res["representation"])
    assert reps == {"X_structural", "X_color", "X_gnn_gin_features_dgi", "X_gnn_gin_features_untrained_s0",
                    "X_gnn_gin_features_untrained_s1", "X_cnn_resnet_supervised"}
    # every rep x protocol x metric on every split of every seed
    counts = res.groupby(["representation", "protocol", "metric"]).size()
    assert (counts == 6).all() and len(counts) == 6 * 7
    s = ev["summary"].set_index(["representation", "protocol", "metric"])
    for (rep, proto, metric), row in s.iterrows():
        vals = res[(res.representation == rep) & (res.protocol == proto) & (res.metric == metric)]["value"]
        assert row["mean"] == pytest.approx(vals.mean())
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    dgi = s.loc[("X_gnn_gin_features_dgi", "linear_probe", "balanced_accuracy"), "mean"]
    noise = s.loc[("X_gnn_gin_features_untrained_s0", "linear_probe", "balanced_accuracy"), "mean"]
    assert dgi > 0.85 and 0.2 < noise < 0.5
    assert s.loc[("X_gnn_gin_features_dgi", "retrieval", "mAP"), "mean"] > \
        s.loc[("X_gnn_gin_features_untrained_s0", "retrieval", "mAP"), "mean"]


def test_baseline_gap_verdicts(evaluated):
    a, _ = evaluated
    g = a.uns["tg_eval"]["gaps"].set_index(["representation", "reference", "protocol", "metric"])
    key = ("linear_probe", "balanced_accuracy")
    assert g.loc[("X_gnn_gin_features_dgi", "X_structural", *key), "verdict"] == "better"
    assert g.loc[("X_gnn_gin_features_dgi", "untrained twins", *key), "verdict"] == "better"
    assert g.loc[("X_gnn_gin_features_untrained_s0", "X_structural", *key), "verdict"] == "worse"
    # the shortcut representation does not beat the (weakly informative) baseline
    assert g.loc[("X_cnn_resnet_supervised", "X_structural", *key), "verdict"] in ("worse", "not distinguishable")
    # non-learned representations get no gaps; untrained reps have no twins reference
    reps = set(a.uns["tg_eval"]["gaps"]["representation"])
    assert "X_structural" not in reps and "X_color" not in reps
    assert not ((a.uns["tg_eval"]["gaps"]["representation"] == "X_gnn_gin_features_untrained_s0")
                & (a.uns["tg_eval"]["gaps"]["reference"] == "untrained twins")).any()
    # the twins reference is the mean of both twins, paired per split and seed
    res = a.uns["tg_eval"]["results"]
    sub = res[(res.protocol == "linear_probe") & (res.metric == "balanced_accuracy")]
    w = sub.pivot_table(index=["seed", "split"], columns="representation", values="value")
    d = w["X_gnn_gin_features_dgi"] - w[["X_gnn_gin_features_untrained_s0", "X_gnn_gin_features_untrained_s1"]].mean(1)
    assert g.loc[("X_gnn_gin_features_dgi", "untrained twins", *key), "diff"] == pytest.approx(d.mean())


def test_confound_flag_fires_for_a_slide_encoding_representation(evaluated):
    a, _ = evaluated
    flags = list(a.uns["tg_eval"]["flags"])
    assert any(f.startswith("X_cnn_resnet_supervised predicts 'slide' better than the label") for f in flags)
    assert not any(f.startswith("X_gnn_gin_features_dgi predicts") for f in flags)
    # noise predicts neither the slide nor the label: no flag (both at chance is not a finding)
    assert not any(f.startswith("X_gnn_gin_features_untrained_s0 predicts") for f in flags)
    p = a.uns["tg_eval"]["probes"].set_index(["representation", "target"])
    assert p.loc[("X_cnn_resnet_supervised", "slide"), "value"] > 0.8
    assert p.loc[("X_gnn_gin_features_dgi", "label"), "value"] > 0.7
    # default biological / shortcut quantities come from the baseline's named columns and obs
    targets = set(a.uns["tg_eval"]["probes"]["target"])
    assert {"stain colour", "nucleus count", "density", "mean nuclear size", "patient", "slide"} <= targets
    # the baseline's n_cells column predicts obs n_cells: R2 near 1
    assert p.loc[("X_structural", "nucleus count"), "value"] > 0.9
    assert p.loc[("X_color", "stain colour"), "value"] > 0.9


def test_similarity_tables_and_h5ad_round_trip(tmp_path):
    import anndata as ad

    a = make_samples(n=120)
    tg.eval.evaluate(a, label_key="label", group_key="patient", reps=["X_structural", "X_gnn_gin_features_dgi",
                                                                      "X_gnn_gin_features_untrained_s0"], **FAST)
    ev = a.uns["tg_eval"]
    cka = ev["cka"]
    assert np.allclose(np.diag(cka.to_numpy()), 1.0) and np.allclose(cka.to_numpy(), cka.to_numpy().T)
    assert (cka.to_numpy() >= 0).all() and (cka.to_numpy() <= 1 + 1e-9).all()
    assert np.allclose(np.diag(ev["knn_overlap"].to_numpy()), 1.0)
    path = tmp_path / "s.h5ad"
    a.write_h5ad(path)
    b = ad.read_h5ad(path)
    eb = b.uns["tg_eval"]
    for k in ("results", "summary", "gaps", "probes", "splits", "disagreement"):
        pd.testing.assert_frame_equal(eb[k].reset_index(drop=True), ev[k].reset_index(drop=True),
                                      check_dtype=False, check_categorical=False)
    assert np.allclose(eb["cka"].to_numpy(), cka.to_numpy())
    assert list(eb["flags"]) == list(ev["flags"])
    assert eb["params"]["label_key"] == "label"
    md = tg.eval.summarize(b)
    assert "| X_gnn_gin_features_dgi |" in md and "Baseline gaps" in md and "[" in md


def test_summarize_markdown(evaluated):
    a, _ = evaluated
    md = tg.eval.summarize(a)
    assert md.startswith("## Evaluation (tg_eval)")
    assert "linear_probe balanced_accuracy" in md and "retrieval mAP" in md
    assert "better" in md and "### Flags" in md and "predicts 'slide'" in md
    with pytest.raises(InputError, match="run tg.eval.evaluate"):
        tg.eval.summarize(a, key="nothing")


def test_missing_class_in_training_is_reported_not_hidden():
    a = make_samples(n=120, n_patients=6)
    lab = np.array(a.obs["label"].astype(str), dtype=object)
    lab[a.obs["patient"].to_numpy() == "p5"] = "rare"  # a class that lives in one patient only
    a.obs["label"] = pd.Categorical(lab)
    tg.eval.evaluate(a, label_key="label", group_key="patient", reps=["X_gnn_gin_features_dgi"], diagnostics=False,
                     similarity=False, **FAST)
    ev = a.uns["tg_eval"]
    sp_ = ev["splits"]
    assert (sp_["classes_missing_train"] == "rare").sum() == 2  # once per seed
    assert any("absent from the training data" in w for w in ev["warnings"])
    assert any("left at least one class out of the training data" in f for f in ev["flags"])


def test_regression_on_spot_expression_in_obsm_or_X():
    import anndata as ad

    rng = np.random.default_rng(0)
    n, g = 150, 6
    Z = rng.normal(size=(n, 8)).astype(np.float32)
    expr = np.log1p(np.exp(Z[:, :g] @ rng.normal(size=(g, g)) * 0.3 + 1) + rng.random((n, g)))
    a = ad.AnnData(X=expr.astype(np.float32), obs=pd.DataFrame({"patient": [f"p{i % 10}" for i in range(n)]},
                                                                 index=[str(i) for i in range(n)]),
                   var=pd.DataFrame(index=[f"gene{j}" for j in range(g)]))
    a.obsm["X_good"] = Z
    a.obsm["X_noise"] = rng.normal(size=(n, 8)).astype(np.float32)
    a.obsm["expression"] = expr
    a.uns["expression_names"] = np.array([f"gene{j}" for j in range(g)], dtype=object)
    r1 = tg.eval.evaluate(a, label_key="X", task="regression", group_key="patient", diagnostics=False,
                          similarity=False, baseline=None, **FAST)
    b = a.copy()
    r2 = tg.eval.evaluate(b, label_key="expression", task="regression", group_key="patient", diagnostics=False,
                          similarity=False, baseline=None, **FAST)
    assert set(r2["representation"]) == {"X_good", "X_noise"}  # the target key is not a representation
    assert np.allclose(r1["value"].to_numpy(), r2["value"].to_numpy())
    s = a.uns["tg_eval"]["summary"].set_index(["representation", "metric"])["mean"]
    assert s[("X_good", "pearson_r")] > 0.5 > s[("X_noise", "pearson_r")]
    assert ("X_good", "pearson_r:gene3") in s.index
    r3 = tg.eval.evaluate(a, label_key="X", targets=["gene1", "gene2"], task="regression", diagnostics=False,
                          similarity=False, baseline=None, **FAST)
    assert {m for m in r3["metric"]} == {"pearson_r", "pearson_r:gene1", "pearson_r:gene2"}


def test_regression_flags_a_representation_wider_than_its_training_rows():
    """The HEST ridge (PCA 256 + weak ridge) interpolates the training rows when a representation has at least
    as many columns as a training fold has rows: flagged for that representation only."""
    import anndata as ad

    rng = np.random.default_rng(1)
    n = 100
    a = ad.AnnData(obs=pd.DataFrame({"patient": [f"p{i % 10}" for i in range(n)]}, index=[str(i) for i in range(n)]))
    a.obsm["X_narrow"] = rng.normal(size=(n, 6)).astype(np.float32)
    a.obsm["X_wide"] = rng.normal(size=(n, 90)).astype(np.float32)
    a.obsm["expression"] = a.obsm["X_narrow"][:, :3] + 0.1 * rng.normal(size=(n, 3))
    tg.eval.evaluate(a, label_key="expression", task="regression", group_key="patient", diagnostics=False,
                     similarity=False, baseline=None, **FAST)
    ev = a.uns["tg_eval"]
    n_min = int(ev["splits"]["n_train"].min())  # grouped folds of 10 patients x 10 spots
    assert 6 < n_min <= 90
    flags = [f for f in ev["flags"] if "training rows" in f]
    assert len(flags) == 1 and flags[0].startswith(f"X_wide: 90 columns for as few as {n_min} training rows")


def test_input_errors_name_the_problem():
    a = make_samples(n=120)
    with pytest.raises(InputError, match="nonexistent"):
        tg.eval.evaluate(a, label_key="nonexistent")
    with pytest.raises(InputError, match="X_nope"):
        tg.eval.evaluate(a, label_key="label", reps=["X_nope"])
    with pytest.raises(InputError, match="group_key"):
        tg.eval.evaluate(a, label_key="label", group_key="hospital")
    with pytest.raises(InputError, match="distinct group"):
        tg.eval.evaluate(a, label_key="label", group_key="slide", n_splits=10)
    with pytest.raises(InputError, match="Unknown task"):
        tg.eval.evaluate(a, label_key="label", task="segmentation")
    a.obs["continuous"] = np.random.default_rng(0).random(a.n_obs)
    with pytest.raises(InputError, match="looks continuous"):
        tg.eval.evaluate(a, label_key="continuous")
    bad = a.obsm["X_gnn_gin_features_dgi"].copy()
    bad[3, 2] = np.nan
    a.obsm["X_gnn_gin_features_dgi"] = bad
    with pytest.raises(InputError, match=r"X_gnn_gin_features_dgi.*NaN"):
        tg.eval.evaluate(a, label_key="label")
    # explicit imputation is allowed
    tg.eval.evaluate(a, label_key="label", reps=["X_gnn_gin_features_dgi"], nan_policy="impute", diagnostics=False,
                     similarity=False, **FAST)
    bad[3, 2] = np.inf
    a.obsm["X_gnn_gin_features_dgi"] = bad
    with pytest.raises(InputError, match=r"X_gnn_gin_features_dgi.*infinite"):
        tg.eval.evaluate(a, label_key="label", nan_policy="impute")
    a.obs["patient_gap"] = a.obs["patient"].where(np.arange(a.n_obs) > 0)
    with pytest.raises(InputError, match="missing value"):
        tg.eval.evaluate(a, label_key="label", group_key="patient_gap", reps=["X_structural"])


def test_copy_leaves_the_input_untouched():
    a = make_samples(n=120)
    b = tg.eval.evaluate(a, label_key="label", group_key="patient", reps=["X_structural"], diagnostics=False,
                         similarity=False, key_added="ev", copy=True, **FAST)
    assert "ev" not in a.uns and "ev" in b.uns and b is not a
    assert b.uns["ev"]["params"]["group_key"] == "patient"


def test_n_jobs_does_not_change_results():
    a = make_samples(n=120)
    kw = dict(label_key="label", group_key="patient", reps=["X_structural", "X_gnn_gin_features_dgi"],
              diagnostics=False, similarity=True, **FAST)
    r1 = tg.eval.evaluate(a, n_jobs=1, **kw)
    r2 = tg.eval.evaluate(a.copy(), n_jobs=2, **kw)
    pd.testing.assert_frame_equal(r1.sort_values(list(r1.columns[:5])).reset_index(drop=True),
                                  r2.sort_values(list(r2.columns[:5])).reset_index(drop=True))


def test_metric_disagreement_flag():
    from tissuegraph.eval._evaluate import _kendall_disagreement

    reps = ["A", "B", "C", "D"]
    rows = [(r, "linear_probe", "balanced_accuracy", v, v, v, 6) for r, v in zip(reps, [0.9, 0.8, 0.7, 0.6])]
    rows += [(r, "retrieval", "mAP", v, v, v, 6) for r, v in zip(reps, [0.3, 0.4, 0.5, 0.6])]
    summ = pd.DataFrame(rows, columns=["representation", "protocol", "metric", "mean", "ci_low", "ci_high", "n"])
    table, flags = _kendall_disagreement(summ)
    assert table.iloc[0]["kendall_tau"] == pytest.approx(-1.0) and table.iloc[0]["n_flipped"] == 6
    assert len(flags) == 1 and "Metric disagreement" in flags[0]
    same = summ.copy()
    same.loc[same.protocol == "retrieval", "mean"] = [0.6, 0.5, 0.4, 0.3]
    assert _kendall_disagreement(same)[1] == []


@pytest.mark.slow  # the first sc.pp.neighbors call imports umap (and with it tensorflow) and compiles numba code
def test_leiden_clustering_against_sklearn_scores():
    """Leiden clusters of well-separated blobs recover the labels; ARI/NMI are scikit-learn's on them."""
    from tissuegraph.eval._protocols import clustering_split

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 60)
    X = np.eye(3)[y] * 10 + rng.normal(0, 0.5, (180, 3))
    X = np.c_[X, rng.normal(0, 0.5, (180, 3))]
    out = dict((m, v) for _, m, v in clustering_split(X, y, np.arange(180), seed=0, resolution=0.2))
    assert out["ARI"] > 0.95 and out["NMI"] > 0.95
    noise = dict((m, v) for _, m, v in clustering_split(rng.normal(size=(180, 6)), y, np.arange(180), seed=0))
    assert abs(noise["ARI"]) < 0.1
    # and through evaluate: clusters of the informative representation match the labels better than noise
    a = make_samples(n=120)
    tg.eval.evaluate(a, label_key="label", task="clustering", group_key="patient", diagnostics=False,
                     similarity=False, reps=["X_gnn_gin_features_dgi", "X_gnn_gin_features_untrained_s0"],
                     **FAST)
    s = a.uns["tg_eval"]["summary"].set_index(["representation", "metric"])["mean"]
    assert s[("X_gnn_gin_features_dgi", "ARI")] > 0.2 > abs(s[("X_gnn_gin_features_untrained_s0", "ARI")])
    assert s[("X_gnn_gin_features_dgi", "NMI")] > s[("X_gnn_gin_features_untrained_s0", "NMI")] + 0.2
