"""The e2e tests share the workers' tiny model fixture."""

from workers.conftest import _one_thread, tiny_model  # noqa: F401 (fixtures)
