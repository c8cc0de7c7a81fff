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
