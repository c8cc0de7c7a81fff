"""Torch modules only (tensors in, tensors out; never AnnData): patch encoders and their training.

Imported lazily: ``import tissuegraph`` does not import torch; ``tg.models.PatchEncoder`` does.
"""

from __future__ import annotations

__all__ = ["PatchEncoder", "train_patch_simclr", "train_patch_supervised"]

_LAZY = {"PatchEncoder": ("patch", "PatchEncoder"),
         "train_patch_simclr": ("_patch_train", "train_patch_simclr"),
         "train_patch_supervised": ("_patch_train", "train_patch_supervised")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{mod}", __name__), attr)
    raise AttributeError(f"module 'tissuegraph.models' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
