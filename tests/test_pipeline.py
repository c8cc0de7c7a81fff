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


# several tiles (so that a run can be killed part-way), one worker (tiles done in order)
# (representations other than X_structural are tested once, in test_run_adds_representations)
RUN_KW = dict(segmenter="watershed", graph="delaunay", sample_size_um=128, tile_size=320, n_jobs=1, reps=())


@pytest.fixture(scope="module")
def run_result(small_slide, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return tg.pipeline.run(small_slide.path, out, progress=False, **RUN_KW)


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


def _assert_same_run(a, b):
    """Two runs gave the same nuclei, cells and samples (bit for bit; NaN where NaN)."""
    cols = [K.nuclei.x, K.nuclei.y, K.nuclei.area_px, *K.nuclei.bbox]
    pd.testing.assert_frame_equal(a.nuclei[cols].reset_index(drop=True), b.nuclei[cols].reset_index(drop=True))
    np.testing.assert_array_equal(a.cells.X, b.cells.X)
    np.testing.assert_array_equal(a.cells.obsm["spatial"], b.cells.obsm["spatial"])
    assert (a.cells.obsp["spatial_connectivities"] != b.cells.obsp["spatial_connectivities"]).nnz == 0
    assert list(a.samples.obs_names) == list(b.samples.obs_names)
    np.testing.assert_array_equal(a.samples.obsm["X_structural"], b.samples.obsm["X_structural"])


def test_samples_know_their_tissue(run_result):
    """The run measures every grid patch against the slide's tissue mask and keeps those at least
    half on tissue (the default recorded in the manifest)."""
    man = json.loads((run_result.outdir / "manifest.json").read_text())
    assert man["parameters"]["min_tissue_fraction"] == 0.5
    assert man["tissue"]["min_tissue_fraction"] == 0.5 and man["tissue"]["method"] == "od"
    obs = run_result.samples.obs
    assert (obs[K.obs.tissue_fraction] >= 0.5).all()
    np.testing.assert_allclose(obs[K.obs.tissue_fraction], obs[K.obs.tissue_area_um2] / obs[K.obs.area_um2])
    assert (obs[K.obs.tissue_area_um2] <= obs[K.obs.image_area_um2] + 1e-6).all()
    # the synthetic slide is 60 % tissue: some patches were dropped as glass
    assert man["tissue"]["patches_dropped"] > 0
    params = run_result.samples.uns["X_structural"]["params"]
    assert params["density_area"]["used"] == K.obs.tissue_area_um2


def test_run_is_deterministic_in_a_fresh_folder(small_slide, run_result, tmp_path):
    again = tg.pipeline.run(small_slide.path, tmp_path / "fresh", progress=False, **RUN_KW)
    assert again.manifest["counts"]["tiles"] == run_result.manifest["counts"]["tiles"] > 4
    _assert_same_run(again, run_result)


def test_killed_run_resumes_from_its_checkpoint(small_slide, run_result, tmp_path, caplog):
    """Kill a real run (another process) part-way through segmentation, run again: it reads the tiles
    done before the kill from the checkpoint, segments only the rest, and gives the clean run's result."""
    import logging
    import os
    import re
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "killed"
    kw = RUN_KW
    code = ("import tissuegraph as tg, sys; "
            f"tg.pipeline.run(sys.argv[1], sys.argv[2], progress=False, **{kw!r})")
    env = {**os.environ, "PYTHONPATH": str(Path(tg.__file__).parent.parent)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(small_slide.path), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = out / ".checkpoint"
    done: list = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 300 and proc.poll() is None:
            done = sorted(ckpt.glob("tile_*.pkl")) if ckpt.exists() else []
            if len(done) >= 2:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (out / "manifest.json").exists()  # the killed run never finished
    before = {p.name: p.stat().st_mtime_ns for p in ckpt.glob("tile_*.pkl")}
    n_tiles = json.loads((ckpt / "checkpoint.json").read_text())["key"]["n_tiles"]
    assert 2 <= len(before) < n_tiles, (len(before), n_tiles)

    with caplog.at_level(logging.INFO, logger="tissuegraph"):
        resumed = tg.pipeline.run(small_slide.path, out, progress=False, **kw)
    msg = [r.getMessage() for r in caplog.records if "resuming" in r.getMessage()]
    assert msg, "the second run did not resume"
    n_read, n_all = map(int, re.search(r"resuming, (\d+) of (\d+) tiles", msg[0]).groups())
    assert (n_read, n_all) == (len(before), n_tiles)
    # the tiles of the killed run were read, not redone; the others were segmented now
    after = {p.name: p.stat().st_mtime_ns for p in ckpt.glob("tile_*.pkl")}
    assert len(after) == n_tiles and all(after[k] == v for k, v in before.items())
    _assert_same_run(resumed, run_result)  # the run_result fixture is a clean run in its own folder


def test_run_adds_representations(small_slide, tmp_path):
    """Default representations (colour control, untrained GNN twins, an untrained CNN twin), and --train."""
    res = tg.pipeline.run(small_slide.path, tmp_path / "reps", segmenter="watershed", sample_size_um=128,
                          progress=False, train=True, train_epochs=1)
    samples = ad.read_h5ad(tmp_path / "reps" / "samples.h5ad")
    recs = samples.uns[K.uns.representations]
    keys = {k for k in samples.obsm if k.startswith("X_")}
    assert {"X_structural", "X_color"} <= keys
    gnn = {k for k in keys if k.startswith("X_gnn_gin_")}
    assert {f"X_gnn_gin_{i}_untrained_s{s}" for i in ("features", "topology") for s in (0, 1, 2)} <= gnn
    assert "X_gnn_gin_features_dgi" in gnn
    cnn = sorted(k for k in keys if k.startswith("X_cnn_resnet18"))
    assert len(cnn) == 2 and sum("untrained" in k for k in cnn) == 1, cnn
    trained_cnn = next(k for k in cnn if "untrained" not in k)
    for k in keys - {"X_structural"}:
        X = samples.obsm[k]
        assert X.shape[0] == samples.n_obs and np.isfinite(X).all(), k
        assert recs[k]["family"] in ("color", "gnn", "cnn"), k
    assert recs["X_gnn_gin_features_dgi"]["trained"] and not recs["X_gnn_gin_features_untrained_s0"]["trained"]
    assert recs["X_gnn_gin_features_dgi"]["twin_group"] == recs["X_gnn_gin_features_untrained_s1"]["twin_group"]
    assert recs[trained_cnn]["trained"] and recs[trained_cnn]["objective"] == "simclr"
    for name in ("gnn_gin_dgi", "cnn_resnet18_simclr"):  # trained models saved with their cards
        assert (tmp_path / "reps" / "models" / name / "model.safetensors").is_file()
    man = res.manifest
    assert man["parameters"]["reps"] == ["color", "gnn", "cnn"] and man["parameters"]["train"] is True
    assert {"color control", "gnn twins", "cnn twin"} <= set(man["timings"])
    with pytest.raises(tg.InputError, match="Unknown representation"):
        tg.pipeline.run(small_slide.path, tmp_path / "bad", reps=["vit"], progress=False)


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
