"""Every Prometheus metric of oreal, defined in one place (dashboards look here).

Names follow `oreal_<subsystem>_<name>_<unit>`, base units, `_total` for counters. The
`run`, `namespace` and `role` of a series are target labels: Prometheus attaches them from the
pod's labels when it scrapes, so the metrics below carry only the labels that vary inside one
process. `serve_metrics` also exports `oreal_worker_info{role,run,namespace}` for local runs.

The verifier's own `oreal_verifier_*` metrics live in `oreal.verifier.metrics`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    start_http_server,
)

log = logging.getLogger(__name__)
disable_created_metrics()  # no `*_created` series: half the series, nothing a dashboard reads

# -- bucket (recorded by oreal.bucket) -------------------------------------------------------------
BUCKET_BYTES_WRITTEN = Counter(
    "oreal_bucket_bytes_written", "Bytes written to the run bucket (data and manifests)."
)
BUCKET_BYTES_READ = Counter("oreal_bucket_bytes_read", "Bytes read from the run bucket.")
BUCKET_OPERATION_DURATION = Histogram(
    "oreal_bucket_operation_duration_seconds",
    "Wall time of one bucket operation, retries included.",
    ["operation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
BUCKET_RETRIES = Counter(
    "oreal_bucket_retries", "Bucket operations retried after a transient error.", ["operation"]
)

# -- rollout -------------------------------------------------------------------------------------
ROLLOUT_GENERATED_TOKENS = Counter("oreal_rollout_generated_tokens", "Response tokens generated.")
ROLLOUT_SAMPLES = Counter("oreal_rollout_samples", "Samples (answers) generated.")
ROLLOUT_POLICY_STALENESS = Gauge(
    "oreal_rollout_policy_staleness",
    "Policy versions between the step being generated and the policy used to sample it.",
)

# -- trainer -------------------------------------------------------------------------------------
TRAINER_STEP = Gauge("oreal_trainer_step", "Last step the trainer completed.")
TRAINER_LOSS = Gauge("oreal_trainer_loss", "Policy loss of the last step.")
TRAINER_PASS_RATE = Gauge("oreal_trainer_pass_rate", "Fraction of correct samples in the last step.")
TRAINER_KL = Gauge("oreal_trainer_kl", "KL(k3) to the reference policy, last step.")
TRAINER_REWARD_MODEL_ACCURACY = Gauge(
    "oreal_trainer_reward_model_accuracy", "Token reward model's sequence-level accuracy, last step."
)
TRAINER_REWARD_MEAN = Gauge("oreal_trainer_reward_mean", "Mean outcome reward (+1/-1), last step.")
TRAINER_GAUGES = (
    TRAINER_STEP,
    TRAINER_LOSS,
    TRAINER_PASS_RATE,
    TRAINER_KL,
    TRAINER_REWARD_MODEL_ACCURACY,
    TRAINER_REWARD_MEAN,
)


def drop_trainer_gauges() -> None:
    """Stop exporting the trainer's step gauges from this process (a rank that never sets them).

    Only global rank 0 records a step's results; on the first rank of another node they would
    read 0 forever next to rank 0's real values.
    """
    for gauge in TRAINER_GAUGES:
        with contextlib.suppress(KeyError):  # already dropped
            REGISTRY.unregister(gauge)


# -- step timing ---------------------------------------------------------------------------------
STEP_PHASES = ("generate", "verify", "train", "sync", "wait")
STEP_PHASE_DURATION = Histogram(
    "oreal_step_phase_duration_seconds",
    "Wall time of one phase of a step: generate|verify|train|sync|wait.",
    ["phase"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600),
)
POLICY_SYNC_DURATION = Histogram(
    "oreal_policy_sync_duration_seconds",
    "Time to publish (trainer) or download and load (rollout) one policy version.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)

# Every `operation` label value the bucket uses: single requests (which are retried) and the
# composite operations of the commit protocol. Created up front so that every series exists
# (at 0) from the first scrape.
BUCKET_PRIMITIVES = ("put", "get", "exists", "info", "list", "delete", "put_file", "get_file")
BUCKET_COMPOSITES = (
    "write_rollouts_part",
    "write_verdicts_part",
    "commit_rollouts",
    "commit_verdicts",
    "read_rollouts",
    "read_verdicts",
    "publish_policy",
    "download_policy",
)
for _operation in BUCKET_PRIMITIVES:
    BUCKET_RETRIES.labels(_operation)
for _operation in BUCKET_PRIMITIVES + BUCKET_COMPOSITES:
    BUCKET_OPERATION_DURATION.labels(_operation)
for _phase in STEP_PHASES:
    STEP_PHASE_DURATION.labels(_phase)

WORKER_INFO = Info("oreal_worker", "Which run, namespace and role this process serves.")


class MetricsServerError(RuntimeError):
    """The /metrics HTTP server could not start (e.g. its port is taken)."""


_servers: list[object] = []


def serve_metrics(port: int, role: str) -> None:
    """Serve /metrics on 0.0.0.0:`port` in a daemon thread; port 0 disables it.

    Raises MetricsServerError with a clear message if the port is already in use.
    """
    if port == 0:
        log.info("metrics disabled (port 0) for role %s", role)
        return
    if not 0 < port < 65536:
        raise MetricsServerError(f"metrics port must be in 1..65535 or 0 to disable, got {port}")
    WORKER_INFO.info(
        {
            "role": role,
            "run": os.environ.get("OREAL_RUN", ""),
            "namespace": os.environ.get("OREAL_NAMESPACE", os.environ.get("POD_NAMESPACE", "")),
        }
    )
    try:
        server, _thread = start_http_server(port, registry=REGISTRY)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise MetricsServerError(
                f"cannot serve metrics for role {role!r}: port {port} is already in use; "
                "choose another spec.metrics.port or set it to 0 to disable metrics"
            ) from exc
        raise MetricsServerError(f"cannot serve metrics for role {role!r} on port {port}: {exc}") from exc
    _servers.append(server)
    log.info("serving Prometheus metrics for role %s on :%d/metrics", role, port)


def stop_metrics() -> None:
    """Stop every server started by serve_metrics (for tests and clean shutdown)."""
    while _servers:
        server = _servers.pop()
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]
