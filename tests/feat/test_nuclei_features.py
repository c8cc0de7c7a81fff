"""tg.feat.nuclei_features: the cells AnnData from a nucleus table and a slide."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

import tissuegraph as tg
from tissuegraph import _keys as K
from tissuegraph._contours import label_contours, tile_offset
from tissuegraph.feat import label_features, nuclei_features

from ..helpers import disks_image


def _table(labels: np.ndarray, *, scale: float = 1.0, seg_mpp: float | None = 0.5, slide: str = "s1",
           cell_types: bool = True) -> pd.DataFrame:
    """A nucleus table as tg.seg.nuclei writes it, from a label image at ``scale`` level-0 px per px."""
    off = tile_offset((0, 0), scale)
    cont = label_contours(labels, offset=off, scale=scale)
    ids = np.array(list(cont), dtype=np.int64)
    cy, cx = np.array(ndi.center_of_mass(np.ones_like(labels), labels, ids)).reshape(-1, 2).T
    df = pd.DataFrame({
        "nucleus_id": ids,
        "x": off[0] + scale * cx, "y": off[1] + scale * cy,
        "contour": list(cont.values()),
        "tile": ids % 3,
        "score": np.nan,
        "slide": slide,
    })
    if cell_types:
        df["cell_type"] = np.where(ids % 2 == 0, "epithelial", "stroma")
    df.attrs.update({"seg_mpp": seg_mpp, "mpp": seg_mpp, "method": "test"})
    return df


@pytest.fixture(scope="module")
def case():
    img, lab = disks_image(shape=(300, 360), n=40, seed=1)
    rng = np.random.default_rng(0)
    img = np.clip(img.astype(int) + rng.integers(-30, 30, img.shape), 0, 255).astype(np.uint8)
    return img, lab


def test_cells_anndata_layout(case):
    img, lab = case
    slide = tg.io.open_slide(img, mpp=0.5)
    nuc = _table(lab)
    adata = nuclei_features(nuc, slide, progress=False)
    n = len(nuc)
    assert adata.shape[0] == n and adata.shape[1] >= 40
    assert adata.X.dtype == np.float32
    assert list(adata.obs_names) == [str(i) for i in nuc["nucleus_id"]]
    np.testing.assert_array_equal(adata.obs[K.obs.nucleus_id], nuc["nucleus_id"])
    assert isinstance(adata.obs[K.obs.slide].dtype, pd.CategoricalDtype)
    assert set(adata.obs[K.obs.slide]) == {"s1"}
    np.testing.assert_array_equal(adata.obs[K.obs.tile], nuc["tile"])
    assert isinstance(adata.obs[K.obs.cell_type].dtype, pd.CategoricalDtype)
    np.testing.assert_array_equal(adata.obsm[K.obsm.spatial], nuc[["x", "y"]].to_numpy())
    assert adata.obsm[K.obsm.spatial].dtype == np.float64
    assert {"area_um2", "perimeter_um", "major_axis_length_um", "eccentricity"} <= set(adata.var_names)
    assert adata.var.loc["area_um2", K.var.unit] == "µm²"
    assert adata.var.loc["perimeter_um", K.var.unit] == "µm"
    assert set(adata.var[K.var.group]) == {"shape", "intensity", "texture"}
    assert tg._anndata.get_mpp(adata) == 0.5
    assert adata.uns[K.uns.nuclei_features]["params"]["stain"] == "he"
    # values equal the kernel on the whole image (segmentation resolution = slide resolution)
    ref = label_features(lab, img, spacing=0.5)
    np.testing.assert_allclose(adata.X, ref.loc[nuc["nucleus_id"]].to_numpy().astype(np.float32),
                               rtol=1e-6, equal_nan=True)


def test_cells_anndata_writes_h5ad(case, tmp_path):
    img, lab = case
    adata = nuclei_features(_table(lab), tg.io.open_slide(img, mpp=0.5), features="shape", progress=False)
    adata.write_h5ad(tmp_path / "cells.h5ad")
    import anndata as ad

    back = ad.read_h5ad(tmp_path / "cells.h5ad")
    np.testing.assert_array_equal(back.X, adata.X)
    assert back.var.loc["area_um2", K.var.unit] == "µm²"


def test_independent_of_block_size_and_jobs(case):
    img, lab = case
    slide = tg.io.open_slide(img, mpp=0.5)
    nuc = _table(lab)
    big = nuclei_features(nuc, slide, tile_size=4096, progress=False)
    small = nuclei_features(nuc, slide, tile_size=50, progress=False, n_jobs=2)
    np.testing.assert_array_equal(big.X, small.X)


def test_overlapping_nuclei_keep_their_whole_mask(case):
    img, _ = case
    a = np.zeros((300, 360), np.int32)
    a[50:70, 50:80] = 1
    b = np.zeros_like(a)
    b[60:90, 70:95] = 2  # overlaps nucleus 1
    nuc = pd.concat([_table(a), _table(b)], ignore_index=True)
    adata = nuclei_features(nuc, tg.io.open_slide(img, mpp=0.5), features=["area_um2", "extent"],
                            progress=False)
    np.testing.assert_allclose(adata[:, "area_um2"].X.ravel(), [600 * 0.25, 750 * 0.25])
    np.testing.assert_allclose(adata[:, "extent"].X.ravel(), [1, 1])


def test_segmentation_at_coarser_resolution(case):
    """Seg at 0.5 µm/px on a 0.25 µm/px slide: masks are rebuilt exactly from the contours."""
    img, lab = case
    img0 = np.kron(img, np.ones((2, 2, 1), dtype=np.uint8))  # the same tissue at level 0 = 0.25 µm/px
    slide = tg.io.open_slide(img0, mpp=0.25)
    nuc = _table(lab, scale=2.0, seg_mpp=0.5)
    adata = nuclei_features(nuc, slide, features="shape", progress=False)
    ref = label_features(lab, spacing=0.5, features="shape")
    np.testing.assert_allclose(adata.X, ref.loc[nuc["nucleus_id"]].to_numpy().astype(np.float32),
                               rtol=1e-6, equal_nan=True)
    # intensities come from the resampled slide: close to the segmentation-resolution image
    ad_int = nuclei_features(nuc, slide, features=["red_median"], progress=False)
    ref_int = label_features(lab, img, features=["red_median"])
    np.testing.assert_allclose(ad_int.X.ravel(), ref_int.loc[nuc["nucleus_id"], "red_median"], atol=25)
    # measuring at level 0 (mpp=0.25) instead: areas in µm² are about the same
    fine = nuclei_features(nuc, slide, features=["area_um2"], mpp=0.25, progress=False)
    np.testing.assert_allclose(fine.X.ravel(), ref.loc[nuc["nucleus_id"], "area_um2"], rtol=1e-6)


def test_fluorescence_slide_with_channel_names():
    rng = np.random.default_rng(0)
    _, lab = disks_image(shape=(120, 150), n=10, seed=3, rgb=False)
    img = rng.integers(0, 4000, lab.shape + (2,)).astype(np.uint16)
    slide = tg.io.open_slide(img, mpp=0.65)
    nuc = _table(lab, seg_mpp=None, cell_types=False)
    adata = nuclei_features(nuc, slide, channel_names=["dapi", "ki67"], progress=False)
    assert "dapi_mean" in adata.var_names and "ki67_integrated_um2" in adata.var_names
    assert "dapi_glcm_contrast" in adata.var_names
    assert K.obs.cell_type not in adata.obs
    assert adata.uns[K.uns.nuclei_features]["params"]["stain"] == "fluorescence"
    ref = label_features(lab, img, spacing=0.65, channel_names=["dapi", "ki67"])
    np.testing.assert_allclose(adata.X, ref.loc[nuc["nucleus_id"]].to_numpy().astype(np.float32),
                               rtol=1e-6, equal_nan=True)


def test_errors(case):
    img, lab = case
    nuc = _table(lab)
    slide = tg.io.open_slide(img, mpp=0.5)
    with pytest.raises(tg.InputError, match="contour"):
        nuclei_features(nuc.drop(columns="contour"), slide)
    with pytest.raises(tg.InputError, match="DataFrame"):
        nuclei_features(nuc.to_dict(), slide)
    two = nuc.copy()
    two.loc[0, "slide"] = "other"
    with pytest.raises(tg.InputError, match="once per slide"):
        nuclei_features(two, slide)
    dup = pd.concat([nuc, nuc.iloc[:1]], ignore_index=True)
    with pytest.raises(tg.InputError, match="duplicates"):
        nuclei_features(dup, slide)
    with pytest.raises(tg.MissingMppError):
        nuclei_features(_table(lab, seg_mpp=None), tg.io.open_slide(img))
    with pytest.raises(tg.InputError, match="Unknown feature"):
        nuclei_features(nuc, slide, features=["nope"])


def test_empty_table(case):
    img, _ = case
    nuc = _table(np.zeros((10, 10), np.int32))
    adata = nuclei_features(nuc, tg.io.open_slide(img, mpp=0.5), progress=False)
    assert adata.shape[0] == 0 and adata.shape[1] >= 40
