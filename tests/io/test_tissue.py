"""Tissue masks: IoU >= 0.9 against the synthetic slides' ground truth; glass and all-tissue slides."""

from __future__ import annotations

import numpy as np
import pytest

import tissuegraph as tg


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize("seed,fraction,stain,blur", [(0, 0.6, None, 0.0), (1, 0.35, "random", 1.0),
                                                        (2, 0.8, "macenko", 0.0)])
def test_tissue_mask_iou_on_synthetic_slides(tmp_path, seed, fraction, stain, blur):
    syn = tg.datasets.synthetic_slide(tmp_path / "s.tiff", size=2048, seed=seed, tissue_fraction=fraction,
                                      stain=stain, blur_um=blur, progress=False)
    slide = tg.io.open_slide(syn.path)
    tm = tg.io.tissue_mask(slide)
    truth = tg.io.TissueMask(syn.read_tissue_mask() > 0, slide.dimensions)
    assert _iou(tm.mask, truth.resized(tm.mask.shape)) >= 0.9
    assert abs(tm.fraction - truth.fraction) < 0.1


def test_glass_only_and_all_tissue():
    rng = np.random.default_rng(0)
    glass = np.clip(rng.normal(242, 3, (1500, 1500, 3)), 0, 255).astype(np.uint8)
    assert tg.io.tissue_mask(tg.io.open_slide(glass, mpp=0.5)).empty
    tissue = tg.datasets.synthetic_tissue((1024, 1024), seed=3, tissue_fraction=1.0).image
    tm = tg.io.tissue_mask(tg.io.open_slide(tissue, mpp=0.5))
    assert tm.fraction > 0.95


def test_fluorescence_mask_dark_background():
    img = np.zeros((800, 800), np.uint16)
    img[200:600, 100:500] = 3000
    img += np.random.default_rng(0).integers(0, 50, img.shape).astype(np.uint16)
    tm = tg.io.tissue_mask(tg.io.open_slide(img, mpp=1.0))
    assert tm.params["method"] == "fluorescence"
    truth = np.zeros((800, 800), bool)
    truth[200:600, 100:500] = True
    assert _iou(tm.mask, tg.io.TissueMask(truth, (800, 800)).resized(tm.mask.shape)) > 0.9


def test_mask_without_mpp_warns_and_all_method():
    img = np.full((400, 400, 3), 250, np.uint8)
    img[100:300, 100:300] = (150, 80, 160)  # 100 x 100 µm at the assumed 0.5 µm/px
    with pytest.warns(UserWarning, match="µm/px unknown"):
        tm = tg.io.tissue_mask(tg.io.open_slide(img))
    assert 0.2 < tm.fraction < 0.35  # true 0.25; the 16 µm smoothing widens the edge by a few µm
    assert tg.io.tissue_mask(tg.io.open_slide(img, mpp=1), method="all").fraction == 1.0
    with pytest.raises(tg.InputError, match="method"):
        tg.io.tissue_mask(tg.io.open_slide(img, mpp=1), method="magic")
