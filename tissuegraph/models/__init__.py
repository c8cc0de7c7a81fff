"""Torch modules only: tensors in, tensors out (never AnnData).

- GNN encoders built from torch-geometric's own layers (:class:`GNNEncoder`, :func:`gnn_encoder`), the
  graph batch they read (:class:`GraphBatch`) and their offline training (:func:`train_gnn_encoder`:
  deep graph infomax, GraphCL-style contrastive, masked-feature reconstruction, supervised).
- Saving and loading a model as ``model.safetensors`` + ``card.json`` (:func:`save_model`,
  :func:`load_model`, :func:`weights_sha256`).
- Patch encoders through timm (:class:`PatchEncoder`: any architecture, seeded random or local weights,
  pooled intermediate blocks) and their training (:func:`train_patch_simclr`, :func:`train_patch_supervised`).

``import tissuegraph.models`` is light: torch and torch-geometric are imported on first use of a name
(module-level ``__getattr__``), so ``tg.models`` can be listed and documented without them.
"""

from __future__ import annotations

import importlib

# public name -> submodule that defines it (imported on first access)
_LAZY = {
    "GNNEncoder": "gnn",
    "GraphBatch": "gnn",
    "gnn_encoder": "gnn",
    "CONVS": "gnn",
    "train_gnn_encoder": "_gnn_train",
    "OBJECTIVES": "_gnn_train",
    "save_model": "_io",
    "load_model": "_io",
    "load_weights": "_io",
    "weights_sha256": "_io",
    # patch encoders (tissuegraph/models/patch.py, tissuegraph/models/_weights.py)
    "PatchEncoder": "patch",
    "train_patch_simclr": "_patch_train",
    "train_patch_supervised": "_patch_train",
}

__all__ = ["GNNEncoder", "GraphBatch", "gnn_encoder", "train_gnn_encoder", "save_model", "load_model",
           "load_weights", "weights_sha256", "PatchEncoder", "train_patch_simclr", "train_patch_supervised"]

# submodules that may define further public names (the patch encoders); searched for names not above
_FALLBACK = ("patch", "_weights")


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    mod_name = _LAZY.get(name)
    if mod_name is not None:
        value = getattr(importlib.import_module(f"{__name__}.{mod_name}"), name)
        globals()[name] = value
        return value
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
    raise AttributeError(f"module 'tissuegraph.models' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
