"""Small helpers shared by every module that reads or writes tissuegraph's AnnData objects."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _keys as K
from ._errors import InputError, MissingMppError


def set_slide_metadata(adata, slide_id: str, *, mpp: float | None, **metadata: Any) -> None:
    """Record a slide's µm/px and metadata in ``adata.uns['spatial'][slide_id]`` (scanpy layout)."""
    spatial = adata.uns.setdefault(K.uns.spatial, {})
    entry = spatial.setdefault(str(slide_id), {})
    entry.setdefault("images", {})
    entry["scalefactors"] = {"mpp": float(mpp) if mpp is not None else float("nan")}
    meta = entry.setdefault("metadata", {})
    meta.update({k: v for k, v in metadata.items() if v is not None})


def get_mpp(adata, slide_id: str | None = None, *, required: bool = True, what: str = "this step") -> float | None:
    """µm/px of ``slide_id`` (or of the only/common slide) from ``adata.uns['spatial']``."""
    spatial = adata.uns.get(K.uns.spatial, {}) or {}
    values = {}
    for sid, entry in spatial.items():
        try:
            v = float(entry.get("scalefactors", {}).get("mpp", np.nan))
        except (TypeError, ValueError, AttributeError):
            v = np.nan
        values[str(sid)] = v
    if slide_id is not None:
        mpp = values.get(str(slide_id), np.nan)
    else:
        finite = {v for v in values.values() if np.isfinite(v)}
        if len(finite) > 1:
            raise InputError(f"The slides in this AnnData have different µm/px {sorted(finite)}; "
                             "pass slide_id= to choose one.")
        mpp = finite.pop() if finite else np.nan
    if not np.isfinite(mpp):
        if required:
            raise MissingMppError(
                f"{what} needs the pixel size (µm/px), but adata.uns['spatial'] does not record it. "
                "Set it with tg.io.open_slide(path, mpp=...) before segmentation, or "
                "adata.uns['spatial'][slide]['scalefactors']['mpp'] = <µm/px>.")
        return None
    return float(mpp)


def record_params(adata, key: str, params: dict[str, Any]) -> None:
    """scanpy convention: parameters of the step that wrote ``key`` go to ``uns[key]['params']``."""
    entry = adata.uns.setdefault(key, {})
    entry["params"] = {k: _plain(v) for k, v in params.items()}


def _plain(v: Any) -> Any:
    """Make a parameter value storable in .h5ad (no None, no tuples of mixed types)."""
    if v is None:
        return "None"
    if isinstance(v, (list, tuple)):
        return [(_plain(x)) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (str, int, float, bool, np.integer, np.floating, np.bool_)):
        return v
    return str(v)
