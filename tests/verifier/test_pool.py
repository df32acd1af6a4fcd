"""The worker pool: hard time limits, replacement of killed workers, recycling, metrics."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import REGISTRY
from verifier_helpers import boxed

from oreal.verifier import Verifier
from oreal.verifier.pool import CheckTimeout, WorkerPool

SLOW = ("9^{9^{9^9}}", "9^{9^{9^9}}+1")  # only sympy can try this, and it never finishes
NEEDS_SYMPY = ("\\cot x", "\\frac{\\cos x}{\\sin x}")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_timeout_kills_the_worker_and_the_pool_recovers() -> None:
    timeouts, restarts = sample("oreal_verifier_timeouts_total"), sample("oreal_verifier_pool_restarts_total")
    with Verifier(timeout_seconds=0.5, workers=1) as verifier:
        verifier.warm_up()
        start = time.perf_counter()
        verdict = verifier.verify(SLOW[0], boxed(SLOW[1]))
        assert time.perf_counter() - start < 1.5
        assert (verdict.correct, verdict.status) == (False, "timeout")
        assert verdict.seconds == pytest.approx(0.5, abs=0.1)
        # The killed worker was replaced: the next check that needs sympy still works.
        assert verifier.verify(*NEEDS_SYMPY[:1], boxed(NEEDS_SYMPY[1])).correct
    assert sample("oreal_verifier_timeouts_total") == timeouts + 1
    assert sample("oreal_verifier_pool_restarts_total") >= restarts + 1


def test_checks_run_from_any_thread() -> None:
    """No signal.alarm: a timeout works off the main thread too."""
    results = []
    with Verifier(timeout_seconds=0.5, workers=2) as verifier:
        verifier.warm_up()
        threads = [
            threading.Thread(target=lambda: results.append(verifier.verify(SLOW[0], boxed(SLOW[1])).status)),
            threading.Thread(target=lambda: results.append(verifier.verify("5", boxed("5")).status)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert sorted(results) == ["correct", "timeout"]


def test_batch_runs_slow_checks_in_parallel() -> None:
    with Verifier(timeout_seconds=0.5, workers=2) as verifier:
        verifier.warm_up()
        start = time.perf_counter()
        verdicts = verifier.verify_batch([(SLOW[0], boxed(SLOW[1]), False)] * 2 + [("1", boxed("1"), False)])
        elapsed = time.perf_counter() - start
    assert [v.status for v in verdicts] == ["timeout", "timeout", "correct"]
    assert elapsed < 0.5 * 2  # two half-second timeouts side by side, not one after the other


def test_workers_are_recycled_after_n_checks() -> None:
    restarts = sample("oreal_verifier_pool_restarts_total")
    with Verifier(workers=1, max_checks_per_worker=2) as verifier:
        for _ in range(5):
            assert verifier.verify(NEEDS_SYMPY[0], boxed(NEEDS_SYMPY[1])).correct
    assert sample("oreal_verifier_pool_restarts_total") >= restarts + 2


def test_workers_are_recycled_on_memory_growth() -> None:
    restarts = sample("oreal_verifier_pool_restarts_total")
    with Verifier(workers=1, recycle_rss_bytes=1) as verifier:  # every worker is "too big"
        for _ in range(3):
            assert verifier.verify(NEEDS_SYMPY[0], boxed(NEEDS_SYMPY[1])).correct
    assert sample("oreal_verifier_pool_restarts_total") >= restarts + 3


def test_pool_raises_check_timeout_directly() -> None:
    pool = WorkerPool(1)
    try:
        with pytest.raises(CheckTimeout):
            pool.run(*SLOW, timeout=0.3)
        assert pool.run(*NEEDS_SYMPY, timeout=5.0)[0] is True
    finally:
        pool.close()


def test_pool_checks_are_counted(verifier) -> None:
    pooled = sample("oreal_verifier_pool_checks_total")
    verifier.verify("5", boxed("5"))  # decided in-process
    assert sample("oreal_verifier_pool_checks_total") == pooled
    verifier.verify(NEEDS_SYMPY[0], boxed(NEEDS_SYMPY[1]))
    assert sample("oreal_verifier_pool_checks_total") == pooled + 1


def test_verdict_metrics_by_status_and_duration(verifier) -> None:
    correct = sample("oreal_verifier_verdicts_total", result="correct")
    incorrect = sample("oreal_verifier_verdicts_total", result="incorrect")
    no_answer = sample("oreal_verifier_verdicts_total", result="no_answer")
    count = sample("oreal_verifier_check_duration_seconds_count")
    verifier.verify("5", boxed("5"))
    verifier.verify_batch([("5", boxed("6"), False), ("5", "no box", False), ("5", boxed("5"), True)])
    assert sample("oreal_verifier_verdicts_total", result="correct") == correct + 1
    assert sample("oreal_verifier_verdicts_total", result="incorrect") == incorrect + 1
    assert sample("oreal_verifier_verdicts_total", result="no_answer") == no_answer + 2
    assert sample("oreal_verifier_check_duration_seconds_count") == count + 4
    assert REGISTRY.get_sample_value("oreal_verifier_verdicts_total", {"result": "timeout"}) is not None


def test_default_workers_follow_the_pods_cpu_budget(monkeypatch) -> None:
    """In a pod the affinity mask shows the node's CPUs; OREAL_NUM_THREADS (from the CPU limit) caps it."""
    import os

    from oreal.verifier.verifier import default_workers

    usable = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OREAL_NUM_THREADS", raising=False)
    assert default_workers() == min(usable, 16)
    monkeypatch.setenv("OREAL_NUM_THREADS", "1")
    assert default_workers() == 1
    monkeypatch.setenv("OREAL_NUM_THREADS", str(usable + 5))
    assert default_workers() == min(usable, 16)
    monkeypatch.setenv("OREAL_NUM_THREADS", "not-a-number")
    assert default_workers() == min(usable, 16)
