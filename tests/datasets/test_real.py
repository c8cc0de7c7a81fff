"""Loaders of the real data sets: a few images each; skipped when ../shared/data is absent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tissuegraph as tg
from tissuegraph import InputError
from tissuegraph.datasets import (
    dsb2018_index,
    load_crchisto,
    load_dsb2018,
    load_kather2016_samples,
    shared_data_dir,
)


def test_shared_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TISSUEGRAPH_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.setenv("TISSUEGRAPH_SHARED_DATA", str(tmp_path / "nope"))
    assert shared_data_dir() is None
    with pytest.raises(InputError, match="TISSUEGRAPH_SHARED_DATA"):
        load_dsb2018()


def test_missing_folders_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_dsb2018(tmp_path / "nope")
    with pytest.raises(InputError, match="index.csv"):
        load_dsb2018(tmp_path)
    with pytest.raises(InputError, match="split"):
        load_crchisto(tmp_path, split="test")
    with pytest.raises(InputError, match="validation"):
        load_crchisto(tmp_path, split="validation")


def test_small_fake_crchisto(tmp_path):
    from PIL import Image

    d = tmp_path / "train"
    d.mkdir()
    for k in (10, 2):
        Image.fromarray(np.full((8, 8, 3), k, np.uint8)).save(d / f"img{k}.png")
        pd.DataFrame({"x": [1.0], "y": [2.0], "type": ["epithelial"]}).to_csv(d / f"img{k}.csv", index=False)
    ds = load_crchisto(tmp_path)
    assert [r.id for r in ds] == ["img2", "img10"]  # natural order
    r = ds[1]
    assert r.image.shape == (8, 8, 3) and r.image[0, 0, 0] == 10 and r.mpp == pytest.approx(0.55)
    assert list(r.centres.columns) == ["x", "y", "type"]
    (d / "img2.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="img2.csv"):
        ds[0]


@pytest.mark.shared_data
def test_dsb2018(shared_data):
    idx = dsb2018_index()
    assert set(idx["modality"]) == {"fluorescence", "brightfield"} and len(idx) == 664
    ds = load_dsb2018(modality="fluorescence", limit=2)
    assert len(ds) == 2 and repr(ds).startswith("LazyRecords")
    r = ds[0]
    assert r.id == idx.loc[idx["modality"] == "fluorescence", "id"].iloc[0]
    assert r.image.dtype == np.uint8 and r.image.ndim == 3 and r.image.shape[2] == 3
    assert r.labels.shape == r.image.shape[:2] and r.labels.dtype == np.int32 and r.labels.max() > 0
    assert r.modality == "fluorescence"
    bf = load_dsb2018(modality="brightfield", limit=1)[0]
    assert bf.modality == "brightfield"
    sub = load_dsb2018(ids=[bf.id])
    assert sub.keys == [bf.id]
    with pytest.raises(InputError, match="Unknown DSB"):
        load_dsb2018(ids=["not-an-id"])
    with pytest.raises(InputError, match="modality"):
        load_dsb2018(modality="phase")


@pytest.mark.shared_data
def test_crchisto(shared_data):
    val = load_crchisto(split="validation")
    assert len(val) > 0
    r = val[0]
    assert r.image.shape == (500, 500, 3) and len(r.centres) > 0
    assert r.centres["x"].between(-1, 501).all() and r.centres["type"].dtype == object


@pytest.mark.shared_data
def test_kather(shared_data):
    ds = load_kather2016_samples(classes=["TUMOR", "02_STROMA"])
    assert {r.label for r in ds} == {"TUMOR", "STROMA"} and len(ds) == 6
    assert ds[0].image.shape == (150, 150, 3)
    with pytest.raises(InputError, match="Unknown Kather"):
        load_kather2016_samples(classes=["BONE"])


@pytest.mark.shared_data
def test_watershed_on_a_few_real_images(shared_data):
    """Smoke-level accuracy on 3 held-out DSB fluorescence images and 2 CRCHisto validation images."""
    import warnings

    from tissuegraph.seg import (
        centroids_from_labels,
        detection_scores,
        match_instances,
        watershed_nuclei,
    )

    tp = fp = fn = 0
    for r in load_dsb2018(modality="fluorescence", limit=3):  # positions 0-2: not in the fit set
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = match_instances(r.labels, watershed_nuclei(r.image))
        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
    assert 2 * tp / (2 * tp + fp + fn) > 0.85  # measured 0.94
    tp = fp = fn = 0
    for r in load_crchisto(split="validation")[:2]:
        d = detection_scores(centroids_from_labels(tg.seg.watershed_nuclei(r.image, mpp=r.mpp)),
                             r.centres[["x", "y"]].to_numpy(), radius_um=3.0, mpp=r.mpp)
        tp, fp, fn = tp + d["tp"], fp + d["fp"], fn + d["fn"]
    assert 2 * tp / (2 * tp + fp + fn) > 0.6  # measured 0.70
