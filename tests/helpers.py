"""Small image generators with exact ground truth, shared by tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark_script(name: str):
    """Import ``benchmarks/<name>.py`` as module ``name`` (scripts are not a package; their folder is on
    ``sys.path`` only while they load, for scripts that import a sibling)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, mod)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return mod


def disks_image(shape=(600, 800), n=60, r_range=(5, 11), seed=0, rgb=True):
    """Dark non-touching disks on a light background, with their exact label image."""
    rng = np.random.default_rng(seed)
    h, w = shape
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[0:h, 0:w]
    centres = []
    k = 0
    tries = 0
    while k < n and tries < 20 * n:
        tries += 1
        r = rng.uniform(*r_range)
        cy, cx = rng.uniform(r + 1, h - r - 1), rng.uniform(r + 1, w - r - 1)
        if any((cy - y) ** 2 + (cx - x) ** 2 < (r + rr + 3) ** 2 for y, x, rr in centres):
            continue
        k += 1
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
        centres.append((cy, cx, r))
    img = np.where(labels > 0, 60, 230).astype(np.uint8)
    if rgb:
        img = np.stack([img, (img * 0.8).astype(np.uint8), np.clip(img.astype(int) + 20, 0, 255).astype(np.uint8)],
                       axis=-1)
    return img, labels
