"""Settings for the whole suite.

TorchInductor keeps compiled kernels in an on-disk cache whose key ignores ATEN_CPU_CAPABILITY: a
kernel built for AVX-512 is then reused when the suite runs again under `default` and fails to
compile ('at::vec' has not been declared). Each kernel set (and user) gets its own cache folder.
"""

from __future__ import annotations

import os
import tempfile

_kernels = "-".join(
    os.environ.get(name) or "native" for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
).lower()
os.environ.setdefault(
    "TORCHINDUCTOR_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"oreal-inductor-{os.getuid()}-{_kernels}"),
)

# Every test of these folders compares floating-point results (losses against hand-computed
# numbers, two computations of one update): scripts/test.sh reruns them under a second kernel set.
NUMERICS_DIRS = ("algorithm", "training")


def pytest_collection_modifyitems(config, items) -> None:
    import pytest

    for item in items:
        if item.path.parent.name in NUMERICS_DIRS and item.path.parent.parent.name == "tests":
            item.add_marker(pytest.mark.numerics)
