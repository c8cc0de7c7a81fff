"""Slide reading and writing: round trips through OpenSlide, µm/px, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import tissuegraph as tg
from tissuegraph import MissingMppError, SlideFormatError, SlideNotFoundError


def _smooth_rgb(h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random((h // 64 + 2, w // 64 + 2, 3))
    from scipy.ndimage import zoom

    img = zoom(base, (64, 64, 1), order=3)[:h, :w]
    return np.clip(img * 200 + 30, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("compression", ["deflate", "jpeg"])
def test_write_read_roundtrip_openslide(tmp_path, compression):
    import openslide

    img = _smooth_rgb(700, 1100)
    path = tg.io.write_slide(tmp_path / "s.tiff", img, mpp=0.25, tile_size=256, compression=compression)
    osl = openslide.OpenSlide(str(path))
    assert osl.dimensions == (1100, 700)
    assert osl.level_count >= 3
    assert float(osl.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.25)
    slide = tg.io.open_slide(path)
    assert slide.backend == "openslide"
    assert slide.mpp == pytest.approx(0.25)
    back = slide.read_region((0, 0), 0, (1100, 700))
    if compression == "deflate":
        np.testing.assert_array_equal(back, img)
    else:
        assert np.abs(back.astype(int) - img).mean() < 3.0
    # every level: pixels match a 2x2 mean pyramid, and its own resolution tag gives mpp * downsample
    expected = img
    with tifffile.TiffFile(path) as tif:
        pages = list(tif.pages)
        assert len(pages) == slide.level_count
        for level, page in enumerate(pages):
            assert page.is_tiled
            assert (page.subfiletype == 1) == (level > 0)
            num, den = page.tags["XResolution"].value
            assert 1e4 / (num / den) == pytest.approx(0.25 * 2 ** level, rel=1e-4)
    for level in range(1, slide.level_count):
        h, w = expected.shape[:2]
        padded = np.pad(expected.astype(np.float32), [(0, h % 2), (0, w % 2), (0, 0)], mode="edge")
        expected = np.rint(0.25 * (padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2]
                                   + padded[1::2, 1::2])).astype(np.uint8)
        lw, lh = slide.level_dimensions[level]
        assert (lw, lh) == (expected.shape[1], expected.shape[0])
        got = slide.read_region((0, 0), level, (lw, lh))
        tol = 0 if compression == "deflate" else 4.0
        assert np.abs(got.astype(int) - expected).mean() <= tol
        assert slide.level_mpp(level) == pytest.approx(0.25 * slide.level_downsamples[level])


def test_write_callable_source_and_label_pyramid(tmp_path):
    rng = np.random.default_rng(1)
    lab = rng.integers(0, 2 ** 31, (333, 517)).astype(np.uint32)
    path = tg.io.write_slide(tmp_path / "lab.tiff", lambda y0, x0, h, w: lab[y0:y0 + h, x0:x0 + w], mpp=0.5,
                             shape=lab.shape, dtype=np.uint32, tile_size=128, resample="nearest")
    s = tg.io.open_slide(path)
    assert s.backend == "tifffile" and s.dtype == np.uint32 and s.channels == 1
    np.testing.assert_array_equal(s.read_region((0, 0), 0, (517, 333)), lab)
    np.testing.assert_array_equal(s.read_region((0, 0), 1, s.level_dimensions[1]), lab[::2, ::2])
    assert s.mpp == pytest.approx(0.5)


def test_slide_writer_rejects_wrong_strips(tmp_path):
    with pytest.raises(tg.InputError, match="Strip at row 0"):
        with tg.io.SlideWriter(tmp_path / "x.tiff", shape=(100, 100, 3), mpp=1.0, tile_size=64) as w:
            w.write(np.zeros((10, 100, 3), np.uint8))
    assert not (tmp_path / "x.tiff").exists()  # an aborted write leaves no partial file
    with pytest.raises(tg.InputError, match="Only 64 of 100 rows"):
        w = tg.io.SlideWriter(tmp_path / "y.tiff", shape=(100, 100), dtype=np.uint8, mpp=1.0, tile_size=64)
        w.write(np.zeros((64, 100), np.uint8))
        w.close()


def test_read_region_outside_is_background_and_thumbnail():
    img = _smooth_rgb(300, 400)
    s = tg.io.open_slide(img, mpp=0.5)
    r = s.read_region((-10, -20), 0, (50, 60))
    assert r.shape == (60, 50, 3)
    assert (r[:20] == 255).all() and (r[:, :10] == 255).all()
    np.testing.assert_array_equal(r[20:, 10:], img[:40, :40])
    th = s.get_thumbnail((100, 100))
    assert th.shape == (75, 100, 3)
    assert abs(th.astype(float).mean() - img.astype(float).mean()) < 2


def test_plain_formats_and_mpp_metadata(tmp_path):
    from PIL import Image

    img = _smooth_rgb(120, 160)
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img).save(tmp_path / "b.jpg", quality=95)
    tifffile.imwrite(tmp_path / "c.tif", img, resolution=(1e4 / 0.4, 1e4 / 0.4), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "d.tif", img, resolution=(72, 72), resolutionunit="INCH")  # placeholder dpi
    a = tg.io.open_slide(tmp_path / "a.png")
    assert a.backend == "pillow" and a.mpp is None and a.dimensions == (160, 120)
    np.testing.assert_array_equal(a.read_region((0, 0), 0, (160, 120)), img)
    b = tg.io.open_slide(tmp_path / "b.jpg")
    assert np.abs(b.read_region((0, 0), 0, (160, 120)).astype(int) - img).mean() < 3
    c = tg.io.open_slide(tmp_path / "c.tif")
    assert c.backend == "tifffile" and c.mpp == pytest.approx(0.4)
    assert tg.io.open_slide(tmp_path / "d.tif").mpp is None  # 72 dpi is not a microscope's pixel size
    assert tg.io.open_slide(tmp_path / "a.png", mpp=0.3).mpp == pytest.approx(0.3)  # caller overrides


def test_multichannel_tiff_keeps_channels(tmp_path):
    arr = np.random.default_rng(0).integers(0, 4000, (3, 64, 80)).astype(np.uint16)  # CYX planar
    tifffile.imwrite(tmp_path / "f.tif", arr, photometric="minisblack")
    s = tg.io.open_slide(tmp_path / "f.tif")
    assert s.channels == 3 and s.dtype == np.uint16 and not s.is_rgb
    np.testing.assert_array_equal(s.read_region((5, 6), 0, (10, 12)), np.moveaxis(arr, 0, -1)[6:18, 5:15])
    assert (s.read_region((-5, 0), 0, (10, 2))[:, :5] == 0).all()  # fluorescence background is 0


def test_missing_mpp_error_says_how_to_fix(tmp_path):
    s = tg.io.open_slide(np.zeros((50, 60, 3), np.uint8))
    with pytest.raises(MissingMppError, match=r"open_slide\(.*mpp="):
        s.require_mpp("tiling")
    with pytest.raises(MissingMppError, match="mpp"):
        tg.io.tile_grid(s, mpp=0.5, size=32, overlap=0, mask="all")
    # without µm/px, tiling at native resolution works
    assert len(tg.io.tile_grid(s, mpp=None, size=32, overlap=0, mask="all")) == 4


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(SlideNotFoundError, match="No such slide"):
        tg.io.open_slide(tmp_path / "nope.svs")
    (tmp_path / "empty.svs").write_bytes(b"")
    with pytest.raises(SlideFormatError, match="empty"):
        tg.io.open_slide(tmp_path / "empty.svs")
    (tmp_path / "notes.tif").write_text("this is not an image at all\n" * 10)
    with pytest.raises(SlideFormatError):
        tg.io.open_slide(tmp_path / "notes.tif")
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(SlideFormatError, match="not an image"):
        tg.io.open_slide(tmp_path / "notes.png")
    with pytest.raises(SlideFormatError, match="directory"):
        tg.io.open_slide(tmp_path)
    with pytest.raises(tg.InputError, match="backend must be one of"):
        tg.io.open_slide(np.zeros((4, 4)), backend="vips")
    with pytest.raises(tg.InputError, match="NaN"):
        tg.io.open_slide(np.full((4, 4), np.nan))
    with pytest.raises(tg.InputError, match="shape"):
        tg.io.open_slide(np.zeros((2, 3, 4, 5)))
    with pytest.raises(tg.InputError, match="mpp"):
        tg.io.open_slide(np.zeros((4, 4)), mpp=-1)
    # every error is also a TissuegraphError and the matching builtin
    with pytest.raises(tg.TissuegraphError):
        tg.io.open_slide(tmp_path / "nope.svs")
    with pytest.raises(FileNotFoundError):
        tg.io.open_slide(tmp_path / "nope.svs")


@pytest.mark.parametrize("compression", ["deflate", "jpeg"])
def test_truncated_and_corrupt_slides(tmp_path, compression):
    img = _smooth_rgb(600, 900)
    path = tg.io.write_slide(tmp_path / "t.tiff", img, mpp=0.5, tile_size=128, compression=compression)
    data = path.read_bytes()
    # cut the file in the middle of the level-0 tile data: opening or reading must fail clearly
    cut = tmp_path / "cut.tiff"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(SlideFormatError):
        s = tg.io.open_slide(cut)
        s.read_region((0, 0), 0, (900, 600))
    # overwrite the header: not a TIFF any more
    bad = tmp_path / "bad.tiff"
    bad.write_bytes(b"\x00" * 64 + data[64:])
    with pytest.raises(SlideFormatError):
        tg.io.open_slide(bad)


def test_read_region_argument_errors():
    s = tg.io.open_slide(np.zeros((20, 20, 3), np.uint8), mpp=1)
    with pytest.raises(tg.InputError, match="level"):
        s.read_region((0, 0), 3, (5, 5))
    with pytest.raises(tg.InputError, match="size"):
        s.read_region((0, 0), 0, (0, 5))


def test_dark_rgb_images_pad_with_black():
    """A fluorescence image stored as RGB (dark background) must not be padded with white at tile borders."""
    fluo = np.zeros((100, 120, 3), np.uint8)
    fluo[40:60, 50:70] = 200
    s = tg.io.open_slide(fluo)
    assert (s.background == 0).all()
    assert (s.read_region((-10, -10), 0, (20, 20))[:10] == 0).all()
    he = np.full((100, 120, 3), 235, np.uint8)
    assert (tg.io.open_slide(he).background == 255).all()
