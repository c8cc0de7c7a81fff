"""tg.report.write_report: one self-contained HTML file with the sections whose inputs exist."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

import tissuegraph as tg

from .pl.test_pl import _eval_tables
from .tl.conftest import make_cells


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import matplotlib

    matplotlib.use("Agg")
    out = tmp_path_factory.mktemp("run")
    cells = make_cells(400, graph="delaunay", extent=300.0)
    samples = tg.graph.grid_samples(cells, size_um=40)
    tg.graph.descriptors(cells, samples)
    samples.obs["label"] = pd.Categorical(np.where(samples.obsm["spatial"][:, 0] < 150, "left", "right"))
    samples.uns["tg_eval"] = _eval_tables()
    samples.uns["tg_eval"]["flags"] = ["slide predicts the label almost perfectly (shortcut)"]
    samples.uns["tg_eval"]["probes"] = pd.DataFrame({"representation": ["X_structural"], "target": ["slide"],
                                                     "kind": ["shortcut"], "metric": ["accuracy"], "value": [0.5]})
    samples.uns["representations"] = {
        "X_gnn_gin_features_dgi": {"family": "gnn", "trained": True, "learned": True, "objective": "dgi"}}
    manifest = {"tissuegraph": tg.__version__, "created": "2026-01-01T00:00:00",
                "input": {"slide_id": "toy", "dimensions": [300, 300], "mpp": 0.5},
                "parameters": {"graph": "delaunay", "seed": 0}, "counts": {"nuclei": 400, "samples": samples.n_obs},
                "timings": {"segment": 1.5, "total": 2.0}, "versions": {"numpy": np.__version__}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    rng = np.random.default_rng(0)
    slide = tg.io.open_slide((rng.uniform(150, 255, (300, 300, 3))).astype(np.uint8), mpp=0.5)
    path = tg.report.write_report(out, cells=cells, samples=samples, slide=slide)
    return path


def test_report_is_one_self_contained_file(run_dir):
    text = run_dir.read_text()
    assert run_dir.name == "report.html" and text.startswith("<!DOCTYPE html>")
    assert "<script" not in text.lower()
    # nothing fetched from elsewhere: every src / href is an in-page anchor or embedded data
    for attr in re.findall(r'(?:src|href)="([^"]*)"', text):
        assert attr.startswith("#") or attr.startswith("data:image/png;base64,"), attr
    assert "http://" not in text and "https://" not in text
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(imgs) >= 5
    for b64 in imgs:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_sections_and_reading(run_dir):
    text = run_dir.read_text()
    for sid in ("run", "overlay", "representations", "results", "diagnostics"):
        assert f'<section id="{sid}">' in text, sid
    assert '<section id="segmentation">' not in text  # no nucleus table and no demo scores given
    assert "Timings" in text and "segment" in text and "delaunay" in text
    assert "X_structural" in text
    # the plain-language reading of the gaps table
    assert "Against the structural baseline" in text
    assert "cannot be told apart from" in text and "the interval includes 0" in text
    assert "shortcut" in text


def test_report_reads_a_folder_with_only_a_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"parameters": {"a": 1}, "timings": {"total": 1.0}}))
    text = tg.report.write_report(tmp_path).read_text()
    assert '<section id="run">' in text and '<section id="results">' not in text
