"""The main job (`tg.pipeline.run`, `tissuegraph run/demo/segment/synth`) end to end on synthetic slides."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import tissuegraph as tg
from tissuegraph import _keys as K


@pytest.fixture(scope="module")
def small_slide(tmp_path_factory):
    d = tmp_path_factory.mktemp("slide")
    return tg.datasets.synthetic_slide(d / "syn.tiff", size=1024, seed=11, progress=False)


@pytest.fixture(scope="module")
def run_result(small_slide, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return tg.pipeline.run(small_slide.path, out, segmenter="watershed", graph="delaunay", sample_size_um=128,
                           progress=False)


def test_run_writes_every_output(run_result):
    out = run_result.outdir
    man = json.loads((out / "manifest.json").read_text())
    for key in ("cells", "samples", "nuclei", "manifest", "labels"):
        assert (out / man["outputs"][key]).exists()
    assert len(man["input"]["sha256"]) == 64
    assert man["parameters"]["graph"] == "delaunay" and man["seeds"]["seed"] == 0
    assert {"segment", "features", "total"} <= set(man["timings"])
    assert "numpy" in man["versions"] and man["versions"]["tissuegraph"] == tg.__version__
    assert man["counts"]["nuclei"] == run_result.cells.n_obs > 100


def test_cells_and_samples_anndata(run_result):
    cells = ad.read_h5ad(run_result.outdir / "cells.h5ad")
    assert cells.n_vars >= 40
    assert cells.obsm["spatial"].shape == (cells.n_obs, 2)
    assert "spatial_connectivities" in cells.obsp and "spatial_distances" in cells.obsp
    assert tg._anndata.get_mpp(cells) == pytest.approx(0.5)
    samples = ad.read_h5ad(run_result.outdir / "samples.h5ad")
    X = samples.obsm["X_structural"]
    assert X.shape[0] == samples.n_obs >= 4 and X.shape[1] == len(samples.uns["X_structural_names"])
    nuc = tg.pipeline.read_nuclei(run_result.outdir / "nuclei.parquet")
    assert len(nuc) == cells.n_obs
    np.testing.assert_allclose(nuc[K.nuclei.x].to_numpy(), cells.obsm["spatial"][:, 0])
    assert nuc[K.nuclei.contour].iloc[0].shape[1] == 2


def test_cells_work_with_squidpy(run_result):
    sq = pytest.importorskip("squidpy")
    cells = run_result.cells.copy()
    # a categorical label per cell: region class of the ground truth isn't in cells, so use a feature split
    area = cells[:, "area_um2"].X.ravel()
    cells.obs["size_class"] = pd.Categorical(np.where(area > np.median(area), "large", "small"))
    sq.gr.nhood_enrichment(cells, cluster_key="size_class", n_perms=20, seed=0, show_progress_bar=False)
    assert "size_class_nhood_enrichment" in cells.uns


def test_run_twice_resumes_and_is_deterministic(small_slide, run_result):
    again = tg.pipeline.run(small_slide.path, run_result.outdir, segmenter="watershed", graph="delaunay",
                            sample_size_um=128, progress=False)
    np.testing.assert_array_equal(again.cells.X, run_result.cells.X)


def test_demo_detects_synthetic_nuclei(tmp_path):
    res = tg.pipeline.demo(tmp_path / "demo", size=1536, seed=3, progress=False)
    rep = json.loads((tmp_path / "demo" / "demo_report.json").read_text())
    assert rep["f1"] >= 0.8, rep
    assert res.manifest["demo"]["n_true"] == rep["n_true"]


def test_cli_synth_segment_run(tmp_path, capsys):
    from PIL import Image

    from tissuegraph.cli import main

    assert main(["synth", str(tmp_path / "s.tiff"), "--size", "512", "--seed", "2", "--no-progress"]) == 0
    assert (tmp_path / "s.nuclei.csv").exists()
    # a plain PNG without µm/px: labels TIFF at native resolution, with a warning about pixel defaults
    img = tg.datasets.synthetic_tissue((400, 400), seed=4).image
    Image.fromarray(img).save(tmp_path / "plain.png")
    with pytest.warns(UserWarning, match="µm/px"):
        assert main(["segment", str(tmp_path / "plain.png"), "-o", str(tmp_path / "plain_labels.tif"),
                     "--method", "watershed", "--no-progress"]) == 0
    lab = tg.io.open_slide(tmp_path / "plain_labels.tif")
    assert lab.dimensions == (400, 400) and lab.read_region((0, 0), 0, (400, 400)).max() > 10
    assert main(["run", str(tmp_path / "s.tiff"), "-o", str(tmp_path / "out"), "--segmenter", "watershed",
                 "--graph", "knn", "--no-progress"]) == 0
    assert (tmp_path / "out" / "cells.h5ad").exists()
    # errors are reported as one clear line and exit code 2, not a traceback
    assert main(["run", str(tmp_path / "missing.svs"), "-o", str(tmp_path / "o2"), "--no-progress"]) == 2
    assert "No such slide" in capsys.readouterr().err
