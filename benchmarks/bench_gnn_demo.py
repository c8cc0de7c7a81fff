"""Cost of the GNN representations at the size of ``tissuegraph demo`` (what the pipeline would add).

The demo slide (4096² px at 0.5 µm/px, ~13,500 nuclei, 64 grid samples of 256 µm) is stood in for by
uniform random cells at the same density with 75 features and a Delaunay graph (max edge 50 µm). Timed,
one torch thread: the default untrained twins (``tg.emb.gnn_twins``: 5 seeds on features + 5 on topology),
one untrained twin, and ``--train``: deep graph infomax (and GraphCL) training followed by the embedding.

    PYTHONPATH=. python benchmarks/bench_gnn_demo.py

Writes ``benchmarks/results/gnn_demo.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

import tissuegraph as tg
from tissuegraph._anndata import set_slide_metadata


def demo_like_cells(n: int = 13500, side_px: int = 4096, mpp: float = 0.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, side_px, (n, 2))
    obs = pd.DataFrame(index=pd.Index(np.arange(1, n + 1).astype(str)))
    obs["slide"] = pd.Categorical(["demo"] * n)
    cells = ad.AnnData(X=rng.gamma(4.0, 10.0, (n, 75)).astype(np.float32), obs=obs)
    cells.var_names = [f"f{i}" for i in range(75)]
    cells.obsm["spatial"] = xy
    set_slide_metadata(cells, "demo", mpp=mpp)
    tg.graph.delaunay(cells, max_edge_um=50)
    return cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    tg.settings.progress = False
    cells = demo_like_cells()
    samples = tg.graph.grid_samples(cells, size_um=256)
    t = time.perf_counter()
    import torch_geometric  # noqa: F401 - import time reported separately
    t_import = time.perf_counter() - t
    sec = {"import_torch_geometric": t_import}
    t = time.perf_counter()
    tg.emb.gnn(samples, cells, model="gin", seed=0)
    sec["one_untrained_twin"] = time.perf_counter() - t
    t = time.perf_counter()
    tg.emb.gnn_twins(samples, cells, model="gin", seeds=(0, 1, 2, 3, 4), topology=True)
    sec["gnn_twins_5_seeds_plus_topology"] = time.perf_counter() - t
    losses = {}
    with tempfile.TemporaryDirectory() as d:
        for obj in ("dgi", "graphcl"):
            t = time.perf_counter()
            m = tg.emb.train_gnn(samples, cells, objective=obj, epochs=args.epochs, seed=0,
                                 save_to=Path(d) / f"gnn_{obj}")
            tg.emb.gnn(samples, cells, model=m)
            sec[f"train_{obj}_{args.epochs}_epochs_and_embed"] = time.perf_counter() - t
            losses[obj] = [round(e["loss"], 4) for e in m.card["loss_log"]]
    res = {"command": "python " + " ".join(sys.argv), "n_cells": cells.n_obs, "n_samples": samples.n_obs,
           "seconds": sec, "losses": losses, "load_average_after": os.getloadavg(),
           "representations": sorted(k for k in samples.obsm if k.startswith("X_gnn"))}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gnn_demo.json").write_text(json.dumps(res, indent=2))
    md = [f"# GNN representations at demo size ({cells.n_obs:,} cells, {samples.n_obs} samples)", "",
          f"`{res['command']}`", "", "| step | seconds |", "|---|---|"]
    md += [f"| {k} | {v:.1f} |" for k, v in sec.items()]
    md += ["", f"Load average after: {', '.join(f'{v:.1f}' for v in res['load_average_after'])} (2 shared cores).", ""]
    (args.out / "gnn_demo.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
