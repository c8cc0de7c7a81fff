"""Work-arounds for clashes between heavy dependencies, in one place."""

from __future__ import annotations

import importlib

__all__ = ["before_tensorflow"]

_DONE = False


def before_tensorflow() -> None:
    """Call before the first ``import tensorflow``.

    Importing ``triton`` (pulled in by torch / torch-geometric) *after* TensorFlow crashes the process
    with a segmentation fault (a native-library clash, seen with tensorflow-cpu 2.21 and the CUDA build
    of torch 2.14); importing it first is safe. So whenever tissuegraph is about to load TensorFlow, it
    loads triton first if it is installed. A user who imports tensorflow before tissuegraph should
    ``import torch_geometric`` (or ``triton``) before tensorflow.
    """
    global _DONE
    if _DONE:
        return
    import sys

    if "tensorflow" not in sys.modules:
        try:
            importlib.import_module("triton")
        except Exception:  # noqa: BLE001 - not installed, or unusable on this machine: nothing to protect
            pass
    _DONE = True
