"""NSC / NSCB (1-NN mechanism accuracy) and percent replicating: hand-worked values and references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tissuegraph import InputError
from tissuegraph.eval._profiling import nn_accuracy, nsc, nscb, percent_replicating


def _toy():
    # 6 treatments on a line; compound c1 has two doses
    X = np.array([[0.0, 1.0], [0.1, 1.0], [1.0, 0.1], [1.0, 0.0], [0.9, 0.2], [0.2, 1.0]])
    moa = ["A", "A", "B", "B", "B", "A"]
    compound = ["c1", "c1", "c2", "c3", "c4", "c5"]
    batch = [1, 2, 1, 2, 2, 1]
    return X, moa, compound, batch


def test_nsc_hand_worked():
    X, moa, compound, batch = _toy()
    acc, t = nsc(X, moa, compound=compound, return_predictions=True)
    # row 0 (c1): own compound (row 1) left out -> nearest is row 5 (A) -> right; every row finds its group
    assert t["neighbor"].tolist()[0] == 5
    assert acc == 1.0
    # NSCB also leaves out the batch: row 0 (batch 1) cannot use row 5 (batch 1) nor row 1 (c1)
    acc_b, tb = nscb(X, moa, compound=compound, batch=batch, return_predictions=True)
    # candidates of row 0: rows 3, 4 (batch 2, B) -> wrong; but no A candidate is left -> not scored
    assert not tb["scored"][0]
    # row 5 (c5, batch 1): candidates rows 1 (A, batch 2), 3, 4 -> nearest is row 1 -> right
    assert tb["neighbor"][5] == 1 and tb["correct"][5]
    # row 2 (c2, B, batch 1): candidates 1, 3, 4 -> nearest 3 (B) -> right
    assert tb["correct"][2]
    assert acc_b == pytest.approx(tb.loc[tb.scored, "correct"].mean())


def test_nn_accuracy_equals_sklearn_without_exclusion():
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    y = rng.integers(0, 4, 120)
    X += 1.5 * rng.normal(size=(4, 6))[y]
    # leave-one-out 1-NN on euclidean distance = nn_accuracy with only the query left out
    clf = KNeighborsClassifier(n_neighbors=2, algorithm="brute").fit(X, y)
    idx = clf.kneighbors(X, return_distance=False)
    other = np.where(idx[:, 0] == np.arange(len(X)), idx[:, 1], idx[:, 0])
    ref = float((y[other] == y).mean())
    assert nn_accuracy(X, y, metric="euclidean", block_size=17) == pytest.approx(ref)


def test_spearman_is_pearson_on_ranks():
    from scipy.stats import rankdata

    rng = np.random.default_rng(3)
    X = rng.lognormal(size=(40, 9))
    y = rng.integers(0, 3, 40)
    comp = np.arange(40) // 2
    a = nsc(X, y, compound=comp, metric="spearman", return_predictions=True)[1]
    b = nsc(rankdata(X, axis=1), y, compound=comp, metric="correlation", return_predictions=True)[1]
    np.testing.assert_array_equal(a["neighbor"], b["neighbor"])


def test_exclusion_lengths_checked():
    X, moa, compound, batch = _toy()
    with pytest.raises(InputError, match="exclude"):
        nsc(X, moa, compound=compound[:3])


def test_percent_replicating_hand_checked():
    rng = np.random.default_rng(0)
    n_groups, k, d = 30, 3, 20
    centres = rng.normal(size=(n_groups, d))
    y = np.repeat(np.arange(n_groups), k)
    strong = y < 15  # the first 15 groups replicate well, the rest are noise
    X = np.where(strong[:, None], centres[y] + 0.2 * rng.normal(size=(n_groups * k, d)),
                 rng.normal(size=(n_groups * k, d)))
    pr, t = percent_replicating(X, y, null_size=2000, seed=0)
    assert set(t.loc[t.replicating, "label"]) >= set(range(15))
    assert 50.0 <= pr <= 60.0
    # the median replicate correlation of group 0, by hand
    r = np.corrcoef(X[y == 0])
    assert t.set_index("label").loc[0, "median_similarity"] == pytest.approx(np.median(r[np.triu_indices(3, 1)]))
    # controls are not scored
    pr2, t2 = percent_replicating(X, y, null_size=200, seed=0, control=[0, 1])
    assert 0 not in set(t2["label"]) and len(t2) == n_groups - 2
    # deterministic
    assert percent_replicating(X, y, null_size=200, seed=4)[0] == percent_replicating(X, y, null_size=200, seed=4)[0]


def test_percent_replicating_needs_replicates():
    with pytest.raises(InputError, match="replicates"):
        percent_replicating(np.random.default_rng(0).normal(size=(5, 3)), list("abcde"))
