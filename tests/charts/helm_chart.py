"""Run helm on the oreal-operator chart and load what it renders (helpers of the chart tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "oreal-operator"
RELEASE = "oreal-operator"  # the full name of its objects is then just "oreal-operator"
NAMESPACE = "oreal-system"
MONITORING_API = "monitoring.coreos.com/v1"


def find_helm() -> str | None:
    """The repo's helm (scripts/install_helm.sh puts it in .tools/bin), else helm on PATH."""
    local = REPO / ".tools" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


def run_helm(helm: str, *args: str, chart: Path = CHART) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, *args],
        cwd=chart.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


def template(helm: str, *flags: str, chart: Path = CHART) -> list[dict]:
    """`helm template` of the chart as a list of objects; raises AssertionError with helm's stderr."""
    result = run_helm(helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE, *flags)
    assert result.returncode == 0, f"helm template {' '.join(flags)} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
