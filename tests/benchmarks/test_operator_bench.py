"""The operator benchmark on a few runs: it measures what it says, and the request targets hold
(<= 10 requests per run to reach ready, none per idle tick, a clean stop, no torch)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "operator_scale.py"


@pytest.fixture(scope="module")
def bench():
    # Loaded from its file: benchmarks/ is a folder of scripts, not a package on sys.path.
    spec = importlib.util.spec_from_file_location("operator_benchmark", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["operator_benchmark"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("operator_benchmark", None)


@pytest.mark.timeout(300)
def test_a_few_runs_reach_ready_with_few_requests_and_none_when_idle(bench) -> None:
    result = bench.measure(runs=5, tick=1.0, idle_ticks=2, timeout=120)
    assert result.ready == 5 and len(result.to_jobset) == 5
    assert all(0 <= t <= r for t, r in zip(sorted(result.to_jobset), sorted(result.to_ready), strict=True))
    assert result.requests_per_run <= 10
    assert result.idle_per_run_tick == 0
    assert result.exit_code == 0 and result.clean_log and result.stop_seconds < 30
    assert not result.torch_loaded
    assert result.cpu_per_run > 0 and result.peak_rss_mb > 0
    assert "| 5 | 5 |" in bench.table([result], 1.0, 2)
