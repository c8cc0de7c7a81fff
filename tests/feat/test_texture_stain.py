"""GLCM texture against skimage.feature, colour deconvolution against skimage.color, Fourier invariance."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2hed
from skimage.feature import graycomatrix, graycoprops

from tissuegraph.feat import label_features, stain_od
from tissuegraph.feat._shape import Pixels
from tissuegraph.feat._texture import GLCM_PROPS, glcm_features, quantize

SK_PROPS = {"contrast": "contrast", "dissimilarity": "dissimilarity", "homogeneity": "homogeneity",
            "asm": "ASM", "energy": "energy", "correlation": "correlation", "entropy": "entropy"}
ANGLES = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]


def _skimage_glcm(q_crop, levels):
    P = graycomatrix(q_crop, [1], ANGLES, levels=levels, symmetric=True, normed=True)
    return {p: float(graycoprops(P, SK_PROPS[p]).mean()) for p in GLCM_PROPS}


def test_glcm_matches_skimage_on_bbox_filling_nuclei():
    rng = np.random.default_rng(0)
    lab = np.zeros((30, 40), dtype=np.int32)
    lab[2:12, 3:20] = 1  # rectangles fill their bounding boxes: skimage sees exactly their pairs
    lab[14:29, 22:31] = 2
    lab[12:14, 30:39] = 3  # touches nucleus 2 diagonally; its pairs must not mix with it
    grey = rng.random(lab.shape)
    levels = 8
    df = label_features(lab, grey, stain="fluorescence", features="texture", texture_levels=levels)
    px = Pixels.from_dense(lab, 3)
    q = quantize(px, grey[px.r, px.c], levels, "nucleus")
    qimg = np.zeros(lab.shape, dtype=np.uint8)
    qimg[px.r, px.c] = q
    for k, sl in ((1, np.s_[2:12, 3:20]), (2, np.s_[14:29, 22:31]), (3, np.s_[12:14, 30:39])):
        ref = _skimage_glcm(qimg[sl], levels)
        for p in GLCM_PROPS:
            assert df.loc[k, f"ch0_glcm_{p}"] == pytest.approx(ref[p], rel=1e-9, abs=1e-12), (k, p)


def test_glcm_fixed_range_quantisation_and_masking():
    """Fixed (lo, hi) quantisation; pairs leaving the nucleus are not counted (L-shaped nucleus)."""
    lab = np.zeros((6, 6), dtype=np.int32)
    lab[1:5, 1:3] = 1
    lab[3:5, 3:5] = 1
    val = np.arange(36, dtype=float).reshape(6, 6)
    px = Pixels.from_dense(lab, 1)
    q = quantize(px, val[px.r, px.c], 4, (0.0, 36.0))
    np.testing.assert_array_equal(q, np.floor(val[px.r, px.c] / 9).astype(int))
    out = glcm_features(px, q, 4)
    # hand count of the horizontal pairs inside the nucleus: rows 1..4 cols (1,2); rows 3,4 cols (2,3),(3,4)
    qimg = np.full((6, 6), -1)
    qimg[px.r, px.c] = q
    pairs = []
    for dr, dc in ((0, 1), (1, 1), (1, 0), (1, -1)):
        P = np.zeros((4, 4))
        for r in range(6):
            for c in range(6):
                r2, c2 = r + dr, c + dc
                if 0 <= r2 < 6 and 0 <= c2 < 6 and lab[r, c] and lab[r2, c2]:
                    P[qimg[r, c], qimg[r2, c2]] += 1
        P = P + P.T
        pairs.append(P / P.sum())
    ii, jj = np.mgrid[0:4, 0:4]
    contrast = np.mean([(P * (ii - jj) ** 2).sum() for P in pairs])
    asm = np.mean([(P ** 2).sum() for P in pairs])
    assert out["contrast"][0] == pytest.approx(contrast)
    assert out["asm"][0] == pytest.approx(asm)


def test_glcm_chunked_over_labels_is_identical(monkeypatch):
    import tissuegraph.feat._texture as T
    from skimage.segmentation import expand_labels

    rng = np.random.default_rng(1)
    seeds = np.zeros((80, 90), dtype=np.int32)
    pts = rng.integers(0, (80, 90), (30, 2))
    seeds[pts[:, 0], pts[:, 1]] = np.arange(1, 31)
    lab = expand_labels(seeds, 6)
    grey = rng.random(lab.shape)
    ref = label_features(lab, grey, features="texture", stain="fluorescence")
    monkeypatch.setattr(T, "_CHUNK_CELLS", 3 * 16 * 16)  # three labels per chunk
    out = label_features(lab, grey, features="texture", stain="fluorescence")
    np.testing.assert_allclose(out.to_numpy(), ref.to_numpy(), rtol=1e-12, atol=0)


def test_glcm_single_pixel_is_nan():
    lab = np.zeros((4, 4), dtype=np.int32)
    lab[1, 1] = 1
    df = label_features(lab, np.ones((4, 4)), features="texture", stain="fluorescence")
    assert df.isna().all(axis=None)


def test_stain_od_matches_skimage_rgb2hed():
    rng = np.random.default_rng(0)
    rgb = rng.integers(1, 256, (50, 60, 3)).astype(np.uint8)  # no zeros (treated differently)
    ours = np.clip(stain_od(rgb, 255.0) / 6.0, 0, None)
    np.testing.assert_allclose(ours, rgb2hed(rgb), rtol=1e-10, atol=1e-12)


def test_he_intensities_are_deconvolved_means():
    lab = np.zeros((10, 10), dtype=np.int32)
    lab[2:6, 2:7] = 1
    rgb = np.full((10, 10, 3), 240, np.uint8)
    rgb[2:6, 2:7] = (90, 60, 160)  # hematoxylin-ish purple
    df = label_features(lab, rgb, features="intensity")
    h, e, _ = stain_od(np.array([[90, 60, 160]], np.uint8), 255.0)[0]
    assert df.loc[1, "hematoxylin_od_mean"] == pytest.approx(h)
    assert df.loc[1, "eosin_od_median"] == pytest.approx(e)
    assert df.loc[1, "hematoxylin_od_std"] == pytest.approx(0, abs=1e-12)
    assert df.loc[1, "red_mean"] == 90 and df.loc[1, "blue_max"] == 160
    assert df.loc[1, "hematoxylin_od_integrated_um2"] == pytest.approx(20 * h)
    assert h > 0.3 and h > e


def test_fourier_descriptors_are_rotation_reflection_invariant():
    from skimage.draw import ellipse

    lab = np.zeros((60, 70), dtype=np.int32)
    rr, cc = ellipse(30, 35, 12, 25, rotation=0.4)
    lab[rr, cc] = 1
    lab[5:12, 5:9] = 2
    names = [f"fourier_descriptor_{k}" for k in range(1, 7)]
    ref = label_features(lab, features=names)
    for variant in (np.rot90(lab), np.rot90(lab, 2), lab[::-1], lab[:, ::-1].T):
        out = label_features(np.ascontiguousarray(variant), features=names)
        np.testing.assert_allclose(out.to_numpy(), ref.to_numpy(), rtol=1e-9, atol=1e-12)
    # an ellipse is elongated (F_-1 large), a disk is not
    disk = np.zeros((41, 41), dtype=np.int32)
    yy, xx = np.mgrid[:41, :41]
    disk[(yy - 20) ** 2 + (xx - 20) ** 2 <= 15 ** 2] = 1
    fd_disk = label_features(disk, features=names).iloc[0]
    assert fd_disk["fourier_descriptor_1"] < 0.01 < ref.loc[1, "fourier_descriptor_1"]
