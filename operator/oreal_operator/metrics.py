"""The operator's own Prometheus metrics (the workers' live in `oreal.metrics`).

Names follow `oreal_<subsystem>_<name>_<unit>`, base units, `_total` for counters (prometheus_client
adds the suffix). Served by the operator process on its metrics port; the Helm chart's dashboards
read them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()

RECONCILE_DURATION = Histogram(
    "oreal_operator_reconcile_duration_seconds",
    "Time one handler of the operator took, by handler (apply, status).",
    ["handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RECONCILE_ERRORS = Counter(
    "oreal_operator_reconcile_errors",
    "Handler runs that raised, by handler and kind (permanent: bad spec; temporary: retried).",
    ["handler", "kind"],
)
RUNS = Gauge(
    "oreal_runs",
    "OREALRuns this operator manages, by namespace and phase.",
    ["namespace", "phase"],
)
PHASES = ("Pending", "Running", "Suspended", "Succeeded", "Failed")
