"""Speed of tg.tl.nhood_enrichment and tg.tl.co_occurrence against squidpy, with the values compared.

Synthetic cells on a square slide (0.5 µm/px, ~10,000 cells/mm²) with cell types drawn from smooth
spatial fields (so enrichment is real), a symmetrised 6-NN graph.

- nhood_enrichment at ``--n`` cells: tissuegraph (``n_jobs`` 1 and 2) and ``squidpy.gr.nhood_enrichment``
  (``n_jobs=1``, numba) with the same ``--perms``; counts must be identical; z-scores come from different
  random permutations, so they are compared by correlation and max |difference|.
- co_occurrence: squidpy compares every pair of cells (O(n^2) time, an (n, thresholds * k^2) int32
  buffer), so it cannot run at 1,000,000 cells (~10^12 pair tests; the buffer alone is
  n * 20 * 64 * 4 bytes = 5 GB). It runs at the ``--sq-cooc-sizes``; tissuegraph runs there (values
  compared) and at ``--n``. Both use the same thresholds, 0..``--cooc-max-um`` µm in 20 steps.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_tl.py --n 1000000

Writes ``benchmarks/results/tl_<n>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.spatial import cKDTree

import tissuegraph as tg
from tissuegraph._anndata import set_slide_metadata

warnings.filterwarnings("ignore")
MPP = 0.5


def synthetic_cells(n: int, *, k_types: int = 8, k: int = 6, density_per_mm2: float = 10_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    side = np.sqrt(n / (density_per_mm2 * 1e-6)) / MPP
    xy = rng.uniform(0, side, (n, 2))
    centres = rng.uniform(0, side, (4 * k_types, 2))
    owner = np.arange(4 * k_types) % k_types
    _, near = cKDTree(centres).query(xy, k=3)
    pick = near[np.arange(n), rng.integers(0, 3, n)]
    types = np.where(rng.random(n) < 0.7, owner[pick], rng.integers(0, k_types, n))
    _, j = cKDTree(xy).query(xy, k=k + 1, workers=-1)
    A = sp.csr_matrix((np.ones(n * k, np.float32), (np.repeat(np.arange(n), k), j[:, 1:].ravel())), shape=(n, n))
    A = ((A + A.T) > 0).astype(np.float32).tocsr()
    obs = pd.DataFrame(index=pd.Index(np.arange(1, n + 1).astype(str)))
    obs["cell_type"] = pd.Categorical([f"type{t}" for t in types])
    cells = ad.AnnData(obs=obs)
    cells.obsm["spatial"] = xy
    cells.obsp["spatial_connectivities"] = A
    set_slide_metadata(cells, "synthetic", mpp=MPP)
    return cells


def clock(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def stats(times):
    return {"median_s": float(np.median(times)), "min_s": float(np.min(times)), "max_s": float(np.max(times)),
            "runs_s": [round(t, 3) for t in times]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="cells for the main comparison")
    ap.add_argument("--perms", type=int, default=100, help="permutations of nhood_enrichment")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of each call")
    ap.add_argument("--cooc-max-um", type=float, default=50.0, help="largest co-occurrence threshold (µm)")
    ap.add_argument("--sq-cooc-sizes", type=int, nargs="*", default=[5_000, 20_000],
                    help="cell counts at which squidpy's co_occurrence runs")
    ap.add_argument("--skip-squidpy-nhood", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    import squidpy as sq

    tg.settings.progress = False
    load0 = os.getloadavg()
    res = {"command": "PYTHONPATH=. .venv/bin/python benchmarks/bench_tl.py " + " ".join(argv or sys.argv[1:]),
           "n": args.n, "perms": args.perms, "repeats": args.repeats, "platform": platform.platform(),
           "cpus": os.cpu_count(), "loadavg_start": load0,
           "versions": {"tissuegraph": tg.__version__, "squidpy": sq.__version__, "numpy": np.__version__}}
    t0 = time.perf_counter()
    cells = synthetic_cells(args.n)
    res["setup_s"] = time.perf_counter() - t0
    res["n_edges"] = int(cells.obsp["spatial_connectivities"].nnz)
    print(f"{args.n} cells, {res['n_edges']} edges ({res['setup_s']:.1f}s)", flush=True)

    # --- nhood_enrichment
    nh = {}
    for nj in (1, 2):
        times, _ = clock(lambda: tg.tl.nhood_enrichment(cells, cluster_key="cell_type", n_perms=args.perms, seed=0,
                                                        n_jobs=nj, key_added=f"tg{nj}"), args.repeats)
        nh[f"tissuegraph_n_jobs{nj}"] = stats(times)
        print("tg nhood n_jobs", nj, nh[f"tissuegraph_n_jobs{nj}"], flush=True)
    nh["identical_for_n_jobs_1_2"] = bool(np.array_equal(cells.uns["tg1"]["zscore"], cells.uns["tg2"]["zscore"]))
    if not args.skip_squidpy_nhood:
        small = synthetic_cells(2000)  # compile numba outside the timing
        sq.gr.nhood_enrichment(small, cluster_key="cell_type", n_perms=10, seed=0, n_jobs=1, show_progress_bar=False)
        times, _ = clock(lambda: sq.gr.nhood_enrichment(cells, cluster_key="cell_type", n_perms=args.perms, seed=0,
                                                        n_jobs=1, show_progress_bar=False), args.repeats)
        nh["squidpy_n_jobs1"] = stats(times)
        print("sq nhood", nh["squidpy_n_jobs1"], flush=True)
        a, b = cells.uns["tg1"], cells.uns["cell_type_nhood_enrichment"]
        nh["counts_identical"] = bool(np.array_equal(a["count"], b["count"]))
        za, zb = np.asarray(a["zscore"]).ravel(), np.asarray(b["zscore"]).ravel()
        nh["zscore_pearson"] = float(np.corrcoef(za, zb)[0, 1])
        nh["zscore_max_abs_diff"] = float(np.max(np.abs(za - zb)))
        nh["zscore_range"] = [float(za.min()), float(za.max())]
        nh["speedup_vs_squidpy"] = nh["squidpy_n_jobs1"]["median_s"] / nh["tissuegraph_n_jobs1"]["median_s"]
    res["nhood_enrichment"] = nh

    # --- co_occurrence
    interval_px = np.linspace(0, args.cooc_max_um / MPP, 21)
    co = {"interval_um": (interval_px * MPP).tolist(), "sizes": {}}
    warm = synthetic_cells(500)
    sq.gr.co_occurrence(warm, cluster_key="cell_type", interval=interval_px.astype(np.float32),
                        show_progress_bar=False)
    for n in [*args.sq_cooc_sizes, args.n]:
        c = cells if n == args.n else synthetic_cells(n, seed=1)
        entry = {}
        times, _ = clock(lambda: tg.tl.co_occurrence(c, cluster_key="cell_type", interval=interval_px, n_jobs=1,
                                                     key_added="tgco"), args.repeats)
        entry["tissuegraph_n_jobs1"] = stats(times)
        tg.tl.co_occurrence(c, cluster_key="cell_type", interval=interval_px, n_jobs=2, chunk_size=3_333,
                            key_added="tgco2")
        entry["identical_for_chunking_and_n_jobs"] = bool(np.array_equal(c.uns["tgco"]["occ"], c.uns["tgco2"]["occ"]))
        if n in args.sq_cooc_sizes:
            times, _ = clock(lambda: sq.gr.co_occurrence(c, cluster_key="cell_type",
                                                         interval=interval_px.astype(np.float32),
                                                         show_progress_bar=False), args.repeats)
            entry["squidpy"] = stats(times)
            occ_a, occ_b = c.uns["tgco"]["occ"], c.uns["cell_type_co_occurrence"]["occ"]
            entry["occ_max_abs_diff"] = float(np.max(np.abs(occ_a - occ_b)))
            entry["speedup_vs_squidpy"] = entry["squidpy"]["median_s"] / entry["tissuegraph_n_jobs1"]["median_s"]
        else:
            entry["squidpy"] = "not run: O(n^2) pair loop and an (n, thresholds * k^2) int32 buffer"
        co["sizes"][str(n)] = entry
        print("cooc", n, entry, flush=True)
    res["co_occurrence"] = co
    res["loadavg_end"] = os.getloadavg()
    res["max_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"tl_{args.n}"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=2))
    md = [f"# tg.tl vs squidpy at {args.n:,} cells", "", f"Command: `{res['command']}`", "",
          f"Load average at start/end: {load0[0]:.1f} / {res['loadavg_end'][0]:.1f} on {os.cpu_count()} CPUs "
          "(a shared machine: absolute times are inflated when the load is high; ratios come from the same run).",
          "", f"Graph: symmetrised 6-NN, {res['n_edges']:,} stored edges; 8 cell types; {args.perms} permutations;"
          f" median of {args.repeats} runs.", "", "## nhood_enrichment", "",
          "| implementation | median s | min-max s |", "|---|---|---|"]
    for key, v in nh.items():
        if isinstance(v, dict):
            md.append(f"| {key} | {v['median_s']:.2f} | {v['min_s']:.2f}-{v['max_s']:.2f} |")
    md += ["", f"Counts identical to squidpy: {nh.get('counts_identical')}; z-score Pearson r "
           f"{nh.get('zscore_pearson', float('nan')):.4f}, max |diff| {nh.get('zscore_max_abs_diff', float('nan')):.2f} "
           f"(z range {nh.get('zscore_range')}); identical for n_jobs 1 and 2: {nh['identical_for_n_jobs_1_2']}.",
           "", f"## co_occurrence (thresholds 0-{args.cooc_max_um:g} µm, 20 steps)", "",
           "| cells | tissuegraph median s | squidpy median s | speed-up | max abs diff of occ | same for any chunking |",
           "|---|---|---|---|---|---|"]
    for n, e in co["sizes"].items():
        sqs = e["squidpy"]["median_s"] if isinstance(e["squidpy"], dict) else None
        md.append(f"| {int(n):,} | {e['tissuegraph_n_jobs1']['median_s']:.2f} | "
                  f"{'%.2f' % sqs if sqs is not None else 'cannot run (O(n²))'} | "
                  f"{'%.0fx' % e['speedup_vs_squidpy'] if sqs is not None else '-'} | "
                  f"{'%.1e' % e['occ_max_abs_diff'] if sqs is not None else '-'} | {e['identical_for_chunking_and_n_jobs']} |")
    md += ["", f"Peak RSS {res['max_rss_gb']:.1f} GB."]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
