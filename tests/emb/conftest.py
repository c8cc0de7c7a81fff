from ..torch_fixtures import _one_torch_thread  # noqa: F401  (autouse: one torch thread; skips without torch)
