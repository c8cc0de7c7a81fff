"""Tissue detection on a low-resolution view of the slide."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import InputError
from .._logging import logger
from .._validate import check_positive

__all__ = ["TissueMask", "tissue_mask"]

_ASSUMED_MPP = 0.5  # only used to turn µm defaults into pixels when a slide has no µm/px (with a warning)


@dataclass
class TissueMask:
    """A boolean tissue mask at low resolution, with its mapping to level 0.

    Mask pixel (r, c) covers level-0 edge coordinates ``[c*dx, (c+1)*dx) x [r*dy, (r+1)*dy)``
    where ``dx = width0 / mask.shape[1]`` and ``dy = height0 / mask.shape[0]``.
    """

    mask: np.ndarray
    level0_size: tuple[int, int]  # (width, height) of level 0
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        m = np.asarray(self.mask)
        if m.ndim != 2 or m.size == 0:
            raise InputError(f"A tissue mask must be a non-empty 2-D array, got shape {m.shape}.")
        if m.dtype != bool:
            if np.issubdtype(m.dtype, np.floating) and not np.isfinite(m).all():
                raise InputError("The tissue mask contains NaN values.")
            m = m > 0
        self.mask = m
        self.level0_size = (int(self.level0_size[0]), int(self.level0_size[1]))

    @property
    def downsample(self) -> tuple[float, float]:
        """(dx, dy): level-0 pixels per mask pixel."""
        return self.level0_size[0] / self.mask.shape[1], self.level0_size[1] / self.mask.shape[0]

    @property
    def fraction(self) -> float:
        """Fraction of the slide area covered by tissue."""
        return float(self.mask.mean())

    @property
    def empty(self) -> bool:
        return not bool(self.mask.any())

    def pixel_centres_level0(self) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 (x, y) edge coordinates of the centres of all tissue mask pixels."""
        dx, dy = self.downsample
        r, c = np.nonzero(self.mask)
        return (c + 0.5) * dx, (r + 0.5) * dy

    def region_fraction(self, x0: float, y0: float, x1: float, y1: float) -> float:
        """Fraction of mask pixels with centres inside the level-0 box [x0, x1) x [y0, y1)."""
        dx, dy = self.downsample
        c0 = max(int(math.ceil(x0 / dx - 0.5)), 0)
        c1 = min(int(math.ceil(x1 / dx - 0.5)), self.mask.shape[1])
        r0 = max(int(math.ceil(y0 / dy - 0.5)), 0)
        r1 = min(int(math.ceil(y1 / dy - 0.5)), self.mask.shape[0])
        if c1 <= c0 or r1 <= r0:
            return 0.0
        return float(self.mask[r0:r1, c0:c1].mean())

    def resized(self, shape: tuple[int, int]) -> np.ndarray:
        """The mask resampled (nearest, by pixel centres) to ``shape`` = (rows, cols)."""
        rows, cols = shape
        ri = np.minimum((np.arange(rows) + 0.5) * self.mask.shape[0] / rows, self.mask.shape[0] - 1)
        ci = np.minimum((np.arange(cols) + 0.5) * self.mask.shape[1] / cols, self.mask.shape[1] - 1)
        return self.mask[ri.astype(int)[:, None], ci.astype(int)[None, :]]

    @classmethod
    def full(cls, slide) -> "TissueMask":
        """Everything is tissue (for plain images and crops)."""
        w, h = slide.dimensions
        return cls(np.ones((max(1, min(h, 64)), max(1, min(w, 64))), bool), (w, h), {"method": "all"})

    def __repr__(self) -> str:
        return (f"TissueMask({self.mask.shape[1]}x{self.mask.shape[0]} at {self.downsample[0]:.3g}x, "
                f"tissue {100 * self.fraction:.1f}%)")


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    if values.size == 0 or np.ptp(values) < 0.02:
        return -np.inf  # a uniform image has no two classes: the caller's lower bound decides
    return float(threshold_otsu(values))


def _fill_inner_holes(mask: np.ndarray, max_px: int) -> np.ndarray:
    """Fill background components of at most ``max_px`` pixels that do not touch the image border."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(~mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    fill = sizes <= max_px
    fill[0] = False
    fill[border] = False
    return mask | fill[lab]


def tissue_mask(slide, *, mask_mpp: float = 8.0, method: str = "auto", min_area_um2: float = 5_000.0,
                max_hole_um2: float = 200_000.0, smooth_um: float = 16.0, threshold: float | None = None,
                max_side: int = 4096) -> TissueMask:
    """Find tissue on a low-resolution view of ``slide``.

    Brightfield (``method='od'``): tissue where the smoothed mean optical density *or* the saturation
    exceeds its threshold (glass is bright and grey; pale stroma is faintly absorbing but coloured).
    Each threshold is Otsu's, clipped to a physically sensible band above the background level (so
    slides that are all glass or all tissue work),
    then morphological closing, holes smaller than ``max_hole_um2`` filled (gland lumens count as
    tissue) and objects smaller than ``min_area_um2`` removed.  Fluorescence (``'fluorescence'``): the
    same on intensity with a dark background.  ``'all'`` marks everything as tissue.

    Parameters
    ----------
    slide
        A :class:`~tissuegraph.io.Slide` (or anything :func:`~tissuegraph.io.open_slide` accepts).
    mask_mpp
        Resolution of the mask in µm/px (coarser for huge slides: the mask's longer side is kept
        <= ``max_side``; finer for small images: >= 256 px where the image allows).
    method
        ``'auto'`` (fluorescence when the image is not RGB uint8 or its background is dark), ``'od'``,
        ``'fluorescence'`` or ``'all'``.
    min_area_um2, max_hole_um2, smooth_um
        Clean-up sizes in µm² / µm.
    threshold
        Fixed threshold on the optical density (brightfield; the saturation test is then off) or on
        the normalised intensity (fluorescence) instead of the automatic ones.
    """
    from scipy import ndimage as ndi
    from skimage import morphology

    from ._slide import open_slide

    slide = open_slide(slide)
    if method not in ("auto", "od", "fluorescence", "all"):
        raise InputError(f"method must be 'auto', 'od', 'fluorescence' or 'all', got {method!r}.")
    check_positive(mask_mpp, "mask_mpp")
    w0, h0 = slide.dimensions
    mpp = slide.mpp
    if mpp is None:
        warnings.warn(f"{slide.slide_id}: µm/px unknown; tissue_mask assumes {_ASSUMED_MPP} µm/px to turn "
                      "its µm sizes into pixels. Pass mpp= to open_slide for exact sizes.", stacklevel=2)
        mpp_eff = _ASSUMED_MPP
    else:
        mpp_eff = mpp
    ds = mask_mpp / mpp_eff
    ds = max(ds, max(w0, h0) / max_side)  # not too large
    ds = min(ds, max(1.0, max(w0, h0) / 256))  # not too coarse for small images
    ds = max(ds, 1.0)
    tw, th = max(1, round(w0 / ds)), max(1, round(h0 / ds))
    params = dict(method=method, mask_mpp=mask_mpp, min_area_um2=min_area_um2, max_hole_um2=max_hole_um2,
                  smooth_um=smooth_um, threshold=threshold)
    if method == "all":
        return TissueMask(np.ones((th, tw), bool), (w0, h0), {**params, "method": "all"})
    thumb = slide.get_thumbnail((tw, th)).astype(np.float32)
    if thumb.ndim == 2:
        thumb = thumb[..., None]
    px_um = (w0 / thumb.shape[1]) * mpp_eff  # µm per mask pixel
    if method == "auto":
        if not slide.is_rgb:
            method = "fluorescence"
        else:
            border = np.concatenate([thumb[0], thumb[-1], thumb[:, 0], thumb[:, -1]]).mean(axis=-1)
            method = "fluorescence" if np.median(border) < 60 and np.median(thumb) < 60 else "od"
    sigma = smooth_um / px_um / 2.0

    def smooth(a):
        return ndi.gaussian_filter(a, sigma) if sigma > 0.3 else a

    def auto_threshold(score, base_max, band):
        """Otsu, clipped to a band above the background level (robust to all-glass/all-tissue)."""
        base = float(np.clip(np.percentile(score, 1), 0.0, base_max))
        return float(np.clip(_otsu(score.ravel()), base + band[0], base + band[1]))

    thresholds = {}
    if method == "od":
        # brightfield: tissue absorbs (optical density) and is coloured (saturation); glass is neither.
        rgb = thumb[..., :3] if thumb.shape[2] >= 3 else np.repeat(thumb[..., :1], 3, axis=2)
        od = smooth(-np.log10(np.clip(rgb, 1.0, 255.0) / 255.0).mean(axis=2))
        mx, mn = rgb.max(axis=2), rgb.min(axis=2)
        sat = smooth((mx - mn) / np.maximum(mx, 1.0))
        thresholds["od"] = float(threshold) if threshold is not None else auto_threshold(od, 0.05, (0.02, 0.06))
        thresholds["saturation"] = auto_threshold(sat, 0.03, (0.03, 0.08)) if threshold is None else np.inf
        mask = (od > thresholds["od"]) | (sat > thresholds["saturation"])
    else:
        x = thumb.mean(axis=2)
        lo, hi = np.percentile(x, [0.5, 99.5])
        score = smooth((x - lo) / (hi - lo) if hi > lo else np.zeros_like(x))
        thresholds["intensity"] = float(threshold) if threshold is not None else \
            auto_threshold(score, 0.1, (0.05, 0.5))
        mask = score > thresholds["intensity"]
    t_used = thresholds.get("od", thresholds.get("intensity"))
    px_area = px_um ** 2
    r = max(1, int(round(smooth_um / px_um)))
    if mask.any():
        mask = ndi.binary_closing(np.pad(mask, r), structure=morphology.disk(r))[r:-r, r:-r]
        mask = _fill_inner_holes(mask, max(1, int(max_hole_um2 / px_area)))
        mask = morphology.remove_small_objects(mask, max_size=max(0, int(min_area_um2 / px_area)))
    params.update(method=method, threshold_used=t_used, thresholds=thresholds, mask_px_um=px_um)
    tm = TissueMask(mask, (w0, h0), params)
    logger.info("tissue mask of %s: %s (method %s, threshold %.3f)", slide.slide_id, tm, method, t_used)
    return tm
