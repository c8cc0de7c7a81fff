"""Training cost of the self-supervised GNN objectives: wall time per epoch at the benchmark size.

Cells as in ``bench_gnn_emb.py`` (uniform points at 2,000 cells/mm², 6-NN graph, ``--features``
features), 256 µm grid samples; a 3-layer GIN of width 64 trained with ``tg.emb.train_gnn`` on
``--train-samples`` randomly chosen samples (all when 0) for ``--epochs`` epochs per objective, one torch
thread. Seconds per epoch are the median over epochs; the time for an epoch over *all* samples of the
slide is extrapolated linearly from the number of nodes.

    PYTHONPATH=. python benchmarks/bench_gnn_train.py --n 1000000 --train-samples 1000

Writes ``benchmarks/results/gnn_train_<n>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_descriptors import synthetic_cells  # noqa: E402

import tissuegraph as tg  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=75)
    ap.add_argument("--train-samples", type=int, default=1000, help="0 = all")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--objectives", nargs="+", default=["dgi", "graphcl", "masked"])
    ap.add_argument("--batch-nodes", type=int, default=16384)
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    tg.settings.progress = False
    cells = synthetic_cells(args.n, k=6, mpp=0.5, density_per_mm2=2000.0, n_features=args.features, seed=0)
    samples = tg.graph.grid_samples(cells, size_um=256)
    rng = np.random.default_rng(0)
    n_train = samples.n_obs if args.train_samples <= 0 else min(args.train_samples, samples.n_obs)
    mask = np.zeros(samples.n_obs, bool)
    mask[rng.choice(samples.n_obs, n_train, replace=False)] = True
    nodes_train = int(samples.obs["n_cells"].to_numpy()[mask].sum())
    nodes_all = int(samples.obs["n_cells"].sum())
    rows = {}
    for obj in args.objectives:
        t = time.perf_counter()
        m = tg.emb.train_gnn(samples, cells, objective=obj, epochs=args.epochs, seed=0, train=mask,
                             batch_nodes=args.batch_nodes, n_jobs=args.n_jobs)
        total = time.perf_counter() - t
        per_epoch = [e["seconds"] for e in m.card["loss_log"]]
        rows[obj] = {"seconds_per_epoch": per_epoch, "median_seconds_per_epoch": float(np.median(per_epoch)),
                     "extrapolated_seconds_per_epoch_all_samples": float(np.median(per_epoch)) * nodes_all / nodes_train,
                     "total_seconds_incl_setup": total, "loss": [e["loss"] for e in m.card["loss_log"]]}
        print(obj, rows[obj], flush=True)
    res = {"command": "python " + " ".join(sys.argv), "n_cells": cells.n_obs, "n_samples": samples.n_obs,
           "train_samples": n_train, "train_nodes": nodes_train, "all_nodes": nodes_all, "epochs": args.epochs,
           "batch_nodes": args.batch_nodes, "n_jobs": args.n_jobs,
           "model": "GIN, 3 layers, width 64, batch norm, mean pooling", "objectives": rows,
           "load_average_after": os.getloadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"gnn_train_{args.n}"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=2))
    md = [f"# GNN self-supervised training cost, {cells.n_obs:,} cells ({samples.n_obs:,} samples of 256 µm)", "",
          f"`{res['command']}`", "",
          f"3-layer GIN width 64, {args.features} features, trained on {n_train:,} samples ({nodes_train:,} nodes) "
          f"for {args.epochs} epochs, batches of {args.batch_nodes} nodes, {args.n_jobs} torch thread(s); load average "
          f"after {', '.join(f'{v:.1f}' for v in res['load_average_after'])} on 2 shared cores.", "",
          "| objective | s/epoch on the subset (median) | epochs | s/epoch, all samples (extrapolated) | loss first -> last |",
          "|---|---|---|---|---|"]
    md += [f"| {o} | {r['median_seconds_per_epoch']:.1f} | {', '.join(f'{v:.1f}' for v in r['seconds_per_epoch'])} | "
           f"{r['extrapolated_seconds_per_epoch_all_samples']:.0f} | {r['loss'][0]:.3f} -> {r['loss'][-1]:.3f} |"
           for o, r in rows.items()]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
