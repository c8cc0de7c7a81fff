"""The synthetic diagnostic benchmark: each label depends on its one factor, and the pipeline sees it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import tissuegraph as tg
from tissuegraph import _keys as K
from tissuegraph.datasets import DIAGNOSTIC_FACTORS, diagnostic_benchmark, spot_expression


@pytest.fixture(scope="module")
def small():
    # 16 samples per factor, 96 µm images: cheap (no segmentation)
    return diagnostic_benchmark(factor="all", n_samples=16, size_um=96.0, seed=3, n_patients=4, progress_bar=False)


def _by(ds, factor):
    obs = ds.obs[ds.obs["factor"] == factor]
    truth = ds.truth[ds.truth[K.obs.sample].isin(obs.index)]
    return obs, truth


def _region_rgb(ds, ids):
    out = []
    pos = {s: i for i, s in enumerate(ds.obs.index)}
    for s in ids:
        x0, y0, x1, y1 = (int(round(v + 0.5)) for v in ds.regions[pos[s]].bounds)
        out.append(ds.image[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0))
    return np.array(out)


def _nn_um(truth, mpp):
    from scipy.spatial import cKDTree

    out = {}
    for s, t in truth.groupby(K.obs.sample):
        xy = t[[K.truth.x, K.truth.y]].to_numpy()
        d, _ = cKDTree(xy).query(xy, k=2)
        out[s] = float(np.median(d[:, 1])) * mpp
    return out


def test_layout_and_labels(small):
    ds = small
    assert ds.n_samples == 4 * 16 and ds.kind == "region" and ds.image.dtype == np.uint8
    assert set(ds.obs["factor"]) == set(DIAGNOSTIC_FACTORS)
    for f in DIAGNOSTIC_FACTORS:
        obs, _ = _by(ds, f)
        assert obs[K.obs.label].astype(str).value_counts().tolist() == [8, 8]  # balanced
        # every patient has both labels, so grouped splits cannot follow the label
        assert (obs.groupby(K.obs.patient, observed=True)[K.obs.label].nunique() == 2).all()
    assert [t["subset"]["factor"] for t in ds.tasks] == list(DIAGNOSTIC_FACTORS)
    # truth centroids lie inside their sample's box
    pos = {s: i for i, s in enumerate(ds.obs.index)}
    b = np.array([ds.regions[pos[s]].bounds for s in ds.truth[K.obs.sample]])
    xy = ds.truth[[K.truth.x, K.truth.y]].to_numpy()
    assert ((xy >= b[:, :2]) & (xy < b[:, 2:])).all()


def test_stain_factor_changes_colour_only(small):
    obs, truth = _by(small, "stain")
    a, b = (obs[K.obs.label] == "stain_a").to_numpy(), (obs[K.obs.label] == "stain_b").to_numpy()
    # the tissue: nucleus counts, sizes, shapes and spacing come from one distribution
    assert stats.mannwhitneyu(obs["n_true"][a], obs["n_true"][b]).pvalue > 0.01
    ta = truth[truth[K.obs.sample].isin(obs.index[a])]
    tb = truth[truth[K.obs.sample].isin(obs.index[b])]
    for col in (K.truth.area_px, K.truth.major_axis_um, K.truth.minor_axis_um):
        assert stats.ks_2samp(ta[col], tb[col]).pvalue > 0.001, col
    nn = _nn_um(truth, small.mpp)
    assert stats.mannwhitneyu([nn[s] for s in obs.index[a]], [nn[s] for s in obs.index[b]]).pvalue > 0.01
    # the colour differs completely: every stain_b sample has a higher blue/red ratio than every stain_a one
    rgb = _region_rgb(small, obs.index)
    ratio = rgb[:, 2] / rgb[:, 0]
    assert ratio[b].min() > ratio[a].max() or ratio[b].max() < ratio[a].min()


def test_density_factor_changes_counts_only(small):
    obs, truth = _by(small, "density")
    dense = (obs[K.obs.label] == "dense").to_numpy()
    area_um2 = 96.0 ** 2
    assert obs["n_true"][dense].min() >= 2.6 * area_um2 / 1000 - 1
    assert obs["n_true"][~dense].max() <= 1.6 * area_um2 / 1000 + 1
    td = truth[truth[K.obs.sample].isin(obs.index[dense])]
    ts = truth[truth[K.obs.sample].isin(obs.index[~dense])]
    assert stats.ks_2samp(td[K.truth.major_axis_um], ts[K.truth.major_axis_um]).pvalue > 0.001
    # cell-type composition: one mixture (chi-square on pooled counts)
    tab = np.array([td[K.truth.cell_type].value_counts(sort=False).to_numpy(),
                    ts[K.truth.cell_type].value_counts(sort=False).to_numpy()])
    assert stats.chi2_contingency(tab).pvalue > 0.001


def test_morphology_factor_changes_shape_at_equal_area(small):
    obs, truth = _by(small, "morphology")
    el = truth[K.obs.sample].isin(obs.index[obs[K.obs.label] == "elongated"]).to_numpy()
    ratio = (truth[K.truth.minor_axis_um] / truth[K.truth.major_axis_um]).to_numpy()
    assert np.median(ratio[el]) < 0.55 < 0.75 < np.median(ratio[~el])
    area = (np.pi / 4 * truth[K.truth.minor_axis_um] * truth[K.truth.major_axis_um]).to_numpy()
    assert abs(np.mean(area[el]) / np.mean(area[~el]) - 1) < 0.1
    assert stats.mannwhitneyu(obs["n_true"][obs[K.obs.label] == "round"],
                              obs["n_true"][obs[K.obs.label] == "elongated"]).pvalue > 0.01


def test_structure_factor_changes_arrangement_only(small):
    obs, truth = _by(small, "structure")
    cl = (obs[K.obs.label] == "clustered").to_numpy()
    assert stats.mannwhitneyu(obs["n_true"][cl], obs["n_true"][~cl]).pvalue > 0.01
    tc = truth[truth[K.obs.sample].isin(obs.index[cl])]
    td = truth[truth[K.obs.sample].isin(obs.index[~cl])]
    assert stats.ks_2samp(tc[K.truth.area_px], td[K.truth.area_px]).pvalue > 0.001
    # clustered nuclei have closer nearest neighbours at the same count
    nn = _nn_um(truth, small.mpp)
    assert np.median([nn[s] for s in obs.index[cl]]) < 0.8 * np.median([nn[s] for s in obs.index[~cl]])


def test_deterministic_by_seed():
    kw = dict(factor="density", n_samples=4, size_um=64.0, progress_bar=False)
    a, b, c = diagnostic_benchmark(seed=5, **kw), diagnostic_benchmark(seed=5, **kw), diagnostic_benchmark(seed=6, **kw)
    assert np.array_equal(a.image, b.image)
    assert a.obs.equals(b.obs) and a.truth.equals(b.truth)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("kw", [dict(factor="colour"), dict(factor=[]), dict(n_samples=2), dict(size_um=10.0),
                                dict(mpp=5.0), dict(seed=-1)])
def test_bad_arguments(kw):
    with pytest.raises(tg.InputError):
        diagnostic_benchmark(**kw)


def test_spot_expression_is_the_stated_function():
    comp = np.array([[0, 0, 0, 0], [3, 1, 10, 2], [0, 5, 0, 20], [8, 2, 4, 4]], float)
    expr, mean, names, p = spot_expression(comp, n_genes=9, seed=2)
    b, W, c = np.array(p["baseline"]), np.array(p["weights"]), np.array(p["contact"])
    lym, tum = comp[:, 2], comp[:, 3]
    mu = b + comp @ W.T + (lym * tum / (lym + tum + 1))[:, None] * c
    np.testing.assert_allclose(np.expm1(mean), mu, rtol=1e-5)
    assert expr.shape == (4, 9) and len(names) == 9 and (expr >= 0).all()
    assert np.allclose(np.expm1(expr), np.round(np.expm1(expr)), atol=1e-3)   # log1p of integer counts
    with pytest.raises(tg.InputError):
        spot_expression(-comp)


def test_spot_benchmark():
    ds = diagnostic_benchmark(spots=True, n_sections=2, section_size_um=300.0, seed=1, progress_bar=False)
    assert ds.kind == "spot" and ds.n_samples > 5
    expr, names = ds.targets["expression"]
    comp, _ = ds.targets["composition"]
    # the composition is the true count of each type within the spot radius
    from scipy.spatial import cKDTree

    t = ds.truth
    tree = cKDTree(t[[K.truth.x, K.truth.y]].to_numpy())
    r = ds.diameter_um / 2 / ds.mpp
    for i in range(0, ds.n_samples, 3):
        members = tree.query_ball_point(ds.centers[i], r)
        counts = t[K.truth.cell_type].iloc[members].value_counts(sort=False).to_numpy()
        np.testing.assert_array_equal(comp[i], counts)
    # the noisy expression follows its noise-free mean (the stated function of the composition)
    mean, _ = ds.targets["expression_mean"]
    p = ds.metadata["expression"]
    mu = np.array(p["baseline"]) + comp @ np.array(p["weights"]).T + (
        comp[:, 2] * comp[:, 3] / (comp[:, 2] + comp[:, 3] + 1))[:, None] * np.array(p["contact"])
    np.testing.assert_allclose(np.expm1(mean), mu, rtol=1e-4)
    r = [np.corrcoef(expr[:, g], mean[:, g])[0, 1] for g in range(expr.shape[1]) if mean[:, g].std() > 0]
    assert np.median(r) > 0.5
    assert {tk["task"] for tk in ds.tasks} == {"regression", "classification"}
