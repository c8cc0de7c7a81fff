"""Representations of samples, written into ``samples.obsm['X_<name>']`` with provenance in
``samples.uns['representations']`` (the bridges between the AnnData levels and :mod:`tissuegraph.models`).

- :func:`gnn`: GNN embeddings of every sample's cell graph (untrained twin from a seed, or a trained model);
  :func:`gnn_twins`: several untrained twins (default 5 seeds), also on topology only;
  :func:`train_gnn`: offline training (deep graph infomax, GraphCL, masked features, supervised).
- :func:`patches`, :func:`patch_twins`, :func:`train_patches`: timm patch encoders (CNN / ViT) on the
  samples' pixels, their untrained twins, offline training (SimCLR, supervised);
- :func:`color`: the non-learned colour / intensity control;
- :func:`cells`: per-nucleus embeddings of the cells AnnData, pooled inside each nucleus from a tile's
  feature map (one forward pass per tile, never one crop per nucleus).

Light at import: torch, torch-geometric and timm load inside the functions.
"""

from __future__ import annotations

from ._cells import cells
from ._color import color
from ._gnn import INPUTS, gnn, gnn_twins, train_gnn
from ._patches import patch_twins, patches, train_patches

__all__ = ["gnn", "gnn_twins", "train_gnn", "patches", "patch_twins", "train_patches", "color", "cells"]
