"""What a user brings to ``tissuegraph culture bench --dataset PATH``: find the layout, load it, check it.

:func:`detect_layout` names the layout of a folder or CSV (no image is read); :func:`open_dataset` loads it
with the matching loader of :mod:`tissuegraph.culture._io`; :func:`prepare_screen` checks that the site or
well table holds what the benchmark needs (a label to evaluate, compounds to hold out, control wells) and
says which column to add or which option to pass when it does not.

Layouts (first match wins)
    ``bbbc021_profiles``  a folder with ``ljosa_jbiomolscreen_2013_per_well_mean.csv[.gz]`` + the BBBC021 CSVs
    ``bbbc021``           a folder with ``BBBC021_v1_image.csv`` (+ ``BBBC021_v1_moa.csv``), or that CSV
    ``rxrx``              a folder with ``metadata.csv`` holding ``experiment``, ``plate``, ``well``/``address``
                          (PNGs under ``images/<experiment>/Plate<plate>/<well>_s<site>_w<channel>.png``),
                          or that CSV
    ``jump``              a JUMP ``load_data*.csv`` (``Metadata_Plate``, ``Metadata_Well``, ``FileName_Orig<ch>``,
                          ``PathName_Orig<ch>``), or a folder holding one
    ``profiles``          a CSV with one row per well: plate/well columns and numeric ``Cells_``/``Cytoplasm_``/
                          ``Nuclei_`` feature columns (a folder: ``profiles.csv`` + optional ``metadata.csv``)
    ``table``             any other CSV with one row per site: ``plate``, ``well``, optional ``site``, and one
                          image path column per channel, named ``path_<channel>`` (e.g. ``path_DNA``,
                          ``path_actin``) or listed with ``channels`` (``--channels DNA=dapi_file actin=...``)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import _keys as K
from .._errors import InputError
from .._logging import logger

__all__ = ["detect_layout", "open_dataset", "prepare_screen", "default_channels", "LAYOUTS"]

C = K.culture
LAYOUTS = ("bbbc021_profiles", "bbbc021", "rxrx", "jump", "profiles", "table")
_PROFILE_PREFIXES = ("Cells_", "Cytoplasm_", "Nuclei_")
_BBBC021_PROFILES = "ljosa_jbiomolscreen_2013_per_well_mean.csv"


def _exists(root: Path, name: str) -> Path | None:
    for cand in (root / name, root / (name + ".gz")):
        if cand.is_file():
            return cand
    return None


def _header(path: Path) -> list[str]:
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except Exception as exc:  # noqa: BLE001 - pandas' errors are various
        raise InputError(f"{path} is not a readable CSV: {exc}") from exc


def _csv_layout(path: Path) -> str:
    cols = _header(path)
    s = set(cols)
    if any(c.startswith("FileName_Orig") for c in cols) and {"Metadata_Plate", "Metadata_Well"} <= s:
        return "jump"
    if "Image_FileName_DAPI" in s and "Image_Metadata_Plate_DAPI" in s:
        return "bbbc021"
    if {"experiment", "plate"} <= s and ({"well", "address"} & s) and not any(c.startswith("path_") for c in cols):
        return "rxrx"
    if any(c.startswith(_PROFILE_PREFIXES) for c in cols):
        return "profiles"
    return "table"


def detect_layout(path: str | Path) -> tuple[str, Path]:
    """The layout of ``path`` (one of :data:`LAYOUTS`) and the file or folder its loader reads.

    Only CSV headers are read.  Raises :class:`~tissuegraph.InputError` naming what was looked for when
    nothing matches.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"--dataset {p}: not found. Give 'synthetic', 'bbbc021', or a folder / CSV of a plate "
                         "(BBBC021, RxRx, JUMP load_data, a table of image paths, or per-well profiles).")
    if p.is_file():
        if not p.name.lower().endswith((".csv", ".csv.gz", ".tsv")):
            raise InputError(f"--dataset {p}: a file must be a CSV (a plate's site table, a JUMP load_data CSV, "
                             "RxRx metadata.csv or per-well profiles); got a .{p.name.rsplit('.', 1)[-1]} file.")
        kind = _csv_layout(p)
        return kind, (p.parent if kind in ("bbbc021", "rxrx") else p)
    if _exists(p, _BBBC021_PROFILES) and _exists(p, "BBBC021_v1_image.csv"):
        return "bbbc021_profiles", p
    if _exists(p, "BBBC021_v1_image.csv"):
        return "bbbc021", p
    md = _exists(p, "metadata.csv")
    if md is not None and _csv_layout(md) == "rxrx":
        return "rxrx", p
    loads = sorted(p.glob("load_data*.csv")) + sorted(p.glob("load_data*.csv.gz"))
    if loads:
        if len(loads) > 1:
            raise InputError(f"--dataset {p}: several load_data CSVs ({', '.join(x.name for x in loads)}); pass one.")
        return "jump", loads[0]
    csvs = [x for x in sorted(p.glob("*.csv")) + sorted(p.glob("*.csv.gz")) if not x.name.startswith("metadata.")]
    prof = _exists(p, "profiles.csv")
    if prof is not None:
        return "profiles", p
    if len(csvs) == 1:
        kind = _csv_layout(csvs[0])
        return kind, csvs[0]
    raise InputError(
        f"--dataset {p}: cannot tell the layout. Looked for {_BBBC021_PROFILES} + BBBC021_v1_image.csv "
        "(BBBC021 profiles), BBBC021_v1_image.csv (BBBC021 images), metadata.csv with experiment/plate/well (RxRx), "
        "load_data*.csv (JUMP), profiles.csv (per-well profiles), or a single CSV; found "
        f"{', '.join(x.name for x in csvs) or 'no CSV'}. Pass the CSV itself.")


def _parse_channels(channels: Sequence[str] | Mapping[str, str] | None) -> dict[str, str] | None:
    if channels is None:
        return None
    if isinstance(channels, Mapping):
        return dict(channels)
    out = {}
    for c in channels:
        name, _, col = str(c).partition("=")
        out[name] = col or name
    return out


def _join_metadata(sites: pd.DataFrame, metadata: str | Path | pd.DataFrame) -> pd.DataFrame:
    from ._io import _read_csv, normalise_well

    md = metadata.copy() if isinstance(metadata, pd.DataFrame) else _read_csv(Path(metadata), "metadata table")
    md = md.rename(columns={"Metadata_Plate": C.plate, "Metadata_Well": C.well})
    if not {C.plate, C.well} <= set(md.columns):
        raise InputError(f"metadata table {metadata} needs 'plate' and 'well' columns (or Metadata_Plate / "
                         f"Metadata_Well); it has {list(md.columns)[:15]}.")
    md = md.assign(**{C.plate: md[C.plate].astype(str), C.well: md[C.well].map(normalise_well)})
    if md.duplicated([C.plate, C.well]).any():
        raise InputError(f"metadata table {metadata} has several rows for one (plate, well); give one per well.")
    keep = [c for c in md.columns if c in (C.plate, C.well) or c not in sites.columns]
    out = sites.merge(md[keep], on=[C.plate, C.well], how="left")
    unmatched = out[keep[-1]].isna().all() if len(keep) > 2 else False
    if unmatched:
        raise InputError(f"metadata table {metadata}: no (plate, well) matches the images' (e.g. "
                         f"{sites[C.plate].iloc[0]}/{sites[C.well].iloc[0]}); check the plate names.")
    return out


def open_dataset(path: str | Path, *, channels: Sequence[str] | Mapping[str, str] | None = None,
                 path_map: Mapping[str, str] | None = None, control: Any = None,
                 metadata: str | Path | pd.DataFrame | None = None):
    """Load ``path`` with the loader of its layout (see :func:`_open`), then left-join ``metadata`` (one row per
    well with ``plate``/``well`` or ``Metadata_Plate``/``Metadata_Well`` columns, e.g. a JUMP plate map with
    compound and label) onto the sites or wells."""
    kind, obj = _open(path, channels=channels, path_map=path_map, control=control)
    if metadata is not None:
        if hasattr(obj, "sites"):
            obj.sites = _join_metadata(obj.sites, metadata)
        else:
            obs = _join_metadata(obj.obs.reset_index(drop=True), metadata)
            obs.index = obj.obs_names
            obj.obs = obs
    return kind, obj


def _open(path: str | Path, *, channels: Sequence[str] | Mapping[str, str] | None = None,
          path_map: Mapping[str, str] | None = None, control: Any = None):
    """Load ``path`` with the loader of its layout: ``(layout, PlateImages)`` or ``(layout, wells AnnData)``.

    channels
        Generic tables: the path column of each channel, ``['DNA=dapi_path', 'actin=phalloidin_path']`` or a
        mapping (default: every ``path_<channel>`` column).  RxRx: the channel numbers (default 1..6).
    control
        Per-well profiles: a value of ``compound``/``perturbation`` marking the control wells.
    """
    from ._io import (read_bbbc021, read_bbbc021_profiles, read_image_table, read_jump_load_data, read_profiles,
                      read_rxrx)

    kind, where = detect_layout(path)
    logger.info("culture: %s read as layout %r (%s)", path, kind, where)
    if kind == "bbbc021_profiles":
        return kind, read_bbbc021_profiles(where)
    if kind == "bbbc021":
        return kind, read_bbbc021(where)
    if kind == "rxrx":
        nums = None if channels is None else [int(str(c).lstrip("w")) for c in channels]
        return kind, read_rxrx(where, channels=nums)
    if kind == "jump":
        return kind, read_jump_load_data(where, path_map=path_map)
    if kind == "profiles":
        if where.is_dir():
            md = _exists(where, "metadata.csv")
            return kind, read_profiles(_exists(where, "profiles.csv"), metadata=md, control=control)
        return kind, read_profiles(where, control=control)
    cmap = _parse_channels(channels)
    cols = _header(where)
    if cmap is None:
        cmap = {c[len("path_"):]: c for c in cols if c.startswith("path_")}
        if not cmap:
            raise InputError(f"{where}: a table of image paths needs one path column per channel, named "
                             f"path_<channel> (e.g. path_DNA, path_actin), or --channels NAME=COLUMN ...; its "
                             f"columns are {cols[:15]}.")
    low = {c.lower(): c for c in cols}
    plate = low.get("plate") or low.get("metadata_plate")
    well = low.get("well") or low.get("metadata_well")
    if plate is None or well is None:
        raise InputError(f"{where}: a table of image paths needs 'plate' and 'well' columns (one row per site); "
                         f"its columns are {cols[:15]}.")
    site = low.get("site") or low.get("metadata_site")
    return kind, read_image_table(where, channels=cmap, plate=plate, well=well, site=site)


def default_channels(names: Sequence[str]) -> tuple[int, int]:
    """Indices of the DNA and the cytoplasm channel guessed from the channel names (DNA/DAPI/Hoechst/w1;
    actin/AGP/phalloidin/cyto/w3), else the first two channels."""
    low = [str(n).lower() for n in names]

    def find(keys, default):
        for k in keys:
            for i, n in enumerate(low):
                if k == n or (len(k) > 2 and k in n):
                    return i
        return default

    dna = find(("dna", "dapi", "hoechst", "nucle", "w1"), 0)
    cyt = find(("actin", "agp", "phalloidin", "cyto", "cell", "w3"), 1 if dna != 1 else 0)
    if len(names) < 2 or cyt == dna:
        cyt = next((i for i in range(len(names)) if i != dna), dna)
    return dna, cyt


def prepare_screen(obs: pd.DataFrame, *, label_key: str | None = None, compound_key: str | None = None,
                   control: Any = None, where: str = "the data set") -> pd.DataFrame:
    """Check and complete the metadata the culture bench needs; returns a copy of ``obs`` with

    ``moa`` (the label evaluated: ``label_key``, default the ``moa`` column), ``compound`` (what is held out
    together: ``compound_key``, default ``compound``, else ``perturbation``), ``is_control`` (kept when present,
    else ``compound`` in ``control``, default DMSO) and ``batch``.  Treated rows without a label are dropped
    (logged).  Errors name the column to add or the option to pass.
    """
    o = obs.copy()
    cols = [c for c in o.columns if not str(c).startswith("path_")]
    lk = label_key or C.moa
    if lk not in o.columns:
        raise InputError(f"{where} has no label column {lk!r} to evaluate: add a '{C.moa}' column (the mechanism "
                         "or class of each well's treatment), pass --label-key COLUMN (label_key=) naming one of "
                         f"{cols[:20]}, or join a per-well table (plate, well, compound, moa) with --metadata CSV "
                         "(metadata=; a JUMP load_data CSV holds no treatment).")
    ck = compound_key or next((c for c in (C.compound, C.perturbation) if c in o.columns), None)
    if ck is None or ck not in o.columns:
        raise InputError(f"{where} has no '{C.compound}' (or '{C.perturbation}') column naming each well's "
                         f"treatment, which the bench holds out as a whole; add one. Columns: {cols[:20]}.")
    o[C.moa] = o[lk]
    o[C.compound] = o[ck].astype(str)
    if C.control not in o.columns or control is not None:
        vals = [str(v) for v in np.atleast_1d(control if control is not None else ["DMSO"])]
        o[C.control] = o[C.compound].str.upper().isin([v.upper() for v in vals])
        how = f"'{ck}' equal to {vals}"
    else:
        o[C.control] = o[C.control].astype(bool)
        how = f"the '{C.control}' column"
    ctrl = o[C.control].to_numpy(dtype=bool)
    if not ctrl.any():
        raise InputError(f"{where} has no control wells (none marked by {how}); the bench normalises every plate "
                         f"against its controls. Pass --control VALUE (a value of '{ck}', e.g. DMSO) or add a "
                         f"boolean '{C.control}' column.")
    if C.plate in o.columns:
        plates = set(o[C.plate].astype(str))
        with_ctrl = set(o.loc[ctrl, C.plate].astype(str))
        if plates - with_ctrl:
            raise InputError(f"{where}: plate(s) {sorted(plates - with_ctrl)[:5]} hold no control well; every "
                             "plate needs controls to be normalised against.")
    if C.batch not in o.columns:
        o[C.batch] = o[C.plate] if C.plate in o.columns else "batch"
    lab = o[C.moa]
    missing = ~ctrl & (lab.isna() | lab.astype(str).str.strip().isin(["", "nan", "None"])).to_numpy()
    if missing.any():
        logger.warning("%s: %d treated rows have no %r label and are left out.", where, int(missing.sum()), lk)
        o = o.loc[~missing]
    treated = ~o[C.control].to_numpy(dtype=bool)
    if not treated.any():
        raise InputError(f"{where}: no treated well carries a label in {lk!r}.")
    if o.loc[treated, C.moa].astype(str).nunique() < 2:
        raise InputError(f"{where}: the treated wells carry fewer than 2 distinct labels in {lk!r}; nothing to "
                         "tell apart. Pass --label-key naming a column with several classes.")
    return o
