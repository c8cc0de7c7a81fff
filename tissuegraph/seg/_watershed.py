"""Classical nuclei segmentation (``method='watershed'``): no model file, deterministic.

Two pipelines share one idea: every length is a fraction of the expected nucleus diameter ``D``.
``D`` comes from ``diameter_um`` and the pixel size (``mpp``), or, when either is unknown, from the
image itself: a first Otsu pass gives a foreground mask and ``D`` is twice the area-weighted median of
the objects' inscribed radii (the maximum of the distance transform of each connected piece), which
is robust to clumps because a clump's inscribed radius is still one nucleus's radius.  With
``mpp=None`` a warning says that pixel defaults (scaled from this estimate) were used.

Fluorescence (and grey images; dark background)
    percentile normalisation -> (bright background: inverted, 4-class multi-Otsu keeps the darkest
    class, e.g. stained cytology) -> Gaussian smoothing (``0.03 D``) -> threshold at
    ``0.6 x Otsu`` -> fill holes -> distance transform smoothed by ``0.05 D`` plus ``0.3 D`` x the
    normalised intensity -> h-maxima seeds (``h = 0.02 D``) -> seeded watershed -> each object is
    trimmed to pixels brighter than ``0.35 x`` its own maximum (dim and bright nuclei get the same
    relative boundary), holes refilled -> labels grown by ``0.04 D`` -> objects smaller than
    ``0.15 x`` the area of a disc of diameter ``D`` removed.

H&E / brightfield (RGB, light background)
    colour deconvolution to hematoxylin (Ruifrok & Johnston, ``skimage.color.rgb2hed``), robust
    percentile normalisation -> foreground = Gaussian-smoothed (``0.1 D``) hematoxylin ``s`` above
    ``1.0 x Otsu`` and at least ``0.1`` above its local background (``s`` blurred by ``1.5 D``), holes
    filled -> seed surface = hematoxylin smoothed by ``0.15 D`` plus ``min(distance to background,
    D/2) / D`` -> seeds = its maxima inside the foreground, at least ``0.4 D`` apart -> watershed of
    that surface from these seeds inside the foreground -> objects smaller than ``0.3 x`` the
    disc area removed -> fragment merging: two touching objects become one when their shared border is
    at least the inscribed diameter of the smaller one and their union is convex (solidity >= 0.85),
    so that a large textured nucleus (10-18 µm) over-seeded at the 7 µm seed scale comes out whole,
    while touching round nuclei (short contact chord, notched union) stay apart.  ``D = 7 µm`` by
    default when ``mpp`` is known (fitted on CRCHistoPhenotypes ``train``; the merging rule on
    ``train`` plus synthetic slides of seeds 0-4).  ``dist_weight=0`` gives the previous seeds (maxima
    of the scale-normalised LoG at ``0.3 D``, response > 0.08, watershed of the LoG response); with
    ``threshold_scale=1.2, local_offset=0, min_distance=0.5`` as well, the previous default.
    With ``mpp=None`` ``D`` is estimated per image as below (less reliable on H&E than on fluorescence).

The default fractions were fitted on data that is not used to report accuracy: the DSB 2018
fluorescence images at positions 25, 30, 35, ... of ``index.csv`` (every 5th from the 26th) for the
fluorescence pipeline, and CRCHistoPhenotypes ``train`` (plus synthetic slides, seeds 0-4, for the
fragment merging) for the H&E one.  The fitted values and
the split are written down in ``benchmarks/params/watershed.json``; ``benchmarks/bench_seg_accuracy.py``
reports accuracy on the other images.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .._errors import InputError, MissingMppError
from .._logging import logger
from .._validate import check_image, check_positive

__all__ = [
    "WATERSHED_DEFAULTS",
    "WatershedBackend",
    "estimate_nucleus_diameter",
    "watershed_nuclei",
]

# Fractions of the nucleus diameter D (see the module docstring); fitted, see benchmarks/params.
WATERSHED_DEFAULTS: dict[str, dict[str, float]] = {
    "fluorescence": dict(
        sigma=0.03,  # Gaussian smoothing of the intensity before thresholding
        threshold_scale=0.6,  # x Otsu threshold of the smoothed image
        dist_sigma=0.05,  # smoothing of the distance transform
        intensity_weight=0.3,  # the watershed surface is dist + weight * D * intensity
        h=0.02,  # h-maxima height of the seeds (floor 0.3 px)
        relative_threshold=0.35,  # per-object trim below this fraction of the object's maximum
        grow=0.04,  # final expansion of every label
        min_area=0.15,  # x area of a disc of diameter D
    ),
    "he": dict(
        diameter_um=7.0,  # used when mpp is known (fitted on CRCHisto train)
        sigma=0.1,
        threshold_scale=1.0,  # x Otsu of the smoothed hematoxylin
        local_sigma=1.5,  # local background: the smoothed hematoxylin blurred by this x D ...
        local_offset=0.1,  # ... foreground must also exceed it by this much (normalised units; 0: off)
        seed_sigma=0.15,  # seed surface: hematoxylin smoothed by this x D ...
        dist_weight=1.0,  # ... + this x min(distance to background, D/2) / D  (0: LoG seeds below)
        log_sigma=0.3,  # LoG seeds, used only with dist_weight=0 (the previous default)
        min_distance=0.4,
        log_threshold=0.08,  # (LoG seeds only)
        min_area=0.3,
        max_area_um2=500.0,
        merge_contact=1.0,  # merge two touching objects when their shared border >= this x the smaller
        merge_solidity=0.85,  # one's inscribed diameter and their union is at least this convex (0: off)
    ),
}

_DIAMETER_RANGE_UM = (3.0, 40.0)
_MIN_HEMATOXYLIN_RANGE = 0.02  # rgb2hed units; 1st-99.5th percentile range of stained tissue is 0.04-0.23
_MIN_SNR = 3.0  # foreground median must exceed the background median by this many noise SDs  # an estimate outside this (with mpp known) is clipped and logged


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------
def _normalize(g: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.8) -> np.ndarray:
    g = g.astype(np.float32, copy=False)
    lo, hi = np.percentile(g, (lo_pct, hi_pct))
    if not hi > lo:
        lo, hi = float(g.min()), float(g.max())
        if not hi > lo:
            return np.zeros(g.shape, np.float32)
    return np.clip((g - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _gaussian(img: np.ndarray, sigma: float) -> np.ndarray:
    return ndi.gaussian_filter(img, sigma, mode="nearest", truncate=4.0)


def _otsu(img: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(img))


def _multiotsu_top(img: np.ndarray, classes: int) -> float:
    from skimage.filters import threshold_multiotsu

    try:
        return float(threshold_multiotsu(img, classes)[-1])
    except ValueError:  # too few grey levels for that many classes
        return _otsu(img)


def _weighted_inradius_diameter(mask: np.ndarray) -> float | None:
    """Twice the area-weighted median inscribed radius of the connected pieces of ``mask``."""
    lab, n = ndi.label(mask)
    if n == 0:
        return None
    dist = ndi.distance_transform_edt(mask)
    inr = _label_max(dist, lab, n)[1:]
    area = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    ok = inr >= 1.5  # ignore specks of a pixel or two
    inr, area = inr[ok], area[ok]
    if inr.size == 0:
        return None
    order = np.argsort(inr, kind="stable")
    cw = np.cumsum(area[order])
    return 2.0 * float(inr[order][np.searchsorted(cw, cw[-1] / 2.0)])


def estimate_nucleus_diameter(image, *, modality: str = "auto", channel: int | None = None) -> float | None:
    """Estimate the typical nucleus diameter of an image, in pixels (``None`` when nothing stands out).

    A first Otsu pass on the lightly smoothed nuclear signal (fluorescence channel, or hematoxylin for
    H&E) gives a mask; the diameter is twice the area-weighted median inscribed radius of its pieces.
    """
    image = check_image(image)
    mod = _resolve_modality(image, modality)
    g, inverted = _nuclear_signal(image, mod, channel)
    if g is None:
        return None
    s = _gaussian(g, 1.0)
    t = _multiotsu_top(s, 4) if inverted else _otsu(s)
    return _weighted_inradius_diameter(s > t)


def _resolve_modality(image: np.ndarray, modality: str) -> str:
    if modality not in ("auto", "he", "fluorescence"):
        raise InputError(f"modality must be 'auto', 'he' or 'fluorescence', got {modality!r}.")
    if modality == "he":
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise InputError(f"modality='he' needs an (H, W, 3) RGB image, got shape {image.shape}.")
        return "he"
    if modality == "fluorescence":
        return "fluorescence"
    if image.ndim == 2 or image.shape[2] not in (3, 4):
        return "fluorescence"
    rgb = image[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return "fluorescence"  # grey stored as RGB: treated as one channel (inverted if background is bright)
    grey = rgb.astype(np.float32).mean(axis=2)
    top = 255.0 if rgb.dtype == np.uint8 else float(np.percentile(grey, 99.9)) or 1.0
    # dark background -> fluorescence; light background -> brightfield (H&E)
    return "fluorescence" if np.median(grey) < 0.35 * top else "he"


def _pick_channel(image: np.ndarray, channel: int | None) -> np.ndarray:
    if image.ndim == 2:
        if channel not in (None, 0):
            raise InputError(f"channel={channel} asked for, but the image is single-channel "
                             f"(shape {image.shape}).")
        return image
    n = image.shape[2]
    if channel is not None:
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not -n <= channel < n:
            raise InputError(f"channel must be an integer index into the {n} channels of the image, "
                             f"got {channel!r}.")
        return image[..., int(channel)]
    if n == 1:
        return image[..., 0]
    chans = image[..., :3] if n == 4 and image.dtype == np.uint8 else image  # drop an RGBA alpha
    if all(np.array_equal(chans[..., 0], chans[..., k]) for k in range(1, chans.shape[2])):
        return chans[..., 0]
    # the channel with the strongest bright-object contrast: high percentile above the median,
    # relative to the channel's own spread (unit-free, so mixed dtypes/gains compare fairly)
    best, best_c = -np.inf, 0
    for k in range(chans.shape[2]):
        c = chans[..., k].astype(np.float32)
        lo, med, hi = np.percentile(c, (1, 50, 99.5))
        score = (hi - med) / (hi - lo + 1e-6) * (hi - lo)
        if score > best:
            best, best_c = score, k
    return chans[..., best_c]


def _raw_signal(image: np.ndarray, modality: str, channel: int | None) -> np.ndarray:
    """The un-normalised nuclear signal: hematoxylin (rgb2hed units) for H&E, else the nuclear channel."""
    if modality == "he":
        from skimage.color import rgb2hed

        rgb = image[..., :3]
        if rgb.dtype != np.uint8:
            rgb = np.clip(rgb, 0, None).astype(np.float64)
            rgb = rgb / max(float(rgb.max()), 1e-12)
        with np.errstate(all="ignore"):
            return rgb2hed(rgb)[..., 0].astype(np.float32)
    return _pick_channel(image, channel).astype(np.float32)


_PERCENTILES = {"he": (1.0, 99.5), "fluorescence": (0.5, 99.8)}


def _nuclear_signal(image: np.ndarray, modality: str, channel: int | None, levels: dict | None = None):
    """(normalised nuclear signal in [0, 1] with nuclei bright, inverted flag) or (None, False).

    ``levels`` (from :meth:`WatershedBackend.calibrate`) fixes the normalisation range and the
    inversion for a whole slide; without it they come from this image's own percentiles.
    """
    raw = _raw_signal(image, modality, channel)
    if levels is not None and "norm" in levels:
        lo, hi = (float(v) for v in levels["norm"])
        if modality == "he" and hi - lo < _MIN_HEMATOXYLIN_RANGE:
            return None, False
        g = np.clip((raw - lo) / (hi - lo), 0.0, 1.0).astype(np.float32) if hi > lo else \
            np.zeros(raw.shape, np.float32)
        if not g.any():
            return None, False
        inverted = bool(levels.get("inverted", False))
        return (1.0 - g if inverted else g), inverted
    if modality == "he":
        lo, hi = np.percentile(raw, _PERCENTILES["he"])
        if hi - lo < _MIN_HEMATOXYLIN_RANGE:  # blank glass / no stain: no nuclei to find
            return None, False
        g = _normalize(raw, *_PERCENTILES["he"])
        return (None, False) if not g.any() else (g, False)
    g = _normalize(raw, *_PERCENTILES["fluorescence"])
    if not g.any():
        return None, False
    inverted = bool(np.median(g) > 0.5)  # bright background: absorbing stain, nuclei darkest
    if inverted:
        g = 1.0 - g
    return g, inverted


def _foreground_threshold(s: np.ndarray, inverted: bool, p: dict, modality: str) -> float:
    """The foreground threshold on the smoothed normalised signal (per image, or pooled patches)."""
    if modality == "he":
        return _otsu(s) * p["threshold_scale"]
    return _multiotsu_top(s, 4) if inverted else _otsu(s) * p["threshold_scale"]


def _has_signal(g: np.ndarray, fg: np.ndarray, snr: float = _MIN_SNR) -> bool:
    """Is the thresholded foreground clearly brighter than the background's noise?

    Guards images without nuclei (empty background tiles): percentile normalisation stretches pure
    noise to the full range and any threshold would then cut noise into objects.
    """
    if not fg.any() or fg.all():
        return bool(fg.any())
    bg_vals = g[~fg]
    bg_med = float(np.median(bg_vals))
    noise = 1.4826 * float(np.median(np.abs(bg_vals - bg_med)))
    contrast = float(np.median(g[fg])) - bg_med
    return contrast > snr * max(noise, 1e-3)


def _label_max(values: np.ndarray, lab: np.ndarray, n: int) -> np.ndarray:
    """Per-label maximum of ``values`` for labels 0..n (fast: one unbuffered ufunc pass, no sorting)."""
    out = np.full(n + 1, -np.inf)
    np.maximum.at(out, lab.ravel(), values.ravel())
    return out


def _h_maxima(surf: np.ndarray, h: float, mask: np.ndarray) -> np.ndarray:
    """h-maxima of ``surf`` inside ``mask``, computed on the mask's bounding box only."""
    from skimage.morphology import h_maxima

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    out = np.zeros(mask.shape, bool)
    if rows.size == 0:
        return out
    sl = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    sub = np.where(mask[sl], surf[sl], 0.0).astype(np.float32)
    out[sl] = h_maxima(sub, np.float32(h)).astype(bool) & mask[sl]
    return out


def _relabel(lab: np.ndarray) -> np.ndarray:
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(lab)[0].astype(np.int32, copy=False)


def _size_filter(lab: np.ndarray, min_px: float, max_px: float | None) -> np.ndarray:
    area = np.bincount(lab.ravel())
    bad = area < max(min_px, 1.0)
    if max_px is not None:
        bad |= area > max_px
    bad[0] = False
    if bad.any():
        lab = lab.copy()
        lab[bad[lab]] = 0
    return lab


# ----------------------------------------------------------------------------------------------------
# the two pipelines
# ----------------------------------------------------------------------------------------------------
def _smoothing_px(p: dict, D: float, sigma_px) -> float:
    return sigma_px if sigma_px is not None else max(p["sigma"] * D, 0.5)


def _fluorescence(g: np.ndarray, inverted: bool, D: float, p: dict, sigma_px, h_px, min_px, max_px,
                  threshold: float | None = None):
    from skimage.segmentation import expand_labels, watershed

    s = _gaussian(g, _smoothing_px(p, D, sigma_px))
    t = _foreground_threshold(s, inverted, p, "fluorescence") if threshold is None else threshold
    mask = ndi.binary_fill_holes(s > t)
    if not _has_signal(g, mask):
        return np.zeros(g.shape, np.int32)
    dist = ndi.distance_transform_edt(mask)
    surf = _gaussian(dist, max(p["dist_sigma"] * D, 0.5)) + p["intensity_weight"] * D * s
    h = h_px if h_px is not None else max(p["h"] * D, 0.3)
    markers, _ = ndi.label(_h_maxima(surf, h, mask))
    lab = watershed(-surf, markers, mask=mask)
    if p["relative_threshold"] > 0 and lab.max() > 0:
        peak = _label_max(s, lab, int(lab.max()))
        peak[0] = np.inf
        lab[s < p["relative_threshold"] * peak[lab]] = 0
        holes = ndi.binary_fill_holes(lab > 0) & (lab == 0)
        if holes.any():
            idx = ndi.distance_transform_edt(lab == 0, return_distances=False, return_indices=True)
            lab[holes] = lab[idx[0][holes], idx[1][holes]]
    if p["grow"] > 0:
        lab = expand_labels(lab, p["grow"] * D)
    if min_px is None:
        min_px = p["min_area"] * np.pi * D * D / 4.0
    return _size_filter(lab, max(min_px, 4.0), max_px)


def _he(g: np.ndarray, D: float, p: dict, sigma_px, min_distance_px, min_px, max_px,
        threshold: float | None = None):
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    s = _gaussian(g, _smoothing_px(p, D, sigma_px))
    t = _foreground_threshold(s, False, p, "he") if threshold is None else threshold
    fg = s > t
    if p["local_offset"] > 0:  # and above the local background (pale stroma vs crowded epithelium)
        fg &= s > _gaussian(s, max(p["local_sigma"] * D, 0.5)) + p["local_offset"]
    mask = ndi.binary_fill_holes(fg)
    if not mask.any():
        return np.zeros(g.shape, np.int32)
    if p["dist_weight"] > 0:
        dist = ndi.distance_transform_edt(mask)
        resp = _gaussian(g, max(p["seed_sigma"] * D, 0.5)) + p["dist_weight"] * np.minimum(dist, 0.5 * D) / D
        resp[~mask] = 0.0  # > 0 inside the mask: every maximum there is a candidate seed
        floor = 0.0
    else:
        ls = max(p["log_sigma"] * D, 1.0)
        resp = -ndi.gaussian_laplace(g, ls, mode="nearest") * ls * ls
        floor = p["log_threshold"]
    md = min_distance_px if min_distance_px is not None else p["min_distance"] * D
    pk = peak_local_max(resp, min_distance=max(1, int(round(md))), threshold_abs=floor, exclude_border=False)
    pk = pk[mask[pk[:, 0], pk[:, 1]]]
    markers = np.zeros(g.shape, np.int32)
    markers[pk[:, 0], pk[:, 1]] = np.arange(1, len(pk) + 1)
    lab = watershed(-resp, markers, mask=mask)
    if min_px is None:
        min_px = p["min_area"] * np.pi * D * D / 4.0
    lab = _size_filter(lab, max(min_px, 4.0), max_px)
    if p["merge_contact"] > 0 and p["merge_solidity"] > 0:
        lab = _merge_fragments(lab, p["merge_contact"], p["merge_solidity"])
    return lab


def _merge_fragments(lab: np.ndarray, contact: float, solidity: float, iters: int = 2) -> np.ndarray:
    """Merge over-split pieces of one nucleus (e.g. a large nucleus whose chromatin texture gave several
    seeds at the fixed seed scale).

    Two touching objects are merged when (a) their shared border is at least ``contact`` x the inscribed
    diameter of the smaller one (a fragment shares most of its width with its neighbour; two touching
    round nuclei share a short chord) and (b) their union has solidity (area / convex-hull area) of at
    least ``solidity`` (two nuclei side by side leave concave notches).  Scale-free: no length
    parameter.  Repeated ``iters`` times so that three or four pieces can join.
    """
    from scipy.spatial import ConvexHull, QhullError

    for _ in range(iters):
        n = int(lab.max())
        if n < 2:
            break
        hz = lab[:, :-1] != lab[:, 1:]
        vt = lab[:-1, :] != lab[1:, :]
        a = np.concatenate([lab[:, :-1][hz], lab[:-1, :][vt]]).astype(np.int64)
        b = np.concatenate([lab[:, 1:][hz], lab[1:, :][vt]]).astype(np.int64)
        ok = (a > 0) & (b > 0)
        if not ok.any():
            break
        lo, hi = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
        key, border = np.unique(lo * (n + 1) + hi, return_counts=True)
        pi, pj = key // (n + 1), key % (n + 1)
        # inscribed radius of each object on its own (borders between objects count as background)
        edge = np.zeros(lab.shape, bool)
        edge[:, :-1] |= hz
        edge[:, 1:] |= hz
        edge[:-1, :] |= vt
        edge[1:, :] |= vt
        inr = _label_max(ndi.distance_transform_edt((lab > 0) & ~edge), lab, n) + 1.0
        inr[~np.isfinite(inr)] = 1.0
        cand = np.flatnonzero(border >= contact * 2.0 * np.minimum(inr[pi], inr[pj]))
        if cand.size == 0:
            break
        boxes = ndi.find_objects(lab, max_label=n)
        parent = np.arange(n + 1)
        hulls: dict[int, np.ndarray | None] = {}
        areas = np.bincount(lab.ravel(), minlength=n + 1)

        def hull_vertices(i: int):
            # convex-hull vertices of the object's pixel squares (all four corners of its boundary
            # pixels), computed once per object; a pair's hull is the hull of both vertex sets
            if i not in hulls:
                b = boxes[i - 1]
                m = np.pad(lab[b] == i, 1)
                edge = m & ~ndi.binary_erosion(m)
                yy, xx = np.nonzero(edge)
                yy, xx = yy + b[0].start - 1, xx + b[1].start - 1
                pts = np.concatenate([np.c_[yy, xx], np.c_[yy + 1, xx], np.c_[yy, xx + 1], np.c_[yy + 1, xx + 1]])
                try:
                    hulls[i] = pts[ConvexHull(pts).vertices]
                except (QhullError, ValueError):
                    hulls[i] = pts
            return hulls[i]

        def find(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        merged = False
        for k in cand:
            i, j = int(pi[k]), int(pj[k])
            try:
                hull = ConvexHull(np.concatenate([hull_vertices(i), hull_vertices(j)])).volume
            except (QhullError, ValueError):
                continue
            if (areas[i] + areas[j]) / hull >= solidity:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
                    merged = True
        if not merged:
            break
        roots = np.array([find(x) for x in range(n + 1)])
        lab = roots[lab].astype(np.int32, copy=False)
    return lab


# ----------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------
def _um_to_px(value, mpp, name, *, power=1):
    if value is None:
        return None
    check_positive(value, name)
    if mpp is None:
        raise MissingMppError(f"{name}={value} is in µm but the pixel size is unknown; pass mpp= (µm/px).")
    return float(value) / float(mpp) ** power


def watershed_nuclei(image, *, mpp: float | None = None, modality: str = "auto", channel: int | None = None,
                     diameter_um: float | None = None, sigma_um: float | None = None,
                     h_um: float | None = None, min_distance_um: float | None = None,
                     min_area_um2: float | None = None, max_area_um2: float | None = None,
                     diameter_px: float | None = None, levels: dict | None = None, return_info: bool = False,
                     **params: Any):
    """Segment nuclei with a classical, seeded watershed (no model needed; deterministic).

    Parameters
    ----------
    image
        ``(H, W, 3)`` uint8 RGB (H&E / brightfield) or ``(H, W)`` / ``(H, W, C)`` fluorescence of any
        numeric dtype.
    mpp
        µm per pixel of ``image``. With ``None`` the µm parameters cannot be converted: the pipeline
        uses pixel defaults scaled from a per-image estimate of the nucleus diameter
        (:func:`estimate_nucleus_diameter`) and warns that it did so.
    modality
        ``'he'`` (colour deconvolution to hematoxylin), ``'fluorescence'`` (one channel, nuclei bright;
        a grey image with a bright background is inverted) or ``'auto'``: 2-D, non-RGB or grey-RGB
        images are fluorescence; a colour RGB image is fluorescence when its median grey level is below
        35% of the range (dark background), H&E otherwise.
    channel
        Fluorescence channel holding the nuclear stain. ``None``: the only channel, or, for several
        different channels, the one with the strongest bright-object contrast (99.5th percentile above
        the median).
    diameter_um
        Expected nucleus diameter ``D`` in µm, which scales every other length. Default: 7 µm for H&E
        (fitted on CRCHistoPhenotypes; pass the right value for tissue with larger nuclei); for
        fluorescence (nucleus size varies a lot between cell types) estimated from the image
        (:func:`estimate_nucleus_diameter`) and clipped to 3–40 µm.
    sigma_um
        Gaussian smoothing before thresholding. Default ``0.03 D`` (fluorescence), ``0.1 D`` (H&E).
    h_um
        Fluorescence: h-maxima height of the seeds on the distance transform. Default ``0.02 D``.
    min_distance_um
        H&E: minimal distance between two seeds. Default ``0.4 D``.
    min_area_um2, max_area_um2
        Size filter. Defaults: min ``0.15`` (fluorescence) / ``0.3`` (H&E) x the area of a disc of
        diameter ``D``; max none (fluorescence) / 500 µm² (H&E, only when ``mpp`` is known).
    diameter_px
        Expected nucleus diameter in pixels, used as given (for callers that measured it, e.g. the
        slide-wide calibration of :class:`WatershedBackend`); ``diameter_um`` wins when both are given.
    levels
        Slide-wide intensity levels from :meth:`WatershedBackend.calibrate`: ``{'modality', 'norm':
        (lo, hi), 'inverted', 'threshold', 'diameter_px'}``. They replace this image's own percentiles,
        Otsu threshold and modality guess, so that every tile of a slide is segmented alike and the
        result does not depend on how the slide is tiled.
    return_info
        Also return a dict with the modality, the diameter used (px) and whether it was estimated.
    **params
        Expert overrides of the fractions in :data:`WATERSHED_DEFAULTS` (e.g. ``threshold_scale=0.8``).

    Returns
    -------
    labels
        ``(H, W)`` int32, 0 = background, objects ``1..n`` (all zero when there are no nuclei).
    info
        Only with ``return_info=True``.
    """
    image = check_image(image)
    if image.ndim == 3 and image.shape[2] == 0:
        raise InputError(f"image has no channels (shape {image.shape}).")
    if mpp is not None:
        mpp = float(check_positive(mpp, "mpp (µm/px)"))
    if levels is not None and levels.get("modality") and modality == "auto":
        modality = levels["modality"]
    mod = _resolve_modality(image, modality)
    p = dict(WATERSHED_DEFAULTS[mod])
    unknown = set(params) - set(p)
    if unknown:
        raise InputError(f"Unknown watershed parameter(s) {sorted(unknown)} for modality {mod!r}; "
                         f"known: {sorted(p)}.")
    for k, v in params.items():
        p[k] = float(check_positive(v, k)) if k not in ("intensity_weight", "grow", "relative_threshold",
                                                       "merge_contact", "merge_solidity", "local_offset",
                                                       "dist_weight") \
            else float(v)
    if mpp is None:
        given = [n for n, v in (("diameter_um", diameter_um), ("sigma_um", sigma_um), ("h_um", h_um),
                                ("min_distance_um", min_distance_um), ("min_area_um2", min_area_um2),
                                ("max_area_um2", max_area_um2)) if v is not None]
        if given:
            raise MissingMppError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} in µm but the "
                                  "pixel size is unknown; pass mpp= (µm/px).")
    if diameter_px is not None:
        diameter_px = float(check_positive(diameter_px, "diameter_px"))
    if mpp is None and diameter_px is None:
        warnings.warn("watershed_nuclei: mpp (µm/px) is unknown, so the µm defaults cannot be used; "
                      "falling back to pixel defaults scaled from a per-image estimate of the nucleus "
                      "diameter. Pass mpp= for physical defaults.", UserWarning, stacklevel=2)

    info = dict(modality=mod, diameter_px=None, estimated=False, mpp=mpp)
    g, inverted = _nuclear_signal(image, mod, channel, levels)
    empty = np.zeros(image.shape[:2], np.int32)
    if g is None:
        return (empty, info) if return_info else empty

    if diameter_um is None and diameter_px is None and mod == "he" and mpp is not None:
        diameter_um = p["diameter_um"]
    if diameter_um is not None:
        D = float(_um_to_px(diameter_um, mpp, "diameter_um"))
    elif diameter_px is not None:
        D = diameter_px
    else:
        s1 = _gaussian(g, 1.0)
        D = _weighted_inradius_diameter(s1 > (_multiotsu_top(s1, 4) if inverted else _otsu(s1)))
        info["estimated"] = True
        if D is None:
            return (empty, info) if return_info else empty
        if mpp is not None:
            rng_um = _DIAMETER_RANGE_UM
            lo, hi = (v / mpp for v in rng_um)
            if not lo <= D <= hi:
                logger.debug("watershed: estimated nucleus diameter %.1f µm clipped to %s µm", D * mpp,
                             rng_um)
                D = float(np.clip(D, lo, hi))
    info["diameter_px"] = D

    sigma_px = _um_to_px(sigma_um, mpp, "sigma_um")
    min_px = _um_to_px(min_area_um2, mpp, "min_area_um2", power=2)
    if max_area_um2 is None and mod == "he" and mpp is not None:
        max_area_um2 = p["max_area_um2"]
    max_px = _um_to_px(max_area_um2, mpp, "max_area_um2", power=2)
    threshold = None if levels is None else levels.get("threshold")
    if mod == "he":
        lab = _he(g, D, p, sigma_px, _um_to_px(min_distance_um, mpp, "min_distance_um"), min_px, max_px,
                  threshold)
    else:
        lab = _fluorescence(g, inverted, D, p, sigma_px, _um_to_px(h_um, mpp, "h_um"), min_px, max_px,
                            threshold)
    lab = _relabel(lab)
    return (lab, info) if return_info else lab


class WatershedBackend:
    """The classical backend of ``tg.seg.nuclei(method='watershed')`` (see the backend contract in
    ``docs/architecture.md``).

    Parameters
    ----------
    mpp
        Resolution (µm/px) to work at; ``None`` = the slide's own.
    modality, channel
        See :func:`watershed_nuclei`.
    max_object_um
        Largest nucleus diameter returned, in µm; sets :attr:`max_object_px` (tile overlap).
    **params
        Further keyword arguments of :func:`watershed_nuclei` (``diameter_um``, ``min_area_um2``,
        expert fractions such as ``threshold_scale``), checked here.
    """

    name = "watershed"
    _KW = ("diameter_um", "diameter_px", "sigma_um", "h_um", "min_distance_um", "min_area_um2", "max_area_um2")

    def __init__(self, *, mpp: float | None = None, modality: str = "auto", channel: int | None = None,
                 max_object_um: float = 30.0, **params: Any):
        self.mpp = None if mpp is None else float(check_positive(mpp, "mpp (µm/px)"))
        if modality not in ("auto", "he", "fluorescence"):
            raise InputError(f"modality must be 'auto', 'he' or 'fluorescence', got {modality!r}.")
        self.modality = modality
        self.channel = channel
        self.max_object_um = float(check_positive(max_object_um, "max_object_um"))
        known = set(self._KW) | set(WATERSHED_DEFAULTS["fluorescence"]) | set(WATERSHED_DEFAULTS["he"])
        unknown = set(params) - known
        if unknown:
            raise InputError(f"Unknown watershed parameter(s) {sorted(unknown)}; known: {sorted(known)}.")
        self.params = dict(params)

    @property
    def max_object_px(self) -> int:
        """Largest object diameter in working px (64 px when the working resolution is unknown)."""
        if self.mpp is None:
            return 64
        return int(np.ceil(self.max_object_um / self.mpp))

    def calibrate(self, patches, *, mpp: float | None = None) -> dict:
        """Slide-wide levels from sample patches, so that every tile is segmented alike and the result
        does not depend on tiling: the modality, the normalisation range of the nuclear signal and its
        inversion (pooled percentiles), the nucleus diameter (median of per-patch estimates, used where
        it would otherwise be estimated per image) and the foreground threshold (Otsu on the pooled,
        smoothed patches). ``mpp`` is the patches' µm/px (the runner's working resolution)."""
        mpp = self.mpp if mpp is None else mpp
        patches = [check_image(pt) for pt in patches]
        if not patches:
            return {}
        mod = self.modality
        if mod == "auto":
            votes = [_resolve_modality(pt, "auto") for pt in patches]
            mod = max(set(votes), key=votes.count)
        raw = np.concatenate([_raw_signal(pt, mod, self.channel).ravel() for pt in patches])
        lo, hi = (float(v) for v in np.percentile(raw, _PERCENTILES[mod]))
        levels: dict = {"modality": mod, "norm": (lo, hi)}
        if not hi > lo:
            return levels
        gs = [np.clip((_raw_signal(pt, mod, self.channel) - lo) / (hi - lo), 0, 1).astype(np.float32)
              for pt in patches]
        inverted = mod == "fluorescence" and bool(np.median(np.concatenate([g.ravel() for g in gs])) > 0.5)
        levels["inverted"] = inverted
        if inverted:
            gs = [1.0 - g for g in gs]
        ds = [d for d in (estimate_nucleus_diameter(pt, modality=mod, channel=self.channel) for pt in patches)
              if d is not None]
        if ds:
            levels["diameter_px"] = float(np.median(ds))
        # the diameter each tile will use decides the smoothing before thresholding
        p = {**WATERSHED_DEFAULTS[mod], **{k: v for k, v in self.params.items() if k in WATERSHED_DEFAULTS[mod]}}
        D = self._diameter_px(mod, levels, mpp)
        if D is not None:
            sigma_px = self.params["sigma_um"] / mpp if self.params.get("sigma_um") and mpp else None
            s = np.concatenate([_gaussian(g, _smoothing_px(p, D, sigma_px)).ravel() for g in gs])
            levels["threshold"] = float(_foreground_threshold(s, inverted, p, mod))
        return levels

    def _diameter_px(self, mod: str, levels: dict, mpp: float | None) -> float | None:
        """The nucleus diameter (px) tiles will use, as :func:`watershed_nuclei` would choose it."""
        if self.params.get("diameter_um") is not None and mpp is not None:
            return float(self.params["diameter_um"]) / mpp
        if self.params.get("diameter_px") is not None:
            return float(self.params["diameter_px"])
        if mod == "he" and mpp is not None:
            return WATERSHED_DEFAULTS["he"]["diameter_um"] / mpp
        d = levels.get("diameter_px")
        if d is not None and mpp is not None:
            d = float(np.clip(d, _DIAMETER_RANGE_UM[0] / mpp, _DIAMETER_RANGE_UM[1] / mpp))
        return d

    def segment(self, image, *, mpp: float | None = None, calibration: dict | None = None):
        """``(labels int32 (H, W), None)``: the watershed has no per-object score.

        ``calibration`` (from :meth:`calibrate`) fixes the modality, intensity levels, threshold and
        (where it would be estimated per image) the nucleus diameter for all tiles of a slide.
        """
        mpp = self.mpp if mpp is None else mpp
        p = dict(self.params)
        levels = dict(calibration) if calibration else None
        mod = _resolve_modality(check_image(image), levels.get("modality", self.modality) if levels
                                else self.modality)
        if levels and p.get("diameter_um") is None and p.get("diameter_px") is None:
            d = self._diameter_px(mod, levels, mpp)
            if d is not None and (mod == "fluorescence" or mpp is None):
                p["diameter_px"] = d
        # keep only the expert fractions of the pipeline this image goes through
        p = {k: v for k, v in p.items() if k in self._KW or k in WATERSHED_DEFAULTS[mod]}
        lab = watershed_nuclei(image, mpp=mpp, modality=mod, channel=self.channel, levels=levels, **p)
        return lab, None

    def __repr__(self) -> str:
        return (f"WatershedBackend(mpp={self.mpp}, modality={self.modality!r}, channel={self.channel}, "
                f"params={self.params})")
