"""Grouped, stratified, seeded splits."""

from __future__ import annotations

import numpy as np
import pytest

from tissuegraph import InputError
from tissuegraph.eval import make_splits


@pytest.mark.parametrize("stratify", [True, False])
def test_grouped_splits_never_leak_a_group(stratify):
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 17, 400)
    y = rng.integers(0, 3, 400)
    splits = make_splits(400, y=y, groups=groups, n_splits=5, seeds=(0, 1, 2), stratify=stratify)
    assert len(splits) == 15
    for seed in (0, 1, 2):
        folds = [s for s in splits if s.seed == seed]
        # every sample is tested exactly once per seed
        assert np.array_equal(np.sort(np.concatenate([s.test for s in folds])), np.arange(400))
        for s in folds:
            assert not set(groups[s.train]) & set(groups[s.test])
            assert len(np.intersect1d(s.train, s.test)) == 0
    # seeds shuffle differently
    assert not np.array_equal(splits[0].test, splits[5].test)
    # deterministic
    again = make_splits(400, y=y, groups=groups, n_splits=5, seeds=(0,), stratify=stratify)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(again, splits[:5]))


def test_stratification_balances_classes():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(300, int), np.ones(100, int)]
    splits = make_splits(400, y=y, n_splits=4, seeds=(0,))
    for s in splits:
        assert np.mean(y[s.test]) == pytest.approx(0.25, abs=0.01)


def test_a_class_missing_from_training_is_reported():
    groups = np.repeat(np.arange(6), 10)
    y = np.zeros(60, int)
    y[groups == 5] = 1  # class 1 lives in one group only
    splits = make_splits(60, y=y, groups=groups, n_splits=3, seeds=(0,))
    missing = [s for s in splits if s.missing_train]
    assert len(missing) == 1 and missing[0].missing_train == (1,)
    assert 1 in set(y[missing[0].test])


def test_too_few_groups_and_bad_arguments():
    with pytest.raises(InputError, match="distinct group"):
        make_splits(20, groups=np.repeat([0, 1, 2], [7, 7, 6]), n_splits=5)
    with pytest.raises(InputError, match="n_splits"):
        make_splits(20, n_splits=1)
    with pytest.raises(InputError):
        make_splits(3, n_splits=5)
