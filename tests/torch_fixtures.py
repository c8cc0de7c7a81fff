"""Fixtures shared by the torch test folders (tests/emb, tests/models); their conftest.py files import them.

Kept out of tests/conftest.py on purpose: the fixture is autouse and skips when torch / torch_geometric are
missing, so it must apply only to the folders that need them.
"""

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small graphs: one thread is faster and deterministic on a shared machine."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torch_geometric")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
