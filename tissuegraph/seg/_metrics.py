"""Accuracy metrics for nuclei segmentation and detection: pure functions on arrays.

Instance segmentation (label images)
    :func:`match_instances`, :func:`matching_scores` (same definitions as
    ``stardist.matching.matching``: a GT object and a predicted object match when their IoU is
    ``>= threshold``; the matching is one-to-one and maximises the number of matches, ties broken by
    the summed IoU), :func:`aggregated_jaccard_index` (Kumar et al. 2017),
    :func:`panoptic_quality` (Kirillov et al. 2019).

Detection (points)
    :func:`detection_scores`: one-to-one matching of predicted and true centres closer than a radius
    (given in µm with ``mpp``, or in pixels), maximum number of matches with the smallest summed
    distance (Hungarian algorithm on each connected group of candidate pairs).

All overlaps are counted with a single ``bincount`` over (GT label, predicted label) pixel pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import linear_sum_assignment

from .._errors import InputError
from .._validate import check_labels, check_points, check_positive

__all__ = [
    "Overlap",
    "aggregated_jaccard_index",
    "centroids_from_labels",
    "detection_scores",
    "label_overlap",
    "match_instances",
    "matching_scores",
    "panoptic_quality",
]


# ----------------------------------------------------------------------------------------------------
# overlap table
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Overlap:
    """Pixel overlaps between the objects of two label images.

    Attributes
    ----------
    gt_ids, pred_ids
        The original labels of the GT and predicted objects (background excluded), sorted.
    gt_area, pred_area
        Pixel counts of each object, aligned with ``gt_ids`` / ``pred_ids``.
    pair_gt, pair_pred, pair_inter
        Every (GT, pred) pair that shares at least one pixel: indices into ``gt_ids`` / ``pred_ids``
        and the number of shared pixels.
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    gt_area: np.ndarray
    pred_area: np.ndarray
    pair_gt: np.ndarray
    pair_pred: np.ndarray
    pair_inter: np.ndarray

    @property
    def n_gt(self) -> int:
        return int(self.gt_ids.size)

    @property
    def n_pred(self) -> int:
        return int(self.pred_ids.size)

    @property
    def pair_union(self) -> np.ndarray:
        return self.gt_area[self.pair_gt] + self.pred_area[self.pair_pred] - self.pair_inter

    @property
    def pair_iou(self) -> np.ndarray:
        return self.pair_inter / np.maximum(self.pair_union, 1)


def _dense_ids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map labels to 0..n (0 stays background); return (dense labels ravelled, original ids)."""
    flat = labels.ravel()
    ids, inv = np.unique(flat, return_inverse=True)
    if ids.size and ids[0] == 0:
        return inv.astype(np.int64), ids[1:]
    return inv.astype(np.int64) + 1, ids


def label_overlap(gt, pred) -> Overlap:
    """Count the pixel overlaps of every (GT object, predicted object) pair.

    Parameters
    ----------
    gt, pred
        2-D integer label images of the same shape, 0 = background.

    Returns
    -------
    :class:`Overlap` with the object ids, areas and the sparse list of overlapping pairs.
    """
    gt = check_labels(gt, "gt")
    pred = check_labels(pred, "pred")
    if gt.shape != pred.shape:
        raise InputError(f"gt and pred must have the same shape, got {gt.shape} and {pred.shape}.")
    g, gt_ids = _dense_ids(gt)
    p, pred_ids = _dense_ids(pred)
    ng, npred = gt_ids.size, pred_ids.size
    counts = np.bincount(g * (npred + 1) + p, minlength=(ng + 1) * (npred + 1)).reshape(ng + 1, npred + 1)
    gt_area = counts[1:, :].sum(axis=1)
    pred_area = counts[:, 1:].sum(axis=0)
    inner = counts[1:, 1:]
    pg, pp = np.nonzero(inner)
    return Overlap(gt_ids=gt_ids, pred_ids=pred_ids, gt_area=gt_area.astype(np.int64),
                   pred_area=pred_area.astype(np.int64), pair_gt=pg.astype(np.int64),
                   pair_pred=pp.astype(np.int64), pair_inter=inner[pg, pp].astype(np.int64))


# ----------------------------------------------------------------------------------------------------
# one-to-one matching on a sparse bipartite graph
# ----------------------------------------------------------------------------------------------------
def _max_matching(rows: np.ndarray, cols: np.ndarray, gain: np.ndarray, n_rows: int,
                  n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-cardinality one-to-one matching of candidate pairs, ties broken by maximal total gain.

    ``gain`` must lie in [0, 1].  Solved exactly with the Hungarian algorithm on each connected
    component of the candidate graph (components are tiny for nuclei, so this stays fast for
    whole-slide inputs).  Returns the indices (into ``rows``) of the chosen pairs as (row, col).
    """
    if rows.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # components of the bipartite graph (rows first, then cols)
    graph = sparse.coo_matrix((np.ones(rows.size), (rows, cols + n_rows)),
                              shape=(n_rows + n_cols, n_rows + n_cols))
    _, comp = sparse.csgraph.connected_components(graph, directed=False)
    pair_comp = comp[rows]
    order = np.argsort(pair_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(pair_comp[order])) + 1
    out_r, out_c = [], []
    for idx in np.split(order, bounds):
        r, c, w = rows[idx], cols[idx], gain[idx]
        if idx.size == 1:
            out_r.append(r)
            out_c.append(c)
            continue
        ur, ri = np.unique(r, return_inverse=True)
        uc, ci = np.unique(c, return_inverse=True)
        if ur.size == 1 or uc.size == 1:  # a star: take the best pair
            k = int(np.argmax(w))
            out_r.append(r[k:k + 1])
            out_c.append(c[k:k + 1])
            continue
        n_small = min(ur.size, uc.size)
        cost = np.zeros((ur.size, uc.size))
        # each candidate is worth 1 plus a tie-breaker < 1 in total over the whole matching
        cost[ri, ci] = -1.0 - w / (n_small + 1.0)
        ar, ac = linear_sum_assignment(cost)
        ok = cost[ar, ac] < 0
        out_r.append(ur[ar[ok]])
        out_c.append(uc[ac[ok]])
    return np.concatenate(out_r).astype(np.int64), np.concatenate(out_c).astype(np.int64)


def _match_overlap(ov: Overlap, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matched (gt index, pred index, IoU) at ``IoU >= threshold``."""
    iou = ov.pair_iou
    keep = iou >= threshold
    g, p, s = ov.pair_gt[keep], ov.pair_pred[keep], iou[keep]
    if threshold > 0.5:
        # IoU > 0.5 pairs are unique on both sides: no assignment problem to solve
        return g, p, s
    mg, mp = _max_matching(g, p, s, ov.n_gt, ov.n_pred)
    lookup = dict(zip(zip(g.tolist(), p.tolist()), s.tolist()))
    ms = np.array([lookup[(a, b)] for a, b in zip(mg.tolist(), mp.tolist())], dtype=float)
    return mg, mp, ms


def _check_threshold(t) -> float:
    t = float(t)
    if not (0.0 < t <= 1.0):
        raise InputError(f"IoU threshold must be in (0, 1], got {t}.")
    return t


def match_instances(gt, pred, *, iou_threshold: float = 0.5) -> dict:
    """One-to-one matching of GT and predicted objects at ``IoU >= iou_threshold``.

    Parameters
    ----------
    gt, pred
        2-D integer label images of the same shape (0 = background; labels need not be sequential).
    iou_threshold
        Minimum IoU of a match. Above 0.5 a matching pair is unique; at or below 0.5 the matching
        with the most pairs (ties: the largest summed IoU) is found with the Hungarian algorithm.

    Returns
    -------
    dict with ``tp``, ``fp``, ``fn``, ``n_true``, ``n_pred``, ``sum_iou`` (summed IoU of the matched
    pairs) and ``pairs`` (an (tp, 2) int array of matched (GT label, predicted label)) and
    ``pair_iou`` (the IoU of each pair).
    """
    t = _check_threshold(iou_threshold)
    ov = label_overlap(gt, pred)
    return _counts(ov, t)


def _counts(ov: Overlap, t: float) -> dict:
    mg, mp, ms = _match_overlap(ov, t)
    tp = int(mg.size)
    return dict(tp=tp, fp=ov.n_pred - tp, fn=ov.n_gt - tp, n_true=ov.n_gt, n_pred=ov.n_pred,
                sum_iou=float(ms.sum()),
                pairs=np.stack([ov.gt_ids[mg], ov.pred_ids[mp]], axis=1).astype(np.int64),
                pair_iou=ms)


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else 0.0


def _summary(c: dict, threshold: float) -> dict:
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    s = c["sum_iou"]
    return dict(
        threshold=threshold, tp=tp, fp=fp, fn=fn, n_true=c["n_true"], n_pred=c["n_pred"],
        precision=_ratio(tp, tp + fp), recall=_ratio(tp, tp + fn), f1=_ratio(2 * tp, 2 * tp + fp + fn),
        accuracy=_ratio(tp, tp + fp + fn), mean_matched_iou=_ratio(s, tp), mean_true_iou=_ratio(s, c["n_true"]),
        panoptic_quality=_ratio(s, tp + fp / 2 + fn / 2),
    )


def matching_scores(gt, pred, *, thresholds: float | Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9),
                    as_frame: bool = True):
    """Precision, recall, F1, mean matched IoU and PQ of an instance segmentation at IoU thresholds.

    Definitions follow ``stardist.matching.matching``: precision = tp/(tp+fp), recall = tp/(tp+fn),
    f1 = 2tp/(2tp+fp+fn), accuracy = tp/(tp+fp+fn), ``mean_matched_iou`` = mean IoU of the matched
    pairs (StarDist's ``mean_matched_score``), ``mean_true_iou`` = summed matched IoU / n_true,
    ``panoptic_quality`` = summed matched IoU / (tp + fp/2 + fn/2). Empty denominators give 0.

    Parameters
    ----------
    gt, pred
        2-D integer label images of the same shape.
    thresholds
        One IoU threshold or several (each in (0, 1]).
    as_frame
        Return a DataFrame with one row per threshold (default); else a list of dicts (or one dict
        when a single number was passed).
    """
    single = np.isscalar(thresholds)
    ts = [_check_threshold(t) for t in ([thresholds] if single else list(thresholds))]
    if not ts:
        raise InputError("thresholds is empty; pass at least one IoU threshold, e.g. 0.5.")
    ov = label_overlap(gt, pred)
    rows = [_summary(_counts(ov, t), t) for t in ts]
    if as_frame:
        return pd.DataFrame(rows).set_index("threshold")
    return rows[0] if single else rows


def aggregated_jaccard_index(gt, pred) -> float:
    """Aggregated Jaccard Index (Kumar et al., IEEE TMI 2017).

    For every GT object G, the predicted object S with the largest IoU (any overlap; ties: the lower
    label) adds ``|G ∩ S|`` to the intersection sum and ``|G ∪ S|`` to the union sum (a GT object
    without any overlapping prediction adds ``|G|`` to the union only). Predicted objects never
    chosen add their area to the union.  AJI = intersection sum / union sum; 1.0 when both images are
    empty, 0.0 when only one is.
    """
    ov = label_overlap(gt, pred)
    if ov.n_gt == 0 and ov.n_pred == 0:
        return 1.0
    if ov.n_gt == 0 or ov.n_pred == 0:
        return 0.0
    iou = ov.pair_iou
    # best pred per GT object: sort pairs by (gt, -iou, pred) and take the first of each gt
    order = np.lexsort((ov.pair_pred, -iou, ov.pair_gt))
    g_sorted = ov.pair_gt[order]
    first = np.ones(order.size, bool)
    first[1:] = g_sorted[1:] != g_sorted[:-1]
    best = order[first]
    inter = ov.pair_inter[best].sum()
    union = ov.pair_union[best].sum()
    has_match = np.zeros(ov.n_gt, bool)
    has_match[ov.pair_gt[best]] = True
    union += ov.gt_area[~has_match].sum()
    used = np.zeros(ov.n_pred, bool)
    used[ov.pair_pred[best]] = True
    union += ov.pred_area[~used].sum()
    return float(inter / union) if union > 0 else 0.0


def panoptic_quality(gt, pred, *, iou_threshold: float = 0.5) -> dict:
    """Panoptic quality (Kirillov et al., CVPR 2019) of an instance segmentation.

    ``dq`` = tp / (tp + fp/2 + fn/2) (detection quality, i.e. F1 at IoU ``>= iou_threshold``),
    ``sq`` = mean IoU of the matched pairs, ``pq = dq * sq``. Both empty: all 1.0.

    Returns
    -------
    dict with ``pq``, ``dq``, ``sq``, ``tp``, ``fp``, ``fn``.
    """
    t = _check_threshold(iou_threshold)
    ov = label_overlap(gt, pred)
    if ov.n_gt == 0 and ov.n_pred == 0:
        return dict(pq=1.0, dq=1.0, sq=1.0, tp=0, fp=0, fn=0)
    c = _counts(ov, t)
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    dq = _ratio(tp, tp + fp / 2 + fn / 2)
    sq = _ratio(c["sum_iou"], tp)
    return dict(pq=dq * sq, dq=dq, sq=sq, tp=tp, fp=fp, fn=fn)


# ----------------------------------------------------------------------------------------------------
# detection
# ----------------------------------------------------------------------------------------------------
def detection_scores(pred_xy, gt_xy, *, radius_um: float = 3.0, mpp: float | None = None,
                     radius_px: float | None = None, return_pairs: bool = False) -> dict:
    """Precision, recall and F1 of detected nucleus centres against true centres.

    A predicted and a true centre match when they are at most the radius apart; each point matches
    at most once.  The matching maximises the number of matches and, among those, minimises the
    summed distance (Hungarian algorithm, solved exactly on each connected group of candidate pairs).

    Parameters
    ----------
    pred_xy, gt_xy
        (n, 2) arrays of (x, y) coordinates in pixels (the same frame for both).
    radius_um
        Matching radius in µm (used with ``mpp``).
    mpp
        µm per pixel of the coordinates. Needed unless ``radius_px`` is given.
    radius_px
        Matching radius in pixels; overrides ``radius_um``/``mpp``.
    return_pairs
        Also return the matched (pred index, gt index) pairs and their distances.

    Returns
    -------
    dict with ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``, ``mean_distance_px``,
    ``radius_px`` (and ``pairs``, ``distances`` when asked).
    """
    pred = check_points(pred_xy, "pred_xy")
    gt = check_points(gt_xy, "gt_xy")
    if radius_px is None:
        if mpp is None:
            raise InputError("detection_scores needs the matching radius in pixels: pass mpp= (µm/px) "
                             "with radius_um=, or radius_px= directly.")
        check_positive(mpp, "mpp")
        radius_px = float(check_positive(radius_um, "radius_um")) / float(mpp)
    radius_px = float(check_positive(radius_px, "radius_px"))
    if pred.shape[0] and gt.shape[0]:
        from scipy.spatial import cKDTree

        dm = cKDTree(pred).sparse_distance_matrix(cKDTree(gt), radius_px, output_type="coo_matrix")
        r, c, d = dm.row.astype(np.int64), dm.col.astype(np.int64), dm.data
        # (the 'coo_matrix' output keeps pairs at distance exactly 0)
        gain = 1.0 - d / (radius_px * (1 + 1e-9))
        mr, mc = _max_matching(r, c, gain, pred.shape[0], gt.shape[0])
        md = np.hypot(*(pred[mr] - gt[mc]).T) if mr.size else np.zeros(0)
    else:
        mr = mc = np.zeros(0, np.int64)
        md = np.zeros(0)
    tp = int(mr.size)
    fp, fn = pred.shape[0] - tp, gt.shape[0] - tp
    out = dict(tp=tp, fp=fp, fn=fn, precision=_ratio(tp, tp + fp), recall=_ratio(tp, tp + fn),
               f1=_ratio(2 * tp, 2 * tp + fp + fn), mean_distance_px=float(md.mean()) if tp else float("nan"),
               radius_px=radius_px)
    if return_pairs:
        out["pairs"] = np.stack([mr, mc], axis=1)
        out["distances"] = md
    return out


def centroids_from_labels(labels) -> np.ndarray:
    """(n, 2) centroids (x, y) of the objects of a label image, in label order (pixel centres)."""
    from .._contours import label_centroids

    _, _, cx, cy = label_centroids(labels)
    return np.stack([cx, cy], axis=1)