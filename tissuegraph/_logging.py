"""One logger for the whole package, with timings.

Library code never calls ``print``; it logs through ``tissuegraph._logging.logger`` and shows tqdm
progress bars for long work (see :func:`progress`).
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

from ._settings import settings

logger = logging.getLogger("tissuegraph")
logger.addHandler(logging.NullHandler())

T = TypeVar("T")


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is at the time of each record (test
    runners and notebooks replace it; a handler bound to an old, closed stream prints
    "--- Logging error ---" tracebacks)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def set_verbosity(level: int | str = "INFO") -> None:
    """Send tissuegraph's log to stderr at ``level`` (used by the CLI)."""
    if isinstance(level, str):
        level = getattr(logging, level.upper())
    logger.setLevel(level)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.NullHandler)
               for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                               datefmt="%H:%M:%S"))
        logger.addHandler(handler)


@contextmanager
def timed(what: str, *, level: int = logging.INFO, timings: dict | None = None) -> Iterator[None]:
    """Log how long the block took; optionally store the seconds in ``timings[what]``."""
    t0 = time.perf_counter()
    logger.log(level, "%s ...", what)
    try:
        yield
    finally:
        dt = time.perf_counter() - t0
        if timings is not None:
            timings[what] = timings.get(what, 0.0) + dt
        logger.log(level, "%s done in %.2fs", what, dt)


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str | None = None,
             enabled: bool | None = None, unit: str = "it") -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar when progress is enabled (argument, else ``settings.progress``)."""
    enabled = settings.progress if enabled is None else enabled
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(*, total: int, desc: str | None = None, enabled: bool | None = None, unit: str = "it"):
    """A manual tqdm bar (``update``/``close``, context manager), or a no-op one when disabled."""
    enabled = settings.progress if enabled is None else enabled
    if not enabled:
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)
