"""`tissuegraph culture demo` end to end (ground-truth masks, so no TensorFlow) and the BBBC021 bench."""

from __future__ import annotations

import pandas as pd
import pytest

from tissuegraph.cli import main


def test_culture_demo_writes_results(tmp_path, capsys):
    rc = main(["culture", "demo", "-o", str(tmp_path), "--segmenter", "truth", "--null-size", "200",
               "--no-progress", "--no-networks"])  # the crop encoders: tests/culture/test_crops.py
    assert rc == 0
    res = pd.read_csv(tmp_path / "results.csv")
    assert {"representation", "protocol", "metric", "value"} <= set(res.columns)
    got = res.set_index("metric")["value"]
    # the synthetic mechanisms are recoverable from hand-crafted profiles: far above chance (1 in 5)
    assert got["NSC"] >= 0.5 and 0 <= got["NSCB"] <= 1
    assert (tmp_path / "summary.md").read_text().startswith("# tissuegraph culture bench")
    import anndata as ad

    wells = ad.read_h5ad(tmp_path / "wells.h5ad")
    assert "X_profile" in wells.obsm and wells.uns["representations"]["X_profile"]["family"] == "profile"
    # report.html through tissuegraph bench's writer: the representations and the evaluation are on the page
    page = (tmp_path / "report.html").read_text()
    assert "X_profile" in page and "Representations" in page and "<h3>Scores</h3>" in page


def test_culture_bench_errors(tmp_path, capsys):
    rc = main(["culture", "bench", "-o", str(tmp_path), "--dataset", str(tmp_path / "nope"), "--no-progress"])
    assert rc == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.shared_data
def test_culture_bench_bbbc021(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("TISSUEGRAPH_SHARED_DATA", str(shared_data))
    assert main(["culture", "bench", "--dataset", "bbbc021", "--quick", "-o", str(tmp_path), "--null-size", "100",
                 "--no-progress"]) == 0
    res = pd.read_csv(tmp_path / "results.csv")
    chosen = res[res.representation == "X_profile"].set_index("metric")["value"]
    ref = res[res.representation == "X_profile_reference"].set_index("metric")["value"]
    # the documented figures (benchmarks/results/bbbc021.md): the reference pipeline and the label-free choice
    assert ref["NSC"] == pytest.approx(0.767, abs=1e-3) and ref["NSCB"] == pytest.approx(0.685, abs=1e-3)
    assert chosen["NSC"] == pytest.approx(0.883, abs=1e-3) and chosen["NSCB"] == pytest.approx(0.685, abs=1e-3)
    # per-well profiles only: the summary says that no network could run, and the profiles are still evaluated
    md = (tmp_path / "summary.md").read_text()
    assert "no images" in md and "## Scores: mean [95 % interval]" in md
    assert {"linear_probe", "retrieval"} <= set(res.protocol)
