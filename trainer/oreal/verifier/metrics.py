"""Prometheus metrics of the verifier (default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

VERDICTS = Counter(
    "oreal_verifier_verdicts",
    "Verdicts by result (correct, incorrect, no_answer, timeout, error).",
    ["result"],
)
CHECK_DURATION = Histogram(
    "oreal_verifier_check_duration_seconds",
    "Wall-clock seconds to verify one response, extraction to verdict.",
    buckets=(0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0),
)
TIMEOUTS = Counter("oreal_verifier_timeouts", "Checks that ran past their time limit and were killed.")
POOL_RESTARTS = Counter(
    "oreal_verifier_pool_restarts",
    "Worker processes replaced: killed on timeout, crashed, or recycled after N checks or on memory growth.",
)
POOL_CHECKS = Counter(
    "oreal_verifier_pool_checks",
    "Checks the fast in-process rules could not decide, sent to a sympy worker.",
)
