"""No n x n matrix: retrieval and k-NN overlap on more than 10,000 samples stay below the memory of one.

tracemalloc sees every numpy/scikit-learn buffer (numpy reports its data allocations to it), so the peak
of traced memory during ``evaluate`` bounds the largest array any protocol materialised. An n x n
float64 similarity or distance matrix of 12,000 samples alone would take 1.15 GB (float32: 576 MB);
kNN, retrieval and k-NN overlap work in blocks, CKA in feature space, so the peak stays at a few
blocks.
"""

from __future__ import annotations

import tracemalloc

import anndata as ad
import numpy as np
import pandas as pd

import tissuegraph as tg


def test_evaluate_above_10000_samples_never_builds_n_by_n():
    n, d = 12_000, 8
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    obs = pd.DataFrame({"label": pd.Categorical([f"c{v}" for v in y]),
                        "patient": [f"p{v}" for v in rng.integers(0, 40, n)]}, index=[f"s{i}" for i in range(n)])
    a = ad.AnnData(obs=obs)
    centres = rng.normal(size=(3, d)) * 2
    a.obsm["X_a"] = (centres[y] + rng.normal(size=(n, d))).astype(np.float32)
    a.obsm["X_b"] = rng.normal(size=(n, d)).astype(np.float32)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        res = tg.eval.evaluate(a, label_key="label", task="retrieval", group_key="patient",
                               n_splits=2, seeds=(0,), knn_k=10, baseline=None, diagnostics=False,
                               similarity=True, n_boot=200, n_jobs=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n_by_n_float32 = n * n * 4  # 549 MiB: the smallest n x n matrix there could be
    # measured ~310 MiB: the k-NN overlap's 128 MiB distance chunks over all 12,000 samples (with their
    # argpartition copies) and the 2048-query blocks of a 6,000-sample test fold in retrieval
    assert peak < n_by_n_float32, f"peak traced memory {peak / 2**20:.0f} MiB"
    # and the protocols ran: the informative representation retrieves its label, the noise one does not
    s = a.uns["tg_eval"]["summary"].set_index(["representation", "protocol", "metric"])["mean"]
    assert s[("X_a", "retrieval", "mAP")] > s[("X_b", "retrieval", "mAP")] + 0.2
    assert set(res["protocol"]) == {"retrieval"}
    ov = a.uns["tg_eval"]["knn_overlap"]
    assert abs(float(ov.loc["X_a", "X_a"]) - 1.0) < 1e-9 and float(ov.loc["X_a", "X_b"]) < 0.2
    cka = a.uns["tg_eval"]["cka"]
    assert abs(float(cka.loc["X_a", "X_a"]) - 1.0) < 1e-6
