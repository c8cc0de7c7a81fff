"""Comparing representations of the same samples: does a learned one beat the structural baseline?

Cuts the run's cells into 48 µm grid patches labelled by their dominant ground-truth region, adds the
structural baseline (``X_structural``), the colour control, untrained GIN twins (3 seeds, also on topology
only), a GIN trained by deep graph infomax on the same patches, and an untrained ResNet-18 twin, then
evaluates all of them on the same splits with ``tg.eval.evaluate``: scores with intervals, the baseline
gaps (trained GIN against ``X_structural`` and against its untrained twins) with verdicts, and the plots.

    python examples/compare_representations.py      # uses the run of slide_analysis.py (or makes one)
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
warnings.filterwarnings("ignore", category=FutureWarning)

sys.path.insert(0, str(Path(__file__).parent))
import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import tissuegraph as tg  # noqa: E402
from _common import run_dir  # noqa: E402


def patch_labels(samples, truth: pd.DataFrame) -> np.ndarray:
    """Dominant ground-truth region of the true nuclei inside each grid patch."""
    x0, y0, x1, y1 = (samples.obs[c].to_numpy() for c in ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"))
    labels = []
    for i in range(samples.n_obs):
        m = (truth.x >= x0[i]) & (truth.x < x1[i]) & (truth.y >= y0[i]) & (truth.y < y1[i])
        labels.append(truth.loc[m, "region"].mode().iloc[0] if m.any() else "none")
    return np.asarray(labels)


def main() -> None:
    out = run_dir()
    cells = ad.read_h5ad(out / "cells.h5ad")
    # small grid patches (48 µm) so that even a small synthetic slide gives enough samples to compare
    samples = tg.graph.grid_samples(cells, size_um=48)
    tg.graph.descriptors(cells, samples)
    manifest = json.loads((out / "manifest.json").read_text())
    slide = manifest["input"]["path"]
    truth = pd.read_csv(next(Path(slide).parent.glob("*.nuclei.csv")))
    y = patch_labels(samples, truth)
    counts = pd.Series(y).value_counts()
    y = np.where(pd.Series(y).map(counts).to_numpy() >= 6, y, "other")  # rare regions pooled
    keep = pd.Series(y).map(pd.Series(y).value_counts()).to_numpy() >= 6
    samples = samples[keep].copy()
    samples.obs["label"] = pd.Categorical(y[keep])
    print(samples.obs["label"].value_counts().to_string())
    if samples.obs["label"].nunique() < 2:
        print("too few labelled patches at this slide size; use a larger TG_EXAMPLE_SIZE")
        return

    tg.emb.color(samples, slide, mpp=1.0)                                     # X_color
    tg.emb.gnn_twins(samples, cells, model="gin", seeds=(0, 1, 2))          # X_gnn_gin_*_untrained_s*
    gin = tg.emb.train_gnn(samples, cells, objective="dgi", epochs=5, seed=0)
    tg.emb.gnn(samples, cells, model=gin)                                     # X_gnn_gin_features_dgi
    tg.emb.patch_twins(samples, slide, model="resnet18", seeds=(0,), mpp=1.0, size=48)

    tg.eval.evaluate(samples, label_key="label", task="classification", n_splits=3, seeds=(0, 1))
    print(tg.eval.summarize(samples))
    tg.pl.eval_scores(samples, save=out / "scores.png", show=False)
    tg.pl.baseline_gaps(samples, save=out / "gaps.png", show=False)
    tg.pl.cka_heatmap(samples, save=out / "cka.png", show=False)
    print(f"plots -> {out}/scores.png, gaps.png, cka.png")


if __name__ == "__main__":
    main()
