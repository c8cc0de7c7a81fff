"""Choose between CRCHisto-trained StarDist models, test-time augmentation and detection thresholds on
CRCHisto *train* images held out from training.

    python benchmarks/crchisto_inner_val.py /tmp/tg_stage1/tg_crchisto_points /tmp/tg_models/tg_crchisto_points
    python benchmarks/crchisto_inner_val.py MODEL --tta 1 8 --prob-thresh 0.3 0.4 0.5 0.6

The 10 inner validation images are those of :func:`train_stardist_models.crchisto_split` (never trained
on; they only drove early stopping and StarDist's threshold choice). CRCHisto's validation folder is
not read here: it is the test set of ``bench_seg_accuracy_stardist.py``. Each model is scored with its
own thresholds (``prob_thresh`` = ``model``) and with every ``--prob-thresh`` given, for every
``--tta`` (number of flips / transposes averaged), together with the classical watershed on the same
images. The score is detection F1 within 3 µm, with counts pooled over the images. Writes
``benchmarks/results/crchisto_inner_val.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_seg_accuracy_stardist import _detection_counts, _detection_tally  # noqa: E402
from train_stardist_models import CRC_MPP, crchisto_split, load_crchisto, shared_data_dir  # noqa: E402


def _write_choice(folder: Path, best: dict) -> None:
    """Make ``best``'s settings the model's defaults (what StarDistBackend reads)."""
    th_path, info_path = folder / "thresholds.json", folder / "tissuegraph.json"
    th = json.loads(th_path.read_text())
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    prob = best["model_prob_thresh"] if best["prob_thresh"] == "model" else best["prob_thresh"]
    th_new = {**th, "prob": float(prob)}
    info_new = {**info, "tta": int(best["tta"]),
                "thresholds_choice": dict(
                    how="the (tta, prob_thresh) with the best detection F1 within 3 um on the inner "
                        "validation images (benchmarks/crchisto_inner_val.py --write-choice)",
                    f1=best["f1"], precision=best["precision"], recall=best["recall"],
                    previous_prob=th.get("prob"), previous_tta=info.get("tta", 1))}
    th_path.write_text(json.dumps(th_new, indent=1))
    info_path.write_text(json.dumps(info_new, indent=1))
    print(f"wrote prob_thresh={prob} and tta={best['tta']} into {folder}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="StarDist model folders or names")
    p.add_argument("--tta", type=int, nargs="+", default=[1], choices=[1, 2, 4, 8],
                   help="test-time augmentations to score (default: 1 = none)")
    p.add_argument("--prob-thresh", type=float, nargs="*", default=[],
                   help="probability thresholds to score besides the model's own")
    p.add_argument("--write-choice", action="store_true",
                   help="with one model: store the best (tta, prob_thresh) on these images in the model "
                        "folder (thresholds.json 'prob', tissuegraph.json 'tta'; the old values are kept "
                        "in tissuegraph.json)")
    p.add_argument("--data", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "crchisto_inner_val.json"))
    args = p.parse_args(argv)

    import tissuegraph as tg

    data = Path(args.data) if args.data else shared_data_dir()
    if not (data / "crchisto" / "train").is_dir():
        print(f"CRCHisto not found under {data}; nothing to do")
        return 0
    names, X, P = load_crchisto(data, "train")
    _, inner = crchisto_split(len(names))
    Xi, Pi = [X[i] for i in inner], [P[i] for i in inner]
    rows = []
    for m in args.models:
        for tta in args.tta:
            be = tg.seg.load_stardist(m, n_threads=args.threads, tta=tta)
            trained = set(be.info.get("split", {}).get("train", []))
            assert not trained & {names[i] for i in inner}, f"{m} was trained on inner validation images"
            t0 = time.perf_counter()
            raws = [be.predict(x, mpp=CRC_MPP) for x in Xi]
            t_net = time.perf_counter() - t0
            for pt in [None, *args.prob_thresh]:
                t0 = time.perf_counter()
                labels = [be.postprocess(r, prob_thresh=pt)[0] for r in raws]
                row = dict(model=str(m), tta=tta, prob_thresh="model" if pt is None else pt,
                           model_prob_thresh=be.prob_thresh, **_detection_tally(zip(labels, Pi)),
                           seconds=round(t_net + time.perf_counter() - t0, 2))
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.write_choice:
        if len(args.models) != 1:
            p.error("--write-choice needs exactly one model")
        best = max(rows, key=lambda r: r["f1"])
        _write_choice(be.folder, best)  # the one model's backend, from the loop
    ws = tg.seg.get_backend("watershed", modality="he")
    rows.append(dict(model="watershed", **_detection_counts(ws, Xi, Pi, mpp=CRC_MPP)))
    print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = " ".join(sys.argv[1:] if argv is None else argv)
    out.write_text(json.dumps(dict(command=f"python benchmarks/crchisto_inner_val.py {cmd}".strip(),
                                   images=[names[i] for i in inner], radius_um=3.0, mpp=CRC_MPP,
                                   rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
