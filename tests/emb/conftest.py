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
