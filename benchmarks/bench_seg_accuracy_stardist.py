"""Accuracy of the StarDist backends on held-out real data, beside the classical watershed (same run).

    python benchmarks/bench_seg_accuracy_stardist.py            # all sets, writes the JSON below
    python benchmarks/bench_seg_accuracy_stardist.py --quick    # 5 images per set

Sets (never used for training or validation of the shipped models; see
``benchmarks/train_stardist_models.py`` for the split):

- ``dsb_fluo_reference``: the first 25 fluorescence images of ``dsb2018/train/index.csv`` (the issue's
  reference set); ``dsb_fluo_test``: those + 50 more held-out fluorescence images.  Instance F1 at
  IoU 0.5 (TP/FP/FN summed over the images), precision, recall, panoptic quality, mean per-image F1.
- ``dsb_brightfield_test``: the first 20 brightfield images (same metrics).
- ``crchisto_validation``: H&E, 0.55 µm/px, nucleus centres only: detection F1 of the predicted
  centroids within 3 µm (one-to-one matching).  A model trained on CRCHisto's *train* folder
  (``train_stardist_models.py crchisto``, research use only, never shipped) is passed with
  ``--he-model tg_dsb2018_he /tmp/tg_models/tg_crchisto_points``.

Writes ``benchmarks/results/seg_accuracy_stardist.json`` (and ``.md``).  Metrics are
``tissuegraph.seg.matching_scores`` / ``detection_scores`` (StarDist's matching definitions).
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

from train_stardist_models import (  # noqa: E402
    CRC_MPP,
    dsb_index,
    dsb_split,
    load_crchisto,
    load_dsb,
    shared_data_dir,
)


def _segment_counts(backend, X, Y, *, mpp=None):
    import tissuegraph as tg

    tot = dict(tp=0, fp=0, fn=0, sum_iou=0.0)
    per_image = []
    t0 = time.perf_counter()
    for x, y in zip(X, Y):
        labels, _ = backend.segment(x, mpp=mpp)
        s = tg.seg.matching_scores(y, labels, thresholds=0.5, as_frame=False)
        for k in ("tp", "fp", "fn"):
            tot[k] += int(s[k])
        tot["sum_iou"] += s["mean_matched_iou"] * s["tp"]
        per_image.append(s["f1"])
    sec = time.perf_counter() - t0
    tp, fp, fn = tot["tp"], tot["fp"], tot["fn"]
    return dict(n_images=len(X), tp=tp, fp=fp, fn=fn,
                precision=tp / max(1, tp + fp), recall=tp / max(1, tp + fn),
                f1=2 * tp / max(1, 2 * tp + fp + fn), panoptic_quality=tot["sum_iou"] / max(1e-9, tp + fp / 2 + fn / 2),
                mean_image_f1=float(np.mean(per_image)), seconds=round(sec, 2))


def _detection_tally(labels_and_centres) -> dict:
    """Detection F1 of label centroids within 3 µm of CRCHisto centres, counts pooled over the
    ``(labels, centres)`` pairs (an iterable: labels may be computed as it is consumed)."""
    import tissuegraph as tg

    tp = fp = fn = 0
    per_image = []
    for labels, pts in labels_and_centres:
        xy = tg.seg.centroids_from_labels(labels)
        s = tg.seg.detection_scores(xy, pts, radius_um=3.0, mpp=CRC_MPP)
        tp, fp, fn = tp + s["tp"], fp + s["fp"], fn + s["fn"]
        per_image.append(s["f1"])
    return dict(n_images=len(per_image), tp=tp, fp=fp, fn=fn, precision=tp / max(1, tp + fp),
                recall=tp / max(1, tp + fn), f1=2 * tp / max(1, 2 * tp + fp + fn),
                mean_image_f1=float(np.mean(per_image)))


def _detection_counts(backend, X, P, *, mpp):
    t0 = time.perf_counter()
    counts = _detection_tally((backend.segment(x, mpp=mpp)[0], pts) for x, pts in zip(X, P))
    return dict(counts, seconds=round(time.perf_counter() - t0, 2))


def _watershed(modality):
    import tissuegraph as tg

    try:
        return tg.seg.get_backend("watershed", modality=modality)
    except Exception as exc:  # noqa: BLE001 - not written yet, or failing: report and go on
        print(f"(watershed backend unavailable for {modality}: {type(exc).__name__}: {exc})", flush=True)
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None)
    p.add_argument("--fluo-model", default="tg_dsb2018_fluo")
    p.add_argument("--fluo-tta", type=int, default=None, choices=[1, 2, 4, 8],
                   help="test-time augmentation for the fluorescence model (default: the model's own)")
    p.add_argument("--he-model", nargs="*", default=["tg_dsb2018_he"],
                   help="brightfield / H&E model(s): names or folders (none to skip)")
    p.add_argument("--he-rgb-to", default=None, help="rgb_to= for the brightfield model (e.g. hematoxylin)")
    p.add_argument("--he-mpp", type=float, nargs="*", default=[],
                   help="also evaluate H&E models that have no pixel size as if trained at these µm/px "
                        "(CRCHisto is resampled)")
    p.add_argument("--no-watershed", action="store_true")
    p.add_argument("--quick", action="store_true", help="5 images per set")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "seg_accuracy_stardist.json"))
    args = p.parse_args(argv)

    import tissuegraph as tg

    data = Path(args.data) if args.data else shared_data_dir()
    if not (data / "dsb2018").is_dir():
        print(f"shared data not found at {data}; nothing to do")
        return 0
    limit = 5 if args.quick else None
    index = dsb_index(data)
    rows = []

    def add(backend_name, dataset, metrics, **extra):
        row = dict(backend=backend_name, dataset=dataset, **extra, **metrics)
        rows.append(row)
        print(json.dumps(row), flush=True)

    # fluorescence
    split = dsb_split(index, "fluorescence")
    fluo = tg.seg.load_stardist(args.fluo_model, n_threads=args.threads, tta=args.fluo_tta)
    used = set(fluo.info.get("split", {}).get("train", [])) | set(fluo.info.get("split", {}).get("val", []))
    assert not used & set(split["test"]), "test images were used for training"
    ref = split["reference"][:limit]
    test = split["test"][:limit]
    Xr, Yr = load_dsb(data, ref, "fluorescence")
    Xt, Yt = load_dsb(data, test, "fluorescence")
    backends = [(fluo.name if fluo.tta == 1 else f"{fluo.name} (tta {fluo.tta})", fluo)]
    ws = None if args.no_watershed else _watershed("fluorescence")
    if ws is not None:
        backends.append(("watershed", ws))
    for name, be in backends:
        add(name, "dsb_fluo_reference", _segment_counts(be, Xr, Yr))
        add(name, "dsb_fluo_test", _segment_counts(be, Xt, Yt))

    # brightfield / H&E
    split_bf = dsb_split(index, "brightfield")
    Xb, Yb = load_dsb(data, split_bf["test"][:limit], "brightfield")
    names, Xc, Pc = (v[:limit] for v in load_crchisto(data, "validation"))
    backends = []
    for he_model in args.he_model:
        try:
            kw = {"n_threads": args.threads}
            if args.he_rgb_to:
                kw["rgb_to"] = args.he_rgb_to
            he = tg.seg.load_stardist(he_model, **kw)
        except (tg.WeightsUnavailableError, tg.InputError) as exc:
            print(f"(no H&E model {he_model}: {exc})".splitlines()[0], flush=True)
            continue
        seen = set(he.info.get("split", {}).get("train", [])) | set(he.info.get("split", {}).get("val", []))
        assert not seen & (set(split_bf["test"]) | set(names)), f"{he.name} was trained on test images"
        # a model may carry its own test-time augmentation (tissuegraph.json 'tta'): show it
        backends.append((he.name if he.tta == 1 else f"{he.name} (tta {he.tta})", he, None))
        for m in args.he_mpp if he.mpp is None else ():  # only models without a pixel size
            backends.append((he.name, tg.seg.load_stardist(he_model, mpp=m, **kw), m))
    ws = None if args.no_watershed else _watershed("he")
    if ws is not None:
        backends.append(("watershed", ws, None))
    for name, be, model_mpp in backends:
        extra = {} if model_mpp is None else {"model_mpp": model_mpp}
        if model_mpp is None:  # DSB has no pixel size: a model mpp changes nothing there
            add(name, "dsb_brightfield_test", _segment_counts(be, Xb, Yb), **extra)
        add(name, "crchisto_validation", _detection_counts(be, Xc, Pc, mpp=CRC_MPP), **extra)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = " ".join(sys.argv[1:] if argv is None else argv)
    meta = dict(command=f"python benchmarks/bench_seg_accuracy_stardist.py {cmd}".strip(),
                quick=bool(args.quick), cpu_count=os.cpu_count(), tissuegraph=tg.__version__,
                iou_threshold=0.5, detection_radius_um=3.0, crchisto_mpp=CRC_MPP,
                loadavg_end=[round(v, 2) for v in os.getloadavg()])
    out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    md = ["| backend | dataset | model mpp | images | F1 | precision | recall | PQ | mean image F1 | s |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pq = f"{r['panoptic_quality']:.3f}" if "panoptic_quality" in r else "-"
        md.append(f"| {r['backend']} | {r['dataset']} | {r.get('model_mpp', '-')} | {r['n_images']} | "
                  f"{r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {pq} | "
                  f"{r['mean_image_f1']:.3f} | {r['seconds']} |")
    out.with_suffix(".md").write_text("\n".join(md) + "\n\n`" + meta["command"] + "`\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
