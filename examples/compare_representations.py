"""Comparing representations of the same samples: does a representation beat the structural baseline?

Uses what a run has: the cells and their graph, cut into 48 µm grid patches with ``X_structural`` (graph
descriptors of each patch) and, when the modules are
installed, learned / untrained representations from ``tg.emb`` and the full evaluation of ``tg.eval``.
Without them it does the core check by hand: cross-validated balanced accuracy of a k-NN and a
logistic probe for the dominant ground-truth region of each patch, structural baseline against a
plain colour baseline (mean RGB of the patch) and a random (untrained) projection of the descriptors.

    python examples/compare_representations.py      # uses the run of slide_analysis.py (or makes one)
"""

from __future__ import annotations

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


def mean_rgb(samples, slide) -> np.ndarray:
    out = np.empty((samples.n_obs, 3), np.float32)
    for i, (a, b, c, d) in enumerate(samples.obs[["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].to_numpy()):
        img = slide.read_region((int(a), int(b)), 0, (max(1, int(c - a)), max(1, int(d - b))))
        out[i] = img.reshape(-1, img.shape[-1])[:, :3].mean(axis=0)
    return out


def main() -> None:
    out = run_dir()
    cells = ad.read_h5ad(out / "cells.h5ad")
    # small grid patches (48 µm) so that even a small synthetic slide gives enough samples to compare
    samples = tg.graph.grid_samples(cells, size_um=48)
    tg.graph.descriptors(cells, samples)
    manifest = __import__("json").loads((out / "manifest.json").read_text())
    slide = tg.io.open_slide(manifest["input"]["path"])
    truth = pd.read_csv(next((Path(manifest["input"]["path"]).parent).glob("*.nuclei.csv")))
    samples = samples[np.isfinite(samples.obsm["X_structural"]).all(axis=1)].copy()
    samples.obs["label"] = pd.Categorical(patch_labels(samples, truth))
    samples.obsm["X_color"] = mean_rgb(samples, slide)
    rng = np.random.default_rng(0)
    Xs = samples.obsm["X_structural"]
    Xs = (Xs - Xs.mean(0)) / np.where(Xs.std(0) > 0, Xs.std(0), 1)
    samples.obsm["X_random_projection_s0"] = (Xs @ rng.normal(size=(Xs.shape[1], 32))).astype(np.float32)
    print(samples.obs["label"].value_counts())

    try:  # the full evaluation, once tg.eval is installed (bootstrap intervals, gaps, CKA, probes)
        tg.eval.evaluate(samples, label_key="label")
        print(samples.uns["tg_eval"]["gaps"])
        tg.pl.baseline_gaps(samples, save=out / "gaps.png", show=False)
        return
    except (ImportError, AttributeError, TypeError) as exc:
        print(f"tg.eval not available here ({type(exc).__name__}: {exc}); comparing by hand")

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = samples.obs["label"].astype(str).to_numpy()
    counts = pd.Series(y).value_counts()
    y = np.where(pd.Series(y).map(counts).to_numpy() >= 3, y, "other")  # rare regions pooled
    keep = pd.Series(y).map(pd.Series(y).value_counts()).to_numpy() >= 2
    y = y[keep]
    n_splits = int(min(5, pd.Series(y).value_counts().min()))
    if len(np.unique(y)) < 2 or n_splits < 2:
        print("too few labelled patches for cross-validation at this slide size; use a larger TG_EXAMPLE_SIZE")
        return
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=0)
    rows = []
    for rep in ("X_structural", "X_color", "X_random_projection_s0"):
        X = samples.obsm[rep][keep]
        for name, clf in (("knn", KNeighborsClassifier(5)), ("logistic", LogisticRegression(max_iter=2000))):
            s = cross_val_score(make_pipeline(StandardScaler(), clf), X, y, cv=cv, scoring="balanced_accuracy")
            rows.append({"representation": rep, "protocol": name, "metric": "balanced_accuracy",
                         "mean": s.mean(), "ci_low": max(0.0, s.mean() - 1.96 * s.std(ddof=1) / np.sqrt(len(s))),
                         "ci_high": min(1.0, s.mean() + 1.96 * s.std(ddof=1) / np.sqrt(len(s))), "n": len(s)})
    summary = pd.DataFrame(rows)
    print(summary.round(3).to_string(index=False))
    samples.uns["tg_eval"] = {"summary": summary}
    tg.pl.eval_scores(samples, protocol="logistic", save=out / "scores.png", show=False)
    for rep in ("X_structural", "X_color"):
        tg.pl.embedding(samples, basis=rep, color="label", save=out / f"{rep}_pc.png", show=False)


if __name__ == "__main__":
    main()
