"""Bootstrap intervals and paired differences."""

from __future__ import annotations

import numpy as np
import pytest

from tissuegraph import InputError
from tissuegraph.eval import bootstrap_ci, paired_difference
from tissuegraph.eval._stats import verdict


def test_bootstrap_mean_and_degenerate_cases():
    m, lo, hi = bootstrap_ci([1.0, 2.0, 3.0, np.nan], n_boot=500)
    assert m == pytest.approx(2.0) and 1.0 <= lo < 2.0 < hi <= 3.0
    assert bootstrap_ci([5.0]) == (5.0, 5.0, 5.0)
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    assert all(np.isnan(bootstrap_ci([np.nan])))
    with pytest.raises(InputError):
        bootstrap_ci([1.0, 2.0], level=1.5)
    # deterministic for a seed
    assert bootstrap_ci(np.arange(10.0), seed=3) == bootstrap_ci(np.arange(10.0), seed=3)


def test_bootstrap_covers_the_true_mean_at_about_the_nominal_rate():
    """200 simulated experiments of 15 values (the 5 splits x 3 seeds of a default evaluation) with a
    known mean: the 95 % (expanded percentile) interval must cover it in about 95 % of them
    ([0.9, 0.98]: the binomial spread of 200 simulations around 0.93-0.95)."""
    rng = np.random.default_rng(0)
    true = 0.7
    hits = 0
    for k in range(200):
        v = true + rng.normal(0, 0.05, 15)
        _, lo, hi = bootstrap_ci(v, n_boot=1000, seed=k)
        hits += lo <= true <= hi
    assert 0.9 <= hits / 200 <= 0.98


def test_bootstrap_interval_matches_normal_theory_for_larger_samples():
    rng = np.random.default_rng(1)
    v = rng.normal(0, 1, 400)
    m, lo, hi = bootstrap_ci(v, n_boot=4000)
    se = v.std(ddof=1) / np.sqrt(len(v))
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert (lo + hi) / 2 == pytest.approx(m, abs=0.2 * se)


def test_paired_difference_cancels_shared_variation_and_gives_verdicts():
    rng = np.random.default_rng(2)
    fold = rng.normal(0, 0.2, 15)  # hard / easy splits shared by both sides
    a = 0.8 + fold + rng.normal(0, 0.01, 15)
    b = 0.75 + fold + rng.normal(0, 0.01, 15)
    d = paired_difference(a, b)
    assert d["diff"] == pytest.approx(np.mean(a - b))
    assert d["verdict"] == "better" and d["ci_low"] > 0 and d["n"] == 15
    assert paired_difference(b, a)["verdict"] == "worse"
    same = paired_difference(a, a + rng.normal(0, 0.01, 15))
    assert same["verdict"] == "not distinguishable"
    # unpaired, the shared fold variation would hide the difference
    _, lo_a, hi_a = bootstrap_ci(a)
    _, lo_b, hi_b = bootstrap_ci(b)
    assert lo_a < hi_b  # overlapping marginal intervals
    # NaN units are dropped from both sides
    a2 = a.copy()
    a2[0] = np.nan
    assert paired_difference(a2, b)["n"] == 14
    with pytest.raises(InputError):
        paired_difference([1.0, 2.0], [1.0])


def test_verdict():
    assert verdict(0.01, 0.2) == "better"
    assert verdict(-0.2, -0.01) == "worse"
    assert verdict(-0.1, 0.1) == "not distinguishable"
    assert verdict(np.nan, np.nan) == "not distinguishable"
