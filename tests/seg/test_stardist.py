"""StarDist backend, model resolution and train_stardist.

The session fixture ``tiny_stardist`` (tests/seg/conftest.py) trains a tiny model on three quadrants of
StarDist's packaged real fluorescence image; the fourth quadrant is held out for accuracy checks.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tissuegraph as tg
from tissuegraph.seg import _stardist as sd

pytest.importorskip("stardist")
pytest.importorskip("tensorflow")

SHARED = Path(os.environ.get("TISSUEGRAPH_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))


def _f1(truth, pred, thresh=0.5):
    from stardist.matching import matching

    return matching(truth, pred, thresh=thresh).f1


def _copy_model(src: Path, dst: Path, **config_changes) -> Path:
    shutil.copytree(src, dst)
    if config_changes:
        cfg = json.loads((dst / "config.json").read_text())
        cfg.update(config_changes)
        (dst / "config.json").write_text(json.dumps(cfg))
    return dst


# ---------------------------------------------------------------------------------------------------
# import weight
# ---------------------------------------------------------------------------------------------------
def test_seg_import_does_not_load_tensorflow():
    code = ("import sys, tissuegraph as tg; tg.seg.load_stardist; tg.seg.train_stardist; "
            "print(any(m in sys.modules for m in ('tensorflow', 'keras', 'stardist.models')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------------
# the trained model
# ---------------------------------------------------------------------------------------------------
def test_trained_model_folder_and_attributes(tiny_stardist):
    be = tiny_stardist
    files = {p.name for p in be.folder.iterdir()}
    assert {"config.json", "weights_best.h5", "thresholds.json", "tissuegraph.json"} <= files
    assert "weights_last.h5" not in files and "logs" not in files
    info = json.loads((be.folder / "tissuegraph.json").read_text())
    assert info["mpp"] is None and info["modality"] == "fluorescence"
    assert info["training"]["n_train_images"] == 3 and info["training"]["n_val_images"] == 1
    assert info["training"]["seed"] == 0 and len(info["training"]["val_loss"]) == 10
    # largest training object (px) with a 25 % margin
    assert 20 <= info["max_object_px"] <= 120
    thr = json.loads((be.folder / "thresholds.json").read_text())

    loaded = tg.seg.load_stardist(str(be.folder))
    assert isinstance(loaded, tg.seg.StarDistBackend)
    assert loaded.name == "tiny" and loaded.mpp is None and loaded.n_channel_in == 1
    assert loaded.grid == (2, 2) and loaded.n_rays == 32 and loaded.modality == "fluorescence"
    assert loaded.prob_thresh == pytest.approx(thr["prob"]) and loaded.nms_thresh == pytest.approx(thr["nms"])
    assert loaded.max_object_px == info["max_object_px"]
    assert loaded.context_px > 0
    # model-level mpp from tissuegraph.json, and an explicit override
    assert tg.seg.load_stardist(be.folder, mpp=0.5).mpp == 0.5


def test_segment_fluorescence_finds_the_nuclei(tiny_stardist, nuclei_2d):
    img, lab = nuclei_2d
    labels, scores = tiny_stardist.segment(img, mpp=None)
    assert labels.dtype == np.int32 and labels.shape == img.shape
    n = int(labels.max())
    assert n > 50
    assert np.array_equal(np.unique(labels), np.arange(n + 1))  # 0 and 1..n, no gaps
    assert scores.shape == (n,) and np.all((scores > tiny_stardist.prob_thresh) & (scores <= 1))
    assert np.all(np.diff(scores) <= 0)  # label 1 is the most confident object
    # the held-out quadrant (validation image, never trained on)
    assert _f1(lab[256:, 256:], labels[256:, 256:]) > 0.5


def test_predict_postprocess_equals_segment(tiny_stardist, nuclei_2d):
    img = nuclei_2d[0][:301, 7:450]  # odd size: StarDist pads the input to a multiple of 8
    raw = tiny_stardist.predict(img)
    assert isinstance(raw, tg.seg.StarDistPrediction)
    assert raw.prob.shape[0] >= 151 and raw.prob.shape[1] >= 222  # ceil(H / 2), ceil(W / 2)
    assert raw.dist.shape == raw.prob.shape + (32,) and raw.image_shape == img.shape
    l1, s1 = tiny_stardist.postprocess(raw, image_shape=img.shape)
    l2, s2 = tiny_stardist.segment(img)
    assert np.array_equal(l1, l2) and np.array_equal(s1, s2)
    # postprocess needs no network: it works on a pickled copy of the backend that has none
    clone = pickle.loads(pickle.dumps(tiny_stardist))
    assert clone._model is None
    l3, s3 = clone.postprocess(pickle.loads(pickle.dumps(raw)))
    assert clone._model is None and np.array_equal(l1, l3) and np.array_equal(s1, s3)
    with pytest.raises(tg.InputError, match="does not match the predicted image"):
        tiny_stardist.postprocess(raw, image_shape=(100, 100))


def test_matches_stardist_predict_instances(tiny_stardist, nuclei_2d):
    img = nuclei_2d[0][:301, 7:450]
    labels, scores = tiny_stardist.segment(img)
    ref, details = tiny_stardist.model.predict_instances(tiny_stardist.normalize(img), axes="YXC",
                                                         verbose=False, predict_kwargs={"verbose": 0})
    assert np.array_equal(labels, ref)
    np.testing.assert_allclose(np.sort(scores), np.sort(details["prob"]), rtol=1e-6)


def test_thresholds_override(tiny_stardist, nuclei_2d):
    img = nuclei_2d[0][:256, :256]
    raw = tiny_stardist.predict(img)
    n_default = tiny_stardist.postprocess(raw)[0].max()
    n_strict = tiny_stardist.postprocess(raw, prob_thresh=0.95)[0].max()
    assert n_strict < n_default
    with pytest.raises(tg.InputError, match="prob_thresh"):
        tiny_stardist.postprocess(raw, prob_thresh=1.5)


def test_resamples_to_model_mpp(tiny_stardist, nuclei_2d):
    """A model trained at 0.5 µm/px given a 0.25 µm/px image segments it at 0.5 µm/px and renders the
    labels back at 0.25 µm/px: the same nuclei, twice as large."""
    from scipy.ndimage import zoom

    be = tg.seg.load_stardist(tiny_stardist.folder, mpp=0.5)
    img = nuclei_2d[0][:256, :256].astype(np.float32)
    big = zoom(img, 2, order=1)
    small_labels, _ = be.segment(img, mpp=0.5)
    big_labels, big_scores = be.segment(big, mpp=0.25)
    assert big_labels.shape == big.shape and big_labels.dtype == np.int32
    assert big_scores.shape == (big_labels.max(),)
    assert abs(int(big_labels.max()) - int(small_labels.max())) <= 0.1 * small_labels.max() + 2
    area_ratio = (big_labels > 0).sum() / max(1, (small_labels > 0).sum())
    assert 3.5 < area_ratio < 4.5
    # without a model mpp the image is segmented as it is
    assert tiny_stardist._scale_for(0.25) == 1.0


# ---------------------------------------------------------------------------------------------------
# channels and normalisation
# ---------------------------------------------------------------------------------------------------
def test_rgb_into_fluorescence_model_is_an_error_unless_explicit(tiny_stardist, nuclei_2d):
    img = nuclei_2d[0][:128, :128]
    rgb = np.stack([img, img, img], axis=-1)
    # grey stored as RGB (equal channels) is one channel (issue 14); different channels are an error
    assert np.array_equal(tiny_stardist.normalize(rgb), tiny_stardist.normalize(img))
    with pytest.raises(tg.InputError, match=r"expects 1 channel.*got 3 channel") as err:
        tiny_stardist.segment(np.stack([img, img // 2, img], axis=-1))
    assert "rgb_to_grey=True" in str(err.value) and "--channel" in err.value.for_cli()
    grey = tg.seg.load_stardist(tiny_stardist.folder, rgb_to_grey=True)
    assert grey.rgb_to == "grey"
    assert np.allclose(grey.normalize(rgb), tiny_stardist.normalize(img), atol=1e-5)
    pick = tg.seg.load_stardist(tiny_stardist.folder, channel=1)
    assert np.array_equal(pick.normalize(rgb), tiny_stardist.normalize(img))
    # a trailing singleton channel is fine
    assert np.array_equal(tiny_stardist.normalize(img[..., None]), tiny_stardist.normalize(img))
    with pytest.raises(tg.InputError, match="out of range"):
        tg.seg.load_stardist(tiny_stardist.folder, channel=5).segment(rgb)
    with pytest.raises(tg.InputError, match="single-channel models only"):
        tg.seg.StarDistBackend(_rgb_model_dir(tiny_stardist), rgb_to_grey=True)


_RGB_DIR: list[Path] = []


def _rgb_model_dir(tiny_stardist) -> Path:
    """A copy of the tiny model folder whose config claims 3 input channels (channel checks happen
    before the network is built, so its weights are never loaded)."""
    if not _RGB_DIR:
        dst = tiny_stardist.folder.parent / "tiny_rgb"
        if not dst.exists():
            _copy_model(tiny_stardist.folder, dst, n_channel_in=3, net_input_shape=[None, None, 3])
            info = json.loads((dst / "tissuegraph.json").read_text())
            info.pop("modality")
            info["normalize"].pop("joint_channels")
            (dst / "tissuegraph.json").write_text(json.dumps(info))
        _RGB_DIR.append(dst)
    return _RGB_DIR[0]


def test_fluorescence_into_rgb_model_is_an_error(tiny_stardist, nuclei_2d):
    be = tg.seg.StarDistBackend(_rgb_model_dir(tiny_stardist))
    assert be.n_channel_in == 3 and be.modality == "brightfield" and be.joint_channels
    img = nuclei_2d[0][:64, :64]
    with pytest.raises(tg.InputError, match=r"expects 3 channels \(RGB.*got 1 channel") as err:
        be.predict(img)
    assert "fluorescence model" in str(err.value)
    rgba = np.zeros((64, 64, 4), np.uint8)
    with pytest.raises(tg.InputError, match=r"got 4 channel.*image\[\.\.\., :3\]"):
        be.predict(rgba)
    with pytest.raises(tg.InputError, match="NaN"):
        be.predict(np.full((64, 64, 3), np.nan))


def test_hematoxylin_conversion(tiny_stardist):
    from skimage.color import rgb2hed
    from skimage.data import immunohistochemistry

    ihc = immunohistochemistry()[:128, :128]
    h = tg.seg.rgb_to_channel(ihc, how="hematoxylin")
    np.testing.assert_allclose(h, rgb2hed(ihc)[..., 0], rtol=1e-5, atol=1e-6)
    # purple (haematoxylin-stained) pixels have a higher H density than pink (eosin) ones
    purple_pink = np.array([[[90, 60, 160], [240, 150, 200]]], np.uint8)
    hp = tg.seg.rgb_to_channel(purple_pink, how="hematoxylin")
    assert hp[0, 0] > hp[0, 1]
    be = tg.seg.load_stardist(tiny_stardist.folder, rgb_to="hematoxylin")
    x = be.normalize(ihc)
    assert x.shape == (128, 128, 1)
    assert np.array_equal(x, tiny_stardist.normalize(h))
    with pytest.raises(tg.InputError, match="rgb_to must be"):
        tg.seg.load_stardist(tiny_stardist.folder, rgb_to="sepia")
    with pytest.raises(tg.InputError, match="either channel= or an RGB conversion"):
        tg.seg.load_stardist(tiny_stardist.folder, rgb_to="grey", channel=0)


def test_normalisation_percentiles_and_fixed_range(tiny_stardist, nuclei_2d):
    img = nuclei_2d[0]
    x = tiny_stardist.normalize(img)
    assert x.shape == img.shape + (1,) and x.dtype == np.float32
    lo, hi = np.percentile(img, (1, 99.8))
    np.testing.assert_allclose(x[..., 0], (img - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    # fitted range on the whole image, applied to a crop: the crop is normalised like the whole
    be = tg.seg.load_stardist(tiny_stardist.folder).fit_normalization(img)
    np.testing.assert_allclose(be.normalize(img[:100, :100]), x[:100, :100], rtol=1e-5, atol=1e-6)
    with pytest.raises(tg.InputError, match="constant"):
        be.fit_normalization(np.ones((32, 32)))
    with pytest.raises(tg.InputError, match="norm_range"):
        tg.seg.load_stardist(tiny_stardist.folder, norm_range=(5, 1))
    with pytest.raises(tg.InputError, match="percentiles"):
        tg.seg.load_stardist(tiny_stardist.folder, percentiles=(50, 10))


# ---------------------------------------------------------------------------------------------------
# model resolution: names, caches, offline, incomplete folders
# ---------------------------------------------------------------------------------------------------
@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Empty caches and a download that fails like an offline machine."""
    monkeypatch.setattr(tg.settings, "cache_dir", tmp_path / "tg_cache")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    calls = []

    def fail(key):
        calls.append(key)
        raise OSError("no connection to github.com (checked with a 3 s timeout)")

    monkeypatch.setattr(sd, "_download_pretrained", fail)
    return calls


def test_pretrained_name_offline_says_how_to_copy_the_folder(offline):
    with pytest.raises(tg.WeightsUnavailableError) as err:
        tg.seg.load_stardist("2D_versatile_he")
    msg = str(err.value)
    assert offline == ["2D_versatile_he"]
    assert "could not be downloaded" in msg and "no connection" in msg
    assert "model='/path/to/2D_versatile_he'" in msg and "--model /path/to/2D_versatile_he" in msg
    assert "python_2D_versatile_he.zip" in msg
    assert str(tg.settings.cache_dir / "stardist" / "2D_versatile_he") in msg
    assert isinstance(err.value, OSError)
    # aliases resolve to the same registered name
    with pytest.raises(tg.WeightsUnavailableError, match="2D_versatile_fluo"):
        tg.seg.load_stardist("Versatile (fluorescent nuclei)")
    with pytest.raises(tg.WeightsUnavailableError, match="downloads disabled"):
        tg.seg.load_stardist("2D_paper_dsb2018", allow_download=False)
    assert offline == ["2D_versatile_he", "2D_versatile_fluo"]


def test_offline_detection_is_quick(monkeypatch):
    """Without a connection the download gives up at once instead of waiting on network timeouts."""
    monkeypatch.setattr(sd, "_network_available", lambda *a, **k: False)
    with pytest.raises(OSError, match="no connection"):
        sd._download_pretrained("2D_versatile_he")


@pytest.mark.parametrize("where", ["tissuegraph", "keras"])
def test_pretrained_name_found_in_local_cache(offline, tiny_stardist, where):
    if where == "tissuegraph":
        dst = tg.settings.cache_dir / "stardist" / "2D_versatile_fluo"
    else:  # the layout StarDist/Keras 3 leave behind after a download
        dst = Path(os.environ["KERAS_HOME"]) / "models" / "StarDist2D" / "2D_versatile_fluo" / \
            "2D_versatile_fluo_extracted" / "2D_versatile_fluo"
    dst.parent.mkdir(parents=True)
    _copy_model(tiny_stardist.folder, dst)
    be = tg.seg.load_stardist("2D_versatile_fluo")
    assert be.folder == dst.resolve() and be.name == "2D_versatile_fluo" and offline == []
    assert tg.seg.stardist_models()["2D_versatile_fluo"] == "cached"


def test_incomplete_or_unknown_model_folders(tiny_stardist, tmp_path):
    no_weights = _copy_model(tiny_stardist.folder, tmp_path / "no_weights")
    (no_weights / "weights_best.h5").unlink()
    with pytest.raises(tg.WeightsUnavailableError, match=r"Incomplete StarDist model folder.*weights"):
        tg.seg.load_stardist(no_weights)

    no_thresholds = _copy_model(tiny_stardist.folder, tmp_path / "no_thresholds")
    (no_thresholds / "thresholds.json").unlink()
    with pytest.raises(tg.WeightsUnavailableError, match="thresholds.json"):
        tg.seg.load_stardist(no_thresholds)
    be = tg.seg.load_stardist(no_thresholds, prob_thresh=0.5, nms_thresh=0.4)
    assert (be.prob_thresh, be.nms_thresh) == (0.5, 0.4)

    no_config = _copy_model(tiny_stardist.folder, tmp_path / "no_config")
    (no_config / "config.json").unlink()
    with pytest.raises(tg.WeightsUnavailableError, match="config.json"):
        tg.seg.load_stardist(no_config)

    not_2d = _copy_model(tiny_stardist.folder, tmp_path / "not_2d", n_dim=3)
    with pytest.raises(tg.InputError, match="not a StarDist 2-D"):
        tg.seg.load_stardist(not_2d)

    with pytest.raises(tg.InputError, match="neither an existing StarDist model folder nor a known"):
        tg.seg.load_stardist(tmp_path / "does_not_exist")
    with pytest.raises(tg.InputError, match="is a file"):
        tg.seg.load_stardist(no_thresholds / "config.json")
    with pytest.raises(tg.InputError, match="modality"):
        tg.seg.load_stardist(modality="xray")


def test_default_models_are_shipped_and_load_offline(offline):
    shipped = {k for k, v in tg.seg.stardist_models().items() if v == "shipped"}
    if "tg_dsb2018_fluo" not in shipped:
        pytest.skip("no shipped fluorescence model in this checkout")
    be = tg.seg.load_stardist(modality="fluorescence")
    assert be.name == "tg_dsb2018_fluo" and be.n_channel_in == 1 and offline == []
    assert (Path(tg.seg.__file__).parent / "models" / "README.md").is_file()


@pytest.mark.shared_data
def test_shipped_fluorescence_model_on_held_out_dsb_images():
    """The shipped model on the issue's 25 reference images (never trained or validated on)."""
    data = SHARED / "dsb2018" / "train"
    if not data.is_dir():
        pytest.skip("shared data not available")
    if "tg_dsb2018_fluo" not in tg.seg.stardist_models():
        pytest.skip("no shipped fluorescence model in this checkout")
    import pandas as pd
    import tifffile
    from PIL import Image
    from stardist.matching import matching_dataset

    be = tg.seg.load_stardist("tg_dsb2018_fluo")
    index = pd.read_csv(data / "index.csv")
    ids = list(index.loc[index.modality == "fluorescence", "id"][:25])
    assert not set(ids) & set(be.info["split"]["train"] + be.info["split"]["val"])
    truth, pred = [], []
    for i in ids:
        img = np.asarray(Image.open(data / f"{i}.png"))[..., 0]
        truth.append(tifffile.imread(data / f"{i}_labels.tif"))
        pred.append(be.segment(img)[0])
    assert matching_dataset(truth, pred, thresh=0.5, show_progress=False).f1 > 0.85  # measured: 0.895


# ---------------------------------------------------------------------------------------------------
# train_stardist: input checks (before any TensorFlow work) and fine-tuning
# ---------------------------------------------------------------------------------------------------
def test_train_stardist_input_checks(tmp_path):
    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    lab = np.zeros((64, 64), np.int32)
    lab[10:20, 10:20] = 1
    kw = dict(patch_size=(32, 32), unet_n_depth=2, basedir=tmp_path, epochs=1, steps_per_epoch=1)
    with pytest.raises(tg.InputError, match="pair up"):
        tg.seg.train_stardist([img, img], [lab], **kw)
    with pytest.raises(tg.InputError, match="first two dimensions must match"):
        tg.seg.train_stardist([img, img], [lab, lab[:32]], **kw)
    with pytest.raises(tg.InputError, match="integer labels"):
        tg.seg.train_stardist([img, img], [lab, lab + 0.5], **kw)
    with pytest.raises(tg.InputError, match="negative"):
        tg.seg.train_stardist([img, img], [lab, -lab], **kw)
    with pytest.raises(tg.InputError, match="same channels"):
        tg.seg.train_stardist([img, np.stack([img] * 3, -1)], [lab, lab], **kw)
    with pytest.raises(tg.InputError, match="No training images"):
        tg.seg.train_stardist([], [], **kw)
    with pytest.raises(tg.InputError, match="at least 2 images"):
        tg.seg.train_stardist([img], [lab], **kw)
    with pytest.raises(tg.InputError, match="fraction in"):
        tg.seg.train_stardist([img, img], [lab, lab], **{**kw, "validation": 1.5})
    with pytest.raises(tg.InputError, match="validation images have 3"):
        tg.seg.train_stardist([img], [lab], **{**kw, "validation": ([np.stack([img] * 3, -1)], [lab])})
    with pytest.raises(tg.InputError, match="divisible"):
        tg.seg.train_stardist([img, img], [lab, lab], **{**kw, "patch_size": (36, 36)})
    with pytest.raises(tg.InputError, match="smaller than patch_size"):
        tg.seg.train_stardist([img, img], [lab, lab], **{**kw, "patch_size": (128, 128)})
    with pytest.raises(tg.InputError, match="NaN"):
        tg.seg.train_stardist([img, np.full_like(img, np.nan)], [lab, lab], **kw)
    with pytest.raises(tg.InputError, match="rgb_to must be"):
        tg.seg.train_stardist([img, img], [lab, lab], **{**kw, "rgb_to": "purple"})
    with pytest.raises(tg.InputError, match="needs RGB"):
        tg.seg.train_stardist([np.stack([img] * 2, -1)] * 2, [lab, lab], **{**kw, "rgb_to": "hematoxylin"})
    (tmp_path / "stardist").mkdir()
    with pytest.raises(tg.InputError, match="already exists"):
        tg.seg.train_stardist([img, img], [lab, lab], **kw)


def test_fine_tune_from_existing_model(tiny_stardist, nuclei_2d, tmp_path):
    img, lab = nuclei_2d
    be = tg.seg.train_stardist(
        [img[:128, :128], img[128:256, :128]], [lab[:128, :128], lab[128:256, :128]],
        validation=([img[:128, 128:256]], [lab[:128, 128:256]]), init=tiny_stardist.folder,
        unet_n_depth=3, patch_size=(64, 64), epochs=1, steps_per_epoch=2, batch_size=2,
        optimize_thresholds=False, basedir=tmp_path, name="tuned", mpp=0.65, seed=1, n_threads=1)
    cfg = json.loads((be.folder / "config.json").read_text())
    assert cfg["unet_n_depth"] == 2 and cfg["unet_n_filter_base"] == 16  # architecture of init
    assert be.mpp == 0.65 and be.info["training"]["init"] == str(tiny_stardist.folder)
    assert (be.prob_thresh, be.nms_thresh) == (0.5, 0.4)
    # starts from the trained weights: it still finds the nuclei after 2 steps
    labels, _ = be.segment(img[256:, 256:], mpp=0.65)
    assert labels.max() > 20


# ---------------------------------------------------------------------------------------------------
# slide-wide calibration (the tiled runner's hook) and modality='auto'
# ---------------------------------------------------------------------------------------------------
def test_calibrate_gives_slide_wide_normalisation(tiny_stardist, nuclei_2d):
    img = nuclei_2d[0]
    patches = [img[:256, :256], img[256:, 256:]]
    cal = tiny_stardist.calibrate(patches)
    lo, hi = np.percentile(np.concatenate([p.ravel() for p in patches]), (1, 99.8))
    np.testing.assert_allclose([cal["norm_low"][0], cal["norm_high"][0]], [lo, hi], rtol=1e-5)
    crop = img[100:300, 50:350]
    fixed = tg.seg.load_stardist(tiny_stardist.folder, norm_range=(lo, hi))
    l1, s1 = tiny_stardist.segment(crop, calibration=cal)
    l2, s2 = fixed.segment(crop)
    assert np.array_equal(l1, l2) and np.allclose(s1, s2)
    assert tiny_stardist.calibrate([np.zeros((16, 16))]) == {}  # constant: per-tile fallback
    with pytest.raises(tg.InputError, match="norm_low"):
        tiny_stardist.segment(crop, calibration={"low": 0})


def test_auto_modality_picks_the_model_by_channels(tiny_stardist, nuclei_2d, offline, monkeypatch, tmp_path):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    _copy_model(tiny_stardist.folder, shipped / "tg_dsb2018_fluo")
    monkeypatch.setattr(sd, "SHIPPED_DIR", shipped)
    assert tg.seg.default_model_available("fluorescence")
    assert not tg.seg.default_model_available("he") and not tg.seg.default_model_available("auto")
    auto = tg.seg.load_stardist()  # modality 'auto': per image
    assert isinstance(auto, tg.seg.AutoStarDistBackend)
    assert auto.mpp is None and auto.max_object_px == tiny_stardist.max_object_px
    img = nuclei_2d[0][:256, :256]
    labels, scores = auto.segment(img)
    ref = tiny_stardist.segment(img)
    assert np.array_equal(labels, ref[0])
    raw = auto.predict(img)
    assert raw.model == "tg_dsb2018_fluo" and np.array_equal(auto.postprocess(raw)[0], labels)
    # no brightfield model offline: RGB images get the offline message, fluorescence still works
    colour = np.zeros((64, 64, 3), np.uint8)
    colour[..., 0] = 200  # RGB with different channels (equal channels are grey: the fluorescence model)
    assert auto.backend_for(np.zeros((64, 64, 3), np.uint8)).name == "tg_dsb2018_fluo"
    with pytest.raises(tg.WeightsUnavailableError, match="2D_versatile_he"):
        auto.segment(colour)
    with pytest.raises(tg.InputError, match="got 2 channels"):
        auto.segment(np.zeros((64, 64, 2)))
    # with both shipped
    shutil.copytree(_rgb_model_dir(tiny_stardist), shipped / "tg_nuinsseg_he")
    assert tg.seg.default_model_available("auto")
    auto = tg.seg.load_stardist(modality="auto")
    assert auto.backend_for(colour).name == "tg_nuinsseg_he"
    assert tg.seg.load_stardist(modality="he").name == "tg_nuinsseg_he"
