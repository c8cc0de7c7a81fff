"""Cell graph construction: tissuegraph against ``squidpy.gr.spatial_neighbors``, in the same run.

Inputs: ``--n`` centroids (default 1,000,000) at 0.5 µm/px, in two layouts:

- ``uniform``: a homogeneous Poisson process with a mean nucleus spacing of 9 µm;
- ``clustered``: a Thomas process (Gaussian clusters of ~40 nuclei, sigma 20 µm, ~8 µm spacing
  inside clusters, gaps between them), closer to real tissue.

For each layout and each graph (kNN with k=6, radius 20 µm, Delaunay) both libraries build the graph
on the same AnnData through their public front ends (``tg.graph.knn`` / ``radius`` / ``delaunay`` and
``sq.gr.spatial_neighbors(coord_type='generic', ...)``); the script checks that the edge sets are
identical and the distances equal within 1e-6 (relative), and reports the speed-up.  tissuegraph is
timed with one thread (``n_jobs=1``) and, for kNN, with all cores (``n_jobs=-1``: the tree queries and
the sorting of the rows run on threads; squidpy/scikit-learn use one thread); both ratios are reported.
The radius search and the Delaunay triangulation are single-threaded in both libraries.  Besides
wall-clock seconds the script records process CPU seconds, the steadier figure on a shared machine.

squidpy's Delaunay computes distances in a Python loop over the cells (minutes at 1M).  With
``--sq-delaunay-n`` it is run on the first N cells of the layout instead, and tissuegraph is timed on the
same N cells for that ratio; the n actually compared is written next to every figure.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_graph.py                 # 1M cells, ~15 min
    PYTHONPATH=. .venv/bin/python benchmarks/bench_graph.py --quick         # 100k cells, ~1 min
    PYTHONPATH=. .venv/bin/python benchmarks/bench_graph.py --n 1000000 --repeats 3 --out benchmarks/results/graph.json

Writes the JSON file given by ``--out`` and a markdown table next to it (same name, ``.md``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

import tissuegraph as tg
from tissuegraph._anndata import set_slide_metadata

MPP = 0.5  # µm/px
SPACING_UM = 9.0  # mean nucleus spacing of the uniform layout
RADIUS_UM = 20.0
# Distances agree when |tg - squidpy| <= DIST_ATOL_PX + DIST_RTOL * |squidpy|.  squidpy's Delaunay lengths
# come from sklearn's euclidean_distances, i.e. sqrt(|x|^2 - 2 x.y + |y|^2): with coordinates ~2e4 px
# that expansion loses ~1e-6 px (tissuegraph, like scikit-learn's trees, computes sqrt(dx^2 + dy^2)).
DIST_RTOL = 1e-6
DIST_ATOL_PX = 1e-5


# ------------------------------------------------------------------------------------------- inputs
def uniform_points(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    side = np.sqrt(n) * SPACING_UM / MPP
    return rng.uniform(0, side, (n, 2))


def thomas_points(n: int, seed: int, *, per_cluster: int = 40, sigma_um: float = 20.0) -> np.ndarray:
    """Thomas process: uniform parents, each with Gaussian offspring (exactly n points in total)."""
    rng = np.random.default_rng(seed)
    n_par = max(1, n // per_cluster)
    sigma = sigma_um / MPP
    side = np.sqrt(n_par * 2.0 * np.pi * sigma**2 / 0.6)  # clusters cover ~60% of the area
    parents = rng.uniform(0, side, (n_par, 2))
    return parents[rng.integers(0, n_par, n)] + rng.normal(0.0, sigma, (n, 2))


def cells(points: np.ndarray) -> ad.AnnData:
    a = ad.AnnData(obs=pd.DataFrame(index=pd.RangeIndex(len(points)).astype(str)))
    a.obsm["spatial"] = points
    set_slide_metadata(a, "slide", mpp=MPP)
    return a


# ---------------------------------------------------------------------------------------- squidpy
def import_squidpy():
    """squidpy (install the test extra: it pins setuptools < 81, which squidpy's dependencies need)."""
    return importlib.import_module("squidpy")


SQ_KW = {"knn": {"n_neighs": 6}, "radius": {"radius": RADIUS_UM / MPP}, "delaunay": {"delaunay": True}}


def run_tg(method: str, a: ad.AnnData, n_jobs: int) -> None:
    if method == "knn":
        tg.graph.knn(a, k=6, n_jobs=n_jobs)
    elif method == "radius":
        tg.graph.radius(a, radius_um=RADIUS_UM, n_jobs=n_jobs)
    else:
        tg.graph.delaunay(a, n_jobs=n_jobs)


def run_sq(sq, method: str, a: ad.AnnData) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sq.gr.spatial_neighbors(a, coord_type="generic", **SQ_KW[method])


def timeit(fns: dict, repeats: dict) -> dict:
    """Wall-clock and CPU (process, all threads) seconds of every function, repeats interleaved (each
    repeat runs every function that still has repeats to do, in turn, so a load spike from other jobs
    hits all of them alike).  Returns ``{name: {"wall": spread, "cpu": spread}}`` (median, min, max and
    every value)."""
    from _runinfo import spread

    times = {k: ([], []) for k in fns}
    for i in range(max(repeats.values())):
        for k, fn in fns.items():
            if i < repeats[k]:
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                times[k][0].append(time.perf_counter() - t0)
                times[k][1].append(time.process_time() - c0)
    return {k: {"wall": spread(w), "cpu": spread(c)} for k, (w, c) in times.items()}


def compare(a_tg: ad.AnnData, a_sq: ad.AnnData) -> dict:
    """Edge sets and distances of the two graphs."""
    out = {}
    for what in ("connectivities", "distances"):
        x = sp.csr_matrix(a_tg.obsp[f"spatial_{what}"], copy=True)
        y = sp.csr_matrix(a_sq.obsp[f"spatial_{what}"], copy=True)
        for m in (x, y):
            m.sum_duplicates()
            m.sort_indices()
        same_struct = bool(np.array_equal(x.indptr, y.indptr) and np.array_equal(x.indices, y.indices))
        if not same_struct:
            d = (x != 0).astype(np.int8) - (y != 0).astype(np.int8)
            d.eliminate_zeros()
            out[f"{what}_differing_entries"] = int(d.nnz)
            out[f"{what}_rows_differing"] = int(np.unique(d.tocoo().row).size)
        out[f"{what}_identical_structure"] = same_struct
        if what == "distances" and same_struct:
            diff = np.abs(x.data - y.data)
            out["distances_max_abs_diff_px"] = float(diff.max()) if diff.size else 0.0
            out["distances_max_rel_diff"] = float((diff / np.maximum(np.abs(y.data), 1e-300)).max()) \
                if diff.size else 0.0
            out["distances_equal"] = bool(np.allclose(x.data, y.data, rtol=DIST_RTOL, atol=DIST_ATOL_PX))
    out["edges"] = int(a_tg.obsp["spatial_connectivities"].nnz)
    out["identical"] = bool(out["connectivities_identical_structure"] and out["distances_identical_structure"]
                            and out.get("distances_equal", False))
    return out


# ------------------------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="number of centroids per layout")
    p.add_argument("--quick", action="store_true", help="100k centroids (overrides --n)")
    p.add_argument("--repeats", type=int, default=1, help="timing repeats for tissuegraph (median is reported)")
    p.add_argument("--sq-repeats", type=int, default=1, help="timing repeats for squidpy (median is reported; "
                   "interleaved with tissuegraph's)")
    p.add_argument("--sq-delaunay-n", type=int, default=None,
                   help="run squidpy's Delaunay on only this many cells (default: all)")
    p.add_argument("--layouts", default="uniform,clustered")
    p.add_argument("--methods", default="knn,radius,delaunay")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON output (default benchmarks/results/graph[_quick].json)")
    args = p.parse_args(argv)
    n = 100_000 if args.quick else args.n
    out_path = Path(args.out or f"benchmarks/results/graph{'_quick' if args.quick else ''}.json")
    sq = import_squidpy()
    tg.settings.progress = False
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _runinfo import command, finish, machine

    info = machine()
    results = {
        "command": command("bench_graph.py", argv),
        "n": n, "mpp": MPP, "radius_um": RADIUS_UM, "k": 6, "repeats": args.repeats,
        "sq_repeats": args.sq_repeats, "reported": "median of the repeats, tissuegraph and squidpy interleaved",
        "machine": info,
        "versions": {"tissuegraph": tg.__version__, "squidpy": sq.__version__, "numpy": np.__version__,
                     "scipy": importlib.import_module("scipy").__version__,
                     "scikit-learn": importlib.import_module("sklearn").__version__,
                     "anndata": importlib.metadata.version("anndata"), "python": platform.python_version()},
        "runs": [],
    }
    gens = {"uniform": uniform_points, "clustered": thomas_points}
    # first calls pay one-off import and set-up costs: not timed.  tissuegraph is warmed on 50,000 cells,
    # enough for the paths a large input takes (kNN's numba grid kernel from 20,000 points on, tiling)
    warm = uniform_points(50_000, 1)
    for method in args.methods.split(","):
        run_tg(method, cells(warm), 1)
        if method == "knn":
            run_tg(method, cells(warm), -1)
        run_sq(sq, method, cells(warm[:2000]))
    for layout in args.layouts.split(","):
        pts = gens[layout](n, args.seed)
        for method in args.methods.split(","):
            row = {"layout": layout, "method": method}
            a_tg = cells(pts)
            n_sq = n if method != "delaunay" or args.sq_delaunay_n is None else min(n, args.sq_delaunay_n)
            row["n_compared"] = n_sq
            a_sq = cells(pts[:n_sq])
            a_same = cells(pts[:n_sq]) if n_sq != n else None
            fns = {"tg_1thread": lambda: run_tg(method, a_tg, 1)}
            reps = {"tg_1thread": args.repeats}
            if method == "knn":  # the only graph whose tree queries use threads
                fns["tg_all_cores"] = lambda: run_tg(method, a_tg, -1)
                reps["tg_all_cores"] = args.repeats
            if a_same is not None:  # tissuegraph on the same subset, for an honest ratio
                fns["tg_1thread_same_n"] = lambda: run_tg(method, a_same, 1)
                reps["tg_1thread_same_n"] = args.repeats
            fns["squidpy"] = lambda: run_sq(sq, method, a_sq)
            reps["squidpy"] = args.sq_repeats
            print(f"[{layout}/{method}] tissuegraph and squidpy (on {n_sq} cells), interleaved ...", flush=True)
            tt = timeit(fns, reps)
            for k, v in tt.items():  # medians of the repeats; spreads under 'spread'
                row[f"{k}_s"], row[f"{k}_cpu_s"] = v["wall"]["median"], v["cpu"]["median"]
            row["spread"] = tt
            if a_same is not None:
                a_tg = a_same
                ref, ref_cpu = row["tg_1thread_same_n_s"], row["tg_1thread_same_n_cpu_s"]
            else:
                ref, ref_cpu = row["tg_1thread_s"], row["tg_1thread_cpu_s"]
            row.update(compare(a_tg, a_sq))
            row["speedup_1thread"] = row["squidpy_s"] / ref
            row["speedup_1thread_cpu"] = row["squidpy_cpu_s"] / ref_cpu
            if "tg_all_cores_s" in row:
                row["speedup_all_cores"] = row["squidpy_s"] / row["tg_all_cores_s"]
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
            a_sq = a_tg = a_same = None  # free the 1M-cell objects before the next case
    results["machine"] = finish(info)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2))
    out_path.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return results


def _opt(r: dict, key: str, fmt: str) -> str:
    return fmt.format(r[key]) if key in r else "-"


def markdown(res: dict) -> str:
    goal = {"knn": 5, "radius": 5, "delaunay": 30}
    lines = [
        f"# Cell graphs: tissuegraph vs squidpy.gr.spatial_neighbors (n = {res['n']:,} centroids)",
        "",
        f"Command: `{res['command']}`  ",
        f"Machine: {res['machine']['note']}  ",
        f"Versions: {', '.join(f'{k} {v}' for k, v in res['versions'].items())}",
        "",
        "| layout | graph | n compared | edges | identical | squidpy s | tg 1 thread s | tg all cores s "
        "| speed-up 1 thread | speed-up all cores | speed-up 1 thread, CPU time | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        tg1 = r.get("tg_1thread_same_n_s", r["tg_1thread_s"])
        lines.append(
            f"| {r['layout']} | {r['method']} | {r['n_compared']:,} | {r['edges']:,} | {r['identical']} "
            f"| {r['squidpy_s']:.2f} | {tg1:.2f} | {_opt(r, 'tg_all_cores_s', '{:.2f}')} "
            f"| {r['speedup_1thread']:.1f}x | {_opt(r, 'speedup_all_cores', '{:.1f}x')} "
            f"| {r['speedup_1thread_cpu']:.1f}x | >= {goal[r['method']]}x |")
    lines += ["", f"Wall-clock seconds, median of the repeats (tissuegraph {res['repeats']}, squidpy "
              f"{res.get('sq_repeats', 1)}, interleaved); 'spread' in the JSON holds min, max and every value. "
              "'CPU time' divides the process CPU seconds (all "
              "threads) of squidpy by those of tissuegraph with one thread: on a busy machine it is the "
              "steadier figure. Only kNN uses threads ('all cores'); radius and Delaunay are single-threaded "
              "in both libraries. 'identical': same edge set, and distances within "
              f"{DIST_ATOL_PX:g} px + {DIST_RTOL:g} x length (max difference in the JSON). "
              "When 'n compared' is smaller than n, "
              "squidpy ran on that many cells and tissuegraph was timed on the same cells for the ratio "
              f"(tissuegraph on all {res['n']:,} cells: see `tg_1thread_s` in the JSON). tissuegraph's kNN "
              "uses a numba kernel: a warm-up call before the timed repeats excludes its one-off costs (the "
              "first call in a process loads the compiled kernel from numba's cache, the first use after "
              "installing compiles it; measured in `overheads.md`).", ""]
    sp_lines = []
    for r in res["runs"]:
        if "spread" in r:
            sp_lines.append(f"{r['layout']} {r['method']}: " + "; ".join(
                f"{k} " + ", ".join(f"{x:.2f}" for x in v["wall"]["values"]) for k, v in r["spread"].items()))
    if sp_lines:
        lines += ["Every repeat (wall-clock s): " + " | ".join(sp_lines) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
