"""Small cells AnnData with spatially clustered cell types and a graph, for the tl tests."""

from __future__ import annotations

import numpy as np
import pytest


def make_cells(n=600, seed=0, k=4, graph="knn", extent=1000.0):
    """Points with cell types drawn from smooth spatial fields (so enrichment is real), features
    with spatial structure (f_smooth) and noise (f_noise), mpp 0.5."""
    import anndata as ad
    import pandas as pd

    import tissuegraph as tg
    from tissuegraph._anndata import set_slide_metadata

    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, extent, size=(n, 2))
    centres = rng.uniform(0, extent, size=(k, 2))
    d = ((pts[:, None, :] - centres[None]) ** 2).sum(-1)
    p = np.exp(-d / (2 * (extent / 4) ** 2))
    p /= p.sum(1, keepdims=True)
    types = np.array([rng.choice(k, p=pi) for pi in p])
    f_smooth = np.sin(pts[:, 0] / extent * 3) + 0.1 * rng.normal(size=n)
    f_noise = rng.normal(size=n)
    X = np.column_stack([f_smooth, f_noise, pts[:, 1] / extent]).astype(np.float32)
    a = ad.AnnData(X=X, obs=pd.DataFrame({"cell_type": pd.Categorical([f"t{t}" for t in types]),
                                          "slide": pd.Categorical(["s1"] * n)},
                                         index=[str(i + 1) for i in range(n)]),
                   var=pd.DataFrame(index=["f_smooth", "f_noise", "f_y"]))
    a.obsm["spatial"] = pts
    a.obs["area_um2"] = rng.uniform(10, 60, size=n)
    set_slide_metadata(a, "s1", mpp=0.5)
    if graph == "knn":
        tg.graph.knn(a, k=6)
    elif graph == "delaunay":
        tg.graph.delaunay(a)
    return a


@pytest.fixture
def cells():
    return make_cells()
