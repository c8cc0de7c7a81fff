"""tg.pipeline.run and demo leave OUTDIR/report.html behind, with the run's own sections."""

from __future__ import annotations

import re

import pytest

import tissuegraph as tg


@pytest.mark.slow
def test_demo_writes_the_report(tmp_path):
    # 768 px at 0.5 µm/px: at least one 256 µm patch is half on tissue, so there are samples to report
    res = tg.pipeline.demo(tmp_path, size=768, segmenter="watershed", progress=False)
    text = (tmp_path / "report.html").read_text()
    for sid in ("run", "segmentation", "overlay", "representations", "diagnostics"):
        assert f'<section id="{sid}">' in text, sid
    assert "centroid f1" in text  # the demo's scores against the ground truth
    assert f"{res.manifest['counts']['nuclei']:,}" in text
    assert len(re.findall(r'src="data:image/png;base64,', text)) >= 4


def test_run_writes_the_report(tmp_path):
    syn = tg.datasets.synthetic_slide(tmp_path / "s.tiff", size=256, seed=2, progress=False)
    tg.pipeline.run(syn.path, tmp_path / "out", segmenter="watershed", progress=False)
    text = (tmp_path / "out" / "report.html").read_text()
    assert '<section id="overlay">' in text and "s.tiff" in text
