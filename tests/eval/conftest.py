"""Constructed samples AnnData with representations of known quality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def make_samples(n: int = 240, *, n_patients: int = 12, n_classes: int = 3, seed: int = 0, nan_structural: bool = True):
    """Samples with a label, patients (groups), slides (2 patients each), and representations:

    - ``X_structural``: weakly informative about the label (non-learned; a few NaN, as descriptors have);
    - ``X_gnn_gin_features_dgi`` (trained) and its untrained twins ``..._untrained_s0/_s1``: strongly
      informative vs pure noise;
    - ``X_cnn_resnet_supervised``: encodes the slide, not the label (a shortcut);
    - ``X_color``: the slide's stain colour (non-learned).
    """
    import anndata as ad

    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(n_patients), n // n_patients)
    label = rng.integers(0, n_classes, n)
    slide = patient // 2
    onehot = np.eye(n_classes)[label]
    obs = pd.DataFrame({"label": pd.Categorical([f"c{v}" for v in label]), "patient": [f"p{v}" for v in patient],
                        "slide": [f"s{v}" for v in slide], "n_cells": rng.poisson(60, n).astype(float)},
                       index=[f"sample{i}" for i in range(n)])
    a = ad.AnnData(obs=obs)
    S = np.c_[onehot * 0.8 + rng.normal(0, 1, (n, n_classes)), obs["n_cells"].to_numpy()[:, None] / 10
              + rng.normal(0, 0.1, (n, 1)), rng.normal(size=(n, 4))]
    if nan_structural:
        S[::19, -1] = np.nan
    a.obsm["X_structural"] = S.astype(np.float32)
    a.uns["X_structural_names"] = np.array([*(f"f{k}" for k in range(n_classes)), "n_cells", "density_per_mm2",
                                            "area_um2__mean", "z1", "z2"], dtype=object)
    a.obsm["X_gnn_gin_features_dgi"] = np.c_[onehot * 3 + rng.normal(0, 1, (n, n_classes)),
                                             rng.normal(size=(n, 13))].astype(np.float32)
    a.obsm["X_gnn_gin_features_untrained_s0"] = rng.normal(size=(n, 16)).astype(np.float32)
    a.obsm["X_gnn_gin_features_untrained_s1"] = rng.normal(size=(n, 16)).astype(np.float32)
    n_sl = slide.max() + 1
    a.obsm["X_cnn_resnet_supervised"] = (np.eye(n_sl)[slide] * 2 + rng.normal(0, 0.5, (n, n_sl))).astype(np.float32)
    a.obsm["X_color"] = (np.eye(n_sl)[slide] @ rng.normal(size=(n_sl, 3)) + rng.normal(0, 0.05, (n, 3))
                         ).astype(np.float32)
    rec = {"family": "gnn", "learned": True, "objective": None, "architecture": "gin-3x64", "inputs": "features",
           "layer": "None", "seed": 0, "twin_group": "gnn:gin:features", "weights_sha256": "None", "params": {}}
    a.uns["representations"] = {
        "X_structural": {**rec, "family": "structural", "learned": False, "trained": False, "twin_group": "structural"},
        "X_color": {**rec, "family": "color", "learned": False, "trained": False, "twin_group": "color"},
        "X_gnn_gin_features_dgi": {**rec, "trained": True, "objective": "dgi"},
        "X_gnn_gin_features_untrained_s0": {**rec, "trained": False},
        "X_gnn_gin_features_untrained_s1": {**rec, "trained": False, "seed": 1},
        "X_cnn_resnet_supervised": {**rec, "family": "cnn", "trained": True, "twin_group": "cnn:resnet"},
    }
    return a


@pytest.fixture
def samples():
    return make_samples()
