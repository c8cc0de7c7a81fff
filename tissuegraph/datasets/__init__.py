"""Synthetic data with ground truth, and loaders of real data sets from local paths."""

from ._synthetic import *  # noqa: F401,F403
from ._synthetic import __all__ as _s
from ._real import *  # noqa: F401,F403
from ._real import __all__ as _r

__all__ = [*_s, *_r]
