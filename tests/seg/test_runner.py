"""The tiled runner: ownership by centroid, no duplicates or seams, independence of tiling and n_jobs,
checkpoint/resume, label output, empty inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tissuegraph as tg
from tissuegraph import _keys as K
from tests.helpers import disks_image


class ThresholdBackend:
    """A translation-invariant toy backend: connected components of dark pixels (global threshold)."""

    name = "threshold"
    mpp = None
    max_object_px = 24

    def __init__(self):
        self.calls = 0

    def segment(self, image, *, mpp=None):
        from scipy import ndimage as ndi

        self.calls += 1
        grey = image.mean(axis=-1) if image.ndim == 3 else image
        labels, n = ndi.label(grey < 128)
        return labels.astype(np.int32), np.linspace(0.5, 1.0, n) if n else np.zeros(0)


def _match_sets(df, labels):
    """Each detected nucleus maps to exactly one true object, with the same pixel count."""
    xs = np.rint(df[K.nuclei.x].to_numpy()).astype(int)
    ys = np.rint(df[K.nuclei.y].to_numpy()).astype(int)
    hit = labels[ys, xs]
    return hit


@pytest.mark.parametrize("tile_size,overlap,n_jobs", [(128, 64, 1), (200, 70, 2), (1024, None, 1)])
def test_tiled_equals_whole_image(tile_size, overlap, n_jobs):
    img, truth = disks_image((600, 800), n=70, seed=3)
    whole = tg.seg.nuclei(img, method=ThresholdBackend(), tile_size=2048, overlap=64, mask="all")
    tiled = tg.seg.nuclei(img, method=ThresholdBackend(), tile_size=tile_size, overlap=overlap, mask="all",
                          n_jobs=n_jobs)
    n_true = truth.max()
    assert len(whole) == n_true
    assert len(tiled) == n_true  # no duplicates, nothing lost
    hit = _match_sets(tiled, truth)
    assert sorted(hit) == list(range(1, n_true + 1))
    areas = np.bincount(truth.ravel())[hit]
    np.testing.assert_array_equal(tiled[K.nuclei.area_px].to_numpy(), areas)  # nothing cut at borders
    # same objects, same geometry as the whole-image run (ids may be ordered differently)
    a = whole.sort_values([K.nuclei.y, K.nuclei.x]).reset_index(drop=True)
    b = tiled.sort_values([K.nuclei.y, K.nuclei.x]).reset_index(drop=True)
    np.testing.assert_allclose(a[[K.nuclei.x, K.nuclei.y]].to_numpy(), b[[K.nuclei.x, K.nuclei.y]].to_numpy())
    for ca, cb in zip(a[K.nuclei.contour], b[K.nuclei.contour]):
        np.testing.assert_array_equal(ca, cb)
    assert tiled[K.nuclei.id].tolist() == list(range(1, n_true + 1))
    assert tiled.attrs["n_cut"] == 0


def test_result_does_not_depend_on_n_jobs():
    img, _ = disks_image((500, 700), n=50, seed=5)
    r1 = tg.seg.nuclei(img, method=ThresholdBackend(), tile_size=160, overlap=64, mask="all", n_jobs=1)
    r2 = tg.seg.nuclei(img, method=ThresholdBackend(), tile_size=160, overlap=64, mask="all", n_jobs=2)
    pd.testing.assert_frame_equal(r1.drop(columns=[K.nuclei.contour]), r2.drop(columns=[K.nuclei.contour]))


def test_table_schema_units_and_contours_rasterise_back():
    img, truth = disks_image((300, 400), n=20, seed=1)
    df = tg.seg.nuclei(img, method=ThresholdBackend(), slide_mpp=0.5, tile_size=256, overlap=64, mask="all")
    assert list(df.columns) == tg.seg.NUCLEI_COLUMNS
    assert df.attrs["seg_mpp"] == pytest.approx(0.5)
    np.testing.assert_allclose(df[K.nuclei.area_um2], df[K.nuclei.area_px] * 0.25)
    assert ((df[K.nuclei.score] >= 0.5) & (df[K.nuclei.score] <= 1)).all()
    from tissuegraph._contours import rasterize_contours

    back = rasterize_contours(list(df[K.nuclei.contour]), truth.shape, ids=df[K.nuclei.id].to_numpy())
    hit = _match_sets(df, truth)
    remap = np.zeros(truth.max() + 1, np.int64)
    remap[hit] = df[K.nuclei.id].to_numpy()
    np.testing.assert_array_equal(back, remap[truth])
    # bounding boxes are half-open level-0 boxes of the masks
    for _, row in df.iterrows():
        ys, xs = np.nonzero(back == row[K.nuclei.id])
        assert (row["bbox_x0"], row["bbox_y0"], row["bbox_x1"], row["bbox_y1"]) == \
            (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_segmenting_at_a_coarser_mpp_maps_back_to_level0():
    img, truth = disks_image((600, 800), n=40, r_range=(8, 14), seed=2)
    df = tg.seg.nuclei(img, method=ThresholdBackend(), slide_mpp=0.25, mpp=0.5, tile_size=256, overlap=64,
                       mask="all")
    assert df.attrs["scale"] == pytest.approx(2.0)
    hit = _match_sets(df, truth)
    assert len(set(hit.tolist()) - {0}) == truth.max() == len(df)
    from scipy import ndimage as ndi

    true_c = np.array(ndi.center_of_mass(truth > 0, truth, hit))[:, ::-1]
    err = np.abs(df[[K.nuclei.x, K.nuclei.y]].to_numpy() - true_c)
    assert err.max() < 1.0  # centroids within one level-0 pixel after the 2x round trip


def test_checkpoint_resume(tmp_path):
    img, truth = disks_image((400, 600), n=40, seed=7)
    be = ThresholdBackend()
    ref = tg.seg.nuclei(img, method=be, tile_size=160, overlap=64, mask="all", checkpoint=tmp_path / "ck")
    n_tiles = ref.attrs["n_tiles"]
    assert be.calls == n_tiles
    # simulate a crash after some tiles: remove half the tile files, then run again
    files = sorted((tmp_path / "ck").glob("tile_*.pkl"))
    for f in files[::2]:
        f.unlink()
    be2 = ThresholdBackend()
    again = tg.seg.nuclei(img, method=be2, tile_size=160, overlap=64, mask="all", checkpoint=tmp_path / "ck")
    assert be2.calls == len(files[::2])  # only the missing tiles were redone
    pd.testing.assert_frame_equal(ref.drop(columns=[K.nuclei.contour]), again.drop(columns=[K.nuclei.contour]))
    with pytest.raises(tg.InputError, match="different run"):
        tg.seg.nuclei(img, method=ThresholdBackend(), tile_size=200, overlap=64, mask="all",
                      checkpoint=tmp_path / "ck")


def test_labels_out_pyramid(tmp_path):
    img, truth = disks_image((300, 500), n=25, seed=4)
    df = tg.seg.nuclei(img, method=ThresholdBackend(), slide_mpp=0.5, tile_size=128, overlap=64, mask="all",
                       labels_out=tmp_path / "labels.tiff")
    lab = tg.io.open_slide(tmp_path / "labels.tiff")
    assert lab.dtype == np.uint32 and lab.mpp == pytest.approx(0.5)
    arr = lab.read_region((0, 0), 0, (500, 300))
    hit = _match_sets(df, truth)
    remap = np.zeros(truth.max() + 1, np.int64)
    remap[hit] = df[K.nuclei.id].to_numpy()
    np.testing.assert_array_equal(arr, remap[truth])


def test_empty_inputs_are_normal():
    glass = np.full((300, 300, 3), 245, np.uint8)
    df = tg.seg.nuclei(glass, method=ThresholdBackend(), slide_mpp=0.5, tile_size=128, overlap=64)
    assert len(df) == 0 and list(df.columns) == tg.seg.NUCLEI_COLUMNS
    # tissue but no nuclei: every tile segmented, nothing found
    pink = np.full((300, 300, 3), (230, 150, 200), np.uint8)
    df = tg.seg.nuclei(pink, method=ThresholdBackend(), slide_mpp=0.5, tile_size=128, overlap=64)
    assert len(df) == 0 and df.attrs["n_tiles"] > 0


def test_small_overlap_warns_and_bad_backend_output_is_named():
    img, _ = disks_image((200, 200), n=5, seed=0)
    with pytest.warns(UserWarning, match="overlap"):
        tg.seg.nuclei(img, method=ThresholdBackend(), tile_size=128, overlap=8, mask="all")

    class Bad(ThresholdBackend):
        def segment(self, image, *, mpp=None):
            return np.zeros((3, 3), np.int32), None

    with pytest.raises(tg.InputError, match="shape"):
        tg.seg.nuclei(img, method=Bad(), tile_size=128, overlap=64, mask="all")
    with pytest.raises(tg.InputError, match="method must be one of"):
        tg.seg.nuclei(img, method="cellpose")


class TwoPhaseBackend(ThresholdBackend):
    """Like ThresholdBackend, split into a 'network' phase and a post-processing phase."""

    def predict(self, image, *, mpp=None):
        grey = image.mean(axis=-1) if image.ndim == 3 else image
        return grey < 128

    def postprocess(self, raw, *, image_shape=None):
        from scipy import ndimage as ndi

        labels, n = ndi.label(raw)
        assert labels.shape == tuple(image_shape)
        return labels.astype(np.int32), np.linspace(0.5, 1.0, n) if n else np.zeros(0)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_two_phase_backends_are_pipelined_with_identical_results(n_jobs):
    img, truth = disks_image((500, 700), n=50, seed=9)
    ref = tg.seg.nuclei(img, method=ThresholdBackend(), tile_size=160, overlap=64, mask="all")
    two = tg.seg.nuclei(img, method=TwoPhaseBackend(), tile_size=160, overlap=64, mask="all", n_jobs=n_jobs)
    pd.testing.assert_frame_equal(ref.drop(columns=[K.nuclei.contour]), two.drop(columns=[K.nuclei.contour]))


class ShapeRecorder(ThresholdBackend):
    def __init__(self):
        super().__init__()
        self.shapes = []

    def segment(self, image, *, mpp=None):
        self.shapes.append(image.shape[:2])
        return super().segment(image, mpp=mpp)


@pytest.mark.parametrize("two_phase", [False, True])
def test_tiles_at_the_far_edges_are_cut_to_the_slide_plus_context(two_phase):
    img, truth = disks_image((300, 500), n=25, seed=4)
    rec = ShapeRecorder()
    if two_phase:
        class Rec2(TwoPhaseBackend):
            def predict(self, image, *, mpp=None):
                rec.shapes.append(image.shape[:2])
                return super().predict(image, mpp=mpp)

        backend = Rec2()
    else:
        backend = rec
    df = tg.seg.nuclei(img, method=backend, tile_size=256, overlap=64, mask="all", progress=False)
    assert len(df) == truth.max()  # nothing lost at the far edges
    assert len(rec.shapes) == df.attrs["n_tiles"]
    assert any(s != (256, 256) for s in rec.shapes)
    for h, w in rec.shapes:
        assert h <= 256 and w <= 256
    # a tile never reaches more than half the overlap (32 px) beyond the slide's far edges
    grid = tg.io.tile_grid(tg.io.open_slide(img), mpp=None, size=256, overlap=64, mask=None)
    for spec, (h, w) in zip(grid.specs, rec.shapes):
        rows, cols = spec.inside_mask((500, 300))
        assert (h, w) == (min(256, rows.stop + 32), min(256, cols.stop + 32))


def test_two_phase_backend_with_wrong_label_shape_is_named():
    img, _ = disks_image((300, 500), n=10, seed=2)

    class BadPost(TwoPhaseBackend):
        def postprocess(self, raw, *, image_shape=None):
            return np.zeros((5, 5), np.int32), None

    with pytest.raises(tg.InputError, match="labels of shape"):
        tg.seg.nuclei(img, method=BadPost(), tile_size=256, overlap=64, mask="all", progress=False)


def test_tiles_mostly_overlap_are_logged(caplog):
    """A tile_size barely above the overlap is legal but wasteful: the runner says so (and by how much)."""
    import logging

    img, truth = disks_image((600, 800), n=70, seed=3)
    with caplog.at_level(logging.WARNING, logger="tissuegraph"):
        df = tg.seg.nuclei(img, method=ThresholdBackend(), tile_size=120, overlap=64, mask="all")
    assert len(df) == truth.max()  # the result is still right
    assert "leaves a 56 px core per tile" in caplog.text and "tile_size >= 128" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tissuegraph"):
        tg.seg.nuclei(img, method=ThresholdBackend(), tile_size=256, overlap=64, mask="all")
    assert "core per tile" not in caplog.text
