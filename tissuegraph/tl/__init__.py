"""Downstream analysis on the cells AnnData (scanpy/squidpy style): neighbourhood enrichment,
co-occurrence, interaction matrix, Moran's I, cellular niches, and scanpy embeddings of any
representation.

Every function takes the AnnData first, the rest keyword-only, writes under ``key_added`` (squidpy's
key names by default, so ``squidpy.pl.*`` can draw the results), records its parameters, and never
forms an n x n dense matrix.
"""

from ._nhood import *  # noqa: F401,F403
from ._nhood import __all__ as _n
from ._cooccur import *  # noqa: F401,F403
from ._cooccur import __all__ as _c
from ._autocorr import *  # noqa: F401,F403
from ._autocorr import __all__ as _a
from ._niche import *  # noqa: F401,F403
from ._niche import __all__ as _ni
from ._embed import *  # noqa: F401,F403
from ._embed import __all__ as _e

__all__ = [*_n, *_c, *_a, *_ni, *_e]
