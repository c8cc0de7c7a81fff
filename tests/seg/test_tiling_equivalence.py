"""The issue's acceptance test: tiled segmentation equals the whole-image result (F1 >= 0.99 at IoU 0.5),
for every real backend, on real images shipped inside installed packages."""

from __future__ import annotations

import pytest

import tissuegraph as tg
from tissuegraph._contours import rasterize_contours


def _labels(df, shape):
    return rasterize_contours(list(df["contour"]), shape, ids=df["nucleus_id"].to_numpy())


def _f1(a, b):
    return float(tg.seg.matching_scores(a, b, thresholds=(0.5,))["f1"].iloc[0])


@pytest.fixture(scope="module")
def fluo():
    data = pytest.importorskip("stardist.data")
    img, _ = data.test_image_nuclei_2d(return_mask=True)
    return img


@pytest.mark.parametrize("method", ["watershed", "stardist"])
def test_fluorescence_tiled_equals_whole(fluo, method):
    whole = tg.seg.nuclei(fluo, method=method, tile_size=2048, mask="all")
    assert whole.attrs["n_tiles"] == 1 and len(whole) > 80
    for tile_size, n_jobs in [(256, 1), (384, 2)]:
        tiled = tg.seg.nuclei(fluo, method=method, tile_size=tile_size, mask="all", n_jobs=n_jobs)
        assert tiled.attrs["n_tiles"] > 1
        assert _f1(_labels(whole, fluo.shape), _labels(tiled, fluo.shape)) >= 0.99


def test_he_watershed_tiled_equals_whole():
    from skimage.data import immunohistochemistry

    ihc = immunohistochemistry()  # real IHC (hematoxylin + DAB), 512 x 512
    syn = tg.datasets.synthetic_tissue((768, 768), seed=107).image
    for img in (ihc, syn):
        whole = tg.seg.nuclei(img, method="watershed", slide_mpp=0.5, tile_size=2048, mask="all")
        tiled = tg.seg.nuclei(img, method="watershed", slide_mpp=0.5, tile_size=256, mask="all", n_jobs=2)
        assert len(whole) > 50
        assert _f1(_labels(whole, img.shape[:2]), _labels(tiled, img.shape[:2])) >= 0.99


def test_stardist_tta_tiled_equals_whole(fluo):
    """Test-time augmentation happens inside each tile's network phase; tiling still changes nothing."""
    whole = tg.seg.nuclei(fluo, method="stardist", tta=8, tile_size=2048, mask="all")
    tiled = tg.seg.nuclei(fluo, method="stardist", tta=8, tile_size=384, mask="all", n_jobs=2)
    assert whole.attrs["n_tiles"] == 1 and tiled.attrs["n_tiles"] > 1 and len(whole) > 80
    assert _f1(_labels(whole, fluo.shape), _labels(tiled, fluo.shape)) >= 0.99
