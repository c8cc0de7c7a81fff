"""Average precision and mAP: hand-worked values, and equality with copairs on the same input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tissuegraph import InputError
from tissuegraph.eval._retrieval import _bh, _random_ap, average_precision, mean_average_precision


def _angles(deg):
    a = np.deg2rad(np.asarray(deg, dtype=float))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def test_hand_worked_ap():
    # query 0 at 0 deg; the others at 10, 20, 30, 40 deg are ranked in that order
    X = _angles([0, 10, 20, 30, 40])
    ap = average_precision(X, ["a", "b", "a", "b", "a"])
    # query 0: positives (rows 2, 4) at ranks 2 and 4 -> (1/2 + 2/4) / 2
    assert ap[0] == pytest.approx(0.5, abs=1e-12)
    # query 1 (10 deg): ranking 0 (10), 2 (10), 3 (20), 4 (30) -> tie between 0 and 2 (both negatives)
    # positive row 3 is at rank 3 -> AP 1/3
    assert ap[1] == pytest.approx(1 / 3, abs=1e-12)
    # query 4 (40 deg): 3 (10, neg), 2 (20, pos), 1 (30, neg), 0 (40, pos) -> (1/2 + 2/4) / 2
    assert ap[4] == pytest.approx(0.5, abs=1e-12)


def test_ties_rank_positives_first_and_singletons_are_nan():
    # rows 1 (positive) and 2 (negative) are the same vector: tied, the positive comes first (as copairs)
    X = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    ap = average_precision(X, [0, 0, 1, 2])
    assert ap[0] == 1.0
    assert np.isnan(ap[2]) and np.isnan(ap[3])


def test_euclidean_and_correlation_hand_worked():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    ap = average_precision(X, [0, 1, 0, 1], metric="euclidean")
    # query 0: distances 1 (neg), 3 (pos), 2 (neg) -> positive at rank 3
    assert ap[0] == pytest.approx(1 / 3)
    # correlation ignores each row's offset and scale
    Y = np.array([[1.0, 2.0, 4.0], [10.0, 20.0, 40.0], [4.0, 2.0, 1.0], [3.0, 4.0, 6.0]])
    ap = average_precision(Y, [0, 1, 1, 0], metric="correlation")
    assert ap[0] == 1.0 and ap[3] == 1.0  # rows 0 and 3 are perfectly correlated with 1, ... the positive first


def test_blocks_do_not_change_the_result():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(257, 7))
    lab = rng.integers(0, 40, 257)
    a = average_precision(X, lab, block_size=2048)
    b = average_precision(X, lab, block_size=13)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad, msg", [
    (np.array([[np.nan, 1.0], [1.0, 2.0]]), "NaN"),
    (np.zeros((3, 2)), "all-zero"),
    (np.ones(4), "2-D"),
])
def test_bad_input(bad, msg):
    with pytest.raises(InputError, match=msg):
        average_precision(bad, np.arange(len(bad)) % 2)


def test_bad_labels_and_options():
    X = np.eye(3)
    with pytest.raises(InputError, match="2 entries"):
        average_precision(X, [0, 1])
    with pytest.raises(InputError, match="missing"):
        average_precision(X, ["a", None, "a"])
    with pytest.raises(InputError, match="metric"):
        average_precision(X, [0, 0, 1], metric="manhattan")
    with pytest.raises(InputError, match="null_size"):
        mean_average_precision(X, [0, 0, 1], null_size=0)


def test_bh_equals_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = np.random.default_rng(0).random(57) ** 2
    p[3] = p[7]
    np.testing.assert_allclose(_bh(p), multipletests(p, method="fdr_bh")[1], atol=1e-15)


def _data(seed=0, n=300, d=12, groups=60, integer=False):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, groups, n).astype(str)
    codes = pd.factorize(lab)[0]
    if integer:  # many exact ties
        X = rng.integers(0, 3, size=(n, 3)).astype(float)
        X[X.sum(axis=1) == 0, 0] = 1.0
        X[np.ptp(X, axis=1) == 0, 0] += 1.0  # no constant rows (their correlation is undefined)
    else:
        X = rng.normal(size=(n, d)) + 0.7 * rng.normal(size=(groups, d))[codes]
        X[5] = X[6]
        X[7] = X[6]  # duplicate rows: exact ties across labels
    return X, lab


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "correlation"])
@pytest.mark.parametrize("integer", [False, True])
def test_equal_to_copairs(metric, integer, tmp_path):
    cmap = pytest.importorskip("copairs.map")
    X, lab = _data(integer=integer)
    meta = pd.DataFrame({"label": lab})
    ref = cmap.average_precision(meta, X, pos_sameby=["label"], pos_diffby=[], neg_sameby=[],
                                 neg_diffby=["label"], distance=metric, progress_bar=False)
    ap = average_precision(X, lab, metric=metric)
    r = ref["average_precision"].to_numpy()
    np.testing.assert_array_equal(np.isnan(ap), np.isnan(r))
    assert np.nanmax(np.abs(ap - r)) < 1e-9

    m_ref = cmap.mean_average_precision(ref, sameby=["label"], null_size=500, threshold=0.05, seed=3,
                                        progress_bar=False, cache_dir=tmp_path)
    m = mean_average_precision(X, lab, metric=metric, null_size=500, seed=3)
    j = m_ref.merge(m, on="label", validate="1:1")
    assert len(j) == len(m_ref) == len(m)
    assert np.abs(j["mean_average_precision"] - j["mAP"]).max() < 1e-9
    assert np.abs(j["mean_normalized_average_precision"] - j["mAP_normalized"]).max() < 1e-9
    np.testing.assert_array_equal(j["p_value_x"].to_numpy(), j["p_value_y"].to_numpy())
    np.testing.assert_allclose(j["corrected_p_value"], j["q_value"], atol=1e-12)
    assert (j["below_corrected_p"] == j["below_q"]).all() and (j["below_p_x"] == j["below_p_y"]).all()
    # precomputed AP gives the same table
    m2 = mean_average_precision(X, lab, metric=metric, null_size=500, seed=3, ap=ap)
    pd.testing.assert_frame_equal(m, m2)


@pytest.mark.parametrize("integer", [False, True])
def test_ap_both_rank_paths_equal_copairs(integer):
    # labels with 2..12 rows take the counting passes, larger ones the binary search (_FEW_POSITIVES = 12);
    # integer profiles give many exact ties between positives, negatives and the query itself
    cmap = pytest.importorskip("copairs.map")
    from tissuegraph.eval._retrieval import _FEW_POSITIVES

    X, _ = _data(seed=7, n=260, integer=integer)
    sizes = [2, 3, 5, _FEW_POSITIVES, _FEW_POSITIVES + 1, _FEW_POSITIVES + 2, 40, 60]
    lab = np.repeat([f"g{k}" for k in range(len(sizes))], sizes)
    lab = np.concatenate([lab, np.array(["solo"] * (260 - lab.size))]).astype(object)
    lab[-1] = "single"  # a label with one row: AP NaN
    lab = np.random.default_rng(3).permutation(lab)
    for metric in ("cosine", "euclidean"):
        ref = cmap.average_precision(pd.DataFrame({"label": lab}), X, pos_sameby=["label"], pos_diffby=[],
                                     neg_sameby=[], neg_diffby=["label"], distance=metric, progress_bar=False)
        ap = average_precision(X, lab, metric=metric)
        r = ref["average_precision"].to_numpy()
        np.testing.assert_array_equal(np.isnan(ap), np.isnan(r))
        assert np.nanmax(np.abs(ap - r)) < 1e-9


@pytest.mark.parametrize("num_pos, total, seed", [
    (1, 5, 0), (3, 70, 11), (2, 2, 1), (6, 6, 2), (5, 6, 3), (25, 300, 8095),
    (8, 100, 1), (9, 1000, 2), (33, 64, 9),       # 8+ positives: numpy's 8-accumulator float32 sum
    (130, 1000, 4), (300, 2000, 5),               # > 128 positives: numpy's pairwise split; > 32: np.sort path
    (4, 70000, 5), (129, 70000, 6), (1, 65536, 4),  # total >= 2**16: uint32 positions, AP in float64
    (2, 65535, 7),                                # the last uint16 total
])
def test_null_equals_copairs(num_pos, total, seed):
    compute = pytest.importorskip("copairs.compute")
    # the kernel replays numpy's PCG64 in 4 interleaved lanes through buffer refills of 512 draws: 300 null
    # samples of these sizes cross many refills and every power-of-two mask band
    ref = compute.random_ap(300, num_pos, total, seed)
    got = _random_ap(300, num_pos, total, seed)
    assert got.dtype == ref.dtype == np.float32
    np.testing.assert_array_equal(got, ref)


def test_map_finds_the_signal():
    X, lab = _data(seed=2, n=200, groups=40)
    X[lab == "0"] += 50 * np.random.default_rng(0).normal(size=X.shape[1])  # label "0" is far apart
    m = mean_average_precision(X, lab, null_size=300, seed=0).set_index("label")
    assert m.loc["0", "mAP"] == pytest.approx(1.0)
    assert m.loc["0", "p_value"] == pytest.approx(1 / 301)


def test_threads_do_not_change_the_result():
    X, lab = _data(seed=4)
    lab = lab.copy()
    lab[:3] = "big"  # groups of several sizes: several null configurations
    ap1 = average_precision(X, lab, n_jobs=1, block_size=7)
    ap2 = average_precision(X, lab, n_jobs=2, block_size=7)
    np.testing.assert_array_equal(ap1, ap2)
    m1 = mean_average_precision(X, lab, null_size=200, seed=5, n_jobs=1)
    m2 = mean_average_precision(X, lab, null_size=200, seed=5, n_jobs=2)
    m3 = mean_average_precision(X, lab, null_size=200, seed=5, n_jobs=2, ap=ap1)
    pd.testing.assert_frame_equal(m1, m2)
    pd.testing.assert_frame_equal(m1, m3)


def test_threads_leave_blas_settings_alone():
    # with n_jobs > 1 BLAS runs on one thread per task during the call (threadpoolctl); afterwards, also after
    # concurrent calls from several threads and a call rejected on its input, the previous setting is back
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from concurrent.futures import ThreadPoolExecutor

    def blas_threads():
        return [d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]

    X, lab = _data(seed=5)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        ref = mean_average_precision(X, lab, null_size=100, seed=1, n_jobs=1)
        with ThreadPoolExecutor(3) as ex:
            outs = list(ex.map(lambda s: mean_average_precision(X, lab, null_size=100, seed=1, n_jobs=2), range(3)))
        for o in outs:
            pd.testing.assert_frame_equal(o, ref)
        with pytest.raises(InputError):
            mean_average_precision(X, lab, null_size=0, n_jobs=2)
        assert blas_threads() == before


def test_given_ap_with_missing_values_equals_copairs(tmp_path):
    # a user-supplied AP vector with NaNs: copairs drops those queries; labels keep their other queries (and
    # their null is the mean over the queries left), a label whose queries are all NaN disappears
    cmap = pytest.importorskip("copairs.map")
    X, lab = _data(seed=6)
    meta = pd.DataFrame({"label": lab})
    ref = cmap.average_precision(meta, X, pos_sameby=["label"], pos_diffby=[], neg_sameby=[],
                                 neg_diffby=["label"], progress_bar=False)
    ap = ref["average_precision"].to_numpy().copy()
    multi = np.flatnonzero(pd.Series(lab).map(pd.Series(lab).value_counts()).to_numpy() >= 3)
    ap[multi[:10]] = np.nan  # some queries of labels with 3+ rows
    whole = lab[multi[-1]]
    ap[lab == whole] = np.nan  # and every query of one label
    ref["average_precision"] = ap
    m_ref = cmap.mean_average_precision(ref, sameby=["label"], null_size=300, threshold=0.05, seed=2,
                                        progress_bar=False, cache_dir=tmp_path)
    m = mean_average_precision(X, lab, null_size=300, seed=2, ap=ap)
    assert whole not in set(m["label"]) and len(m) == len(m_ref)
    j = m_ref.merge(m, on="label", validate="1:1")
    assert np.abs(j["mean_average_precision"] - j["mAP"]).max() < 1e-12
    np.testing.assert_array_equal(j["p_value_x"].to_numpy(), j["p_value_y"].to_numpy())
    np.testing.assert_allclose(j["corrected_p_value"], j["q_value"], atol=1e-12)
