"""One ``Slide`` object over OpenSlide, tifffile, Pillow and in-memory arrays.

Coordinates follow OpenSlide: ``location`` is the (x, y) of the top-left pixel in level-0 pixels,
``size`` is (width, height) in pixels of the requested level.  Areas outside the slide are filled
with the slide's background value (white for brightfield, 0 for fluorescence).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._errors import InputError, SlideError, SlideFormatError, SlideNotFoundError
from .._logging import logger
from .._validate import check_image, check_mpp, check_positive

__all__ = ["Slide", "open_slide", "BACKENDS"]

BACKENDS = ("openslide", "tifffile", "pillow", "array")

# µm/px values outside this range are not microscopy metadata (e.g. a 72 dpi placeholder is 353 µm/px).
_PLAUSIBLE_MPP = (1e-3, 100.0)
_PIL_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
_TIFF_SUFFIXES = {".tif", ".tiff", ".ome.tif", ".ome.tiff", ".btf", ".tf8", ".qptiff"}


def _plausible_mpp(value: float | None, source: str) -> float | None:
    if value is None or not np.isfinite(value) or value <= 0:
        return None
    if not (_PLAUSIBLE_MPP[0] <= value <= _PLAUSIBLE_MPP[1]):
        logger.warning("Ignoring implausible pixel size %.4g µm/px from %s (a placeholder resolution, "
                       "not a microscope's); pass mpp= to set it.", value, source)
        return None
    return float(value)


@dataclass(frozen=True)
class _Level:
    width: int
    height: int
    downsample: float


class _Backend:
    """Internal reader interface: levels, native region reads, metadata."""

    name = "base"
    levels: list[_Level]
    mpp_x: float | None = None
    mpp_y: float | None = None
    channels: int = 3
    dtype: np.dtype = np.dtype(np.uint8)
    properties: dict[str, Any]

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:  # level coordinates, inside
        raise NotImplementedError

    def close(self) -> None:
        pass


class _OpenSlideBackend(_Backend):
    name = "openslide"

    def __init__(self, path: Path):
        import openslide

        try:
            self._os = openslide.OpenSlide(str(path))
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise SlideFormatError(f"OpenSlide does not recognise {path} as a slide: {exc}") from exc
        except openslide.OpenSlideError as exc:
            raise SlideFormatError(f"{path} is corrupt or truncated (OpenSlide: {exc}).") from exc
        self._path = path
        props = dict(self._os.properties)
        self.properties = props
        self.levels = [_Level(int(w), int(h), float(d))
                       for (w, h), d in zip(self._os.level_dimensions, self._os.level_downsamples)]
        self.mpp_x = _plausible_mpp(_float(props.get(openslide.PROPERTY_NAME_MPP_X)), "OpenSlide mpp-x")
        self.mpp_y = _plausible_mpp(_float(props.get(openslide.PROPERTY_NAME_MPP_Y)), "OpenSlide mpp-y")
        if self.mpp_x is None:
            # generic TIFF: OpenSlide exposes the TIFF resolution tags as properties
            self.mpp_x, self.mpp_y = _mpp_from_tiff_props(props)
        bg = props.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR)
        self.background = np.array([int(bg[i:i + 2], 16) for i in (0, 2, 4)], np.uint8) if bg else \
            np.array([255, 255, 255], np.uint8)

    def read(self, level, x, y, w, h):
        ds = self.levels[level].downsample
        return self.read_level0(level, int(round(x * ds)), int(round(y * ds)), w, h)

    def read_level0(self, level, x0, y0, w, h):
        """OpenSlide's own convention: location in level-0 px, size in level px; pads outside."""
        import openslide

        try:
            img = self._os.read_region((x0, y0), level, (w, h))
        except openslide.OpenSlideError as exc:
            raise SlideFormatError(f"Reading {self._path} at level {level}, region x={x0}, y={y0} "
                                   f"(level 0), {w}x{h} failed; the file is corrupt or truncated "
                                   f"({exc}).") from exc
        rgba = np.asarray(img)
        rgb = rgba[..., :3].astype(np.float32)
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        # OpenSlide returns premultiplied-alpha-free RGBA with transparent areas outside the scan
        out = rgb * alpha + self.background.astype(np.float32) * (1.0 - alpha)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def close(self):
        self._os.close()


def _float(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _mpp_from_tiff_props(props: dict) -> tuple[float | None, float | None]:
    unit = str(props.get("tiff.ResolutionUnit", "")).lower()
    factor = {"centimeter": 1e4, "inch": 25400.0}.get(unit)
    xr, yr = _float(props.get("tiff.XResolution")), _float(props.get("tiff.YResolution"))
    if factor is None or not xr:
        return None, None
    mx = _plausible_mpp(factor / xr, "TIFF XResolution")
    my = _plausible_mpp(factor / yr, "TIFF YResolution") if yr else mx
    return mx, my


def _mpp_from_tiff_page(page) -> tuple[float | None, float | None]:
    """µm/px from a tifffile page: OME, Aperio/ImageJ descriptions, or resolution tags."""
    desc = page.description or ""
    # Aperio: "... |MPP = 0.2520|..."
    if "MPP" in desc:
        for part in desc.replace("\n", "|").split("|"):
            k, _, v = part.partition("=")
            if k.strip().upper() == "MPP" and _float(v):
                m = _plausible_mpp(float(v), "Aperio MPP")
                return m, m
    if "PhysicalSizeX" in desc:
        import re

        mx = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', desc)
        my = re.search(r'PhysicalSizeY="([0-9.eE+-]+)"', desc)
        ux = re.search(r'PhysicalSizeXUnit="([^"]+)"', desc)
        scale = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}.get(
            ux.group(1) if ux else "µm", 1.0)
        if mx:
            x = _plausible_mpp(float(mx.group(1)) * scale, "OME PhysicalSizeX")
            y = _plausible_mpp(float(my.group(1)) * scale, "OME PhysicalSizeY") if my else x
            return x, y
    tags = page.tags
    if "XResolution" in tags and "ResolutionUnit" in tags:
        unit = int(tags["ResolutionUnit"].value)
        factor = {2: 25400.0, 3: 1e4}.get(unit)
        if factor:
            num, den = tags["XResolution"].value
            xr = num / den if den else 0
            yr = xr
            if "YResolution" in tags:
                num, den = tags["YResolution"].value
                yr = num / den if den else 0
            if xr > 0:
                return (_plausible_mpp(factor / xr, "TIFF XResolution"),
                        _plausible_mpp(factor / yr, "TIFF YResolution") if yr > 0 else None)
    return None, None


class _TiffBackend(_Backend):
    name = "tifffile"

    def __init__(self, path: Path):
        import tifffile
        import zarr

        self._path = path
        try:
            with _tifffile_log_to_debug():
                self._tif = tifffile.TiffFile(str(path))
                series = self._tif.series[0]
                page = series.pages[0] if series.pages else self._tif.pages[0]
        except (tifffile.TiffFileError, ValueError, IndexError, OSError, struct_error()) as exc:
            raise SlideFormatError(f"{path} is not a readable TIFF (corrupt, truncated or not an image): "
                                   f"{exc}") from exc
        axes = series.axes.upper()
        shape = series.shape
        # supported layouts: YX, YXS (samples = channels last), CYX (planar channels)
        if axes in ("YX", "YXS"):
            self._channel_first = False
        elif axes in ("CYX", "SYX", "IYX", "QYX", "ZYX") and len(shape) == 3:
            self._channel_first = True
        else:
            raise SlideFormatError(f"{path}: unsupported TIFF layout axes={series.axes!r} shape={shape}; "
                                   "expected a 2-D image with optional channels (YX, YXS or CYX).")
        self.properties = {"tiff.axes": series.axes, "tiff.shape": str(shape)}
        try:
            store = series.aszarr()
            z = zarr.open(store, mode="r")
        except Exception as exc:  # pragma: no cover - tifffile raises many types here
            raise SlideFormatError(f"{path}: cannot read TIFF image data lazily ({exc}).") from exc
        if hasattr(z, "shape"):  # a single level
            arrays = [z]
        else:
            arrays = [z[str(i)] for i in range(len(series.levels))]
        self._arrays = arrays
        self.levels = []
        base_w = None
        for a in arrays:
            h, w = (a.shape[1], a.shape[2]) if self._channel_first else (a.shape[0], a.shape[1])
            base_w = base_w or w
            self.levels.append(_Level(int(w), int(h), base_w / w))
        a0 = arrays[0]
        self.channels = 1 if a0.ndim == 2 else int(a0.shape[0] if self._channel_first else a0.shape[2])
        self.dtype = np.dtype(a0.dtype)
        self.mpp_x, self.mpp_y = _mpp_from_tiff_page(page)
        small = arrays[-1]
        sample = None
        if self.channels == 3 and self.dtype == np.uint8 and not self._channel_first:
            try:
                sample = _strided_sample(small) if small.shape[0] * small.shape[1] <= 4096 ** 2 else None
            except Exception:  # noqa: BLE001 - unreadable data is reported at the first read
                sample = None
        self.background = _default_background(self.channels, self.dtype, sample)

    def read(self, level, x, y, w, h):
        a = self._arrays[level]
        try:
            if self._channel_first:
                out = np.moveaxis(np.asarray(a[:, y:y + h, x:x + w]), 0, -1)
            else:
                out = np.asarray(a[y:y + h, x:x + w])
        except Exception as exc:
            _drain_zarr_loop()
            raise SlideFormatError(f"Reading {self._path} at level {level}, region x={x}, y={y}, {w}x{h} "
                                   f"failed; the file is corrupt or truncated ({exc}).") from exc
        return out

    def close(self):
        self._tif.close()


class _tifffile_log_to_debug:
    """Route tifffile's own log warnings (e.g. "invalid page offset" on a truncated file) to
    tissuegraph's debug log while a file is opened: the error raised afterwards says what is wrong."""

    def __enter__(self):
        import logging

        self._log = logging.getLogger("tifffile")
        self._filter = _ToDebug()
        self._log.addFilter(self._filter)
        return self

    def __exit__(self, *exc):
        self._log.removeFilter(self._filter)
        return False


class _ToDebug:
    def filter(self, record) -> bool:
        logger.debug("tifffile: %s", record.getMessage())
        return False


def _drain_zarr_loop(timeout: float = 30.0) -> None:
    """After a failed zarr read, let the read's other chunk tasks finish on zarr's I/O event loop.

    zarr returns the first chunk error at once and leaves the sibling tasks running; at interpreter exit
    zarr closes its loop under them, which prints dozens of asyncio tracebacks ("Task was destroyed but
    it is pending", "Event loop is closed") after tissuegraph's own error.  Waiting for them here (their
    exceptions collected and dropped) keeps the failure to the one error tissuegraph raises.
    """
    import asyncio

    try:
        from zarr.core import sync as zsync
    except ImportError:  # pragma: no cover - zarr 2 has no I/O loop
        return
    loop = zsync.loop[0] if isinstance(getattr(zsync, "loop", None), list) else None
    if loop is None or loop.is_closed() or not loop.is_running():
        return

    async def drain():
        me = asyncio.current_task()
        for _ in range(100):
            pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)

    fut = asyncio.run_coroutine_threadsafe(drain(), loop)
    try:
        fut.result(timeout)
    except Exception:  # noqa: BLE001 - best effort: the read error is what the caller needs
        fut.cancel()


def struct_error():
    import struct

    return struct.error


def _default_background(channels: int, dtype, sample: np.ndarray | None = None) -> np.ndarray:
    """Fill value outside the image: white for brightfield RGB, 0 for fluorescence.

    An RGB uint8 image whose typical pixel is dark (e.g. a fluorescence PNG) is treated as fluorescence,
    so that padding at tile borders does not look like a bright object.
    """
    if channels == 3 and np.dtype(dtype) == np.uint8:
        if sample is not None and sample.size and float(np.median(sample)) < 80:
            return np.zeros(3, np.uint8)
        return np.array([255, 255, 255], np.uint8)
    return np.zeros(channels, dtype=dtype)


def _strided_sample(arr: np.ndarray, n: int = 256) -> np.ndarray:
    step_y = max(1, arr.shape[0] // n)
    step_x = max(1, arr.shape[1] // n)
    return np.asarray(arr[::step_y, ::step_x])


class _PillowBackend(_Backend):
    name = "pillow"

    def __init__(self, path: Path):
        from PIL import Image, UnidentifiedImageError

        self._path = path
        try:
            with Image.open(str(path)) as im:
                info = dict(im.info)
                im.load()
                if im.mode in ("RGBA", "LA", "P", "PA"):
                    bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                    bg.alpha_composite(im.convert("RGBA"))
                    im = bg.convert("RGB")
                elif im.mode in ("1", "CMYK", "YCbCr", "HSV"):
                    im = im.convert("RGB")
                arr = np.asarray(im)
        except UnidentifiedImageError as exc:
            raise SlideFormatError(f"{path} is not an image Pillow can read: {exc}") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise SlideFormatError(f"{path} is corrupt or truncated: {exc}") from exc
        if arr.dtype == np.int32 and arr.ndim == 2:  # Pillow 'I' mode (16-bit PNG)
            arr = arr.astype(np.uint16) if arr.min() >= 0 and arr.max() < 65536 else arr
        self._arr = arr
        self.properties = {k: str(v) for k, v in info.items() if isinstance(v, (str, int, float, tuple))}
        self.levels = [_Level(arr.shape[1], arr.shape[0], 1.0)]
        self.channels = 1 if arr.ndim == 2 else arr.shape[2]
        self.dtype = arr.dtype
        dpi = info.get("dpi")
        self.mpp_x = self.mpp_y = None
        if dpi and dpi[0]:
            self.mpp_x = _plausible_mpp(25400.0 / float(dpi[0]), f"{path.suffix} dpi")
            self.mpp_y = _plausible_mpp(25400.0 / float(dpi[1]), f"{path.suffix} dpi") if dpi[1] else self.mpp_x
        self.background = _default_background(self.channels, self.dtype, _strided_sample(arr))

    def read(self, level, x, y, w, h):
        return self._arr[y:y + h, x:x + w]


class _ArrayBackend(_Backend):
    name = "array"

    def __init__(self, arr: np.ndarray):
        arr = check_image(arr, "image array")
        self._arr = arr
        self.properties = {}
        self.levels = [_Level(arr.shape[1], arr.shape[0], 1.0)]
        self.channels = 1 if arr.ndim == 2 else arr.shape[2]
        self.dtype = arr.dtype
        self.background = _default_background(self.channels, self.dtype, _strided_sample(arr))

    def read(self, level, x, y, w, h):
        return self._arr[y:y + h, x:x + w]


class Slide:
    """A whole-slide image or plain image, read region by region.

    Create with :func:`open_slide`.  Brightfield slides read as RGB ``uint8``; multichannel or
    fluorescence images (TIFF or arrays) keep their native channels and dtype.
    """

    def __init__(self, backend: _Backend, *, path: Path | None, mpp: float | None = None,
                 slide_id: str | None = None):
        self._b = backend
        self.path = path
        if mpp is not None:
            mpp = float(check_mpp(mpp))
            self._mpp_x = self._mpp_y = mpp
            self.mpp_source = "user"
        else:
            self._mpp_x, self._mpp_y = backend.mpp_x, backend.mpp_y
            if self._mpp_y is None:
                self._mpp_y = self._mpp_x
            self.mpp_source = "metadata" if self._mpp_x is not None else None
        self.slide_id = slide_id or (path.stem if path is not None else "image")
        if self._mpp_x is not None and self._mpp_y is not None and \
                abs(self._mpp_x - self._mpp_y) > 0.01 * self._mpp_x:
            warnings.warn(f"{self.slide_id}: non-square pixels ({self._mpp_x:.4g} x {self._mpp_y:.4g} µm/px); "
                          "tissuegraph uses the mean.", stacklevel=3)

    # --- geometry -------------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self._b.name

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) of level 0."""
        lv = self._b.levels[0]
        return lv.width, lv.height

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of level 0, numpy order."""
        w, h = self.dimensions
        return h, w

    @property
    def level_count(self) -> int:
        return len(self._b.levels)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple((lv.width, lv.height) for lv in self._b.levels)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(lv.downsample for lv in self._b.levels)

    @property
    def channels(self) -> int:
        return self._b.channels

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._b.dtype)

    @property
    def is_rgb(self) -> bool:
        """True for 3-channel uint8 images (brightfield: H&E, IHC)."""
        return self.channels == 3 and self.dtype == np.uint8

    @property
    def background(self) -> np.ndarray:
        return self._b.background

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self._b.properties)

    # --- physical units -----------------------------------------------------------------------------
    @property
    def mpp(self) -> float | None:
        """µm per level-0 pixel (mean of x and y), or None when unknown."""
        if self._mpp_x is None:
            return None
        return 0.5 * (self._mpp_x + self._mpp_y)

    @property
    def mpp_x(self) -> float | None:
        return self._mpp_x

    @property
    def mpp_y(self) -> float | None:
        return self._mpp_y

    def require_mpp(self, what: str = "this step") -> float:
        """µm/px, or :class:`~tissuegraph.MissingMppError` explaining how to pass ``mpp=``."""
        if self.mpp is None:
            from .._errors import MissingMppError

            src = f"'{self.path}'" if self.path is not None else "this image"
            raise MissingMppError(
                f"The pixel size (µm/px) of {src} is unknown (no resolution metadata), but {what} needs "
                f"physical units. Pass it when opening: tg.io.open_slide(..., mpp=0.5), or use --mpp on "
                "the command line.")
        return float(self.mpp)

    def level_mpp(self, level: int) -> float | None:
        m = self.mpp
        return None if m is None else m * self.level_downsamples[level]

    def get_best_level_for_downsample(self, downsample: float) -> int:
        """The highest-resolution level whose downsample is <= ``downsample`` (OpenSlide's rule)."""
        check_positive(downsample, "downsample")
        best = 0
        for i, d in enumerate(self.level_downsamples):
            if d <= downsample * (1 + 1e-6):
                best = i if d >= self.level_downsamples[best] else best
        return best

    # --- pixels -------------------------------------------------------------------------------------
    def read_region(self, location: Sequence[int], level: int, size: Sequence[int], *,
                    pad: str = "background") -> np.ndarray:
        """Read ``size`` = (w, h) pixels of ``level`` starting at level-0 ``location`` = (x, y).

        Returns (h, w, C) (or (h, w) for single-channel sources). Outside the slide is filled with
        :attr:`background` (``pad='background'``) or mirrors the image (``pad='reflect'``, what
        segmentation networks expect at the border of a plain image or field of view).
        """
        if pad not in ("background", "reflect"):
            raise InputError(f"pad must be 'background' or 'reflect', got {pad!r}.")
        if not (0 <= int(level) < self.level_count):
            raise InputError(f"level must be in [0, {self.level_count - 1}], got {level}.")
        level = int(level)
        x0, y0 = (int(v) for v in location)
        w, h = (int(v) for v in size)
        if w <= 0 or h <= 0:
            raise InputError(f"size must be positive (width, height), got {tuple(size)}.")
        lv = self._b.levels[level]
        ds = lv.downsample
        # level coordinates of the request
        lx, ly = int(math.floor(x0 / ds)), int(math.floor(y0 / ds))
        sx0, sy0 = max(lx, 0), max(ly, 0)
        sx1, sy1 = min(lx + w, lv.width), min(ly + h, lv.height)
        shape = (h, w) if self.channels == 1 else (h, w, self.channels)
        inside = sx0 == lx and sy0 == ly and sx1 == lx + w and sy1 == ly + h
        if pad == "reflect" and not inside and sx1 > sx0 and sy1 > sy0:
            core = self.read_region((int(round(sx0 * ds)), int(round(sy0 * ds))), level, (sx1 - sx0, sy1 - sy0))
            widths = [(sy0 - ly, ly + h - sy1), (sx0 - lx, lx + w - sx1)] + [(0, 0)] * (core.ndim - 2)
            mode = "reflect" if min(core.shape[:2]) > 1 else "edge"
            return np.pad(core, widths, mode=mode)
        if self._b.name == "openslide":
            return self._b.read_level0(level, x0, y0, w, h)  # OpenSlide pads itself
        if inside:
            return np.ascontiguousarray(self._b.read(level, lx, ly, w, h))
        out = np.empty(shape, dtype=self.dtype)
        out[...] = self.background if self.channels > 1 else self.background[0]
        if sx1 > sx0 and sy1 > sy0:
            out[sy0 - ly:sy1 - ly, sx0 - lx:sx1 - lx] = self._b.read(level, sx0, sy0, sx1 - sx0, sy1 - sy0)
        return out

    def read_level(self, level: int) -> np.ndarray:
        """A whole level (use only for small levels; see :meth:`get_thumbnail`)."""
        w, h = self.level_dimensions[level]
        if w * h > 20_000 * 20_000:
            raise InputError(f"Level {level} is {w}x{h} px; refusing to load it whole. Use tiles or "
                             "get_thumbnail().")
        return self.read_region((0, 0), level, (w, h))

    def get_thumbnail(self, size: Sequence[int] = (1024, 1024)) -> np.ndarray:
        """A downsampled view fitting in ``size`` = (max_w, max_h), read from the best level in chunks."""
        from ._resample import downscale_to

        mw, mh = (int(v) for v in size)
        w0, h0 = self.dimensions
        ds = max(w0 / mw, h0 / mh, 1.0)
        level = self.get_best_level_for_downsample(ds)
        return downscale_to(self, level, (max(1, round(w0 / ds)), max(1, round(h0 / ds))))

    # --- lifecycle ----------------------------------------------------------------------------------
    def close(self) -> None:
        self._b.close()

    def __enter__(self) -> "Slide":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        mpp = f"{self.mpp:.4g} µm/px ({self.mpp_source})" if self.mpp else "µm/px unknown"
        return (f"Slide({self.slide_id!r}, backend={self.backend!r}, {w}x{h}, levels={self.level_count}, "
                f"channels={self.channels}, dtype={self.dtype}, {mpp})")


def _is_tiff(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head[:2] in (b"II", b"MM") and head[2:4] in (b"*\x00", b"\x00*", b"+\x00", b"\x00+")


def _tiff_is_rgb8(path: Path) -> bool:
    """OpenSlide's generic-tiff reader handles 8-bit RGB(A)/grey only; other TIFFs go to tifffile."""
    try:
        import tifffile

        with tifffile.TiffFile(str(path)) as tif:
            page = tif.pages[0]
            return page.bitspersample == 8 and page.samplesperpixel in (3, 4) and page.is_tiled
    except Exception:  # noqa: BLE001 - let the chosen backend report the real problem
        return True


def open_slide(path: str | os.PathLike | np.ndarray, *, mpp: float | None = None,
               backend: str | None = None, slide_id: str | None = None) -> Slide:
    """Open a whole-slide image, a plain image, or an in-memory array as a :class:`Slide`.

    Parameters
    ----------
    path
        A file path (SVS, NDPI, MRXS, SCN, generic tiled TIFF, plain TIFF, PNG, JPEG, ...) or an
        (H, W), (H, W, C) numpy array.
    mpp
        µm per level-0 pixel. Overrides the file's metadata. Needed later for anything in µm when the
        file does not record it.
    backend
        ``'openslide'``, ``'tifffile'``, ``'pillow'`` or ``'array'``; default: the first that can read it
        (OpenSlide for formats it recognises, then tifffile for TIFFs, then Pillow).
    slide_id
        Name used in tables and AnnData; default: the file stem (``'image'`` for arrays).
    """
    if isinstance(path, Slide):
        return path
    if backend is not None and backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if isinstance(path, np.ndarray) or (backend == "array"):
        if not isinstance(path, np.ndarray):
            raise InputError("backend='array' needs a numpy array.")
        return Slide(_ArrayBackend(path), path=None, mpp=mpp, slide_id=slide_id)
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"open_slide needs a path or a numpy array, got {type(path).__name__}.")
    p = Path(path)
    if not p.exists():
        raise SlideNotFoundError(f"No such slide file: '{p}'.")
    if p.is_dir() and p.suffix.lower() != ".mrxs":
        raise SlideFormatError(f"'{p}' is a directory, not a slide file.")
    if p.stat().st_size == 0:
        raise SlideFormatError(f"'{p}' is empty (0 bytes).")

    if backend is None:
        chosen = None
        try:
            import openslide

            vendor = openslide.OpenSlide.detect_format(str(p))
        except Exception:  # noqa: BLE001 - detect_format may raise on odd files
            vendor = None
        if vendor is not None and (vendor != "generic-tiff" or _tiff_is_rgb8(p)):
            chosen = "openslide"
        elif _is_tiff(p):
            chosen = "tifffile"
        else:
            chosen = "pillow"
        backend = chosen
    logger.debug("open_slide(%s): backend %s", p, backend)
    if backend == "openslide":
        try:
            b = _OpenSlideBackend(p)
        except SlideFormatError:
            if _is_tiff(p):  # e.g. a TIFF OpenSlide detects but cannot open: try tifffile before failing
                b = _TiffBackend(p)
            else:
                raise
    elif backend == "tifffile":
        b = _TiffBackend(p)
    else:
        b = _PillowBackend(p)
    slide = Slide(b, path=p, mpp=mpp, slide_id=slide_id)
    _smoke_read(slide)
    return slide


def _smoke_read(slide: Slide) -> None:
    """Read one small region of the lowest level so that an unreadable file fails at open time."""
    level = slide.level_count - 1
    w, h = slide.level_dimensions[level]
    try:
        slide.read_region((0, 0), level, (min(w, 16), min(h, 16)))
    except SlideError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise SlideFormatError(f"'{slide.path}' opened but its pixels cannot be read: {exc}") from exc
