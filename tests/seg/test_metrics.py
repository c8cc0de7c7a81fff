"""Metrics on tiny literal arrays with hand-computed answers, and against stardist.matching."""

from __future__ import annotations

import numpy as np
import pytest

from tissuegraph import InputError
from tissuegraph.seg import (
    aggregated_jaccard_index,
    centroids_from_labels,
    detection_scores,
    label_overlap,
    match_instances,
    matching_scores,
    panoptic_quality,
)

# GT: object 1 = 4 px (cols 0-1, rows 0-1), object 2 = 2 px (row 3, cols 2-3)
GT = np.array([[1, 1, 0, 0],
               [1, 1, 0, 0],
               [0, 0, 0, 0],
               [0, 0, 2, 2]])
# pred: object 7 covers GT 1 plus one extra px (IoU 4/5), object 9 covers one px of GT 2 (IoU 1/2),
# object 3 is a false positive
PRED = np.array([[7, 7, 7, 0],
                 [7, 7, 0, 3],
                 [0, 0, 0, 0],
                 [0, 0, 9, 0]])


def test_label_overlap_counts():
    ov = label_overlap(GT, PRED)
    assert list(ov.gt_ids) == [1, 2] and list(ov.pred_ids) == [3, 7, 9]
    assert list(ov.gt_area) == [4, 2] and list(ov.pred_area) == [1, 5, 1]
    pairs = {(int(ov.gt_ids[g]), int(ov.pred_ids[p])): int(i)
             for g, p, i in zip(ov.pair_gt, ov.pair_pred, ov.pair_inter)}
    assert pairs == {(1, 7): 4, (2, 9): 1}
    np.testing.assert_allclose(sorted(ov.pair_iou), [0.5, 0.8])


def test_match_instances_hand_computed():
    m = match_instances(GT, PRED, iou_threshold=0.5)  # IoU >= 0.5 (StarDist's convention)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 1, 0)
    assert {tuple(p) for p in m["pairs"]} == {(1, 7), (2, 9)}
    m = match_instances(GT, PRED, iou_threshold=0.6)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 2, 1)
    assert m["pairs"].tolist() == [[1, 7]]


def test_matching_scores_frame():
    df = matching_scores(GT, PRED, thresholds=(0.5, 0.9))
    r = df.loc[0.5]
    assert r.precision == pytest.approx(2 / 3) and r.recall == 1.0 and r.f1 == pytest.approx(0.8)
    assert r.mean_matched_iou == pytest.approx((0.8 + 0.5) / 2)
    assert r.panoptic_quality == pytest.approx(1.3 / (2 + 0.5))
    assert df.loc[0.9].tp == 0 and df.loc[0.9].f1 == 0.0
    single = matching_scores(GT, PRED, thresholds=0.5, as_frame=False)
    assert single["tp"] == 2


def test_low_threshold_needs_optimal_assignment():
    # one GT object overlapped by two preds, and pred A also overlaps a second GT; greedy by IoU would
    # give GT1-A and leave GT2 unmatched; the optimal matching pairs GT1-B and GT2-A.
    gt = np.array([[1, 1, 1, 2, 2, 2]])
    pred = np.array([[5, 5, 6, 6, 6, 0]])
    # IoU(1,5)=2/3, IoU(1,6)=1/5, IoU(2,6)=2/4, IoU(2,5)=0
    m = match_instances(gt, pred, iou_threshold=0.1)
    assert m["tp"] == 2
    assert {tuple(p) for p in m["pairs"]} == {(1, 5), (2, 6)}
    # at 0.6 only (1, 5) qualifies
    assert match_instances(gt, pred, iou_threshold=0.6)["tp"] == 1


def test_empty_images():
    z = np.zeros((5, 5), int)
    assert match_instances(z, z)["tp"] == 0
    assert aggregated_jaccard_index(z, z) == 1.0
    assert panoptic_quality(z, z)["pq"] == 1.0
    z4 = np.zeros_like(GT)
    assert aggregated_jaccard_index(GT, z4) == 0.0
    assert matching_scores(GT, z4, thresholds=0.5, as_frame=False)["f1"] == 0.0
    assert panoptic_quality(z4, GT)["pq"] == 0.0


def test_aji_hand_computed():
    # GT1 -> pred 7: I=4, U=5; GT2 -> pred 9: I=1, U=2; unused pred 3 adds 1 to U
    assert aggregated_jaccard_index(GT, PRED) == pytest.approx(5 / 8)
    # a GT without any overlapping prediction adds its area to the union only
    gt = np.array([[1, 1, 0, 2]])
    pred = np.array([[4, 0, 0, 0]])
    assert aggregated_jaccard_index(gt, pred) == pytest.approx(1 / (2 + 1))


def test_panoptic_quality_hand_computed():
    pq = panoptic_quality(GT, PRED)  # at IoU >= 0.5: tp 2 (0.8, 0.5), fp 1, fn 0
    assert pq["dq"] == pytest.approx(2 / 2.5)
    assert pq["sq"] == pytest.approx(0.65)
    assert pq["pq"] == pytest.approx(0.65 * 0.8)


def test_metric_input_errors():
    with pytest.raises(InputError, match="same shape"):
        match_instances(GT, PRED[:3])
    with pytest.raises(InputError, match="negative"):
        match_instances(-GT, PRED)
    with pytest.raises(InputError, match="integer"):
        match_instances(GT + 0.5, PRED)
    with pytest.raises(InputError, match="threshold"):
        match_instances(GT, PRED, iou_threshold=0)


def test_against_stardist_matching():
    sd = pytest.importorskip("stardist.matching")
    from skimage.draw import disk

    rng = np.random.default_rng(0)

    def rand_labels(n):
        lab = np.zeros((48, 48), np.int32)
        for i in range(1, n + 1):
            rr, cc = disk(tuple(rng.integers(0, 48, 2)), rng.integers(2, 8), shape=lab.shape)
            lab[rr, cc] = i * 3  # non-sequential ids
        return lab

    for _ in range(40):
        a, b = rand_labels(rng.integers(0, 12)), rand_labels(rng.integers(0, 12))
        for t in (0.1, 0.3, 0.5, 0.7, 0.9):
            ref = sd.matching(a, b, thresh=t)
            ours = matching_scores(a, b, thresholds=t, as_frame=False)
            for k in ("tp", "fp", "fn", "n_true", "n_pred"):
                assert ours[k] == getattr(ref, k)
            for k, k2 in (("precision", "precision"), ("recall", "recall"), ("f1", "f1"),
                          ("accuracy", "accuracy")):
                assert ours[k] == pytest.approx(getattr(ref, k2), abs=1e-6)
            if t >= 0.5:  # the matching is unique: the matched IoUs agree too
                assert ours["mean_matched_iou"] == pytest.approx(ref.mean_matched_score, abs=1e-5)
                assert ours["panoptic_quality"] == pytest.approx(ref.panoptic_quality, abs=1e-5)


def test_detection_scores_hand_computed():
    gt = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    pred = np.array([[1.0, 0.0], [9.0, 0.0], [50.0, 50.0], [0.0, 0.0]])
    d = detection_scores(pred, gt, radius_px=2.0, return_pairs=True)
    # optimal: (3 -> 0) at distance 0, (1 -> 1) at 1; pred 0 then has no free GT in range
    assert (d["tp"], d["fp"], d["fn"]) == (2, 2, 1)
    assert d["precision"] == 0.5 and d["recall"] == pytest.approx(2 / 3)
    assert {tuple(p) for p in d["pairs"].tolist()} == {(3, 0), (1, 1)}
    assert d["mean_distance_px"] == pytest.approx(0.5)
    # µm radius with mpp: 3 µm at 0.5 µm/px = 6 px
    assert detection_scores(pred, gt, radius_um=3.0, mpp=0.5)["radius_px"] == 6.0
    with pytest.raises(InputError, match="mpp"):
        detection_scores(pred, gt)
    e = detection_scores(np.zeros((0, 2)), gt, radius_px=1.0)
    assert (e["tp"], e["fp"], e["fn"], e["f1"]) == (0, 0, 3, 0.0)


def test_detection_prefers_more_matches_over_shorter_distance():
    # greedy by distance would take (p0, g1) at distance 0.5 and leave g0 unmatched
    gt = np.array([[0.0, 0.0], [2.0, 0.0]])
    pred = np.array([[1.5, 0.0], [3.0, 0.0]])
    assert detection_scores(pred, gt, radius_px=1.6)["tp"] == 2


def test_centroids_from_labels():
    xy = centroids_from_labels(GT)
    np.testing.assert_allclose(xy, [[0.5, 0.5], [2.5, 3.0]])
