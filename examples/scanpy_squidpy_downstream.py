"""Downstream analysis of ``cells.h5ad`` with scanpy / squidpy, next to tissuegraph's own tl.

The cells AnnData keeps its graph under squidpy's key names (``obsp['spatial_connectivities']``), so
``squidpy.gr.*`` runs on it as is; tg.tl computes the same quantities sparsely and seeded.

    python examples/scanpy_squidpy_downstream.py     # uses the run of slide_analysis.py (or makes one)
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
warnings.filterwarnings("ignore", category=FutureWarning)

sys.path.insert(0, str(Path(__file__).parent))
import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402

import tissuegraph as tg  # noqa: E402
from _common import run_dir  # noqa: E402


def main() -> None:
    out = run_dir()
    cells = ad.read_h5ad(out / "cells.h5ad")
    print(cells)
    import scanpy as sc

    # scanpy on the nucleus features: PCA, then neighbours / UMAP / Leiden through tg.tl.embed
    sc.pp.scale(cells, max_value=10)
    sc.pp.pca(cells, n_comps=min(20, cells.n_vars - 1))
    tg.tl.embed(cells, use_rep="X_pca", n_neighbors=15, resolution=0.5, seed=0)
    print("feature clusters:", cells.obs["X_pca_leiden"].nunique())
    tg.pl.embedding(cells, basis="X_pca_umap", color="X_pca_leiden", save=out / "cells_umap.png", show=False)

    # neighbourhood enrichment of the feature clusters: tissuegraph and squidpy on the same input
    t0 = time.perf_counter()
    tg.tl.nhood_enrichment(cells, cluster_key="X_pca_leiden", n_perms=300, seed=0)
    t_tg = time.perf_counter() - t0
    try:
        import squidpy as sq
    except ImportError:
        print("squidpy is not installed; skipping the comparison")
        return
    t0 = time.perf_counter()
    theirs = sq.gr.nhood_enrichment(cells, cluster_key="X_pca_leiden", n_perms=300, seed=0, copy=True,
                                    show_progress_bar=False)
    t_sq = time.perf_counter() - t0
    ours = cells.uns["X_pca_leiden_nhood_enrichment"]
    r = np.corrcoef(np.ravel(ours["zscore"]), np.ravel(theirs.zscore))[0, 1]
    print(f"nhood_enrichment: counts identical {np.array_equal(ours['count'], theirs.counts)}, "
          f"z-score r = {r:.3f}; tissuegraph {t_tg:.2f}s, squidpy {t_sq:.2f}s (incl. numba compile)")

    # Moran's I of every feature: the same statistic
    tg.tl.morans_i(cells, key_added="tg_moran")
    sq.gr.spatial_autocorr(cells, mode="moran", show_progress_bar=False)
    both = cells.uns["tg_moran"][["I"]].join(cells.uns["moranI"][["I"]], rsuffix="_squidpy")
    print(both.head(8).round(4))
    assert np.allclose(both["I"], both["I_squidpy"], equal_nan=True, rtol=1e-5)

    # squidpy's plots read tissuegraph's result (same key and layout)
    sq.pl.nhood_enrichment(cells, cluster_key="X_pca_leiden", save=None)
    import matplotlib.pyplot as plt

    plt.savefig(out / "squidpy_nhood_from_tissuegraph.png")
    plt.close("all")


if __name__ == "__main__":
    main()
