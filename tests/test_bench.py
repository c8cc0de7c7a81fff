"""tg.bench / ``tissuegraph bench``: orchestration end to end on a tiny synthetic case.

``tg.eval`` and ``tg.emb`` are built in parallel; this file uses a test-only evaluation with the
contract's table layout (scikit-learn logistic regression, grouped folds) so the orchestration,
caching and report can be checked now.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import tissuegraph as tg
from tissuegraph import _keys as K
from tissuegraph.bench import RepStep, run_bench


def fake_evaluate(samples, *, label_key, task, group_key=None, n_splits=5, seeds=(0, 1, 2), key_added="tg_eval", knn_k=20,
                  probes=None, confounds=None):
    """Test-only stand-in for tg.eval.evaluate: linear probe, balanced accuracy per grouped fold."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    assert task == "classification"
    y = samples.obs[label_key].astype(str).to_numpy()
    groups = samples.obs[group_key].to_numpy() if group_key else np.arange(samples.n_obs)
    rows = []
    reps = [k for k in samples.obsm if k.startswith("X_")]
    for seed in seeds:
        for split, (tr, te) in enumerate(GroupKFold(min(n_splits, len(set(groups)))).split(y, y, groups)):
            for rep in reps:
                X = np.asarray(samples.obsm[rep], float)
                X = np.where(np.isfinite(X), X, np.nan)
                X = X[:, ~np.isnan(X).all(axis=0)]
                clf = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=2000))
                clf.fit(X[tr], y[tr])
                rows.append(dict(representation=rep, protocol="linear", metric="balanced_accuracy", split=split,
                                 seed=seed, value=balanced_accuracy_score(y[te], clf.predict(X[te]))))
    res = pd.DataFrame(rows)
    summ = res.groupby(["representation", "protocol", "metric"], as_index=False)["value"].agg(
        mean="mean", ci_low=lambda v: np.quantile(v, 0.025), ci_high=lambda v: np.quantile(v, 0.975), n="size")
    base = res[res.representation == K.obsm.structural].set_index(["split", "seed"])["value"]
    gaps = []
    for rep in reps:
        if rep == K.obsm.structural:
            continue
        d = res[res.representation == rep].set_index(["split", "seed"])["value"] - base
        lo, hi = np.quantile(d, [0.025, 0.975])
        gaps.append(dict(representation=rep, reference=K.obsm.structural, protocol="linear",
                         metric="balanced_accuracy", diff=d.mean(), ci_low=lo, ci_high=hi,
                         verdict="better" if lo > 0 else "worse" if hi < 0 else "not distinguishable"))
    samples.uns[key_added] = {"results": res, "summary": summ, "gaps": pd.DataFrame(gaps),
                              "cka": pd.DataFrame(np.eye(len(reps)), index=reps, columns=reps),
                              "probes": pd.DataFrame(), "flags": ["test flag"], "params": {}}


def _colour(ctx):
    """A tiny colour representation (mean RGB inside each region) to exercise one representation step."""
    img = ctx.slide.read_region((0, 0), 0, ctx.slide.dimensions)
    wkt = ctx.samples.obs[K.obs.geometry]
    import shapely

    rows = []
    for g in shapely.from_wkt(wkt.to_numpy()):
        x0, y0, x1, y1 = (int(round(v + 0.5)) for v in g.bounds)
        rows.append(img[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0))
    ctx.samples.obsm["X_testcolour"] = np.asarray(rows, np.float32)
    ctx.samples.uns["representations"]["X_testcolour"] = {
        "family": "color", "trained": False, "learned": False, "objective": None, "architecture": "mean rgb",
        "inputs": "pixels", "layer": None, "seed": None, "twin_group": "color", "weights_sha256": None, "params": {}}


@pytest.fixture(scope="module")
def tiny():
    return tg.datasets.diagnostic_benchmark(factor=["density", "stain"], n_samples=8, size_um=72.0, n_patients=2,
                                            seed=0, progress_bar=False)


def test_run_bench_end_to_end_and_resume(tiny, tmp_path, monkeypatch):
    step = RepStep("testcolour", "datasets", "mosaic", _colour, description="test colour")

    def broken(ctx):
        ctx.samples.obsm["X_half"] = np.zeros((ctx.samples.n_obs, 2), np.float32)
        raise RuntimeError("out of memory")

    steps = [step, RepStep("missing", "no_such_module", "f", _colour),
             RepStep("nofunction", "datasets", "no_such_function", _colour),
             RepStep("broken", "datasets", "mosaic", broken),
             RepStep("slow", "datasets", "mosaic", _colour, quick=False)]
    monkeypatch.setattr(tg.bench, "REPRESENTATIONS", steps)
    out = tmp_path / "bench"
    res = run_bench(tiny, out, quick=True, evaluate=fake_evaluate, segmenter="watershed", progress=False)
    assert {"X_structural", "X_testcolour"} <= set(res.samples.obsm)
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns[:2]) == ["dataset", "task"]
    assert set(table["task"]) == {"diagnostic: density", "diagnostic: stain"}
    assert set(table["representation"]) == {"X_structural", "X_testcolour"}
    assert set(table["seed"]) == {0}                                   # quick: one seed, 3 splits at most
    md = (out / "summary.md").read_text()
    assert "| X_structural | structural | False |" in md and "X_testcolour" in md
    assert "## Baseline gaps" in md and "test flag" in md and "## Skipped steps" in md
    # a step whose module or function is missing is skipped with the reason; a failing one is reported and
    # leaves nothing half-written; the others run
    assert "no_such_module" in res.skipped["missing"] and "does not exist" in res.skipped["nofunction"]
    assert res.skipped["broken"] == "failed: RuntimeError: out of memory" and "X_half" not in res.samples.obsm
    assert res.skipped["slow"] == "not run with --quick"
    assert "broken: failed: RuntimeError: out of memory" in md
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["done"][:2] == ["build", "testcolour"]
    # every step's wall time is recorded (the failed one too), for paper_comparison's "where the time goes"
    tm = manifest["timings"]
    for key in ("bench: segment diagnostic", "bench: features", "bench: structural descriptors",
                "bench: representation testcolour", "bench: representation broken",
                "bench: evaluate diagnostic: density", "bench: evaluate diagnostic: stain", "bench: tables and plots"):
        assert tm[key] >= 0, key
    assert "bench: representation slow" not in tm and sum(tm.values()) <= manifest["seconds"]
    # the colour step sees the stain factor (the structural side is checked on larger data in
    # tests/datasets/test_diagnostic_pipeline.py; 8 samples are too few for ~500 descriptors)
    summ = res.summary.set_index(["task", "representation"])["mean"]
    assert summ[("diagnostic: stain", "X_testcolour")] > 0.8
    report = (out / "report.html").read_text()  # the bench's report, with the first task's evaluation
    assert '<section id="representations">' in report and "X_testcolour" in report

    # resume: no step is run again, the report is the same
    def boom(*a, **k):
        raise AssertionError("build must not run again")

    calls = []
    monkeypatch.setattr(tg.bench, "build", boom)
    step2 = RepStep("testcolour", "datasets", "mosaic", lambda ctx: calls.append(1))
    monkeypatch.setattr(tg.bench, "REPRESENTATIONS", [step2])
    res2 = run_bench(tiny, out, quick=True, evaluate=fake_evaluate, segmenter="watershed", progress=False)
    assert not calls
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), table)
    np.testing.assert_array_equal(res2.samples.obsm["X_testcolour"], res.samples.obsm["X_testcolour"])
    assert res2.samples.uns["representations"]["X_structural"]["objective"] is None   # None survives the cache
    # the build's timings survive the resume
    tm2 = json.loads((out / "manifest.json").read_text())["timings"]
    assert tm2["bench: segment diagnostic"] == tm["bench: segment diagnostic"]
    # a data set with the same name but other samples never resumes from this cache
    other = tg.datasets.diagnostic_benchmark(factor=["density", "stain"], n_samples=6, size_um=72.0, n_patients=2,
                                             seed=0, progress_bar=False)
    assert other.name == tiny.name
    with pytest.raises(AssertionError, match="build must not run again"):
        run_bench(other, out, quick=True, evaluate=fake_evaluate, segmenter="watershed", progress=False)


def test_without_evaluation_module(tiny, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tissuegraph.eval", None)   # import tissuegraph.eval -> ImportError
    res = run_bench(tiny, tmp_path / "b", quick=True, representations=[], segmenter="watershed", progress=False)
    assert "evaluation" in res.skipped and res.results.empty
    assert "No evaluation results" in (tmp_path / "b" / "summary.md").read_text()


def test_spot_dataset_builds_with_targets():
    ds = tg.datasets.diagnostic_benchmark(spots=True, n_sections=1, section_size_um=260.0, seed=2, progress_bar=False)
    cells, samples, _ = tg.bench.build(ds, segmenter="watershed", progress=False)
    assert samples.n_obs == ds.n_samples and samples.obsm["expression"].shape == ds.targets["expression"][0].shape
    assert list(samples.uns["expression_names"]) == ds.targets["expression"][1]
    assert (samples.obs[K.obs.n_cells] > 0).mean() > 0.8
    # detected cells per spot follow the true nuclei per spot
    assert np.corrcoef(samples.obs[K.obs.n_cells], samples.obs["n_true"])[0, 1] > 0.7


def test_errors(tmp_path):
    with pytest.raises(tg.InputError, match="Unknown dataset"):
        tg.bench.load_dataset("no_such_set")
    with pytest.raises(tg.InputError, match="mpp"):
        (tmp_path / "A").mkdir()
        tg.bench.load_dataset(tmp_path)
    with pytest.raises(tg.InputError, match="Unknown representation"):
        run_bench(tg.datasets.diagnostic_benchmark(factor="density", n_samples=4, size_um=64.0, progress_bar=False),
                  tmp_path / "o", representations=["nope"], segmenter="watershed", progress=False)


def test_cli(tmp_path, capsys):
    from tissuegraph.cli import build_parser, main

    assert "bench" in build_parser().format_help()
    assert main(["bench", "--dataset", "no_such_set", "-o", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "Unknown dataset" in capsys.readouterr().err


def test_load_dataset_recognises_layouts(tmp_path):
    from tests.datasets.test_loaders import _counts, _visium

    outs = _visium(tmp_path, new_style=True)
    _counts(["A-1", "B-1", "C-1", "D-1"]).write_h5ad(tmp_path / "c.h5ad")
    ds = tg.bench.load_dataset(outs, mpp=0.5)
    assert ds.kind == "spot" and ds.n_samples == 3
    (tmp_path / "classes" / "A").mkdir(parents=True)
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "classes" / "A" / "x.png")
    assert tg.bench.load_dataset(tmp_path / "classes", mpp=0.5).n_samples == 1
    qp = tmp_path / "qupath"
    qp.mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(qp / "slide.png")
    (qp / "slide.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [9, 0], [9, 9], [0, 9], [0, 0]]]},
         "properties": {"classification": {"name": "Tumor"}}}]}))
    with pytest.raises(tg.InputError, match="mpp"):
        tg.bench.load_dataset(qp)
    assert list(tg.bench.load_dataset(qp, mpp=0.5).obs["label"]) == ["Tumor"]
    ds0 = tg.datasets.diagnostic_benchmark(factor="stain", n_samples=4, size_um=64.0, progress_bar=False)
    assert tg.bench.load_dataset(ds0) is ds0


@pytest.mark.shared_data
def test_load_dataset_her2st_folder(shared_data):
    ds = tg.bench.load_dataset(shared_data / "her2st" / "B4")
    assert ds.name == "her2st_B4" and ds.n_samples == 283


def test_full_run_evaluates_with_the_runs_seeds(tiny, tmp_path):
    """run_bench(seeds=...) are the seeds of the evaluation too (not evaluate's default 0, 1, 2)."""
    calls = []

    def recording_evaluate(samples, **kw):
        calls.append(kw)
        return fake_evaluate(samples, **kw)

    res = run_bench(tiny, tmp_path / "full", quick=False, seeds=(4, 7), representations=[], evaluate=recording_evaluate,
                    segmenter="watershed", progress=False)
    assert calls and all(tuple(c["seeds"]) == (4, 7) and "n_splits" not in c for c in calls)
    assert set(res.results["seed"]) == {4, 7}
