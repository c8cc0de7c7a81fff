"""Global settings (``tg.settings``), scanpy-style.

>>> import tissuegraph as tg
>>> tg.settings.n_jobs = 2
>>> tg.settings.seed = 0
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _default_cache_dir() -> Path:
    env = os.environ.get("TISSUEGRAPH_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tissuegraph"


@dataclass
class Settings:
    """Process-wide defaults. Functions take explicit arguments that override these."""

    n_jobs: int = 1
    """Worker processes/threads for tiled work. ``-1`` means all cores."""
    device: str = "cpu"
    """Torch device for models (``'cpu'``, ``'cuda'``, ``'cuda:1'`` ...)."""
    seed: int = 0
    """Default seed for every random choice."""
    cache_dir: Path = field(default_factory=_default_cache_dir)
    """Where downloaded or converted weights and intermediate results are kept."""
    progress: bool = True
    """Show tqdm progress bars on long work."""
    release_memory: bool = True
    """Give freed memory back to the operating system during tiled work (glibc only): large buffers are
    memory-mapped (a fixed 1 MiB ``M_MMAP_THRESHOLD``, set once per process) and ``malloc_trim`` runs after
    every tile. Without it, peak RSS creeps up with the number of tiles (heap fragmentation across worker
    threads). Set to ``False`` to leave the process's allocator untouched."""

    def resolve_n_jobs(self, n_jobs: int | None = None) -> int:
        n = self.n_jobs if n_jobs is None else n_jobs
        if n is None or n == 0:
            return 1
        if n < 0:
            return max(1, (os.cpu_count() or 1) + 1 + n)
        return int(n)


settings = Settings()
