"""Shared plumbing of tg.pl: axes creation, colouring by category or value, show/save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._errors import InputError


def plt():
    import matplotlib.pyplot as _plt

    return _plt


def get_ax(ax, figsize=(6, 5)):
    if ax is not None:
        return ax
    fig, ax = plt().subplots(figsize=figsize)
    return ax


def finish(ax, *, show: bool | None, save: Any):
    """Save (``save`` = path) and/or show the figure; return ``ax`` (scanpy-like ``show``/``save``)."""
    fig = ax.figure if hasattr(ax, "figure") else np.ravel(ax)[0].figure
    if save:
        path = Path(save)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    if show is None:
        show = plt().isinteractive()
    if show:
        plt().show()
    return ax


def palette(n: int) -> list:
    import matplotlib

    base = matplotlib.colormaps["tab10" if n <= 10 else "tab20"].colors
    if n <= len(base):
        return list(base[:n])
    cmap = matplotlib.colormaps["hsv"]
    return [cmap(i / n) for i in range(n)]


def values_for(adata, color: str | None, what: str):
    """('category', codes, names, colours) or ('value', floats, name, None) or (None, ...)."""
    if color is None:
        return None, None, None, None
    if color in adata.obs:
        col = adata.obs[color]
        if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col) \
                or pd.api.types.is_bool_dtype(col):
            cat = col.astype("category")
            names = list(cat.cat.categories.astype(str))
            stored = adata.uns.get(f"{color}_colors")
            cols = list(stored) if stored is not None and len(stored) == len(names) else palette(len(names))
            return "category", cat.cat.codes.to_numpy(), names, cols
        return "value", col.to_numpy(dtype=float), color, None
    if color in adata.var_names:
        x = adata[:, color].X
        x = x.toarray().ravel() if hasattr(x, "toarray") else np.asarray(x).ravel()
        return "value", x.astype(float), color, None
    raise InputError(f"{what}: color={color!r} is neither an obs column nor a var name "
                     f"(obs: {list(adata.obs.columns)[:12]}, var: {list(adata.var_names[:8])}).")


def add_legend_or_colorbar(ax, kind, names, cols, mappable=None, title=None, max_items=20):
    from matplotlib.lines import Line2D

    if kind == "category":
        handles = [Line2D([], [], marker="o", ls="", color=c, label=n) for n, c in zip(names, cols)][:max_items]
        ax.legend(handles=handles, title=title, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False,
                  fontsize=8, title_fontsize=9)
    elif kind == "value" and mappable is not None:
        cb = ax.figure.colorbar(mappable, ax=ax, fraction=0.04, pad=0.02)
        cb.set_label(title or "")


def need_uns(adata, key: str, what: str, run_first: str):
    if key not in adata.uns:
        raise InputError(f"{what}: adata.uns has no {key!r}; run {run_first} first.")
    return adata.uns[key]


def text_color(im, value) -> str:
    """Black or white, whichever reads better on the colour ``im`` gives ``value``."""
    r, g, b, _ = im.cmap(im.norm(value))
    return "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"
