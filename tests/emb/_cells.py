"""Tiny synthetic cells (random points, Delaunay graph, features, types) for the GNN tests."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

import tissuegraph as tg
from tissuegraph._anndata import set_slide_metadata


def make_cells(n: int = 400, *, side_um: float = 300.0, mpp: float = 0.5, n_features: int = 6, seed: int = 0,
               graph: bool = True):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, side_um / mpp, (n, 2))
    obs = pd.DataFrame(index=pd.Index([f"c{i}" for i in range(n)]))
    obs["slide"] = pd.Categorical(["s1"] * n)
    obs["cell_type"] = pd.Categorical(rng.choice(["tumour", "stroma", "immune"], n))
    X = rng.gamma(3.0, 2.0, (n, n_features)).astype(np.float32)
    X[:, 0] += xy[:, 0] * mpp / 50.0  # a spatial trend so samples differ
    cells = ad.AnnData(X=X, obs=obs)
    cells.var_names = [f"f{i}" for i in range(n_features)]
    cells.obsm["spatial"] = xy
    set_slide_metadata(cells, "s1", mpp=mpp)
    if graph:
        tg.graph.delaunay(cells, max_edge_um=40)
    return cells
