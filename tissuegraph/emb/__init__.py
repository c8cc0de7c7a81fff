"""Representations of samples, written into ``samples.obsm['X_<name>']`` with provenance in
``samples.uns['representations']`` (the bridges between the AnnData levels and :mod:`tissuegraph.models`).

- :func:`gnn`: GNN embeddings of every sample's cell graph (untrained twin from a seed, or a trained model);
  :func:`gnn_twins`: several untrained twins (default 5 seeds), also on topology only;
  :func:`train_gnn`: offline training (deep graph infomax, GraphCL, masked features, supervised).
- Patch encoders (CNN/ViT) and the colour control are in ``tissuegraph.emb`` as well (see their modules).

Light at import: torch and torch-geometric load inside the functions.
"""

from __future__ import annotations

import importlib

from ._gnn import INPUTS, gnn, gnn_twins, train_gnn

__all__ = ["gnn", "gnn_twins", "train_gnn"]

# other producers of representations (patch encoders, colour control) are imported on first access
_FALLBACK = ("_patches", "_patch", "_color")


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    for mod_name in _FALLBACK:
        try:
            mod = importlib.import_module(f"{__name__}.{mod_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{mod_name}":
                raise
            continue
        if hasattr(mod, name):
            value = getattr(mod, name)
            globals()[name] = value
            return value
    raise AttributeError(f"module 'tissuegraph.emb' has no attribute {name!r}")
