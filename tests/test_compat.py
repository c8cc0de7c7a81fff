"""TensorFlow (StarDist) and torch/torch-geometric (converters, GNNs) must live in one process."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_stardist_then_pyg_in_one_process():
    pytest.importorskip("torch_geometric")
    pytest.importorskip("tensorflow")
    code = (
        "from tissuegraph.seg._stardist import _init_tensorflow\n"
        "tf = _init_tensorflow()\n"
        "import torch\n"
        "from torch_geometric.data import Data\n"
        "print(Data(x=torch.zeros(3, 2)).num_nodes, float(tf.reduce_sum(tf.constant([1.0, 2.0]))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["3", "3.0"]


class _FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


def test_allocator_tuning_follows_the_setting(monkeypatch):
    import tissuegraph as tg
    from tissuegraph import _compat

    fake = _FakeLibc()
    monkeypatch.setattr(_compat, "_LIBC", fake)
    monkeypatch.setattr(_compat, "_TUNED", False)
    monkeypatch.setattr(tg.settings, "release_memory", False)
    _compat.tune_allocator()
    _compat.release_memory()
    assert fake.calls == []  # disabled: the allocator is left alone
    monkeypatch.setattr(tg.settings, "release_memory", True)
    _compat.tune_allocator()
    _compat.tune_allocator()  # once per process
    _compat.release_memory()
    assert fake.calls == [("mallopt", -3, 1 << 20), ("malloc_trim", 0)]


def test_real_allocator_calls_are_harmless():
    from tissuegraph import _compat

    _compat._glibc()  # glibc on Linux, None elsewhere; never raises
    _compat.release_memory()


def test_runner_releases_memory_after_each_tile(monkeypatch):
    import numpy as np

    import tissuegraph as tg
    from tissuegraph import _compat
    from tissuegraph.seg import _runner

    fake = _FakeLibc()
    monkeypatch.setattr(_compat, "_LIBC", fake)
    monkeypatch.setattr(_compat, "_TUNED", False)
    img = np.zeros((300, 300), np.uint8)
    img[50:70, 50:70] = 200
    img[200:230, 100:125] = 200
    df = tg.seg.nuclei(img, method="watershed", tile_size=256, overlap=144, progress=False, mask="all")
    assert len(df) == 2
    n_tiles = df.attrs["n_tiles"]
    assert fake.calls[0] == ("mallopt", -3, 1 << 20)
    assert sum(c[0] == "malloc_trim" for c in fake.calls) == n_tiles
    assert _runner.release_memory is _compat.release_memory
