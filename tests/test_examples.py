"""Every script in examples/ runs end to end on a small synthetic slide (TG_EXAMPLE_SIZE)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# slide_analysis makes the run the others reuse, so it goes first
ORDER = ["slide_analysis.py", "compare_representations.py", "scanpy_squidpy_downstream.py", "culture_path.py"]


def test_every_example_is_listed():
    found = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
    assert found == sorted(ORDER)


@pytest.fixture(scope="module")
def example_env(tmp_path_factory):
    env = dict(os.environ, TG_EXAMPLE_OUT=str(tmp_path_factory.mktemp("examples")), TG_EXAMPLE_SIZE="640",
               MPLBACKEND="Agg", PYTHONPATH=str(EXAMPLES.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


@pytest.mark.slow
@pytest.mark.parametrize("name", ORDER)
def test_example_runs(name, example_env):
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], env=example_env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = Path(example_env["TG_EXAMPLE_OUT"])
    if name == "slide_analysis.py":
        run = out / "run"
        for f in ("cells.h5ad", "samples.h5ad", "manifest.json", "report.html", "overlay.png", "overlay_zoom.png",
                  "nhood_enrichment.png", "segmentation.png"):
            assert (run / f).stat().st_size > 0, f
        assert "niches:" in proc.stdout
    elif name == "compare_representations.py":  # every representation evaluated, gaps drawn
        for rep in ("X_structural", "X_color", "X_gnn_gin_features_dgi", "X_gnn_gin_topology_untrained_s0",
                    "X_cnn_resnet18_untrained_s0", "### Baseline gaps"):
            assert rep in proc.stdout, rep
        assert all((out / "run" / f).stat().st_size > 0 for f in ("scores.png", "gaps.png", "cka.png"))
    elif name == "scanpy_squidpy_downstream.py":
        assert "counts identical True" in proc.stdout
    elif name == "culture_path.py":
        assert (out / "culture" / "plate_n_cells.png").exists()
        assert " wells" in proc.stdout and "NSC " in proc.stdout and "multinucleation" in proc.stdout
