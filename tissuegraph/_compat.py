"""Work-arounds for clashes between heavy dependencies, in one place."""

from __future__ import annotations

import importlib

__all__ = ["before_tensorflow", "tune_allocator", "release_memory"]

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


# --------------------------------------------------------------------------------------------- memory
_LIBC = None
_TUNED = False
_M_MMAP_THRESHOLD = -3  # mallopt parameter number (glibc malloc.h)


def _glibc():
    """The process's glibc, or ``None`` (other C libraries, other systems)."""
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        import platform

        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                _LIBC = libc
            except (OSError, AttributeError):
                pass
    return _LIBC or None


def tune_allocator() -> None:
    """Fix glibc's mmap threshold at 1 MiB (once per process; see ``tg.settings.release_memory``).

    glibc raises the threshold each time a memory-mapped block is freed (up to 32 MiB), after which the
    per-tile numpy buffers of tiled work come from the heap arenas of each thread and fragment them, so
    peak RSS grows with the number of tiles. With a fixed threshold every buffer above 1 MiB is mapped and
    returned to the system when freed.
    """
    global _TUNED
    from ._settings import settings

    if _TUNED or not settings.release_memory:
        return
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    _TUNED = True


def release_memory() -> None:
    """Return free heap pages to the system (glibc ``malloc_trim``); a no-op elsewhere or when disabled."""
    from ._settings import settings

    if settings.release_memory:
        libc = _glibc()
        if libc is not None:
            libc.malloc_trim(0)
