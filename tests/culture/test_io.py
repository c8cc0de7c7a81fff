"""Plate loaders on tiny fake layouts in tmp_path, and the real BBBC021 profiles (shared data)."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

import tissuegraph as tg
from tissuegraph import InputError


def _tif(path, value, shape=(8, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.full(shape, value, dtype=np.uint16))


def _png(path, value, shape=(8, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, dtype=np.uint8)).save(path)


def _bbbc021(root, n_wells=2):
    rows = []
    for w in range(n_wells):
        well = f"B0{w + 2}"
        for s in (1, 2):
            r = {"TableNumber": 1, "ImageNumber": len(rows) + 1, "Image_Metadata_Plate_DAPI": "Week1_22123",
                 "Image_Metadata_Well_DAPI": well, "Replicate": 1,
                 "Image_Metadata_Compound": "DMSO" if w == 0 else "taxol",
                 "Image_Metadata_Concentration": 0.0 if w == 0 else 0.3}
            for ch, code in (("DAPI", 1), ("Tubulin", 2), ("Actin", 4)):
                fn = f"{well}_s{s}_w{code}ABC.tif"
                r[f"Image_FileName_{ch}"] = fn
                r[f"Image_PathName_{ch}"] = "Week1/Week1_22123"
                _tif(root / "Week1" / "Week1_22123" / fn, 10 * code + s)
            rows.append(r)
    pd.DataFrame(rows).to_csv(root / "BBBC021_v1_image.csv", index=False)
    pd.DataFrame({"compound": ["taxol", "DMSO"], "concentration": [0.3, 0.0],
                  "moa": ["Microtubule stabilizers", "DMSO"]}).to_csv(root / "BBBC021_v1_moa.csv", index=False)


def test_bbbc021_images(tmp_path):
    _bbbc021(tmp_path)
    p = tg.culture.read_bbbc021(tmp_path)
    assert len(p) == 4 and p.channels == ["DNA", "tubulin", "actin"]
    s = p.sites
    assert set(s["batch"]) == {"Week1"} and s["site"].tolist() == [1, 2, 1, 2]
    assert s.loc[s.well == "B03", "moa"].iloc[0] == "Microtubule stabilizers"
    assert s["is_control"].tolist() == [True, True, False, False]
    img = p.read(1)
    assert img.shape == (8, 10, 3) and img[0, 0].tolist() == [12.0, 22.0, 42.0]
    w = p.wells()
    assert len(w) == 2 and w["n_sites"].tolist() == [2, 2]
    samples = p.to_samples()
    assert samples.n_obs == 2 and "compound" in samples.obs


def test_bbbc021_missing_files_and_columns(tmp_path):
    _bbbc021(tmp_path)
    (tmp_path / "Week1" / "Week1_22123" / "B02_s1_w2ABC.tif").unlink()
    with pytest.raises(InputError, match="missing channel files"):
        tg.culture.read_bbbc021(tmp_path)
    p = tg.culture.read_bbbc021(tmp_path, check_files=False)
    assert len(p.missing_files()) == 1
    with pytest.raises(FileNotFoundError, match="tubulin"):
        p.read(0)
    pd.read_csv(tmp_path / "BBBC021_v1_image.csv").drop(columns=["Image_FileName_Actin"]).to_csv(
        tmp_path / "BBBC021_v1_image.csv", index=False)
    with pytest.raises(InputError, match="Image_FileName_Actin"):
        tg.culture.read_bbbc021(tmp_path)
    with pytest.raises(InputError, match="not found"):
        tg.culture.read_bbbc021(tmp_path / "nope")


def test_rxrx(tmp_path):
    md = pd.DataFrame({"site_id": ["HEPG2-01_1_B02_1"], "well_id": ["HEPG2-01_1_B02"], "experiment": ["HEPG2-01"],
                       "plate": [1], "well": ["B02"], "site": [1], "well_type": ["negative_control"],
                       "sirna": ["EMPTY"]})
    md = pd.concat([md, md.assign(well="C03", well_type="treatment", sirna="s1")], ignore_index=True)
    md.to_csv(tmp_path / "metadata.csv", index=False)
    for w in ("B02", "C03"):
        for c in range(1, 7):
            _png(tmp_path / "images" / "HEPG2-01" / "Plate1" / f"{w}_s1_w{c}.png", c)
    p = tg.culture.read_rxrx(tmp_path)
    assert p.channels == [f"w{c}" for c in range(1, 7)]
    assert p.sites["is_control"].tolist() == [True, False]
    assert p.sites["batch"].iloc[0] == "HEPG2-01" and p.sites["perturbation"].iloc[1] == "s1"
    assert p.read(0)[0, 0].tolist() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(InputError, match="missing channel files"):
        tg.culture.read_rxrx(tmp_path, channels=[1, 7])


def test_jump_load_data(tmp_path):
    chans = ["DNA", "AGP", "ER", "Mito", "RNA"]
    row = {"Metadata_Source": "source_4", "Metadata_Batch": "2021_04_26_Batch1", "Metadata_Plate": "BR001",
           "Metadata_Well": "A01", "Metadata_Site": 1}
    for i, ch in enumerate(chans):
        row[f"FileName_Orig{ch}"] = f"r01c01f01p01-ch{i + 1}sk1fk1fl1.tiff"
        row[f"PathName_Orig{ch}"] = "s3://cellpainting-gallery/cpg0016-jump/source_4/images/BR001/Images/"
        _tif(tmp_path / "cpg" / "source_4" / "images" / "BR001" / "Images" / row[f"FileName_Orig{ch}"], i)
    pd.DataFrame([row]).to_csv(tmp_path / "load_data.csv", index=False)
    with pytest.raises(InputError, match="remote"):
        tg.culture.read_jump_load_data(tmp_path / "load_data.csv")
    p = tg.culture.read_jump_load_data(tmp_path / "load_data.csv", path_map={
        "s3://cellpainting-gallery/cpg0016-jump/": str(tmp_path / "cpg") + "/"})
    assert p.channels == chans and p.sites["batch"].iloc[0] == "2021_04_26_Batch1"
    assert p.read(0)[0, 0].tolist() == [0, 1, 2, 3, 4]


def test_generic_table(tmp_path):
    _png(tmp_path / "a_dna.png", 5)
    _png(tmp_path / "a_cyto.png", 6)
    pd.DataFrame({"Plate": ["p1"], "Well": ["H12"], "dna": ["a_dna.png"], "cyto": ["a_cyto.png"],
                  "treatment": ["x"]}).to_csv(tmp_path / "sites.csv", index=False)
    p = tg.culture.read_image_table(tmp_path / "sites.csv", channels={"DNA": "dna", "cytoplasm": "cyto"},
                                    plate="Plate", well="Well")
    assert p.sites[["row", "column", "site", "treatment"]].iloc[0].tolist() == ["H", 12, 1, "x"]
    assert p.read(0).shape == (8, 10, 2)
    with pytest.raises(InputError, match="lacks the column"):
        tg.culture.read_image_table(tmp_path / "sites.csv", channels=["nope"], plate="Plate", well="Well")
    bad = pd.DataFrame({"plate": ["p"], "well": ["Z"], "dna": ["a_dna.png"]})
    with pytest.raises(InputError, match="well"):
        tg.culture.read_image_table(bad, channels=["dna"], root=tmp_path)


def test_profiles_csv(tmp_path):
    df = pd.DataFrame({"Metadata_Plate": ["P1", "P1", "P2"], "Metadata_Well": ["A1", "A02", "A01"],
                       "Cells_Area": [1.0, 2.0, 3.0], "Nuclei_Int": [0.5, np.nan, 1.0], "Other": ["u", "v", "w"]})
    with gzip.open(tmp_path / "p.csv.gz", "wt") as fh:
        df.to_csv(fh, index=False)
    md = pd.DataFrame({"plate": ["P1", "P1", "P2"], "well": ["A01", "A02", "A01"], "compound": ["DMSO", "x", "DMSO"]})
    a = tg.culture.read_profiles(tmp_path / "p.csv.gz", metadata=md, control="DMSO")
    assert a.obs_names.tolist() == ["P1/A01", "P1/A02", "P2/A01"]
    assert a.obs["is_control"].tolist() == [True, False, True]
    assert a.obsm["X_profile"].dtype == np.float32 and np.isnan(a.obsm["X_profile"][1, 1])
    assert list(a.uns["X_profile_names"]) == ["Cells_Area", "Nuclei_Int"]
    rec = a.uns["representations"]["X_profile"]
    assert rec["family"] == "profile" and rec["trained"] is False and rec["learned"] is False
    assert set(rec) >= {"objective", "architecture", "inputs", "layer", "seed", "twin_group", "weights_sha256",
                        "params"}
    with pytest.raises(InputError, match="duplicated"):
        tg.culture.read_profiles(pd.concat([df, df]))
    with pytest.raises(InputError, match="plate/well"):
        tg.culture.read_profiles(df.drop(columns=["Metadata_Plate"]))


@pytest.mark.shared_data
def test_real_bbbc021_profiles(shared_data):
    a = tg.culture.read_bbbc021_profiles(shared_data / "bbbc021_profiles")
    assert a.n_obs == 632 and a.obsm["X_profile"].shape[1] > 450
    assert int(a.obs["is_control"].sum()) == 330
    assert a.obs["batch"].nunique() == 10
    treated = a.obs[~a.obs["is_control"]]
    assert treated.groupby(["compound", "concentration"]).ngroups == 103
    assert treated["moa"].nunique() == 12
