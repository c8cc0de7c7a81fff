"""The classical watershed backend: accuracy floors on real images, edge cases, determinism, units."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tissuegraph import InputError, MissingMppError
from tissuegraph.seg import (
    WatershedBackend,
    estimate_nucleus_diameter,
    matching_scores,
    watershed_nuclei,
)


def _disks(shape=(128, 128), centres=((30, 30), (30, 80), (90, 50)), r=9, bright=200, bg=10, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    img = np.full(shape, float(bg))
    lab = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(centres, 1):
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[m] = bright
        lab[m] = i
    img += rng.normal(0, 3, shape)
    return np.clip(img, 0, 255).astype(np.uint8), lab


def test_fluorescence_real_image_floor(nuclei_2d):
    """StarDist's packaged real fluorescence image: measured F1@0.5 = 0.72 (baseline Otsu 0.63)."""
    img, gt = nuclei_2d
    with pytest.warns(UserWarning, match="pixel defaults"):
        pred = watershed_nuclei(img)
    assert pred.dtype == np.int32 and pred.shape == img.shape
    assert set(np.unique(pred)) == set(range(pred.max() + 1))  # relabelled 1..n
    f1 = matching_scores(gt, pred, thresholds=0.5, as_frame=False)["f1"]
    assert f1 >= 0.67


def test_simple_disks_exact():
    img, lab = _disks()
    pred = watershed_nuclei(img, mpp=0.5, diameter_um=9.0)
    m = matching_scores(lab, pred, thresholds=0.8, as_frame=False)
    assert m["tp"] == 3 and m["fp"] == 0


def test_touching_disks_are_split():
    img, lab = _disks(centres=((40, 40), (40, 57)), r=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = watershed_nuclei(img)
    assert pred.max() == 2
    assert matching_scores(lab, pred, thresholds=0.5, as_frame=False)["tp"] == 2


def test_he_image_runs_and_finds_nuclei():
    from skimage.data import immunohistochemistry

    ihc = immunohistochemistry()[:256, :256]
    lab, info = watershed_nuclei(ihc, mpp=0.5, return_info=True)
    assert info["modality"] == "he" and info["diameter_px"] == pytest.approx(14.0)  # 7 µm at 0.5 µm/px
    assert lab.max() > 20  # hematoxylin-stained nuclei are plentiful in this crop
    areas = np.bincount(lab.ravel())[1:]
    assert areas.min() >= 0.3 * np.pi * (info["diameter_px"] / 2) ** 2 - 1


def test_synthetic_he_disks():
    # dark purple disks on a pink background at 0.5 µm/px, nuclei 8 µm
    _, lab = _disks(shape=(96, 96), centres=((25, 25), (25, 70), (70, 45)), r=8)
    rgb = _he_like(lab)
    pred = watershed_nuclei(rgb, mpp=0.5, modality="auto", diameter_um=8.0)
    assert matching_scores(lab, pred, thresholds=0.5, as_frame=False)["tp"] == 3


@pytest.mark.parametrize("image", [np.zeros((64, 64), np.uint8), np.full((64, 64, 3), 240, np.uint8),
                                   np.full((50, 40), 7, np.uint16)])
def test_empty_images_give_zero_labels(image):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = watershed_nuclei(image)
    assert lab.shape == image.shape[:2] and lab.dtype == np.int32 and lab.max() == 0


def test_noise_only_image_finds_little():
    rng = np.random.default_rng(1)
    img = rng.normal(20, 2, (96, 96)).clip(0, 255).astype(np.uint8)
    lab = watershed_nuclei(img, mpp=0.5, diameter_um=8.0)
    assert lab.max() <= 3


def test_deterministic(nuclei_2d):
    img = nuclei_2d[0][:200, :200]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = watershed_nuclei(img), watershed_nuclei(img.copy())
    np.testing.assert_array_equal(a, b)


def test_pixel_default_warning_and_um_parameters():
    img, _ = _disks()
    with pytest.warns(UserWarning, match="mpp"):
        watershed_nuclei(img)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        watershed_nuclei(img, mpp=0.5)  # no warning with mpp
    with pytest.raises(MissingMppError, match="min_area_um2"):
        watershed_nuclei(img, min_area_um2=10.0)
    # µm parameters are converted with mpp: a min area above the disks' area removes them all
    disk_um2 = np.pi * 9 ** 2 * 0.5 ** 2
    assert watershed_nuclei(img, mpp=0.5, diameter_um=9.0, min_area_um2=1.5 * disk_um2).max() == 0
    assert watershed_nuclei(img, mpp=0.5, diameter_um=9.0, max_area_um2=0.5 * disk_um2).max() == 0


def test_multichannel_and_dtypes():
    img, lab = _disks()
    stack = np.stack([np.zeros_like(img), img.astype(np.uint16) * 200, np.full_like(img, 5)], axis=-1)
    a = watershed_nuclei(stack, mpp=0.5, diameter_um=9.0)  # auto channel picks the nuclear one
    b = watershed_nuclei(stack, mpp=0.5, diameter_um=9.0, channel=1)
    np.testing.assert_array_equal(a, b)
    assert a.max() == 3
    f = watershed_nuclei(img.astype(np.float32) / 255, mpp=0.5, diameter_um=9.0)
    assert f.max() == 3


def test_inverted_grey_image():
    img, lab = _disks(bright=40, bg=220)  # dark nuclei on a bright background
    pred = watershed_nuclei(img, mpp=0.5, diameter_um=9.0)
    assert matching_scores(lab, pred, thresholds=0.5, as_frame=False)["tp"] == 3


def test_input_errors():
    img, _ = _disks()
    with pytest.raises(InputError, match="modality"):
        watershed_nuclei(img, mpp=0.5, modality="ihc")
    with pytest.raises(InputError, match="RGB"):
        watershed_nuclei(img, mpp=0.5, modality="he")
    with pytest.raises(InputError, match="channel"):
        watershed_nuclei(np.stack([img, img], -1), mpp=0.5, channel=5)
    with pytest.raises(InputError, match="NaN"):
        watershed_nuclei(np.full((8, 8), np.nan), mpp=0.5)
    with pytest.raises(InputError, match="shape"):
        watershed_nuclei(np.zeros((4, 4, 4, 4)), mpp=0.5)
    with pytest.raises(InputError, match="Unknown watershed parameter"):
        watershed_nuclei(img, mpp=0.5, bogus=1)
    with pytest.raises(InputError, match="mpp"):
        watershed_nuclei(img, mpp=-1)


def test_estimate_diameter():
    img, _ = _disks(r=9)
    d = estimate_nucleus_diameter(img)
    assert 14 <= d <= 20
    assert estimate_nucleus_diameter(np.zeros((32, 32), np.uint8)) is None


def test_backend_contract():
    b = WatershedBackend(mpp=0.5, diameter_um=9.0)
    assert b.name == "watershed" and b.mpp == 0.5 and b.max_object_px == 60
    img, lab = _disks()
    labels, scores = b.segment(img, mpp=0.5)
    assert scores is None and labels.dtype == np.int32 and labels.max() == 3
    assert WatershedBackend().max_object_px == 64
    with pytest.raises(InputError, match="Unknown watershed parameter"):
        WatershedBackend(nonsense=3)
    assert "WatershedBackend" in repr(b)


def test_backend_calibration_fixes_the_diameter():
    img, lab = _disks(r=9)
    b = WatershedBackend(mpp=0.5, modality="fluorescence")
    cal = b.calibrate([img, img[:64]])
    assert 14 <= cal["diameter_px"] <= 20
    a, _ = b.segment(img, mpp=0.5, calibration=cal)
    ref = watershed_nuclei(img, mpp=0.5, diameter_px=cal["diameter_px"])
    np.testing.assert_array_equal(a, ref)
    blank = b.calibrate([np.zeros((16, 16), np.uint8)])  # nothing to measure: no diameter, no threshold
    assert "diameter_px" not in blank and "threshold" not in blank
    assert b.segment(np.zeros((16, 16), np.uint8), mpp=0.5, calibration=blank)[0].max() == 0


def test_calibrated_levels_make_tiling_irrelevant():
    """With slide-wide levels, a tile gives the same labels as the same region of the whole image."""
    from tissuegraph.datasets import synthetic_tissue

    img = synthetic_tissue((768, 768), seed=105).image
    b = WatershedBackend()
    cal = b.calibrate([img[:384, :384], img[384:, 384:], img[:384, 384:]], mpp=0.5)
    assert cal["modality"] == "he" and {"norm", "threshold"} <= set(cal)
    whole, _ = b.segment(img, mpp=0.5, calibration=cal)
    part, _ = b.segment(img[100:700, 50:650], mpp=0.5, calibration=cal)
    # away from the crop border the two agree exactly
    np.testing.assert_array_equal(whole[250:550, 200:500] > 0, part[150:450, 150:450] > 0)


def _he_like(lab):
    rgb = np.empty(lab.shape + (3,), np.uint8)
    nuc = lab > 0
    rgb[..., 0] = np.where(nuc, 70, 235)
    rgb[..., 1] = np.where(nuc, 40, 190)
    rgb[..., 2] = np.where(nuc, 140, 215)
    return rgb


def test_tiled_runner_with_watershed_backend():
    import tissuegraph as tg

    _, lab = _disks(shape=(160, 160), centres=((30, 30), (30, 110), (110, 60), (120, 130)), r=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overlap smaller than the backend's generic 64 px object size
        df = tg.seg.nuclei(_he_like(lab), method="watershed", slide_mpp=0.5, tile_size=96, overlap=48,
                           mask=None, progress=False)
    assert len(df) == 4
    np.testing.assert_allclose(np.sort(df["x"].to_numpy()), [30, 60, 110, 130], atol=1.0)


def test_merge_fragments_joins_pieces_of_one_nucleus_only():
    from tissuegraph.seg._watershed import _merge_fragments

    yy, xx = np.mgrid[:80, :120]
    lab = np.zeros((80, 120), np.int32)
    big = (yy - 40) ** 2 + (xx - 30) ** 2 <= 18 ** 2  # one large nucleus cut in three pieces
    lab[big & (xx < 24)] = 1
    lab[big & (xx >= 24) & (yy < 40)] = 2
    lab[big & (xx >= 24) & (yy >= 40)] = 3
    lab[(yy - 40) ** 2 + (xx - 72) ** 2 <= 10 ** 2] = 4  # two round nuclei touching on a short chord
    lab[((yy - 40) ** 2 + (xx - 91) ** 2 <= 10 ** 2) & (lab == 0)] = 5
    out = _merge_fragments(lab, 1.0, 0.85)
    assert len(np.unique(out[big])) == 1 and out[40, 30] > 0
    assert out[40, 72] != out[40, 91] and out[40, 72] > 0 and out[40, 91] > 0
    assert np.array_equal(out > 0, lab > 0)
    # off: unchanged
    np.testing.assert_array_equal(_merge_fragments(lab, 1.0, 1.01), lab)


def test_he_large_textured_nuclei_not_split():
    """Synthetic H&E (fit seed 0, 384 px crop at 0.5 µm/px, 7-18 µm nuclei): centroid F1 within 3 µm
    measured 0.95 with the hematoxylin + distance seeds and fragment merging (on 768 px tiles of seeds
    0-4: 0.97); 0.80 with the previous LoG seeds (0.91 on seeds 0-4, 0.70 without merging)."""
    import tissuegraph as tg
    from tissuegraph.seg import centroids_from_labels, detection_scores

    t = tg.datasets.synthetic_tissue((384, 384), mpp=0.5, seed=0, tissue_fraction=1.0)
    pred = watershed_nuclei(t.image, mpp=0.5)
    d = detection_scores(centroids_from_labels(pred), centroids_from_labels(np.asarray(t.labels)),
                         radius_um=3.0, mpp=0.5)
    assert d["f1"] >= 0.9


_SEED_MODES = {
    "default": {},  # hematoxylin + distance seeds, local-background test
    "legacy": dict(dist_weight=0, local_offset=0, threshold_scale=1.2, min_distance=0.5),  # LoG seeds
    "no_local": dict(local_offset=0),  # local-background test off
}


@pytest.mark.parametrize("mode, floor", [("default", 0.93), ("legacy", 0.85), ("no_local", 0.95)])
def test_he_seed_modes_against_the_truth(mode, floor):
    """Each seed mode against the exact nuclei of a synthetic H&E tile that no parameter was fitted on
    (seed 101; the fit seeds are 0-4): centroid F1 within 3 µm measured 0.972 (default), 0.890 (LoG
    seeds), 0.990 (no local-background test)."""
    import tissuegraph as tg
    from tissuegraph.seg import centroids_from_labels, detection_scores

    t = tg.datasets.synthetic_tissue((384, 384), mpp=0.5, seed=101, tissue_fraction=1.0)
    lab = watershed_nuclei(t.image, mpp=0.5, **_SEED_MODES[mode])
    d = detection_scores(centroids_from_labels(lab), centroids_from_labels(np.asarray(t.labels)),
                         radius_um=3.0, mpp=0.5)
    assert d["f1"] >= floor, d


def test_he_seed_modes_and_local_threshold_on_real_ihc():
    """All three modes run on a real IHC crop (no truth there); the local-background test only removes
    foreground, so the default's objects lie inside the objects found without it; deterministic."""
    from skimage.data import immunohistochemistry

    ihc = immunohistochemistry()[:256, :256]
    labs = {m: watershed_nuclei(ihc, mpp=0.5, **kw) for m, kw in _SEED_MODES.items()}
    for lab in labs.values():
        assert lab.dtype == np.int32 and lab.max() > 20
    default, no_local = labs["default"], labs["no_local"]
    assert ((default > 0) & (no_local > 0)).sum() >= 0.95 * (default > 0).sum()
    np.testing.assert_array_equal(default, watershed_nuclei(ihc, mpp=0.5))
