"""The non-learned colour / intensity control: ``samples.obsm['X_color']``.

A learned representation that only sees stain colour or brightness is a shortcut; this control gives the
shortcut a name, so the evaluation can compare any representation with it. Per sample, from the pixels
inside it (grid box, spot circle, region polygon, or the whole image) at ``mpp`` µm/px:

- per channel: mean, standard deviation, percentiles (default 5, 25, 50, 75, 95) and a histogram with
  ``bins`` equal-width bins over the dtype's range (fractions of the pixels);
- brightfield RGB only: per-channel optical-density (OD = -log10(I / I_white)) mean and std; hematoxylin
  and eosin amounts from colour deconvolution (Ruifrok-Johnston vectors,
  :mod:`tissuegraph.feat._stain`): mean, std and skewness each; and the background fraction (pixels with
  mean OD below ``background_od``).

Exactness: integer images (uint8, uint16) are counted value by value, so means, standard deviations
(population, ``ddof=0``), percentiles (numpy's default linear interpolation) and histograms equal numpy's
on the same pixels; float images are clipped to [0, 1] for histograms and percentiles (65536 levels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import InputError
from .._logging import logger, progress_bar, timed
from ..feat._stain import rgb_to_od, stain_od, white_level
from . import _pixels as P
from ._record import record_representation

__all__ = ["color"]

_RGB = ("R", "G", "B")


def _percentiles_from_counts(counts: np.ndarray, q: Sequence[float], values: np.ndarray) -> np.ndarray:
    """numpy's default (linear) percentiles of the multiset ``values[k]`` repeated ``counts[k]`` times."""
    n = int(counts.sum())
    cum = np.cumsum(counts)
    pos = np.asarray(q, dtype=np.float64) / 100.0 * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    v_lo = values[np.searchsorted(cum, lo, side="right")]
    v_hi = values[np.searchsorted(cum, hi, side="right")]
    return v_lo + (pos - lo) * (v_hi - v_lo)


class _Acc:
    """Running per-sample statistics of one sample's pixels."""

    def __init__(self, n_ch: int, levels: int, rgb: bool):
        self.counts = np.zeros((n_ch, levels), dtype=np.int64)
        self.fsum = np.zeros((n_ch, 2))  # float images: exact sum, sum of squares
        self.rgb = rgb
        self.stain = np.zeros((2, 3))  # H, E: sum x, x^2, x^3
        self.n = 0
        self.bg = 0


def color(samples, slide: Any = None, *, mpp: float | None = 1.0, bins: int = 8,
          percentiles: Sequence[float] = (5, 25, 50, 75, 95), background_od: float = 0.15,
          key_added: str = "color", slide_mpp: float | None = None, progress: bool | None = None,
          copy: bool = False):
    """Colour and intensity statistics of every sample's pixels: ``samples.obsm['X_color']``.

    Parameters
    ----------
    samples
        Samples AnnData (grid, spot, region or image samples; see :func:`tissuegraph.emb.patches`).
    slide
        The slide (path, Slide, array) or ``{slide_id: slide}``.
    mpp
        µm/px the pixels are read at (``None``: native). Statistics of spread (std, percentiles) depend on
        it: coarser pixels average more.
    bins
        Histogram bins per channel (equal width over the dtype's range; [0, 1] for floats).
    percentiles
        Percentiles per channel (numpy's linear interpolation).
    background_od
        Brightfield RGB: pixels whose mean optical density over R, G, B is below this are background.
    key_added
        Name of the representation (``obsm['X_<key_added>']``).
    slide_mpp
        The slide's µm/px when its metadata lacks it.

    Returns
    -------
    ``None`` (or the copy): ``samples.obsm['X_color']`` float32 (NaN rows for samples without pixels),
    column names in ``samples.uns['X_color_names']``, provenance in ``samples.uns['representations']``
    (family ``'color'``, learned and trained ``False``).
    """
    samples = samples.copy() if copy else samples
    if samples.n_obs == 0:
        raise InputError("samples is empty.")
    bins = int(bins)
    if bins < 1:
        raise InputError(f"bins must be a positive int, got {bins}.")
    q = [float(v) for v in percentiles]
    if any(not (0 <= v <= 100) for v in q):
        raise InputError(f"percentiles must lie in [0, 100], got {q}.")
    if mpp is not None and not float(mpp) > 0:
        raise InputError(f"mpp must be positive or None, got {mpp}.")
    slides, ids = P.open_slides(samples, slide, slide_mpp=slide_mpp)
    chans = {(s.channels, np.dtype(s.dtype).str, bool(s.is_rgb)) for s in slides.values()}
    if len(chans) != 1:
        raise InputError(f"The slides differ in channels/dtype {sorted(chans)}; compute the colour control "
                         "per slide type.")
    n_ch, dtype_str, rgb = chans.pop()
    dtype = np.dtype(dtype_str)
    rgb = rgb and n_ch == 3 and dtype in (np.uint8, np.uint16)
    if np.issubdtype(dtype, np.integer):
        if dtype.itemsize > 2:
            raise InputError(f"Integer images of {dtype} are not supported by the colour control; convert to "
                             "uint16 or float in [0, 1].")
        levels = int(np.iinfo(dtype).max) + 1 - int(np.iinfo(dtype).min)
        offset = -int(np.iinfo(dtype).min)
        values = np.arange(levels, dtype=np.float64) - offset
        top = float(np.iinfo(dtype).max)
        bottom = float(np.iinfo(dtype).min)
    else:
        levels, offset = 65536, 0
        values = np.arange(levels, dtype=np.float64) / (levels - 1)
        top, bottom = 1.0, 0.0
    white = white_level(dtype)
    cnames = list(_RGB) if n_ch == 3 and slides[next(iter(slides))].is_rgb else [f"ch{i}" for i in range(n_ch)]
    names: list[str] = []
    for c in cnames:
        names += [f"{c}_mean", f"{c}_std"] + [f"{c}_p{v:g}" for v in q] + [f"{c}_hist{b}" for b in range(bins)]
    if rgb:
        names += [f"od_{c}_{s}" for c in _RGB for s in ("mean", "std")]
        names += [f"{st}_{s}" for st in ("hematoxylin", "eosin") for s in ("mean", "std", "skew")]
        names += ["background_fraction"]
    geoms = P.geometries(samples, slides, ids)
    out = np.full((samples.n_obs, len(names)), np.nan, dtype=np.float64)
    edges = np.linspace(bottom, top, bins + 1)
    bin_of = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)  # level -> bin
    od_lut = rgb_to_od(np.arange(levels).astype(dtype), white) if rgb else None
    n_empty = 0
    with timed(f"colour control: {samples.n_obs} samples at {'native' if mpp is None else f'{mpp:g} µm/px'}"), \
            progress_bar(total=samples.n_obs, desc="color", enabled=progress, unit="sample") as bar:
        for i, g in enumerate(geoms):
            s = slides[ids[i]]
            scale = 1.0 if mpp is None else float(mpp) / s.require_mpp(f"the colour control at {mpp} µm/px")
            acc = _Acc(n_ch, levels, rgb)
            for img, inside in P.pixel_chunks(g, s, scale=scale):
                px = img[inside]  # (n, C)
                if len(px) == 0:
                    continue
                acc.n += len(px)
                if np.issubdtype(dtype, np.integer):
                    idx = px.astype(np.int64) + offset
                else:
                    f = px.astype(np.float64)
                    acc.fsum[:, 0] += f.sum(axis=0)
                    acc.fsum[:, 1] += (f * f).sum(axis=0)
                    idx = np.rint(np.clip(f, 0.0, 1.0) * (levels - 1)).astype(np.int64)
                for c in range(n_ch):
                    acc.counts[c] += np.bincount(idx[:, c], minlength=levels)
                if rgb:
                    st = stain_od(px.reshape(1, -1, 3), white)[0]  # (n, 3): H, E, DAB
                    for k in range(2):
                        v = st[:, k]
                        acc.stain[k] += (v.sum(), (v * v).sum(), (v ** 3).sum())
                    acc.bg += int((od_lut[idx].mean(axis=1) < background_od).sum())
            bar.update(1)
            if acc.n == 0:
                n_empty += 1
                continue
            row = []
            for c in range(n_ch):
                cnt = acc.counts[c]
                if np.issubdtype(dtype, np.integer):
                    mean = float((cnt * values).sum() / acc.n)
                    var = float((cnt * (values - mean) ** 2).sum() / acc.n)
                else:
                    mean = acc.fsum[c, 0] / acc.n
                    var = max(acc.fsum[c, 1] / acc.n - mean * mean, 0.0)
                row += [mean, np.sqrt(var)]
                row += list(_percentiles_from_counts(cnt, q, values))
                row += list(np.bincount(bin_of, weights=cnt, minlength=bins) / acc.n)
            if rgb:
                for c in range(3):
                    cnt = acc.counts[c]
                    m = float((cnt * od_lut).sum() / acc.n)
                    row += [m, float(np.sqrt(max((cnt * (od_lut - m) ** 2).sum() / acc.n, 0.0)))]
                for k in range(2):
                    s1, s2, s3 = acc.stain[k] / acc.n
                    var = max(s2 - s1 * s1, 0.0)
                    sd = np.sqrt(var)
                    m3 = s3 - 3 * s1 * s2 + 2 * s1 ** 3
                    row += [s1, sd, m3 / sd ** 3 if sd > 1e-6 else 0.0]
                row.append(acc.bg / acc.n)
            out[i] = row
    if n_empty:
        logger.warning("colour control: %d sample(s) have no pixels inside them; their rows are NaN.", n_empty)
    key = f"X_{key_added}" if not key_added.startswith("X_") else key_added
    rec = {"family": "color", "trained": False, "learned": False, "objective": None,
           "architecture": "colour/intensity statistics" + (" + H&E optical density" if rgb else ""),
           "inputs": f"{'rgb' if rgb else f'{n_ch}ch'}@{'native' if mpp is None else f'{float(mpp):g}um/px'}",
           "layer": None, "seed": None, "twin_group": "color", "weights_sha256": None,
           "params": {"mpp": mpp, "bins": bins, "percentiles": q, "background_od": background_od,
                      "stain_vectors": "Ruifrok-Johnston (skimage rgb2hed)" if rgb else None,
                      "pixels": "centres inside the sample (box / spot circle / region polygon / image) and the slide",
                      "sample_kinds": sorted(set(g.kind for g in geoms))}}
    record_representation(samples, key, out.astype(np.float32), rec, names=names)
    return samples if copy else None
