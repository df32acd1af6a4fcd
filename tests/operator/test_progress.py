"""The trainer's in-cluster report, end to end: the worker's board served at /status beside /metrics,
read by the operator's client and parsed into what the status shows."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Gauge, make_wsgi_app

from oreal.spec.models import StepMetrics
from oreal.workers.report import ProgressBoard, last_metrics, serve
from oreal_operator.progress import HttpReports, Report, parse_report, report_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served():
    """A board served on a free port, with a registry of its own at /metrics."""
    board, port = ProgressBoard(), free_port()
    registry = CollectorRegistry()
    Gauge("demo_value", "a gauge", registry=registry).set(3)
    server = serve(port, make_wsgi_app(registry), board)
    try:
        yield board, port
    finally:
        server.shutdown()
        server.server_close()


def test_the_board_is_served_at_status_and_metrics_stay_where_they_were(served) -> None:
    board, port = served
    board.resumed("demo", total_steps=4, next_step=2)
    board.committed(
        2,
        {"pass_rate": 0.5, "loss/policy": 0.25, "kl": 0.01, "reward": 0.0, "wall_seconds": 3.5},
        total_steps=4,
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
        data = json.loads(response.read())
    assert data["run"] == "demo" and data["started"] is True
    assert (data["step"], data["policyVersion"], data["totalSteps"], data["done"]) == (2, 3, 4, False)
    assert data["lastMetrics"] == {
        "passRate": 0.5,
        "loss": 0.25,
        "kl": 0.01,
        "reward": 0.0,
        "stepSeconds": 3.5,
    }
    assert data["updated"].endswith("Z")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert "demo_value 3.0" in response.read().decode()


def test_the_operator_reads_and_parses_the_report(served) -> None:
    board, port = served

    async def read() -> Report | None:
        reports = HttpReports(timeout=2)
        try:
            return await reports.read(f"http://127.0.0.1:{port}/status")
        finally:
            await reports.close()

    assert asyncio.run(read()) == Report(
        started=False, step=None, policy_version=None, done=False, metrics=None
    )
    board.committed(3, {"pass_rate": 0.75, "loss": float("nan")}, total_steps=4)
    got = asyncio.run(read())
    assert got == Report(
        started=True, step=3, policy_version=4, done=True, metrics=StepMetrics(pass_rate=0.75)
    )


def test_an_unreachable_trainer_is_no_report() -> None:
    async def read() -> Report | None:
        reports = HttpReports(timeout=1)
        try:
            return await reports.read(f"http://127.0.0.1:{free_port()}/status")
        finally:
            await reports.close()

    assert asyncio.run(read()) is None


@pytest.mark.parametrize(
    "data",
    [None, [], "x", {"started": "yes"}],
)
def test_anything_malformed_is_no_report(data) -> None:
    assert parse_report(data) is None


def test_bad_fields_are_dropped_not_trusted() -> None:
    got = parse_report(
        {"started": True, "step": -1, "policyVersion": True, "done": "true", "lastMetrics": {"kl": "x"}}
    )
    assert got == Report(started=True, step=None, policy_version=None, done=False, metrics=None)


def test_the_report_url_is_trainer_pod_zero_under_the_jobsets_service() -> None:
    assert report_url("demo", "ml", 9400) == "http://demo-trainer-0-0.demo.ml.svc:9400/status"


def test_last_metrics_take_the_trainers_keys_and_only_finite_numbers() -> None:
    assert last_metrics({"loss": 1.0, "loss/policy": 2.0, "step_seconds": 4.0, "kl": float("inf")}) == {
        "loss": 2.0,
        "stepSeconds": 4.0,
    }
