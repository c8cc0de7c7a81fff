"""Check the 0.25 µm/px assumption for NuInsSeg (its README: an assumption taken from InstanSeg's loader).

Compares nucleus sizes in µm: NuInsSeg's annotated nuclei (at the assumed 0.25 µm/px) against the
nuclei the classical watershed finds on CRCHisto (known 0.55 µm/px, 20x) and the synthetic slide's
true nuclei (0.5 µm/px).  If the assumption were off by a factor f, NuInsSeg's sizes would be off by f
against the others.  Equivalent diameter = 2 sqrt(area / pi).

Two checks that do not rest on the watershed's size estimate at one resolution:

- the watershed's own bias at 20x: the same NuInsSeg images resampled to CRCHisto's 0.55 µm/px (under the
  assumption) and segmented there; if the watershed shrinks nuclei at 20x, CRCHisto's small watershed
  nuclei say nothing against the assumption;
- per-organ medians of the annotated nuclei next to nuclear sizes from histology (lymphocytes, hepatocytes):
  the pixel size each implies (``implied_mpp`` = 0.25 × expected / measured).

    python benchmarks/check_nuinsseg_scale.py   # writes benchmarks/results/nuinsseg_scale_check.json
    python benchmarks/check_nuinsseg_scale.py --model tg_nuinsseg_he   # + the model's nucleus sizes on the synthetic slide

With ``--model``, the StarDist model's nuclei on the synthetic slide (known 0.5 µm/px) are measured beside
the truth: a model trained at a wrong NuInsSeg scale would draw nuclei systematically too large or small.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from train_stardist_models import CRC_MPP, NUINSSEG_MPP, load_crchisto, nuinsseg_index, shared_data_dir  # noqa: E402


# nuclear diameters from histology (µm, in tissue sections; ranges, not a single reference value):
# a small lymphocyte's nucleus is about the size of an erythrocyte (human ~7 µm; in FFPE sections ~5.5-7.5);
# mouse lymphocytes and erythrocytes are smaller (erythrocyte ~6 µm; lymphocyte nuclei ~4.5-6.5 µm in sections);
# hepatocyte nuclei ~7-10 µm (human), mouse hepatocytes are often polyploid with larger nuclei (~7-11 µm)
LITERATURE = [
    ("human spleen", (5.5, 7.5), "lymphocyte-rich (white pulp)"),
    ("human tonsile", (5.5, 7.5), "lymphocyte-rich"),
    ("mouse spleen", (4.5, 6.5), "mouse lymphocytes"),
    ("mouse thymus", (4.5, 6.5), "mouse thymocytes"),
    ("human liver", (7.0, 10.0), "hepatocytes"),
    ("mouse liver", (7.0, 11.0), "hepatocytes (polyploid)"),
]


def _diam_px(labels: np.ndarray) -> np.ndarray:
    _, counts = np.unique(labels[labels > 0], return_counts=True)
    return 2 * np.sqrt(counts / np.pi)


def main(argv=None) -> int:
    import argparse

    import tifffile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="also measure this StarDist model's nuclei on the synthetic slide")
    args = ap.parse_args(argv)

    import tissuegraph as tg

    data = shared_data_dir()
    idx = nuinsseg_index(data)
    human = idx[idx["species"] == "human"]
    d_nuin = np.concatenate([_diam_px(tifffile.imread(data / "nuinsseg" / r)) for r in human["label"]])
    _, X, _ = load_crchisto(data, "validation")
    ws = tg.seg.get_backend("watershed", modality="he")
    d_crc = np.concatenate([_diam_px(ws.segment(x, mpp=CRC_MPP)[0]) for x in X])
    # the same estimator (watershed) on NuInsSeg at the assumed 0.25 µm/px: its bias against the truth
    from PIL import Image

    sample = human.iloc[:: max(1, len(human) // 60)]
    d_ws_nuin = np.concatenate([_diam_px(ws.segment(np.asarray(Image.open(data / "nuinsseg" / r).convert("RGB")),
                                                    mpp=NUINSSEG_MPP)[0]) for r in sample["image"]])
    d_syn = np.concatenate([_diam_px(np.asarray(tg.datasets.synthetic_tissue((768, 768), mpp=0.5, seed=s,
                                                                              tissue_fraction=1.0).labels))
                            for s in (100, 101)])
    q = [10, 25, 50, 75, 90]
    res = {
        "nuinsseg_human_truth_um_at_0.25": dict(zip(map(str, q), np.percentile(d_nuin * NUINSSEG_MPP, q).round(2).tolist())),
        "crchisto_validation_watershed_um": dict(zip(map(str, q), np.percentile(d_crc * CRC_MPP, q).round(2).tolist())),
        "nuinsseg_human_watershed_um_at_0.25": dict(zip(map(str, q), np.percentile(d_ws_nuin * NUINSSEG_MPP, q).round(2).tolist())),
        "synthetic_truth_um": dict(zip(map(str, q), np.percentile(d_syn * 0.5, q).round(2).tolist())),
        "n": {"nuinsseg": int(d_nuin.size), "nuinsseg_watershed": int(d_ws_nuin.size), "crchisto": int(d_crc.size), "synthetic": int(d_syn.size)},
    }
    res["median_ratio_crchisto_over_nuinsseg"] = round(res["crchisto_validation_watershed_um"]["50"]
                                                       / res["nuinsseg_human_truth_um_at_0.25"]["50"], 3)
    res["median_ratio_watershed_crchisto_over_nuinsseg"] = round(
        res["crchisto_validation_watershed_um"]["50"] / res["nuinsseg_human_watershed_um_at_0.25"]["50"], 3)
    # the watershed at 20x: the same sample of NuInsSeg images resampled to 0.55 µm/px (under the assumption)
    from train_stardist_models import load_nuinsseg  # noqa: E402

    folders = sorted(human["source_folder"].unique())
    _, X55, Y55 = load_nuinsseg(data, folders, target_mpp=CRC_MPP)
    keep = set(sample["id"])
    ids_all = human.sort_values("id")["id"].tolist()
    pick = [i for i, k in enumerate(ids_all) if k in keep]
    d_ws55 = np.concatenate([_diam_px(ws.segment(X55[i], mpp=CRC_MPP)[0]) for i in pick])
    d_true_sample = np.concatenate([_diam_px(tifffile.imread(data / "nuinsseg" / r)) for r in sample["label"]])
    res["nuinsseg_human_sample_truth_um_at_0.25"] = dict(zip(map(str, q), np.percentile(d_true_sample * NUINSSEG_MPP, q).round(2).tolist()))
    res["nuinsseg_human_watershed_um_at_0.55_resampled"] = dict(zip(map(str, q), np.percentile(d_ws55 * CRC_MPP, q).round(2).tolist()))
    res["n"]["nuinsseg_watershed_0.55"] = int(d_ws55.size)
    res["watershed_bias_at_0.55"] = round(res["nuinsseg_human_watershed_um_at_0.55_resampled"]["50"]
                                          / res["nuinsseg_human_sample_truth_um_at_0.25"]["50"], 3)
    res["crchisto_watershed_median_bias_corrected_um"] = round(res["crchisto_validation_watershed_um"]["50"]
                                                              / res["watershed_bias_at_0.55"], 2)
    # per organ: annotated nuclei at the assumed 0.25 µm/px, next to sizes from histology
    per_organ = {}
    for folder, g in idx.groupby("source_folder"):
        d = np.concatenate([_diam_px(tifffile.imread(data / "nuinsseg" / r)) for r in g["label"]]) * NUINSSEG_MPP
        per_organ[folder] = {"n": int(d.size), "p25": round(float(np.percentile(d, 25)), 2),
                             "p50": round(float(np.percentile(d, 50)), 2), "p75": round(float(np.percentile(d, 75)), 2)}
    res["per_organ_truth_um_at_0.25"] = per_organ
    checks = []
    for folder, (lo, hi), what in LITERATURE:
        m = per_organ[folder]["p50"]
        checks.append({"organ": folder, "expected_um": [lo, hi], "what": what, "median_um_at_0.25": m,
                       "implied_mpp": [round(NUINSSEG_MPP * lo / m, 3), round(NUINSSEG_MPP * hi / m, 3)]})
    res["literature_checks"] = checks
    if args.model:
        be = tg.seg.load_stardist(args.model, n_threads=2)
        d_pred = []
        for s in (100, 101):
            img = np.asarray(tg.datasets.synthetic_tissue((768, 768), mpp=0.5, seed=s, tissue_fraction=1.0).image)
            d_pred.append(_diam_px(np.asarray(be.segment(img, mpp=0.5)[0])))
        d_pred = np.concatenate(d_pred)
        res["synthetic_model_um"] = {"model": str(args.model), "n": int(d_pred.size),
                                     **dict(zip(map(str, q), np.percentile(d_pred * 0.5, q).round(2).tolist()))}
        res["synthetic_model_over_truth_median"] = round(res["synthetic_model_um"]["50"]
                                                         / res["synthetic_truth_um"]["50"], 3)
    res["command"] = "python benchmarks/check_nuinsseg_scale.py" + (f" --model {args.model}" if args.model else "")
    out = REPO / "benchmarks" / "results" / "nuinsseg_scale_check.json"
    out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
