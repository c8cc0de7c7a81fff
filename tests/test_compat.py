"""TensorFlow (StarDist), torch (triton, torchvision, timm, torch-geometric) and scanpy in one process.

TensorFlow's wheels export their private LLVM into the global symbol scope; triton's LLVM then crashed
at load time (issue 15). tissuegraph installs ``tissuegraph-tf-local.pth``, which makes TensorFlow load its
libraries RTLD_LOCAL at start-up, so every import order works in a user's own program. Each case runs in
a fresh interpreter, because a crash is a SIGSEGV of the whole process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(code: str, *, timeout: int = 600, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "TISSUEGRAPH_TF_RTLD_GLOBAL"}
    full_env.update({"TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd)


def _check(out: subprocess.CompletedProcess) -> str:
    crashed = out.returncode < 0 or out.returncode == 139
    assert not crashed, f"the interpreter crashed (exit {out.returncode}):\n{out.stderr[-3000:]}"
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


# The orders of issue 15's table (each was a segfault before the fix), a user's own order without
# tissuegraph, and tissuegraph's own paths in both directions.
IMPORT_ORDERS = {
    "tf_then_triton": "import tensorflow; import triton",
    "tf_then_dynamo": "import tensorflow; import torch._dynamo",
    "tf_then_torchvision": "import tensorflow; import torchvision",
    "torch_then_umap": "import torch; import umap",
    "everything": "import torch, tensorflow, torchvision, timm, torch_geometric",
    "scanpy_tf_then_tissuegraph": "import scanpy, tensorflow, torchvision, tissuegraph, torch_geometric",
    "triton_first": "import triton; import tensorflow; import torchvision",
}


@pytest.mark.parametrize("name", sorted(IMPORT_ORDERS))
def test_import_orders_do_not_crash(name):
    pytest.importorskip("tensorflow")
    pytest.importorskip("triton")
    _check(_run(IMPORT_ORDERS[name] + "\nprint('ok')"))


def test_guard_is_installed_at_interpreter_start():
    """The .pth acts before any import: a program that never imports tissuegraph is protected too."""
    code = """
        import sys
        print(repr(sys.modules.get("tensorflow.python.pywrap_dlopen_global_flags", "missing")))
    """
    assert _check(_run(code)).split()[-1] == "None"
    # the opt-out leaves TensorFlow's own behaviour alone
    assert _check(_run(code, env={"TISSUEGRAPH_TF_RTLD_GLOBAL": "1"})).split()[-1] == "'missing'"


def test_deepbind_fallback_when_tensorflow_was_loaded_globally():
    """Without the guard (opt-out), tensorflow first, then tissuegraph's own torch path still works."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("triton")
    code = """
        import tensorflow
        import tissuegraph as tg
        from tissuegraph import _compat
        assert _compat.tensorflow_symbols_global()
        import numpy as np, anndata as ad
        from scipy import sparse
        cells = ad.AnnData(np.ones((3, 2), np.float32))
        cells.obsm["spatial"] = np.array([[0., 0.], [1., 0.], [0., 1.]])
        tg.graph.knn(cells, k=2)
        data = tg.graph.to_pyg(cells)          # loads torch_geometric (and triton) after tensorflow
        import torchvision, timm, torch
        out = torchvision.models.resnet18().eval()(torch.zeros(1, 3, 32, 32))
        print(data.num_nodes, tuple(out.shape))
    """
    assert _check(_run(code, env={"TISSUEGRAPH_TF_RTLD_GLOBAL": "1"})).split()[-3:] == ["3", "(1,", "1000)"]


def test_keep_tensorflow_local_respects_opt_out_and_loaded_tensorflow(monkeypatch):
    from tissuegraph import _compat

    key = _compat.TF_GLOBAL_FLAGS_MODULE
    monkeypatch.delitem(sys.modules, key, raising=False)
    monkeypatch.setenv(_compat.OPT_OUT_ENV, "1")
    assert _compat.keep_tensorflow_local() is False and key not in sys.modules
    monkeypatch.delenv(_compat.OPT_OUT_ENV)
    if "tensorflow" in sys.modules:  # too late to change how TensorFlow was loaded in this process
        assert key not in sys.modules
    else:
        assert _compat.keep_tensorflow_local() is True and sys.modules[key] is None


def test_stardist_then_torch_models_and_back(tmp_path):
    """tissuegraph's StarDist (TensorFlow) followed by timm, torchvision and torch-geometric, and the reverse."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("stardist")
    seg = """
        import numpy as np, tissuegraph as tg
        from stardist.data import test_image_nuclei_2d
        img = test_image_nuclei_2d()[:256, :256]
        n = len(tg.seg.nuclei(img, method="stardist", progress=False, mask="all"))
    """
    torch_models = """
        import torch, timm, torchvision
        from torch_geometric.nn import GINConv
        x = torch.zeros(2, 3, 32, 32)
        t = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()(x)
        v = torchvision.models.resnet18().eval()(x)
        g = GINConv(torch.nn.Linear(4, 4))(torch.ones(3, 4), torch.tensor([[0, 1], [1, 2]]))
    """
    tail = "\nprint(n > 20, tuple(t.shape), tuple(v.shape), tuple(g.shape))"
    for code in (seg + torch_models, torch_models + seg):
        out = _check(_run(textwrap.dedent(code) + tail)).strip().splitlines()[-1]
        assert out == "True (2, 512) (2, 1000) (3, 4)", out


@pytest.fixture(scope="module")
def pipeline_outputs(tmp_path_factory):
    """cells.h5ad (>= 10,000 nuclei) and samples.h5ad from the real pipeline on a synthetic slide."""
    import tissuegraph as tg

    d = tmp_path_factory.mktemp("compat_run")
    slide = tg.datasets.synthetic_slide(d / "syn.tiff", size=3584, seed=5, progress=False)
    res = tg.pipeline.run(slide.path, d / "out", segmenter="watershed", graph="delaunay", sample_size_um=128,
                          progress=False)
    assert res.cells.n_obs >= 10_000
    return d / "out"


@pytest.mark.slow
def test_scanpy_neighbors_umap_leiden_after_tensorflow(pipeline_outputs):
    """A user's own session: scanpy and tensorflow first, then scanpy's graph tools on both AnnData levels."""
    pytest.importorskip("tensorflow")
    code = f"""
        import scanpy as sc, tensorflow, umap
        import anndata as ad, numpy as np
        out = {str(pipeline_outputs)!r}
        for name in ("cells", "samples"):
            a = ad.read_h5ad(out + "/" + name + ".h5ad")
            if name == "samples":
                a = ad.AnnData(np.nan_to_num(a.obsm["X_structural"]).astype(np.float32), obs=a.obs)
            sc.pp.pca(a, n_comps=min(20, a.n_vars - 1, a.n_obs - 1))
            sc.pp.neighbors(a, n_neighbors=10)
            sc.tl.umap(a)
            sc.tl.leiden(a, flavor="igraph", n_iterations=2, resolution=0.5)
            assert np.isfinite(a.obsm["X_umap"]).all()
            print(name, a.n_obs, a.obs["leiden"].nunique())
        import tissuegraph, torchvision
    """
    lines = _check(_run(code)).strip().splitlines()[-2:]
    (c_name, c_n, c_k), (s_name, s_n, s_k) = (ln.split() for ln in lines)
    assert c_name == "cells" and int(c_n) >= 10_000 and int(c_k) >= 2
    assert s_name == "samples" and int(s_n) >= 10 and int(s_k) >= 1


def test_scanpy_neighbors_above_pynndescent_threshold():
    """scanpy 1.11.5 calls ``getnnz`` on pynndescent's graph (> 4,096 observations): it must be a csr_matrix."""
    import anndata as ad
    import numpy as np
    import scanpy as sc

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=6.0, size=(4, 12))
    x = (centres[np.repeat(np.arange(4), 3000)] + rng.normal(size=(12_000, 12))).astype(np.float32)
    a = ad.AnnData(x)
    sc.pp.neighbors(a, n_neighbors=10, use_rep="X")
    sc.tl.leiden(a, flavor="igraph", n_iterations=2, resolution=0.1)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(np.repeat(np.arange(4), 3000), a.obs["leiden"]) > 0.95


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python example"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs(tmp_path):
    """The README's Python example, verbatim except for the slide path, in a fresh interpreter."""
    import tissuegraph as tg

    slide = tg.datasets.synthetic_slide(tmp_path / "syn.tiff", size=1536, seed=2, progress=False)
    code = _readme_example()
    assert '"slide.svs"' in code
    code = "import tissuegraph as tg\ntg.settings.progress = False\n" + code.replace('"slide.svs"', repr(str(slide.path)))
    # in tmp_path: the example writes what a user's would (e.g. the saved model "gnn_dgi/"), never into the repo
    _check(_run(code + "\nprint('README example ok')", cwd=tmp_path))
    assert (tmp_path / "gnn_dgi" / "card.json").is_file()


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
