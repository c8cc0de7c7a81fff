"""Culture plate heatmap of any per-well value."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from .._errors import InputError
from ._utils import finish, get_ax, text_color

__all__ = ["plate_heatmap"]

_FORMATS = ((8, 12), (16, 24), (32, 48))  # 96, 384, 1536 wells


def _row_index(r) -> int:
    if isinstance(r, (int, np.integer)):
        return int(r) - 1
    s = str(r).strip().upper()
    if s.isdigit():
        return int(s) - 1
    v = 0
    for ch in s:  # A..Z, AA..AF for 1536-well plates
        v = v * 26 + (ord(ch) - 64)
    return v - 1


def _wells(obs: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray]:
    if "row" in obs and "column" in obs:
        rows = np.array([_row_index(r) for r in obs["row"]])
        cols = obs["column"].astype(int).to_numpy() - 1
        return rows, cols
    if "well" in obs:
        rows, cols = [], []
        for w in obs["well"].astype(str):
            m = re.fullmatch(r"\s*([A-Za-z]{1,2})\s*0*(\d+)\s*", w)
            if not m:
                raise InputError(f"{what}: well {w!r} is not like 'B03' (row letters, column number).")
            rows.append(_row_index(m.group(1)))
            cols.append(int(m.group(2)) - 1)
        return np.array(rows), np.array(cols)
    raise InputError(f"{what}: obs needs a 'well' column ('B03' style) or 'row' and 'column' columns; "
                     "the samples AnnData made by tg.culture has them.")


def plate_heatmap(adata, *, value: str, plate: str | None = None, agg: str = "mean", cmap: str = "viridis",
                  center: float | None = None, annotate: bool | None = None, title: str | None = None, ax=None,
                  show: bool | None = None, save: Any = None):
    """Heatmap of a per-well value on the plate layout (96/384/1536 wells, inferred).

    Parameters
    ----------
    adata
        AnnData (or DataFrame) with one row per well, image, field or cell; obs has ``well`` ('B03') or
        ``row``/``column``, and ``plate`` when there are several plates.
    value
        Numeric obs column (e.g. a mAP, a cell count, a probe score) or var name.
    plate
        Which plate (required when ``obs['plate']`` has several).
    agg
        How rows of the same well are combined: 'mean', 'median', 'sum' or 'count'.
    center
        Centre of a diverging colour scale (e.g. 0 for z-scores); None = sequential.
    annotate
        Write the values in the wells (default: for 96-well plates).
    """
    import matplotlib.colors as mcolors

    what = "tg.pl.plate_heatmap"
    obs = adata.copy() if isinstance(adata, pd.DataFrame) else adata.obs.copy()
    if not isinstance(adata, pd.DataFrame) and value not in obs and value in adata.var_names:
        x = adata[:, value].X
        obs[value] = x.toarray().ravel() if hasattr(x, "toarray") else np.asarray(x).ravel()
    if value not in obs:
        raise InputError(f"{what}: no column {value!r} in obs (have {list(obs.columns)}); compute the per-well "
                         "value first (e.g. tg.culture / tg.eval results joined into obs).")
    if agg not in ("mean", "median", "sum", "count"):
        raise InputError(f"{what}: agg must be mean, median, sum or count, got {agg!r}.")
    if "plate" in obs and obs["plate"].nunique() > 1:
        if plate is None:
            raise InputError(f"{what}: several plates {sorted(obs['plate'].astype(str).unique())}; pass plate=.")
        obs = obs[obs["plate"].astype(str) == str(plate)]
    elif plate is not None and "plate" in obs:
        obs = obs[obs["plate"].astype(str) == str(plate)]
    if len(obs) == 0:
        raise InputError(f"{what}: no rows for plate {plate!r}.")
    r, c = _wells(obs, what)
    df = pd.DataFrame({"r": r, "c": c, "v": pd.to_numeric(obs[value], errors="coerce").to_numpy()})
    g = df.groupby(["r", "c"])["v"]
    tab = getattr(g, agg)() if agg != "count" else g.size()
    nr = next(f for f in _FORMATS if f[0] > df["r"].max() and f[1] > df["c"].max()) \
        if (df["r"].max() < 32 and df["c"].max() < 48) else (df["r"].max() + 1, df["c"].max() + 1)
    M = np.full(nr, np.nan)
    for (ri, ci), v in tab.items():
        M[ri, ci] = v
    ax = get_ax(ax, figsize=(0.5 * nr[1] + 2, 0.5 * nr[0] + 1) if nr[1] <= 12 else (12, 7))
    norm = None
    finite = M[np.isfinite(M)]
    if center is not None and finite.size:
        lim = max(abs(finite.min() - center), abs(finite.max() - center), 1e-12)
        norm = mcolors.TwoSlopeNorm(vcenter=center, vmin=center - lim, vmax=center + lim)
    cm = __import__("matplotlib").colormaps[cmap].with_extremes(bad="0.92")
    im = ax.imshow(np.ma.masked_invalid(M), cmap=cm, norm=norm, aspect="equal")
    letters = [chr(65 + i) if i < 26 else "A" + chr(65 + i - 26) for i in range(nr[0])]
    step = 1 if nr[1] <= 24 else 2
    ax.set_xticks(range(0, nr[1], step), [str(i + 1) for i in range(0, nr[1], step)], fontsize=7)
    ax.set_yticks(range(0, nr[0], step), letters[::step], fontsize=7)
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False)
    if annotate is None:
        annotate = nr[1] <= 12
    if annotate:
        for (i, j), v in np.ndenumerate(M):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=6, color=text_color(im, v))
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    cb.set_label(f"{value} ({agg})")
    ax.set_title(title or (f"{value}" + (f" — plate {plate}" if plate is not None else "")), pad=18)
    return finish(ax, show=show, save=save)
