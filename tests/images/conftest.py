"""Fixtures of the image tests: images built from images/*/Dockerfile by scripts/build_images.sh
(buildah, as root; a Debian base made with mmdebstrap). scripts/install_system_tools.sh installs
buildah and mmdebstrap (scripts/test.sh runs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
OPERATOR_IMAGE = f"localhost/oreal-operator:{VERSION}"
WORKER_CPU_IMAGE = f"localhost/oreal-worker:{VERSION}-cpu"


def build(*steps: str) -> float:
    """Run scripts/build_images.sh STEPS; returns the seconds it took."""
    if os.geteuid() != 0:
        pytest.skip("building images with buildah needs root (CI runs as root)")
    missing = [tool for tool in ("buildah", "mmdebstrap", "unshare", "chroot") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: run `bash scripts/install_system_tools.sh`", pytrace=False
        )
    start = time.monotonic()
    result = subprocess.run(
        ["bash", "scripts/build_images.sh", *steps], cwd=REPO, capture_output=True, text=True, timeout=3000
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)
    return time.monotonic() - start


@pytest.fixture(scope="session")
def operator_image() -> str:
    build("base", "operator")
    return OPERATOR_IMAGE
