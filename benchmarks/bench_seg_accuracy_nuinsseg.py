"""H&E nuclei: the NuInsSeg-trained StarDist model (``tg_nuinsseg_he``) beside the classical watershed.

    # 1. model choice on the NuInsSeg *validation organs* only (never the test organs, never CRCHisto):
    python benchmarks/bench_seg_accuracy_nuinsseg.py choose MODEL --prob-thresh 0.3 0.4 0.5 0.6 --write-choice
    # 2. the report: every H&E test set, the watershed in the same run
    python benchmarks/bench_seg_accuracy_nuinsseg.py report MODEL [MODEL ...]

Sets (none used for training or model choice, except ``nuinsseg_val``, shown for reference):

- ``nuinsseg_test``: the NuInsSeg images of the test organs of :func:`train_stardist_models.nuinsseg_split`
  (whole organs = whole slides held out), native 0.25 µm/px (the data README's assumption; the model
  resamples to its 0.5 µm/px and maps the labels back).  F1 at IoU 0.5 and panoptic quality with TP/FP/FN
  pooled over the images, AJI / mean image F1, and detection F1 of centroids within 3 µm.
- ``crchisto_validation`` (10 images) and ``crchisto_all`` (train + validation, 80 images): detection F1
  within 3 µm, counts pooled (CRCHisto has centres only), 0.55 µm/px.
- ``dsb_brightfield``: all 107 DSB 2018 brightfield images, F1 at IoU 0.5 pooled (no pixel size: native
  resolution).
- ``dsb_brightfield_test``: the 20 DSB brightfield images held out by ``dsb_split`` (the first 20 of
  ``index.csv``), the only clean DSB set for a model that also trained on DSB brightfield images; a model
  is not scored on a set holding images it was trained on (the row says so).
- ``synthetic``: ``tg.datasets.synthetic_tissue`` H&E tiles (seeds 100-103, 768 px, 0.5 µm/px), centroid
  F1 within 3 µm and F1 at IoU 0.5.

``choose`` predicts the validation organs once per model and scores the non-maximum suppression at each
``--prob-thresh`` (and the model's own), picking the best detection F1 within 3 µm (ties: F1 at IoU 0.5);
``--write-choice`` writes it into the model folder (``thresholds.json`` and ``tissuegraph.json``).
Writes ``benchmarks/results/seg_accuracy_nuinsseg[_choice].{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench_seg_accuracy_stardist import _detection_tally  # noqa: E402
from train_stardist_models import (  # noqa: E402
    CRC_MPP,
    NUINSSEG_MPP,
    dsb_index,
    dsb_split,
    load_dsb,
    load_crchisto,
    load_nuinsseg,
    nuinsseg_index,
    nuinsseg_split,
    shared_data_dir,
)

RESULTS = REPO / "benchmarks" / "results"
SETS = ("nuinsseg_test", "crchisto_validation", "crchisto_all", "dsb_brightfield", "dsb_brightfield_test",
        "synthetic")


def _instance_tally(pairs, *, mpp: float | None) -> dict:
    """F1@0.5, PQ (pooled), AJI and mean image F1 (means over images), centroid detection F1 within 3 µm
    (pooled; only with a known ``mpp``) over ``(truth, prediction)`` label pairs."""
    import tissuegraph as tg
    from tissuegraph.seg._metrics import _counts

    tp = fp = fn = 0
    sum_iou = 0.0
    ctp = cfp = cfn = 0
    ajis, img_f1 = [], []
    for gt, pred in pairs:
        ov = tg.seg.label_overlap(gt, pred)
        c = _counts(ov, 0.5)
        tp, fp, fn = tp + c["tp"], fp + c["fp"], fn + c["fn"]
        s = tg.seg.matching_scores(gt, pred, thresholds=0.5, as_frame=False)
        sum_iou += s["mean_matched_iou"] * s["tp"]
        img_f1.append(s["f1"])
        ajis.append(tg.seg.aggregated_jaccard_index(gt, pred))
        if mpp is not None:
            d = tg.seg.detection_scores(tg.seg.centroids_from_labels(pred), tg.seg.centroids_from_labels(gt),
                                        radius_um=3.0, mpp=mpp)
            ctp, cfp, cfn = ctp + d["tp"], cfp + d["fp"], cfn + d["fn"]
    out = dict(n_images=len(img_f1), n_true=tp + fn, tp=tp, fp=fp, fn=fn, precision=tp / max(1, tp + fp),
               recall=tp / max(1, tp + fn), f1=2 * tp / max(1, 2 * tp + fp + fn),
               pq=sum_iou / max(1e-9, tp + fp / 2 + fn / 2), aji=float(np.mean(ajis)),
               mean_image_f1=float(np.mean(img_f1)))
    if mpp is not None:
        out.update(det_f1=2 * ctp / max(1, 2 * ctp + cfp + cfn), det_precision=ctp / max(1, ctp + cfp),
                   det_recall=ctp / max(1, ctp + cfn))
    return out


def _nuinsseg(data: Path, organs, limit=None):
    ids, X, Y = load_nuinsseg(data, organs, target_mpp=None)  # native (assumed 0.25 µm/px)
    return ids[:limit], X[:limit], Y[:limit]


def _watershed():
    import tissuegraph as tg

    return tg.seg.get_backend("watershed", modality="he")


def _segment_all(backend, X, mpp):
    import warnings

    out = []
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for x in X:
            out.append(np.asarray(backend.segment(x, mpp=mpp)[0]))
    return out, time.perf_counter() - t0


def _backend_options(args, record: bool = False) -> dict:
    """The StarDist backend options under study (``--tta``, ``--model-mpp``, ``--stain-norm``); only those
    given (``record``: for the result rows, with the thread count left out)."""
    kw = {} if record else {"n_threads": args.threads}
    if args.tta is not None:
        kw["tta"] = args.tta
    if args.model_mpp is not None:
        kw["mpp"] = args.model_mpp
    if args.stain_norm is not None:
        kw["stain_norm"] = None if args.stain_norm == "none" else args.stain_norm
    return kw


STAIN_SHIFT = dict(scale=0.5, shift=0.1, vector=0.1, seed=1234)


def stain_shifted(X):
    """The validation images re-stained as by another laboratory: ``hed_jitter`` (the training stain
    augmentation) at twice its density range and stain-vector noise (``STAIN_SHIFT``), one
    draw per image from a fixed seed.  A label-free stand-in for a new scanner / stain batch that uses no test
    image: the stain-normalisation options are compared on it as well as on the original colours."""
    from train_stardist_models import hed_jitter

    rng = np.random.default_rng(STAIN_SHIFT["seed"])
    kw = {k: v for k, v in STAIN_SHIFT.items() if k != "seed"}
    return [hed_jitter(x, rng, **kw) for x in X]


def _write_choice(best: dict, cmd: str) -> None:
    """Write a ``choose`` row (thresholds and inference options) into its model folder: ``thresholds.json``
    and ``tissuegraph.json`` (``thresholds_choice``, and ``stain_norm`` / ``tta`` / ``mpp`` when chosen)."""
    import tissuegraph as tg

    folder = tg.seg.load_stardist(best["model"]).folder
    th_path, info_path = folder / "thresholds.json", folder / "tissuegraph.json"
    th = json.loads(th_path.read_text())
    info = json.loads(info_path.read_text())
    prob = best["model_prob_thresh"] if best["prob_thresh"] == "model" else float(best["prob_thresh"])
    nms = best["model_nms_thresh"] if best["nms_thresh"] == "model" else float(best["nms_thresh"])
    opts = best.get("options", {})
    info["thresholds_choice"] = dict(
        how="the (prob, nms) threshold with the best detection F1 within 3 um (ties: F1 at IoU 0.5) on "
            "the NuInsSeg validation organs (benchmarks/bench_seg_accuracy_nuinsseg.py choose "
            "--write-choice, or apply-choice over several choose runs), with the inference options in "
            "'options' (stain_norm, tta, mpp: the model's "
            "defaults from then on); StarDist's own optimize_thresholds gave previous_prob / previous_nms",
        det_f1=best["det_f1"], f1=best["f1"], pq=best["pq"], previous_prob=th.get("prob"),
        previous_nms=th.get("nms"), options=opts, command=cmd)
    if "stain_norm" in opts:
        info["stain_norm"] = opts["stain_norm"]
    if "tta" in opts:
        info["tta"] = int(opts["tta"])
    if "mpp" in opts and float(opts["mpp"]) != float(info.get("mpp", opts["mpp"])):
        info.setdefault("mpp_trained_as", info.get("mpp"))
        info["mpp"] = float(opts["mpp"])
    th_path.write_text(json.dumps({**th, "prob": float(prob), "nms": float(nms)}))
    info_path.write_text(json.dumps(info, indent=2))
    print(f"wrote prob={prob} nms={nms} into {folder}", flush=True)


def cmd_apply_choice(args) -> int:
    """The best row over several ``choose`` result files (the same rule: detection F1 within 3 µm, ties F1 at
    IoU 0.5), written into its model folder; files scored on stain-shifted or re-scaled images are refused."""
    rows, cmds = [], []
    for f in args.models:
        d = json.loads(Path(f).read_text())
        if d.get("stain_shift") or "--image-mpp" in d["command"]:
            raise SystemExit(f"{f}: scored on stain-shifted or re-scaled images; not a choice file")
        rows += [r for r in d["rows"] if r["model"] != "watershed"]
        cmds.append(d["command"])
    best = max(rows, key=lambda r: (round(r["det_f1"], 4), r["f1"]))
    print("best:", json.dumps(best), flush=True)
    _write_choice(best, "; ".join(cmds) + "; then python benchmarks/bench_seg_accuracy_nuinsseg.py apply-choice "
                  + " ".join(Path(f).name for f in args.models))
    return 0


def cmd_choose(args, data: Path) -> int:
    import tissuegraph as tg

    organs = nuinsseg_split(nuinsseg_index(data), seed=args.seed)
    ids, X, Y = _nuinsseg(data, organs["val"], 5 if args.quick else None)
    if args.stain_shift:
        X = stain_shifted(X)
    print(f"validation organs {organs['val']}: {len(ids)} images" + " (stain-shifted)" * args.stain_shift,
          flush=True)
    rows = []
    for model in args.models:
        be = tg.seg.load_stardist(model, **_backend_options(args))
        used = set(be.info.get("split", {}).get("train", []))
        assert not used & set(ids), "validation images were trained on"
        t0 = time.perf_counter()
        raws = [be.predict(x, mpp=args.image_mpp or NUINSSEG_MPP) for x in X]
        t_pred = time.perf_counter() - t0
        for pt in ["model"] + list(args.prob_thresh):
            for nt in ["model"] + list(args.nms_thresh):
                kw = {}
                if pt != "model":
                    kw["prob_thresh"] = float(pt)
                if nt != "model":
                    kw["nms_thresh"] = float(nt)
                preds = [be.postprocess(r, **kw)[0] for r in raws]
                m = _instance_tally(zip(Y, preds), mpp=NUINSSEG_MPP)
                row = dict(model=str(model), options=_backend_options(args, record=True), prob_thresh=pt,
                           nms_thresh=nt, model_prob_thresh=be.prob_thresh,
                           model_nms_thresh=be.nms_thresh, predict_seconds=round(t_pred, 1), **m)
                rows.append(row)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}),
                      flush=True)
    if not args.no_watershed:
        ws, sec = _segment_all(_watershed(), X, NUINSSEG_MPP)
        rows.append(dict(model="watershed", prob_thresh=None, nms_thresh=None, seconds=round(sec, 1),
                         **_instance_tally(zip(Y, ws), mpp=NUINSSEG_MPP)))
        print(json.dumps(rows[-1]), flush=True)
    best = max((r for r in rows if r["model"] != "watershed"), key=lambda r: (round(r["det_f1"], 4), r["f1"]))
    print("best:", json.dumps(best), flush=True)
    cmd = "python benchmarks/bench_seg_accuracy_nuinsseg.py " + " ".join(sys.argv[1:])
    out = Path(args.out or RESULTS / "seg_accuracy_nuinsseg_choice.json")
    out.write_text(json.dumps(dict(command=cmd, val_organs=organs["val"], n_images=len(ids),
                                   stain_shift=STAIN_SHIFT if args.stain_shift else None, rows=rows,
                                   best=best, load_avg=os.getloadavg()), indent=1))
    if args.write_choice:
        _write_choice(best, cmd)
    return 0


def cmd_report(args, data: Path) -> int:
    import tissuegraph as tg
    from bench_seg_accuracy import _instance_records

    limit = 5 if args.quick else None
    organs = nuinsseg_split(nuinsseg_index(data), seed=args.seed)
    want = set(args.sets or SETS)
    sets, set_ids = {}, {}
    ids, X, Y = _nuinsseg(data, organs["test"], limit)
    if "nuinsseg_test" in want:
        sets["nuinsseg_test"] = ("instance", X, Y, NUINSSEG_MPP)
    test_ids = set(ids)
    if args.with_val:
        _, Xv, Yv = _nuinsseg(data, organs["val"], limit)
        sets["nuinsseg_val"] = ("instance", Xv, Yv, NUINSSEG_MPP)
    if want & {"crchisto_validation", "crchisto_all"}:
        crc_val = load_crchisto(data, "validation")
        crc_tr = load_crchisto(data, "train")
        if "crchisto_validation" in want:
            sets["crchisto_validation"] = ("detection", crc_val[1][:limit], crc_val[2][:limit], CRC_MPP)
        if "crchisto_all" in want:
            sets["crchisto_all"] = ("detection", (crc_tr[1] + crc_val[1])[:limit],
                                    (crc_tr[2] + crc_val[2])[:limit], CRC_MPP)
    if "dsb_brightfield" in want:
        bf = _instance_records("dsb_brightfield", bool(args.quick))
        sets["dsb_brightfield"] = ("instance", [r[1] for r in bf][:limit], [r[2] for r in bf][:limit], None)
        set_ids["dsb_brightfield"] = {r[0] for r in bf[:limit]}
    if "dsb_brightfield_test" in want:
        held = dsb_split(dsb_index(data), "brightfield", seed=args.seed)["test"][:limit]
        Xb, Yb = load_dsb(data, held, "brightfield")
        sets["dsb_brightfield_test"] = ("instance", Xb, Yb, None)
        set_ids["dsb_brightfield_test"] = set(held)
    if "synthetic" in want:
        syn = _instance_records("synthetic", bool(args.quick))
        sets["synthetic"] = ("instance", [r[1] for r in syn], [r[2] for r in syn], 0.5)

    backends = []
    for model in ([] if args.watershed_only else args.models):
        be = tg.seg.load_stardist(model, **_backend_options(args))
        assert not set(be.info.get("split", {}).get("train", [])) & test_ids, "test organs were trained on"
        extra = [f"tta {be.tta}"] * (be.tta != 1) + [f"stain {be.stain_norm}"] * bool(be.stain_norm) + \
            [f"model at {be.mpp} µm/px"] * (args.model_mpp is not None or "mpp_trained_as" in be.info)
        backends.append((be.name + (f" ({', '.join(extra)})" if extra else ""), be))
    if not args.no_watershed:
        backends.append(("watershed", _watershed()))
    rows = []
    for name, be in backends:
        trained_on = set(getattr(be, "info", {}).get("split", {}).get("train", []))
        for ds, (kind, XX, YY, mpp) in sets.items():
            if trained_on & set_ids.get(ds, set()):
                row = dict(backend=name, dataset=ds, skipped=f"trained on {len(trained_on & set_ids[ds])} of "
                                                            f"these images")
                rows.append(row)
                print(json.dumps(row), flush=True)
                continue
            preds, sec = _segment_all(be, XX, mpp)
            mpix = sum(x.shape[0] * x.shape[1] for x in XX) / 1e6
            if kind == "instance":
                m = _instance_tally(zip(YY, preds), mpp=mpp)
            else:
                m = _detection_tally(zip(preds, YY))
                m = dict(m, det_f1=m["f1"], det_precision=m["precision"], det_recall=m["recall"])
            row = dict(backend=name, dataset=ds, seconds=round(sec, 1), mpix_per_s=round(mpix / sec, 3), **m)
            rows.append(row)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}),
                  flush=True)
    cmd = "python benchmarks/bench_seg_accuracy_nuinsseg.py " + " ".join(sys.argv[1:])
    meta = dict(command=cmd, test_organs=organs["test"], val_organs=organs["val"], quick=bool(args.quick),
                load_avg_end=os.getloadavg(), cpu_count=os.cpu_count(), tissuegraph=tg.__version__,
                iou_threshold=0.5, detection_radius_um=3.0,
                note="seconds / mpix_per_s: 1 process on a shared, heavily loaded 2-core machine (see load_avg_end)")
    _write_report(Path(args.out or RESULTS / "seg_accuracy_nuinsseg.json"), meta, rows, [cmd])
    return 0


def cmd_merge(args) -> int:
    """Join the rows of several ``report`` result files (parts run in parallel, e.g. ``--sets``) into one,
    ordered by backend then set."""
    parts = [json.loads(Path(f).read_text()) for f in args.models]
    rows, seen = [], set()
    for r in (r for part in parts for r in part["rows"]):  # one row per (backend, set): the first part's
        if (r["backend"], r["dataset"]) not in seen:
            seen.add((r["backend"], r["dataset"]))
            rows.append(r)
    order = {name: i for i, name in enumerate(SETS)}
    names = list(dict.fromkeys(r["backend"] for r in rows if r["backend"] != "watershed")) + ["watershed"]
    rows.sort(key=lambda r: (names.index(r["backend"]), order.get(r["dataset"], 99)))
    meta = dict(parts[0]["meta"], command="; ".join(p["meta"]["command"] for p in parts),
                load_avg_end=[p["meta"]["load_avg_end"] for p in parts],
                merged_from=[str(f) for f in args.models])
    _write_report(Path(args.out or RESULTS / "seg_accuracy_nuinsseg.json"), meta, rows,
                  [p["meta"]["command"] for p in parts])
    return 0


def _write_report(out: Path, meta: dict, rows: list, cmds: list) -> None:
    out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    md = ["| backend | dataset | images | F1@0.5 | P | R | PQ | detection F1 (3 µm) | det. P | det. R | s |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(r, k):
        return f"{r[k]:.3f}" if k in r else "-"

    for r in rows:
        if "skipped" in r:
            md.append(f"| {r['backend']} | {r['dataset']} | not scored: {r['skipped']} |" + " |" * 8)
            continue
        inst = "pq" in r
        md.append(f"| {r['backend']} | {r['dataset']} | {r['n_images']} | {f(r, 'f1') if inst else '-'} | "
                  f"{f(r, 'precision') if inst else '-'} | {f(r, 'recall') if inst else '-'} | {f(r, 'pq')} | "
                  f"{f(r, 'det_f1')} | {f(r, 'det_precision')} | {f(r, 'det_recall')} | {r['seconds']} |")
    out.with_suffix(".md").write_text("\n".join(md) + "\n\n" + "\n".join(f"`{c}`" for c in cmds) + "\n")
    print("\n".join(md))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["choose", "report", "merge", "apply-choice"],
                   help="merge: join report result files (given in place of MODELS) into --out; apply-choice: "
                        "write the best row of choose result files (given in place of MODELS) into its model")
    p.add_argument("models", nargs="*", default=["tg_nuinsseg_he"], help="StarDist model names or folders")
    p.add_argument("--data", default=None)
    p.add_argument("--seed", type=int, default=0, help="the organ split's seed (as the training recipe)")
    p.add_argument("--prob-thresh", type=float, nargs="*", default=[0.3, 0.4, 0.5, 0.6])
    p.add_argument("--nms-thresh", type=float, nargs="*", default=[])
    p.add_argument("--write-choice", action="store_true")
    p.add_argument("--image-mpp", type=float, default=None,
                   help="choose: the µm/px the NuInsSeg images are given to the model as (default: the "
                        "assumed 0.25); e.g. 0.21 runs the model on them as if that were their pixel size")
    p.add_argument("--stain-shift", action="store_true",
                   help="choose: score on stain-shifted copies of the validation images (stain_shifted())")
    p.add_argument("--tta", type=int, default=None, help="test-time augmentation (1, 2, 4, 8; default: the model's)")
    p.add_argument("--model-mpp", type=float, default=None,
                   help="run the model as if it worked at this µm/px (default: the model's own)")
    p.add_argument("--stain-norm", default=None, choices=["none", "reinhard", "macenko"],
                   help="stain normalisation to the model's training stain (default: the model's setting)")
    p.add_argument("--with-val", action="store_true", help="report: also the validation organs")
    p.add_argument("--no-watershed", action="store_true")
    p.add_argument("--quick", action="store_true", help="5 images per set")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--sets", nargs="*", choices=SETS, default=None, help="report: only these sets (default all)")
    p.add_argument("--watershed-only", action="store_true", help="report: the watershed alone")
    args = p.parse_args(argv)
    if args.write_choice and args.image_mpp is not None:
        p.error("--write-choice is taken at the images' assumed µm/px, not --image-mpp")
    if args.stain_shift and args.write_choice:
        p.error("--write-choice takes the choice on the validation images' own colours, not --stain-shift")
    if args.what == "merge":
        return cmd_merge(args)
    if args.what == "apply-choice":
        return cmd_apply_choice(args)
    data = Path(args.data) if args.data else shared_data_dir()
    if not (data / "nuinsseg").is_dir():
        print(f"NuInsSeg not found under {data}; nothing to do")
        return 0
    return cmd_choose(args, data) if args.what == "choose" else cmd_report(args, data)


if __name__ == "__main__":
    raise SystemExit(main())
