"""Pseudo instance masks from nucleus centres (training from point annotations)."""

import numpy as np
import pytest

import tissuegraph as tg
from tissuegraph import InputError


def test_isolated_points_give_discs_centred_on_them():
    pts = np.array([[20.0, 30.0], [70.3, 60.7], [45.0, 90.0]])
    lab = tg.seg.labels_from_points(pts, (120, 100), radius=6)
    assert lab.dtype == np.int32 and lab.shape == (120, 100)
    assert set(np.unique(lab)) == {0, 1, 2, 3}
    areas = np.bincount(lab.ravel())[1:]
    # a digital disc of radius 6 has ~ pi * 36 = 113 pixels
    assert np.all(np.abs(areas - np.pi * 36) < 12)
    cent = tg.seg.centroids_from_labels(lab)
    np.testing.assert_allclose(cent, pts, atol=0.35)
    # the object of point i carries label i + 1 and contains the point
    for i, (x, y) in enumerate(pts):
        assert lab[int(round(y)), int(round(x))] == i + 1


def test_touching_points_are_split_on_the_bisector():
    pts = np.array([[20.0, 20.0], [28.0, 20.0]])
    lab = tg.seg.labels_from_points(pts, (40, 50), radius=6)
    cols1 = np.flatnonzero((lab == 1).any(axis=0))
    cols2 = np.flatnonzero((lab == 2).any(axis=0))
    assert cols1.max() <= 24 and cols2.min() >= 24  # bisector at x = 24
    assert not ((lab == 1) & (lab == 2)).any()
    # every pixel is labelled by its nearest centre
    yy, xx = np.nonzero(lab)
    d = np.hypot(xx[:, None] - pts[None, :, 0], yy[:, None] - pts[None, :, 1])
    nearest = d.argmin(1) + 1
    assert np.all(lab[yy, xx] == nearest)  # exact; a tie goes to the earlier centre
    # the labelled set is exactly the union of the discs
    yy, xx = np.indices(lab.shape)
    within = (np.hypot(xx[..., None] - pts[:, 0], yy[..., None] - pts[:, 1]) <= 6).any(-1)
    np.testing.assert_array_equal(lab > 0, within)


def test_many_centres_match_a_brute_force_voronoi():
    rng = np.random.default_rng(3)
    pts = rng.uniform(-0.5, 79.5, size=(300, 2))
    lab = tg.seg.labels_from_points(pts, (80, 80), radius=4.5)
    yy, xx = np.indices(lab.shape)
    d = np.hypot(xx[..., None] - pts[:, 0], yy[..., None] - pts[:, 1])
    want = np.where(d.min(-1) <= 4.5, d.argmin(-1) + 1, 0)
    np.testing.assert_array_equal(lab, want)


def test_radii_in_micrometres():
    a = tg.seg.labels_from_points([[30, 30]], (60, 60), radius=3.0, mpp=0.5)
    b = tg.seg.labels_from_points([[30, 30]], (60, 60), radius=6)
    np.testing.assert_array_equal(a, b)


def test_foreground_shapes_the_masks_and_the_core_is_kept():
    fg = np.zeros((60, 60), bool)
    fg[25:35, 20:44] = True  # an elongated nucleus under point 1
    fg[5:8, 5:8] = True  # foreground that no point touches
    pts = np.array([[32.0, 30.0], [50.0, 50.0]])  # point 2 is on background
    lab = tg.seg.labels_from_points(pts, fg.shape, radius=10, min_radius=2, foreground=fg)
    obj1 = lab == 1
    assert obj1.sum() > 0 and np.all(fg[obj1] | (np.hypot(*np.subtract(np.nonzero(obj1), [[30], [32]])) <= 2))
    # within the radius, all connected foreground is taken; beyond it, nothing
    assert obj1[30, 23] and not obj1[30, 21]  # x = 21 is 11 px away
    assert not lab[5:8, 5:8].any()  # unclaimed foreground stays background
    obj2 = lab == 2
    assert 9 <= obj2.sum() <= 15  # only the core disc of radius 2 (13 px)
    assert obj2[50, 50]


def test_foreground_piece_not_connected_to_the_centre_is_dropped():
    fg = np.zeros((40, 40), bool)
    fg[18:23, 18:23] = True
    fg[18:23, 26:29] = True  # separate blob within the radius
    lab = tg.seg.labels_from_points([[20, 20]], fg.shape, radius=9, min_radius=1, foreground=fg)
    assert lab[20, 20] == 1 and not lab[18:23, 26:29].any()


def test_border_points_and_duplicates():
    # annotations a fraction of a pixel outside are clipped onto the border
    lab = tg.seg.labels_from_points([[-0.7, 10.0], [49.6, 10.0]], (20, 50), radius=3)
    assert lab[10, 0] == 1 and lab[10, 49] == 2
    # a duplicate centre gets no pixels; the first keeps the object
    lab = tg.seg.labels_from_points([[10, 10], [10, 10]], (20, 20), radius=3)
    assert set(np.unique(lab)) == {0, 1}
    # a nearby but distinct centre gets the pixels nearer to it
    lab = tg.seg.labels_from_points([[10, 10], [11.2, 10]], (20, 20), radius=3)
    assert set(np.unique(lab)) == {0, 1, 2} and lab[10, 12] == 2 and lab[10, 9] == 1
    assert tg.seg.labels_from_points(np.zeros((0, 2)), (8, 9), radius=3).shape == (8, 9)


@pytest.mark.parametrize("kwargs, match", [
    (dict(points=[[5, 5], [np.nan, 3]]), r"points contains 1 row\(s\) with NaN or infinite"),
    (dict(points=[[5, 5], [30, 3]]), "outside the 20x20 image"),
    (dict(points=[5, 5, 5]), r"\(n, 2\)"),
    (dict(radius=-1), "radius must be a finite number > 0"),
    (dict(radius=2, min_radius=3), "must not exceed"),
    (dict(foreground=np.ones((10, 10), bool)), "foreground has shape"),
    (dict(shape=(20,)), "shape must be"),
    (dict(mpp=0), "mpp must be"),
])
def test_bad_input_is_named(kwargs, match):
    args = dict(points=[[5, 5]], shape=(20, 20), radius=4)
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        tg.seg.labels_from_points(args.pop("points"), args.pop("shape"), **args)


def test_pseudo_masks_are_valid_stardist_targets():
    """The output is a valid StarDist training target: one star-convex object per centre."""
    pytest.importorskip("stardist")
    from stardist import fill_label_holes
    from stardist.geometry import star_dist

    rng = np.random.default_rng(0)
    pts = rng.uniform(8, 56, size=(12, 2))
    lab = tg.seg.labels_from_points(pts, (64, 64), radius=5)
    lab = fill_label_holes(lab)
    d = star_dist(lab, 16)
    assert d.shape == (64, 64, 16) and np.all(d[lab > 0].max(axis=1) > 0)


@pytest.mark.slow
def test_point_supervised_fine_tuning_end_to_end(tiny_stardist, nuclei_2d, tmp_path):
    """Centres only -> labels_from_points -> train_stardist (fine-tune) -> a detector that finds the
    held-out nuclei, as the CRCHisto recipe does on real H&E."""
    from skimage.filters import threshold_otsu

    img, lab = nuclei_2d
    quads = [(slice(0, 256), slice(0, 256)), (slice(0, 256), slice(256, 512)),
             (slice(256, 512), slice(0, 256)), (slice(256, 512), slice(256, 512))]
    X, Y, P = [], [], []
    for q in quads:
        x, y = img[q], lab[q]
        pts = tg.seg.centroids_from_labels(y)  # the only annotation used: centres
        fg = x > threshold_otsu(x)
        X.append(x)
        P.append(pts)
        Y.append(tg.seg.labels_from_points(pts, x.shape, radius=12, min_radius=3, foreground=fg))
    model = tg.seg.train_stardist(
        X[:3], Y[:3], validation=([X[3]], [Y[3]]), patch_size=(64, 64), epochs=3, steps_per_epoch=20,
        batch_size=8, learning_rate=1e-3, init=tiny_stardist, basedir=tmp_path, name="from_points",
        seed=0, n_threads=1)
    labels, _ = model.segment(X[3])
    s = tg.seg.detection_scores(tg.seg.centroids_from_labels(labels), P[3], radius_px=5)
    # Training here is deterministic (tests/seg/conftest.py: TF_DETERMINISTIC_OPS, no oneDNN, one
    # thread; seeded), so this is one fixed number per platform: 0.821 with seed 0 (the same on a
    # rerun).  What it can vary by elsewhere: seeds 1, 2, 3 give 0.750, 0.852, 0.873 (and runs with 2
    # threads before gave 0.79-0.90); the bound sits below all of them.  The tiny init model alone scores
    # 0.857: 60 steps on pseudo-masks need not beat a model trained on true masks, so the test claims
    # only that the centres -> pseudo-masks -> fine-tuning pipeline finds most held-out nuclei.
    assert s["f1"] >= 0.70, s
