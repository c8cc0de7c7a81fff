"""Pictures (matplotlib): slide overlays, segmentation checks, embeddings, tl results, evaluation
tables and plate heatmaps.

Every function returns its Axes (the grid returns an array of Axes), takes ``ax=``, ``show=`` and
``save=`` (a path), and when its input is missing says which function to run first.
matplotlib is imported when a function is called, not with ``tissuegraph.pl``.
"""

from ._slide import *  # noqa: F401,F403
from ._slide import __all__ as _s
from ._tl import *  # noqa: F401,F403
from ._tl import __all__ as _t
from ._eval import *  # noqa: F401,F403
from ._eval import __all__ as _e
from ._plate import *  # noqa: F401,F403
from ._plate import __all__ as _p

__all__ = [*_s, *_t, *_e, *_p]
