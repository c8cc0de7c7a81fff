"""Plates from local paths: image sets (plate, well, site, one file per channel) and pre-computed profiles.

Nothing is downloaded.  Every loader returns either

* a :class:`PlateImages` (one row per site in ``sites``: ``plate``, ``well``, ``site``, ``batch``, the
  metadata, and one ``path_<channel>`` column per channel; images are read on access), or
* a wells AnnData (one row per well, metadata in ``obs``, the profile in ``obsm['X_profile']`` with its
  column names in ``uns['X_profile_names']`` and its provenance in ``uns['representations']``).

Layouts
    * BBBC021 (Caie et al. 2010; Ljosa et al. 2013): ``BBBC021_v1_image.csv`` (one row per site, columns
      ``Image_FileName_<ch>`` / ``Image_PathName_<ch>`` for DAPI, Tubulin, Actin, plate/well/compound/
      concentration/replicate) + ``BBBC021_v1_moa.csv`` (compound, concentration, moa); TIFFs under the
      root at ``<PathName>/<FileName>``.
    * RxRx1 / RxRx3 (Recursion): ``metadata.csv`` (``experiment``, ``plate``, ``well`` or ``address``,
      ``site``, perturbation columns) and one PNG per channel at
      ``images/<experiment>/Plate<plate>/<well>_s<site>_w<channel>.png`` (``path_template`` to change it).
    * JUMP cpg0016 ``load_data`` CSVs: ``Metadata_{Source,Batch,Plate,Well,Site}`` and
      ``FileName_Orig<ch>`` / ``PathName_Orig<ch>`` (s3 prefixes can be mapped to local folders).
    * Any CSV with one row per site, plate/well(/site) columns and one path column per channel.
    * CellProfiler per-well profiles (``Image_Metadata_Plate``/``Image_Metadata_Well`` or ``Metadata_*``
      plus ``Cells_*``/``Cytoplasm_*``/``Nuclei_*`` feature columns), optionally joined with a metadata table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import _keys as K
from .._errors import InputError, SlideFormatError, SlideNotFoundError
from .._logging import logger

__all__ = [
    "PlateImages",
    "read_bbbc021",
    "read_bbbc021_profiles",
    "read_image_table",
    "read_jump_load_data",
    "read_profiles",
    "read_rxrx",
    "profile_record",
]

C = K.culture
FEATURE_PREFIXES = ("Cells_", "Cytoplasm_", "Nuclei_")
_WELL_RE = re.compile(r"^([A-Za-z]{1,2})0*(\d{1,3})$")


def split_well(well: Any) -> tuple[str, int]:
    """'B02' -> ('B', 2); 'AA7' -> ('AA', 7).  Raises InputError for anything else."""
    m = _WELL_RE.match(str(well).strip())
    if not m:
        raise InputError(f"well {well!r} is not a plate well name like 'B02' (row letters, column number).")
    return m.group(1).upper(), int(m.group(2))


def normalise_well(well: Any) -> str:
    r, c = split_well(well)
    return f"{r}{c:02d}"


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}. Check the path (the loaders read local files only).")
    try:
        return pd.read_csv(path, low_memory=False)
    except Exception as exc:  # pandas' errors are various
        raise InputError(f"{what} {path} is not a readable CSV: {exc}") from exc


def _require(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"{what} lacks the column(s) {missing}; it has {list(df.columns)[:12]}"
                         f"{'...' if df.shape[1] > 12 else ''}.")


def _find(root: Path, names: Sequence[str], what: str) -> Path:
    for n in names:
        for cand in (root / n, root / (n + ".gz")):
            if cand.is_file():
                return cand
    raise InputError(f"{what} not found in {root} (looked for {', '.join(names)}[.gz]).")


# ---------------------------------------------------------------------------------------------- images

@dataclass
class PlateImages:
    """Sites of one or more plates: a table with one row per site and one file per channel.

    ``sites`` has the columns ``plate``, ``well``, ``site``, ``batch``, ``row``, ``column``, the layout's
    metadata, and ``path_<channel>`` for each name in ``channels`` (absolute paths).
    """

    sites: pd.DataFrame
    channels: list[str]
    layout: str = "table"
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sites)

    def __repr__(self) -> str:
        s = self.sites
        return (f"PlateImages({self.layout}: {len(s)} sites, {s[C.well].nunique() if len(s) else 0} wells in "
                f"{s[C.plate].nunique() if len(s) else 0} plates, channels {self.channels})")

    def paths(self, i: int) -> list[Path]:
        row = self.sites.iloc[i]
        return [Path(row[f"path_{ch}"]) for ch in self.channels]

    def missing_files(self) -> pd.DataFrame:
        """Rows of ``sites`` with at least one channel file that does not exist."""
        cols = [f"path_{ch}" for ch in self.channels]
        bad = np.zeros(len(self.sites), dtype=bool)
        for c in cols:
            bad |= ~self.sites[c].map(lambda p: Path(p).is_file()).to_numpy(dtype=bool)
        return self.sites.loc[bad]

    def read(self, i: int, *, dtype: Any = np.float32) -> np.ndarray:
        """The site's image as (H, W, C) in ``channels`` order (each channel read with tifffile/Pillow)."""
        planes = []
        for p, ch in zip(self.paths(i), self.channels):
            planes.append(_read_plane(p, ch))
        shapes = {pl.shape for pl in planes}
        if len(shapes) != 1:
            raise SlideFormatError(f"site {i}: the channel images have different shapes {sorted(shapes)}.")
        return np.stack(planes, axis=-1).astype(dtype, copy=False)

    def wells(self) -> pd.DataFrame:
        """One row per (plate, well) with the metadata shared by its sites and ``n_sites``."""
        keep = [c for c in self.sites.columns if not c.startswith("path_") and c != C.site]
        g = self.sites.groupby([C.plate, C.well], sort=False, observed=True)
        first = g[keep].first().reset_index(drop=True)
        first["n_sites"] = g.size().to_numpy()
        return first

    def to_samples(self):
        """A wells AnnData (one row per well, metadata in ``obs``; no representation yet)."""
        import anndata as ad

        w = self.wells()
        w.index = (w[C.plate].astype(str) + "/" + w[C.well].astype(str)).to_numpy()
        obs = w.copy()
        obs.index = obs.index.astype(str)
        a = ad.AnnData(obs=obs)
        a.uns["culture"] = {"layout": self.layout, "channels": list(self.channels)}
        return a


def _read_plane(path: Path, channel: str) -> np.ndarray:
    if not path.is_file():
        raise SlideNotFoundError(f"channel {channel!r} image not found: {path}")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            img = tifffile.imread(str(path))
        else:
            from PIL import Image

            with Image.open(path) as im:
                img = np.asarray(im)
    except Exception as exc:
        raise SlideFormatError(f"channel {channel!r} image {path} cannot be read: {exc}") from exc
    img = np.squeeze(img)
    if img.ndim == 3 and img.shape[-1] in (3, 4):  # an RGB(A) file of one channel: its luminance
        img = img[..., :3].mean(axis=-1)
    if img.ndim != 2:
        raise SlideFormatError(f"channel {channel!r} image {path} has shape {img.shape}; expected one 2-D plane.")
    return img


def _finish_sites(df: pd.DataFrame, channels: list[str], layout: str, check_files: bool,
                  meta: dict | None = None) -> PlateImages:
    df = df.copy()
    if df.empty:
        raise InputError(f"the {layout} table has no rows (no sites).")
    df[C.plate] = df[C.plate].astype(str)
    df[C.well] = df[C.well].map(normalise_well)
    rc = df[C.well].map(split_well)
    df[C.row] = rc.map(lambda t: t[0])
    df[C.column] = rc.map(lambda t: t[1]).astype(int)
    if C.site not in df.columns:
        df[C.site] = df.groupby([C.plate, C.well]).cumcount() + 1
    if C.batch not in df.columns:
        df[C.batch] = df[C.plate]
    dup = df.duplicated([C.plate, C.well, C.site])
    if dup.any():
        raise InputError(f"{int(dup.sum())} sites are listed twice (same plate, well, site), e.g. "
                         f"{df.loc[dup, [C.plate, C.well, C.site]].iloc[0].tolist()}; fix the table.")
    for ch in channels:
        col = f"path_{ch}"
        if df[col].isna().any():
            raise InputError(f"{int(df[col].isna().sum())} sites have no file for channel {ch!r}.")
    out = PlateImages(sites=df.reset_index(drop=True), channels=list(channels), layout=layout, meta=meta or {})
    if check_files:
        bad = out.missing_files()
        if len(bad):
            miss = [str(r[f"path_{ch}"]) for _, r in bad.iterrows() for ch in channels
                    if not Path(r[f"path_{ch}"]).is_file()]
            shown = "\n  ".join(miss[:10]) + (f"\n  ... and {len(miss) - 10} more" if len(miss) > 10 else "")
            raise InputError(f"{len(bad)} of {len(df)} sites have missing channel files ({len(miss)} files):\n  "
                             f"{shown}\nCheck the root folder, or pass check_files=False to load the table anyway.")
    logger.info("%r", out)
    return out


def read_bbbc021(root: str | Path, *, image_csv: str | Path | None = None, moa_csv: str | Path | None = None,
                 check_files: bool = True) -> PlateImages:
    """BBBC021 image sets: ``BBBC021_v1_image.csv`` + ``BBBC021_v1_moa.csv`` + one TIFF per channel.

    Channels ``DNA`` (DAPI), ``tubulin``, ``actin``.  ``batch`` is the week (``Week4_27481`` -> ``Week4``);
    ``moa`` is joined on (compound, concentration), NaN where the MOA table has no entry; ``is_control`` marks
    DMSO.  CSVs are looked up in ``root`` unless given.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"BBBC021 root folder not found: {root}")
    img = _read_csv(Path(image_csv) if image_csv else _find(root, ["BBBC021_v1_image.csv"], "BBBC021 image CSV"),
                    "BBBC021 image CSV")
    chans = {"DNA": "DAPI", "tubulin": "Tubulin", "actin": "Actin"}
    need = ["Image_Metadata_Plate_DAPI", "Image_Metadata_Well_DAPI", "Image_Metadata_Compound",
            "Image_Metadata_Concentration"] + [f"Image_{k}_{v}" for v in chans.values() for k in ("FileName", "PathName")]
    _require(img, need, "BBBC021 image CSV")
    df = pd.DataFrame({
        C.plate: img["Image_Metadata_Plate_DAPI"].astype(str),
        C.well: img["Image_Metadata_Well_DAPI"],
        C.compound: img["Image_Metadata_Compound"].astype(str),
        C.concentration: img["Image_Metadata_Concentration"].astype(float),
    })
    if "Replicate" in img.columns:
        df[C.replicate] = img["Replicate"]
    fn = img["Image_FileName_DAPI"].astype(str)
    site = fn.str.extract(r"_s(\d+)_", expand=False)
    df[C.site] = pd.to_numeric(site, errors="coerce").fillna(0).astype(int)
    if (df[C.site] == 0).any():
        df[C.site] = df.groupby([C.plate, C.well]).cumcount() + 1
    df[C.batch] = df[C.plate].str.split("_").str[0]
    for ch, src in chans.items():
        df[f"path_{ch}"] = [str(root / p / f) for p, f in zip(img[f"Image_PathName_{src}"], img[f"Image_FileName_{src}"])]
    df = _join_moa(df, root, moa_csv)
    return _finish_sites(df, list(chans), "bbbc021", check_files)


def _join_moa(df: pd.DataFrame, root: Path, moa_csv: str | Path | None) -> pd.DataFrame:
    path = Path(moa_csv) if moa_csv else None
    if path is None:
        try:
            path = _find(root, ["BBBC021_v1_moa.csv"], "BBBC021 MOA CSV")
        except InputError:
            logger.warning("BBBC021: no BBBC021_v1_moa.csv in %s; wells get no mechanism (moa NaN).", root)
            df[C.moa] = np.nan
            df[C.control] = df[C.compound].str.upper().eq("DMSO")
            return df
    moa = _read_csv(path, "BBBC021 MOA CSV")
    _require(moa, ["compound", "concentration", "moa"], "BBBC021 MOA CSV")
    moa = moa.assign(concentration=moa["concentration"].astype(float)).drop_duplicates(["compound", "concentration"])
    key = df[C.concentration].round(9)
    m = moa.assign(_k=moa["concentration"].round(9)).set_index(["compound", "_k"])["moa"]
    df[C.moa] = m.reindex(pd.MultiIndex.from_arrays([df[C.compound], key])).to_numpy()
    df[C.control] = df[C.compound].str.upper().eq("DMSO")
    return df


def read_rxrx(root: str | Path, *, metadata_csv: str | Path | None = None, channels: Sequence[int] | None = None,
              path_template: str = "images/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png",
              check_files: bool = True) -> PlateImages:
    """RxRx1 / RxRx3 layout: ``metadata.csv`` + one PNG per channel.

    The metadata needs ``experiment``, ``plate``, ``well`` (or ``address``) and ``site`` (or sites 1 and 2 are
    assumed, as in RxRx1, when ``site`` is absent).  ``plate`` becomes ``<experiment>_<plate>`` (RxRx numbers
    plates within an experiment; the number is kept in ``plate_number``); ``batch`` = experiment; ``perturbation`` = ``sirna`` /
    ``gene`` / ``treatment`` (first present); controls = ``well_type`` in {negative_control} or
    ``perturbation_type == 'CONTROL'`` or a perturbation named EMPTY_control / DMSO.  ``channels`` default to
    1..6; ``path_template`` is formatted with the row's columns plus ``channel``.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"RxRx root folder not found: {root}")
    md = _read_csv(Path(metadata_csv) if metadata_csv else _find(root, ["metadata.csv"], "RxRx metadata CSV"),
                   "RxRx metadata CSV")
    if "well" not in md.columns and "address" in md.columns:
        md = md.rename(columns={"address": "well"})
    _require(md, ["experiment", "plate", "well"], "RxRx metadata CSV")
    if "site" not in md.columns:
        md = pd.concat([md.assign(site=1), md.assign(site=2)], ignore_index=True)
    chans = list(channels) if channels is not None else [1, 2, 3, 4, 5, 6]
    df = md.copy()
    df[C.batch] = df["experiment"].astype(str)
    for col in ("sirna", "gene", "treatment"):
        if col in df.columns:
            df[C.perturbation] = df[col].astype(str)
            break
    ctrl = np.zeros(len(df), dtype=bool)
    if "well_type" in df.columns:
        ctrl |= df["well_type"].astype(str).str.lower().eq("negative_control").to_numpy()
    if "perturbation_type" in df.columns:
        ctrl |= df["perturbation_type"].astype(str).str.upper().eq("CONTROL").to_numpy()
    if C.perturbation in df.columns:
        ctrl |= df[C.perturbation].str.upper().isin(["EMPTY_CONTROL", "DMSO"]).to_numpy()
    df[C.control] = ctrl
    names = [f"w{c}" for c in chans]
    for c, name in zip(chans, names):
        try:
            df[f"path_{name}"] = [str(root / path_template.format(**{**r, "channel": c}))
                                  for r in df.to_dict("records")]
        except KeyError as exc:
            raise InputError(f"path_template {path_template!r} uses {exc} which is not a metadata column.") from exc
    # RxRx numbers plates within an experiment (Plate1 of HEPG2-01 is not Plate1 of HEPG2-02): a plate is
    # <experiment>_<plate>, so per-plate normalisation and well identity never mix experiments
    df["plate_number"] = df["plate"]
    df[C.plate] = df["experiment"].astype(str) + "_" + df["plate"].astype(str)
    return _finish_sites(df, names, "rxrx", check_files)


def read_jump_load_data(csv: str | Path, *, path_map: Mapping[str, str] | None = None,
                        check_files: bool = True) -> PlateImages:
    """A JUMP cpg0016 ``load_data`` CSV (``load_data.csv`` / ``load_data_with_illum.csv``).

    Channels come from its ``FileName_Orig<ch>`` columns (DNA, AGP, ER, Mito, RNA, ...); ``path_map`` rewrites
    path prefixes, e.g. ``{'s3://cellpainting-gallery/': '/data/cpg/'}``.  ``batch`` = ``Metadata_Batch``
    when present, else the plate.
    """
    df0 = _read_csv(Path(csv), "JUMP load_data CSV")
    _require(df0, ["Metadata_Plate", "Metadata_Well"], "JUMP load_data CSV")
    chans = [c[len("FileName_Orig"):] for c in df0.columns if c.startswith("FileName_Orig")]
    if not chans:
        raise InputError("JUMP load_data CSV has no FileName_Orig<channel> columns.")
    df = pd.DataFrame({C.plate: df0["Metadata_Plate"].astype(str), C.well: df0["Metadata_Well"]})
    if "Metadata_Site" in df0.columns:
        df[C.site] = df0["Metadata_Site"].astype(int)
    if "Metadata_Batch" in df0.columns:
        df[C.batch] = df0["Metadata_Batch"].astype(str)
    if "Metadata_Source" in df0.columns:
        df["source"] = df0["Metadata_Source"].astype(str)
    base = Path(csv).parent
    for ch in chans:
        _require(df0, [f"PathName_Orig{ch}"], "JUMP load_data CSV")
        paths = []
        for d, f in zip(df0[f"PathName_Orig{ch}"].astype(str), df0[f"FileName_Orig{ch}"].astype(str)):
            for a, b in (path_map or {}).items():
                if d.startswith(a):
                    d = b + d[len(a):]
            if d.startswith(("s3://", "http://", "https://")):
                raise InputError(f"channel {ch}: {d} is remote; tissuegraph reads local files only. Download the "
                                 "images and pass path_map={'s3://...': '/local/folder/'}.")
            p = Path(d) / f
            paths.append(str(p if p.is_absolute() else base / p))
        df[f"path_{ch}"] = paths
    return _finish_sites(df, chans, "jump", check_files)


def read_image_table(csv: str | Path | pd.DataFrame, *, channels: Sequence[str] | Mapping[str, str],
                     plate: str = "plate", well: str = "well", site: str | None = "site",
                     root: str | Path | None = None, check_files: bool = True) -> PlateImages:
    """A generic table with one row per site: plate and well columns and one path column per channel.

    ``channels`` is a list of path columns (channel names = column names) or a mapping channel name -> column.
    Relative paths are taken relative to ``root`` (default: the CSV's folder).  Every other column is kept as
    metadata.
    """
    if isinstance(csv, pd.DataFrame):
        df0, base = csv.copy(), Path(root) if root else Path.cwd()
    else:
        df0 = _read_csv(Path(csv), "image table")
        base = Path(root) if root else Path(csv).parent
    cmap = dict(channels) if isinstance(channels, Mapping) else {c: c for c in channels}
    if not cmap:
        raise InputError("channels is empty; name at least one path column.")
    need = [plate, well, *cmap.values()] + ([site] if site and site in df0.columns else [])
    _require(df0, need, "image table")
    df = df0.drop(columns=list(cmap.values())).rename(columns={plate: C.plate, well: C.well})
    if site and site in df0.columns:
        df = df.rename(columns={site: C.site})
    for ch, col in cmap.items():
        df[f"path_{ch}"] = [str(Path(p) if Path(str(p)).is_absolute() else base / str(p)) for p in df0[col]]
    return _finish_sites(df, list(cmap), "table", check_files)


# -------------------------------------------------------------------------------------------- profiles

def profile_record(*, architecture: str = "cellprofiler", inputs: str | None = "per-well mean features",
                   params: dict | None = None, twin_group: str | None = None) -> dict:
    """Provenance record of a hand-crafted profile representation (family 'profile', not learned)."""
    return {"family": "profile", "trained": False, "learned": False, "objective": None,
            "architecture": architecture, "inputs": inputs, "layer": None, "seed": None,
            "twin_group": twin_group or f"profile:{architecture}", "weights_sha256": None,
            "params": dict(params or {})}


def set_representation(samples, key: str, X: np.ndarray, names: Sequence[str] | None, record: dict) -> None:
    """Write obsm[key] (float32), its column names and its provenance record (the brief's contract)."""
    key = K.obsm.rep(key)
    samples.obsm[key] = np.ascontiguousarray(X, dtype=np.float32)
    if names is not None:
        samples.uns[K.uns.feature_names(key)] = np.asarray(list(names), dtype=object)
    samples.uns.setdefault(K.uns.representations, {})[key] = record


def read_profiles(path: str | Path | pd.DataFrame, *, metadata: pd.DataFrame | str | Path | None = None,
                  plate: str | None = None, well: str | None = None,
                  features: Sequence[str] | None = None, feature_prefixes: Sequence[str] = FEATURE_PREFIXES,
                  key_added: str = "profile", control: Any = None):
    """Per-well profiles (e.g. CellProfiler per-well means) as a wells AnnData.

    Parameters
    ----------
    path
        CSV (optionally gzipped) or DataFrame with one row per well.
    metadata
        Optional table (DataFrame or CSV) with ``plate`` and ``well`` columns joined onto the wells (left join).
    plate, well
        Column names in the profile table; default: the first of ``Metadata_Plate``, ``Image_Metadata_Plate``,
        ``plate`` (and likewise for the well).
    features
        Feature columns; default every numeric column starting with one of ``feature_prefixes``.
    control
        A callable ``obs -> bool mask`` or a value of ``perturbation``/``compound`` that marks control wells
        (sets ``obs['is_control']``).

    Returns
    -------
    AnnData: ``obs`` (plate, well, row, column, batch + metadata), ``obsm['X_<key_added>']`` float32 with NaNs
    kept (``select_features`` drops them), ``uns['X_<key_added>_names']``, ``uns['representations']``.
    """
    import anndata as ad

    df = path.copy() if isinstance(path, pd.DataFrame) else _read_csv(Path(path), "profile table")
    plate = plate or next((c for c in ("Metadata_Plate", "Image_Metadata_Plate", "plate") if c in df.columns), None)
    well = well or next((c for c in ("Metadata_Well", "Image_Metadata_Well", "well") if c in df.columns), None)
    if plate is None or well is None:
        raise InputError("profile table: no plate/well columns found (Metadata_Plate/Metadata_Well, "
                         "Image_Metadata_Plate/Image_Metadata_Well or plate/well); pass plate= and well=.")
    if features is None:
        features = [c for c in df.columns if c.startswith(tuple(feature_prefixes))
                    and pd.api.types.is_numeric_dtype(df[c])]
        if not features:
            raise InputError(f"profile table has no numeric feature columns starting with {tuple(feature_prefixes)}; "
                             "pass features=[...].")
    else:
        _require(df, list(features), "profile table")
    X = df[list(features)].to_numpy(dtype=np.float64)
    obs = pd.DataFrame({C.plate: df[plate].astype(str).to_numpy(), C.well: df[well].map(normalise_well).to_numpy()})
    extra = [c for c in df.columns if c not in set(features) | {plate, well} and not c.startswith(tuple(feature_prefixes))]
    for c in extra:
        obs[c] = df[c].to_numpy()
    if metadata is not None:
        md = metadata if isinstance(metadata, pd.DataFrame) else _read_csv(Path(metadata), "metadata table")
        _require(md, [C.plate, C.well], "metadata table")
        md = md.assign(**{C.plate: md[C.plate].astype(str), C.well: md[C.well].map(normalise_well)})
        if md.duplicated([C.plate, C.well]).any():
            raise InputError("metadata table has several rows for one (plate, well); give one row per well.")
        obs = obs.merge(md, on=[C.plate, C.well], how="left", suffixes=("", "_metadata"))
    dup = obs.duplicated([C.plate, C.well])
    if dup.any():
        raise InputError(f"profile table has {int(dup.sum())} duplicated (plate, well) rows; aggregate them first.")
    rc = obs[C.well].map(split_well)
    obs[C.row] = rc.map(lambda t: t[0]).to_numpy()
    obs[C.column] = rc.map(lambda t: t[1]).astype(int).to_numpy()
    if C.batch not in obs.columns:
        obs[C.batch] = obs[C.plate]
    if control is not None:
        if callable(control):
            mask = np.asarray(control(obs), dtype=bool)
        else:
            col = next((c for c in (C.perturbation, C.compound) if c in obs.columns), None)
            if col is None:
                raise InputError("control= needs a 'perturbation' or 'compound' column (or pass a callable).")
            mask = obs[col].astype(str).isin([str(v) for v in np.atleast_1d(control)]).to_numpy()
        obs[C.control] = mask
    obs.index = (obs[C.plate] + "/" + obs[C.well]).to_numpy()
    a = ad.AnnData(obs=obs)
    set_representation(a, key_added, X, features, profile_record(
        inputs="per-well features", params={"source": str(path) if not isinstance(path, pd.DataFrame) else "DataFrame",
                                            "n_features": len(features)}))
    return a


def read_bbbc021_profiles(root: str | Path, *, profiles_csv: str | Path | None = None, key_added: str = "profile"):
    """The BBBC021 per-well mean CellProfiler profiles (Ljosa et al. 2013) with compound, concentration, MOA.

    ``root`` holds ``ljosa_jbiomolscreen_2013_per_well_mean.csv[.gz]``, ``BBBC021_v1_image.csv[.gz]`` and
    ``BBBC021_v1_moa.csv`` (e.g. ``../shared/data/bbbc021_profiles``).  ``obs``: plate, well, batch (week),
    compound, concentration, replicate, moa (NaN for compounds outside the MOA table), is_control (DMSO).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"BBBC021 profiles folder not found: {root}")
    prof = Path(profiles_csv) if profiles_csv else _find(root, ["ljosa_jbiomolscreen_2013_per_well_mean.csv"],
                                                            "BBBC021 per-well profile CSV")
    sites = read_bbbc021(root, check_files=False)
    w = sites.wells()[[C.plate, C.well, C.batch, C.compound, C.concentration, C.replicate, C.moa, C.control]
                      if C.replicate in sites.sites.columns else
                      [C.plate, C.well, C.batch, C.compound, C.concentration, C.moa, C.control]]
    a = read_profiles(prof, metadata=w.drop(columns=[C.batch]).assign(batch=w[C.batch]), key_added=key_added)
    unknown = a.obs[C.compound].isna()
    if unknown.any():
        raise InputError(f"{int(unknown.sum())} profiled wells are not in the image CSV (e.g. {a.obs_names[unknown][0]}).")
    a.obs[C.control] = a.obs[C.control].astype(bool)
    a.uns[K.uns.representations][K.obsm.rep(key_added)]["inputs"] = "per-well mean CellProfiler features (Ljosa 2013)"
    return a
