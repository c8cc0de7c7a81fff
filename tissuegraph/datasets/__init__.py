"""Synthetic data with ground truth, and loaders of real data sets from local paths."""

from ._synthetic import *  # noqa: F401,F403
from ._synthetic import __all__ as _s
from ._real import *  # noqa: F401,F403
from ._real import __all__ as _r
from ._loaders import *  # noqa: F401,F403
from ._loaders import __all__ as _l
from ._diagnostic import *  # noqa: F401,F403
from ._diagnostic import __all__ as _d

__all__ = [*_s, *_r, *_l, *_d]
