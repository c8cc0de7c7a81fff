"""Resampling of slide regions: exact sub-pixel boxes, antialiased, any dtype, chunked thumbnails."""

from __future__ import annotations

import math

import numpy as np

__all__: list[str] = []


def resize_box(arr: np.ndarray, out_size: tuple[int, int], box: tuple[float, float, float, float], *,
               nearest: bool = False) -> np.ndarray:
    """Resample the area ``box`` = (x0, y0, x1, y1) (pixel-edge coordinates of ``arr``) to
    ``out_size`` = (w, h) pixels.  Antialiased bilinear (Pillow's convolution resize) or nearest."""
    from PIL import Image

    w, h = out_size
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    bx = tuple(float(v) for v in box)
    if (not nearest and arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] in (3, 4)) or \
            (arr.dtype == np.uint8 and arr.ndim == 2):
        im = Image.fromarray(np.ascontiguousarray(arr))
        return np.asarray(im.resize((w, h), resample=resample, box=bx))
    if nearest:
        # nearest sampling of pixel centres, exact for integer labels of any dtype
        xs = bx[0] + (np.arange(w) + 0.5) * (bx[2] - bx[0]) / w
        ys = bx[1] + (np.arange(h) + 0.5) * (bx[3] - bx[1]) / h
        xi = np.clip(np.floor(xs).astype(np.int64), 0, arr.shape[1] - 1)
        yi = np.clip(np.floor(ys).astype(np.int64), 0, arr.shape[0] - 1)
        return arr[yi[:, None], xi[None, :]]
    chans = [arr] if arr.ndim == 2 else [arr[..., c] for c in range(arr.shape[2])]
    out = []
    for ch in chans:
        im = Image.fromarray(np.ascontiguousarray(ch, dtype=np.float32), mode="F")
        out.append(np.asarray(im.resize((w, h), resample=resample, box=bx)))
    res = out[0] if arr.ndim == 2 else np.stack(out, axis=-1)
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        res = np.clip(np.rint(res), info.min, info.max)
    return res.astype(arr.dtype, copy=False)


def read_resampled(slide, x0: float, y0: float, scale: float, size: tuple[int, int], *,
                   level: int | None = None, nearest: bool = False, pad: str = "background") -> np.ndarray:
    """Read a (w, h) image whose pixel (u, v) covers level-0 edge coordinates
    ``[x0 + u*scale, x0 + (u+1)*scale) x [y0 + v*scale, ...)`` from the best pyramid level."""
    w, h = size
    if level is None:
        level = slide.get_best_level_for_downsample(scale)
    d = slide.level_downsamples[level]
    if level == 0 and abs(scale - 1.0) < 1e-9 and float(x0).is_integer() and float(y0).is_integer():
        return slide.read_region((int(x0), int(y0)), 0, (w, h), pad=pad)
    # region in level edge coordinates, with a 2-px margin for the filter support
    lx0, ly0 = x0 / d, y0 / d
    lx1, ly1 = (x0 + w * scale) / d, (y0 + h * scale) / d
    rx0, ry0 = int(math.floor(lx0)) - 2, int(math.floor(ly0)) - 2
    rx1, ry1 = int(math.ceil(lx1)) + 2, int(math.ceil(ly1)) + 2
    region = slide.read_region((int(round(rx0 * d)), int(round(ry0 * d))), level, (rx1 - rx0, ry1 - ry0), pad=pad)
    # read_region location is level-0; recompute the origin actually used in level coordinates
    ox = math.floor(round(rx0 * d) / d)
    oy = math.floor(round(ry0 * d) / d)
    box = (lx0 - ox, ly0 - oy, lx1 - ox, ly1 - oy)
    return resize_box(region, (w, h), box, nearest=nearest)


def downscale_to(slide, level: int, out_size: tuple[int, int], *, chunk_rows: int = 256) -> np.ndarray:
    """Downscale a whole level to ``out_size`` = (w, h), reading it in horizontal chunks."""
    tw, th = out_size
    lw, lh = slide.level_dimensions[level]
    d = slide.level_downsamples[level]
    fy = lh / th  # level px per output row
    rows = []
    for r0 in range(0, th, chunk_rows):
        r1 = min(th, r0 + chunk_rows)
        y_lo, y_hi = r0 * fy, r1 * fy
        ry0 = max(int(math.floor(y_lo)) - 2, 0)
        ry1 = min(int(math.ceil(y_hi)) + 2, lh)
        region = slide.read_region((0, int(round(ry0 * d))), level, (lw, ry1 - ry0))
        oy = math.floor(round(ry0 * d) / d)
        rows.append(resize_box(region, (tw, r1 - r0), (0.0, y_lo - oy, float(lw), y_hi - oy)))
    return np.concatenate(rows, axis=0)
