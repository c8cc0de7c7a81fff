"""Tiled runner ``tg.seg.nuclei`` vs StarDist's own ``predict_instances_big`` on one large image.

Same model, same image, same normalisation, measured in one run:

    python benchmarks/bench_stardist_big.py                 # 4096x4096 mosaic, tiles 1024, n_jobs 1 and 2
    python benchmarks/bench_stardist_big.py --size 2048     # smaller
    python benchmarks/bench_stardist_big.py --n-jobs 2 --repeats 3   # median of 3, methods interleaved

The image is a mosaic of real DSB 2018 fluorescence images that were held out from training (each
percentile-normalised, centre-cropped / zero-padded to 512x512), with its ground-truth mosaic.  Both
methods get the same intensities: the runner calibrates its normalisation on the slide, and StarDist
gets the image normalised with the runner's calibration.  StarDist's first block size makes its
network inputs (block + 2 * context) match the runner's tiles; a larger block (2048) is timed too.

Reports wall-clock seconds of each (median of ``--repeats`` runs, every method once per repeat, in
turn, so a load spike hits all alike; min, max and every value in the JSON) and their ratio (runner /
StarDist, of the medians; the ratio of each repeat is recorded too), the number of nuclei, the
agreement of the two label images (F1 at IoU 0.5 between them) and each one's F1 against the ground
truth.  Writes ``benchmarks/results/stardist_big.json`` (and ``.md``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from train_stardist_models import dsb_index, dsb_split, load_dsb, shared_data_dir  # noqa: E402


def make_mosaic(data: Path, size: int, cell: int = 512):
    """(size, size) float32 mosaic of held-out fluorescence images and its instance labels."""
    split = dsb_split(dsb_index(data), "fluorescence")
    ids = split["test"]
    n_cells = (size // cell) ** 2
    ids = [ids[i % len(ids)] for i in range(n_cells)]
    X, Y = load_dsb(data, sorted(set(ids)), "fluorescence")
    by_id = dict(zip(sorted(set(ids)), zip(X, Y)))
    img = np.zeros((size, size), np.float32)
    lab = np.zeros((size, size), np.int32)
    offset = 0
    for k, i in enumerate(ids):
        x, y = by_id[i]
        x = x.astype(np.float32)
        lo, hi = np.percentile(x, (1, 99.8))
        x = (x - lo) / (hi - lo + 1e-20)
        h, w = min(cell, x.shape[0]), min(cell, x.shape[1])
        r0, c0 = (x.shape[0] - h) // 2, (x.shape[1] - w) // 2
        xs, ys = x[r0:r0 + h, c0:c0 + w], y[r0:r0 + h, c0:c0 + w].astype(np.int64)
        # objects cut by the crop stay (they are in the image); relabel 1..n per cell
        u, inv = np.unique(ys, return_inverse=True)
        ys = inv.reshape(ys.shape)
        if u[0] != 0:
            ys = ys + 1
        R, C = divmod(k, size // cell)
        img[R * cell:R * cell + h, C * cell:C * cell + w] = xs
        lab[R * cell:R * cell + h, C * cell:C * cell + w] = np.where(ys > 0, ys + offset, 0)
        offset += int(ys.max())
    return img, lab


def table_to_labels(df, shape):
    from tissuegraph._contours import rasterize_contours, tile_offset

    if len(df) == 0:
        return np.zeros(shape, np.int32)
    return rasterize_contours(list(df["contour"]), shape, ids=df["nucleus_id"].to_numpy(),
                              offset=tile_offset((0.0, 0.0), 1.0), scale=1.0, dtype=np.int32)


def _round_up(v, m):
    return int(-(-int(v) // m) * m)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--model", default="tg_dsb2018_fluo")
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--n-jobs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--stardist-blocks", type=int, nargs="*", default=[2048],
                   help="extra StarDist block sizes (the first one always matches the runner's tiles)")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow threads")
    p.add_argument("--data", default=None)
    p.add_argument("--repeats", type=int, default=1, help="timed runs of every method (median reported)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "stardist_big.json"))
    args = p.parse_args(argv)
    from _runinfo import command, finish, fmt, machine, spread

    info = machine()

    import tissuegraph as tg

    data = Path(args.data) if args.data else shared_data_dir()
    if not (data / "dsb2018").is_dir():
        print(f"shared data not found at {data}; nothing to do")
        return 0
    if not hasattr(tg.seg, "nuclei"):
        print("tg.seg.nuclei (the tiled runner) is not available yet")
        return 1
    img, truth = make_mosaic(data, args.size)
    backend = tg.seg.load_stardist(args.model, n_threads=args.threads)
    backend.segment(img[:256, :256])  # build the network and warm TensorFlow up (not timed)
    div = max(backend._div_by())

    results = dict(size=args.size, model=backend.name, tile=args.tile, tf_threads=args.threads,
                   cpu_count=os.cpu_count(), n_true=int(truth.max()))
    kw = {}
    if "mask" in inspect.signature(tg.seg.nuclei).parameters:
        kw["mask"] = "all"  # a fluorescence mosaic: segment everywhere
    context = _round_up(backend.context_px, div)
    min_overlap = _round_up(backend.max_object_px, div)
    blocks = [max(_round_up(args.tile - 2 * context, div), 2 * min_overlap + div)]  # inputs = runner tiles
    blocks += [b for b in args.stardist_blocks if b not in blocks]
    x = None
    runs, sd = {}, {}
    t_runner = {n_jobs: [] for n_jobs in args.n_jobs}
    t_sd = {block: [] for block in blocks}
    for rep in range(args.repeats):
        for n_jobs in args.n_jobs:
            t0 = time.perf_counter()
            df = tg.seg.nuclei(img, method=backend, tile_size=args.tile, n_jobs=n_jobs, progress=False, **kw)
            t_runner[n_jobs].append(time.perf_counter() - t0)
            runs[n_jobs] = df
            print(f"[{rep + 1}/{args.repeats}] runner n_jobs={n_jobs}: {t_runner[n_jobs][-1]:.1f} s, {len(df)} nuclei",
                  flush=True)
        if x is None:
            df = runs[args.n_jobs[0]]
            cal = df.attrs.get("calibration") or {}
            overlap = df.attrs.get("overlap")
            if cal:
                lo, hi = np.asarray(cal["norm_low"], np.float32), np.asarray(cal["norm_high"], np.float32)
            else:
                lo, hi = np.percentile(img, backend.percentiles)
            x = ((img - lo) / (hi - lo + 1e-20)).astype(np.float32)
        for block in blocks:
            t0 = time.perf_counter()
            sd_labels, details = backend.model.predict_instances_big(
                x, axes="YX", block_size=block, min_overlap=min_overlap, context=context,
                prob_thresh=backend.prob_thresh, nms_thresh=backend.nms_thresh, show_progress=False,
                predict_kwargs={"verbose": 0})
            t_sd[block].append(time.perf_counter() - t0)
            sd[block] = np.asarray(sd_labels)
            print(f"[{rep + 1}/{args.repeats}] stardist predict_instances_big block {block}: {t_sd[block][-1]:.1f} s, "
                  f"{int(len(details['prob']))} nuclei", flush=True)
    sd = {b: (float(np.median(t_sd[b])), L) for b, L in sd.items()}
    runs = {j: (float(np.median(t_runner[j])), d) for j, d in runs.items()}
    for block, (t_med, sd_labels) in sd.items():
        results[f"stardist_block_{block}"] = dict(
            seconds=round(t_med, 2), spread=spread(t_sd[block]), n=int(len(np.unique(sd_labels)) - 1),
            block_size=block, min_overlap=min_overlap, context=context,
            f1_vs_truth=tg.seg.matching_scores(truth, sd_labels, thresholds=0.5, as_frame=False)["f1"])
    t_ref, ref_labels = sd[blocks[0]]
    for n_jobs, (sec, d) in runs.items():
        lab = table_to_labels(d, img.shape)
        agree = tg.seg.matching_scores(ref_labels, lab, thresholds=0.5, as_frame=False)
        results[f"runner_n_jobs_{n_jobs}"] = dict(
            seconds=round(sec, 2), n=int(len(d)), tile_size=args.tile, overlap=overlap,
            spread=spread(t_runner[n_jobs]),
            ratio_to_stardist=round(sec / t_ref, 3),
            ratio_to_stardist_per_repeat=[round(a / b, 3) for a, b in zip(t_runner[n_jobs], t_sd[blocks[0]])],
            ratio_to_stardist_blocks={b: round(sec / t, 3) for b, (t, _) in sd.items()},
            agreement_f1_iou50=agree["f1"], agreement_mean_iou=agree["mean_matched_iou"],
            agreement_with_blocks={b: tg.seg.matching_scores(L, lab, thresholds=0.5, as_frame=False)["f1"]
                                   for b, (_, L) in sd.items()},
            f1_vs_truth=tg.seg.matching_scores(truth, lab, thresholds=0.5, as_frame=False)["f1"])
    results["command"] = command("bench_stardist_big.py", argv)
    results["machine"] = finish(info)  # shared machine: say how busy it was
    results["loadavg_end"] = results["machine"]["loadavg_end"]
    results["repeats"] = args.repeats
    results["reported"] = (f"median of {args.repeats} runs of each method, interleaved" if args.repeats > 1
                           else "one run of each method (no spread)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float))
    md = [f"# tg.seg.nuclei vs StarDist predict_instances_big ({args.size}x{args.size}, model {backend.name})", "",
          "Ratios and agreement are relative to the first StarDist row (network inputs of the runner's tile "
          "size).", "",
          "| method | seconds (median) | min–max, n | ratio to StarDist | nuclei | agreement F1@0.5 | F1 vs truth |",
          "|---|---|---|---|---|---|---|"]
    for block, (t, _) in sd.items():
        r = results[f"stardist_block_{block}"]
        md.append(f"| StarDist predict_instances_big (block {block}, min_overlap {min_overlap}, context {context}) | "
                  f"{t:.1f} | {fmt(r['spread'], 1)} | {t / t_ref:.2f} | {r['n']} | - | {r['f1_vs_truth']:.3f} |")
    for n_jobs in runs:
        r = results[f"runner_n_jobs_{n_jobs}"]
        md.append(f"| tg.seg.nuclei (tile {args.tile}, overlap {overlap}, n_jobs {n_jobs}) | {r['seconds']:.1f} | "
                  f"{fmt(r['spread'], 1)} | {r['ratio_to_stardist']:.2f} (per repeat "
                  f"{', '.join(f'{v:.2f}' for v in r['ratio_to_stardist_per_repeat'])}) | {r['n']} | "
                  f"{r['agreement_f1_iou50']:.4f} | {r['f1_vs_truth']:.3f} |")
    md += ["", f"`{results['command']}` ({os.cpu_count()} CPU cores, TensorFlow threads {args.threads}; "
           f"{results['reported']}; {results['machine']['note']})"]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
