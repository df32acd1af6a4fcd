"""Runs check_vllm_engine.py with the vLLM venv's Python; skipped unless OREAL_VLLM_PYTHON is set."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]
MODEL = ROOT / "models" / "smollm2-135m-instruct"


@pytest.mark.skipif(not os.environ.get("OREAL_VLLM_PYTHON"), reason="set OREAL_VLLM_PYTHON (see README.md)")
@pytest.mark.skipif(not (MODEL / "config.json").is_file(), reason="run python -m oreal.models.smollm2 first")
def test_vllm_engine_end_to_end(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [os.environ["OREAL_VLLM_PYTHON"], str(Path(__file__).with_name("check_vllm_engine.py")), "--model", str(MODEL), "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["ok"], result
