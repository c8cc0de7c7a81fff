"""Exact pixel-corner contours and their inverse (tissuegraph._contours)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage as ndi

from tissuegraph._contours import label_contours, polygon_area, rasterize_contours, tile_offset
from tissuegraph._errors import InputError

EIGHT = np.ones((3, 3), dtype=bool)


def _largest_filled(mask: np.ndarray) -> np.ndarray:
    """Largest 8-connected piece of ``mask`` with its holes filled (the documented contract)."""
    cc, n = ndi.label(mask, structure=EIGHT)
    if n == 0:
        return np.zeros_like(mask, dtype=bool)
    filled = [ndi.binary_fill_holes(cc == k + 1) for k in range(n)]
    areas = [f.sum() for f in filled]
    return filled[int(np.argmax(areas))]


# ----------------------------------------------------------------------------- literal cases

def test_single_pixel_literal():
    m = np.zeros((5, 6), dtype=np.int32)
    m[2, 3] = 1
    c = label_contours(m)
    assert list(c) == [1]
    np.testing.assert_array_equal(c[1], [[2.5, 1.5], [3.5, 1.5], [3.5, 2.5], [2.5, 2.5]])
    assert c[1].dtype == np.float32
    assert polygon_area(c[1]) == 1.0


def test_rectangle_collinear_merged_and_orientation():
    m = np.zeros((6, 8), dtype=np.uint16)
    m[1:4, 2:7] = 7
    c = label_contours(m)[7]
    np.testing.assert_array_equal(c, [[1.5, 0.5], [6.5, 0.5], [6.5, 3.5], [1.5, 3.5]])
    assert polygon_area(c) == 15.0  # positive = the documented orientation


def test_l_shape_literal():
    m = np.array([[1, 0],
                  [1, 1]])
    c = label_contours(m)[1]
    np.testing.assert_array_equal(
        c, [[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [1.5, 0.5], [1.5, 1.5], [-0.5, 1.5]])
    assert polygon_area(c) == 3.0


def test_diagonal_pixels_are_one_piece():
    m = np.zeros((4, 4), dtype=int)
    m[1, 1] = m[2, 2] = 1
    c = label_contours(m)[1]
    assert len(c) == 8
    assert polygon_area(c) == 2.0
    # the outline touches itself at the shared corner (1.5, 1.5)
    assert ((c == [1.5, 1.5]).all(axis=1)).sum() == 2
    np.testing.assert_array_equal(rasterize_contours({1: c}, m.shape), m)


def test_hole_is_filled():
    m = np.zeros((7, 7), dtype=int)
    m[1:6, 1:6] = 3
    m[3, 3] = 0
    c = label_contours(m)
    np.testing.assert_array_equal(c[3], [[0.5, 0.5], [5.5, 0.5], [5.5, 5.5], [0.5, 5.5]])
    expected = m.copy()
    expected[3, 3] = 3
    np.testing.assert_array_equal(rasterize_contours(c, m.shape), expected)


def test_hole_touching_outside_diagonally():
    # the hole (1, 1) touches the outside (0, 0) only at a corner: still a hole (background 4-conn)
    m = np.array([[0, 1, 1],
                  [1, 0, 1],
                  [1, 1, 1]])
    c = label_contours(m)[1]
    assert polygon_area(c) == 8.0
    expected = m.copy()
    expected[1, 1] = 1
    np.testing.assert_array_equal(rasterize_contours({1: c}, m.shape), expected)


def test_largest_piece_kept():
    m = np.zeros((6, 9), dtype=int)
    m[0, 0] = 2
    m[2:5, 4:8] = 2
    c = label_contours(m)[2]
    assert polygon_area(c) == 12.0
    r = rasterize_contours({2: c}, m.shape)
    assert r[0, 0] == 0 and (r[2:5, 4:8] == 2).all()


def test_nested_label_in_hole_and_touching_labels():
    m = np.zeros((9, 9), dtype=int)
    m[1:8, 1:8] = 1
    m[3:6, 3:6] = 2  # inside 1's hole
    m[0, 1:8] = 5  # touching 1 along its top
    c = label_contours(m)
    assert list(c) == [1, 2, 5]
    assert polygon_area(c[1]) == 49.0
    # ids order and subset
    c2 = label_contours(m, ids=[5, 2])
    assert list(c2) == [5, 2]
    np.testing.assert_array_equal(c2[2], c[2])
    np.testing.assert_array_equal(c2[5], c[5])
    # inner label listed after the outer one: rasterising gives back the image
    np.testing.assert_array_equal(rasterize_contours(c, m.shape), m)


def test_mask_touching_array_border():
    m = np.ones((3, 4), dtype=int)
    c = label_contours(m)[1]
    np.testing.assert_array_equal(c, [[-0.5, -0.5], [3.5, -0.5], [3.5, 2.5], [-0.5, 2.5]])
    np.testing.assert_array_equal(rasterize_contours({1: c}, m.shape), m)


def test_empty_and_errors():
    assert label_contours(np.zeros((4, 4), dtype=int)) == {}
    assert label_contours(np.zeros((0, 0), dtype=int)) == {}
    with pytest.raises(InputError, match="2-D"):
        label_contours(np.zeros((2, 2, 2), dtype=int))
    with pytest.raises(InputError, match="negative"):
        label_contours(-np.ones((2, 2), dtype=int))
    with pytest.raises(InputError, match="not in the label image"):
        label_contours(np.ones((2, 2), dtype=int), ids=[1, 4])
    with pytest.raises(InputError, match="shape"):
        rasterize_contours([np.zeros((3, 3))], (4, 4))
    with pytest.raises(InputError, match="NaN"):
        rasterize_contours([np.array([[0, 0], [1, np.nan], [1, 1]])], (4, 4))
    with pytest.raises(InputError, match="one id per contour"):
        rasterize_contours([np.zeros((3, 2))], (4, 4), ids=[1, 2])
    with pytest.raises(InputError, match="scale"):
        rasterize_contours([], (4, 4), scale=0)
    assert rasterize_contours([], (3, 2)).shape == (3, 2)


def test_offset_scale_round_trip_and_tile_offset():
    m = np.zeros((10, 12), dtype=int)
    m[2:5, 3:9] = 1
    m[6:9, 1:3] = 2
    X, Y, s = 1000, 2000, 2.0
    off = tile_offset((X, Y), s)
    assert off == (X + 0.5 * s - 0.5, Y + 0.5 * s - 0.5)
    c = label_contours(m, offset=off, scale=s)
    # tile pixel 3 (left edge of label 1 at u = 2.5) -> level-0 X + 2.5*s + 0.5*s - 0.5
    assert c[1][:, 0].min() == X + 2.5 * s + 0.5 * s - 0.5
    # level-0 contour of a pixel covers s x s level-0 pixels
    assert polygon_area(c[1]) == 18 * s * s
    np.testing.assert_array_equal(rasterize_contours(c, m.shape, offset=off, scale=s), m)
    # the same contours rasterised at level 0 cover the upsampled mask exactly
    r0 = rasterize_contours(c, (m.shape[0] * 2, m.shape[1] * 2), offset=(X, Y))
    np.testing.assert_array_equal(r0, np.kron(m, np.ones((2, 2), dtype=int)))


def test_rasterize_matches_shapely_on_general_polygons():
    shapely = pytest.importorskip("shapely")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:50]
    centres = shapely.points(xx.ravel(), yy.ravel())
    for _ in range(20):
        k = rng.integers(3, 12)
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(3, 15, k)
        cx, cy = rng.uniform(5, 45), rng.uniform(5, 35)
        poly = np.c_[cx + rad * np.cos(ang), cy + rad * np.sin(ang)]
        r = rasterize_contours([poly], (40, 50))
        inside = shapely.contains(shapely.Polygon(poly), centres).reshape(40, 50)
        np.testing.assert_array_equal(r == 1, inside)


def test_pandas_series_input():
    pd = pytest.importorskip("pandas")
    m = np.zeros((5, 5), dtype=int)
    m[1:3, 1:3] = 4
    m[3:5, 0:2] = 9
    c = label_contours(m)
    s = pd.Series(list(c.values()))
    np.testing.assert_array_equal(rasterize_contours(s, m.shape, ids=list(c)), m)


def test_speed_sized_tile_round_trip():
    """A realistic tile (many touching nuclei): exact round trip (the speed goal is in benchmarks)."""
    from skimage.segmentation import expand_labels

    rng = np.random.default_rng(1)
    seeds = np.zeros((256, 256), dtype=np.int32)
    pts = rng.integers(0, 256, (150, 2))
    seeds[pts[:, 0], pts[:, 1]] = np.arange(1, 151)
    lab = expand_labels(seeds, 8)
    c = label_contours(lab)
    assert len(c) == len(np.unique(lab)) - 1
    np.testing.assert_array_equal(rasterize_contours(c, lab.shape), lab)


def test_sorted_lookup_path_equals_dense_map(monkeypatch):
    """Huge images use binary search instead of the dense edge map: same contours."""
    import tissuegraph._contours as C
    from skimage.segmentation import expand_labels

    rng = np.random.default_rng(2)
    seeds = np.zeros((120, 140), dtype=np.int32)
    pts = rng.integers(0, (120, 140), (40, 2))
    seeds[pts[:, 0], pts[:, 1]] = np.arange(1, 41)
    lab = expand_labels(seeds, 7)
    lab[rng.random(lab.shape) < 0.05] = 0
    ref = label_contours(lab)
    monkeypatch.setattr(C, "_DENSE_MAP_MAX", 0)
    out = label_contours(lab)
    assert list(out) == list(ref)
    for k in ref:
        np.testing.assert_array_equal(out[k], ref[k])


# ----------------------------------------------------------------------------- properties

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_property_single_mask_round_trip(mask):
    target = _largest_filled(mask)
    assume(target.any())
    m = target.astype(np.int32) * 3
    c = label_contours(mask.astype(np.int32) * 3)
    assert list(c) == [3]
    poly = c[3]
    assert polygon_area(poly) == target.sum()  # area of the outline = filled pixel count
    # vertices at half-integers, consecutive ones axis-aligned, no collinear triples
    assert np.all((poly * 2) % 2 == 1)
    step = np.diff(np.vstack([poly, poly[:1]]), axis=0)
    assert np.all((step[:, 0] == 0) ^ (step[:, 1] == 0))
    horiz = step[:, 1] == 0
    assert np.all(horiz != np.roll(horiz, 1))
    np.testing.assert_array_equal(rasterize_contours(c, m.shape), m)


def _clean_labels(lab: np.ndarray) -> np.ndarray:
    """Make every label one 8-connected hole-free piece (iterate: largest piece, then fill holes)."""
    lab = lab.copy()
    for _ in range(10):
        changed = False
        for k in np.unique(lab[lab > 0]):
            mask = lab == k
            if not mask.any():
                continue
            target = _largest_filled(mask)
            if not np.array_equal(target, mask):
                lab[mask & ~target] = 0
                lab[target] = k
                changed = True
        if not changed:
            return lab
    return None


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.int8, st.tuples(st.integers(1, 14), st.integers(1, 14)), elements=st.integers(0, 4)))
def test_property_label_image_round_trip(raw):
    lab = _clean_labels(raw.astype(np.int32))
    assume(lab is not None and lab.any())
    c = label_contours(lab)
    assert list(c) == sorted(np.unique(lab[lab > 0]).tolist())
    np.testing.assert_array_equal(rasterize_contours(c, lab.shape), lab)
    # and through level-0 coordinates of a tile at scale 0.5 with an odd origin
    off = tile_offset((17, 5), 0.5)
    c2 = label_contours(lab, offset=off, scale=0.5)
    np.testing.assert_array_equal(rasterize_contours(c2, lab.shape, offset=off, scale=0.5), lab)
