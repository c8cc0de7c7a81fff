"""Bring your own nuclei (``method='labels'``): label images, QuPath GeoJSON, centroid tables.

* :func:`label_source` wraps an instance-label image made elsewhere (Cellpose, HoVer-Net, QuPath,
  StarDist run by hand, ...) given as a numpy array, a TIFF file (also a pyramidal or tiled label
  TIFF, read lazily region by region through a zarr view, never whole) or a zarr array / path.  The
  tiled runner (``tg.seg.nuclei(method='labels', labels=...)``) reads the label tile matching each
  image tile with :meth:`LabelSource.read_region` (level-0 px).
* :func:`nuclei_from_geojson` reads a QuPath GeoJSON export, :func:`nuclei_from_csv` a table of
  centres, :func:`nuclei_from_labels` a small in-memory label image; each returns the nucleus table of
  ``docs/architecture.md``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._errors import InputError
from .._keys import nuclei as K
from .._validate import check_labels, check_positive

__all__ = [
    "NUCLEUS_TABLE_COLUMNS",
    "LabelSource",
    "label_source",
    "nuclei_from_csv",
    "nuclei_from_geojson",
    "nuclei_from_labels",
]

NUCLEUS_TABLE_COLUMNS = [*K.columns, K.cell_type]  # the runner's columns, with the types users bring


# ----------------------------------------------------------------------------------------------------
# label images
# ----------------------------------------------------------------------------------------------------
class LabelSource:
    """A 2-D instance-label image read region by region (level-0 px).

    Create with :func:`label_source`.  Attributes: ``shape`` (H, W), ``dtype``, ``name`` (where it
    came from).  Regions outside the image are filled with 0 (background).
    """

    def __init__(self, array: Any, *, name: str, checked: bool = False):
        self._array = array
        self.name = name
        self.shape = tuple(int(v) for v in array.shape)
        self.dtype = np.dtype(array.dtype)
        self._checked = checked  # the whole array was validated already

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height), like a slide."""
        return self.shape[1], self.shape[0]

    def read_region(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Labels of the level-0 box ``[x0, x0 + w) x [y0, y0 + h)`` as an (h, w) int64 array."""
        for v, n in ((x0, "x0"), (y0, "y0"), (w, "w"), (h, "h")):
            if isinstance(v, bool) or int(v) != v:
                raise InputError(f"read_region: {n} must be a whole number of pixels, got {v!r}.")
        x0, y0, w, h = int(x0), int(y0), int(w), int(h)
        if w < 0 or h < 0:
            raise InputError(f"read_region: width and height must be >= 0, got ({w}, {h}).")
        out = np.zeros((h, w), np.int64)
        H, W = self.shape
        ax0, ay0 = max(x0, 0), max(y0, 0)
        ax1, ay1 = min(x0 + w, W), min(y0 + h, H)
        if ax1 > ax0 and ay1 > ay0:
            block = np.asarray(self._array[ay0:ay1, ax0:ax1])
            if not self._checked and block.size and np.issubdtype(block.dtype, np.signedinteger) \
                    and block.min() < 0:
                raise InputError(f"The label image {self.name} has negative values in the box "
                                 f"x {ax0}:{ax1}, y {ay0}:{ay1}; 0 is background and objects are 1, 2, ...")
            out[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0] = block
        return out

    def __repr__(self) -> str:
        return f"LabelSource({self.name}, shape={self.shape}, dtype={self.dtype})"


def _check_label_dtype_shape(shape, dtype, name) -> tuple[int, ...]:
    shape = tuple(int(v) for v in shape)
    squeezed = tuple(v for v in shape if v != 1) if len(shape) > 2 else shape
    if len(squeezed) != 2:
        raise InputError(f"The label image {name} must be 2-D (H, W), got shape {shape}.")
    if not np.issubdtype(np.dtype(dtype), np.integer):
        raise InputError(f"The label image {name} must hold integer labels, got dtype {dtype}.")
    return squeezed


class _Squeezed:
    """Index a (..., H, ..., W, ...) array with singleton axes as (H, W)."""

    def __init__(self, arr, shape2):
        self._arr = arr
        self.shape = shape2
        self.dtype = arr.dtype
        self._axes = [i for i, v in enumerate(arr.shape) if v != 1]

    def __getitem__(self, key):
        full = [0] * len(self._arr.shape)
        for ax, k in zip(self._axes, key):
            full[ax] = k
        return np.asarray(self._arr[tuple(full)])


def _open_zarr(path_or_store, name):
    import zarr

    try:
        z = zarr.open(path_or_store, mode="r")
    except Exception as exc:
        raise InputError(f"Cannot open {name} as zarr: {exc}") from exc
    if isinstance(z, zarr.Group):  # a pyramid / multiscale group: take the full-resolution level
        keys = sorted(z.array_keys())
        if not keys:
            raise InputError(f"The zarr group {name} holds no arrays.")
        key = "0" if "0" in keys else keys[0]
        z = z[key]
    return z


def label_source(obj: Any, *, level: int = 0) -> LabelSource:
    """Wrap an instance-label image for region reads.

    Parameters
    ----------
    obj
        A 2-D integer numpy array (0 = background), a path to a TIFF (``.tif``/``.tiff``; pyramidal
        and tiled files are read lazily by region through tifffile's zarr store), a path to a zarr
        array or group (level ``'0'`` of a multiscale group), a zarr array, or a :class:`LabelSource`.
    level
        Pyramid level of a TIFF (0 = full resolution, which is what the runner needs).

    Returns
    -------
    :class:`LabelSource`
    """
    if isinstance(obj, LabelSource):
        return obj
    if isinstance(obj, np.ndarray):
        arr = check_labels(obj, "labels")
        return LabelSource(arr, name=f"array{arr.shape}", checked=True)
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj).expanduser()
        if not path.exists():
            raise InputError(f"Label image {str(path)!r} does not exist.")
        suffix = path.suffix.lower()
        if suffix in (".tif", ".tiff") or path.name.lower().endswith((".ome.tif", ".ome.tiff")):
            import tifffile

            try:
                with tifffile.TiffFile(path) as tf:
                    series = tf.series[0]
                    n_levels = len(series.levels)
                    if not 0 <= level < n_levels:
                        raise InputError(f"{str(path)!r} has {n_levels} pyramid level(s); level={level} "
                                         "does not exist.")
                    lv = series.levels[level]
                    shape, dtype = lv.shape, lv.dtype
                store = tifffile.imread(path, aszarr=True, series=0, level=level)
            except InputError:
                raise
            except Exception as exc:
                raise InputError(f"Cannot read {str(path)!r} as a TIFF label image: {exc}") from exc
            shape2 = _check_label_dtype_shape(shape, dtype, repr(str(path)))
            z = _open_zarr(store, repr(str(path)))
            arr = z if len(z.shape) == 2 else _Squeezed(z, shape2)
            return LabelSource(arr, name=repr(str(path)))
        if suffix == ".zarr" or path.is_dir():
            z = _open_zarr(str(path), repr(str(path)))
            shape2 = _check_label_dtype_shape(z.shape, z.dtype, repr(str(path)))
            arr = z if len(z.shape) == 2 else _Squeezed(z, shape2)
            return LabelSource(arr, name=repr(str(path)))
        raise InputError(f"Unsupported label file {str(path)!r}: expected a .tif/.tiff or .zarr label image "
                         "(for QuPath GeoJSON or CSV tables use nuclei_from_geojson / nuclei_from_csv).")
    if hasattr(obj, "shape") and hasattr(obj, "dtype") and hasattr(obj, "__getitem__"):  # zarr/dask array
        shape2 = _check_label_dtype_shape(obj.shape, obj.dtype, type(obj).__name__)
        arr = obj if len(obj.shape) == 2 else _Squeezed(obj, shape2)
        return LabelSource(arr, name=f"{type(obj).__name__}{tuple(obj.shape)}")
    raise InputError(f"labels must be a numpy array, a TIFF/zarr path or a zarr array, got {type(obj).__name__}.")


# ----------------------------------------------------------------------------------------------------
# nucleus tables
# ----------------------------------------------------------------------------------------------------
def _table(rows: dict, *, slide_id: str, mpp: float | None, method: str, source: str) -> pd.DataFrame:
    n = len(rows["x"])
    df = pd.DataFrame({
        K.id: np.arange(1, n + 1, dtype=np.int64),
        K.x: np.asarray(rows["x"], np.float64),
        K.y: np.asarray(rows["y"], np.float64),
    })
    for name, key in zip(K.bbox, ("bx0", "by0", "bx1", "by1")):
        df[name] = np.asarray(rows.get(key, np.full(n, np.nan)), np.float64)
    df[K.area_px] = np.asarray(rows.get("area", np.full(n, np.nan)), np.float64)
    df[K.area_um2] = df[K.area_px] * mpp * mpp if mpp is not None else np.nan
    df[K.contour] = pd.Series(rows.get("contour", [None] * n), dtype=object)
    df[K.tile] = np.zeros(n, np.int64)
    df[K.score] = np.asarray(rows.get("score", np.full(n, np.nan)), np.float64)
    df[K.slide] = str(slide_id)
    ct = rows.get("cell_type")
    if ct is not None:
        df[K.cell_type] = pd.Categorical([None if v is None else str(v) for v in ct])
    df.attrs.update(mpp=mpp, seg_mpp=mpp, slide_mpp=mpp, method=method, params={"source": source})
    return df


def _polygon_stats(poly: np.ndarray):
    """Centroid, bbox and area of a closed polygon (x, y) (shoelace; area-weighted centroid)."""
    x, y = poly[:, 0].astype(np.float64), poly[:, 1].astype(np.float64)
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    a = cross.sum() / 2.0
    if abs(a) < 1e-12:
        cx, cy = x.mean(), y.mean()
    else:
        cx = ((x + x1) * cross).sum() / (6 * a)
        cy = ((y + y1) * cross).sum() / (6 * a)
    return cx, cy, (x.min(), y.min(), x.max(), y.max()), abs(a)


def _ring(coords, where: str) -> np.ndarray:
    try:
        ring = np.asarray(coords, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: polygon coordinates are not numbers ({exc}).") from exc
    if ring.ndim != 2 or ring.shape[1] < 2 or ring.shape[0] < 3:
        raise InputError(f"{where}: a polygon ring needs at least 3 (x, y) points, got shape {ring.shape}.")
    ring = ring[:, :2]
    if not np.isfinite(ring).all():
        raise InputError(f"{where}: polygon has NaN or infinite coordinates.")
    if len(ring) > 3 and np.array_equal(ring[0], ring[-1]):
        ring = ring[:-1]  # GeoJSON repeats the first point at the end
    return ring


def _outer_ring(geom: Mapping, where: str) -> np.ndarray:
    if not isinstance(geom, Mapping) or "type" not in geom:
        raise InputError(f"{where}: geometry is missing or has no 'type'.")
    gtype = geom["type"]
    coords = geom.get("coordinates")
    if coords is None:
        raise InputError(f"{where}: geometry has no 'coordinates'.")
    if gtype == "Polygon":
        if not coords:
            raise InputError(f"{where}: empty Polygon.")
        return _ring(coords[0], where)  # holes (coords[1:]) are ignored: nuclei are filled
    if gtype == "MultiPolygon":
        rings = [_ring(p[0], where) for p in coords if p]
        if not rings:
            raise InputError(f"{where}: empty MultiPolygon.")
        return max(rings, key=lambda r: _polygon_stats(r)[3])  # keep the largest part
    raise InputError(f"{where}: geometry type {gtype!r} is not supported (Polygon or MultiPolygon).")


def nuclei_from_geojson(path_or_dict: Any, *, slide_id: str | None = None, mpp: float | None = None,
                        use_nucleus: bool = True) -> pd.DataFrame:
    """Nucleus table from a QuPath GeoJSON export (detections or cells).

    Parameters
    ----------
    path_or_dict
        A ``.geojson``/``.json`` path, or the parsed object: a ``FeatureCollection``, a list of
        ``Feature``s, or one ``Feature``. Coordinates are level-0 px (x, y), as QuPath exports them.
    slide_id
        Value of the ``slide`` column (default: the file stem, or ``'slide'``).
    mpp
        µm/px of level 0, for ``area_um2`` (NaN when ``None``).
    use_nucleus
        For ``objectType == 'cell'`` features, use the ``nucleusGeometry`` (default) rather than the
        cell outline.

    Returns
    -------
    Nucleus table (``docs/architecture.md``): one row per Polygon/MultiPolygon feature, ``nucleus_id``
    1..N in file order, centroid/bbox/area from the polygon (shoelace), ``contour`` = the outer ring
    as (n, 2) float32, ``cell_type`` from ``properties.classification.name`` (missing: NaN).
    """
    if mpp is not None:
        mpp = float(check_positive(mpp, "mpp (µm/px)"))
    if isinstance(path_or_dict, (str, os.PathLike)):
        path = Path(path_or_dict).expanduser()
        where = repr(str(path))
        if not path.is_file():
            raise InputError(f"GeoJSON file {where} does not exist.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{where} is not valid JSON: {exc}") from exc
        slide_id = slide_id if slide_id is not None else path.name.split(".")[0]
    else:
        data, where = path_or_dict, "GeoJSON object"
    slide_id = slide_id if slide_id is not None else "slide"
    if isinstance(data, Mapping) and data.get("type") == "FeatureCollection":
        feats = data.get("features")
        if not isinstance(feats, list):
            raise InputError(f"{where}: FeatureCollection has no 'features' list.")
    elif isinstance(data, Mapping) and data.get("type") == "Feature":
        feats = [data]
    elif isinstance(data, list):
        feats = data
    else:
        raise InputError(f"{where}: expected a GeoJSON FeatureCollection, a Feature or a list of Features.")
    rows: dict[str, list] = {k: [] for k in ("x", "y", "bx0", "by0", "bx1", "by1", "area", "contour",
                                             "cell_type")}
    for i, f in enumerate(feats):
        fw = f"{where}, feature {i}"
        if not isinstance(f, Mapping) or f.get("type") not in ("Feature", None):
            raise InputError(f"{fw}: not a GeoJSON Feature.")
        props = f.get("properties") or {}
        geom = f.get("geometry")
        if use_nucleus and props.get("objectType") == "cell" and f.get("nucleusGeometry") is not None:
            geom = f["nucleusGeometry"]
        elif use_nucleus and props.get("objectType") == "cell" and props.get("nucleusGeometry") is not None:
            geom = props["nucleusGeometry"]
        if geom is None:
            raise InputError(f"{fw}: no geometry.")
        if isinstance(geom, Mapping) and geom.get("type") == "Point":
            raise InputError(f"{fw}: Point geometries carry no outline; use nuclei_from_csv for centres.")
        ring = _outer_ring(geom, fw)
        cx, cy, (bx0, by0, bx1, by1), area = _polygon_stats(ring)
        rows["x"].append(cx)
        rows["y"].append(cy)
        rows["bx0"].append(np.floor(bx0))
        rows["by0"].append(np.floor(by0))
        rows["bx1"].append(np.ceil(bx1))
        rows["by1"].append(np.ceil(by1))
        rows["area"].append(area)
        rows["contour"].append(ring.astype(np.float32))
        cls = props.get("classification")
        name = cls.get("name") if isinstance(cls, Mapping) else (cls if isinstance(cls, str) else None)
        rows["cell_type"].append(name)
    if all(v is None for v in rows["cell_type"]):
        rows.pop("cell_type")
    return _table(rows, slide_id=slide_id, mpp=mpp, method="labels", source=where)


def nuclei_from_csv(path: Any, *, x: str = "x", y: str = "y", type: str | None = None,
                    score: str | None = None, slide_id: str | None = None, mpp: float | None = None,
                    sep: str | None = None) -> pd.DataFrame:
    """Nucleus table from a table of centres (CSV/TSV path or DataFrame); centroids only.

    Parameters
    ----------
    path
        CSV/TSV file (separator sniffed unless ``sep`` is given) or a DataFrame.
    x, y
        Column names of the level-0 px centre coordinates (x = column, y = row).
    type
        Optional column with the cell type (→ ``cell_type``).
    score
        Optional column with a detection score (→ ``score``).
    slide_id
        Value of the ``slide`` column (default: the file stem).
    mpp
        µm/px, recorded in ``attrs`` (areas are unknown: ``area_px``/``area_um2`` are NaN).

    Returns
    -------
    Nucleus table with ``contour = None`` and NaN bbox/areas.
    """
    if mpp is not None:
        mpp = float(check_positive(mpp, "mpp (µm/px)"))
    if isinstance(path, pd.DataFrame):
        df, where = path, "DataFrame"
        slide_id = slide_id if slide_id is not None else "slide"
    else:
        p = Path(path).expanduser()
        where = repr(str(p))
        if not p.is_file():
            raise InputError(f"CSV file {where} does not exist.")
        try:
            df = pd.read_csv(p, sep=sep if sep is not None else None, engine="python")
        except Exception as exc:
            raise InputError(f"Cannot read {where} as a CSV table: {exc}") from exc
        slide_id = slide_id if slide_id is not None else p.name.split(".")[0]
    wanted = [c for c in (x, y, type, score) if c is not None]
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise InputError(f"{where} lacks column(s) {missing}; it has {list(df.columns)}. "
                         "Name the coordinate columns with x=, y=.")
    rows: dict[str, Any] = {}
    for key, col in (("x", x), ("y", y)):
        try:
            v = pd.to_numeric(df[col], errors="raise").to_numpy(np.float64)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{where}: column {col!r} is not numeric ({exc}).") from exc
        bad = ~np.isfinite(v)
        if bad.any():
            raise InputError(f"{where}: column {col!r} has {int(bad.sum())} missing or infinite value(s) "
                             f"(first at row {int(np.flatnonzero(bad)[0])}).")
        rows[key] = v
    if score is not None:
        rows["score"] = pd.to_numeric(df[score], errors="coerce").to_numpy(np.float64)
    if type is not None:
        rows["cell_type"] = [None if pd.isna(v) else v for v in df[type]]
    return _table(rows, slide_id=slide_id, mpp=mpp, method="labels", source=where)


def nuclei_from_labels(labels: Any, *, slide_id: str = "slide", mpp: float | None = None,
                       offset: Sequence[float] = (0.0, 0.0), scale: float = 1.0,
                       scores: Any = None) -> pd.DataFrame:
    """Nucleus table from a small in-memory instance-label image.

    Parameters
    ----------
    labels
        2-D integer label image (0 = background); labels need not be sequential. For whole slides use
        ``tg.seg.nuclei(method='labels', labels=...)``, which reads tile by tile.
    slide_id
        Value of the ``slide`` column.
    mpp
        µm per *level-0* pixel (``area_um2`` = ``area_px * (mpp * scale)**2``).
    offset, scale
        Level-0 position of pixel (0, 0) and level-0 px per label px (see ``tissuegraph._contours``):
        label pixel ``u`` has its centre at level-0 ``offset + scale * u``.
    scores
        Optional per-object scores, indexed by label (``scores[label - 1]``).

    Returns
    -------
    Nucleus table, one row per label in ascending label order, ``nucleus_id`` 1..N; exact pixel-corner
    contours (``tissuegraph._contours.label_contours``), ``attrs['params']['labels']`` maps rows back
    to the original labels.
    """
    from .._contours import _check_offset_scale, label_centroids, label_contours

    lab = check_labels(labels, "labels")
    off, scale = _check_offset_scale(offset, scale)
    if mpp is not None:
        mpp = float(check_positive(mpp, "mpp (µm/px)"))
    ids, cnt, cx, cy = label_centroids(lab)
    rows: dict[str, Any] = dict(x=off[0] + scale * cx, y=off[1] + scale * cy, area=cnt.astype(np.float64))
    from scipy import ndimage as ndi

    if ids.size:
        # find_objects allocates one slot per id value: make huge sparse ids dense first
        dense = lab if ids[-1] <= 4 * lab.size + 1024 else \
            np.where(lab > 0, np.searchsorted(ids, lab) + 1, 0)
        pos = ids if dense is lab else np.arange(1, ids.size + 1)
        sl = ndi.find_objects(dense)
        b = np.array([[sl[i - 1][1].start, sl[i - 1][0].start, sl[i - 1][1].stop, sl[i - 1][0].stop] for i in pos],
                     dtype=np.float64)
    else:
        b = np.zeros((0, 4))
    # half-open level-0 bbox of the pixels' extents
    rows["bx0"] = off[0] + scale * b[:, 0] - 0.5 * scale + 0.5
    rows["by0"] = off[1] + scale * b[:, 1] - 0.5 * scale + 0.5
    rows["bx1"] = off[0] + scale * b[:, 2] - 0.5 * scale + 0.5
    rows["by1"] = off[1] + scale * b[:, 3] - 0.5 * scale + 0.5
    cont = label_contours(lab, ids=ids, offset=tuple(off), scale=scale) if ids.size else {}
    rows["contour"] = [cont[int(i)] for i in ids]
    if scores is not None:
        sc = np.asarray(scores, dtype=np.float64)
        if sc.ndim != 1 or (ids.size and sc.shape[0] < ids.max()):
            raise InputError(f"scores must be a 1-D array indexed by label - 1 with at least {int(ids.max())} "
                             f"entries, got shape {sc.shape}.")
        rows["score"] = sc[ids - 1] if ids.size else np.zeros(0)
    df = _table(rows, slide_id=slide_id, mpp=None if mpp is None else mpp * scale, method="labels",
                source="label image")
    df.attrs.update(mpp=mpp, slide_mpp=mpp, seg_mpp=None if mpp is None else mpp * scale)
    df.attrs["params"]["labels"] = [int(i) for i in ids]
    return df
