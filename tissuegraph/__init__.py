"""tissuegraph: graph-based tissue analysis, and an honest comparison of learned representations
with structural and untrained baselines.

``import tissuegraph as tg`` is light: heavy dependencies (torch, tensorflow, stardist, openslide,
scanpy) are imported only inside the functions that need them.  Submodules load on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._errors import (
    DependencyError,
    InputError,
    MissingMppError,
    NoTissueError,
    SlideError,
    SlideFormatError,
    SlideNotFoundError,
    TissuegraphError,
    WeightsUnavailableError,
)
from ._compat import keep_tensorflow_local as _keep_tensorflow_local
from ._settings import settings
from ._version import __version__

# TensorFlow (StarDist) and triton (torch) must load in either order: see tissuegraph/_compat.py
_keep_tensorflow_local()

_SUBMODULES = ("io", "datasets", "seg", "feat", "graph", "models", "emb", "culture", "eval", "tl", "pl",
               "pipeline", "cli", "report", "bench")

__all__ = [
    "__version__",
    "settings",
    *_SUBMODULES,
    "TissuegraphError",
    "InputError",
    "SlideError",
    "SlideNotFoundError",
    "SlideFormatError",
    "MissingMppError",
    "NoTissueError",
    "WeightsUnavailableError",
    "DependencyError",
]

if TYPE_CHECKING:  # pragma: no cover
    from . import cli, datasets, feat, graph, io, pipeline, seg  # noqa: F401


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tissuegraph' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
