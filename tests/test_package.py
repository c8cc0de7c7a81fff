"""Package structure: light import, public API conventions (scanpy style), CLI entry point."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import tissuegraph as tg

HEAVY = ("torch", "tensorflow", "stardist", "openslide", "scanpy", "torch_geometric", "keras", "squidpy",
         "numba")
SUBMODULES = ("io", "datasets", "seg", "feat", "graph", "models", "emb")


def _imported_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(','.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.strip().split(","))


def test_import_is_light():
    mods = _imported_after("import tissuegraph")
    assert not [m for m in HEAVY if m in mods]


@pytest.mark.parametrize("sub", SUBMODULES)
def test_submodules_are_light_too(sub):
    mods = _imported_after(f"import tissuegraph as tg\ntg.{sub}")
    assert not [m for m in HEAVY if m in mods], f"tg.{sub} imports heavy dependencies at import time"


def _public_functions():
    for sub in SUBMODULES:
        mod = getattr(tg, sub)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isfunction(obj):
                yield f"tg.{sub}.{name}", obj


def test_public_functions_follow_the_conventions():
    problems = []
    for qual, fn in _public_functions():
        if not (fn.__doc__ or "").strip():
            problems.append(f"{qual}: no docstring")
        sig = inspect.signature(fn)
        positional = [p for p in sig.parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) > 2:
            problems.append(f"{qual}: {len(positional)} positional parameters; the rest must be keyword-only")
        anndata_args = [p.name for p in positional if p.name in ("adata", "cells", "samples")]
        if anndata_args and positional[0].name not in ("adata", "cells", "samples"):
            problems.append(f"{qual}: the AnnData argument {anndata_args[0]} must come first")
    assert not problems, "\n".join(problems)


def test_anndata_functions_record_params_and_return_none():
    """Graph builders follow scanpy: write in place with key_added, return None, params in uns."""
    for name in ("knn", "radius", "delaunay"):
        sig = inspect.signature(getattr(tg.graph, name))
        first = next(iter(sig.parameters))
        assert first == "adata", f"tg.graph.{name} must take adata first"
        assert "key_added" in sig.parameters and "copy" in sig.parameters


def test_cli_help_and_version():
    exe = [sys.executable, "-m", "tissuegraph.cli"]
    out = subprocess.run(exe + ["--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"tissuegraph {tg.__version__}"
    out = subprocess.run(exe + ["--help"], capture_output=True, text=True, check=True)
    for cmd in ("demo", "run", "segment", "synth"):
        assert cmd in out.stdout


def test_errors_are_tissuegraph_errors():
    for name in ("InputError", "SlideError", "SlideNotFoundError", "SlideFormatError", "MissingMppError",
                 "WeightsUnavailableError", "DependencyError", "NoTissueError"):
        assert issubclass(getattr(tg, name), tg.TissuegraphError)


def test_base_install_declares_the_parquet_engine():
    """The nucleus table is written as parquet (tissuegraph.pipeline): its engine must be a base
    dependency, not something the test extra happens to pull in (the README's demo command installs
    only the base)."""
    import re
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    names = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].lower() for d in meta["project"]["dependencies"]}
    assert "pyarrow" in names
    src = (Path(__file__).resolve().parents[1] / "tissuegraph" / "pipeline.py").read_text()
    assert "to_parquet" in src  # the reason for the dependency; drop both together
