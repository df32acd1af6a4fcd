"""The metrics module, tested through prometheus_client's registry and a real /metrics server."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from bucket_records import make_samples
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from support.seaweedfs import free_ports

from oreal import metrics
from oreal.bucket import Bucket

DESIGN_NAMES = [
    "oreal_bucket_bytes_written_total",
    "oreal_bucket_bytes_read_total",
    "oreal_bucket_operation_duration_seconds",
    "oreal_bucket_retries_total",
    "oreal_rollout_generated_tokens_total",
    "oreal_rollout_samples_total",
    "oreal_rollout_policy_staleness",
    "oreal_trainer_step",
    "oreal_trainer_empty_steps_total",
    "oreal_step_phase_duration_seconds",
    "oreal_policy_sync_duration_seconds",
]
# The last step's results: exported once a step had them (absent before, never a made-up 0).
LAST_STEP_NAMES = [
    "oreal_trainer_loss",
    "oreal_trainer_pass_rate",
    "oreal_trainer_kl",
    "oreal_trainer_reward_model_accuracy",
    "oreal_trainer_reward_mean",
]


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


@pytest.fixture
def stop_servers() -> Iterator[None]:
    yield
    metrics.stop_metrics()


def test_every_design_metric_is_exported_from_the_start() -> None:
    text = generate_latest(REGISTRY).decode()
    exported = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    samples = {line.split("{")[0].split()[0] for line in text.splitlines() if not line.startswith("#")}
    for name in DESIGN_NAMES:
        assert name in exported, name
        assert name in samples or f"{name}_count" in samples, f"{name} has no series yet"


def test_last_step_gauges_export_what_the_step_had() -> None:
    registry = CollectorRegistry()
    gauges = metrics.LastStepGauges()
    registry.register(gauges)
    assert not [line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")]
    trained = {"loss/policy": 0.25, "pass_rate": 0.5, "kl": 0.01, "rm/accuracy": 0.75, "reward": 0.0}
    gauges.record(trained)
    assert {name: registry.get_sample_value(name) for name in LAST_STEP_NAMES} == dict(
        zip(LAST_STEP_NAMES, [0.25, 0.5, 0.01, 0.75, 0.0], strict=True)
    )
    gauges.record({"pass_rate": 0.0, "skipped": 1.0})  # a step without a policy update
    assert registry.get_sample_value("oreal_trainer_loss") is None
    assert registry.get_sample_value("oreal_trainer_pass_rate") == 0.0


def test_bucket_records_bytes_and_durations(tmp_path: Path) -> None:
    bucket = Bucket.open(str(tmp_path / "run"))
    written, read = sample("oreal_bucket_bytes_written_total"), sample("oreal_bucket_bytes_read_total")
    puts = sample("oreal_bucket_operation_duration_seconds_count", {"operation": "put"})
    bucket.store.put_bytes("a.bin", b"x" * 1234)
    assert bucket.store.get_bytes("a.bin") == b"x" * 1234
    assert sample("oreal_bucket_bytes_written_total") - written == 1234
    assert sample("oreal_bucket_bytes_read_total") - read == 1234
    assert sample("oreal_bucket_operation_duration_seconds_count", {"operation": "put"}) - puts == 1
    parts = sample("oreal_bucket_operation_duration_seconds_count", {"operation": "write_rollouts_part"})
    bucket.write_rollout_part(0, 0, make_samples(0))
    assert (
        sample("oreal_bucket_operation_duration_seconds_count", {"operation": "write_rollouts_part"}) - parts
        == 1
    )


def test_phase_histogram_has_one_series_per_phase() -> None:
    for phase in metrics.STEP_PHASES:
        before = sample("oreal_step_phase_duration_seconds_count", {"phase": phase})
        metrics.STEP_PHASE_DURATION.labels(phase).observe(1.5)
        assert sample("oreal_step_phase_duration_seconds_count", {"phase": phase}) - before == 1


def test_serve_metrics_exposes_the_registry(stop_servers: None) -> None:
    (port,) = free_ports(1)
    metrics.serve_metrics(port, role="trainer")
    metrics.TRAINER_STEP.set(17)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "oreal_trainer_step 17.0" in body
    assert "oreal_worker_info{" in body and 'role="trainer"' in body


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(metrics.MetricsServerError, match=f"port {port} is already in use"):
            metrics.serve_metrics(port, role="rollout")


def test_port_zero_disables_and_bad_port_is_refused() -> None:
    metrics.serve_metrics(0, role="verifier")  # no server, no error
    assert metrics._servers == []
    with pytest.raises(metrics.MetricsServerError, match="0 to disable"):
        metrics.serve_metrics(70000, role="verifier")


def test_bucket_uses_only_the_declared_operation_labels(tmp_path: Path) -> None:
    bucket = Bucket.open(str(tmp_path / "run"))
    bucket.write_verdict_part(0, 0, [])
    bucket.commit_verdicts(0, 1)
    bucket.read_verdicts(0)
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "w.bin").write_bytes(b"w")
    bucket.publish_policy(0, policy)
    bucket.download_policy(0, tmp_path / "dl")
    bucket.store.put_file(str(policy / "w.bin"), "x/w.bin")
    bucket.store.get_file("x/w.bin", str(tmp_path / "w.bin"))
    bucket.store.delete_prefix("x")
    bucket.store.exists("x")
    bucket.store.list("x")
    declared = set(metrics.BUCKET_PRIMITIVES + metrics.BUCKET_COMPOSITES)
    used = {
        s.labels["operation"]
        for m in REGISTRY.collect()
        if m.name == "oreal_bucket_operation_duration_seconds"
        for s in m.samples
    }
    assert used == declared
