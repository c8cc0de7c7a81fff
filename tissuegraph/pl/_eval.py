"""Plots of the evaluation tables written by ``tg.eval.evaluate`` (``samples.uns['tg_eval']``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import _keys as K
from .._errors import InputError
from ._utils import finish, get_ax

__all__ = ["eval_scores", "baseline_gaps", "cka_heatmap"]

VERDICT_COLORS = {"better": "#1a9850", "not distinguishable": "#7f7f7f", "worse": "#d73027"}


def _tables(samples, key: str, table: str, what: str) -> pd.DataFrame | Any:
    if isinstance(samples, dict):
        res = samples
    else:
        if key not in getattr(samples, "uns", {}):
            raise InputError(f"{what}: samples.uns has no {key!r}; run tg.eval.evaluate(samples) first "
                             f"(or pass key= the key_added you used).")
        res = samples.uns[key]
    if table not in res:
        raise InputError(f"{what}: the evaluation result {key!r} has no {table!r} table "
                         f"(has {sorted(res)}); run tg.eval.evaluate(samples) again with a current version.")
    df = res[table]
    if isinstance(df, pd.DataFrame) or table in ("cka", "knn_overlap"):
        return df
    return pd.DataFrame(df)


def _pick(df: pd.DataFrame, col: str, value, what: str) -> tuple[pd.DataFrame, Any]:
    """The rows of ``df`` with ``df[col] == value`` and that value (``None``: the table's first one)."""
    have = list(pd.unique(df[col]))
    if value is None:
        if not have:
            raise InputError(f"{what}: the table is empty.")
        value = have[0]
    elif value not in have:
        raise InputError(f"{what}: {col}={value!r} is not in the table ({have}).")
    return df[df[col] == value], value


def _family(samples, rep: str) -> dict:
    try:
        return dict(samples.uns["representations"][rep])
    except Exception:
        return {}


def _short(rep: str) -> str:
    return rep[2:] if rep.startswith("X_") else rep


def eval_scores(samples, *, key: str = K.eval_key, metric: str | None = None, protocol: str | None = None,
                ax=None, show: bool | None = None, save: Any = None):
    """Mean score of every representation with its 95 % interval (``summary`` table), best on top;
    the structural baseline's mean as a dashed line; untrained (random-weight) networks drawn hollow."""
    what = "tg.pl.eval_scores"
    df = _tables(samples, key, "summary", what)
    df, metric = _pick(df, "metric", metric, what)
    df, protocol = _pick(df, "protocol", protocol, what)
    df = df.sort_values("mean")
    ax = get_ax(ax, figsize=(7, 0.35 * len(df) + 1.5))
    y = np.arange(len(df))
    for yi, (_, r) in zip(y, df.iterrows()):
        fam = _family(samples, r["representation"]) if not isinstance(samples, dict) else {}
        untrained = fam.get("learned") and not fam.get("trained", True)
        structural = r["representation"] == "X_structural" or fam.get("family") == "structural"
        color = "#4c72b0" if not structural else "#dd8452"
        ax.errorbar(r["mean"], yi, xerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]], fmt="o",
                    color=color, mfc="white" if untrained else color, capsize=3)
    base = df[df["representation"] == "X_structural"]
    if len(base):
        ax.axvline(float(base["mean"].iloc[0]), color="#dd8452", ls="--", lw=1, label="structural baseline")
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_yticks(y, [_short(r) for r in df["representation"]], fontsize=8)
    ax.set_xlabel(f"{metric} (mean, 95 % interval)")
    ax.set_title(f"{metric} by representation ({protocol})")
    ax.grid(axis="x", alpha=0.3)
    return finish(ax, show=show, save=save)


def baseline_gaps(samples, *, key: str = K.eval_key, reference: str | None = None, metric: str | None = None,
                  protocol: str | None = None, ax=None, show: bool | None = None, save: Any = None):
    """Forest plot of each representation's difference to a reference (``gaps`` table: the structural
    baseline or the untrained twins) with its 95 % interval, coloured by the verdict."""
    what = "tg.pl.baseline_gaps"
    df = _tables(samples, key, "gaps", what)
    df, reference = _pick(df, "reference", reference, what)
    df, metric = _pick(df, "metric", metric, what)
    df, protocol = _pick(df, "protocol", protocol, what)
    df = df.sort_values("diff")
    ax = get_ax(ax, figsize=(7, 0.35 * len(df) + 1.6))
    y = np.arange(len(df))
    for yi, (_, r) in zip(y, df.iterrows()):
        c = VERDICT_COLORS.get(str(r["verdict"]), "black")
        ax.errorbar(r["diff"], yi, xerr=[[r["diff"] - r["ci_low"]], [r["ci_high"] - r["diff"]]], fmt="s", color=c,
                    capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, [_short(r) for r in df["representation"]], fontsize=8)
    ax.set_xlabel(f"difference in {metric} vs. {_short(str(reference))} (95 % interval)")
    ax.set_title(f"Gap to {_short(str(reference))} ({protocol})")
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], marker="s", ls="", color=c, label=v) for v, c in VERDICT_COLORS.items()],
              loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return finish(ax, show=show, save=save)


def cka_heatmap(samples, *, key: str = K.eval_key, which: str = "cka", ax=None, show: bool | None = None,
                save: Any = None):
    """Heatmap of linear CKA (``which='cka'``) or k-NN overlap (``'knn_overlap'``) between representations."""
    from ._tl import _heatmap

    what = "tg.pl.cka_heatmap"
    if which not in ("cka", "knn_overlap"):
        raise InputError(f"{what}: which must be 'cka' or 'knn_overlap', got {which!r}.")
    df = _tables(samples, key, which, what)
    df = pd.DataFrame(df)
    names = [_short(str(c)) for c in df.columns]
    ax = get_ax(ax, figsize=(0.5 * len(names) + 3, 0.5 * len(names) + 2))
    _heatmap(ax, df.to_numpy(dtype=float), names, [_short(str(i)) for i in df.index], cmap="magma",
             title="Linear CKA between representations" if which == "cka" else "k-NN overlap",
             cbar_label=which, fmt="{:.2f}", vmin=0.0, vmax=1.0)
    return finish(ax, show=show, save=save)
