"""Slide analysis through the Python API, on the built-in synthetic H&E slide (no downloads).

slide -> nuclei -> features -> cell graph -> samples -> structural descriptors (tg.pipeline.demo),
then cellular niches, neighbourhood enrichment and Moran's I on the cells, pictures and the report.

    python examples/slide_analysis.py            # TG_EXAMPLE_SIZE=1024 for a quicker run
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

sys.path.insert(0, str(Path(__file__).parent))
import tissuegraph as tg  # noqa: E402
from _common import OUT, SIZE  # noqa: E402


def main() -> None:
    out = OUT / "run"
    # 1. the whole pipeline on a synthetic slide with ground truth (writes cells.h5ad, samples.h5ad,
    #    nuclei.parquet, manifest.json and report.html into `out`)
    result = tg.pipeline.demo(out, size=SIZE, segmenter="watershed", seed=0)
    cells, samples, nuclei = result.cells, result.samples, result.nuclei
    print(f"{cells.n_obs} nuclei, {samples.n_obs} samples; centroid F1 vs truth "
          f"{result.manifest['demo'].get('f1', float('nan')):.3f}")

    # 2. cellular niches: nucleus features averaged over 2-hop graph neighbourhoods, then Leiden
    features = [f for f in ("area_um2", "eccentricity", "mean_intensity_hematoxylin", "solidity")
                if f in cells.var_names] or list(cells.var_names[:4])
    tg.tl.niches(cells, features=features, n_hops=2, resolution=0.3, seed=0)
    print("niches:", dict(cells.obs["niche"].value_counts().sort_index()))

    # 3. which niches touch which (permutation z-scores), and spatial autocorrelation of features
    tg.tl.nhood_enrichment(cells, cluster_key="niche", n_perms=200, seed=0)
    tg.tl.morans_i(cells, features=features)
    print(cells.uns["moranI"][["I", "pval_norm"]].round(3))

    # 4. pictures
    slide = tg.io.open_slide(result.manifest["input"]["path"])
    tg.pl.slide_overlay(cells, slide=slide, color="niche", samples=samples, save=out / "overlay.png", show=False)
    x, y = cells.obsm["spatial"][cells.n_obs // 2]
    tg.pl.slide_overlay(cells, slide=slide, nuclei=nuclei, color="niche", region=(x - 150, y - 150, x + 150, y + 150),
                        mpp=0.5, save=out / "overlay_zoom.png", show=False)
    tg.pl.nhood_enrichment(cells, cluster_key="niche", save=out / "nhood_enrichment.png", show=False)
    tg.pl.segmentation_grid(slide, nuclei=nuclei, n_tiles=6, save=out / "segmentation.png", show=False)
    cells.write_h5ad(out / "cells.h5ad")  # keep the niches for the downstream example

    # 5. the report again, now with the niches in the overlay
    path = tg.report.write_report(out, cells=cells, samples=samples, nuclei=nuclei, slide=slide)
    print(f"pictures and {path} written")


if __name__ == "__main__":
    main()
