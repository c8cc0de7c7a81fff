"""GNN embedding and training on a GPU against the CPU, same 1,000,000-cell benchmark as bench_gnn_emb.py.

Checks that ``device='cuda'`` gives the CPU's embeddings (max |difference|) and measures both. Run where a
GPU is present:

    PYTHONPATH=. python benchmarks/bench_gnn_gpu.py --n 1000000 --out benchmarks/results
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


def _timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpu-threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here")
    tg.settings.progress = False
    cells = synthetic_cells(args.n, k=6, mpp=0.5, density_per_mm2=2000.0, n_features=75, seed=0)
    samples = tg.graph.grid_samples(cells, size_um=256.0)
    res = {"command": "python " + " ".join(sys.argv), "n_cells": cells.n_obs, "n_samples": samples.n_obs,
           "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cpu_threads": args.cpu_threads}
    tg.emb.gnn(samples, cells, model="gin", seed=0, key_added="warm_cuda", device="cuda")
    tg.emb.gnn(samples, cells, model="gin", seed=0, key_added="warm_cpu", device="cpu", n_jobs=args.cpu_threads)
    res["embed_cuda_s"], res["embed_cuda_runs"] = _timed(
        lambda: tg.emb.gnn(samples, cells, model="gin", seed=0, key_added="gin_cuda", device="cuda"), args.repeats)
    res["embed_cpu_s"], res["embed_cpu_runs"] = _timed(
        lambda: tg.emb.gnn(samples, cells, model="gin", seed=0, key_added="gin_cpu", device="cpu",
                           n_jobs=args.cpu_threads), args.repeats)
    res["max_abs_diff_cuda_vs_cpu"] = float(np.abs(samples.obsm["X_gin_cuda"] - samples.obsm["X_gin_cpu"]).max())
    for obj in ("dgi", "graphcl"):
        t = time.perf_counter()
        m = tg.emb.train_gnn(samples, cells, objective=obj, epochs=args.epochs, seed=0, device="cuda")
        res[f"train_{obj}_cuda_s_per_epoch"] = (time.perf_counter() - t) / args.epochs
        res[f"train_{obj}_loss_log"] = m.card.get("loss_log", [])[:10]
    res["load_average"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gnn_gpu.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
