"""Synthetic plate ground truth; per-cell features by hand and against cp_measure; segmentation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tissuegraph as tg
from tissuegraph import InputError


@pytest.fixture(scope="module")
def plate():
    return tg.culture.synthetic_plate(n_batches=2, plates_per_batch=1, rows=3, columns=4, compounds_per_mechanism=1,
                                      size=128, cells_per_site=20, seed=3)


def test_synthetic_plate_layout_and_truth(plate):
    s = plate.sites
    assert len(s) == len(plate.images) == 24 and plate.images[0].shape == (128, 128, 3)
    assert set(s["moa"]) == {*tg.culture.MECHANISMS, "control"}
    assert s.groupby("plate")["is_control"].sum().min() >= 2
    t = plate.truth.merge(s[["moa"]].reset_index().rename(columns={"index": "site_index"}), on="site_index")
    ctrl = t[t.moa == "control"]
    assert t[t.moa == "nuclear_size"].nucleus_radius_px.mean() > 1.2 * ctrl.nucleus_radius_px.mean()
    assert t[t.moa == "multinucleation"].n_nuclei.mean() > 1.5 and (ctrl.n_nuclei == 1).all()
    per_site = s.assign(n=plate.truth.groupby("site_index").size().reindex(range(len(s)), fill_value=0).to_numpy())
    assert per_site[per_site.moa == "cell_count"].n.mean() < 0.6 * per_site[per_site.is_control].n.mean()
    # labels agree with the table; nuclei lie inside their cells
    for i in range(len(s)):
        assert set(np.unique(plate.cells[i])) - {0} == set(plate.truth.label[plate.truth.site_index == i])
        nz = plate.nuclei[i] > 0
        assert (plate.cells[i][nz] == plate.nuclei[i][nz]).all()
    # tubulin/actin ratio raised by the channel_ratio mechanism (inside the cells)
    def ratio(i):
        m = (plate.cells[i] > 0) & (plate.nuclei[i] == 0)
        return plate.images[i][..., 2][m].mean() / plate.images[i][..., 1][m].mean()
    r_ctrl = np.mean([ratio(i) for i in np.flatnonzero(s.is_control)])
    r_mech = np.mean([ratio(i) for i in np.flatnonzero(s.moa == "channel_ratio")])
    assert r_mech > 1.8 * r_ctrl
    again = tg.culture.synthetic_plate(n_batches=2, plates_per_batch=1, rows=3, columns=4, compounds_per_mechanism=1,
                                       size=128, cells_per_site=20, seed=3)
    np.testing.assert_array_equal(again.images[5], plate.images[5])
    with pytest.raises(InputError, match="cannot hold"):
        tg.culture.synthetic_plate(rows=2, columns=2)


def _two_cells():
    cells = np.zeros((20, 30), np.int32)
    cells[2:12, 2:12] = 1
    cells[4:18, 15:29] = 2
    nuclei = np.zeros_like(cells)
    nuclei[5:9, 5:9] = 1
    nuclei[6:9, 17:20] = 2
    nuclei[12:15, 23:26] = 2  # cell 2 has two nuclei
    rng = np.random.default_rng(0)
    image = rng.random((20, 30, 2)).astype(np.float32)
    return image, nuclei, cells


def test_cell_features_by_hand():
    image, nuclei, cells = _two_cells()
    f = tg.culture.cell_features(image, nuclei=nuclei, cells=cells, channel_names=["DNA", "actin"])
    assert f.index.tolist() == [1, 2]
    assert f.loc[1, "Cells_area_um2"] == 100 and f.loc[2, "Nuclei_area_um2"] == 18
    assert f.loc[1, "Cytoplasm_actin_mean"] == pytest.approx(image[..., 1][(cells == 1) & (nuclei == 0)].mean(), rel=1e-6)
    r = np.corrcoef(image[..., 0][cells == 2], image[..., 1][cells == 2])[0, 1]
    assert f.loc[2, "Cells_Correlation_DNA_actin"] == pytest.approx(r, rel=1e-9)
    assert f["Cells_Children_Nuclei_Count"].tolist() == [1.0, 2.0]
    frac = f[[f"Cells_RadialDistribution_FracAtD_DNA_{k}of4" for k in range(1, 5)]].sum(axis=1)
    np.testing.assert_allclose(frac, 1.0)
    with pytest.raises(InputError, match="shape"):
        tg.culture.cell_features(image, nuclei=nuclei[:5], cells=cells)


def test_cell_features_equal_cp_measure(plate):
    cpm = pytest.importorskip("cp_measure.bulk")
    i = int(np.flatnonzero(plate.sites.is_control)[0])
    img, nuc, cel = plate.images[i], plate.nuclei[i], plate.cells[i]
    f = tg.culture.cell_features(img, nuclei=nuc, cells=cel, channel_names=plate.channels)
    core = cpm.get_core_measurements()
    for c, ch in enumerate(plate.channels):
        ref = core["intensity"](cel, img[..., c].astype(np.float64))
        for ours, theirs in (("mean", "Intensity_MeanIntensity"), ("std", "Intensity_StdIntensity"),
                             ("min", "Intensity_MinIntensity"), ("max", "Intensity_MaxIntensity"),
                             ("median", "Intensity_MedianIntensity"), ("integrated_um2", "Intensity_IntegratedIntensity")):
            np.testing.assert_allclose(f[f"Cells_{ch}_{ours}"].to_numpy(),
                                       ref[theirs], rtol=1e-5, atol=1e-6, err_msg=f"{ch} {ours}")
    size = core["sizeshape"](cel, None)
    for ours, theirs in (("area_um2", "Area"), ("area_convex_um2", "ConvexArea"),
                         ("equivalent_diameter_um", "EquivalentDiameter"), ("major_axis_length_um", "MajorAxisLength"),
                         ("minor_axis_length_um", "MinorAxisLength"), ("eccentricity", "Eccentricity"),
                         ("perimeter_um", "Perimeter")):
        np.testing.assert_allclose(f[f"Cells_{ours}"].to_numpy(), size[theirs], rtol=1e-6, err_msg=ours)
    corr = cpm.get_correlation_measurements()["pearson"](img[..., 0].astype(np.float64), img[..., 1].astype(np.float64), cel)
    np.testing.assert_allclose(f["Cells_Correlation_DNA_actin"].to_numpy(), corr["Correlation_Pearson"], rtol=1e-5)


def test_single_cells_to_wells(plate):
    cells = tg.culture.single_cells(plate, use_truth=True, sites=range(6))
    assert cells.n_obs == int(plate.truth.site_index.isin(range(6)).sum())
    assert {"plate", "well", "compound", "moa", "is_control"} <= set(cells.obs.columns)
    assert cells.obsm["spatial"].shape == (cells.n_obs, 2) and np.isfinite(cells.X[:, :5]).all()
    wells = tg.culture.aggregate(cells)
    assert wells.n_obs == 6 and wells.obs["n_cells"].sum() == cells.n_obs


def test_segment_cells_watershed(plate):
    i = int(np.flatnonzero(plate.sites.is_control)[0])
    nuc, cel = tg.culture.segment_cells(plate.images[i], dna=0, cytoplasm=1, nuclei="watershed", mpp=plate.mpp)
    n_true = int(plate.truth.site_index.eq(i).sum())
    assert abs(int(nuc.max()) - n_true) <= max(2, 0.2 * n_true)
    inside = nuc > 0
    assert (cel[inside] == nuc[inside]).all()
    # cells are larger than their nuclei and overlap the true cell bodies well
    assert (cel > 0).sum() > 2 * inside.sum()
    true_fg, fg = plate.cells[i] > 0, cel > 0
    assert (true_fg & fg).sum() / (true_fg | fg).sum() > 0.7
    # given labels are used as they are
    nuc2, cel2 = tg.culture.segment_cells(plate.images[i], nuclei=plate.nuclei[i])
    assert nuc2.max() == plate.nuclei[i].max()
