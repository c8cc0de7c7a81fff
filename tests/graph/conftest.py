"""Fixtures for the graph tests: a squidpy import that skips cleanly when squidpy is unusable."""

from __future__ import annotations

import importlib
import warnings

import pytest


def import_squidpy():
    """squidpy, or None when it is not installed or cannot be imported (squidpy's dependencies import
    ``pkg_resources``, gone from setuptools >= 81: the test extra pins setuptools < 81)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module("squidpy")
        except Exception:  # noqa: BLE001 - not installed, or a broken installation
            return None


@pytest.fixture(scope="session")
def sq():
    mod = import_squidpy()
    if mod is None:
        pytest.skip("squidpy is not importable")
    return mod
