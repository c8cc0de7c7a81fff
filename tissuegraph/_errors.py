"""Exception hierarchy.

Every error that tissuegraph raises on purpose derives from :class:`TissuegraphError`, so callers can
catch the library's own complaints in one place.  Each class also derives from the closest builtin
(``ValueError``, ``OSError``, ...) so generic ``except`` clauses keep working.
"""

from __future__ import annotations

__all__ = [
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


class TissuegraphError(Exception):
    """Base class of every error raised by tissuegraph.

    ``cli=`` optionally gives the same message worded for the command line (naming ``--options``
    instead of Python keyword arguments); the ``tissuegraph`` command prints :meth:`for_cli`.
    """

    def __init__(self, *args, cli: str | None = None):
        super().__init__(*args)
        self.cli = cli

    def for_cli(self) -> str:
        """The message for a command-line user (the ``cli=`` wording if one was given)."""
        return self.cli if self.cli else str(self)


class InputError(TissuegraphError, ValueError):
    """An argument or a data object has the wrong shape, type, range or content."""


class SlideError(TissuegraphError, OSError):
    """A slide or image file cannot be opened or read."""


class SlideNotFoundError(SlideError, FileNotFoundError):
    """The slide path does not exist."""


class SlideFormatError(SlideError):
    """The file exists but is not a readable image (corrupt, truncated, or not an image at all)."""


class MissingMppError(TissuegraphError, ValueError):
    """A physical unit (µm) was needed but the slide's pixel size (µm/px) is unknown."""


class NoTissueError(TissuegraphError, ValueError):
    """Raised only where a caller asked for tissue to be required (``require_tissue=True``)."""


class WeightsUnavailableError(TissuegraphError, OSError):
    """Pretrained weights could not be found locally and cannot be downloaded."""


class DependencyError(TissuegraphError, ImportError):
    """An optional dependency needed by this function is not installed."""
