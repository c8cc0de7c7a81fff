"""The shipped H&E StarDist model ``tg_nuinsseg_he`` (trained on NuInsSeg, CC BY 4.0) and its recipe."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import tissuegraph as tg
from tissuegraph.seg._stardist import SHIPPED_DIR

REPO = Path(__file__).resolve().parents[2]
FOLDER = SHIPPED_DIR / "tg_nuinsseg_he"
# the same recipe with the CC0 DSB 2018 brightfield images added in its last run (an option, not a default)
DSB_FOLDER = SHIPPED_DIR / "tg_nuinsseg_dsb_he"
CARDS = pytest.mark.parametrize("folder", [FOLDER, DSB_FOLDER], ids=lambda f: f.name)


@CARDS
def test_shipped_folder_is_small_with_licence_and_citation(folder):
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "weights_best.h5", "thresholds.json", "tissuegraph.json", "LICENSE.md"} <= files
    assert sum(p.stat().st_size for p in folder.iterdir()) < 8e6
    lic = (folder / "LICENSE.md").read_text()
    assert "CC BY 4.0" in lic and "10.1038/s41597-024-03117-2" in lic and "Mahbod" in lic
    assert lic.startswith(f"# {folder.name}:")
    info = json.loads((folder / "tissuegraph.json").read_text())
    # trained on NuInsSeg resampled to 0.5 µm/px (at the assumed 0.25); run at 0.42 (chosen on the validation
    # organs; what a true NuInsSeg pixel of 0.21 µm implies)
    assert info["mpp_trained_as"] == 0.5 and info["mpp"] == 0.42
    assert info["rgb_to"] == "hematoxylin" and info["modality"] == "he"
    assert "CC BY 4.0" in info["licence"]["weights"] and "Mahbod" in info["licence"]["citation"]
    split = info["split"]
    organs = [set(split[k]) for k in ("train_organs", "val_organs", "test_organs")]
    assert not (organs[0] & organs[1]) and not (organs[0] & organs[2]) and not (organs[1] & organs[2])
    ids = [set(split[k]) for k in ("train", "val", "test")]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert tg.seg.stardist_models()[folder.name] == "shipped"


def test_dsb_mix_card_names_its_dsb_images_and_keeps_the_held_out_ones_out():
    info = json.loads((DSB_FOLDER / "tissuegraph.json").read_text())
    split, train = info["split"], set(info["split"]["train"])
    dsb_train, dsb_test = set(split["dsb_brightfield_train"]), set(split["dsb_brightfield_test"])
    assert len(dsb_train) == 78 and len(dsb_test) == 20 and dsb_train <= train and not dsb_test & train
    assert "CC0" in info["licence"]["data"] and "DSB" in info["description"]
    assert "DSB" in (DSB_FOLDER / "LICENSE.md").read_text()
    # the default H&E model stays the NuInsSeg-only one (chosen on the validation organs)
    assert tg.seg.load_stardist(modality="he").name == "tg_nuinsseg_he"


@CARDS
def test_training_record_is_consistent(folder):
    """The card's loss history, epoch counts and chosen thresholds agree with each other and the folder."""
    info = json.loads((folder / "tissuegraph.json").read_text())
    tr = info["training"]
    n = len(tr["val_loss"])
    assert n == len(tr["loss"]) == tr["epochs"] and 0 < n <= tr["epochs_planned"]
    per_run = tr.get("epochs_per_run", [n])
    assert sum(per_run) == n
    # weights_best.h5 is the best validation loss of the last run (a continued run starts a fresh record)
    last = tr["val_loss"][n - per_run[-1]:]
    assert tr["best_epoch"] == n - per_run[-1] + 1 + int(np.argmin(last))
    th = json.loads((folder / "thresholds.json").read_text())
    chosen = info["thresholds_choice"]
    assert 0 < th["prob"] < 1 and 0 < th["nms"] < 1 and 0 < chosen["det_f1"] <= 1
    assert "choose" in chosen["command"] and ("--write-choice" in chosen["command"]
                                              or "apply-choice" in chosen["command"])
    # the inference options chosen with the thresholds are the model's defaults
    be = tg.seg.load_stardist(folder)
    opts = chosen.get("options", {})
    assert be.tta == opts.get("tta", 1) and be.stain_norm == opts.get("stain_norm")
    assert be.mpp == opts.get("mpp", info["mpp"]) == info["mpp"]


def test_stardist_on_he_uses_the_shipped_model_and_auto_keeps_the_watershed():
    """method='stardist' on H&E: tg_nuinsseg_he (offline).  method='auto' on H&E stays the watershed,
    which measured better on CRCHisto (benchmarks/results/seg_accuracy_nuinsseg.md)."""
    he = tg.seg.get_backend("stardist", modality="he")
    assert he.name == "tg_nuinsseg_he" and he.mpp == 0.42 and he.rgb_to == "hematoxylin"
    assert he.tta == 8 and he.stain_norm is None
    assert tg.seg.default_model_available("he") and tg.seg.default_model_available("auto")
    assert tg.seg.get_backend("auto", modality="he").name == "watershed"
    assert tg.seg.get_backend("auto", modality="fluorescence").name == "tg_dsb2018_fluo"


@pytest.fixture(scope="module")
def he_tile():
    t = tg.datasets.synthetic_tissue((384, 384), mpp=0.5, seed=100, tissue_fraction=1.0)
    return np.asarray(t.image), np.asarray(t.labels)


def test_finds_the_synthetic_nuclei_and_maps_back_from_other_resolutions(he_tile, keras_home):
    """Centroid F1 within 3 µm on a synthetic H&E tile at 0.5 µm/px, and the same image upsampled 2x (given
    as 0.25 µm/px): the backend resamples both to the model's 0.42 and returns labels at the image's own
    resolution.  (tta=1 to keep the test fast; the shipped default is 8.)"""
    from skimage.transform import resize

    img, truth = he_tile
    be = tg.seg.load_stardist("tg_nuinsseg_he", tta=1)
    truth_xy = tg.seg.centroids_from_labels(truth)
    lab, _ = be.segment(img, mpp=0.5)
    s = tg.seg.detection_scores(tg.seg.centroids_from_labels(lab), truth_xy, radius_um=3.0, mpp=0.5)
    assert s["f1"] >= 0.9, s
    up = np.clip(resize(img, (768, 768), order=1, preserve_range=True), 0, 255).astype(np.uint8)
    lab2, _ = be.segment(up, mpp=0.25)
    assert lab2.shape == (768, 768)
    s2 = tg.seg.detection_scores(tg.seg.centroids_from_labels(lab2), (truth_xy + 0.5) * 2 - 0.5,
                                 radius_um=3.0, mpp=0.25)
    assert s2["f1"] >= 0.9, s2


@pytest.mark.shared_data
def test_nuinsseg_split_is_by_organ(shared_data):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_stardist_models import nuinsseg_index, nuinsseg_split

    index = nuinsseg_index(shared_data)
    split = nuinsseg_split(index, seed=0)
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(index["source_folder"].unique())
    assert len(split["val"]) == 4 and len(split["test"]) == 4
    for k in ("val", "test"):  # 3 human + 1 mouse organs each
        species = index.drop_duplicates("source_folder").set_index("source_folder").loc[split[k], "species"]
        assert sorted(species) == ["human", "human", "human", "mouse"]
    info = json.loads((FOLDER / "tissuegraph.json").read_text())
    assert info["split"]["test_organs"] == split["test"] and info["split"]["val_organs"] == split["val"]


def test_scale_jitter_keeps_image_and_labels_aligned_and_mirrors_separate():
    """train_stardist(augment={'scale': ...}): the zoom moves image and labels together; when the patch
    shrinks, the mirror-padded copy of a nucleus cut by the border is a separate object."""
    from scipy import ndimage as ndi
    from skimage.draw import disk

    from tissuegraph.seg._train import _make_augmenter, _zoom_pair

    y = np.zeros((96, 96), np.int32)
    for i, (r, c) in enumerate([(20, 20), (50, 60), (90, 4)], start=1):  # the last one cut by the border
        rr, cc = disk((r, c), 7, shape=y.shape)
        y[rr, cc] = i
    x = (y > 0).astype(np.float32)[..., None]
    rng = np.random.default_rng(0)
    for s in (0.6, 0.8, 1.25, 1.6):
        xo, yo = _zoom_pair(x, y, s, rng)
        assert xo.shape == x.shape and yo.shape == y.shape
        assert np.mean((xo[..., 0] > 0.5) == (yo > 0)) > 0.98
        for k in np.unique(yo[yo > 0]):  # every object one connected piece (no merged mirror images)
            assert ndi.label(yo == k)[1] == 1, (s, k)
        # the whole disks (ids 1, 2) entirely inside the output: area scaled by s**2 (radius 7: 149 px)
        sizes = np.bincount(yo.ravel())[1:]
        inner = [k for k in (1, 2) if k <= len(sizes) and sizes[k - 1] and not _touches_border(yo == k)]
        if inner:
            assert np.allclose([sizes[k - 1] for k in inner], 149 * s * s, rtol=0.2), (s, sizes)
    aug = _make_augmenter(0, scale=(0.75, 1.33))
    outs = [aug(x, y) for _ in range(6)]
    assert all(o[0].shape == x.shape and o[1].shape == y.shape for o in outs)
    with pytest.raises(tg.InputError):
        _make_augmenter(0, scale=(1.2, 0.8))


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


@pytest.mark.shared_data
def test_recipe_provenance_keeps_added_dsb_images(shared_data, tmp_path):
    """--add-dsb-brightfield: the card's split lists the DSB images trained on (and the 20 held out) and the
    licence names their CC0 source, so reports can refuse to score a model on images it was trained on."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_stardist_models import _write_nuinsseg_provenance, dsb_index, dsb_split

    (tmp_path / "tissuegraph.json").write_text(json.dumps({"training": {}}))
    ids = dsb_split(dsb_index(shared_data), "brightfield", seed=0)["train"][:3]
    _write_nuinsseg_provenance(tmp_path, data=shared_data, seed=0, command="cmd", dsb_ids=ids, dsb_note="; + 3 DSB")
    info = json.loads((tmp_path / "tissuegraph.json").read_text())
    train = set(info["split"]["train"])
    assert set(ids) <= train and info["split"]["dsb_brightfield_train"] == sorted(ids)
    assert len(info["split"]["dsb_brightfield_test"]) == 20 and not set(info["split"]["dsb_brightfield_test"]) & train
    assert info["training"]["data"].endswith("; + 3 DSB") and "CC0" in info["licence"]["data"]
