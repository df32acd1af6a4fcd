"""The run's progress as its trainer reports it in-cluster: `GET /status` on trainer pod 0.

The operator reads no bucket and holds no tenant credentials: the trainer's global rank 0 serves
its progress beside /metrics (`oreal.workers.report`), at
`http://<run>-trainer-0-0.<run>.<namespace>.svc:<spec.metrics.port>/status`, the pod's DNS name
under the JobSet's headless Service. So the operator needs to reach the run pods' metrics port,
as Prometheus does (a NetworkPolicy that isolates run pods must let the operator in). With
spec.metrics.port 0 there is no report: the status then shows the JobSet's state without steps.

    report_url(run_name, namespace, port) -> str
    parse_report(data) -> Report | None          anything malformed is no report
    HttpReports(timeout).read(url) -> Report | None   one pooled HTTP session for all runs
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from oreal.spec.models import StepMetrics
from oreal_operator.naming import pod_address

STATUS_PATH = "/status"
DEFAULT_TIMEOUT = 2.0


@dataclass(frozen=True)
class Report:
    started: bool  # policy v0 is in the bucket: the run's spec is fixed for good
    step: int | None  # last committed step
    policy_version: int | None
    done: bool
    metrics: StepMetrics | None


def report_url(run_name: str, namespace: str, port: int) -> str:
    return f"http://{pod_address(run_name, 'trainer', 0, namespace)}:{port}{STATUS_PATH}"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _metrics(value: Any) -> StepMetrics | None:
    if not isinstance(value, dict):
        return None
    numbers = {}
    for key, field in (
        ("passRate", "pass_rate"),
        ("reward", "reward"),
        ("loss", "loss"),
        ("kl", "kl"),
        ("stepSeconds", "step_seconds"),
    ):
        number = value.get(key)
        if isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number):
            numbers[field] = float(number)
    return StepMetrics(**numbers) if numbers else None


def parse_report(data: Any) -> Report | None:
    """The report in a /status JSON document; None when it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("started", False), bool):
        return None
    return Report(
        started=bool(data.get("started")),
        step=_int(data.get("step")),
        policy_version=_int(data.get("policyVersion")),
        done=data.get("done") is True,
        metrics=_metrics(data.get("lastMetrics")),
    )


class HttpReports:
    """Reads reports over one aiohttp session (connections pooled, a short timeout per read)."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._session: Any = None

    async def read(self, url: str) -> Report | None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    return None
                return parse_report(await response.json(content_type=None))
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
