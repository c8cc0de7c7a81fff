"""Two small overheads the README quotes: the kNN kernel's compile / first-call cost and the memory of
the nucleus table per nucleus.

kNN (numba kernel, ``cache=True``): each case runs in a fresh Python process (``python -c``), with
``NUMBA_CACHE_DIR`` pointing at a folder that is empty (``compile``: the first use after installing)
or that the previous case filled (``cached``: every later process). Reported: the time of the first
``tg.graph.knn`` call in the process, of the second call (same data: the steady state), and their
difference (what the first call adds). Repeated ``--repeats`` times, median reported.

Nucleus table: ``tg.seg.nuclei`` (watershed) on a synthetic H&E slide; bytes per nucleus of the
table as held in memory (numeric columns plus every contour array and its Python object), measured
directly from the arrays, and ``DataFrame.memory_usage(deep=True)`` for comparison.

    python benchmarks/bench_overheads.py
Writes benchmarks/results/overheads.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _runinfo import command, finish, fmt, machine, spread  # noqa: E402

_KNN = r"""
import time, numpy as np, anndata as ad
t0 = time.perf_counter()
import tissuegraph as tg
from tissuegraph._anndata import set_slide_metadata
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
a = ad.AnnData(obs={"i": np.arange(NCELLS)}); a.obsm["spatial"] = rng.uniform(0, 20000, (NCELLS, 2))
set_slide_metadata(a, "s", mpp=0.5)
t, c = time.perf_counter(), time.process_time(); tg.graph.knn(a, k=6)
first, first_cpu = time.perf_counter() - t, time.process_time() - c
t, c = time.perf_counter(), time.process_time(); tg.graph.knn(a, k=6)
second, second_cpu = time.perf_counter() - t, time.process_time() - c
print(first, second, first_cpu, second_cpu)
"""


def knn_case(cache_dir: str, n: int) -> tuple[float, float, float, float]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _KNN.replace("NCELLS", str(n))],
                         env=env, capture_output=True, text=True, check=True)
    return tuple(float(v) for v in out.stdout.split()[-4:])


def nucleus_bytes(size: int) -> dict:
    import tissuegraph as tg

    with tempfile.TemporaryDirectory() as d:
        syn = tg.datasets.synthetic_slide(Path(d) / "s.tiff", size=size, seed=0, progress=False)
        nuc = tg.seg.nuclei(syn.path, method="watershed", progress=False)
    n = len(nuc)
    numeric = sum(nuc[c].to_numpy().nbytes for c in nuc.columns if nuc[c].dtype != object)
    contours = nuc["contour"]
    arrays = sum(int(c.nbytes) for c in contours)
    objects = sum(sys.getsizeof(c) - (int(c.nbytes) if c.base is None else 0) for c in contours)
    other_obj = sum(nuc[c].memory_usage(deep=True, index=False) for c in nuc.columns
                    if nuc[c].dtype == object and c != "contour")
    total = numeric + arrays + objects + 8 * n + other_obj + nuc.index.memory_usage()
    return {"slide_px": size, "n_nuclei": n, "bytes_total": int(total), "bytes_per_nucleus": total / n,
            "contour_vertices_per_nucleus": float(np.mean([len(c) for c in contours])),
            "parts_per_nucleus": {"numeric columns": numeric / n, "contour data": arrays / n,
                                  "contour array objects": objects / n, "pointers": 8.0,
                                  "other object columns": other_obj / n},
            "pandas_memory_usage_deep_per_nucleus": float(nuc.memory_usage(deep=True).sum()) / n}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="cells for the kNN case")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--slide-size", type=int, default=2048)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "overheads.json"))
    args = ap.parse_args(argv)
    info = machine()
    rows = {"compile": [], "cached": []}
    for _ in range(args.repeats):  # compile and cached interleaved
        with tempfile.TemporaryDirectory() as cache:
            rows["compile"].append(knn_case(cache, args.n))
            rows["cached"].append(knn_case(cache, args.n))
    knn = {}
    for case, rs in rows.items():
        first, second = spread([r[0] for r in rs]), spread([r[1] for r in rs])
        added = spread([r[0] - r[1] for r in rs])
        added_cpu = spread([r[2] - r[3] for r in rs])
        knn[case] = {"first_call_s": first, "second_call_s": second, "first_call_adds_s": added,
                     "first_call_adds_cpu_s": added_cpu}
    mem = nucleus_bytes(args.slide_size)
    res = {"command": command("bench_overheads.py", argv), "knn_n_cells": args.n, "knn": knn,
           "nucleus_table": mem, "machine": finish(info)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    lines = ["# Overheads: kNN kernel compile / first call, nucleus table memory", "", f"`{res['command']}`", "",
             f"Median of {args.repeats} fresh processes (min–max); {res['machine']['note']}. CPU seconds (all "
             "threads of the process) are the steadier figure on a busy machine.", "",
             f"| `tg.graph.knn`, {args.n:,} cells, k = 6 | first call (s) | second call (s) | first call adds (s) "
             "| first call adds, CPU s |",
             "|---|---|---|---|---|"]
    for case, label in (("compile", "fresh process, empty numba cache (first use after installing)"),
                        ("cached", "fresh process, numba cache filled (every later process)")):
        k = knn[case]
        lines.append(f"| {label} | {fmt(k['first_call_s'])} | {fmt(k['second_call_s'])} | "
                     f"{fmt(k['first_call_adds_s'])} | {fmt(k['first_call_adds_cpu_s'])} |")
    p = mem["parts_per_nucleus"]
    lines += ["", f"Nucleus table (`tg.seg.nuclei`, watershed, synthetic {args.slide_size}² slide, "
              f"{mem['n_nuclei']:,} nuclei, {mem['contour_vertices_per_nucleus']:.0f} contour vertices each "
              f"on average): **{mem['bytes_per_nucleus']:.0f} bytes per nucleus** in memory (numeric columns "
              f"{p['numeric columns']:.0f}, contour coordinates {p['contour data']:.0f}, contour array objects "
              f"{p['contour array objects']:.0f}, pointers 8, other object columns {p['other object columns']:.0f}); "
              f"pandas `memory_usage(deep=True)`: {mem['pandas_memory_usage_deep_per_nucleus']:.0f} bytes."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
