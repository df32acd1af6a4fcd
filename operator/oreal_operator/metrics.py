"""The operator's own Prometheus metrics (the workers' live in `oreal.metrics`).

Names follow `oreal_<subsystem>_<name>_<unit>`, base units, `_total` for counters (prometheus_client
adds the suffix). Served by the operator process on its metrics port; the Helm chart's dashboards
read them.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from oreal.spec.status import PHASES

disable_created_metrics()

RECONCILE_DURATION = Histogram(
    "oreal_operator_reconcile_duration_seconds",
    "Time one part of a run's reconcile took: apply (children) or status (fold and write).",
    ["handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RECONCILE_ERRORS = Counter(
    "oreal_operator_reconcile_errors",
    "Reconciles that failed, by part and kind (permanent: a spec that cannot run; temporary: retried).",
    ["handler", "kind"],
)
API_REQUESTS = Counter(
    "oreal_operator_api_requests",
    "Requests the operator sent to the Kubernetes API, by verb and kind (watches not included; kind Lease: "
    "leader election).",
    ["verb", "kind"],
)
RUNS = Gauge(
    "oreal_runs",
    "OREALRuns this operator manages, by namespace and phase.",
    ["namespace", "phase"],
)


class PhaseCounts:
    """Keeps oreal_runs{namespace, phase} equal to the phases last recorded, at O(1) per change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str], str] = {}
        self._counts: Tally[tuple[str, str]] = Tally()

    def record(self, namespace: str, name: str, phase: str | None) -> None:
        """The run's phase now (None: the run is gone)."""
        with self._lock:
            old = self._phases.pop((namespace, name), None)
            if phase is not None:
                self._phases[(namespace, name)] = phase
            if old == phase:
                return
            for p, delta in ((old, -1), (phase, +1)):
                if p is None:
                    continue
                self._counts[(namespace, p)] += delta
                RUNS.labels(namespace=namespace, phase=p).set(self._counts[(namespace, p)])
            if old is None:  # a namespace's series start at 0 for every phase
                for p in PHASES:
                    RUNS.labels(namespace=namespace, phase=p).set(self._counts[(namespace, p)])
