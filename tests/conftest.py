"""Shared fixtures: real data location (skips when absent), quiet progress bars, offline Keras home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tissuegraph._compat import before_tensorflow  # noqa: E402

# tests import tensorflow (StarDist) and torch in the same worker, in any order: the installed
# tissuegraph-tf-local.pth already keeps TensorFlow's symbols local; this repeats it for a run without it
# (see tissuegraph/_compat.py)
before_tensorflow()

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    env = os.environ.get("TISSUEGRAPH_SHARED_DATA")
    p = Path(env) if env else REPO.parent / "shared" / "data"
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    p = shared_data_dir()
    if p is None:
        pytest.skip("../shared/data is not available on this machine")
    return p


@pytest.fixture(autouse=True, scope="session")
def _quiet_and_offline(tmp_path_factory):
    import tissuegraph as tg

    tg.settings.progress = False
    os.environ.setdefault("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))
    os.environ.setdefault("TISSUEGRAPH_CACHE_DIR", str(tmp_path_factory.mktemp("tg_cache")))
    yield
