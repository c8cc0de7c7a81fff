"""Fixtures for the graph tests.

squidpy is in the test extra (``pip install tissuegraph[test]``), and the squidpy-equality tests are the
graph builders' main reference, so a squidpy that cannot be imported is a failure, not a skip: a broken
installation (e.g. squidpy's dependencies importing ``pkg_resources``, gone from setuptools >= 81, which
the test extra pins below) must not silently turn those tests off.
"""

from __future__ import annotations

import importlib
import warnings

import pytest


def import_squidpy():
    """Import squidpy, or fail the requesting test with the import error and the fix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module("squidpy")
        except Exception as exc:  # noqa: BLE001 - not installed, or a broken installation: report it
            pytest.fail(f"squidpy (a test dependency, the reference for the graph builders) cannot be imported: "
                        f"{type(exc).__name__}: {exc}. Install the test extra: pip install 'tissuegraph[test]' "
                        "(it pins setuptools < 81, which squidpy's dependencies need).", pytrace=False)


@pytest.fixture(scope="session")
def sq():
    return import_squidpy()
