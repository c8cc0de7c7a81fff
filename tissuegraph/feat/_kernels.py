"""``label_features``: every per-nucleus feature of a label image, vectorised over labels."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .._errors import InputError
from .._validate import check_image, check_labels, check_positive
from . import _shape as S
from ._stain import stain_od, white_level
from ._texture import GLCM_PROPS, glcm_features, quantize

__all__ = ["FeatureSpec", "GROUPS", "STATS", "feature_catalog", "label_features"]

GROUPS = ("shape", "intensity", "texture", "position")
"""Feature groups; ``'all'`` means every group except ``'position'`` (centroids, in pixels)."""

STATS = ("mean", "std", "min", "q25", "median", "q75", "max")
"""Statistics of every intensity channel over a nucleus' pixels (``std``: population, ddof=0;
quantiles: linear interpolation, as :func:`numpy.quantile`)."""

_QUANTILES = {"q25": 0.25, "median": 0.5, "q75": 0.75}
UM, UM2, NONE = "µm", "µm²", "dimensionless"
N_FOURIER = 6


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    unit: str
    group: str
    description: str


_SHAPE: list[tuple[str, str, str]] = [
    ("area_um2", UM2, "pixel count x pixel area (regionprops area)"),
    ("perimeter_um", UM, "Benkrid-Crookes weighted border-pixel perimeter (regionprops perimeter)"),
    ("perimeter_crofton_um", UM, "Crofton perimeter, 4 directions (regionprops perimeter_crofton)"),
    ("convex_perimeter_um", UM, "perimeter of the convex hull of the pixels' edge midpoints"),
    ("equivalent_diameter_um", UM, "diameter of the disk of the same area (regionprops "
                                   "equivalent_diameter_area)"),
    ("major_axis_length_um", UM, "4 sqrt(largest inertia eigenvalue) (regionprops axis_major_length)"),
    ("minor_axis_length_um", UM, "4 sqrt(smallest inertia eigenvalue) (regionprops axis_minor_length)"),
    ("feret_diameter_max_um", UM, "maximum caliper diameter of the convex hull image (regionprops "
                                  "feret_diameter_max)"),
    ("bbox_width_um", UM, "bounding-box width (columns)"),
    ("bbox_height_um", UM, "bounding-box height (rows)"),
    ("area_convex_um2", UM2, "area of the convex hull image (regionprops area_convex)"),
    ("eccentricity", NONE, "eccentricity of the inertia ellipse (regionprops eccentricity)"),
    ("orientation_rad", "rad", "angle between the row axis and the major axis, in [-pi/2, pi/2] "
                               "(regionprops orientation)"),
    ("solidity", NONE, "area / area_convex (regionprops solidity)"),
    ("extent", NONE, "area / bounding-box area (regionprops extent)"),
    ("circularity", NONE, "4 pi area / perimeter_crofton^2 (about 1 for digital disks of any size; "
                          "above 1 only for objects of a few pixels)"),
    ("elongation", NONE, "1 - minor / major axis length (0 for a disk or a single pixel)"),
    ("convexity", NONE, "convex_perimeter / length of the polygon through the crack-edge midpoints of "
                        "every boundary; in (0, 1] for connected masks"),
    ("euler_number", NONE, "8-connected pieces minus holes (regionprops euler_number)"),
] + [(f"hu_moment_{k}", NONE, f"Hu moment invariant {k} (regionprops moments_hu[{k - 1}])")
     for k in range(1, 8)] + [
    ("fourier_descriptor_1", NONE, "|F_-1| / |F_1| of the outer boundary (0 for a circle)")] + [
    (f"fourier_descriptor_{k}", NONE, f"sqrt(|F_{k}|^2 + |F_-{k}|^2) / |F_1| of the outer boundary "
                                      f"(NaN when it has fewer than {2 * k + 1} crack edges)")
    for k in range(2, N_FOURIER + 1)]

_POSITION: list[tuple[str, str, str]] = [
    ("centroid_x_px", "px", "mean column of the pixel centres (array coordinates)"),
    ("centroid_y_px", "px", "mean row of the pixel centres (array coordinates)"),
]


def _channels(stain: str, n_channels: int, channel_names: Sequence[str] | None) -> list[tuple[str, str]]:
    """(name, unit) of the intensity channels for a stain."""
    if stain == "he":
        return [("hematoxylin_od", "OD"), ("eosin_od", "OD"), ("red", "intensity"), ("green", "intensity"),
                ("blue", "intensity")]
    if channel_names is None:
        names = [f"ch{k}" for k in range(n_channels)]
    else:
        names = [str(c) for c in channel_names]
        if len(names) != n_channels:
            raise InputError(f"channel_names has {len(names)} names but the image has {n_channels} "
                             "channel(s).")
        if len(set(names)) != len(names):
            raise InputError(f"channel_names must be unique, got {names}.")
    return [(nm, "intensity") for nm in names]


def feature_catalog(*, stain: str | None = "he", n_channels: int = 3,
                    channel_names: Sequence[str] | None = None,
                    texture_channel: str | int | None = None) -> list[FeatureSpec]:
    """Every feature :func:`label_features` can compute for an image of this kind, in output order.

    ``stain=None`` means no image (shape and position features only).
    """
    specs = [FeatureSpec(n, u, "shape", d) for n, u, d in _SHAPE]
    if stain is not None:
        chans = _channels(stain, n_channels, channel_names)
        for ch, unit in chans:
            for st in STATS:
                specs.append(FeatureSpec(f"{ch}_{st}", unit, "intensity", f"{st} of {ch} over the nucleus"))
        integ = chans[:1] if stain == "he" else chans
        for ch, unit in integ:
            specs.append(FeatureSpec(f"{ch}_integrated_um2", f"{unit}·{UM2}", "intensity",
                                     f"sum of {ch} over the nucleus x pixel area"))
        tex = _texture_channel(stain, chans, texture_channel)
        for p in GLCM_PROPS:
            specs.append(FeatureSpec(f"{chans[tex][0]}_glcm_{p}", NONE, "texture",
                                     f"GLCM {p} of {chans[tex][0]} (distance 1, 4 angles averaged)"))
    specs += [FeatureSpec(n, u, "position", d) for n, u, d in _POSITION]
    return specs


def _texture_channel(stain: str, chans: list[tuple[str, str]], texture_channel: str | int | None) -> int:
    if texture_channel is None:
        return 0  # hematoxylin for H&E, the first channel otherwise
    names = [c[0] for c in chans]
    if isinstance(texture_channel, (numbers.Integral, np.integer)) and not isinstance(texture_channel, bool):
        if not 0 <= int(texture_channel) < len(names):
            raise InputError(f"texture_channel={texture_channel} is out of range for channels {names}.")
        return int(texture_channel)
    if texture_channel in names:
        return names.index(texture_channel)
    raise InputError(f"texture_channel={texture_channel!r} is not one of the channels {names}.")


def _resolve_features(features: Any, catalog: list[FeatureSpec]) -> list[FeatureSpec]:
    by_name = {f.name: f for f in catalog}
    if features is None or (isinstance(features, str) and features == "all"):
        return [f for f in catalog if f.group != "position"]
    items = [features] if isinstance(features, str) else list(features)
    if not items:
        raise InputError("features is empty; pass 'all', a group name or a list of feature names.")
    wanted: set[str] = set()
    for it in items:
        if not isinstance(it, str):
            raise InputError(f"features must hold strings (names or groups), got {it!r}.")
        if it == "all":
            wanted |= {f.name for f in catalog if f.group != "position"}
        elif it in GROUPS:
            grp = {f.name for f in catalog if f.group == it}
            if not grp:
                raise InputError(f"Feature group {it!r} needs an intensity image (image=None was given).")
            wanted |= grp
        elif it in by_name:
            wanted.add(it)
        else:
            groups_avail = sorted({f.group for f in catalog})
            raise InputError(f"Unknown feature {it!r}. Groups available here: {groups_avail}; names: "
                             f"{[f.name for f in catalog]}.")
    return [f for f in catalog if f.name in wanted]


def _check_spacing(spacing: Any) -> float:
    if isinstance(spacing, (numbers.Real, np.floating, np.integer)) and not isinstance(spacing, bool):
        return float(check_positive(spacing, "spacing (µm/px)"))
    try:
        vals = [float(check_positive(v, "spacing (µm/px)")) for v in spacing]
    except TypeError as exc:
        raise InputError(f"spacing must be a number (µm/px), got {spacing!r}.") from exc
    if len(vals) != 2 or abs(vals[0] - vals[1]) > 1e-9 * max(vals):
        raise InputError(f"spacing must be one number or two equal numbers (square pixels), got {spacing!r}.")
    return vals[0]


def _resolve_stain(stain: str, image: np.ndarray | None) -> str | None:
    if image is None:
        return None
    if stain not in ("auto", "he", "fluorescence"):
        raise InputError(f"stain must be 'he', 'fluorescence' or 'auto', got {stain!r}.")
    n_ch = 1 if image.ndim == 2 else image.shape[2]
    if stain == "auto":
        return "he" if (n_ch == 3 and image.dtype == np.uint8) else "fluorescence"
    if stain == "he" and n_ch != 3:
        raise InputError(f"stain='he' needs an RGB image with 3 channels, got {n_ch} (shape {image.shape}).")
    return stain


def _group_sort(px: S.Pixels, v: np.ndarray) -> np.ndarray:
    """``v`` sorted by (label, value): one float argsort, then a stable radix sort by label."""
    o = np.argsort(v)
    gv = px.g[o]
    if px.n < 2 ** 16:
        o2 = np.argsort(gv.astype(np.uint16), kind="stable")  # radix sort for 16-bit keys
    else:
        o2 = np.argsort(gv, kind="stable")
    return v[o[o2]]


def _channel_stats(px: S.Pixels, v: np.ndarray, stats: set[str], integer: bool = False) -> dict[str, np.ndarray]:
    """Mean, std, min, max and quantiles of ``v`` per label.

    Order statistics come from a per-label histogram when ``v`` holds small non-negative integers
    (``integer=True``: values of an integer image, e.g. uint8 channels), else from one sort of
    (label, value); both are exact.
    """
    out: dict[str, np.ndarray] = {}
    cnt = px.counts.astype(np.float64)
    if stats & {"mean", "std"}:
        mean = px.sum(v) / cnt
        out["mean"] = mean
        if "std" in stats:
            d = v - mean[px.g]
            out["std"] = np.sqrt(px.sum(d * d) / cnt)
    order_stats = stats & ({"min", "max"} | set(_QUANTILES))
    if not order_stats:
        return out
    ranks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    last = px.counts - 1
    if "min" in order_stats:
        ranks["min"] = (np.zeros(px.n, dtype=np.int64), np.zeros(px.n, dtype=np.int64), np.zeros(px.n))
    if "max" in order_stats:
        ranks["max"] = (last, last, np.zeros(px.n))
    for name, q in _QUANTILES.items():
        if name in order_stats:
            pos = q * last
            lo = np.floor(pos).astype(np.int64)
            ranks[name] = (lo, np.minimum(lo + 1, last), pos - lo)
    vmax = float(v.max()) if v.size else 0.0
    integer = bool(integer and v.size and float(v.min()) >= 0 and vmax < 65536)
    n_bins = int(vmax) + 1 if integer else 0
    if integer and px.n * n_bins <= 8_000_000:
        hist = np.bincount(px.g * n_bins + v.astype(np.int64), minlength=px.n * n_bins)
        # cumulative counts per label, offset per label so that the whole table is ascending
        big = int(px.counts.max()) + 1
        row_off = np.arange(px.n, dtype=np.int64) * big
        cum = (np.cumsum(hist.reshape(px.n, n_bins), axis=1) + row_off[:, None]).ravel()
        bin_off = np.arange(px.n, dtype=np.int64) * n_bins

        def at(rank: np.ndarray) -> np.ndarray:  # value of the rank-th smallest (0-based)
            return (np.searchsorted(cum, rank + row_off, side="right") - bin_off).astype(np.float64)
    else:
        vs = _group_sort(px, v)

        def at(rank: np.ndarray) -> np.ndarray:
            return vs[px.starts + rank]
    for name, (lo, hi, frac) in ranks.items():
        a = at(lo)
        if name in ("min", "max"):
            out[name] = a
        else:
            b = at(hi)
            out[name] = a + frac * (b - a)
    return out


def label_features(labels: np.ndarray, image: np.ndarray | None = None, *, spacing: float = 1.0,
                   features: str | Sequence[str] = "all", stain: str = "auto",
                   channel_names: Sequence[str] | None = None, texture_levels: int = 16,
                   texture_range: str | tuple[float, float] = "nucleus",
                   texture_channel: str | int | None = None) -> pd.DataFrame:
    """Per-label morphology, intensity and texture features of a label image.

    A pure kernel for any label tile: every feature is computed for all labels at once with
    vectorised reductions (no Python loop over labels).

    Parameters
    ----------
    labels
        2-D integer label image, 0 = background.  Labels need not be consecutive; a label may touch
        the border (it is measured as it appears).
    image
        Optional intensity image, (H, W) or (H, W, C), same H and W as ``labels``.  Without it, only
        shape (and position) features are available.  NaN or infinite values raise
        :class:`~tissuegraph.InputError`.
    spacing
        Pixel size in µm (square pixels; one number or two equal numbers).  Lengths are reported in
        µm and areas in µm²; ``spacing=1`` gives pixel units.
    features
        ``'all'`` (shape, intensity and texture), a group name (``'shape'``, ``'intensity'``,
        ``'texture'``, ``'position'``), a feature name, or a list of them.  See
        :func:`feature_catalog` for the names.
    stain
        ``'he'``: brightfield RGB; intensities are the hematoxylin and eosin optical densities after
        colour deconvolution (fixed Ruifrok-Johnston vectors, see :mod:`tissuegraph.feat._stain`)
        and the raw R, G, B values; texture uses hematoxylin.  ``'fluorescence'``: every channel as
        is.  ``'auto'``: ``'he'`` for 3-channel uint8 images, else ``'fluorescence'``.
    channel_names
        Names of the channels for ``stain='fluorescence'`` (default ``ch0``, ``ch1``, ...).
    texture_levels
        Grey levels of the co-occurrence matrices (2-256).
    texture_range
        ``'nucleus'`` (each nucleus' own min-max is quantised, so texture does not depend on its
        brightness or on the image block) or a fixed ``(lo, hi)`` range in channel units.
    texture_channel
        Channel name or index used for texture (default: hematoxylin, or the first channel).

    Returns
    -------
    pandas.DataFrame
        One row per label (index ``label``, ascending), one float64 column per feature, in
        :func:`feature_catalog` order.  ``df.attrs['units']`` and ``df.attrs['groups']`` map column
        names to units and groups.

    Notes
    -----
    Features that :func:`skimage.measure.regionprops` also defines (area, perimeter,
    perimeter_crofton, euler_number, area_convex, solidity, extent, equivalent diameter, axis lengths,
    eccentricity, orientation, feret_diameter_max, Hu moments, bbox, centroid, intensity
    mean/std/min/max/median) equal regionprops' values for the same ``spacing`` (tested to 1e-6
    relative error).  NaN marks undefined values: Fourier
    descriptors of tiny nuclei, texture of nuclei without a same-nucleus pixel pair.
    """
    labels = check_labels(labels)
    sp = _check_spacing(spacing)
    if image is not None:
        image = check_image(image, "image")
        if image.shape[:2] != labels.shape:
            raise InputError(f"image has shape {image.shape} but labels have shape {labels.shape}; they must "
                             "cover the same pixels.")
    stain_r = _resolve_stain(stain, image)
    n_ch = 0 if image is None else (1 if image.ndim == 2 else image.shape[2])
    levels = check_positive(texture_levels, "texture_levels", integer=True)
    if not 2 <= levels <= 256:
        raise InputError(f"texture_levels must be between 2 and 256, got {texture_levels}.")
    if not (isinstance(texture_range, str) and texture_range == "nucleus"):
        try:
            lo, hi = (float(v) for v in texture_range)
        except Exception as exc:
            raise InputError(f"texture_range must be 'nucleus' or (lo, hi), got {texture_range!r}.") from exc
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise InputError(f"texture_range must satisfy lo < hi, got {texture_range!r}.")
        texture_range = (lo, hi)
    catalog = feature_catalog(stain=stain_r, n_channels=n_ch, channel_names=channel_names,
                              texture_channel=texture_channel)
    specs = _resolve_features(features, catalog)
    names = [f.name for f in specs]
    attrs = {"units": {f.name: f.unit for f in specs}, "groups": {f.name: f.group for f in specs},
             "spacing": sp, "stain": stain_r}

    ids, px = S.Pixels.from_labels(labels)  # one pass over the image; the rest scales with the nuclei
    n = len(ids)
    if px is None:
        df = pd.DataFrame({nm: pd.Series(dtype=np.float64) for nm in names},
                          index=pd.Index(np.zeros(0, dtype=np.int64), name="label"))
        df.attrs.update(attrs)
        return df

    want = set(names)
    res: dict[str, np.ndarray] = {}
    cache: dict[str, Any] = {}

    def get(what: str):
        if what not in cache:
            if what == "mu":
                cache[what] = S.central_moments(px)
            elif what == "inertia":
                cache[what] = S.inertia(get("mu"))
            elif what == "bbox":
                cache[what] = S.bbox(px)
            elif what == "perimeter":
                cache[what] = S.perimeter(px)
            elif what == "boundary":
                cache[what] = S.boundary_counts(px)
            elif what == "hull":
                cache[what] = S.convex_hull(px, want_feret="feret_diameter_max_um" in want)
            elif what == "hu":
                cache[what] = S.hu_moments(get("mu"))
            elif what == "fourier":
                cache[what] = S.fourier_descriptors(px.dense, n, N_FOURIER)
        return cache[what]

    area_px = px.counts.astype(np.float64)
    simple = {
        "area_um2": lambda: area_px * sp * sp,
        "perimeter_um": lambda: get("perimeter") * sp,
        "perimeter_crofton_um": lambda: S.crofton_perimeter(get("boundary")) * sp,
        "convex_perimeter_um": lambda: get("hull")["convex_perimeter"] * sp,
        "equivalent_diameter_um": lambda: np.sqrt(4.0 * area_px / np.pi) * sp,
        "major_axis_length_um": lambda: get("inertia")["major"] * sp,
        "minor_axis_length_um": lambda: get("inertia")["minor"] * sp,
        "feret_diameter_max_um": lambda: get("hull")["feret_max"] * sp,
        "bbox_width_um": lambda: (get("bbox")[3] - get("bbox")[1] + 1.0) * sp,
        "bbox_height_um": lambda: (get("bbox")[2] - get("bbox")[0] + 1.0) * sp,
        "area_convex_um2": lambda: get("hull")["area_convex"] * sp * sp,
        "eccentricity": lambda: get("inertia")["eccentricity"],
        "orientation_rad": lambda: get("inertia")["orientation"],
        "solidity": lambda: area_px / get("hull")["area_convex"],
        "extent": lambda: area_px / ((get("bbox")[2] - get("bbox")[0] + 1.0)
                                     * (get("bbox")[3] - get("bbox")[1] + 1.0)),
        "circularity": lambda: _safe_div(4 * np.pi * area_px, S.crofton_perimeter(get("boundary")) ** 2),
        "elongation": lambda: 1.0 - _safe_div(get("inertia")["minor"], get("inertia")["major"], fill=1.0),
        "convexity": lambda: get("hull")["convex_perimeter"] / S.midpoint_perimeter(get("boundary")),
        "euler_number": lambda: get("boundary")["euler"],
        "centroid_x_px": lambda: get("mu")["cc"],
        "centroid_y_px": lambda: get("mu")["cr"],
    }
    for k in range(1, 8):
        simple[f"hu_moment_{k}"] = (lambda k=k: get("hu")[k - 1])
    for k in range(1, N_FOURIER + 1):
        simple[f"fourier_descriptor_{k}"] = (lambda k=k: get("fourier")[:, k - 1])
    for nm in names:
        if nm in simple:
            res[nm] = simple[nm]()

    if image is not None and (want & {f.name for f in catalog if f.group in ("intensity", "texture")}):
        chans = _channels(stain_r, n_ch, channel_names)
        flat = px.r * image.shape[1] + px.c
        vals = image.reshape(-1, n_ch)[flat]
        if stain_r == "he":
            white = white_level(image.dtype, vals)
            hed = stain_od(vals, white)
            chan_vals = [hed[:, 0], hed[:, 1]] + [vals[:, k].astype(np.float64) for k in range(3)]
            chan_int = [False, False] + [np.issubdtype(image.dtype, np.integer)] * 3
        else:
            chan_vals = [vals[:, k].astype(np.float64) for k in range(n_ch)]
            chan_int = [np.issubdtype(image.dtype, np.integer)] * n_ch
        for (ch, _unit), v, is_int in zip(chans, chan_vals, chan_int):
            st = {s for s in STATS if f"{ch}_{s}" in want}
            if st:
                for s, arr in _channel_stats(px, v, st, integer=is_int).items():
                    res[f"{ch}_{s}"] = arr
            if f"{ch}_integrated_um2" in want:
                res[f"{ch}_integrated_um2"] = px.sum(v) * sp * sp
        tex = _texture_channel(stain_r, chans, texture_channel)
        tex_names = [f"{chans[tex][0]}_glcm_{p}" for p in GLCM_PROPS]
        if want & set(tex_names):
            q = quantize(px, chan_vals[tex], levels, texture_range)
            for p, arr in glcm_features(px, q, levels).items():
                res[f"{chans[tex][0]}_glcm_{p}"] = arr

    df = pd.DataFrame({nm: np.asarray(res[nm], dtype=np.float64) for nm in names},
                      index=pd.Index(ids, name="label"))
    df.attrs.update(attrs)
    return df


def _safe_div(a: np.ndarray, b: np.ndarray, fill: float = np.nan) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), fill)
