"""Shared by the examples: where outputs go and how big the synthetic slide is.

Environment variables (the test suite sets them small):
- ``TG_EXAMPLE_OUT``: output folder (default ``./tissuegraph_examples``);
- ``TG_EXAMPLE_SIZE``: edge of the synthetic slide in pixels (default 2048, ~3,000 nuclei).
"""

from __future__ import annotations

import os
from pathlib import Path

OUT = Path(os.environ.get("TG_EXAMPLE_OUT", "tissuegraph_examples"))
SIZE = int(os.environ.get("TG_EXAMPLE_SIZE", "2048"))


def run_dir() -> Path:
    """The folder of a pipeline run on the synthetic slide (made by slide_analysis.py; made here if missing)."""
    import tissuegraph as tg

    out = OUT / "run"
    if not (out / "cells.h5ad").exists():
        tg.pipeline.demo(out, size=SIZE, segmenter="watershed", seed=0)
    return out
