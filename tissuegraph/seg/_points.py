"""Instance labels from nucleus centres: train a segmenter on point annotations.

Many nucleus data sets (CRCHistoPhenotypes, QuPath point annotations, pathologists' clicks) give only
the centre of each nucleus.  :func:`labels_from_points` turns such centres into instance label images
that a mask-based trainer (:func:`tissuegraph.seg.train_stardist`) accepts: each centre owns the pixels
of its Voronoi cell that lie within a radius of it, optionally restricted to a foreground mask (e.g. a
classical segmentation or a stain threshold) so that the pseudo-masks follow nuclear outlines; a small
core disc is always kept so that every centre gives an object.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import InputError
from .._validate import check_points, check_positive

__all__ = ["labels_from_points"]


def _radius_px(value: float, name: str, mpp: float | None) -> float:
    v = float(check_positive(value, name))
    return v / mpp if mpp is not None else v


def labels_from_points(points: Any, shape: tuple[int, int], *, radius: float, min_radius: float | None = None,
                       foreground: np.ndarray | None = None, mpp: float | None = None) -> np.ndarray:
    """Instance labels (one object per point) from nucleus centres.

    Every pixel belongs to its nearest centre (Voronoi partition, exact distances to the given float
    positions; the earlier centre wins a tie).  The object of centre ``i`` (label ``i + 1``) is the part
    of its Voronoi cell within ``radius`` of the centre; with ``foreground`` only
    the foreground pixels of that part that are connected to the centre are kept, and the disc of
    ``min_radius`` (also cut by the Voronoi cell) is always added, so a centre on a foreground gap still
    gives an object.  Touching nuclei are split along the perpendicular bisector of their centres.

    Parameters
    ----------
    points
        (n, 2) array of (x, y) centres in pixels of the image (column, row; the convention of the
        nucleus table and of :func:`detection_scores`).  Centres up to one pixel beyond the border
        (common in exported annotations) are moved onto it; centres further out are an error.
    shape
        (height, width) of the label image.
    radius, min_radius
        Largest and smallest object radius, in pixels, or in µm when ``mpp`` is given.  ``min_radius``
        defaults to ``radius / 3``; it must not exceed ``radius``.
    foreground
        Optional boolean (height, width) mask of nuclear pixels (e.g. ``labels > 0`` of
        :func:`watershed_nuclei`).  ``None``: plain discs cut by the Voronoi partition.
    mpp
        µm per pixel, to give the radii in µm.

    Returns
    -------
    ``int32`` (height, width) label image; label ``i + 1`` is the object of ``points[i]``.  A centre at
    the same position as an earlier one gets no pixels (its label is absent).  The work grows with the
    number of centres times ``radius**2``. Memory is the output, one float64 image of distances (plus
    the connected-component image with ``foreground``) and a bounded buffer.

    Raises
    ------
    InputError
        Non-finite or out-of-image centres, a wrong ``points`` / ``foreground`` shape, bad radii.

    Examples
    --------
    Train StarDist on H&E images annotated with centres only (``images``: RGB arrays at 0.55 µm/px,
    ``centres``: one (n, 2) array per image), with masks that follow the classical segmentation:

    >>> masks = [tg.seg.labels_from_points(c, im.shape[:2], radius=5, min_radius=2, mpp=0.55,
    ...                                    foreground=tg.seg.watershed_nuclei(im, mpp=0.55) > 0)
    ...          for im, c in zip(images, centres)]                                  # doctest: +SKIP
    >>> model = tg.seg.train_stardist(images, masks, rgb_to="hematoxylin", mpp=0.55,
    ...                               init="tg_dsb2018_fluo", basedir="models")      # doctest: +SKIP

    ``benchmarks/train_stardist_models.py crchisto`` does this for CRCHistoPhenotypes.
    """
    if len(shape) != 2 or min(int(s) for s in shape) <= 0:
        raise InputError(f"shape must be (height, width) with positive sizes, got {shape!r}")
    h, w = int(shape[0]), int(shape[1])
    if mpp is not None:
        mpp = float(check_positive(mpp, "mpp"))
    r = _radius_px(radius, "radius", mpp)
    r0 = _radius_px(min_radius, "min_radius", mpp) if min_radius is not None else r / 3.0
    if r0 > r:
        raise InputError(f"min_radius ({min_radius}) must not exceed radius ({radius})")
    pts = check_points(points, "points")
    col = np.floor(pts[:, 0] + 0.5).astype(np.int64)
    row = np.floor(pts[:, 1] + 0.5).astype(np.int64)
    # annotations often sit a fraction of a pixel beyond the border: up to one pixel is clipped
    outside = (col < -1) | (col > w) | (row < -1) | (row > h)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InputError(f"{int(outside.sum())} centre(s) lie outside the {h}x{w} image, e.g. point {i} at "
                         f"(x={pts[i, 0]:g}, y={pts[i, 1]:g}); are x and y swapped or in another frame?")
    col, row = np.clip(col, 0, w - 1), np.clip(row, 0, h - 1)
    if foreground is not None:
        foreground = np.asarray(foreground)
        if foreground.shape != (h, w):
            raise InputError(f"foreground has shape {foreground.shape}, expected {(h, w)}")
        foreground = foreground.astype(bool)
    labels = np.zeros((h, w), np.int32)
    if len(pts) == 0:
        return labels

    # every pixel within r of a centre goes to its nearest centre (exact distances to the float
    # positions; the earlier point wins a tie), found from each centre's own disc, a bounded number
    # of centres at a time: the work grows with the number of centres x r^2
    best = np.full((h, w), np.inf)
    owner = labels  # filled in place: 0 = none, i + 1 = point i
    ri = int(np.ceil(r)) + 2  # the rounded (or border-clipped) centre pixel is up to 1.5 px off
    dy, dx = np.mgrid[-ri:ri + 1, -ri:ri + 1]
    dy, dx = dy.ravel(), dx.ravel()
    chunk = max(1, 4_000_000 // dy.size)
    for s0 in range(0, len(pts), chunk):
        idx = np.arange(s0, min(s0 + chunk, len(pts)))
        yy = row[idx, None] + dy[None, :]
        xx = col[idx, None] + dx[None, :]
        d = np.hypot(yy - pts[idx, 1, None], xx - pts[idx, 0, None])
        ok = (d <= r) & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        pix = (yy * w + xx)[ok]
        who = np.broadcast_to(idx[:, None], ok.shape)[ok]
        d = d[ok]
        # nearest centre per pixel inside the chunk (ties: lower index), then against earlier chunks
        order = np.lexsort((who, d, pix))
        pix, who, d = pix[order], who[order], d[order]
        first = np.ones(len(pix), bool)
        first[1:] = pix[1:] != pix[:-1]
        pix, who, d = pix[first], who[first], d[first]
        flat_best = best.reshape(-1)
        better = d < flat_best[pix]
        flat_best[pix[better]] = d[better]
        owner.reshape(-1)[pix[better]] = (who[better] + 1).astype(np.int32)
    if foreground is None:
        return labels
    # with a foreground: keep the foreground piece (4-connected, same owner) under each centre,
    # plus the core disc
    from skimage.measure import label as cc_label

    cand = np.where(foreground, owner, 0)
    comp = cc_label(cand, background=0, connectivity=1)
    own_centre = owner[row, col] == np.arange(1, len(pts) + 1)
    ids = comp[row[own_centre], col[own_centre]]
    keep = np.isin(comp, ids[ids > 0]) | (best <= r0)
    labels[~keep] = 0
    return labels
