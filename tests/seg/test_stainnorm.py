"""Stain normalisation (Reinhard in L*a*b*, Macenko) and the StarDist backend's ``stain_norm`` option."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.color import rgb2lab

import tissuegraph as tg
from tissuegraph._errors import InputError
from tissuegraph.seg._stardist import SHIPPED_DIR

FOLDER = SHIPPED_DIR / "tg_nuinsseg_he"


def _unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


H_A, E_A = _unit([0.65, 0.70, 0.29]), _unit([0.07, 0.99, 0.11])  # Ruifrok & Johnston
H_B, E_B = _unit([0.55, 0.75, 0.37]), _unit([0.15, 0.90, 0.40])  # another stain batch


def _he_image(h, e, *, n=64, seed=0, scale=(1.0, 1.0)):
    """uint8 H&E image mixed from stain vectors (Beer-Lambert, natural log): a third of the pixels
    haematoxylin only, a third eosin only, a third both; and the concentrations used."""
    rng = np.random.default_rng(seed)
    c = np.zeros((n * n, 2))
    kind = rng.integers(0, 3, n * n)
    c[kind == 0, 0] = rng.uniform(0.2, 1.5, (kind == 0).sum())
    c[kind == 1, 1] = rng.uniform(0.2, 1.0, (kind == 1).sum())
    c[kind == 2] = rng.uniform(0.1, 0.8, ((kind == 2).sum(), 2))
    c *= np.asarray(scale)
    od = c @ np.stack([h, e])
    return np.clip(np.rint(255 * np.exp(-od)), 0, 255).astype(np.uint8).reshape(n, n, 3), c


def test_macenko_recovers_the_stain_vectors_and_maps_one_stain_onto_another():
    a, _ = _he_image(H_A, E_A, seed=1)
    b, _ = _he_image(H_B, E_B, seed=1, scale=(1.4, 0.7))  # same tissue, other stain and amounts
    ref = tg.seg.fit_stain_reference(a, method="macenko", alpha=0.01, od_threshold=0.0, max_pixels=None)
    he = np.asarray(ref["stain_vectors"])
    assert np.allclose(he[0], H_A, atol=0.02) and np.allclose(he[1], E_A, atol=0.02), he
    src = tg.seg.fit_stain_reference(b, method="macenko", alpha=0.01, od_threshold=0.0, max_pixels=None)
    assert np.allclose(src["stain_vectors"], np.stack([H_B, E_B]), atol=0.02)
    out = tg.seg.normalize_stain(b, ref)
    assert out.dtype == np.uint8 and out.shape == b.shape
    before = np.abs(b.astype(int) - a.astype(int)).mean()
    after = np.abs(out.astype(int) - a.astype(int)).mean()
    assert before > 10 and after < 1.5, (before, after)
    # an image mapped onto its own reference is (almost) itself
    assert np.abs(tg.seg.normalize_stain(a, ref).astype(int) - a.astype(int)).mean() < 1.0


def test_macenko_hand_worked_pixel():
    """One pixel by hand: unmix with the source vectors, scale by the 99th-percentile ratio, remix."""
    src = {"method": "macenko", "stain_vectors": [H_B.tolist(), E_B.tolist()], "max_concentration": [2.0, 1.0]}
    tgt = {"method": "macenko", "stain_vectors": [H_A.tolist(), E_A.tolist()], "max_concentration": [1.0, 2.0]}
    c = np.array([0.6, 0.3])
    pixel = 255.0 * np.exp(-(c @ np.stack([H_B, E_B])))  # float pixel, values in [0, 255]
    img = np.tile(pixel, (4, 4, 1))
    out = tg.seg.normalize_stain(img, tgt, source=src)
    want = 255.0 * np.exp(-(np.array([0.3, 0.6]) @ np.stack([H_A, E_A])))
    assert out.dtype == img.dtype and np.allclose(out[2, 3], want, atol=1e-6)


def test_reinhard_matches_the_target_lab_statistics_of_skimage():
    a, _ = _he_image(H_A, E_A, seed=2)
    b, _ = _he_image(H_B, E_B, seed=3, scale=(1.2, 0.8))
    ref = tg.seg.fit_stain_reference(a, method="reinhard", max_pixels=None)
    lab_a = rgb2lab(a / 255.0).reshape(-1, 3)
    assert np.allclose(ref["lab_mean"], lab_a.mean(0)) and np.allclose(ref["lab_std"], lab_a.std(0))
    out = tg.seg.normalize_stain(b, ref)
    lab = rgb2lab(out / 255.0).reshape(-1, 3)
    # equal up to uint8 rounding and the clipping of out-of-gamut colours
    assert np.allclose(lab.mean(0), ref["lab_mean"], atol=0.6), (lab.mean(0), ref["lab_mean"])
    assert np.allclose(lab.std(0), ref["lab_std"], atol=0.6), (lab.std(0), ref["lab_std"])
    # float input in [0, 1] stays float in [0, 1] and agrees with the uint8 result
    f = tg.seg.normalize_stain(b / 255.0, ref)
    assert f.dtype == np.float64 and f.max() <= 1.0 and np.abs(f * 255 - out).max() <= 0.51


def test_pooled_reference_and_explicit_source():
    a, _ = _he_image(H_A, E_A, seed=4)
    a2, _ = _he_image(H_A, E_A, seed=5)
    pooled = tg.seg.fit_stain_reference([a, a2], method="reinhard", max_pixels=None)
    lab = np.concatenate([rgb2lab(x / 255.0).reshape(-1, 3) for x in (a, a2)])
    assert np.allclose(pooled["lab_mean"], lab.mean(0)) and pooled["n_pixels"] == 2 * 64 * 64
    sub = tg.seg.fit_stain_reference([a, a2], method="reinhard", max_pixels=1000, seed=0)
    assert sub["n_pixels"] == 2000 and np.allclose(sub["lab_mean"], lab.mean(0), atol=2)
    json.dumps(pooled), json.dumps(tg.seg.fit_stain_reference(a, method="macenko"))  # JSON-ready
    # with an explicit source equal to the image's own statistics the result is the default one
    b, _ = _he_image(H_B, E_B, seed=6)
    own = tg.seg.fit_stain_reference(b, method="reinhard", max_pixels=None)
    assert np.array_equal(tg.seg.normalize_stain(b, pooled, source=own), tg.seg.normalize_stain(b, pooled))


def test_blank_image_is_left_alone_and_bad_input_is_an_input_error():
    ref = tg.seg.fit_stain_reference(_he_image(H_A, E_A)[0], method="macenko")
    white = np.full((32, 32, 3), 250, np.uint8)
    assert np.array_equal(tg.seg.normalize_stain(white, ref), white)
    with pytest.raises(InputError, match="needs at least 100"):
        tg.seg.fit_stain_reference(white, method="macenko")
    with pytest.raises(InputError, match="method must be one of"):
        tg.seg.fit_stain_reference(white, method="vahadane")
    with pytest.raises(InputError, match="RGB image"):
        tg.seg.normalize_stain(white[..., 0], ref)
    with pytest.raises(InputError, match="NaN"):
        tg.seg.normalize_stain(np.full((8, 8, 3), np.nan), ref)
    with pytest.raises(InputError, match="fit_stain_reference"):
        tg.seg.normalize_stain(white, {"method": "macenko"})
    reinhard = tg.seg.fit_stain_reference(white, method="reinhard")
    with pytest.raises(InputError, match="same method"):
        tg.seg.normalize_stain(white, ref, source=reinhard)
    with pytest.raises(InputError, match=r"\[0, 1\] or \[0, 255\]"):
        tg.seg.normalize_stain(np.full((8, 8, 3), 300.0), ref)


def test_shipped_model_stores_training_stain_references():
    info = json.loads((FOLDER / "tissuegraph.json").read_text())
    st = info["stain_targets"]
    assert st["reinhard"]["n_images"] == st["macenko"]["n_images"] > 400
    he = np.asarray(st["macenko"]["stain_vectors"])
    assert np.allclose(np.linalg.norm(he, axis=1), 1) and np.all(he > 0) and he[0, 0] > he[1, 0]
    assert "training organs" in st["how"]


def test_backend_stain_norm_option(keras_home):
    a, _ = _he_image(H_B, E_B, n=96, seed=7)
    plain = tg.seg.load_stardist("tg_nuinsseg_he", stain_norm=None)
    mac = tg.seg.load_stardist("tg_nuinsseg_he", stain_norm="macenko")
    info = json.loads((FOLDER / "tissuegraph.json").read_text())
    assert mac.stain_target == info["stain_targets"]["macenko"] and "stain_norm='macenko'" in repr(mac)
    assert plain.stain_norm is None
    # the network input is the plain backend's input of the stain-normalised image
    want = plain.normalize(tg.seg.normalize_stain(a, mac.stain_target))
    assert np.array_equal(mac.normalize(a), want)
    # slide-wide: calibrate() fits the stain source on the patches; every tile is mapped from it
    cal = mac.calibrate([a])
    assert cal["stain_source"]["method"] == "macenko"
    src = tg.seg.fit_stain_reference([a], method="macenko")
    assert np.allclose(cal["stain_source"]["stain_vectors"], src["stain_vectors"])
    tile = a[:48, :48]
    mapped = tg.seg.normalize_stain(tile, mac.stain_target, source=src)
    assert np.allclose(mac.normalize(tile, calibration=cal),
                       plain.normalize(mapped, calibration={k: cal[k] for k in ("norm_low", "norm_high")}))
    # an own reference; option errors name the fix
    own = tg.seg.fit_stain_reference(a, method="reinhard")
    be = tg.seg.load_stardist("tg_nuinsseg_he", stain_target=own)
    assert be.stain_norm == "reinhard"
    with pytest.raises(InputError, match="stain_norm must be"):
        tg.seg.load_stardist("tg_nuinsseg_he", stain_norm="vahadane")
    with pytest.raises(InputError, match="not stain_norm='macenko'"):
        tg.seg.load_stardist("tg_nuinsseg_he", stain_norm="macenko", stain_target=own)
    with pytest.raises(InputError, match="stores no 'macenko' stain reference"):
        tg.seg.load_stardist("tg_dsb2018_fluo", stain_norm="macenko", rgb_to="hematoxylin")
    with pytest.raises(InputError, match="maps RGB brightfield"):
        tg.seg.load_stardist("tg_dsb2018_fluo", stain_norm="macenko")


def test_nuclei_records_the_stain_option(keras_home):
    t = tg.datasets.synthetic_tissue((256, 256), mpp=0.5, seed=101, tissue_fraction=1.0)
    df = tg.seg.nuclei(np.asarray(t.image), method="stardist", modality="he", slide_mpp=0.5, stain_norm="macenko",
                       mask="all")
    assert len(df) > 10
    assert df.attrs["calibration"]["stain_source"]["method"] == "macenko"
    params = df.attrs["backend_params"]  # the settings the backend ran with, card defaults included
    assert params["stain_norm"] == "macenko" and params["tta"] == 8 and params["mpp"] == 0.42
    card = json.loads((FOLDER / "thresholds.json").read_text())  # the thresholds chosen with those options
    assert params["prob_thresh"] == card["prob"] and params["nms_thresh"] == card["nms"]


def test_cli_segment_with_stain_norm(keras_home, tmp_path, capsys):
    import tifffile

    from tissuegraph.cli import main

    t = tg.datasets.synthetic_tissue((192, 192), mpp=0.5, seed=102, tissue_fraction=1.0)
    src = tmp_path / "he.tif"
    tifffile.imwrite(src, np.asarray(t.image))
    out = tmp_path / "labels.tif"
    assert main(["segment", str(src), "-o", str(out), "--method", "stardist", "--model", "tg_nuinsseg_he",
                 "--mpp", "0.5", "--stain-norm", "reinhard", "--no-progress"]) == 0
    assert tifffile.imread(out).max() > 5
    assert main(["segment", str(src), "-o", str(tmp_path / "w.tif"), "--method", "watershed", "--mpp", "0.5",
                 "--stain-norm", "macenko", "--no-progress"]) == 2
    assert "--stain-norm applies to --method stardist" in capsys.readouterr().err


def test_apply_choice_writes_the_best_options_and_refuses_shifted_scores(tmp_path):
    """bench_seg_accuracy_nuinsseg.py apply-choice: the best row (detection F1, ties F1@0.5) over several
    choose result files goes into the model folder (thresholds and inference options, the model's defaults
    from then on); files scored on stain-shifted images are not choice files."""
    import importlib.util
    import shutil
    import sys
    from pathlib import Path

    folder = tmp_path / "tg_nuinsseg_he"
    shutil.copytree(FOLDER, folder)
    bench = Path(__file__).resolve().parents[2] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location("bench_nuinsseg", bench / "bench_seg_accuracy_nuinsseg.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(bench))

    def row(det, f1, prob, **options):
        return dict(model=str(folder), options=options, prob_thresh=prob, nms_thresh=0.3, model_prob_thresh=0.3,
                    model_nms_thresh=0.4, det_f1=det, f1=f1, pq=0.4)

    a = tmp_path / "a.json"
    a.write_text(json.dumps(dict(command="choose A", rows=[row(0.77, 0.60, "model", tta=8, stain_norm=None),
                                                           row(0.78, 0.61, 0.25, tta=8, stain_norm=None)])))
    b = tmp_path / "b.json"
    b.write_text(json.dumps(dict(command="choose B", rows=[row(0.78, 0.62, 0.4, tta=8, stain_norm="macenko",
                                                               mpp=0.42)])))
    assert mod.main(["apply-choice", str(a), str(b)]) == 0
    be = tg.seg.load_stardist(folder)
    assert be.tta == 8 and be.stain_norm == "macenko" and be.mpp == 0.42
    assert be.prob_thresh == pytest.approx(0.4) and be.nms_thresh == pytest.approx(0.3)
    info = json.loads((folder / "tissuegraph.json").read_text())
    assert info["mpp_trained_as"] == 0.5 and "apply-choice a.json b.json" in info["thresholds_choice"]["command"]
    assert info["thresholds_choice"]["options"]["stain_norm"] == "macenko"
    shifted = tmp_path / "s.json"
    shifted.write_text(json.dumps(dict(command="choose --stain-shift", stain_shift={"seed": 1}, rows=[])))
    with pytest.raises(SystemExit, match="stain-shifted"):
        mod.main(["apply-choice", str(shifted)])
