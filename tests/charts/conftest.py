"""Fixtures of the chart tests: the helm binary (scripts/install_helm.sh installs it)."""

from __future__ import annotations

import pytest
from helm_chart import find_helm


@pytest.fixture(scope="session")
def helm() -> str:
    path = find_helm()
    if path is None:
        pytest.fail(
            "helm not found (.tools/bin/helm or helm on PATH): run `bash scripts/install_helm.sh` "
            "(scripts/test.sh does) to install helm v3.17.2 into .tools/bin",
            pytrace=False,
        )
    return path
