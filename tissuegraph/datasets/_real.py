"""Loaders of the small real data sets kept beside the project (``../shared/data``) or anywhere else.

Nothing is downloaded: each loader reads a local folder laid out as described in that folder's
``README.md``/``SOURCE.txt`` and raises :class:`~tissuegraph.InputError` naming the folder when it is
missing.  Images are read lazily: the loaders return a :class:`LazyRecords` sequence whose items are
read from disk on access, so iterating over the 664 DSB images never holds more than one in memory.

Data sets
    * DSB 2018 stage-1 training set (BBBC038): ``dsb2018/train/<id>.png`` + ``<id>_labels.tif``,
      ``index.csv`` with the modality (``fluorescence`` / ``brightfield``). No µm/px.
    * CRCHistoPhenotypes: ``crchisto/{train,validation}/imgN.png`` + ``imgN.csv`` with 0-based
      (x = column, y = row) nucleus centres and a type; 20x, about 0.55 µm/px.
    * Kather et al. 2016 texture tiles: ``kather2016_samples/<NN_CLASS>/*.tif`` (class = folder).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .._errors import InputError

__all__ = [
    "CRCHISTO_MPP",
    "CRCHistoImage",
    "DSBImage",
    "KatherTile",
    "LazyRecords",
    "dsb2018_index",
    "load_crchisto",
    "load_dsb2018",
    "load_kather2016_samples",
    "shared_data_dir",
]

CRCHISTO_MPP = 0.55
"""Approximate µm/px of the CRCHistoPhenotypes images (20x objective)."""

_ENV = "TISSUEGRAPH_SHARED_DATA"


def shared_data_dir() -> Path | None:
    """The folder that holds the real data sets, or ``None`` when there is none.

    Looks at the environment variable ``TISSUEGRAPH_SHARED_DATA`` first, then at ``../shared/data``
    next to the repository that contains the package.  A set environment variable that does not name
    an existing folder gives ``None`` (nothing is guessed past it).
    """
    env = os.environ.get(_ENV)
    if env:
        p = Path(env).expanduser()
        return p if p.is_dir() else None
    repo = Path(__file__).resolve().parents[2]
    p = (repo / ".." / "shared" / "data").resolve()
    return p if p.is_dir() else None


def _root(root: str | os.PathLike | None, sub: str, what: str) -> Path:
    if root is None:
        base = shared_data_dir()
        if base is None:
            raise InputError(
                f"No data folder for {what}: pass root=, or set the environment variable {_ENV} to the "
                "folder that holds it (nothing is downloaded)."
            )
        root = base / sub
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"The {what} folder {str(root)!r} does not exist; pass root= pointing to it.")
    return root


class LazyRecords(Sequence):
    """A read-only sequence whose items are loaded from disk when accessed."""

    def __init__(self, keys: Sequence[Any], loader: Callable[[Any], Any], *, name: str = "records"):
        self._keys = list(keys)
        self._loader = loader
        self.name = name

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return LazyRecords(self._keys[i], self._loader, name=self.name)
        return self._loader(self._keys[i])

    @property
    def keys(self) -> list:
        """What each item is loaded from (ids or paths)."""
        return list(self._keys)

    def __repr__(self) -> str:
        return f"LazyRecords({self.name!r}, n={len(self)})"


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:
        raise InputError(f"Cannot read image {str(path)!r}: {exc}") from exc


# ----------------------------------------------------------------------------------------------------
# DSB 2018
# ----------------------------------------------------------------------------------------------------
class DSBImage(NamedTuple):
    """One DSB 2018 image: ``image`` (H, W, 3) uint8 RGB as stored (fluorescence images are grey in
    three equal channels), ``labels`` (H, W) int32 instance labels, ``modality``."""

    id: str
    image: np.ndarray
    labels: np.ndarray
    modality: str


def dsb2018_index(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """The DSB 2018 ``index.csv`` (columns ``id``, ``modality``, ``n_nuclei``) in file order."""
    root = _root(root, "dsb2018/train", "DSB 2018")
    path = root / "index.csv"
    if not path.is_file():
        raise InputError(f"{str(path)!r} is missing; the DSB 2018 folder needs its index.csv.")
    idx = pd.read_csv(path, dtype={"id": str})
    missing = {"id", "modality"} - set(idx.columns)
    if missing:
        raise InputError(f"{str(path)!r} lacks column(s) {sorted(missing)}.")
    return idx


def load_dsb2018(root: str | os.PathLike | None = None, *, modality: str | None = None,
                 ids: Sequence[str] | None = None, limit: int | None = None) -> LazyRecords:
    """The DSB 2018 stage-1 training images with their instance labels.

    Parameters
    ----------
    root
        The ``dsb2018/train`` folder; default: under :func:`shared_data_dir`.
    modality
        ``'fluorescence'``, ``'brightfield'`` or ``None`` (all).
    ids
        Only these image ids, in this order.
    limit
        At most this many images (the first ones in ``index.csv`` order, after the filters).

    Returns
    -------
    :class:`LazyRecords` of :class:`DSBImage` ``(id, image, labels, modality)``, loaded on access.
    """
    import tifffile

    root_p = _root(root, "dsb2018/train", "DSB 2018")
    idx = dsb2018_index(root_p)
    if modality is not None:
        known = sorted(idx["modality"].unique())
        if modality not in known:
            raise InputError(f"modality must be one of {known} or None, got {modality!r}.")
        idx = idx[idx["modality"] == modality]
    mod = dict(zip(idx["id"], idx["modality"]))
    if ids is not None:
        ids = [str(i) for i in ids]
        unknown = [i for i in ids if i not in mod]
        if unknown:
            raise InputError(f"Unknown DSB 2018 id(s) (or of another modality): {unknown[:5]}")
        keys = ids
    else:
        keys = list(idx["id"])
    if limit is not None:
        if limit < 0:
            raise InputError(f"limit must be >= 0, got {limit}.")
        keys = keys[:limit]

    def load(i: str) -> DSBImage:
        lab_path = root_p / f"{i}_labels.tif"
        try:
            labels = tifffile.imread(lab_path)
        except Exception as exc:
            raise InputError(f"Cannot read labels {str(lab_path)!r}: {exc}") from exc
        return DSBImage(i, _read_rgb(root_p / f"{i}.png"), labels.astype(np.int32), mod[i])

    return LazyRecords(keys, load, name="dsb2018")


# ----------------------------------------------------------------------------------------------------
# CRCHistoPhenotypes
# ----------------------------------------------------------------------------------------------------
class CRCHistoImage(NamedTuple):
    """One CRCHisto image: (H, W, 3) uint8 RGB, nucleus ``centres`` (DataFrame x, y, type; 0-based
    pixel coordinates, x = column) and the approximate ``mpp``."""

    id: str
    image: np.ndarray
    centres: pd.DataFrame
    mpp: float


def _natural_key(p: Path):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.stem)]


def load_crchisto(root: str | os.PathLike | None = None, *, split: str = "train") -> LazyRecords:
    """CRCHistoPhenotypes H&E images with nucleus centres and types.

    Parameters
    ----------
    root
        The ``crchisto`` folder (holding ``train/`` and ``validation/``); default: under
        :func:`shared_data_dir`.
    split
        ``'train'`` or ``'validation'``.

    Returns
    -------
    :class:`LazyRecords` of :class:`CRCHistoImage` ``(id, image, centres, mpp)`` in natural order
    (img1, img2, ..., img10, ...).
    """
    if split not in ("train", "validation"):
        raise InputError(f"split must be 'train' or 'validation', got {split!r}.")
    root_p = _root(root, "crchisto", "CRCHistoPhenotypes")
    folder = root_p / split
    if not folder.is_dir():
        raise InputError(f"The CRCHistoPhenotypes split folder {str(folder)!r} does not exist.")
    pngs = sorted(folder.glob("*.png"), key=_natural_key)
    if not pngs:
        raise InputError(f"No .png images in {str(folder)!r}.")

    def load(png: Path) -> CRCHistoImage:
        csv = png.with_suffix(".csv")
        if not csv.is_file():
            raise InputError(f"{str(csv)!r} is missing (the nucleus centres of {png.name}).")
        df = pd.read_csv(csv)
        missing = {"x", "y"} - set(df.columns)
        if missing:
            raise InputError(f"{str(csv)!r} lacks column(s) {sorted(missing)}.")
        if "type" not in df.columns:
            df["type"] = "unlabelled"
        df = df[["x", "y", "type"]].astype({"x": float, "y": float, "type": str})
        return CRCHistoImage(png.stem, _read_rgb(png), df, CRCHISTO_MPP)

    return LazyRecords(pngs, load, name=f"crchisto/{split}")


# ----------------------------------------------------------------------------------------------------
# Kather 2016
# ----------------------------------------------------------------------------------------------------
class KatherTile(NamedTuple):
    """One Kather 2016 tile: id (file name), (150, 150, 3) uint8 RGB image, tissue class."""

    id: str
    image: np.ndarray
    label: str


def load_kather2016_samples(root: str | os.PathLike | None = None, *,
                            classes: Sequence[str] | None = None) -> LazyRecords:
    """The Kather et al. 2016 colorectal texture tiles (H&E, 150x150 px, 0.495 µm/px).

    Parameters
    ----------
    root
        The ``kather2016_samples`` folder (one sub-folder per class, e.g. ``01_TUMOR``); default:
        under :func:`shared_data_dir`.
    classes
        Only these classes, given by folder name (``'01_TUMOR'``) or class name (``'TUMOR'``).

    Returns
    -------
    :class:`LazyRecords` of :class:`KatherTile` ``(id, image, label)``; ``label`` is the class name
    without its number (``'TUMOR'``).
    """
    root_p = _root(root, "kather2016_samples", "Kather 2016")
    folders = sorted(p for p in root_p.iterdir() if p.is_dir())
    if not folders:
        raise InputError(f"No class folders in {str(root_p)!r}.")

    def cname(p: Path) -> str:
        parts = p.name.split("_", 1)
        return parts[1] if len(parts) == 2 and parts[0].isdigit() else p.name

    if classes is not None:
        wanted = set(classes)
        known = {p.name for p in folders} | {cname(p) for p in folders}
        unknown = wanted - known
        if unknown:
            raise InputError(f"Unknown Kather 2016 class(es) {sorted(unknown)}; known: "
                             f"{sorted(cname(p) for p in folders)}.")
        folders = [p for p in folders if p.name in wanted or cname(p) in wanted]
    files = [(f, cname(p)) for p in folders
             for f in sorted(p.iterdir()) if f.suffix.lower() in (".tif", ".tiff", ".png", ".jpg")]

    def load(key) -> KatherTile:
        f, lab = key
        return KatherTile(f.name, _read_rgb(f), lab)

    return LazyRecords(files, load, name="kather2016_samples")
