"""The operator process and the spec's commands stay light: no ML stack, no worker code, no bucket.

Each check runs in a fresh interpreter (what a test process already imported says nothing) and
reads sys.modules at the point the program would be doing its work.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "pyarrow")
WORKER_SIDE = ("oreal.workers", "oreal.bucket", "oreal.metrics")


def imported(code: str, env: dict[str, str] | None = None) -> list[str]:
    probe = (
        code
        + f"\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY + WORKER_SIDE!r} if m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_operator_process_imports_no_ml_stack_and_no_worker_code() -> None:
    """`python -m oreal_operator` up to the moment Kopf would start: everything it loads, loaded."""
    code = """
import os, kopf
os.environ["OREAL_WORKER_IMAGE"] = "registry.example/oreal:1"
os.environ["OREAL_OPERATOR_METRICS_PORT"] = "0"
kopf.run = lambda **kwargs: None
import oreal_operator.handlers, oreal_operator.reconcile  # what Kopf's handlers run
from oreal_operator.__main__ import main
assert main([]) == 0
"""
    assert imported(code) == []


@pytest.mark.parametrize(
    "argv", [["validate", "examples/run.yaml"], ["crd"], ["render", "examples/cluster-cpu.yaml", "-n", "ml"]]
)
def test_the_spec_commands_import_no_ml_stack(argv: list[str]) -> None:
    code = f"""
import contextlib, io
from oreal.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    assert main({argv!r}) == 0
"""
    assert [m for m in imported(code) if m in HEAVY] == []
