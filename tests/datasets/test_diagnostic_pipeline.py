"""Through the real pipeline from pixels: the structural baseline sees structure and density, not stain.

A quick scikit-learn probe stands in for ``tg.eval.evaluate`` (leave-one-patient-out, balanced
accuracy); the colour control here is the mean and spread of each sample's RGB pixels. With only 32
samples per factor, a linear probe on all ~560 descriptors is noisy for the arrangement factor (about
0.65 balanced accuracy at this size, although single spacing descriptors separate the labels with
AUC > 0.9), so the structure check reads the arrangement part of ``X_structural`` (counts, spacing,
graph and Delaunay descriptors, i.e. without the per-nucleus feature aggregates).
"""

from __future__ import annotations

import numpy as np
import pytest

import tissuegraph as tg
from tissuegraph import _keys as K

pytestmark = pytest.mark.slow  # one pipeline run on 96 synthetic samples (~40-90 s on 2 busy cores)


def _probe(X, y, groups) -> float:
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.where(np.isfinite(X), X, np.nan)
    X = X[:, ~np.isnan(X).all(axis=0)]
    clf = make_pipeline(SimpleImputer(), StandardScaler(), PCA(n_components=min(8, X.shape[1]), random_state=0),
                        LogisticRegression(max_iter=5000))
    return float(cross_val_score(clf, X, y, groups=groups, cv=LeaveOneGroupOut(), scoring="balanced_accuracy").mean())


@pytest.fixture(scope="module")
def built():
    ds = tg.datasets.diagnostic_benchmark(factor=["structure", "density", "stain"], n_samples=32, size_um=112.0,
                                          n_patients=4, seed=0, progress_bar=False)
    cells, samples, _ = tg.bench.build(ds, segmenter="watershed", progress=False)
    colour = []
    for r in ds.regions:
        x0, y0, x1, y1 = (int(round(v + 0.5)) for v in r.bounds)
        px = ds.image[y0:y1, x0:x1].reshape(-1, 3).astype(float)
        colour.append(np.r_[px.mean(axis=0), px.std(axis=0)])
    return ds, cells, samples, np.array(colour)


def test_samples_come_from_the_pipeline(built):
    ds, cells, samples, _ = built
    assert list(samples.obs_names) == list(ds.obs.index)
    assert samples.obsm[K.obsm.structural].dtype == np.float32
    rec = samples.uns["representations"][K.obsm.structural]
    assert rec["family"] == "structural" and rec["learned"] is False
    # no graph edge joins two sample images of the mosaic
    A = cells.obsp[K.obsp.connectivities()].tocoo()
    tile = cells.obs["mosaic_tile"].to_numpy()
    assert (tile[A.row] == tile[A.col]).all()
    # segmentation found roughly the true nuclei
    ratio = samples.obs[K.obs.n_cells] / samples.obs["n_true"]
    assert 0.7 < float(np.median(ratio)) < 1.3


def _arrangement_columns(cells, samples) -> np.ndarray:
    names = [str(n) for n in samples.uns["X_structural_names"]]
    per_nucleus = tuple(f"{v}__" for v in cells.var_names)
    return np.array([not n.startswith(per_nucleus) for n in names])


@pytest.mark.parametrize("factor, part, structural_ok, colour_ok", [
    ("density", "all", lambda s: s >= 0.85, None),
    ("structure", "arrangement", lambda s: s >= 0.75, lambda s: s <= 0.75),
    ("stain", "all", lambda s: s <= 0.72, lambda s: s >= 0.95),
    ("stain", "arrangement", lambda s: s <= 0.72, None),
])
def test_what_each_representation_sees(built, factor, part, structural_ok, colour_ok):
    ds, cells, samples, colour = built
    m = (samples.obs["factor"] == factor).to_numpy()
    y = samples.obs[K.obs.label][m].astype(str).to_numpy()
    g = samples.obs[K.obs.patient][m].to_numpy()
    X = np.asarray(samples.obsm[K.obsm.structural])
    if part == "arrangement":
        cols = _arrangement_columns(cells, samples)
        assert 20 < cols.sum() < 80
        X = X[:, cols]
    s = _probe(X[m], y, g)
    c = _probe(colour[m], y, g)
    print(f"{factor} ({part}): structural {s:.3f} colour {c:.3f}")
    assert structural_ok(s), f"{factor}: structural balanced accuracy {s:.3f}"
    if colour_ok is not None:
        assert colour_ok(c), f"{factor}: colour balanced accuracy {c:.3f}"
