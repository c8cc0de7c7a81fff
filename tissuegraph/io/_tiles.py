"""Tiles at a target µm/px, tissue only, with exact ownership of level-0 space.

Geometry (see docs/architecture.md): with ``stride = size - overlap`` target pixels and ``scale``
level-0 px per target px, the grid boundaries are ``b_i = i * stride * scale`` in level-0 *edge*
coordinates (the last one is the slide edge).  Tile ``(row, col)`` *owns* the level-0 core ``[bx_col, bx_col+1) x [by_row, by_row+1)``;
cores partition the slide exactly, so every point belongs to exactly one tile.  The tile image covers
``size`` target px starting ``overlap // 2`` target px before its core, giving context on all sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .._errors import InputError
from .._logging import logger, progress
from .._validate import check_nonnegative_int, check_positive

__all__ = ["TileSpec", "Tile", "TileGrid", "tile_grid", "tiles"]


@dataclass(frozen=True)
class TileSpec:
    """Geometry of one tile (picklable; no pixels)."""

    index: int
    row: int
    col: int
    x0: float  # level-0 edge coordinate of the tile image's left edge
    y0: float
    scale: float  # level-0 px per tile px
    size: tuple[int, int]  # (width, height) of the tile image in target px
    core: tuple[float, float, float, float]  # owned level-0 box (x0, y0, x1, y1), edge coords, half-open
    level: int  # pyramid level the pixels are read from
    tissue_fraction: float = 1.0

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    @property
    def core_px(self) -> tuple[float, float, float, float]:
        """The core in tile-pixel *edge* coordinates (x0, y0, x1, y1)."""
        cx0, cy0, cx1, cy1 = self.core
        s = self.scale
        return ((cx0 - self.x0) / s, (cy0 - self.y0) / s, (cx1 - self.x0) / s, (cy1 - self.y0) / s)

    def to_level0(self, xy: np.ndarray) -> np.ndarray:
        """Tile pixel-index coordinates (x, y) -> level-0 pixel-index coordinates."""
        xy = np.asarray(xy, dtype=np.float64)
        out = np.empty_like(xy)
        out[..., 0] = self.x0 + (xy[..., 0] + 0.5) * self.scale - 0.5
        out[..., 1] = self.y0 + (xy[..., 1] + 0.5) * self.scale - 0.5
        return out

    def from_level0(self, xy: np.ndarray) -> np.ndarray:
        """Level-0 pixel-index coordinates -> tile pixel-index coordinates."""
        xy = np.asarray(xy, dtype=np.float64)
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] + 0.5 - self.x0) / self.scale - 0.5
        out[..., 1] = (xy[..., 1] + 0.5 - self.y0) / self.scale - 0.5
        return out

    def owns(self, x, y) -> np.ndarray:
        """True where level-0 pixel-index point (x, y) lies in this tile's core.

        A point at pixel-index coordinate x sits at edge coordinate x + 0.5; cores are half-open in
        edge coordinates, so each point of the plane is owned by exactly one tile of the grid.
        """
        x = np.asarray(x, dtype=np.float64) + 0.5
        y = np.asarray(y, dtype=np.float64) + 0.5
        cx0, cy0, cx1, cy1 = self.core
        return (x >= cx0) & (x < cx1) & (y >= cy0) & (y < cy1)

    def read(self, slide, *, nearest: bool = False, pad: str = "background") -> np.ndarray:
        """The tile image at the target resolution; outside the slide it is padded with the background
        or, with ``pad='reflect'``, mirrored."""
        from ._resample import read_resampled

        return read_resampled(slide, self.x0, self.y0, self.scale, self.size, level=self.level,
                              nearest=nearest, pad=pad)

    def inside_mask(self, slide_size: tuple[int, int]) -> tuple[slice, slice]:
        """The rows and columns of the tile image whose pixel centres lie inside the slide."""
        w0, h0 = slide_size
        s = self.scale
        c0 = max(0, math.ceil(-self.x0 / s - 0.5))
        r0 = max(0, math.ceil(-self.y0 / s - 0.5))
        c1 = min(self.width, math.ceil((w0 - self.x0) / s - 0.5))
        r1 = min(self.height, math.ceil((h0 - self.y0) / s - 0.5))
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


@dataclass(frozen=True)
class Tile:
    """A tile with its pixels: :class:`TileSpec` geometry plus ``image``."""

    spec: TileSpec
    image: np.ndarray

    def __getattr__(self, name):  # delegate geometry to the spec
        return getattr(self.spec, name)


@dataclass
class TileGrid:
    """All tissue tiles of a slide at one resolution, plus the grid they come from."""

    specs: list[TileSpec]
    x_bounds: np.ndarray  # level-0 core boundaries along x (n_cols + 1)
    y_bounds: np.ndarray
    mpp: float | None  # target µm/px (None = native resolution of an image without µm/px)
    scale: float
    size: int
    overlap: int
    slide_size: tuple[int, int]
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.specs)

    def __iter__(self) -> Iterator[TileSpec]:
        return iter(self.specs)

    def __getitem__(self, i: int) -> TileSpec:
        return self.specs[i]

    @property
    def n_rows(self) -> int:
        return len(self.y_bounds) - 1

    @property
    def n_cols(self) -> int:
        return len(self.x_bounds) - 1

    def owner(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of the grid cell owning each level-0 pixel-index point (vectorised)."""
        xe = np.asarray(x, dtype=np.float64) + 0.5
        ye = np.asarray(y, dtype=np.float64) + 0.5
        col = np.clip(np.searchsorted(self.x_bounds, xe, side="right") - 1, 0, self.n_cols - 1)
        row = np.clip(np.searchsorted(self.y_bounds, ye, side="right") - 1, 0, self.n_rows - 1)
        return row, col

    def __repr__(self) -> str:
        mpp = f"{self.mpp:g} µm/px" if self.mpp else "native px"
        return (f"TileGrid({len(self.specs)} tissue tiles of {self.n_rows}x{self.n_cols}, size={self.size}, "
                f"overlap={self.overlap}, {mpp})")


def _bounds(extent0: int, stride: int, scale: float) -> np.ndarray:
    n = max(1, math.ceil(extent0 / (stride * scale) - 1e-9))
    b = np.arange(n + 1, dtype=np.float64) * (stride * scale)
    b[-1] = float(extent0)
    return b


def _overlap_matrix(edges_a: np.ndarray, edges_b: np.ndarray) -> np.ndarray:
    """Lengths of the overlaps of intervals [a_i, a_i+1) with intervals [b_j, b_j+1)."""
    lo = np.maximum(edges_a[:-1, None], edges_b[None, :-1])
    hi = np.minimum(edges_a[1:, None], edges_b[None, 1:])
    return np.clip(hi - lo, 0.0, None)


def tile_grid(slide, *, mpp: float | None = 0.5, size: int = 1024, overlap: int = 64, mask="auto",
              min_tissue: float = 0.0) -> TileGrid:
    """Plan tiles of ``size`` target px at ``mpp`` µm/px covering the tissue of ``slide``.

    Parameters
    ----------
    slide
        A :class:`~tissuegraph.io.Slide`, a path, or an array.
    mpp
        Target µm/px. ``None`` tiles at the native level-0 resolution (for images without µm/px).
    size, overlap
        Tile edge and the overlap between neighbouring tiles, in target px (``overlap < size``).
    mask
        ``'auto'`` (:func:`tissue_mask`), ``None`` / ``'all'`` (every tile), a :class:`TissueMask`, or a
        boolean array covering the slide at any resolution.
    min_tissue
        Keep tiles whose core has a tissue fraction > ``min_tissue`` (default: any tissue at all).
    """
    from ._slide import open_slide
    from ._tissue import TissueMask, tissue_mask

    slide = open_slide(slide)
    size = check_positive(size, "size", integer=True)
    overlap = check_nonnegative_int(overlap, "overlap")
    if overlap >= size:
        raise InputError(f"overlap ({overlap}) must be smaller than size ({size}).")
    if not (0.0 <= float(min_tissue) < 1.0):
        raise InputError(f"min_tissue must be in [0, 1), got {min_tissue}.")
    if mpp is None:
        scale = 1.0
    else:
        check_positive(mpp, "mpp")
        scale = float(mpp) / slide.require_mpp(f"tiling at {mpp} µm/px")
    w0, h0 = slide.dimensions
    stride = size - overlap
    xb, yb = _bounds(w0, stride, scale), _bounds(h0, stride, scale)
    level = slide.get_best_level_for_downsample(scale)

    if isinstance(mask, str) and mask == "auto":
        tmask = tissue_mask(slide)
    elif mask is None or (isinstance(mask, str) and mask == "all"):
        tmask = None
    elif isinstance(mask, TissueMask):
        tmask = mask
    elif isinstance(mask, np.ndarray):
        tmask = TissueMask(mask, (w0, h0), {"method": "user"})
    else:
        raise InputError(f"mask must be 'auto', 'all', None, a TissueMask or a boolean array, got "
                         f"{type(mask).__name__}.")
    if tmask is not None and tuple(tmask.level0_size) != (w0, h0):
        raise InputError(f"The tissue mask was made for a {tmask.level0_size} slide, not {(w0, h0)}.")

    n_rows, n_cols = len(yb) - 1, len(xb) - 1
    if tmask is None:
        frac = np.ones((n_rows, n_cols))
    else:
        # exact area fraction of the (upsampled) tissue mask inside each core:
        # overlap lengths of mask columns/rows with core columns/rows, then Oy^T . mask . Ox
        dx, dy = tmask.downsample
        mh, mw = tmask.mask.shape
        ox = _overlap_matrix(np.arange(mw + 1) * dx, xb)
        oy = _overlap_matrix(np.arange(mh + 1) * dy, yb)
        tissue = oy.T @ tmask.mask.astype(np.float64) @ ox
        total = np.outer(np.diff(yb), np.diff(xb)).astype(np.float64)
        frac = np.clip(tissue / total, 0.0, 1.0)
    half = overlap // 2
    specs = []
    for r in range(n_rows):
        for c in range(n_cols):
            f = float(frac[r, c])
            if tmask is not None and not f > min_tissue:
                continue
            specs.append(TileSpec(index=len(specs), row=r, col=c,
                                  x0=float(xb[c] - half * scale), y0=float(yb[r] - half * scale),
                                  scale=scale, size=(size, size),
                                  core=(float(xb[c]), float(yb[r]), float(xb[c + 1]), float(yb[r + 1])),
                                  level=level, tissue_fraction=f))
    grid = TileGrid(specs, xb, yb, None if mpp is None else float(mpp), scale, size, overlap, (w0, h0),
                    params=dict(mpp=mpp, size=size, overlap=overlap, min_tissue=min_tissue,
                                mask=None if tmask is None else tmask.params))
    logger.info("%s: %s", slide.slide_id, grid)
    return grid


def tiles(slide, *, mpp: float | None = 0.5, size: int = 1024, overlap: int = 64, mask="auto",
          min_tissue: float = 0.0, progress_bar: bool | None = None) -> Iterator[Tile]:
    """Yield the tissue tiles of ``slide`` at ``mpp`` µm/px, each with its pixels (see :func:`tile_grid`)."""
    from ._slide import open_slide

    slide = open_slide(slide)
    grid = tile_grid(slide, mpp=mpp, size=size, overlap=overlap, mask=mask, min_tissue=min_tissue)
    for spec in progress(grid.specs, total=len(grid), desc="tiles", enabled=progress_bar):
        yield Tile(spec, spec.read(slide))
