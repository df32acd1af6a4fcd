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
import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
TRAINER_EMPTY_STEPS = Counter(
    "oreal_trainer_empty_steps",
    "Steps without a policy update, by reason: warmup (reward-model warm-up, policy frozen) or "
    "no_learnable_group (no prompt had both a correct and a wrong answer: nothing trained).",
    ["reason"],
)
for _reason in ("warmup", "no_learnable_group"):
    TRAINER_EMPTY_STEPS.labels(_reason)
TRAINER_LOGPROB_MISMATCH = Gauge(
    "oreal_trainer_logprob_mismatch",
    "Rollout engine vs trainer log-probs of the last step's kept samples: statistic=mean_abs_diff is the "
    "mean over tokens of |log pi_trainer - log pi_rollout|, statistic=sequence_kl the mean over samples "
    "of the sequence-level KL(rollout || trainer) estimate (nats); samples=on_policy (the engine's "
    "numerics alone) or stale (sampled by an older policy version). Absent where the step had none.",
    ["statistic", "samples"],
)
# (statistic, samples) -> the stats key of oreal.algorithm.importance.correction_stats
LOGPROB_MISMATCH_KEYS = {
    ("mean_abs_diff", "on_policy"): "mismatch/abs_logp",
    ("sequence_kl", "on_policy"): "mismatch/kl",
    ("mean_abs_diff", "stale"): "offpolicy/abs_logp",
    ("sequence_kl", "stale"): "offpolicy/kl",
}


class LastStepGauges(Collector):
    """Gauges of the last step's results, exported only for the values that step had.

    A step without a policy update has no policy loss: `oreal_trainer_loss` is then absent (a gap
    on the dashboards), neither NaN nor the previous step's value; before the first recorded step
    none of these series exists (a plain Gauge would read 0).
    """

    GAUGES = (  # (metric name, stats key, help)
        (
            "oreal_trainer_loss",
            "loss/policy",
            "Policy loss of the last step (absent without a policy update).",
        ),
        ("oreal_trainer_pass_rate", "pass_rate", "Fraction of correct samples in the last step."),
        ("oreal_trainer_kl", "kl", "KL(k3) to the reference policy, last step."),
        (
            "oreal_trainer_reward_model_accuracy",
            "rm/accuracy",
            "Token reward model's sequence-level accuracy, last step.",
        ),
        ("oreal_trainer_reward_mean", "reward", "Mean outcome reward (+1/-1), last step."),
        (
            "oreal_trainer_importance_weight_bounded_ratio",
            "offpolicy/bounded",
            "Fraction of the stale samples' tokens whose importance weight the bound changed "
            "(spec importanceCap, or the PPO clip), last step.",
        ),
    )

    def __init__(self) -> None:
        self._values: dict[str, float] = {}

    def record(self, stats: Mapping[str, object]) -> None:
        """Keep the step's values; also sets the labelled `oreal_trainer_logprob_mismatch`."""
        self._values = {key: float(stats[key]) for _, key, _ in self.GAUGES if key in stats}
        TRAINER_LOGPROB_MISMATCH.clear()
        for labels, key in LOGPROB_MISMATCH_KEYS.items():
            if key in stats:
                TRAINER_LOGPROB_MISMATCH.labels(*labels).set(float(stats[key]))

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [GaugeMetricFamily(name, doc) for name, _, doc in self.GAUGES]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        values = self._values  # one snapshot: record() may replace the dict during a scrape
        for name, key, doc in self.GAUGES:
            if key in values:
                yield GaugeMetricFamily(name, doc, value=values[key])


TRAINER_LAST_STEP = LastStepGauges()
REGISTRY.register(TRAINER_LAST_STEP)


def drop_trainer_gauges() -> None:
    """Stop exporting the trainer's step gauges from this process (a rank that never sets them).

    Only global rank 0 records a step's results; on the first rank of another node they would
    read 0 forever next to rank 0's real values.
    """
    for collector in (TRAINER_STEP, TRAINER_EMPTY_STEPS, TRAINER_LAST_STEP, TRAINER_LOGPROB_MISMATCH):
        with contextlib.suppress(KeyError):  # already dropped
            REGISTRY.unregister(collector)


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
_final_scrape = {"seconds": 0.0}


def serve_metrics(port: int, role: str, final_scrape_seconds: float = 0.0) -> None:
    """Serve /metrics (and /status, `oreal.workers.report`) on 0.0.0.0:`port` in a daemon thread;
    port 0 disables it.

    Raises MetricsServerError with a clear message if the port is already in use.
    `final_scrape_seconds`: how long hold_for_final_scrape keeps it up once the work is done.
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
    from oreal.workers.report import serve  # /metrics and the trainer's /status on one port

    try:
        server = serve(port, make_wsgi_app(REGISTRY))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise MetricsServerError(
                f"cannot serve metrics for role {role!r}: port {port} is already in use; "
                "choose another spec.metrics.port or set it to 0 to disable metrics"
            ) from exc
        raise MetricsServerError(f"cannot serve metrics for role {role!r} on port {port}: {exc}") from exc
    _servers.append(server)
    _final_scrape["seconds"] = final_scrape_seconds
    log.info("serving Prometheus metrics for role %s on :%d/metrics", role, port)


def hold_for_final_scrape(sleep: Callable[[float], None] = time.sleep) -> None:
    """Keep serving /metrics for spec.metrics.finalScrapeSeconds after the work is done, so that the
    last values reach Prometheus (a pull: a series updated less than a scrape interval before the
    process exits is otherwise never read). No wait when no server runs."""
    if _servers and _final_scrape["seconds"] > 0:
        log.info("serving /metrics for %.0f s more for a final scrape", _final_scrape["seconds"])
        sleep(_final_scrape["seconds"])


def stop_metrics() -> None:
    """Stop every server started by serve_metrics (for tests and clean shutdown)."""
    while _servers:
        server = _servers.pop()
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]
