"""Memory of tg.emb.gnn when the slide grows: peak RSS of embedding a 4x larger cell set (same density).

Each size runs in a fresh subprocess. The cells (uniform points at 2,000 cells/mm², symmetrised 6-NN
graph, ``--features`` features; ``bench_descriptors.synthetic_cells``) and their 256 µm grid samples are
made first; torch and torch-geometric are warmed up on a small slide (3 batches, so that the worker
threads run too); then a thread samples the process's
resident memory (``/proc/self/statm``, every 5 ms) while ``tg.emb.gnn`` (3-layer GIN, width 64) embeds
every sample. Before the call the freed heap of the setup is returned to the system (``malloc_trim``),
so that pages the call reuses from the setup do not hide its own memory. Reported: the RSS just before the call (the inputs: cells and samples in memory, which
grow with the slide), the peak during the call, and their difference, the working memory of the
embedding (goal: a 4x larger slide raises it by at most 10 %; batches of ``batch_nodes`` nodes are
streamed, so it should not grow).

    PYTHONPATH=. python benchmarks/bench_gnn_scale.py --n 250000 1000000

Writes ``benchmarks/results/gnn_scale.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, os, sys, threading, time
sys.path.insert(0, {here!r})
import numpy as np
from bench_descriptors import synthetic_cells
import tissuegraph as tg
tg.settings.progress = False
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page / 2**20
def rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")
small = synthetic_cells(3 * {batch_nodes}, k=6, mpp=0.5, density_per_mm2=2000.0, n_features={features}, seed=1)
tg.emb.gnn(tg.graph.grid_samples(small, size_um=256), small, batch_nodes={batch_nodes}, n_jobs={n_jobs})   # warm-up
cells = synthetic_cells({n}, k=6, mpp=0.5, density_per_mm2=2000.0, n_features={features}, seed=0)
samples = tg.graph.grid_samples(cells, size_um=256)
import ctypes, gc
gc.collect()
try:  # give the setup's freed heap back to the system, so that the call's own pages are what is measured
    ctypes.CDLL("libc.so.6").malloc_trim(0)
except OSError:
    pass
before = rss()
before_anon = rss_anon()
peak = [before, before_anon]
stop = threading.Event()
def watch():
    while not stop.is_set():
        peak[0] = max(peak[0], rss())
        peak[1] = max(peak[1], rss_anon())
        time.sleep(0.005)
th = threading.Thread(target=watch, daemon=True); th.start()
import tracemalloc
tracemalloc.start()
t = time.perf_counter()
tg.emb.gnn(samples, cells, batch_nodes={batch_nodes}, n_jobs={n_jobs})
secs = time.perf_counter() - t
traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
tracemalloc.stop()
stop.set(); th.join()
peak[0] = max(peak[0], rss())
peak[1] = max(peak[1], rss_anon())
print(json.dumps({{"n_cells": cells.n_obs, "n_samples": samples.n_obs, "seconds": secs,
                  "rss_before_mb": before, "peak_during_mb": peak[0], "increment_mb": peak[0] - before,
                  "traced_peak_mb": traced_peak, "anon_increment_mb": peak[1] - before_anon}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[250_000, 1_000_000])
    ap.add_argument("--features", type=int, default=75)
    ap.add_argument("--batch-nodes", type=int, default=32768)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--n-jobs", type=int, default=2, help="tg.emb.gnn's n_jobs (threads, one batch each)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    runs = []
    for n in args.n:
        for rep in range(args.repeats):
            code = CHILD.format(here=str(HERE), n=n, features=args.features, batch_nodes=args.batch_nodes,
                               n_jobs=args.n_jobs)
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
            if out.returncode:
                raise SystemExit(out.stderr[-3000:])
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["run"] = rep
            runs.append(r)
            print(r, flush=True)
    sizes = sorted(set(args.n))
    inc = {n: max(r["increment_mb"] for r in runs if r["n_cells"] == n) for n in sizes}
    peak = {n: max(r["peak_during_mb"] for r in runs if r["n_cells"] == n) for n in sizes}
    med = {n: float(np.median([r["increment_mb"] for r in runs if r["n_cells"] == n])) for n in sizes}
    traced = {n: max(r["traced_peak_mb"] for r in runs if r["n_cells"] == n) for n in sizes}
    anon = {n: max(r["anon_increment_mb"] for r in runs if r["n_cells"] == n) for n in sizes}
    res = {"command": "python " + " ".join(sys.argv), "runs": runs,
           "increment_mb": {str(k): v for k, v in inc.items()}, "peak_during_mb": {str(k): v for k, v in peak.items()},
           "increment_ratio": inc[sizes[-1]] / inc[sizes[0]], "peak_ratio": peak[sizes[-1]] / peak[sizes[0]],
           "median_increment_ratio": med[sizes[-1]] / med[sizes[0]],
           "traced_peak_mb": {str(k): v for k, v in traced.items()},
           "traced_peak_ratio": traced[sizes[-1]] / traced[sizes[0]],
           "anon_increment_mb": {str(k): v for k, v in anon.items()},
           "anon_increment_ratio": anon[sizes[-1]] / anon[sizes[0]],
           "area_ratio": sizes[-1] / sizes[0], "load_average_after": os.getloadavg(),
           "goal": "working memory (peak during - before) of a 4x larger slide <= 1.10x"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gnn_scale.json").write_text(json.dumps(res, indent=2))
    md = ["# tg.emb.gnn memory vs slide size (3-layer GIN, width 64, 256 µm grid samples)", "",
          f"`{res['command']}`", "",
          "| cells | samples | run | seconds | RSS before (inputs) MB | peak during MB | working memory MB | "
          "anonymous working memory MB | numpy/Python peak (tracemalloc) MB |",
          "|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['n_cells']:,} | {r['n_samples']:,} | {r['run']} | {r['seconds']:.1f} | {r['rss_before_mb']:.0f} | "
           f"{r['peak_during_mb']:.0f} | {r['increment_mb']:.0f} | {r['anon_increment_mb']:.0f} | {r['traced_peak_mb']:.0f} |" for r in runs]
    md += ["", f"{res['area_ratio']:.0f}x area: working memory x**{res['increment_ratio']:.3f}** (largest of each "
           f"size; goal <= 1.10); total peak during the call x{res['peak_ratio']:.3f} (it includes the inputs, "
           "which are held in memory by the caller and grow with the slide); median working memory "
           f"x{res['median_increment_ratio']:.3f}; anonymous memory only (RssAnon, without library pages) "
           f"x{res['anon_increment_ratio']:.3f}; numpy/Python allocations traced during the call (tracemalloc; "
           f"torch's own buffers are not traced) x{res['traced_peak_ratio']:.3f}. Load average after: "
           f"{', '.join(f'{v:.1f}' for v in res['load_average_after'])} (2 cores, shared machine).", ""]
    (args.out / "gnn_scale.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
