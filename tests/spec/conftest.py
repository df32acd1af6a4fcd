from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def crd() -> dict:
    return yaml.safe_load((ROOT / "crds" / "orealrun.yaml").read_text())


@pytest.fixture
def minimal() -> dict:
    """The smallest valid OREALRun, as a user would write it."""
    return {
        "apiVersion": "oreal.io/v1alpha1",
        "kind": "OREALRun",
        "metadata": {"name": "tiny"},
        "spec": {"model": {"policy": "/models/p"}, "data": {"prompts": "/data/p.jsonl"}},
    }
