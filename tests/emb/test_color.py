"""tg.emb.color: colour / intensity statistics against hand-computed and numpy values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

anndata = pytest.importorskip("anndata")

import tissuegraph as tg  # noqa: E402
from tissuegraph._errors import InputError  # noqa: E402

from .test_patches import ARR, _grid, _slide  # noqa: E402


def _names(s):
    return list(s.uns["X_color_names"])


def test_constant_colour_against_hand_computed_values():
    rgb = (200, 120, 160)
    arr = np.empty((256, 256, 3), np.uint8)
    arr[...] = rgb
    s = _grid([(0, 0, 64, 64), (64, 64, 192, 192)])
    tg.emb.color(s, tg.io.open_slide(arr, mpp=0.5), mpp=1.0, bins=4, percentiles=(10, 50, 90))
    v = dict(zip(_names(s), s.obsm["X_color"][1].astype(float)))
    for c, val in zip("RGB", rgb):
        assert v[f"{c}_mean"] == pytest.approx(val) and v[f"{c}_std"] == pytest.approx(0.0)
        assert v[f"{c}_p10"] == v[f"{c}_p50"] == v[f"{c}_p90"] == pytest.approx(val)
        hist = [v[f"{c}_hist{b}"] for b in range(4)]
        want = np.zeros(4)
        want[min(int(val / (255 / 4)), 3)] = 1.0  # bins of width 63.75 over [0, 255]
        assert np.allclose(hist, want)
        assert v[f"od_{c}_mean"] == pytest.approx(-np.log10(val / 255), rel=1e-6)
        assert v[f"od_{c}_std"] == pytest.approx(0.0, abs=1e-7)
    # colour deconvolution by hand: OD row vector times the inverse of the Ruifrok-Johnston matrix
    M = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
    od = -np.log10(np.array(rgb) / 255)
    hed = od @ np.linalg.inv(M)
    assert v["hematoxylin_mean"] == pytest.approx(hed[0], rel=1e-5)
    assert v["eosin_mean"] == pytest.approx(hed[1], rel=1e-5)
    assert v["hematoxylin_std"] == pytest.approx(0, abs=1e-6) and v["eosin_skew"] == 0.0
    assert v["background_fraction"] == (1.0 if od.mean() < 0.15 else 0.0)
    rec = s.uns["representations"]["X_color"]
    assert (rec["family"], rec["learned"], rec["trained"]) == ("color", False, False)


def test_statistics_equal_numpy_on_the_sample_pixels():
    sl = _slide()
    s = _grid([(0, 0, 64, 64), (100, 40, 228, 168)])
    tg.emb.color(s, sl, mpp=0.5, bins=8)
    names = _names(s)
    for row, (y0, y1, x0, x1) in enumerate([(0, 64, 0, 64), (40, 168, 100, 228)]):
        px = ARR[y0:y1, x0:x1].reshape(-1, 3).astype(float)
        v = dict(zip(names, s.obsm["X_color"][row].astype(float)))
        for k, c in enumerate("RGB"):
            assert v[f"{c}_mean"] == pytest.approx(px[:, k].mean(), rel=1e-6)
            assert v[f"{c}_std"] == pytest.approx(px[:, k].std(), rel=1e-5)
            for q in (5, 25, 50, 75, 95):
                assert v[f"{c}_p{q}"] == pytest.approx(np.percentile(px[:, k], q), rel=1e-6)
            hist, _ = np.histogram(px[:, k], bins=8, range=(0, 255))
            assert np.allclose([v[f"{c}_hist{b}"] for b in range(8)], hist / len(px), atol=1e-6)
        from skimage.color import rgb2hed  # independent colour deconvolution (natural-log OD / ln(1e-6))

        hed = rgb2hed(ARR[y0:y1, x0:x1]).reshape(-1, 3)
        # tissuegraph's stain amounts are base-10 OD: skimage's * 6 wherever no pixel value is 0
        ok = (ARR[y0:y1, x0:x1].reshape(-1, 3) > 0).all(axis=1)
        if ok.all():
            assert v["hematoxylin_mean"] == pytest.approx((hed[:, 0] * 6).mean(), rel=1e-4, abs=1e-6)
            assert v["eosin_std"] == pytest.approx((hed[:, 1] * 6).std(), rel=1e-4)


def test_spot_circle_and_region_polygon_pixels():
    sl = _slide()
    spot = anndata.AnnData(obs=pd.DataFrame({"slide": "image", "sample_kind": "spot", "diameter_um": 20.0},
                                            index=["s0"]))
    spot.obsm["spatial"] = np.array([[300.0, 200.0]])
    tg.emb.color(spot, sl, mpp=0.5)
    yy, xx = np.mgrid[:H_, :W_]
    inside = (xx - 300.0) ** 2 + (yy - 200.0) ** 2 <= 20.0 ** 2  # radius 10 µm = 20 px
    v = dict(zip(_names(spot), spot.obsm["X_color"][0].astype(float)))
    assert v["R_mean"] == pytest.approx(ARR[inside][:, 0].mean(), rel=1e-6)
    assert v["G_p50"] == pytest.approx(np.median(ARR[inside][:, 1]))
    tri = "POLYGON ((63.5 63.5, 191.5 63.5, 191.5 191.5, 63.5 63.5))"
    reg = anndata.AnnData(obs=pd.DataFrame({"slide": "image", "sample_kind": "region", "geometry_wkt": [tri]},
                                           index=["r0"]))
    tg.emb.color(reg, sl, mpp=0.5)
    # pixel centres strictly inside the triangle y < x (centres on the diagonal are on the outline)
    inside = (yy < xx) & (xx < 191.5) & (yy > 63.5)
    v = dict(zip(_names(reg), reg.obsm["X_color"][0].astype(float)))
    assert v["R_mean"] == pytest.approx(ARR[inside][:, 0].mean(), rel=1e-6)
    assert v["B_std"] == pytest.approx(ARR[inside][:, 2].std(), rel=1e-5)


H_, W_ = ARR.shape[:2]


def test_fluorescence_and_empty_and_errors():
    fl = np.random.default_rng(1).integers(0, 60000, size=(64, 96, 2)).astype(np.uint16)
    s = _grid([(0, 0, 32, 32), (5000, 5000, 5032, 5032)])
    tg.emb.color(s, tg.io.open_slide(fl, mpp=0.5), mpp=0.5, bins=4)
    names = _names(s)
    assert names[:2] == ["ch0_mean", "ch0_std"] and not any(n.startswith("od_") for n in names)
    v = dict(zip(names, s.obsm["X_color"][0].astype(float)))
    assert v["ch1_mean"] == pytest.approx(fl[:32, :32, 1].mean(), rel=1e-6)
    assert v["ch0_p95"] == pytest.approx(np.percentile(fl[:32, :32, 0], 95), rel=1e-6)
    assert np.isnan(s.obsm["X_color"][1]).all()  # outside the slide: no pixels
    with pytest.raises(InputError, match="bins"):
        tg.emb.color(s, tg.io.open_slide(fl, mpp=0.5), bins=0)
    with pytest.raises(tg.MissingMppError):
        tg.emb.color(s, tg.io.open_slide(fl), mpp=1.0)
