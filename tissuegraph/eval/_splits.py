"""Grouped, stratified, seeded cross-validation splits (scikit-learn splitters, checked)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._errors import InputError
from .._logging import logger

__all__ = ["Split", "make_splits"]


@dataclass(frozen=True)
class Split:
    seed: int
    split: int
    train: np.ndarray
    test: np.ndarray
    missing_train: tuple = ()  # classes in the data that this training set lacks
    missing_test: tuple = ()  # classes in the data that this test set lacks


def make_splits(n: int, *, y=None, groups=None, n_splits: int = 5, seeds=(0, 1, 2),
                stratify: bool = True) -> list[Split]:
    """K-fold splits for every seed; grouped by ``groups`` (no group in both train and test).

    ``StratifiedGroupKFold`` when there are groups and ``stratify`` (classification),
    ``GroupKFold(shuffle=True)`` with groups otherwise, ``StratifiedKFold`` / ``KFold`` without groups.
    Every splitter shuffles with the seed. A split whose training set lacks a class is kept and
    recorded in ``missing_train`` (and logged): hiding it would flatter the scores.
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    if int(n_splits) != n_splits or n_splits < 2:
        raise InputError(f"n_splits must be an integer >= 2, got {n_splits!r}.")
    n_splits = int(n_splits)
    X = np.zeros((n, 1))
    classes = None
    if y is not None and stratify:
        y = np.asarray(y)
        classes = np.unique(y)
    if groups is not None:
        groups = np.asarray(groups)
        n_groups = len(np.unique(groups))
        if n_groups < n_splits:
            raise InputError(f"Only {n_groups} distinct group(s) in the group column but n_splits={n_splits}: "
                             "every test fold needs at least one group of its own. Lower n_splits (>= 2), or "
                             "use a finer group column (e.g. slide instead of patient), or group_key=None if "
                             "samples of one group are really independent.")
    elif n < n_splits:
        raise InputError(f"{n} samples cannot be split into n_splits={n_splits} folds.")
    if classes is not None and groups is None:
        smallest = np.bincount(np.unique(y, return_inverse=True)[1]).min()
        if smallest < n_splits:
            logger.warning("The smallest class has %d sample(s) < n_splits=%d: some test folds will lack it.",
                           smallest, n_splits)
    out: list[Split] = []
    for seed in seeds:
        seed = int(seed)
        if groups is not None and classes is not None:
            it = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(X, y, groups)
        elif groups is not None:
            it = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(X, None, groups)
        elif classes is not None:
            import warnings

            with warnings.catch_warnings():  # the small-class warning is logged above in our words
                warnings.simplefilter("ignore", UserWarning)
                it = list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(X, y))
        else:
            it = KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(X)
        for k, (tr, te) in enumerate(it):
            if groups is not None:
                leak = np.intersect1d(groups[tr], groups[te])
                assert len(leak) == 0, f"group(s) {leak[:5]} in both training and test data"
            miss_tr: tuple = ()
            miss_te: tuple = ()
            if classes is not None:
                miss_tr = tuple(np.setdiff1d(classes, y[tr]).tolist())
                miss_te = tuple(np.setdiff1d(classes, y[te]).tolist())
                if miss_tr:
                    logger.warning("seed %d split %d: class(es) %s are absent from the training data; scores of "
                                   "this split count them as never predicted.", seed, k, list(miss_tr))
            out.append(Split(seed, k, np.sort(tr), np.sort(te), miss_tr, miss_te))
    return out
