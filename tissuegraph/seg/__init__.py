"""Nuclei segmentation across whole slides: StarDist, a classical watershed, user labels; metrics."""

from ._metrics import *  # noqa: F401,F403
from ._metrics import __all__ as _m
from ._watershed import *  # noqa: F401,F403
from ._watershed import __all__ as _w
from ._stardist import *  # noqa: F401,F403
from ._stardist import __all__ as _sd
from ._train import *  # noqa: F401,F403
from ._train import __all__ as _t
from ._byo import *  # noqa: F401,F403
from ._points import *  # noqa: F401,F403
from ._points import __all__ as _p
from ._byo import __all__ as _b
from ._stainnorm import *  # noqa: F401,F403
from ._stainnorm import __all__ as _sn
from ._backends import *  # noqa: F401,F403
from ._backends import __all__ as _be
from ._runner import *  # noqa: F401,F403
from ._runner import __all__ as _r

__all__ = [*_m, *_w, *_sd, *_t, *_b, *_p, *_sn, *_be, *_r]
