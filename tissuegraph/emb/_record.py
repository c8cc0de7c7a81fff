"""Representation provenance shared by the emb producers (gnn, patches, color).

Writes ``samples.obsm[key]`` (float32), optional ``samples.uns['<key>_names']`` and the record
``samples.uns['representations'][key]`` of the provenance contract (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import _keys as K

__all__ = ["record_representation", "storable"]


def storable(v: Any) -> Any:
    """A value .h5ad can hold (anndata writes None, bool, numbers, strings, lists and dicts of them).

    NumPy scalars become Python numbers, arrays and tuples become lists, a list of dicts becomes a dict keyed
    by position, anything else its ``str``.
    """
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    if isinstance(v, Mapping):
        return {str(k): storable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        items = [storable(x) for x in v]
        if items and all(isinstance(x, Mapping) for x in items):  # list of dicts -> dict keyed by position
            return {str(i): x for i, x in enumerate(items)}
        return items
    return str(v)


def record_representation(samples, key: str, X: np.ndarray, rec: dict, names: Sequence[str] | None = None) -> None:
    """Store ``X`` in ``samples.obsm[key]`` and its provenance in ``samples.uns['representations'][key]``."""
    samples.obsm[key] = np.ascontiguousarray(X, dtype=np.float32)
    if names is not None:
        samples.uns[K.uns.feature_names(key)] = np.asarray(list(names), dtype=object)
    reps = samples.uns.get(K.uns.representations)
    reps = dict(reps) if isinstance(reps, Mapping) else {}
    reps[key] = storable(rec)
    samples.uns[K.uns.representations] = reps
