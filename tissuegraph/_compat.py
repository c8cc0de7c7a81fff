"""Work-arounds for clashes between heavy dependencies, in one place."""

from __future__ import annotations

__all__ = ["keep_tensorflow_local", "before_tensorflow", "before_torch", "tensorflow_symbols_global",
           "tune_allocator", "release_memory"]

# ------------------------------------------------------------------- TensorFlow and triton in one process
# TensorFlow's wheels (2.20 and 2.21 checked) load ``_pywrap_tensorflow_internal`` with RTLD_GLOBAL
# (``tensorflow/python/pywrap_dlopen_global_flags.py``). That puts every symbol of
# ``libtensorflow_framework.so.2`` / ``libtensorflow_cc.so.2`` -- a private copy of LLVM among them -- into
# the process's global symbol scope. ``libtriton.so`` (triton comes with torch 2.14's CUDA build) has its
# own, different LLVM; loaded later, about 12,000 of its LLVM references bind to TensorFlow's copy and its
# static initialisers crash (SIGSEGV in ``llvm::DebugCounter``, ``_GLOBAL__sub_I_PassBuilder.cpp``).
# ``import torchvision`` / ``timm`` (torch._dynamo), ``import umap`` and scanpy's ``neighbors`` reach triton.
#
# The fix removes the cause: TensorFlow's libraries are loaded RTLD_LOCAL, which is what TensorFlow's own
# loader does when that one module is absent (its extension links its libraries explicitly), so its LLVM
# stays private. The one-line ``tissuegraph-tf-local.pth`` that tissuegraph installs into site-packages
# applies it at interpreter start-up, so it holds for any import order in any program of that
# environment; ``import tissuegraph`` applies it again (for installs that skipped the .pth). Opt out with
# ``TISSUEGRAPH_TF_RTLD_GLOBAL=1``. Where TensorFlow was nevertheless loaded the global way first,
# :func:`before_torch` loads triton with RTLD_DEEPBIND (its own symbols first) before tissuegraph touches
# torch. The routes weighed are in docs/architecture.md.

TF_GLOBAL_FLAGS_MODULE = "tensorflow.python.pywrap_dlopen_global_flags"
OPT_OUT_ENV = "TISSUEGRAPH_TF_RTLD_GLOBAL"
_DEEPBOUND = False


def keep_tensorflow_local() -> bool:
    """Make a later ``import tensorflow`` load TensorFlow's native libraries RTLD_LOCAL.

    Returns True when the guard is in effect. It must be set before TensorFlow is first imported; once
    TensorFlow is loaded nothing changes. Cheap: it imports nothing.
    """
    import os
    import sys

    if os.environ.get(OPT_OUT_ENV, "") not in ("", "0"):
        return False
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault(TF_GLOBAL_FLAGS_MODULE, None)
    return TF_GLOBAL_FLAGS_MODULE in sys.modules and sys.modules[TF_GLOBAL_FLAGS_MODULE] is None


def tensorflow_symbols_global() -> bool:
    """True when TensorFlow is loaded in this process and exported its symbols globally (RTLD_GLOBAL)."""
    import sys

    return "tensorflow" in sys.modules and sys.modules.get(TF_GLOBAL_FLAGS_MODULE) is not None


def before_tensorflow() -> None:
    """Call before the first ``import tensorflow`` (tissuegraph's StarDist backend does)."""
    keep_tensorflow_local()


def before_torch() -> None:
    """Call before tissuegraph imports torchvision, timm, torch-geometric or torch._dynamo.

    A no-op unless TensorFlow is already loaded with global symbols (an environment without tissuegraph's
    .pth, where tensorflow was imported before tissuegraph). Then triton is loaded with RTLD_DEEPBIND, so
    it resolves LLVM against its own copy, before anything can load it the default way.
    """
    global _DEEPBOUND
    import sys

    if _DEEPBOUND or "triton" in sys.modules or not tensorflow_symbols_global():
        return
    import importlib
    import importlib.util
    import os

    _DEEPBOUND = True
    if importlib.util.find_spec("triton") is None:
        return
    flags = sys.getdlopenflags()
    try:
        sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
        importlib.import_module("triton")
    except Exception:  # noqa: BLE001 - triton unusable here; torch runs without it on the CPU
        pass
    finally:
        sys.setdlopenflags(flags)


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
