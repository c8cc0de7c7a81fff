"""Cell graphs (kNN, radius, Delaunay), converters (PyG, networkx), samples and structural descriptors."""

from ._build import *  # noqa: F401,F403
from ._build import __all__ as _b
from ._convert import *  # noqa: F401,F403
from ._convert import __all__ as _c
from ._samples import *  # noqa: F401,F403
from ._samples import __all__ as _s
from ._descriptors import *  # noqa: F401,F403
from ._descriptors import __all__ as _d

__all__ = [*_b, *_c, *_s, *_d]
