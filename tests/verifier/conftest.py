from __future__ import annotations

import pytest

from oreal.verifier import Verifier


@pytest.fixture(scope="session")
def verifier():
    """One verifier (two sympy workers) shared by the tests; started once, closed at the end."""
    with Verifier(timeout_seconds=5.0, workers=2) as shared:
        shared.warm_up()
        yield shared
