"""The synthetic H&E slide: determinism, strip independence, exact ground truth, structure of the region
classes, nuisance parameters, realism (a classical segmenter finds the nuclei), files on disk."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

import tissuegraph as tg
from tissuegraph import InputError, _keys
from tissuegraph.datasets import _synthetic

T = _keys.truth


def _render(**kw):
    kw.setdefault("tissue_fraction", 1.0)
    shape = kw.pop("shape", (384, 384))
    return tg.datasets.synthetic_tissue(shape, **kw)


@pytest.fixture(scope="module")
def mixed():
    """All four region classes, glass around the tissue, a little blur (seed checked to hold 5 glands)."""
    return tg.datasets.synthetic_tissue((1024, 1024), seed=7, region_size_um=200, tissue_fraction=0.8,
                                        blur_um=0.3)


@pytest.fixture(scope="module")
def single():
    """One image per region class, the whole field of view tissue."""
    return {c: tg.datasets.synthetic_tissue((640, 640), seed=0, region_classes=(c,), tissue_fraction=1.0)
            for c in _synthetic.SYNTHETIC_REGION_CLASSES}


def _props(st):
    from skimage.measure import regionprops_table

    p = pd.DataFrame(regionprops_table(st.labels.astype(np.int64),
                                       properties=("label", "area", "axis_major_length", "axis_minor_length",
                                                   "orientation", "perimeter")))
    p = p.rename(columns={"label": T.id}).merge(st.nuclei, on=T.id)
    assert len(p) == len(st.nuclei)
    return p


# ----------------------------------------------------------------------------------- determinism
def test_same_seed_same_everything_other_seed_differs():
    a = _render(seed=3, tissue_fraction=0.7)
    b = _render(seed=3, tissue_fraction=0.7)
    c = _render(seed=4, tissue_fraction=0.7)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.regions, b.regions)
    pd.testing.assert_frame_equal(a.nuclei, b.nuclei)
    assert a.metadata == b.metadata
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.labels, c.labels)


def _cut(params: dict, strip_rows: int, block_cols: int, monkeypatch):
    monkeypatch.setattr(_synthetic, "_BLOCK_COLS", block_cols)
    layout, renderer = _synthetic._build(params)
    H, W = params["height"], params["width"]
    img = np.zeros((H, W, 3), np.uint8)
    lab = np.zeros((H, W), np.uint32)
    truth = _synthetic._Truth()
    for y0, rgb, l in _synthetic._strips(layout, renderer, strip_rows, progress=False):
        img[y0:y0 + len(rgb)] = rgb
        lab[y0:y0 + len(rgb)] = l
        truth.add(l, y0, 0)
    return img, lab, truth.table(layout)


def test_pixels_do_not_depend_on_strip_height_or_block_width(monkeypatch):
    params = _synthetic._resolve(size=(520, 430), mpp=0.5, seed=11, tissue_fraction=0.7, density=1.0, stain=None,
                                 stain_intensity=1.0, blur_um=0.8, noise=0.03,
                                 region_classes=_synthetic.SYNTHETIC_REGION_CLASSES, region_size_um=120)
    ref = _cut(params, 512, 2048, monkeypatch)
    assert ref[2].shape[0] > 50
    for strip_rows, block_cols in [(64, 200), (97, 520), (430, 129)]:
        img, lab, table = _cut(params, strip_rows, block_cols, monkeypatch)
        np.testing.assert_array_equal(img, ref[0])
        np.testing.assert_array_equal(lab, ref[1])
        pd.testing.assert_frame_equal(table, ref[2])


# ----------------------------------------------------------------------------------- ground truth
def test_truth_table_is_exact_for_the_label_image(mixed):
    lab, nuc = mixed.labels, mixed.nuclei
    ids = np.unique(lab)
    ids = ids[ids > 0]
    assert list(nuc.columns[:5]) == [T.id, T.x, T.y, T.cell_type, T.region]
    np.testing.assert_array_equal(nuc[T.id].to_numpy(), ids)
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))  # contiguous at 0.5 µm/px
    com = np.array(ndi.center_of_mass(np.ones(lab.shape), lab, ids))
    np.testing.assert_allclose(nuc[T.y], com[:, 0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(nuc[T.x], com[:, 1], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(nuc[T.area_px], ndi.sum(np.ones(lab.shape), lab, ids).astype(np.int64))
    assert set(nuc[T.cell_type].cat.categories) == set(_synthetic.SYNTHETIC_CELL_TYPES)
    assert list(nuc[T.region].cat.categories) == list(mixed.region_classes)
    # every class is present in this field of view
    assert (nuc[T.region].value_counts() > 20).all()
    epi = nuc[T.cell_type] == "epithelial"
    assert ((nuc[T.gland_id] > 0) == epi).all()
    assert (nuc.loc[epi, T.region] == "gland").all()
    # the region map agrees with the table at the centroids of non-gland nuclei
    other = nuc[~epi]
    code = mixed.regions[np.rint(other[T.y]).astype(int), np.rint(other[T.x]).astype(int)]
    names = np.array(["none", *mixed.region_classes])[code]
    assert (names == other[T.region].astype(str).to_numpy()).mean() > 0.97
    meta = mixed.metadata
    assert meta["counts"]["nuclei"] == len(nuc)
    assert meta["counts"]["glands"] == len(mixed.glands) >= 3
    assert sum(meta["counts"]["by_cell_type"].values()) == len(nuc)


# ----------------------------------------------------------------------------------- structure
def _density(st):
    return len(st.nuclei) / (st.tissue.sum() * st.mpp ** 2) * 1000.0  # per 1000 µm²


def test_immune_is_densest_with_small_round_nuclei(single):
    dens = {c: _density(st) for c, st in single.items()}
    assert max(dens, key=dens.get) == "immune"
    assert min(dens, key=dens.get) == "stroma"
    assert dens["immune"] > 2 * dens["tumour"]
    p = _props(single["immune"])
    lym = p[p[T.cell_type] == "lymphocyte"]
    assert len(lym) > 0.9 * len(p)
    diam_um = 2 * np.sqrt(lym["area"] / np.pi) * single["immune"].mpp
    assert 6.0 < diam_um.median() < 8.0
    assert (lym["axis_minor_length"] / lym["axis_major_length"]).median() > 0.8
    props = {c: _props(st) for c, st in single.items()}
    roundness = {c: (q["axis_minor_length"] / q["axis_major_length"]).median() for c, q in props.items()}
    assert max(roundness, key=roundness.get) == "immune"
    # smallest of the round nuclei (spindle fibroblasts are thin, not round)
    epi = props["gland"][props["gland"][T.cell_type] == "epithelial"]
    assert lym["area"].mean() < 0.5 * epi["area"].mean()
    assert lym["area"].mean() < 0.5 * props["tumour"]["area"].mean()


def _coherence(xy: np.ndarray, theta: np.ndarray, k: int = 6) -> np.ndarray:
    """Mean resultant length of the axial orientations of each nucleus and its k nearest neighbours."""
    _, nb = cKDTree(xy).query(xy, k=k + 1)
    z = np.exp(2j * theta)[nb]
    return np.abs(z.mean(axis=1))


def test_stroma_nuclei_are_elongated_and_aligned(single):
    p = _props(single["stroma"])
    fib = p[p[T.cell_type] == "fibroblast"]
    assert len(fib) > 0.8 * len(p) and len(fib) > 60
    assert (fib["axis_major_length"] / fib["axis_minor_length"]).median() > 3.0
    mpp = single["stroma"].mpp
    assert 11.0 < fib["axis_major_length"].median() * mpp < 19.0    # ~3 x 15 µm spindles
    assert 2.0 < fib["axis_minor_length"].median() * mpp < 4.5
    # skimage's orientation is measured from the row axis; any fixed convention works for coherence
    coh = _coherence(fib[[T.x, T.y]].to_numpy(), fib["orientation"].to_numpy())
    tum = _props(single["tumour"])
    coh_tum = _coherence(tum[[T.x, T.y]].to_numpy(), tum["orientation"].to_numpy())
    assert np.median(coh) > 0.85
    assert np.median(coh_tum) < 0.6
    # the drawn orientation (table) agrees with the measured one: axial angle difference small
    d = np.angle(np.exp(2j * (fib[T.orientation_rad] - (np.pi / 2 - fib["orientation"])))) / 2
    assert np.median(np.abs(d)) < np.deg2rad(8)


def test_tumour_nuclei_are_large_crowded_and_pleomorphic(single):
    st = single["tumour"]
    p = _props(st)
    tum = p[p[T.cell_type] == "tumour"]
    assert len(tum) > 0.8 * len(p)
    diam_um = 2 * np.sqrt(tum["area"] / np.pi) * st.mpp
    assert np.mean((diam_um > 9.0) & (diam_um < 19.0)) > 0.9
    assert 11.0 < diam_um.median() < 15.5
    lym = _props(single["immune"])
    cv = tum["area"].std() / tum["area"].mean()
    cv_lym = lym["area"].std() / lym["area"].mean()
    assert cv > 0.25 and cv > 2 * cv_lym
    gl = _props(single["gland"])
    epi = gl[gl[T.cell_type] == "epithelial"]
    # irregular outlines: perimeter above that of the moment-equivalent ellipse, more than the epithelium's
    def roughness(q):
        a, b = q["axis_major_length"] / 2, q["axis_minor_length"] / 2
        ellipse = np.pi * (3 * (a + b) - np.sqrt((3 * a + b) * (a + 3 * b)))  # Ramanujan
        return q["perimeter"] / ellipse

    assert roughness(tum).median() > roughness(epi).median() + 0.01
    # crowded: nearest-neighbour gap between outlines is small
    xy = tum[[T.x, T.y]].to_numpy()
    dist, _ = cKDTree(xy).query(xy, k=2)
    r = np.sqrt(tum["area"].to_numpy() / np.pi)
    assert np.median(dist[:, 1] - 2 * r) * st.mpp < 4.0
    assert st.glands.empty


def test_glands_are_rings_of_radial_epithelium_around_white_lumens(single):
    st = single["gland"]
    p = _props(st)
    g = st.glands
    assert len(g) >= 5
    mpp = st.mpp
    checked = 0
    for _, row in g.iterrows():
        h, w = st.labels.shape
        margin = (row["radius_um"] * 1.3) / mpp
        if not (margin < row["x"] < w - margin and margin < row["y"] < h - margin):
            continue
        checked += 1
        epi = p[p[T.gland_id] == row["gland_id"]]
        assert len(epi) == row["n_nuclei"] >= 12
        assert (epi[T.cell_type] == "epithelial").all()
        dx, dy = epi[T.x] - row["x"], epi[T.y] - row["y"]
        rad = np.hypot(dx, dy)
        assert rad.std() / rad.mean() < 0.15                      # a consistent radius
        ang = np.sort(np.arctan2(dy, dx))
        gaps = np.diff(np.concatenate([ang, [ang[0] + 2 * np.pi]]))
        assert gaps.max() < np.deg2rad(60)                         # all around the lumen
        # long axis radial (skimage orientation is from the row axis: axis angle = pi/2 - orientation)
        axis = np.pi / 2 - epi["orientation"]
        diff = np.angle(np.exp(2j * (axis - np.arctan2(dy, dx)))) / 2
        assert np.median(np.abs(diff)) < np.deg2rad(15)
        # columnar epithelial nuclei ~8 x 14 µm
        assert 10.0 < epi["axis_major_length"].median() * mpp < 17.0
        assert 6.0 < epi["axis_minor_length"].median() * mpp < 10.0
        # touching neighbours: the centre spacing along the ring is about one nucleus width
        spacing = 2 * np.pi * rad.mean() / len(epi) * mpp
        assert spacing < 1.3 * epi["axis_minor_length"].median() * mpp
        # white lumen at the centre
        rr = max(2, int(0.5 * row["lumen_radius_um"] / mpp))
        cy, cx = int(round(row["y"])), int(round(row["x"]))
        lumen = st.image[cy - rr:cy + rr + 1, cx - rr:cx + rr + 1]
        assert lumen.mean() > 220
    assert checked >= 3


# ----------------------------------------------------------------------------------- colour
def test_he_colours(mixed):
    from skimage.color import rgb2hed

    img = mixed.image
    hed = rgb2hed(img)
    nuc_px = mixed.labels > 0
    stroma_code = mixed.region_classes.index("stroma") + 1
    stroma_bg = (mixed.regions == stroma_code) & ~ndi.binary_dilation(nuc_px, iterations=2)
    glass = mixed.regions == 0
    assert stroma_bg.sum() > 1000 and glass.sum() > 1000
    h = hed[..., 0]
    assert h[nuc_px].mean() > 3 * h[stroma_bg].mean()
    assert hed[..., 1][stroma_bg].mean() > 10 * hed[..., 1][glass].mean() + 0.005  # eosin in stroma
    assert img[glass].mean() > 235  # white glass
    r, g, b = img[nuc_px].reshape(-1, 3).mean(axis=0)
    assert b > r > g  # hematoxylin: blue-purple
    r, g, b = img[stroma_bg].reshape(-1, 3).mean(axis=0)
    assert min(r, b) > g + 20  # eosin: pink


# ----------------------------------------------------------------------------------- nuisance factors
def test_nuisance_parameters_change_pixels_not_truth():
    base = _render(seed=7, tissue_fraction=0.7)
    variants = {
        "blur": _render(seed=7, tissue_fraction=0.7, blur_um=1.0, noise=0.0),
        "stain": _render(seed=7, tissue_fraction=0.7, stain="random"),
        "matrix": _render(seed=7, tissue_fraction=0.7, stain=[[0.5626, 0.7201, 0.4062], [0.2159, 0.8012, 0.5581]]),
        "pale": _render(seed=7, tissue_fraction=0.7, stain_intensity=0.6),
        "clean": _render(seed=7, tissue_fraction=0.7, noise=0.0),
    }
    for name, v in variants.items():
        np.testing.assert_array_equal(v.labels, base.labels, err_msg=name)
        pd.testing.assert_frame_equal(v.nuclei, base.nuclei)
        np.testing.assert_array_equal(v.regions, base.regions)
        assert not np.array_equal(v.image, base.image), name

    def sharpness(im):
        return np.abs(ndi.laplace(im.astype(float).mean(axis=2))).mean()

    assert sharpness(variants["blur"].image) < 0.6 * sharpness(variants["clean"].image)
    tissue = base.tissue & (base.labels == 0)

    def od(im):
        return -np.log((im[tissue].astype(float) + 1) / 256).mean()

    assert od(variants["pale"].image) < 0.75 * od(base.image)
    glass = ~ndi.binary_dilation(base.tissue, iterations=3)
    assert variants["clean"].image[glass].std() < 0.6  # noise=0: flat glass
    assert 0.7 * 0.02 * 255 < base.image[glass].astype(float).std() < 1.3 * 0.02 * 255
    assert variants["stain"].metadata["stain_vectors"] != base.metadata["stain_vectors"]


def test_stain_can_be_given_as_preset_dict_or_matrix():
    h, e = [0.5626, 0.7201, 0.4062], [0.2159, 0.8012, 0.5581]
    kw = dict(shape=(128, 160), seed=4, noise=0.0)
    preset = _render(stain="macenko", **kw)
    as_dict = _render(stain={"hematoxylin": h, "eosin": e}, **kw)
    as_matrix = _render(stain=np.array([h, e, [0.27, 0.57, 0.78]]), **kw)
    np.testing.assert_array_equal(preset.image, as_dict.image)
    np.testing.assert_array_equal(preset.image, as_matrix.image)
    assert not np.array_equal(preset.image, _render(stain=None, **kw).image)
    # the per-seed random stain is reproducible and differs between seeds
    a, b = _render(stain="random", seed=1, shape=(64, 64)), _render(stain="random", seed=2, shape=(64, 64))
    assert a.metadata["stain_vectors"] == _render(stain="random", seed=1, shape=(64, 64)).metadata["stain_vectors"]
    assert a.metadata["stain_vectors"] != b.metadata["stain_vectors"]


def test_result_unpacks_like_a_tuple():
    st = _render(shape=(96, 128), seed=0)
    image, labels, nuclei, regions = st
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    assert labels.shape == regions.shape == (96, 128) and labels.dtype == np.uint32
    assert regions.dtype == np.uint8 and isinstance(nuclei, pd.DataFrame)
    assert nuclei.attrs["mpp"] == 0.5 and st.tissue.all()


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_tissue_fraction(fraction):
    st = _render(shape=(512, 512), seed=1, tissue_fraction=fraction)
    assert abs(st.tissue.mean() - fraction) < 0.03
    # what an image-based detector sees: optical density above the glass, small holes closed
    od = -np.log((st.image.astype(float) + 1) / 256).sum(axis=2)
    seen = ndi.binary_closing(od > 0.25, iterations=3)
    assert abs(seen.mean() - fraction) < 0.1


def test_density_scales_the_number_of_nuclei():
    n1 = len(_render(shape=(512, 512), seed=2, region_classes=("stroma",), density=1.0).nuclei)
    n2 = len(_render(shape=(512, 512), seed=2, region_classes=("stroma",), density=2.0).nuclei)
    n0 = len(_render(shape=(256, 256), seed=2, region_classes=("stroma",), density=0.0).nuclei)
    n_half = len(_render(shape=(512, 512), seed=2, region_classes=("stroma",), density=0.5).nuclei)
    # candidates scale linearly; the hard core makes the realised count saturate a little
    assert 0.4 < n_half / n1 < 0.6
    assert 1.4 < n2 / n1 < 2.2
    assert n0 == 0


def test_layout_is_physical_same_tissue_at_two_resolutions():
    a = _render(shape=(256, 256), mpp=0.5, seed=2, region_size_um=100)
    b = _render(shape=(512, 512), mpp=0.25, seed=2, region_size_um=100)
    na, nb = a.nuclei.set_index(T.id), b.nuclei.set_index(T.id)
    common = na.index.intersection(nb.index)
    assert len(common) > 0.97 * max(len(na), len(nb))
    # centroids in µm (pixel centres at (i + 0.5) * mpp)
    xa, xb = (na.loc[common, T.x] + 0.5) * 0.5, (nb.loc[common, T.x] + 0.5) * 0.25
    ya, yb = (na.loc[common, T.y] + 0.5) * 0.5, (nb.loc[common, T.y] + 0.5) * 0.25
    assert np.median(np.hypot(xa - xb, ya - yb)) < 0.3
    assert (na.loc[common, T.cell_type] == nb.loc[common, T.cell_type]).all()


# ----------------------------------------------------------------------------------- realism
def test_classical_segmentation_finds_the_nuclei(mixed):
    """Otsu on the hematoxylin channel + distance-transform watershed, as on real H&E."""
    from skimage.color import rgb2hed
    from skimage.filters import threshold_otsu
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    h = rgb2hed(mixed.image)[..., 0]
    fg = h > threshold_otsu(h)
    gt = mixed.labels > 0
    dice = 2 * (fg & gt).sum() / (fg.sum() + gt.sum())
    assert dice > 0.85
    nuc = mixed.nuclei
    assert fg[np.rint(nuc[T.y]).astype(int), np.rint(nuc[T.x]).astype(int)].mean() > 0.95
    fg = ndi.binary_fill_holes(fg)
    dist = ndi.distance_transform_edt(fg)
    pred = watershed(-dist, label(h_maxima(dist, 1.0)), mask=fg)
    both = (pred > 0) & gt
    pairs, inter = np.unique(np.stack([mixed.labels[both].astype(np.int64), pred[both].astype(np.int64)]),
                             axis=1, return_counts=True)
    a_gt = np.bincount(mixed.labels.ravel().astype(np.int64))
    a_pr = np.bincount(pred.ravel())
    iou = inter / (a_gt[pairs[0]] + a_pr[pairs[1]] - inter)
    tp = (iou > 0.5).sum()
    f1 = 2 * tp / (len(nuc) + len(np.unique(pred)) - 1)
    assert f1 > 0.75


# ----------------------------------------------------------------------------------- files
def test_synthetic_slide_writes_slide_and_truth(tmp_path):
    params = dict(seed=5, region_size_um=200, tissue_fraction=0.6)
    s = tg.datasets.synthetic_slide(tmp_path / "syn.tiff", size=(700, 600), tile_size=256, progress=False,
                                    **params)
    for p in (s.path, s.labels_path, s.nuclei_path, s.glands_path, s.tissue_mask_path, s.region_map_path,
              s.metadata_path):
        assert p.exists() and p.parent == tmp_path
    assert s.labels_path.name == "syn.labels.tiff" and s.metadata_path.name == "syn.json"
    ref = tg.datasets.synthetic_tissue((600, 700), **params)
    with tg.io.open_slide(s.path) as slide:
        assert slide.dimensions == (700, 600)
        assert slide.mpp == pytest.approx(0.5)
        assert slide.level_count >= 2
        np.testing.assert_array_equal(slide.read_region((0, 0), 0, (700, 600))[..., :3], ref.image)
    np.testing.assert_array_equal(s.read_labels(), ref.labels)
    np.testing.assert_array_equal(s.read_labels((100, 50), (30, 20)), ref.labels[50:70, 100:130])
    with s.open_labels() as lab:
        assert lab.dtype == np.uint32 and lab.dimensions == (700, 600)
    pd.testing.assert_frame_equal(s.read_nuclei(), ref.nuclei)
    assert s.n_nuclei == len(ref.nuclei)
    pd.testing.assert_frame_equal(s.read_glands(), ref.glands, check_dtype=False)
    mask, regions = s.read_tissue_mask(), s.read_region_map()
    d = s.mask_downsample
    assert mask.shape == regions.shape == (-(-600 // d), -(-700 // d))
    assert ((regions > 0) == mask).all()
    assert abs(mask.mean() - 0.6) < 0.08
    meta = json.loads(s.metadata_path.read_text())
    assert meta["seed"] == 5 and meta["mpp"] == 0.5 and meta["width"] == 700 and meta["height"] == 600
    assert meta["region_classes"] == list(_synthetic.SYNTHETIC_REGION_CLASSES)
    assert meta["counts"]["nuclei"] == len(ref.nuclei)
    assert meta["tissuegraph_version"] == tg.__version__
    assert meta["params"]["tile_size"] == 256 and meta["mask_downsample"] == d
    assert tg.datasets.SyntheticSlide.load(s.path) == s
    assert tg.datasets.SyntheticSlide.load(s.metadata_path) == s


def test_jpeg_slide_is_close_to_lossless(tmp_path):
    s = tg.datasets.synthetic_slide(tmp_path / "j.tif", size=256, seed=1, compression="jpeg", quality=95,
                                    tile_size=128, progress=False)
    ref = tg.datasets.synthetic_tissue(256, seed=1)
    with s.open() as slide:
        img = slide.read_region((0, 0), 0, (256, 256))[..., :3]
    assert np.abs(img.astype(float) - ref.image).mean() < 6.0
    np.testing.assert_array_equal(s.read_labels(), ref.labels)


# ----------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw, match", [
    (dict(size=0), "size"),
    (dict(size=(100, "a")), "size"),
    (dict(mpp=-1), "mpp"),
    (dict(mpp=5.0), "mpp"),
    (dict(tissue_fraction=0), "tissue_fraction"),
    (dict(tissue_fraction=1.5), "tissue_fraction"),
    (dict(density=-1), "density"),
    (dict(noise=float("nan")), "noise"),
    (dict(blur_um=-0.1), "blur_um"),
    (dict(stain_intensity=0), "stain_intensity"),
    (dict(region_classes=("gland", "fat")), "Unknown region"),
    (dict(region_classes=()), "region_classes"),
    (dict(region_classes=("stroma", "stroma")), "duplicates"),
    (dict(stain="purple"), "stain"),
    (dict(stain=np.ones((4, 3))), "shape"),
    (dict(stain=[[0.6, -0.7, 0.3], [0.1, 0.9, 0.1]]), "non-negative"),
    (dict(stain={"hematoxylin": [0.6, 0.7, 0.3]}), "eosin"),
    (dict(seed=-1), "seed"),
    (dict(seed=1.5), "seed"),
])
def test_bad_input_is_named(kw, match):
    kw = {"size": 64, **kw}
    size = kw.pop("size")
    with pytest.raises(InputError, match=match):
        tg.datasets.synthetic_slide("unused.tiff", size=size, progress=False, **kw)
    if not isinstance(size, tuple):
        with pytest.raises(InputError, match=match):
            tg.datasets.synthetic_tissue(size, **kw)


def test_bad_output_arguments(tmp_path):
    with pytest.raises(InputError, match="tile_size"):
        tg.datasets.synthetic_slide(tmp_path / "a.tiff", size=64, tile_size=100)
    with pytest.raises(InputError, match="compression"):
        tg.datasets.synthetic_slide(tmp_path / "a.tiff", size=64, compression="png")
    with pytest.raises(InputError, match=r"\.tif"):
        tg.datasets.synthetic_slide(tmp_path / "a.png", size=64)
    with pytest.raises(InputError, match="too large"):
        tg.datasets.synthetic_tissue((20000, 20000))
