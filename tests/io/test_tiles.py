"""Tiles: exact ownership (every tissue pixel in exactly one tile core), geometry, resampling, masks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tissuegraph as tg


def _owner_counts(grid, w0, h0):
    """For every level-0 pixel, how many kept tile cores own it."""
    counts = np.zeros((h0, w0), np.int32)
    for spec in grid:
        # pixel index p (centre at edge coordinate p + 0.5) is owned iff x0 <= p + 0.5 < x1
        x0, y0, x1, y1 = (int(np.ceil(v - 0.5)) for v in spec.core)
        counts[y0:y1, x0:x1] += 1
    return counts


@settings(max_examples=40, deadline=None)
@given(w0=st.integers(1, 400), h0=st.integers(1, 400), size=st.integers(8, 96), overlap_frac=st.floats(0, 0.9),
       scale=st.sampled_from([0.5, 1.0, 1.7, 2.0, 3.3]), seed=st.integers(0, 10_000),
       mask_shape=st.tuples(st.integers(1, 50), st.integers(1, 50)))
def test_tissue_pixels_owned_exactly_once(w0, h0, size, overlap_frac, scale, seed, mask_shape):
    overlap = min(size - 1, int(size * overlap_frac))
    rng = np.random.default_rng(seed)
    mask = rng.random(mask_shape) < 0.3
    slide = tg.io.open_slide(np.zeros((h0, w0), np.uint8), mpp=1.0)
    tm = tg.io.TissueMask(mask, (w0, h0))
    grid = tg.io.tile_grid(slide, mpp=scale, size=size, overlap=overlap, mask=tm)
    counts = _owner_counts(grid, w0, h0)
    tissue0 = tm.resized((h0, w0))  # the mask seen at level 0 (by pixel centres)
    assert counts.max() <= 1  # cores never overlap
    assert (counts[tissue0] == 1).all()  # every tissue pixel is owned by exactly one kept core
    full = tg.io.tile_grid(slide, mpp=scale, size=size, overlap=overlap, mask="all")
    assert (_owner_counts(full, w0, h0) == 1).all()  # without a mask the cores partition the slide
    # the tile image contains its core, with overlap // 2 px of context before it
    for spec in grid:
        cx0, cy0, cx1, cy1 = spec.core_px
        assert cx0 == pytest.approx(overlap // 2) and cy0 == pytest.approx(overlap // 2)
        assert cx1 <= spec.width + 1e-6 and cy1 <= spec.height + 1e-6
        # owns() agrees with the core box and with the grid's vectorised owner lookup
        xs = rng.uniform(-1, w0, 20)
        ys = rng.uniform(-1, h0, 20)
        rows, cols = grid.owner(xs, ys)
        inside = (xs + 0.5 >= 0) & (ys + 0.5 >= 0) & (xs + 0.5 < w0) & (ys + 0.5 < h0)
        assert np.array_equal(spec.owns(xs, ys)[inside], ((rows == spec.row) & (cols == spec.col))[inside])


def test_tile_pixels_and_coordinate_maps():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (300, 500, 3)).astype(np.uint8)
    slide = tg.io.open_slide(img, mpp=0.5)
    tiles = list(tg.io.tiles(slide, mpp=0.5, size=128, overlap=32, mask="all"))
    assert len(tiles) == 4 * 6  # stride 96: ceil(300 / 96) x ceil(500 / 96)
    t = tiles[6]
    # at the native resolution the tile is an exact crop (padded with white outside the slide)
    x0, y0 = int(t.x0), int(t.y0)
    ref = slide.read_region((x0, y0), 0, (128, 128))
    np.testing.assert_array_equal(t.image, ref)
    pts = np.array([[0.0, 0.0], [10.0, 20.0], [127.0, 127.0]])
    np.testing.assert_allclose(t.from_level0(t.to_level0(pts)), pts)
    np.testing.assert_allclose(t.to_level0(pts), pts + [x0, y0])


def test_tiles_at_coarser_mpp_use_pyramid_and_resample(tmp_path):
    img = np.zeros((512, 768, 3), np.uint8)
    img[:, :384] = 200  # left half light, right half dark
    path = tg.io.write_slide(tmp_path / "p.tiff", img, mpp=0.25, tile_size=128)
    slide = tg.io.open_slide(path)
    grid = tg.io.tile_grid(slide, mpp=1.0, size=64, overlap=0, mask="all")
    assert grid.scale == pytest.approx(4.0)
    assert all(s.level == 2 for s in grid)  # read from the 4x level, not level 0
    t0 = grid[0].read(slide)
    assert t0.shape == (64, 64, 3)
    assert (t0[:, :60] == 200).all()  # 64 px at 1 µm/px = 256 level-0 px: all in the light half
    # a tile straddling the boundary shows the edge at the right place (level-0 x=384 -> tile x=32)
    t1 = grid[1].read(slide)
    assert (t1[:, :31] == 200).all() and (t1[:, 33:] == 0).all()


def test_background_tiles_are_skipped_and_empty_slides_work():
    img = np.full((400, 400, 3), 250, np.uint8)
    img[50:150, 60:160] = (120, 60, 150)  # one tissue patch
    slide = tg.io.open_slide(img, mpp=1.0)
    grid = tg.io.tile_grid(slide, mpp=1.0, size=100, overlap=10)
    assert 1 <= len(grid) <= 6
    for spec in grid:
        x0, y0, x1, y1 = spec.core
        assert x0 < 170 and y0 < 170 and x1 > 50 and y1 > 40
    glass = tg.io.open_slide(np.full((300, 300, 3), 245, np.uint8), mpp=1.0)
    assert len(tg.io.tile_grid(glass, mpp=1.0, size=100, overlap=10)) == 0
    assert list(tg.io.tiles(glass, mpp=1.0, size=100, overlap=10)) == []


def test_tile_grid_argument_errors():
    s = tg.io.open_slide(np.zeros((50, 50, 3), np.uint8), mpp=1.0)
    with pytest.raises(tg.InputError, match="overlap"):
        tg.io.tile_grid(s, mpp=1.0, size=32, overlap=32, mask="all")
    with pytest.raises(tg.InputError, match="size"):
        tg.io.tile_grid(s, mpp=1.0, size=0, overlap=0, mask="all")
    with pytest.raises(tg.InputError, match="mask"):
        tg.io.tile_grid(s, mpp=1.0, size=32, overlap=0, mask=3)
    with pytest.raises(tg.InputError, match="made for"):
        tg.io.tile_grid(s, mpp=1.0, size=32, overlap=0, mask=tg.io.TissueMask(np.ones((4, 4)), (10, 10)))
