"""`tissuegraph culture bench --dataset PATH`: the synthetic screen written to disk in every layout a user
brings (BBBC021, RxRx, JUMP load_data, a table of image paths, per-well profiles), the layout detected, the
whole path run end to end from the CLI on one layout, clear errors, and report.html."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from tissuegraph import InputError
from tissuegraph.cli import main
from tissuegraph.culture import read_bbbc021, read_image_table, read_jump_load_data, read_profiles, read_rxrx
from tissuegraph.culture._detect import default_channels, detect_layout, open_dataset, prepare_screen
from tissuegraph.culture._synthetic import synthetic_plate


@pytest.fixture(scope="module")
def plate():
    # 2 batches x 1 plate of 4 x 4 wells (10 compounds of 5 mechanisms, 6 DMSO wells), 96 px sites
    return synthetic_plate(n_batches=2, plates_per_batch=1, rows=4, columns=4, compounds_per_mechanism=2,
                           size=96, seed=0)


def _u16(img):
    return np.clip(img * 20000, 0, 65535).astype(np.uint16)


def write_table(plate, root, *, label="moa", with_control=True):
    """One TIFF per channel and a CSV: plate, well, site, compound, dose, <label>, path_<channel>."""
    rows = []
    for i, r in plate.sites.iterrows():
        row = {"plate": r.plate, "well": r.well, "site": r.site, "compound": r.compound, "dose": r.dose,
               label: r.moa}
        if with_control:
            row["is_control"] = r.is_control
        for c, ch in enumerate(plate.channels):
            rel = f"img/{r.plate}_{r.well}_{ch}.tif"
            (root / "img").mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / rel, _u16(plate.images[i][..., c]))
            row[f"path_{ch}"] = rel
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "sites.csv", index=False)
    return root / "sites.csv"


def write_bbbc021(plate, root):
    rows, code = [], {"DAPI": 0, "Actin": 1, "Tubulin": 2}  # synthetic channels: DNA, actin, tubulin
    for i, r in plate.sites.iterrows():
        pl = f"Week{r.batch[1:]}_{r.plate}"
        row = {"Image_Metadata_Plate_DAPI": pl, "Image_Metadata_Well_DAPI": r.well, "Replicate": 1,
               "Image_Metadata_Compound": r.compound, "Image_Metadata_Concentration": r.dose}
        for ch, c in code.items():
            fn = f"{r.well}_s1_w{c + 1}X.tif"
            (root / pl).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / pl / fn, _u16(plate.images[i][..., c]))
            row[f"Image_FileName_{ch}"], row[f"Image_PathName_{ch}"] = fn, pl
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "BBBC021_v1_image.csv", index=False)
    moa = plate.sites[["compound", "dose", "moa"]].drop_duplicates().rename(columns={"dose": "concentration"})
    moa.to_csv(root / "BBBC021_v1_moa.csv", index=False)
    return root


def write_rxrx(plate, root):
    md = pd.DataFrame({"experiment": plate.sites.batch, "plate": plate.sites.plate.str[-1].astype(int),
                       "well": plate.sites.well, "site": 1, "sirna": plate.sites.compound,
                       "well_type": np.where(plate.sites.is_control, "negative_control", "treatment"),
                       "moa": plate.sites.moa})
    md.to_csv(root / "metadata.csv", index=False)
    for i, r in md.iterrows():
        d = root / "images" / r.experiment / f"Plate{r.plate}"
        d.mkdir(parents=True, exist_ok=True)
        for c in range(3):
            Image.fromarray(np.clip(plate.images[i][..., c] * 200, 0, 255).astype(np.uint8)).save(
                d / f"{r.well}_s1_w{c + 1}.png")
    return root


def write_jump(plate, root):
    rows = []
    for i, r in plate.sites.iterrows():
        row = {"Metadata_Source": "source_x", "Metadata_Batch": r.batch, "Metadata_Plate": r.plate,
               "Metadata_Well": r.well, "Metadata_Site": 1}
        for c, ch in enumerate(("DNA", "AGP", "Mito")):
            fn = f"{r.plate}_{r.well}_ch{c + 1}.tiff"
            tifffile.imwrite(root / fn, _u16(plate.images[i][..., c]))
            row[f"FileName_Orig{ch}"], row[f"PathName_Orig{ch}"] = fn, str(root)
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "load_data.csv", index=False)
    plate.sites[["plate", "well", "compound", "moa"]].to_csv(root / "platemap.csv", index=False)
    return root / "load_data.csv"


def write_profiles(plate, root):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"Metadata_Plate": plate.sites.plate, "Metadata_Well": plate.sites.well,
                       "compound": plate.sites.compound, "moa": plate.sites.moa,
                       **{f"Cells_F{k}": rng.normal(size=len(plate)) for k in range(4)}})
    df.to_csv(root / "wells.csv", index=False)
    return root / "wells.csv"


def test_detect_each_layout(plate, tmp_path):
    made = {}
    for name, fn in (("table", write_table), ("bbbc021", write_bbbc021), ("rxrx", write_rxrx),
                     ("jump", write_jump), ("profiles", write_profiles)):
        d = tmp_path / name
        d.mkdir()
        made[name] = fn(plate, d)
    assert detect_layout(made["table"]) == ("table", made["table"])
    assert detect_layout(made["bbbc021"]) == ("bbbc021", made["bbbc021"])
    assert detect_layout(made["bbbc021"] / "BBBC021_v1_image.csv") == ("bbbc021", made["bbbc021"])
    assert detect_layout(made["rxrx"]) == ("rxrx", made["rxrx"])
    assert detect_layout(made["jump"]) == ("jump", made["jump"])
    assert detect_layout(made["jump"].parent) == ("jump", made["jump"])
    assert detect_layout(made["profiles"]) == ("profiles", made["profiles"])
    # the folder of the table holds one CSV: that CSV
    assert detect_layout(tmp_path / "table") == ("table", made["table"])

    # each layout is read by its own loader: the same sites and pixels as calling that loader directly
    direct = {"table": lambda: read_image_table(made["table"], channels={c: f"path_{c}" for c in plate.channels}),
              "bbbc021": lambda: read_bbbc021(made["bbbc021"]),
              "rxrx": lambda: read_rxrx(made["rxrx"], channels=[1, 2, 3]),
              "jump": lambda: read_jump_load_data(made["jump"])}
    for name, load in direct.items():
        kind, got = open_dataset(made[name], channels=["1", "2", "3"] if name == "rxrx" else None)
        ref = load()
        assert kind == name and got.layout == ref.layout and len(got) == len(plate) == len(ref)
        assert got.channels == ref.channels
        np.testing.assert_array_equal(got.read(5), ref.read(5))
    kind, wells = open_dataset(made["profiles"])
    ref = read_profiles(made["profiles"])
    assert kind == "profiles" and wells.n_obs == len(plate)
    np.testing.assert_array_equal(wells.obsm["X_profile"], ref.obsm["X_profile"])
    # the BBBC021 plate's channels are DNA, tubulin, actin: DNA = 0, cytoplasm = actin (2); JUMP: DNA, AGP
    assert default_channels(["DNA", "tubulin", "actin"]) == (0, 2)
    assert default_channels(["DNA", "AGP", "Mito"]) == (0, 1)
    assert default_channels([f"w{c}" for c in range(1, 7)]) == (0, 2)
    assert default_channels(["Hoechst", "Phalloidin"]) == (0, 1)
    # the JUMP CSV carries no treatment: the plate map joined on (plate, well) gives compound and label
    _, jump = open_dataset(made["jump"], metadata=made["jump"].parent / "platemap.csv")
    pd.testing.assert_series_equal(jump.sites["moa"], plate.sites["moa"], check_names=False)
    screen = prepare_screen(jump.sites)
    assert screen["is_control"].sum() == plate.sites.is_control.sum()
    with pytest.raises(InputError, match=r"no label column 'moa'.*--metadata CSV"):
        prepare_screen(open_dataset(made["jump"])[1].sites)
    # RxRx: the siRNA is the treatment held out (no compound column), controls from well_type
    _, rx = open_dataset(made["rxrx"], channels=["1", "2", "3"])
    screen = prepare_screen(rx.sites)
    assert screen["compound"].tolist() == plate.sites["compound"].tolist()
    assert screen["is_control"].tolist() == plate.sites["is_control"].tolist()
    assert sorted(set(rx.sites["plate"])) == ["B1_1", "B2_1"]  # RxRx plate numbers are per experiment


def test_clear_errors(plate, tmp_path):
    csv = write_table(plate, tmp_path, label="mechanism")
    # no label column: name the column to add and the option to pass (and list the candidates)
    rc = main(["culture", "bench", "--dataset", str(csv), "-o", str(tmp_path / "o"), "--no-progress"])
    assert rc == 2
    with pytest.raises(InputError, match=r"add a 'moa' column .* --label-key COLUMN .*'mechanism'"):
        prepare_screen(pd.read_csv(csv))
    # no control wells: say how controls were looked for and what to pass
    with pytest.raises(InputError, match=r"no control wells .*'compound' equal to \['DMSO'\].*--control VALUE"):
        prepare_screen(pd.read_csv(csv).drop(columns="is_control").assign(compound="x"), label_key="mechanism")
    with pytest.raises(InputError, match="no control wells"):
        prepare_screen(pd.read_csv(csv).drop(columns="is_control"), label_key="mechanism", control="PBS")
    got = prepare_screen(pd.read_csv(csv).drop(columns="is_control"), label_key="mechanism")
    assert got["is_control"].tolist() == plate.sites["is_control"].tolist()
    assert (got["moa"] == plate.sites["moa"]).all()
    # missing image files: every missing file is listed
    for f in ("img/B1P1_A01_actin.tif", "img/B2P1_C03_DNA.tif"):
        (tmp_path / f).unlink()
    with pytest.raises(InputError, match=r"2 of 32 sites have missing channel files \(2 files\)") as e:
        open_dataset(csv)
    assert "B1P1_A01_actin.tif" in str(e.value) and "B2P1_C03_DNA.tif" in str(e.value)
    # no path columns / undetectable folder / not a CSV / not there
    pd.DataFrame({"plate": ["p"], "well": ["A01"], "dna": ["x.tif"]}).to_csv(tmp_path / "bare.csv", index=False)
    with pytest.raises(InputError, match=r"path_<channel> .*--channels NAME=COLUMN"):
        open_dataset(tmp_path / "bare.csv")
    with pytest.raises(InputError, match="cannot tell the layout"):
        detect_layout(tmp_path)
    (tmp_path / "x.tif").write_bytes(b"")
    with pytest.raises(InputError, match="must be a CSV"):
        detect_layout(tmp_path / "x.tif")
    with pytest.raises(InputError, match="not found"):
        detect_layout(tmp_path / "nope")


def test_cli_bench_image_table_end_to_end(plate, tmp_path, capsys):
    """A table of image paths -> watershed nuclei -> cells -> features -> wells -> evaluation + report.html;
    the label comes from --label-key and the channels from --channels (column names of the user's CSV)."""
    (tmp_path / "data").mkdir()
    csv = write_table(plate, tmp_path / "data", label="mechanism")
    df = pd.read_csv(csv).rename(columns={"path_DNA": "dapi", "path_actin": "phalloidin", "path_tubulin": "tub"})
    df.to_csv(csv, index=False)
    out = tmp_path / "out"
    rc = main(["culture", "bench", "--dataset", str(csv), "--label-key", "mechanism", "--channels", "DNA=dapi",
               "actin=phalloidin", "tubulin=tub", "--segmenter", "watershed", "--quick", "--no-networks",
               "--null-size", "100", "--no-progress", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    res = pd.read_csv(out / "results.csv")
    screen = res[res.split == "all"].set_index("metric")["value"]
    # the synthetic mechanisms (5 classes, chance 0.2) are found from the segmented cells' profiles
    assert screen["NSC"] >= 0.5 and 0 <= screen["NSCB"] <= 1
    assert {"linear_probe", "retrieval"} <= set(res.protocol)
    md = (out / "summary.md").read_text()
    assert "--label-key mechanism" in md and "## Screen metrics" in md
    import json

    man = json.loads((out / "manifest.json").read_text())
    assert man["info"]["layout"] == "table" and man["info"]["sites"] == 32 and man["info"]["cells"] > 300
    assert man["info"]["channels"] == ["DNA", "actin", "tubulin"]
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "X_profile" in page and "Representations" in page
    assert "report.html" in capsys.readouterr().out


def test_report_failure_never_fails_the_bench(tmp_path, monkeypatch):
    import tissuegraph.report as R
    from tissuegraph.culture._bench import culture_bench

    def boom(*a, **k):
        raise RuntimeError("report broke")

    monkeypatch.setattr(R, "write_report", boom)
    info = culture_bench(tmp_path, dataset="synthetic", quick=True, segmenter="truth", null_size=50,
                         networks=False, progress=False)
    assert (tmp_path / "results.csv").is_file() and not (tmp_path / "report.html").exists()
    assert "report" not in info["paths"]


def test_cli_bench_rxrx_folder(plate, tmp_path, capsys):
    """An RxRx folder (no compound, no dose: the siRNA column is the treatment) runs from the CLI."""
    write_rxrx(plate, tmp_path)
    out = tmp_path / "out"
    rc = main(["culture", "bench", "--dataset", str(tmp_path), "--channels", "1", "2", "3", "--segmenter",
               "watershed", "--quick", "--no-networks", "--null-size", "100", "--no-progress", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    res = pd.read_csv(out / "results.csv")
    screen = res[res.split == "all"].set_index("metric")["value"]
    assert 0.2 < screen["NSC"] <= 1 and 0 < screen["mAP"].max() <= 1
    import json

    info = json.loads((out / "manifest.json").read_text())["info"]
    assert info["layout"] == "rxrx" and info["channels"] == ["w1", "w2", "w3"] and info["wells"] == 32
