"""The cell-culture path: plate images -> single cells -> per-well profiles -> mAP / NSC / NSCB.

The built-in synthetic screen (five mechanisms, batch, plate and edge-well effects, DMSO controls) goes
through nuclei segmentation (the classical watershed here, to stay quick; StarDist is the default of
``tg.culture.single_cells``), CellProfiler-style per-cell features, well medians, per-plate normalisation
against DMSO and feature selection, then treatment profiles scored by replicate / mechanism retrieval and
NSC / NSCB; the plate heatmap shows the cell count of every well.

    python examples/culture_path.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np  # noqa: E402

import tissuegraph as tg  # noqa: E402
from _common import OUT  # noqa: E402


def main() -> None:
    out = OUT / "culture"
    out.mkdir(parents=True, exist_ok=True)
    plate = tg.culture.synthetic_plate(n_batches=2, plates_per_batch=1, rows=4, columns=6, size=128, seed=0)
    cells = tg.culture.single_cells(plate, nuclei="watershed", mpp=plate.mpp)        # cells AnnData
    wells = tg.culture.aggregate(cells, method="median")                             # wells AnnData
    print(f"{cells.n_obs:,} cells x {cells.n_vars} features -> {wells.n_obs} wells")
    tg.pl.plate_heatmap(wells.obs, value="n_cells", plate=str(wells.obs["plate"].iloc[0]),
                        save=out / "plate_n_cells.png", show=False)

    tg.culture.normalize(wells, method="mad_robustize", by="plate", controls="is_control")
    X = wells.obsm["X_profile"].astype(float)
    wells.obsm["X_profile"] = np.where(np.isfinite(X), X, np.nan).astype(np.float32)
    tg.culture.select_features(wells, operations=["missing", "variance", "correlation"], na_cutoff=0.0)
    treated = ~wells.obs["is_control"].to_numpy(bool)
    treat = tg.culture.consensus(wells, by=["compound"], rows=treated)                  # treatment medians
    T, moa = treat.obsm["X_profile"], treat.obs["moa"]
    print(tg.eval.mean_average_precision(T, moa.astype(str).to_numpy(), metric="spearman", null_size=500)
          .round(3).to_string())
    nsc = tg.eval.nsc(T, moa, compound=treat.obs["compound"], metric="spearman")
    nscb = tg.eval.nscb(T, moa, compound=treat.obs["compound"], batch=treat.obs["batch"], metric="spearman")
    print(f"NSC {nsc:.3f}; NSCB " + (f"{nscb:.3f}" if np.isfinite(nscb) else
                                      "not defined here (every compound's wells span both batches)"))
    print(f"plate heatmap -> {out / 'plate_n_cells.png'}")


if __name__ == "__main__":
    main()
