"""A synthetic H&E whole-slide image with exact ground truth: the project's built-in default data.

The slide is rendered strip by strip from one lazy global layout (``_synth_layout``) with a Beer-Lambert
H&E model (``_synth_render``), so a 50,000 x 50,000 slide streams to disk with flat memory and every
pixel is the same whatever the strip height.

Region classes differ in *structure*:

- ``gland``: epithelial nuclei (~8 x 14 µm, long axis radial, touching) in rings around white lumens,
  in a loose lamina propria with lymphocytes and fibroblasts;
- ``stroma``: sparse spindle fibroblast nuclei (~3 x 15 µm) aligned with wavy eosinophilic collagen
  fibres that follow a smooth flow field;
- ``immune``: packed small round lymphocytes (~7 µm);
- ``tumour``: crowded large (10-18 µm) pleomorphic, hyperchromatic nuclei with irregular outlines and
  nucleoli, in solid sheets without rings.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from .. import _keys
from .._errors import InputError
from .._logging import logger, progress as _progress
from .._validate import check_mpp, check_positive
from .._version import __version__
from . import _synth_noise as nz
from ._synth_layout import CELL_TYPES, GLAND_CELL_UM, REGION_CLASSES, Layout
from ._synth_render import RUIFROK_E, RUIFROK_H, Renderer

__all__ = ["synthetic_slide", "synthetic_tissue", "SyntheticSlide", "SyntheticTissue",
           "SYNTHETIC_REGION_CLASSES", "SYNTHETIC_CELL_TYPES"]

SYNTHETIC_REGION_CLASSES: tuple[str, ...] = REGION_CLASSES
"""Region classes the generator knows: ``('gland', 'stroma', 'immune', 'tumour')``."""
SYNTHETIC_CELL_TYPES: tuple[str, ...] = CELL_TYPES
"""Cell types of the ground-truth nuclei: ``('epithelial', 'fibroblast', 'lymphocyte', 'tumour')``."""

FORMAT_VERSION = 1
_BLOCK_COLS = 1024  # columns rendered at a time inside a strip (bounds the float32 working set)
K_STAIN = 809


# ---------------------------------------------------------------------------------------------- params
def _check_number(value, name, *, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    v = float(value)
    if not np.isfinite(v):
        raise InputError(f"{name} must be finite, got {value!r}.")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise InputError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {value!r}.")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise InputError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {value!r}.")
    return v


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed!r}.")
    return int(seed)


_MACENKO_H = np.array([0.5626, 0.7201, 0.4062])
_MACENKO_E = np.array([0.2159, 0.8012, 0.5581])


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


STAIN_PRESETS = {
    # Ruifrok & Johnston (2001), the vectors of scikit-image's rgb2hed
    "ruifrok": np.stack([_unit(RUIFROK_H), _unit(RUIFROK_E)]),
    # reference vectors of Macenko et al. (2009) stain normalisation: pinker eosin, as in many scans
    "macenko": np.stack([_unit(_MACENKO_H), _unit(_MACENKO_E)]),
}


def _stain_matrix(stain, seed: int) -> np.ndarray:
    """(2, 3) optical density per unit concentration of hematoxylin (row 0) and eosin (row 1)."""
    if stain is None or (isinstance(stain, str) and stain == "default"):
        return STAIN_PRESETS["ruifrok"].copy()
    if isinstance(stain, str):
        if stain in STAIN_PRESETS:
            return STAIN_PRESETS[stain].copy()
        if stain != "random":
            raise InputError(f"stain must be None, 'default', 'random', one of {sorted(STAIN_PRESETS)}, a dict "
                             f"or a (2, 3)/(3, 3) matrix, got {stain!r}.")
        # per seed: hue between the two presets plus jitter, and strength, as between labs and batches
        t = float(nz.uniform(seed, K_STAIN + 2, 0))
        base = (1 - t) * STAIN_PRESETS["ruifrok"] + t * STAIN_PRESETS["macenko"]
        out = []
        for r in range(2):
            jitter = 0.06 * np.array([float(nz.normal(seed, K_STAIN, r, c)) for c in range(3)])
            v = _unit(np.clip(base[r] + jitter, 0.02, None))
            scale = 0.8 + 0.4 * float(nz.uniform(seed, K_STAIN + 1, r))
            out.append(v * scale)
        return np.stack(out)
    if isinstance(stain, dict):
        keys = {k.lower(): v for k, v in stain.items()}
        try:
            h = keys.get("hematoxylin", keys.get("h"))
            e = keys.get("eosin", keys.get("e"))
        except AttributeError:  # pragma: no cover
            h = e = None
        if h is None or e is None:
            raise InputError("A stain dict needs 'hematoxylin' and 'eosin' optical-density vectors (RGB), got "
                             f"keys {sorted(stain)}.")
        mat = np.array([np.asarray(h, float).ravel(), np.asarray(e, float).ravel()])
    else:
        mat = np.asarray(stain, dtype=float)
        if mat.ndim != 2 or mat.shape not in ((2, 3), (3, 3)):
            raise InputError(f"A stain matrix must have shape (2, 3) or (3, 3) (rows: hematoxylin, eosin, "
                             f"[residual]; columns R, G, B), got shape {mat.shape}.")
        mat = mat[:2]
    if mat.shape != (2, 3):
        raise InputError(f"Stain vectors must have 3 components (R, G, B optical density), got {mat.shape}.")
    if not np.isfinite(mat).all() or (mat < 0).any():
        raise InputError("Stain vectors must be finite and non-negative optical densities.")
    norms = np.linalg.norm(mat, axis=1)
    if (norms <= 0).any():
        raise InputError("Stain vectors must not be all zero.")
    return mat / norms[:, None]


def _resolve(*, size, mpp, seed, tissue_fraction, density, stain, stain_intensity, blur_um, noise,
             region_classes, region_size_um) -> dict:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        width = height = int(size)
    else:
        try:
            width, height = (int(s) for s in size)
            if any(float(s) != int(s) for s in size):
                raise ValueError
        except (TypeError, ValueError):
            raise InputError(f"size must be an int or a (width, height) pair of ints, got {size!r}.") from None
    if width < 16 or height < 16:
        raise InputError(f"size must be at least 16 x 16 pixels, got {width} x {height}.")
    mpp = check_mpp(mpp, what="the synthetic slide")
    if mpp > 2.0 or mpp < 0.05:
        raise InputError(f"mpp must lie in [0.05, 2] µm/px for nuclei to be drawn (a lymphocyte is ~7 µm), "
                         f"got {mpp}.")
    if mpp > 1.0:
        logger.warning("mpp=%.3g µm/px: the smallest nuclei are only a few pixels wide.", mpp)
    seed = _check_seed(seed)
    tissue_fraction = _check_number(tissue_fraction, "tissue_fraction", lo=0.0, hi=1.0, lo_open=True)
    density = _check_number(density, "density", lo=0.0)
    stain_intensity = _check_number(stain_intensity, "stain_intensity", lo=0.0, lo_open=True)
    blur_um = _check_number(blur_um, "blur_um", lo=0.0)
    noise = _check_number(noise, "noise", lo=0.0, hi=1.0)
    if isinstance(region_classes, str):
        region_classes = (region_classes,)
    try:
        region_classes = tuple(str(r) for r in region_classes)
    except TypeError:
        raise InputError(f"region_classes must be a sequence of names, got {region_classes!r}.") from None
    if not region_classes:
        raise InputError(f"region_classes must not be empty; choose from {REGION_CLASSES}.")
    unknown = [r for r in region_classes if r not in REGION_CLASSES]
    if unknown:
        raise InputError(f"Unknown region class(es) {unknown}; choose from {REGION_CLASSES}.")
    if len(set(region_classes)) != len(region_classes):
        raise InputError(f"region_classes has duplicates: {region_classes}.")
    region_size_um = _check_number(region_size_um, "region_size_um", lo=20.0)
    stain_mat = _stain_matrix(stain, seed)
    return dict(width=width, height=height, mpp=float(mpp), seed=seed, tissue_fraction=tissue_fraction,
                density=density, stain=stain if isinstance(stain, (str, type(None))) else "custom",
                stain_matrix=stain_mat, stain_intensity=stain_intensity, blur_um=blur_um, noise=noise,
                region_classes=region_classes, region_size_um=region_size_um)


def _build(p: dict) -> tuple[Layout, Renderer]:
    layout = Layout(width=p["width"], height=p["height"], mpp=p["mpp"], seed=p["seed"],
                    tissue_fraction=p["tissue_fraction"], density=p["density"],
                    region_classes=p["region_classes"], region_size_um=p["region_size_um"])
    renderer = Renderer(layout, stain=p["stain_matrix"], stain_intensity=p["stain_intensity"],
                        blur_um=p["blur_um"], noise=p["noise"])
    return layout, renderer


# ---------------------------------------------------------------------------------------------- truth
class _Truth:
    """Per-nucleus pixel sums (count, sum of x, sum of y), accumulated strip by strip; O(n nuclei)."""

    def __init__(self):
        self.count = np.zeros(0, np.int64)
        self.sx = np.zeros(0, np.float64)
        self.sy = np.zeros(0, np.float64)

    def _grow(self, n: int) -> None:
        if n > len(self.count):
            m = max(n, 2 * len(self.count), 1024)
            for name in ("count", "sx", "sy"):
                a = getattr(self, name)
                b = np.zeros(m, a.dtype)
                b[:len(a)] = a
                setattr(self, name, b)

    def add(self, labels: np.ndarray, y0: int, x0: int) -> None:
        flat = labels.reshape(-1)
        nzi = np.flatnonzero(flat)
        if len(nzi) == 0:
            return
        ids = flat[nzi].astype(np.int64)
        w = labels.shape[1]
        lo, hi = int(ids.min()), int(ids.max())
        self._grow(hi)
        rel = ids - lo
        n = hi - lo + 1
        self.count[lo - 1:hi] += np.bincount(rel, minlength=n)
        self.sx[lo - 1:hi] += np.bincount(rel, weights=(nzi % w + x0).astype(np.float64), minlength=n)
        self.sy[lo - 1:hi] += np.bincount(rel, weights=(nzi // w + y0).astype(np.float64), minlength=n)

    def table(self, layout: Layout) -> pd.DataFrame:
        layout.all_counts()
        n_total = layout.n_generated
        self._grow(n_total)
        parts = layout.table_parts
        cat = {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0)
               for k in ("ctype", "region", "gland", "L", "W", "angle")}
        ids = np.flatnonzero(self.count[:n_total] > 0)
        cnt = self.count[ids]
        t = _keys.truth
        ctype = cat["ctype"][ids].astype(np.int64)
        region = cat["region"][ids].astype(np.int64)
        angle = np.mod(cat["angle"][ids].astype(np.float64) + np.pi / 2, np.pi) - np.pi / 2
        df = pd.DataFrame({
            t.id: (ids + 1).astype(np.int64),
            t.x: self.sx[ids] / cnt,
            t.y: self.sy[ids] / cnt,
            t.cell_type: pd.Categorical.from_codes(ctype, categories=list(CELL_TYPES)),
            t.region: pd.Categorical.from_codes(region, categories=list(layout.region_classes)),
            t.area_px: cnt.astype(np.int64),
            t.gland_id: cat["gland"][ids].astype(np.int64),
            t.major_axis_um: cat["L"][ids].astype(np.float64),
            t.minor_axis_um: cat["W"][ids].astype(np.float64),
            t.orientation_rad: angle,
        })
        return df


def _glands_table(layout: Layout, nuclei: pd.DataFrame) -> pd.DataFrame:
    tg_ = _keys.truth_glands
    rows = []
    for gy in range(layout.ngy):
        g = layout.gland_row(gy)
        if len(g["x"]):
            phi = np.linspace(0, 2 * np.pi, 64, endpoint=False)
            rl = [float(np.mean(Layout.gland_radius(g, i, phi)) * Layout.lumen_fraction(g, i))
                  for i in range(len(g["x"]))]
            rows.append(pd.DataFrame({
                tg_.id: g["id"].astype(np.int64),
                tg_.x: g["x"] / layout.mpp - 0.5,
                tg_.y: g["y"] / layout.mpp - 0.5,
                tg_.radius_um: g["r0"],
                tg_.lumen_radius_um: np.asarray(rl),
            }))
        layout._gland_rows.pop(gy, None)
    df = (pd.concat(rows, ignore_index=True) if rows else
          pd.DataFrame({tg_.id: np.zeros(0, np.int64), tg_.x: [], tg_.y: [], tg_.radius_um: [],
                        tg_.lumen_radius_um: []}))
    counts = nuclei[_keys.truth.gland_id].value_counts()
    df[tg_.n_nuclei] = df[tg_.id].map(counts).fillna(0).astype(np.int64)
    return df


def _lowres_maps(layout: Layout, downsample: int) -> tuple[np.ndarray, np.ndarray]:
    """Tissue mask (bool) and region map (uint8, 0 = no tissue, k+1 = region_classes[k])."""
    W, H = layout.width, layout.height
    w, h = math.ceil(W / downsample), math.ceil(H / downsample)
    xs = (np.arange(w) + 0.5) * downsample * layout.mpp
    mask = np.zeros((h, w), bool)
    regions = np.zeros((h, w), np.uint8)
    step = max(1, 2_000_000 // max(w, 1))
    for r0 in range(0, h, step):
        ys = (np.arange(r0, min(h, r0 + step)) + 0.5) * downsample * layout.mpp
        env = layout.envelope_grid(xs, ys)
        tis = env > layout.threshold
        if len(layout.region_classes) > 1:
            reg = np.argmax(layout.class_fields_grid(xs, ys), axis=0)
        else:
            reg = np.zeros(tis.shape, np.intp)
        mask[r0:r0 + len(ys)] = tis
        regions[r0:r0 + len(ys)] = np.where(tis, reg + 1, 0)
    return mask, regions


def _mask_downsample(width: int, height: int) -> int:
    d = 16
    while max(width, height) / d > 4096:
        d *= 2
    return d


def _strips(layout: Layout, renderer: Renderer, strip_rows: int, *, want_regions: bool = False,
            progress: bool | None = None, desc: str = "synthetic slide") -> Iterator[tuple]:
    """Yield (y0, rgb, labels[, regions]) strips of ``strip_rows`` rows, full width, top to bottom."""
    W, H = layout.width, layout.height
    n = math.ceil(H / strip_rows)
    for i in _progress(range(n), total=n, desc=desc, enabled=progress, unit="strip"):
        y0 = i * strip_rows
        y1 = min(H, y0 + strip_rows)
        rgb = np.empty((y1 - y0, W, 3), np.uint8)
        lab = np.empty((y1 - y0, W), np.uint32)
        reg = np.empty((y1 - y0, W), np.uint8) if want_regions else None
        for x0 in range(0, W, _BLOCK_COLS):
            x1 = min(W, x0 + _BLOCK_COLS)
            out = renderer.render(y0, y1, x0, x1, want_regions=want_regions)
            rgb[:, x0:x1] = out[0]
            lab[:, x0:x1] = out[1]
            if want_regions:
                reg[:, x0:x1] = out[2]
        layout.release_below((y1 - renderer.margin) * layout.mpp)
        yield (y0, rgb, lab, reg) if want_regions else (y0, rgb, lab)


# ---------------------------------------------------------------------------------------------- public
@dataclass
class SyntheticTissue:
    """In-memory synthetic H&E image with ground truth; unpacks as ``image, labels, nuclei, regions``.

    Attributes
    ----------
    image
        (H, W, 3) uint8 RGB.
    labels
        (H, W) uint32 instance labels, 0 = background, values = ``nuclei['nucleus_id']``.
    nuclei
        One row per nucleus with pixels in ``labels`` (columns of ``tissuegraph._keys.truth``); ``x``,
        ``y`` are the exact centroids of the label pixels (pixel centres at integer coordinates).
    regions
        (H, W) uint8 region code per pixel: 0 = no tissue, ``k + 1`` = ``region_classes[k]``.
    glands
        One row per gland (centre in px, radius and lumen radius in µm, number of nuclei).
    mpp, region_classes, metadata
        Pixel size, the region class names (codes 1..K) and all generation parameters.
    """

    image: np.ndarray
    labels: np.ndarray
    nuclei: pd.DataFrame
    regions: np.ndarray
    glands: pd.DataFrame
    mpp: float
    region_classes: tuple[str, ...]
    metadata: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.image, self.labels, self.nuclei, self.regions))

    @property
    def tissue(self) -> np.ndarray:
        """(H, W) bool ground-truth tissue mask."""
        return self.regions > 0


def synthetic_tissue(shape: int | Sequence[int] = (512, 512), *, mpp: float = 0.5, seed: int = 0,
                     tissue_fraction: float = 0.6, density: float = 1.0, stain: Any = None,
                     stain_intensity: float = 1.0, blur_um: float = 0.0, noise: float = 0.02,
                     region_classes: Sequence[str] = REGION_CLASSES, region_size_um: float = 300.0,
                     progress: bool | None = False) -> SyntheticTissue:
    """Render a small synthetic H&E image with exact ground truth, in memory.

    Same renderer and parameters as :func:`synthetic_slide` (see there); for images that fit in memory.

    Parameters
    ----------
    shape
        ``(height, width)`` in pixels (numpy order), or one int for a square.
    mpp, seed, tissue_fraction, density, stain, stain_intensity, blur_um, noise, region_classes, region_size_um
        As in :func:`synthetic_slide`.
    progress
        Show a progress bar (None: ``tg.settings.progress``).

    Returns
    -------
    SyntheticTissue
        Unpacks as ``image, labels, nuclei, regions``; also carries ``glands``, ``tissue``, ``metadata``.

    Examples
    --------
    >>> image, labels, nuclei, regions = tg.datasets.synthetic_tissue((512, 512), seed=1, tissue_fraction=1)
    """
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        size = int(shape)
    else:
        try:
            h, w = shape
        except (TypeError, ValueError):
            raise InputError(f"shape must be an int or (height, width), got {shape!r}.") from None
        size = (w, h)
    p = _resolve(size=size, mpp=mpp, seed=seed, tissue_fraction=tissue_fraction, density=density,
                 stain=stain, stain_intensity=stain_intensity, blur_um=blur_um, noise=noise,
                 region_classes=region_classes, region_size_um=region_size_um)
    if p["width"] * p["height"] > 8192 * 8192:
        raise InputError(f"synthetic_tissue keeps the image in memory; {p['width']} x {p['height']} is too "
                         "large. Use tg.datasets.synthetic_slide(path, size=...) to stream it to disk.")
    layout, renderer = _build(p)
    H, W = p["height"], p["width"]
    image = np.empty((H, W, 3), np.uint8)
    labels = np.empty((H, W), np.uint32)
    regions = np.empty((H, W), np.uint8)
    truth = _Truth()
    for y0, rgb, lab, reg in _strips(layout, renderer, 512, want_regions=True, progress=progress,
                                     desc="synthetic tissue"):
        image[y0:y0 + len(rgb)] = rgb
        labels[y0:y0 + len(rgb)] = lab
        regions[y0:y0 + len(rgb)] = reg
        truth.add(lab, y0, 0)
    nuclei = truth.table(layout)
    glands = _glands_table(layout, nuclei)
    meta = _metadata(p, layout, nuclei, glands, files=None, mask_downsample=1,
                     measured_tissue_fraction=float((regions > 0).mean()))
    nuclei.attrs.update(mpp=p["mpp"], region_classes=list(p["region_classes"]), source="synthetic_tissue",
                        seed=p["seed"])
    return SyntheticTissue(image=image, labels=labels, nuclei=nuclei, regions=regions, glands=glands,
                           mpp=p["mpp"], region_classes=p["region_classes"], metadata=meta)


def _metadata(p: dict, layout: Layout, nuclei: pd.DataFrame, glands: pd.DataFrame, *, files, mask_downsample,
              measured_tissue_fraction, extra: dict | None = None) -> dict:
    t = _keys.truth
    params = {k: (v.tolist() if isinstance(v, np.ndarray) else (list(v) if isinstance(v, tuple) else v))
              for k, v in p.items()}
    meta = {
        "generator": "tissuegraph.datasets.synthetic_slide",
        "format_version": FORMAT_VERSION,
        "tissuegraph_version": __version__,
        "width": p["width"], "height": p["height"], "mpp": p["mpp"], "seed": p["seed"],
        "params": params,
        "stain_vectors": {"hematoxylin": list(map(float, p["stain_matrix"][0])),
                          "eosin": list(map(float, p["stain_matrix"][1]))},
        "region_classes": list(p["region_classes"]),
        "region_codes": {name: k + 1 for k, name in enumerate(p["region_classes"])},
        "cell_types": list(CELL_TYPES),
        "tissue_threshold": float(layout.threshold) if np.isfinite(layout.threshold) else None,
        "mask_downsample": mask_downsample,
        "measured_tissue_fraction": measured_tissue_fraction,
        "counts": {
            "nuclei": int(len(nuclei)),
            "glands": int(len(glands)),
            "by_cell_type": {k: int(v) for k, v in nuclei[t.cell_type].value_counts(sort=False).items()},
            "by_region": {k: int(v) for k, v in nuclei[t.region].value_counts(sort=False).items()},
        },
        "coordinates": "level-0 px, pixel centres at integer coordinates, (x, y) = (column, row)",
        "layout": {"nucleus_cell_um": layout.cell, "gland_cell_um": GLAND_CELL_UM},
    }
    if files is not None:
        meta["files"] = files
    if extra:
        meta.update(extra)
    return meta


@dataclass(frozen=True)
class SyntheticSlide:
    """A synthetic slide on disk and its ground truth (see :func:`synthetic_slide` for the files)."""

    path: Path
    labels_path: Path
    nuclei_path: Path
    glands_path: Path
    tissue_mask_path: Path
    region_map_path: Path
    metadata_path: Path
    width: int
    height: int
    mpp: float
    seed: int
    region_classes: tuple[str, ...]
    mask_downsample: int
    n_nuclei: int
    metadata: dict = field(repr=False, default_factory=dict)

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) of level 0, OpenSlide order."""
        return self.width, self.height

    def read_nuclei(self) -> pd.DataFrame:
        """The ground-truth nucleus table (categorical ``cell_type`` and ``region``)."""
        t = _keys.truth
        df = pd.read_csv(self.nuclei_path)
        df[t.cell_type] = pd.Categorical(df[t.cell_type], categories=list(CELL_TYPES))
        df[t.region] = pd.Categorical(df[t.region], categories=list(self.region_classes))
        df.attrs.update(mpp=self.mpp, region_classes=list(self.region_classes), slide=str(self.path))
        return df

    def read_glands(self) -> pd.DataFrame:
        return pd.read_csv(self.glands_path)

    def read_tissue_mask(self) -> np.ndarray:
        """Low-resolution bool tissue mask; pixel (r, c) is centred at level-0 px ((c+.5)d-.5, (r+.5)d-.5)
        with ``d = mask_downsample``."""
        from PIL import Image

        with Image.open(self.tissue_mask_path) as im:
            return np.asarray(im) > 0

    def read_region_map(self) -> np.ndarray:
        """Low-resolution uint8 region map: 0 = no tissue, ``k + 1`` = ``region_classes[k]``."""
        from PIL import Image

        with Image.open(self.region_map_path) as im:
            return np.asarray(im).astype(np.uint8)

    def open(self, **kwargs):
        """Open the RGB slide with :func:`tissuegraph.io.open_slide`."""
        from ..io import open_slide

        return open_slide(self.path, **kwargs)

    def open_labels(self, **kwargs):
        """Open the instance-label image (uint32) with :func:`tissuegraph.io.open_slide`."""
        from ..io import open_slide

        kwargs.setdefault("backend", "tifffile")
        return open_slide(self.labels_path, **kwargs)

    def read_labels(self, location: Sequence[int] = (0, 0), size: Sequence[int] | None = None) -> np.ndarray:
        """Read a level-0 window ``(x, y)``, ``(w, h)`` of the label image (the whole image by default)."""
        import tifffile

        with tifffile.TiffFile(self.labels_path) as tf:
            page = tf.pages[0]
            if size is None and tuple(location) == (0, 0):
                return page.asarray()
            store = page.aszarr()
            import zarr

            z = zarr.open(store, mode="r")
            x, y = (int(v) for v in location)
            w, h = (self.width - x, self.height - y) if size is None else (int(v) for v in size)
            return np.asarray(z[y:y + h, x:x + w])

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SyntheticSlide":
        """Reopen a synthetic slide written earlier, from its ``.tiff`` or ``.json`` path."""
        path = Path(path)
        meta_path = path if path.suffix == ".json" else _paths(path)["metadata"]
        if not meta_path.exists():
            raise InputError(f"No synthetic-slide metadata at {meta_path}; was it written by synthetic_slide?")
        meta = json.loads(meta_path.read_text())
        folder = meta_path.parent
        f = meta["files"]
        return cls(path=folder / f["slide"], labels_path=folder / f["labels"], nuclei_path=folder / f["nuclei"],
                   glands_path=folder / f["glands"], tissue_mask_path=folder / f["tissue_mask"],
                   region_map_path=folder / f["region_map"], metadata_path=meta_path,
                   width=int(meta["width"]), height=int(meta["height"]), mpp=float(meta["mpp"]),
                   seed=int(meta["seed"]), region_classes=tuple(meta["region_classes"]),
                   mask_downsample=int(meta["mask_downsample"]), n_nuclei=int(meta["counts"]["nuclei"]),
                   metadata=meta)


def _paths(path: Path) -> dict[str, Path]:
    name = path.name
    for suf in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suf):
            stem = name[: -len(suf)]
            break
    else:
        stem = path.stem
    d = path.parent
    return {"slide": path, "labels": d / f"{stem}.labels.tiff", "nuclei": d / f"{stem}.nuclei.csv",
            "glands": d / f"{stem}.glands.csv", "tissue_mask": d / f"{stem}.tissue.png",
            "region_map": d / f"{stem}.regions.png", "metadata": d / f"{stem}.json"}


def synthetic_slide(path: str | os.PathLike, *, size: int | Sequence[int] = 4096, mpp: float = 0.5,
                    seed: int = 0, tissue_fraction: float = 0.6, density: float = 1.0, stain: Any = None,
                    stain_intensity: float = 1.0, blur_um: float = 0.0, noise: float = 0.02,
                    region_classes: Sequence[str] = REGION_CLASSES, region_size_um: float = 300.0,
                    tile_size: int = 512, compression: str = "deflate", quality: int = 90,
                    progress: bool | None = True) -> SyntheticSlide:
    """Write a synthetic H&E whole-slide image with exact ground truth, streaming strip by strip.

    The slide is a tiled pyramidal TIFF (OpenSlide opens it, µm/px in the resolution tags). Everything is
    a deterministic function of ``seed``; the pixels do not depend on the strip height, and memory stays
    flat in the slide height (it grows only with the width of a strip and the number of nuclei).

    Parameters
    ----------
    path
        Output ``.tiff`` path; the ground truth is written next to it (see Notes).
    size
        Level-0 size in pixels: an int (square) or ``(width, height)`` (OpenSlide order).
    mpp
        µm per pixel (0.5 ≈ 20x, 0.25 ≈ 40x). Sizes of nuclei and structures are physical (µm), so the
        same seed at another mpp shows the same tissue at another resolution.
    seed
        Seed of every random choice (layout, nuclei, stain for ``stain='random'``, noise).
    tissue_fraction
        Fraction of the slide area covered by tissue, in (0, 1]; the rest is white glass.
    density
        Multiplier of the nucleus candidate density outside glands (1 = default; packed regions saturate).
    stain
        ``None``/``'default'``/``'ruifrok'`` (Ruifrok-Johnston H&E vectors, those of skimage's
        ``rgb2hed``), ``'macenko'`` (Macenko's reference vectors: pinker eosin), ``'random'`` (per seed:
        hue between the two presets with jitter, and strength 0.8-1.2 per stain), a dict
        ``{'hematoxylin': (r, g, b), 'eosin': (r, g, b)}`` of optical densities, or a (2, 3)/(3, 3)
        matrix whose first two rows are the H and E vectors. Stain changes pixels only, never the layout.
    stain_intensity
        Multiplies both stain concentrations (> 0; < 1 = pale, > 1 = dark).
    blur_um
        Standard deviation of a Gaussian optical blur, µm (0 = sharp).
    noise
        Standard deviation of additive Gaussian sensor noise, as a fraction of 255.
    region_classes
        Region classes to use, a subset of ``('gland', 'stroma', 'immune', 'tumour')``; each covers about
        ``1/len(region_classes)`` of the tissue.
    region_size_um
        Characteristic size of the region patches, µm (glands need patches of more than ~150 µm).
    tile_size
        TIFF tile edge and strip height (multiple of 16).
    compression
        ``'deflate'`` (lossless) or ``'jpeg'`` for the RGB slide; the label image is always deflate.
    quality
        JPEG quality.
    progress
        Show a progress bar (None: ``tg.settings.progress``).

    Returns
    -------
    SyntheticSlide
        Paths, size, mpp, seed, region classes, counts and the metadata dict.

    Notes
    -----
    Files written next to ``OUT.tiff``:

    - ``OUT.labels.tiff``: pyramidal uint32 instance labels (0 = background, level 0 exact);
    - ``OUT.nuclei.csv``: one row per nucleus: ``nucleus_id``, ``x``, ``y`` (exact centroid of the label
      pixels, level-0 px), ``cell_type``, ``region``, ``area_px``, ``gland_id`` (0 = none),
      ``major_axis_um``, ``minor_axis_um``, ``orientation_rad`` (major axis, image coordinates, y down);
    - ``OUT.glands.csv``: one row per gland: ``gland_id``, centre ``x``, ``y`` (px), ``radius_um``,
      ``lumen_radius_um``, ``n_nuclei``;
    - ``OUT.tissue.png`` / ``OUT.regions.png``: low-resolution tissue mask (0/255) and region map
      (0 = no tissue, k+1 = ``region_classes[k]``), downsample in the metadata (``mask_downsample``);
    - ``OUT.json``: every parameter, the stain vectors, class names and codes, counts, version.
    """
    p = _resolve(size=size, mpp=mpp, seed=seed, tissue_fraction=tissue_fraction, density=density,
                 stain=stain, stain_intensity=stain_intensity, blur_um=blur_um, noise=noise,
                 region_classes=region_classes, region_size_um=region_size_um)
    tile_size = check_positive(tile_size, "tile_size", integer=True)
    if tile_size % 16:
        raise InputError(f"tile_size must be a multiple of 16 (TIFF rule), got {tile_size}.")
    if compression not in ("deflate", "jpeg"):
        raise InputError(f"compression must be 'deflate' or 'jpeg', got {compression!r}.")
    from ..io import SlideWriter

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"The slide path must end in .tif or .tiff, got {path.name!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    files = _paths(path)
    t0 = time.perf_counter()
    layout, renderer = _build(p)
    W, H = p["width"], p["height"]
    truth = _Truth()
    desc = (f"tissuegraph synthetic slide (size={W}x{H}, mpp={p['mpp']}, seed={p['seed']}, "
            f"regions={','.join(p['region_classes'])})")
    logger.info("writing synthetic slide %s (%d x %d px, %.3g µm/px)", path, W, H, p["mpp"])
    with SlideWriter(files["slide"], shape=(H, W, 3), dtype=np.uint8, mpp=p["mpp"], tile_size=tile_size,
                     compression=compression, quality=quality, resample="mean", description=desc) as wr, \
            SlideWriter(files["labels"], shape=(H, W), dtype=np.uint32, mpp=p["mpp"], tile_size=tile_size,
                        compression="deflate", resample="nearest",
                        description="tissuegraph synthetic slide instance labels") as wl:
        for y0, rgb, lab in _strips(layout, renderer, tile_size, progress=progress):
            wr.write(rgb)
            wl.write(lab)
            truth.add(lab, y0, 0)
    render_s = time.perf_counter() - t0
    nuclei = truth.table(layout)
    nuclei.to_csv(files["nuclei"], index=False)
    glands = _glands_table(layout, nuclei)
    glands.to_csv(files["glands"], index=False)
    d = _mask_downsample(W, H)
    mask, regions = _lowres_maps(layout, d)
    from PIL import Image

    Image.fromarray((mask * 255).astype(np.uint8)).save(files["tissue_mask"])
    Image.fromarray(regions).save(files["region_map"])
    rel = {k: v.name for k, v in files.items()}
    meta = _metadata(p, layout, nuclei, glands, files=rel, mask_downsample=d,
                     measured_tissue_fraction=float(mask.mean()),
                     extra={"tile_size": tile_size, "compression": compression,
                            "seconds": round(time.perf_counter() - t0, 3), "render_seconds": round(render_s, 3)})
    meta["params"].update(tile_size=tile_size, compression=compression, quality=quality)
    files["metadata"].write_text(json.dumps(meta, indent=2))
    logger.info("synthetic slide: %d nuclei, %d glands in %.1fs", len(nuclei), len(glands),
                time.perf_counter() - t0)
    return SyntheticSlide(path=files["slide"], labels_path=files["labels"], nuclei_path=files["nuclei"],
                          glands_path=files["glands"], tissue_mask_path=files["tissue_mask"],
                          region_map_path=files["region_map"], metadata_path=files["metadata"],
                          width=W, height=H, mpp=p["mpp"], seed=p["seed"], region_classes=p["region_classes"],
                          mask_downsample=d, n_nuclei=len(nuclei), metadata=meta)
