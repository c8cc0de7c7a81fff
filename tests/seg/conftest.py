"""Session fixtures for the segmentation tests: a tiny StarDist model trained once per session."""

from __future__ import annotations

import os

import numpy as np
import pytest

# Tests that train must give the same numbers on every run and machine: deterministic TensorFlow
# kernels, no oneDNN (its kernels and their float summation order depend on the CPU), and one
# TensorFlow thread (the summation order would otherwise depend on the core count).  Set here, at
# collection, before any test imports TensorFlow; an explicit environment setting wins.
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TISSUEGRAPH_TF_THREADS", "1")


@pytest.fixture(scope="session")
def nuclei_2d():
    """StarDist's packaged real fluorescence image (512x512, uint16) and its instance mask."""
    pytest.importorskip("stardist")
    from stardist.data import test_image_nuclei_2d

    img, lab = test_image_nuclei_2d(return_mask=True)
    return np.asarray(img), np.asarray(lab).astype(np.int32)


@pytest.fixture(scope="session")
def keras_home(tmp_path_factory):
    """Point Keras' cache (where StarDist downloads pretrained models) at an empty temporary folder."""
    path = tmp_path_factory.mktemp("keras_home")
    old = os.environ.get("KERAS_HOME")
    os.environ["KERAS_HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("KERAS_HOME", None)
    else:
        os.environ["KERAS_HOME"] = old


@pytest.fixture(scope="session")
def tiny_stardist(tmp_path_factory, keras_home, nuclei_2d):
    """A tiny StarDist model (U-Net depth 2, 16 filters) trained for 250 steps on three 256x256
    quadrants of the packaged image, validated on the fourth (about 30 s on 2 CPU cores)."""
    pytest.importorskip("tensorflow")
    import tissuegraph as tg

    img, lab = nuclei_2d
    X = [img[:256, :256], img[:256, 256:], img[256:, :256]]
    Y = [lab[:256, :256], lab[:256, 256:], lab[256:, :256]]
    basedir = tmp_path_factory.mktemp("stardist_models")
    return tg.seg.train_stardist(
        X, Y, validation=([img[256:, 256:]], [lab[256:, 256:]]), patch_size=(64, 64), unet_n_depth=2,
        unet_n_filter_base=16, net_conv_after_unet=32, epochs=10, steps_per_epoch=25, batch_size=8,
        learning_rate=3e-3, basedir=basedir, name="tiny", seed=0, n_threads=1,
    )
