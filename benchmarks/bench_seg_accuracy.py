"""Accuracy and throughput of the nuclei segmentation backends on real data (and the synthetic slide).

Rows: every backend given (default: tissuegraph's classical ``watershed`` and the plain 20-line
``otsu_baseline`` Otsu + distance-transform watershed, to show the improvement in the same run).
Other backends plug in through :func:`evaluate_backend` (``from bench_seg_accuracy import
evaluate_backend``), e.g. the StarDist backend.

Data sets (``../shared/data``, or ``$TISSUEGRAPH_SHARED_DATA``; a missing one is skipped):

* ``dsb_fluorescence``: DSB 2018 fluorescence images held out from fitting the watershed defaults:
  in ``index.csv`` order, every fluorescence image except positions 25, 30, ..., 555 (the fit set,
  see ``benchmarks/params/watershed.json``): 450 images, the first 25 included. F1 at IoU 0.5 with
  counts pooled over images (like ``stardist.matching.matching_dataset``), AJI and PQ as means over
  images; ``mpp=None`` (DSB has no pixel size).
* ``dsb_fluorescence_first25``: the first 25 fluorescence images of ``index.csv`` (a subset of the
  held-out set; the reference set on which the plain Otsu baseline scores about 0.80).
* ``dsb_brightfield``: all 107 DSB brightfield images (none used for fitting); same metrics.
* ``crchisto_validation``: CRCHistoPhenotypes validation (10 H&E images, 0.55 µm/px; the H&E defaults
  were fitted on ``train``): detection F1 of object centroids within 3 µm (Hungarian matching).
* ``synthetic``: ``tg.datasets.synthetic_tissue`` H&E tiles (768 x 768 px, 0.5 µm/px, full tissue) with
  exact truth, seeds 100, 101, ... (``--synthetic-seed``; the watershed H&E defaults were checked on
  seeds 0-4 only). Besides F1@0.5 / AJI / PQ also ``centroid_f1``: detection F1 of object centroids
  within 3 µm of the true centroids (the demo's criterion).

Throughput: megapixels per second of ``backend.segment`` on the held-out images, 1 process, and on 2
cores (2 worker processes on the same images), measured in the same run.

Usage::

    python benchmarks/bench_seg_accuracy.py            # full (about 5 minutes on 2 cores)
    python benchmarks/bench_seg_accuracy.py --quick    # 40 + 20 DSB images, CRCHisto, 2 synthetic tiles
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tissuegraph.datasets import (
    dsb2018_index,
    load_crchisto,
    load_dsb2018,
    shared_data_dir,
)
from tissuegraph.seg import (
    WatershedBackend,
    aggregated_jaccard_index,
    centroids_from_labels,
    detection_scores,
    label_overlap,
    panoptic_quality,
)
from tissuegraph.seg._metrics import _counts

RESULTS = REPO / "benchmarks" / "results"
DATASETS = ("dsb_fluorescence", "dsb_fluorescence_first25", "dsb_brightfield", "crchisto_validation",
            "synthetic")
SYNTHETIC_SEED0 = 100  # synthetic report seeds start here (seeds 0-4 are the fit set)
FIT_START, FIT_STEP = 25, 5  # fluorescence fit set: positions 25, 30, 35, ... (see params/watershed.json)


# ----------------------------------------------------------------------------------------------------
# the 20-line baseline
# ----------------------------------------------------------------------------------------------------
class OtsuBaseline:
    """Plain Otsu + distance-transform watershed (the reference a classical backend must beat)."""

    name = "otsu_baseline"
    mpp = None
    max_object_px = 64

    def segment(self, image, *, mpp=None):
        from scipy import ndimage as ndi
        from skimage.feature import peak_local_max
        from skimage.filters import threshold_otsu
        from skimage.segmentation import watershed

        g = image.astype(float).mean(axis=2) if image.ndim == 3 else image.astype(float)
        if np.median(g) > 127:  # light background (brightfield): nuclei are dark
            g = g.max() - g
        if g.max() == g.min():
            return np.zeros(g.shape, np.int32), None
        mask = ndi.binary_fill_holes(g > threshold_otsu(g))
        dist = ndi.distance_transform_edt(mask)
        peaks = peak_local_max(dist, min_distance=5, labels=ndi.label(mask)[0], exclude_border=False)
        markers = np.zeros(g.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        lab = watershed(-dist, markers, mask=mask)
        small = np.bincount(lab.ravel()) < 10
        small[0] = False
        lab[small[lab]] = 0
        return lab.astype(np.int32), None


# ----------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------
def dsb_heldout_ids(root=None) -> list[str]:
    """DSB fluorescence ids not used for fitting, in index.csv order."""
    idx = dsb2018_index(root)
    fl = list(idx.loc[idx["modality"] == "fluorescence", "id"])
    return [i for k, i in enumerate(fl) if not (k >= FIT_START and (k - FIT_START) % FIT_STEP == 0)]


def _quick_pick(ids: list[str], n: int) -> list[str]:
    if n >= len(ids):
        return ids
    return [ids[int(k)] for k in np.linspace(0, len(ids) - 1, n).round()]


def _instance_records(name: str, quick: bool):
    if name == "dsb_fluorescence":
        ids = dsb_heldout_ids()
        ids = _quick_pick(ids, 40) if quick else ids
        return [(r.id, r.image, r.labels, None) for r in load_dsb2018(modality="fluorescence", ids=ids)]
    if name == "dsb_fluorescence_first25":  # the reference set of the brief (none of them used for fitting)
        ids = dsb_heldout_ids()[:25]
        return [(r.id, r.image, r.labels, None) for r in load_dsb2018(modality="fluorescence", ids=ids)]
    if name == "dsb_brightfield":
        ds = load_dsb2018(modality="brightfield")
        ids = _quick_pick(ds.keys, 20) if quick else ds.keys
        return [(r.id, r.image, r.labels, None) for r in load_dsb2018(modality="brightfield", ids=ids)]
    if name == "synthetic":
        import tissuegraph.datasets as tgd

        if not hasattr(tgd, "synthetic_tissue"):
            raise LookupError("tissuegraph.datasets.synthetic_tissue is not available yet")
        out = []
        for seed in range(SYNTHETIC_SEED0, SYNTHETIC_SEED0 + (2 if quick else 4)):
            t = tgd.synthetic_tissue((768, 768), mpp=0.5, seed=seed, tissue_fraction=1.0)
            out.append((f"synthetic_seed{seed}", t.image, np.asarray(t.labels, np.int64), t.mpp))
        return out
    raise KeyError(name)


# ----------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------
def _segment(backend, image, mpp):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pixel-default warning on mpp=None data
        t0 = time.perf_counter()
        lab, _ = backend.segment(image, mpp=mpp)
        return np.asarray(lab), time.perf_counter() - t0


def _instance_scores(backend, records) -> dict:
    tp = fp = fn = 0
    ctp = cfp = cfn = 0  # centroid detection within 3 µm (records with a known mpp only)
    ajis, pqs, seconds, mpix = [], [], 0.0, 0.0
    for _, image, gt, mpp in records:
        pred, dt = _segment(backend, image, mpp)
        seconds += dt
        mpix += image.shape[0] * image.shape[1] / 1e6
        c = _counts(label_overlap(gt, pred), 0.5)
        tp, fp, fn = tp + c["tp"], fp + c["fp"], fn + c["fn"]
        ajis.append(aggregated_jaccard_index(gt, pred))
        pqs.append(panoptic_quality(gt, pred)["pq"])
        if mpp is not None:
            d = detection_scores(centroids_from_labels(pred), centroids_from_labels(gt), radius_um=3.0, mpp=mpp)
            ctp, cfp, cfn = ctp + d["tp"], cfp + d["fp"], cfn + d["fn"]
    out = dict(n_images=len(records), n_true=tp + fn, tp=tp, fp=fp, fn=fn,
               precision=tp / max(tp + fp, 1), recall=tp / max(tp + fn, 1),
               f1=2 * tp / max(2 * tp + fp + fn, 1), aji=float(np.mean(ajis)), pq=float(np.mean(pqs)),
               seconds=seconds, mpix_per_s=mpix / seconds if seconds else float("nan"))
    if ctp + cfp + cfn:
        out["centroid_f1"] = 2 * ctp / max(2 * ctp + cfp + cfn, 1)
    return out


def _detection(backend, quick: bool) -> dict:
    recs = load_crchisto(split="validation")
    tp = fp = fn = 0
    seconds = mpix = 0.0
    for r in recs:
        pred, dt = _segment(backend, r.image, r.mpp)
        seconds += dt
        mpix += r.image.shape[0] * r.image.shape[1] / 1e6
        d = detection_scores(centroids_from_labels(pred), r.centres[["x", "y"]].to_numpy(), radius_um=3.0,
                             mpp=r.mpp)
        tp, fp, fn = tp + d["tp"], fp + d["fp"], fn + d["fn"]
    return dict(n_images=len(recs), n_true=tp + fn, tp=tp, fp=fp, fn=fn, precision=tp / max(tp + fp, 1),
                recall=tp / max(tp + fn, 1), f1=2 * tp / max(2 * tp + fp + fn, 1), seconds=seconds,
                mpix_per_s=mpix / seconds if seconds else float("nan"))


def evaluate_backend(backend, *, datasets=DATASETS, quick: bool = False, name: str | None = None,
                     records: dict | None = None) -> dict:
    """Accuracy of one backend on the benchmark data sets.

    Parameters
    ----------
    backend
        Any object with the backend contract (``segment(image, *, mpp) -> (labels, scores)``).
    datasets
        Names among ``dsb_fluorescence``, ``dsb_brightfield``, ``crchisto_validation``, ``synthetic``.
    quick
        Small subsets.
    name
        Row name (default ``backend.name``).
    records
        Pre-loaded instance records per data set (to share loading between backends).

    Returns
    -------
    ``{'backend': name, <dataset>: {metrics} or {'skipped': reason}}``.
    """
    out = {"backend": name or getattr(backend, "name", type(backend).__name__)}
    for ds in datasets:
        try:
            if ds == "crchisto_validation":
                out[ds] = _detection(backend, quick)
            else:
                recs = records[ds] if records and ds in records else _instance_records(ds, quick)
                out[ds] = _instance_scores(backend, recs)
        except Exception as exc:  # a missing data set or backend problem is reported, not fatal
            out[ds] = {"skipped": f"{type(exc).__name__}: {exc}"}
        print(f"  {out['backend']:>14s} {ds:>20s}: " + (
            f"F1 {out[ds]['f1']:.3f}" if "f1" in out[ds] else out[ds]["skipped"]), flush=True)
    return out


def _throughput_worker(args):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    backend, images = args
    t0 = time.perf_counter()
    mp = 0.0
    for im in images:
        _segment(backend, im, None)
        mp += im.shape[0] * im.shape[1] / 1e6
    return mp, time.perf_counter() - t0


def throughput(backend, images: list, *, n_workers: int = 2) -> dict:
    """Megapixels/s of ``backend.segment`` in 1 process and in ``n_workers`` processes (same images)."""
    mp1, s1 = _throughput_worker((backend, images))
    halves = [images[i::n_workers] for i in range(n_workers)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(n_workers) as ex:
        res = list(ex.map(_throughput_worker, [(backend, h) for h in halves]))
    wall = time.perf_counter() - t0
    mpn = sum(r[0] for r in res)
    return {"mpix_per_s_1core": mp1 / s1, f"mpix_per_s_{n_workers}cores": mpn / wall,
            "n_images": len(images), "megapixels": mp1}


def throughput_repeated(backends: list, images: list, *, repeats: int) -> dict:
    """:func:`throughput` of every backend, ``repeats`` times, backends interleaved within each repeat
    (a load spike from other jobs hits all of them alike); the median of each rate is reported, with
    its min, max and all values under ``'spread'``."""
    from _runinfo import spread

    runs: dict[str, list[dict]] = {b.name: [] for b in backends}
    for _ in range(repeats):
        for b in backends:
            runs[b.name].append(throughput(b, images))
    out = {}
    for name, rs in runs.items():
        keys = [k for k in rs[0] if k.startswith("mpix_per_s")]
        sp = {k: spread([r[k] for r in rs]) for k in keys}
        out[name] = {**{k: sp[k]["median"] for k in keys}, "n_images": rs[0]["n_images"],
                     "megapixels": rs[0]["megapixels"], "repeats": repeats, "reported": "median",
                     "spread": sp}
    return out


# ----------------------------------------------------------------------------------------------------
def _fmt(d: dict, key: str) -> str:
    return f"{d[key]:.3f}" if isinstance(d, dict) and key in d else "–"


def markdown(rows: list[dict], thr: dict) -> str:
    lines = [
        "| backend | DSB fluo held-out F1@0.5 | AJI | PQ | DSB fluo first 25 F1@0.5 | AJI | PQ "
        "| DSB brightfield F1@0.5 | AJI | PQ | CRCHisto val det. F1@3µm "
        "| synthetic F1@0.5 | AJI | PQ | MP/s 1 core | MP/s 2 cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = thr.get(r["backend"], {})
        lines.append(
            f"| {r['backend']} | {_fmt(r.get('dsb_fluorescence'), 'f1')} | {_fmt(r.get('dsb_fluorescence'), 'aji')} "
            f"| {_fmt(r.get('dsb_fluorescence'), 'pq')} | {_fmt(r.get('dsb_fluorescence_first25'), 'f1')} "
            f"| {_fmt(r.get('dsb_fluorescence_first25'), 'aji')} | {_fmt(r.get('dsb_fluorescence_first25'), 'pq')} "
            f"| {_fmt(r.get('dsb_brightfield'), 'f1')} "
            f"| {_fmt(r.get('dsb_brightfield'), 'aji')} | {_fmt(r.get('dsb_brightfield'), 'pq')} "
            f"| {_fmt(r.get('crchisto_validation'), 'f1')} | {_fmt(r.get('synthetic'), 'f1')} "
            f"| {_fmt(r.get('synthetic'), 'aji')} | {_fmt(r.get('synthetic'), 'pq')} "
            f"| {t.get('mpix_per_s_1core', float('nan')):.2f} | {t.get('mpix_per_s_2cores', float('nan')):.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    global SYNTHETIC_SEED0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small subsets")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--synthetic-seed", type=int, default=SYNTHETIC_SEED0,
                    help="first seed of the synthetic report tiles (default 100; 0-4 are the fit set)")
    ap.add_argument("--out", default=str(RESULTS / "seg_accuracy"), help="output path without extension")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the throughput measurement (median)")
    ap.add_argument("--throughput-only", action="store_true",
                    help="only the throughput (accuracy is deterministic); writes <out>_throughput.json/.md")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _runinfo import command, finish, fmt, machine

    info = machine()
    SYNTHETIC_SEED0 = args.synthetic_seed
    if shared_data_dir() is None:
        print("No shared data folder (../shared/data or $TISSUEGRAPH_SHARED_DATA): only the synthetic rows.")
    datasets = tuple(d for d in args.datasets.split(",") if d)
    backends = [WatershedBackend(), OtsuBaseline()]

    if args.throughput_only:
        recs = _instance_records("dsb_fluorescence", args.quick)
        thr_images = [rec[1] for rec in recs][: 20 if args.quick else 60]
        thr = throughput_repeated(backends, thr_images, repeats=args.repeats)
        res = {"command": command("bench_seg_accuracy.py", argv), "throughput": thr,
               "throughput_images": f"first {len(thr_images)} held-out DSB fluorescence images",
               "machine": finish(info)}
        out = Path(str(args.out) + "_throughput")
        out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=float))
        lines = ["# Nuclei segmentation throughput (megapixels/s)", "", f"`{res['command']}`", "",
                 f"{res['throughput_images']}; median of {args.repeats} repeats (min–max), backends interleaved; "
                 f"{res['machine']['note']}.", "",
                 "| backend | MP/s 1 core | MP/s 2 processes |", "|---|---|---|"]
        for name, t in thr.items():
            lines.append(f"| {name} | {fmt(t['spread']['mpix_per_s_1core'])} | "
                         f"{fmt(t['spread']['mpix_per_s_2cores'])} |")
        out.with_suffix(".md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0

    records = {}
    for ds in datasets:
        if ds != "crchisto_validation":
            try:
                records[ds] = _instance_records(ds, args.quick)
            except Exception as exc:
                print(f"  {ds}: skipped ({type(exc).__name__}: {exc})")
    rows = [evaluate_backend(b, datasets=datasets, quick=args.quick, records=records) for b in backends]

    thr_images = [rec[1] for rec in records.get("dsb_fluorescence", [])][: 20 if args.quick else 60]
    thr = throughput_repeated(backends, thr_images, repeats=args.repeats) if thr_images else {}

    result = {
        "command": command("bench_seg_accuracy.py", argv),  # the real arguments, whatever they were
        "quick": args.quick,
        "split": {"dsb_fluorescence": "index.csv fluorescence order; held out = all but positions 25, 30, ..., 555",
                  "dsb_brightfield": "all brightfield images (none used for fitting)",
                  "crchisto": "fit on train, report validation",
                  "synthetic": f"synthetic_tissue 768x768 at 0.5 µm/px, seeds {SYNTHETIC_SEED0}+ (fit seeds 0-4)"},
        "metrics": {"f1": "IoU >= 0.5, counts pooled over images", "aji": "mean over images (Kumar 2017)",
                    "pq": "mean over images (Kirillov 2019)", "crchisto": "centroid detection within 3 µm"},
        "rows": rows,
        "throughput": thr,
        "throughput_images": f"first {len(thr_images)} held-out DSB fluorescence images",
        "throughput_reported": f"median of {args.repeats} repeats, backends interleaved",
        "machine": finish(info),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=float))
    md = markdown(rows, thr)
    ratio = ""
    cf = [f"{r['backend']} {r['synthetic']['centroid_f1']:.3f}" for r in rows
          if isinstance(r.get("synthetic"), dict) and "centroid_f1" in r["synthetic"]]
    if cf:
        ratio += f"\n\nSynthetic centroid detection F1 within 3 µm: {', '.join(cf)}"
    if "watershed" in thr and "otsu_baseline" in thr:
        ratio += (f"\n\nSpeed ratio watershed / otsu_baseline (1 core): "
                 f"{thr['watershed']['mpix_per_s_1core'] / thr['otsu_baseline']['mpix_per_s_1core']:.2f}")
    out.with_suffix(".md").write_text(f"# Nuclei segmentation accuracy\n\n`{result['command']}`\n\n{md}{ratio}\n\n"
                                      f"Throughput: {result['throughput_reported']}; {result['machine']['note']}.\n")
    print(md + ratio)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
