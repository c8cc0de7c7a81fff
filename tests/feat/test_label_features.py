"""tg.feat.label_features: literal cases, agreement with skimage, units, degenerate input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.measure import regionprops_table

import tissuegraph as tg
from tissuegraph.feat import feature_catalog, label_features

# regionprops property -> (our column, power of the spacing in the unit)
SHARED = {
    "area": ("area_um2", 2),
    "perimeter": ("perimeter_um", 1),
    "perimeter_crofton": ("perimeter_crofton_um", 1),
    "euler_number": ("euler_number", 0),
    "area_convex": ("area_convex_um2", 2),
    "solidity": ("solidity", 0),
    "extent": ("extent", 0),
    "equivalent_diameter_area": ("equivalent_diameter_um", 1),
    "axis_major_length": ("major_axis_length_um", 1),
    "axis_minor_length": ("minor_axis_length_um", 1),
    "eccentricity": ("eccentricity", 0),
    "orientation": ("orientation_rad", 0),
    "feret_diameter_max": ("feret_diameter_max_um", 1),
}


def _close(ours, theirs, name, rtol=1e-6):
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    atol = 1e-9 * max(float(np.nanmax(np.abs(theirs))), 1e-300)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=name)


def _irregular_labels(seed=0, shape=(160, 200), n=40):
    """Touching irregular nuclei, some with holes, split pieces, one-pixel and line-shaped ones."""
    from skimage.segmentation import expand_labels

    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, np.int32)
    pts = rng.integers(0, shape, (n, 2))
    seeds[pts[:, 0], pts[:, 1]] = np.arange(1, n + 1) * 3  # non-consecutive ids
    lab = expand_labels(seeds, 9)
    lab[rng.random(shape) < 0.04] = 0  # holes and ragged borders
    lab[0:2, 0:40] = 1000  # border-touching thin bar
    lab[5, 5] = 1001  # one pixel (may be overwritten below, fine)
    lab[-10:-2, -10] = 1002  # vertical line
    return lab


@pytest.fixture(scope="module")
def stardist_case():
    data = pytest.importorskip("stardist.data")
    img, mask = data.test_image_nuclei_2d(return_mask=True)
    return img[:256, :256], mask[:256, :256].astype(np.int32)


# ----------------------------------------------------------------------------- literal cases

def test_literal_small_objects():
    m = np.zeros((7, 9), dtype=int)
    m[1, 1] = 1  # one pixel
    m[3, 2:7] = 2  # horizontal line of 5
    m[4:6, 6:9] = 3  # 2 x 3 block
    df = label_features(m, features=["shape", "position"])
    assert list(df.index) == [1, 2, 3]
    np.testing.assert_array_equal(df["area_um2"], [1, 5, 6])
    np.testing.assert_array_equal(df["bbox_width_um"], [1, 5, 3])
    np.testing.assert_array_equal(df["bbox_height_um"], [1, 1, 2])
    np.testing.assert_array_equal(df["extent"], [1, 1, 1])
    np.testing.assert_array_equal(df["solidity"], [1, 1, 1])
    np.testing.assert_array_equal(df["euler_number"], [1, 1, 1])
    np.testing.assert_array_equal(df["centroid_x_px"], [1, 4, 7])
    np.testing.assert_array_equal(df["centroid_y_px"], [1, 3, 4.5])
    np.testing.assert_allclose(df["equivalent_diameter_um"], np.sqrt(4 * np.array([1, 5, 6]) / np.pi))
    # line of n pixels: variance (n^2 - 1) / 12 along it, 0 across
    np.testing.assert_allclose(df.loc[2, "major_axis_length_um"], 4 * np.sqrt((25 - 1) / 12))
    assert df.loc[2, "minor_axis_length_um"] == 0
    assert df.loc[2, "eccentricity"] == 1 and df.loc[2, "elongation"] == 1
    assert df.loc[2, "orientation_rad"] == pytest.approx(np.pi / 2)  # major axis along the columns
    # single pixel: degenerate but defined
    assert df.loc[1, "major_axis_length_um"] == 0 and df.loc[1, "eccentricity"] == 0
    assert df.loc[1, "elongation"] == 0 and df.loc[1, "convexity"] == pytest.approx(1.0)
    assert df.loc[1, "feret_diameter_max_um"] == 1.0
    # crack boundary of one pixel: 4 axis and 4 diagonal transitions -> pi/8 (4 + 4/sqrt(2))
    assert df.loc[1, "perimeter_crofton_um"] == pytest.approx(np.pi / 8 * (4 + 4 / np.sqrt(2)))
    # fourier descriptors of a 4-edge boundary: only the first is resolvable
    assert np.isfinite(df.loc[1, "fourier_descriptor_1"]) and np.isnan(df.loc[1, "fourier_descriptor_2"])


def test_literal_rectangle_and_ring():
    m = np.zeros((8, 10), dtype=np.uint16)
    m[1:4, 1:5] = 5  # 3 x 4 rectangle
    m[4:7, 6:9] = 9  # 3 x 3 ring
    m[5, 7] = 0
    df = label_features(m, spacing=0.5, features="shape")
    assert list(df.index) == [5, 9]
    assert df.loc[5, "area_um2"] == 12 * 0.25
    assert df.loc[5, "bbox_width_um"] == 2.0 and df.loc[5, "bbox_height_um"] == 1.5
    assert df.loc[5, "solidity"] == 1 and df.loc[5, "convexity"] == pytest.approx(1.0)
    assert df.loc[9, "euler_number"] == 0  # one piece, one hole
    assert df.loc[9, "area_um2"] == 8 * 0.25
    assert df.loc[9, "solidity"] == pytest.approx(8 / 9)
    # rectangle: symmetric under 180° rotation -> even Fourier harmonics vanish
    assert abs(df.loc[5, "fourier_descriptor_2"]) < 1e-12


def test_diagonal_pixels_one_piece_and_two_pieces():
    m = np.zeros((6, 6), dtype=int)
    m[1, 1] = m[2, 2] = 1  # 8-connected: one piece
    m[4, 1] = m[4, 4] = 2  # two pieces
    df = label_features(m, features=["euler_number", "area_um2"])
    np.testing.assert_array_equal(df["euler_number"], [1, 2])


# ----------------------------------------------------------------------------- agreement with skimage

def _compare_with_regionprops(lab, intensity, spacing):
    props = ["label", *SHARED, "bbox", "centroid", "intensity_mean", "intensity_min", "intensity_max",
             "intensity_std", "intensity_median"]
    rp = regionprops_table(lab, intensity_image=intensity, properties=props, spacing=spacing)
    stain = "fluorescence"
    ours = label_features(lab, intensity, spacing=spacing, stain=stain,
                          features=["shape", "intensity", "position"])
    np.testing.assert_array_equal(ours.index.to_numpy(), rp["label"])
    for prop, (col, power) in SHARED.items():
        if prop == "orientation":
            # ill-defined for isotropic inertia (equal eigenvalues): compare elsewhere only
            l1 = ours["major_axis_length_um"].to_numpy()
            l2 = ours["minor_axis_length_um"].to_numpy()
            ok = (l1 - l2) > 1e-6 * l1
            # an axis angle is defined modulo pi: +pi/2 and -pi/2 are the same (skimage's choice
            # between them follows the rounding sign of a zero cross moment)
            diff = np.mod(ours[col].to_numpy()[ok] - rp[prop][ok] + np.pi / 2, np.pi) - np.pi / 2
            np.testing.assert_allclose(diff, 0, atol=1e-6 * np.pi / 2, err_msg=prop)
            continue
        _close(ours[col], rp[prop], prop)
    _close(ours["bbox_height_um"], (rp["bbox-2"] - rp["bbox-0"]) * spacing, "bbox height")
    _close(ours["bbox_width_um"], (rp["bbox-3"] - rp["bbox-1"]) * spacing, "bbox width")
    _close(ours["centroid_y_px"] * spacing, rp["centroid-0"], "centroid row")
    _close(ours["centroid_x_px"] * spacing, rp["centroid-1"], "centroid col")
    chans = 1 if intensity.ndim == 2 else intensity.shape[2]
    for k in range(chans):
        sfx = "" if chans == 1 else f"-{k}"
        for ours_stat, rp_stat in (("mean", "intensity_mean"), ("min", "intensity_min"),
                                   ("max", "intensity_max"), ("std", "intensity_std"),
                                   ("median", "intensity_median")):
            _close(ours[f"ch{k}_{ours_stat}"], rp[rp_stat + sfx], f"ch{k} {ours_stat}")


@pytest.fixture(params=["numba", "numpy"])
def kernel_path(request, monkeypatch):
    """Run a test on both implementations of the per-pixel passes: the numba kernels (the default)
    and the numpy reference code."""
    from tissuegraph.feat import _shape

    monkeypatch.setattr(_shape, "USE_NUMBA", request.param == "numba")
    if request.param == "numba" and _shape._nb() is None:
        pytest.skip("numba is not installed")
    return request.param


def test_agrees_with_regionprops_irregular_multichannel(kernel_path):
    lab = _irregular_labels()
    rng = np.random.default_rng(3)
    as_uint8 = rng.integers(0, 256, lab.shape + (3,)).astype(np.uint8)  # per-label histogram path
    as_float = rng.normal(size=lab.shape + (2,))  # sorting path
    _compare_with_regionprops(lab, as_uint8, spacing=0.5)
    _compare_with_regionprops(lab, as_float, spacing=0.5)


def test_agrees_with_regionprops_real_nuclei(stardist_case, kernel_path):
    img, mask = stardist_case
    _compare_with_regionprops(mask, img, spacing=0.37)
    # Hu moments: skimage only defines them at spacing 1 (they are scale invariant anyway)
    rp = regionprops_table(mask, properties=["moments_hu"])
    ours = label_features(mask, spacing=0.37, features=[f"hu_moment_{k}" for k in range(1, 8)])
    for k in range(7):
        _close(ours[f"hu_moment_{k + 1}"], rp[f"moments_hu-{k}"], f"hu {k + 1}")


@pytest.mark.shared_data
def test_dsb2018_brightfield_agrees(shared_data):
    """A real brightfield image of DSB2018 (when the shared data is present)."""
    import tifffile
    from PIL import Image

    idx = pd.read_csv(shared_data / "dsb2018" / "train" / "index.csv")
    row = idx[idx["modality"] != "fluorescence"].iloc[0]
    lab = tifffile.imread(shared_data / "dsb2018" / "train" / f"{row['id']}_labels.tif").astype(np.int32)
    rgb = np.asarray(Image.open(shared_data / "dsb2018" / "train" / f"{row['id']}.png").convert("RGB"))
    _compare_with_regionprops(lab, rgb, spacing=0.5)
    df = label_features(lab, rgb, spacing=0.5)  # H&E path runs on a real image
    assert len(df.columns) >= 40 and np.isfinite(df["hematoxylin_od_mean"]).all()


# ----------------------------------------------------------------------------- units and layout

def test_spacing_scales_lengths_and_areas():
    lab = _irregular_labels(seed=1)
    img = np.random.default_rng(0).integers(0, 256, lab.shape + (3,)).astype(np.uint8)
    a = label_features(lab, img, spacing=1.0)
    b = label_features(lab, img, spacing=0.25)
    units = a.attrs["units"]
    for col in a.columns:
        power = {"µm": 1, "µm²": 2, "OD·µm²": 2}.get(units[col], 0)
        np.testing.assert_allclose(b[col], a[col] * 0.25 ** power, rtol=1e-12, err_msg=col)


def test_at_least_40_features_with_units():
    lab = _irregular_labels(seed=2)
    img = np.full(lab.shape + (3,), 200, np.uint8)
    df = label_features(lab, img, spacing=0.5)
    assert df.shape[1] >= 40
    units, groups = df.attrs["units"], df.attrs["groups"]
    assert set(groups.values()) == {"shape", "intensity", "texture"}
    for col in df.columns:
        if units[col] == "µm":
            assert col.endswith("_um"), col
        if units[col] == "µm²":
            assert col.endswith("_um2"), col
    assert {"area_um2", "perimeter_um", "major_axis_length_um", "eccentricity", "solidity",
            "hematoxylin_od_mean", "eosin_od_median", "hematoxylin_od_glcm_contrast"} <= set(df.columns)
    # catalog order == output order; every name unique
    names = [f.name for f in feature_catalog(stain="he") if f.group != "position"]
    assert list(df.columns) == names and len(set(names)) == len(names)


def test_feature_selection_and_groups():
    lab = _irregular_labels(seed=4)
    img = np.random.default_rng(1).random(lab.shape + (2,))
    df = label_features(lab, img, features=["area_um2", "texture"], channel_names=["dapi", "gfp"],
                        texture_channel="gfp")
    assert list(df.columns)[0] == "area_um2"
    assert all(c.startswith("gfp_glcm_") for c in df.columns[1:]) and len(df.columns) == 8
    full = label_features(lab, img, channel_names=["dapi", "gfp"], texture_channel="gfp")
    pd.testing.assert_frame_equal(df, full[df.columns], check_like=False)
    assert "dapi_integrated_um2" in full.columns and "gfp_median" in full.columns
    with pytest.raises(tg.InputError, match="Unknown feature"):
        label_features(lab, features=["area", "bogus"])
    with pytest.raises(tg.InputError, match="intensity image"):
        label_features(lab, features="intensity")


def test_no_objects_gives_empty_frame():
    df = label_features(np.zeros((5, 5), int), features="shape")
    assert df.shape == (0, len([f for f in feature_catalog(stain=None) if f.group == "shape"]))


# ----------------------------------------------------------------------------- bad input

def test_bad_input_errors():
    lab = np.zeros((6, 6), int)
    lab[1:3, 1:3] = 1
    img = np.zeros((6, 6, 3))
    bad = img.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(tg.InputError, match="NaN"):
        label_features(lab, bad)
    with pytest.raises(tg.InputError, match="same pixels"):
        label_features(lab, np.zeros((5, 6, 3)))
    with pytest.raises(tg.InputError, match="spacing"):
        label_features(lab, spacing=0)
    with pytest.raises(tg.InputError, match="square pixels"):
        label_features(lab, spacing=(0.5, 0.25))
    with pytest.raises(tg.InputError, match="3 channels"):
        label_features(lab, np.zeros((6, 6)), stain="he")
    with pytest.raises(tg.InputError, match="texture_levels"):
        label_features(lab, img, texture_levels=1)
    with pytest.raises(tg.InputError, match="channel_names"):
        label_features(lab, img, stain="fluorescence", channel_names=["a"])
    with pytest.raises(tg.InputError, match="negative"):
        label_features(-lab)
    with pytest.raises(tg.InputError, match=r"\[0, 1\]"):
        label_features(lab, img + 2.0, stain="he")


def test_degenerate_nuclei_are_finite_where_defined():
    lab = _irregular_labels(seed=5)
    img = np.random.default_rng(2).integers(0, 256, lab.shape + (3,)).astype(np.uint8)
    df = label_features(lab, img)
    always = [c for c in df.columns if not c.startswith("fourier_descriptor_") and "_glcm_" not in c]
    assert np.isfinite(df[always].to_numpy()).all()
    # convexity is at most 1 for every nucleus that is one 8-connected piece
    from scipy import ndimage as ndi

    one_piece = [k for k in df.index if ndi.label(lab == k, structure=np.ones((3, 3)))[1] == 1]
    assert len(one_piece) > 10
    assert (df.loc[one_piece, "convexity"] <= 1 + 1e-12).all()
    assert (df.loc[one_piece, "convexity"] > 0).all()


def test_translation_and_sparse_vs_dense_paths_identical(kernel_path):
    """A few nuclei in a large empty image (numpy: the sparse neighbour-gather path) give bit-identical
    features to the same nuclei in a tight crop (numpy: the dense whole-image path)."""
    from tissuegraph.feat._shape import DENSE_CODE_FRACTION

    tight = _irregular_labels(seed=6, shape=(60, 70), n=30)
    img = np.random.default_rng(5).integers(0, 256, tight.shape + (3,)).astype(np.uint8)
    big = np.zeros((400, 500), dtype=tight.dtype)
    big_img = np.zeros((400, 500, 3), np.uint8)
    big[123:183, 211:281] = tight
    big_img[123:183, 211:281] = img
    # the two images take the two numpy code paths of Pixels.code
    assert np.count_nonzero(big) < DENSE_CODE_FRACTION * big.size
    assert np.count_nonzero(tight) >= DENSE_CODE_FRACTION * tight.size
    a = label_features(tight, img, spacing=0.5)
    b = label_features(big, big_img, spacing=0.5)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_numba_kernels_equal_numpy_reference(stardist_case, monkeypatch):
    """The numba passes give the numpy code's values: exactly, except the moments (summed in another
    order: ~1e-16 relative) and the quantities made from them."""
    from tissuegraph.feat import _shape

    if _shape._nb() is None:
        pytest.skip("numba is not installed")
    img, mask = stardist_case
    big = np.zeros((300, 700), np.int64)  # int64 labels with large, non-consecutive ids
    big[20:276, 400:656] = np.where(mask > 0, mask * 7 + 100_000, 0)
    big[:160, :200] = np.where(_irregular_labels() > 0, _irregular_labels() + 5, 0)
    rgb = np.random.default_rng(1).integers(0, 256, big.shape + (3,)).astype(np.uint8)
    out = {}
    for use in (True, False):
        monkeypatch.setattr(_shape, "USE_NUMBA", use)
        out[use] = label_features(big, rgb, spacing=0.5, features=["all", "position"])
    a, b = out[True], out[False]
    assert list(a.index) == list(b.index) and list(a.columns) == list(b.columns)
    moment_based = {c for c in a.columns if c.startswith(("hu_moment", "centroid", "major_axis", "minor_axis",
                                                          "eccentricity", "elongation", "orientation"))}
    for col in a.columns:
        if col in moment_based:
            continue
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy(), err_msg=col)
    iso = (b["major_axis_length_um"] - b["minor_axis_length_um"]) <= 1e-6 * b["major_axis_length_um"]
    for col in sorted(moment_based):
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if col == "orientation_rad":  # undefined for isotropic inertia
            x, y = x[~iso.to_numpy()], y[~iso.to_numpy()]
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12 * np.nanmax(np.abs(y)), err_msg=col)
