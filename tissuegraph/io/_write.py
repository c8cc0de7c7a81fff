"""Write tiled, pyramidal, compressed generic TIFFs that OpenSlide opens, strip by strip.

Memory stays flat: level 0 is written tile by tile as strips arrive, while the 2x-downsampled level 1
accumulates in a temporary disk-backed array; each further level is made from the previous one.
"""

from __future__ import annotations

import math
import os
import queue
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._errors import InputError
from .._logging import logger, progress
from .._validate import check_mpp, check_positive

__all__ = ["SlideWriter", "write_slide"]

_COMPRESSION = {
    None: None,
    "none": None,
    "deflate": "zlib",
    "zlib": "zlib",
    "lzw": "lzw",
    "jpeg": "jpeg",
    "zstd": "zstd",
}


class SlideWriter:
    """Push-style writer of a pyramidal tiled TIFF.

    >>> with SlideWriter("out.tiff", shape=(H, W, 3), dtype=np.uint8, mpp=0.5) as w:
    ...     for strip in strips:   # consecutive strips of ``tile_size`` rows (the last may be shorter)
    ...         w.write(strip)

    Parameters
    ----------
    path
        Output ``.tif``/``.tiff`` path.
    shape
        (H, W) or (H, W, C) of level 0.
    dtype
        Pixel type (uint8 RGB for slides; uint16/uint32 for label images).
    mpp
        µm per level-0 pixel, written to the TIFF resolution tags of every level (scaled per level).
    tile_size
        TIFF tile edge (multiple of 16). Strips must have this many rows.
    compression
        ``'deflate'`` (lossless, default), ``'jpeg'`` (RGB uint8 only), ``'lzw'``, ``'zstd'`` or None.
    quality
        JPEG quality.
    levels
        Number of pyramid levels, or ``'auto'``: halve until the longer side fits in one tile.
    resample
        ``'mean'`` (2x2 average; images) or ``'nearest'`` (top-left of each 2x2 block; label images).
    """

    def __init__(self, path: str | os.PathLike, *, shape: tuple[int, ...], dtype: Any = np.uint8,
                 mpp: float | None, tile_size: int = 512, compression: str | None = "deflate",
                 quality: int = 90, levels: int | str = "auto", resample: str = "mean",
                 description: str | None = None, progress: bool = False):
        self.path = Path(path)
        if len(shape) not in (2, 3) or min(shape[:2]) <= 0:
            raise InputError(f"shape must be (H, W) or (H, W, C) with positive sizes, got {shape}.")
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.mpp = None if mpp is None else check_mpp(mpp)
        tile_size = check_positive(tile_size, "tile_size", integer=True)
        if tile_size % 16:
            raise InputError(f"tile_size must be a multiple of 16 (TIFF rule), got {tile_size}.")
        self.tile_size = tile_size
        comp_key = compression.lower() if isinstance(compression, str) else compression
        if comp_key not in _COMPRESSION:
            raise InputError(f"compression must be one of {sorted(k for k in _COMPRESSION if k)} or None, "
                             f"got {compression!r}.")
        self.compression = _COMPRESSION[comp_key]
        self.channels = 1 if len(self.shape) == 2 else self.shape[2]
        if self.compression == "jpeg" and not (self.dtype == np.uint8 and self.channels in (1, 3)):
            raise InputError("JPEG compression needs uint8 images with 1 or 3 channels; use 'deflate'.")
        self.quality = int(quality)
        if resample not in ("mean", "nearest"):
            raise InputError(f"resample must be 'mean' or 'nearest', got {resample!r}.")
        self.resample = resample
        H, W = self.shape[:2]
        if levels == "auto":
            n = 1
            while max(math.ceil(H / 2 ** (n - 1)), math.ceil(W / 2 ** (n - 1))) > tile_size:
                n += 1
            levels = n
        self.n_levels = check_positive(levels, "levels", integer=True)
        self.description = description
        self._progress = progress
        self._rows_written = 0
        self._closed = False
        self._error: BaseException | None = None
        self._tmpdir = Path(tempfile.mkdtemp(prefix=".tg_pyramid_", dir=self.path.parent
                                             if self.path.parent.exists() else None))
        self._level_shapes = [self.shape]
        for _ in range(1, self.n_levels):
            h, w = self._level_shapes[-1][:2]
            self._level_shapes.append((math.ceil(h / 2), math.ceil(w / 2), *self.shape[2:]))
        self._next_level = None
        if self.n_levels > 1:
            self._next_level = _RawRows(self._tmpdir / "level1.raw", self._level_shapes[1], self.dtype)
        import tifffile

        self._tif = tifffile.TiffWriter(str(self.path), bigtiff=self._needs_bigtiff())
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._write_level0, daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------------------------------------------
    def _needs_bigtiff(self) -> bool:
        nbytes = int(np.prod(self.shape)) * self.dtype.itemsize * 4 / 3
        return nbytes > 2 ** 31

    def _page_kwargs(self, level: int) -> dict:
        kw: dict[str, Any] = dict(
            tile=(self.tile_size, self.tile_size),
            photometric="rgb" if self.channels == 3 and self.dtype == np.uint8 else "minisblack",
            planarconfig="contig" if self.channels > 1 else None,
            subfiletype=1 if level > 0 else 0,
            metadata=None,
        )
        if self.compression == "jpeg":
            kw["compression"] = "jpeg"
            kw["compressionargs"] = {"level": self.quality}
        elif self.compression is not None:
            kw["compression"] = self.compression
        if self.mpp is not None:
            res = 1e4 / (self.mpp * 2 ** level)  # px per cm
            kw["resolution"] = (res, res)
            kw["resolutionunit"] = "CENTIMETER"
        if level == 0 and self.description:
            kw["description"] = self.description
        return kw

    def _tiles_from_queue(self):
        ts = self.tile_size
        while True:
            strip = self._queue.get()
            if strip is None:
                return
            h = strip.shape[0]
            if h < ts:
                pad = np.zeros((ts, *strip.shape[1:]), dtype=strip.dtype)
                pad[:h] = strip
                strip = pad
            W = strip.shape[1]
            for x in range(0, W, ts):
                tile = strip[:, x:x + ts]
                if tile.shape[1] < ts:
                    pad = np.zeros((ts, ts, *strip.shape[2:]), dtype=strip.dtype)
                    pad[:, :tile.shape[1]] = tile
                    tile = pad
                yield np.ascontiguousarray(tile)

    def _write_level0(self):
        try:
            self._tif.write(self._tiles_from_queue(), shape=self.shape, dtype=self.dtype,
                            **self._page_kwargs(0))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self._error = exc
            # drain so that the producer never blocks forever
            try:
                while self._queue.get_nowait() is not None:
                    pass
            except queue.Empty:
                pass

    # ---------------------------------------------------------------------------------------------------
    def write(self, strip: np.ndarray) -> None:
        """Append the next strip of rows (full width, ``tile_size`` rows except the last)."""
        if self._closed:
            raise InputError("This SlideWriter is closed.")
        if self._error is not None:
            raise self._error
        strip = np.asarray(strip)
        H, W = self.shape[:2]
        expected_rows = min(self.tile_size, H - self._rows_written)
        if expected_rows <= 0:
            raise InputError(f"All {H} rows were already written.")
        if strip.shape[0] != expected_rows or strip.shape[1:] != tuple(self.shape[1:]):
            raise InputError(f"Strip at row {self._rows_written} must have shape "
                             f"{(expected_rows, *self.shape[1:])}, got {strip.shape}.")
        if strip.dtype != self.dtype:
            if np.issubdtype(strip.dtype, np.floating) and not np.isfinite(strip).all():
                raise InputError("Strip contains NaN or infinite values.")
            strip = strip.astype(self.dtype)
        if self._next_level is not None:
            self._next_level.append(_downsample2(strip, self.resample))
        self._rows_written += strip.shape[0]
        while True:
            try:
                self._queue.put(strip, timeout=0.5)
                break
            except queue.Full:
                if self._error is not None:
                    raise self._error
                if not self._thread.is_alive():
                    raise RuntimeError("TIFF writer thread stopped unexpectedly.")

    def close(self) -> None:
        if self._closed:
            return
        if self._rows_written != self.shape[0]:
            self.abort()
            raise InputError(f"Only {self._rows_written} of {self.shape[0]} rows were written; the "
                             f"incomplete TIFF {self.path} was removed.")
        self._closed = True
        try:
            self._queue.put(None)
            self._thread.join()
            if self._error is not None:
                raise self._error
            prev = self._next_level
            for level in range(1, self.n_levels):
                nxt = None
                if level + 1 < self.n_levels:
                    nxt = _RawRows(self._tmpdir / f"level{level + 1}.raw", self._level_shapes[level + 1], self.dtype)
                prev.finish()
                self._tif.write(self._tiles_of(prev, nxt), shape=prev.shape, dtype=self.dtype,
                                **self._page_kwargs(level))
                prev.close()
                prev = nxt
        except BaseException:
            self._tif.close()
            self.path.unlink(missing_ok=True)  # never leave a half-written slide behind
            raise
        finally:
            self._tif.close()
            if self._next_level is not None:
                self._next_level.close()
            self._next_level = None
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _tiles_of(self, arr: "_RawRows", nxt: "_RawRows | None"):
        ts = self.tile_size
        H, W = arr.shape[:2]
        for y in range(0, H, ts):
            strip = arr.read(y, min(ts, H - y))
            if nxt is not None:
                nxt.append(_downsample2(strip, self.resample))
            for x in range(0, W, ts):
                tile = strip[:, x:x + ts]
                if tile.shape[0] < ts or tile.shape[1] < ts:
                    pad = np.zeros((ts, ts, *arr.shape[2:]), dtype=arr.dtype)
                    pad[:tile.shape[0], :tile.shape[1]] = tile
                    tile = pad
                yield np.ascontiguousarray(tile)

    def abort(self) -> None:
        """Stop without finishing; the partial file is removed."""
        self._closed = True
        try:
            self._error = self._error or RuntimeError("aborted")
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout=10)
        try:
            self._tif.close()
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "SlideWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


class _RawRows:
    """A temporary on-disk image written row-block by row-block and read back in strips.

    Plain file I/O (not a memory map), so pages already written do not stay in the process's RSS.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        self._row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        self._fh = open(self.path, "w+b")
        self._rows = 0

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        n = min(block.shape[0], self.shape[0] - self._rows)  # odd heights: the last 2x block may overhang
        self._fh.write(block[:n].tobytes())
        self._rows += n

    def finish(self) -> None:
        if self._rows != self.shape[0]:
            raise RuntimeError(f"pyramid level has {self._rows} of {self.shape[0]} rows")
        self._fh.flush()

    def read(self, y0: int, h: int) -> np.ndarray:
        self._fh.seek(y0 * self._row_bytes)
        buf = self._fh.read(h * self._row_bytes)
        return np.frombuffer(buf, dtype=self.dtype).reshape((h, *self.shape[1:]))

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def _downsample2(strip: np.ndarray, how: str) -> np.ndarray:
    """2x downsample, padding odd edges by replication ('mean') or taking the top-left ('nearest')."""
    if how == "nearest":
        return strip[::2, ::2]
    h, w = strip.shape[:2]
    if h % 2 or w % 2:
        pad = [(0, h % 2), (0, w % 2)] + [(0, 0)] * (strip.ndim - 2)
        strip = np.pad(strip, pad, mode="edge")
    s = strip.astype(np.float32)
    out = 0.25 * (s[0::2, 0::2] + s[1::2, 0::2] + s[0::2, 1::2] + s[1::2, 1::2])
    if np.issubdtype(strip.dtype, np.integer):
        out = np.rint(out)
    return out.astype(strip.dtype)


def write_slide(path: str | os.PathLike, source: np.ndarray | Callable[..., np.ndarray], *,
                mpp: float | None, shape: tuple[int, ...] | None = None, dtype: Any = None,
                tile_size: int = 512, compression: str | None = "deflate", quality: int = 90,
                levels: int | str = "auto", resample: str = "mean", description: str | None = None,
                progress_bar: bool | None = None) -> Path:
    """Write an image as a tiled, pyramidal, compressed generic TIFF that OpenSlide opens.

    ``source`` is an array-like with ``shape`` and slicing (numpy, zarr, dask, memmap, a Slide level via
    a callable ...) or a callable ``source(y0, x0, h, w) -> array`` with ``shape``/``dtype`` given.
    The image is read and written one strip of ``tile_size`` rows at a time, so it can be larger than
    memory. Returns the path.
    """
    if callable(source) and not hasattr(source, "shape"):
        if shape is None or dtype is None:
            raise InputError("write_slide with a callable source needs shape= and dtype=.")

        def get(y0, h):
            return source(y0, 0, h, shape[1])
    else:
        arr = source
        if not hasattr(arr, "shape"):
            arr = np.asarray(arr)
        shape = tuple(arr.shape) if shape is None else shape
        dtype = arr.dtype if dtype is None else dtype
        if len(shape) == 3 and shape[2] == 1:
            shape = shape[:2]

        def get(y0, h):
            block = np.asarray(arr[y0:y0 + h])
            return block[..., 0] if block.ndim == 3 and len(shape) == 2 else block
    H = shape[0]
    with SlideWriter(path, shape=shape, dtype=dtype, mpp=mpp, tile_size=tile_size,
                     compression=compression, quality=quality, levels=levels, resample=resample,
                     description=description) as w:
        for y0 in progress(range(0, H, tile_size), total=math.ceil(H / tile_size), desc="write slide",
                           enabled=progress_bar):
            w.write(get(y0, min(tile_size, H - y0)))
    logger.info("wrote %s (%dx%d, %d levels)", path, shape[1], shape[0], w.n_levels)
    return Path(path)
