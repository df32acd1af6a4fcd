"""The dashboards and alert rules against a real Prometheus (Debian's prometheus 2.42), scraping the
workers of a short local run and the operator (as a process, against kmock), with the target labels
the chart's PodMonitor and ServiceMonitor give them. Every panel query and every alert expression
goes through Prometheus' HTTP API: each must parse, and each panel must return series for the run.

So the claim that the dashboards read what the code exports rests on a real server, not only on
tests/charts/dashboard_lint.py's own PromQL reading.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dashboard_lint import parse, queries
from helm_chart import CHART, MONITORING_API, one, template
from support.verdicts import scripted_run_env
from workers.conftest import tiny_model, tiny_spec, write_prompts, write_spec  # noqa: F401 (fixture)

from tests.charts.operator_process import (
    NAMESPACE as OPERATOR_NAMESPACE,
)
from tests.charts.operator_process import (
    create_run,
    eventually,
    kubeconfig,
    operator_env,
    prepare,
    process,
    venv_operator,
)

pytestmark = pytest.mark.slow

RUN, NAMESPACE = "prom", "team-a"  # the run's target labels (the PodMonitor's run/namespace)
STEPS = 4
WORKERS = 4  # tiny_spec: 2 rollout, 1 verifier, 1 trainer
FINAL_SCRAPE = 3.0  # seconds: three scrapes at the 1 s interval
RATE_INTERVAL = "15s"  # Grafana's $__rate_interval for a 1 s scrape interval and a short run
RANGE = "1h"  # Grafana's $__range: the dashboard's time range, here longer than the whole run
# Metrics a short, healthy local run cannot produce, with why: a panel that reads only these may stay
# empty. Every other panel must return series.
NEEDS_MORE_THAN_A_SHORT_RUN = {
    "oreal_bucket_retries_total": "a local folder bucket never fails an operation, so nothing is "
    "retried (the counter has labels, and no series until a first retry)",
    "oreal_operator_reconcile_errors_total": "a handler must raise (the API server failing a call); "
    "a refused spec is a status, not an error (no series until a first error)",
}
# The trainer's last-step gauges (oreal.metrics.LastStepGauges and the mismatch gauge) exist only
# while the last committed step had the value: a step without a policy update has no loss, an
# on-policy run no stale-sample ratio. The run's verdicts are scripted (every group learnable), so
# every step after the reward-model warm-up trains. Their panels are read over the whole run (the
# trainer may record its steps after the last scrape that found every worker up) and must show data
# exactly when a step had the value (read from the run's stats in the bucket): present when it
# happened, absent (not 0) otherwise. The tiny run's steps take well under a scrape interval, so the
# workers keep /metrics up for FINAL_SCRAPE seconds once done (spec.metrics.finalScrapeSeconds).
LAST_STEP_KEYS = {
    "oreal_trainer_pass_rate": "pass_rate",
    "oreal_trainer_reward_mean": "reward",
    "oreal_trainer_reward_model_accuracy": "rm/accuracy",
    "oreal_trainer_loss": "loss/policy",
    "oreal_trainer_kl": "kl",
    "oreal_trainer_logprob_mismatch": "mismatch/abs_logp",
    "oreal_trainer_importance_weight_bounded_ratio": "offpolicy/bounded",
}
RUNNER = (
    "import sys; from oreal.runner.local import run_local; "
    "sys.exit(run_local(sys.argv[1], threads=1, poll=0.2, metrics_port=int(sys.argv[2])))"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_block(count: int) -> int:
    """The first of `count` consecutive free ports (the local runner takes ports from its first up)."""
    for _ in range(50):
        base = free_port()
        if base + count >= 65536:
            continue
        try:
            sockets = [socket.socket() for _ in range(count)]
            for offset, s in enumerate(sockets):
                s.bind(("0.0.0.0", base + offset))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base
    raise RuntimeError("no block of free ports")


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as err:
            body = json.load(err)
        return body

    def query(self, expr: str, at: float) -> Any:
        return self.get("/api/v1/query", query=expr, time=f"{at:.3f}")

    def has_data(self, expr: str, start: float, end: float) -> Any:
        """The query's status, and whether it returned a sample anywhere in [start, end]."""
        body = self.get("/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step="1")
        return body["status"], body.get("error"), bool(body.get("data", {}).get("result"))

    def last_sample_time(self, expr: str, start: float) -> float | None:
        body = self.get(
            "/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{time.time():.3f}", step="1"
        )
        times = [t for result in body["data"]["result"] for t, _ in result["values"]]
        return max(times) if times else None


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus not found: run `bash scripts/install_system_tools.sh` (Debian's prometheus)")
    return path


def scrape_config(workers: int, worker_base: int, operator_port: int) -> dict[str, Any]:
    roles = ["rollout"] * (workers - 2) + ["verifier", "trainer"]  # the local runner's port order
    run_targets = [
        {
            "targets": [f"127.0.0.1:{worker_base + i}"],
            "labels": {"run": RUN, "namespace": NAMESPACE, "role": role, "pod": f"{RUN}-{role}-{i}"},
        }
        for i, role in enumerate(roles)
    ]
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [
            {"job_name": "oreal-runs", "static_configs": run_targets},
            # the chart's ServiceMonitor: honorLabels, so oreal_runs keeps the runs' namespace
            {
                "job_name": "oreal-operator",
                "honor_labels": True,
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{operator_port}"],
                        "labels": {"namespace": "oreal-system", "pod": "oreal-operator-0"},
                    }
                ],
            },
        ],
    }


@pytest.fixture(scope="module")
def prometheus(
    prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Prometheus, dict]]:
    root = tmp_path_factory.mktemp("prometheus")
    workers = WORKERS
    ports = {"workers": free_block(workers), "operator": free_port(), "prometheus": free_port()}
    config = root / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(workers, ports["workers"], ports["operator"])))
    log = (root / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [
            prometheus_bin,
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = Prometheus(f"http://127.0.0.1:{ports['prometheus']}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{client.url}/-/ready", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (
                root / "prometheus.log"
            ).read_text()
            time.sleep(0.3)
        yield client, ports
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def scraped(
    prometheus: tuple[Prometheus, dict],
    tiny_model: Path,  # noqa: F811 (the fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple:
    """A STEPS-step local run and the operator (with a valid and an invalid run) scraped; returns
    Prometheus and the times to query the run's and the operator's series at."""
    client, ports = prometheus
    root = tmp_path_factory.mktemp("run")
    prompts = write_prompts(root / "prompts.jsonl", count=24)
    spec = tiny_spec(
        tiny_model,
        prompts,
        name=RUN,
        **{"algorithm.steps": STEPS, "metrics.finalScrapeSeconds": FINAL_SCRAPE},
    )
    spec["spec"]["storage"] = {"uri": (root / RUN).as_uri()}
    path = write_spec(root / "run.yaml", spec)
    start = time.time()
    operator_at = _operator_scraped(client, ports["operator"], root, start)
    env = scripted_run_env(dict(os.environ, OREAL_POLL_SECONDS="0.1", OMP_NUM_THREADS="1"))
    run = subprocess.run(
        [sys.executable, "-c", RUNNER, str(path), str(ports["workers"])],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    time.sleep(2)  # a last scrape after the run is gone
    # The last scrape with every worker up: when the run ends its workers stop one by one, and the
    # series of a stopped target are stale from then on.
    run_at = client.last_sample_time(f'count(up{{job="oreal-runs"}} == 1) == {WORKERS}', start)
    assert run_at is not None, "Prometheus never scraped all the run's workers at once"
    stats = [json.loads(p.read_text()) for p in sorted((root / RUN / "stats").glob("step-*.json"))]
    assert len(stats) == STEPS
    return client, run_at, operator_at, (start, time.time()), stats


def _operator_scraped(client: Prometheus, port: int, root: Path, start: float) -> float:
    """The operator process against kmock with metrics on `port`: one valid run, and one it refuses."""
    import asyncio

    from kmock import KubernetesEmulator, Server

    async def main() -> float:
        async with KubernetesEmulator() as kmock, Server(kmock):
            prepare(kmock)
            config = kubeconfig(root / "kubeconfig", str(kmock.url), "operator")
            env = operator_env(config, OREAL_OPERATOR_METRICS_PORT=str(port))
            async with process(*venv_operator(env), root / "operator.log"):
                await create_run(kmock, "good")
                assert await _bad_run(kmock)

                def reconciled() -> float | None:
                    return client.last_sample_time("oreal_operator_reconcile_duration_seconds_count", start)

                await eventually(reconciled, 90, "a scraped reconcile", root / "operator.log")
                await asyncio.sleep(3)  # a few scrapes, for the rate() panels
                return client.last_sample_time("oreal_runs", start) or 0.0

    return asyncio.run(main())


async def _bad_run(kmock: Any) -> bool:
    """An OREALRun the models refuse (SpecInvalid)."""
    import aiohttp

    from tests.operator.kmock_helpers import run_body

    body = run_body("bad", OPERATOR_NAMESPACE)
    body["spec"]["algorithm"]["samplesPerPrompt"] = 0
    url = f"{kmock.url}/apis/oreal.io/v1alpha1/namespaces/{OPERATOR_NAMESPACE}/orealruns"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        return response.status in (200, 201)


def dashboards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((CHART / "dashboards").glob("*.json"))}


def panel_queries(board: dict, namespace: str, run: str = RUN) -> list[tuple[str, str]]:
    out = []
    for where, expr in queries(board):
        if not where.startswith("panel "):
            continue
        expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__range", RANGE)
        expr = expr.replace("$namespace", namespace)
        out.append((where.split(" ", 2)[2].strip("'\""), expr.replace("$run", run)))
    return out


def test_every_panel_query_returns_series_for_the_run(scraped: tuple) -> None:
    client, run_at, operator_at, (start, end), stats = scraped
    assert [step["pass_rate"] for step in stats] == [0.5] * STEPS, "precondition: the verdicts were scripted"
    trained = [i for i, step in enumerate(stats) if "loss/policy" in step]
    assert trained == list(range(1, STEPS)), (
        f"precondition: steps 1.. train (scripted verdicts); trained {trained}"
    )
    boards = dashboards()
    checks = [(title, expr, run_at) for title, expr in panel_queries(boards["oreal-run"], NAMESPACE)]
    checks += [
        (title, expr, operator_at)
        for title, expr in panel_queries(boards["oreal-operator"], OPERATOR_NAMESPACE)
    ]
    assert len(checks) > 20
    empty, broken, wrong = [], [], []
    for title, expr, at in checks:
        metrics = {selector.metric for selector in parse(expr).selectors}
        if metrics and metrics <= LAST_STEP_KEYS.keys():
            status, error, found = client.has_data(expr, start, end)
            if status != "success":
                broken.append(f"{title}: {expr}: {error}")
            expected = any(LAST_STEP_KEYS[m] in step for m in metrics for step in stats)
            if found != expected:
                wrong.append(f"{title}: {'data' if found else 'no data'}, the run's stats say {expected}")
            continue
        body = client.query(expr, at)
        if body["status"] != "success":
            broken.append(f"{title}: {expr}: {body.get('error')}")
        elif not body["data"]["result"] and not metrics <= NEEDS_MORE_THAN_A_SHORT_RUN.keys():
            empty.append(f"{title}: {expr}")
    assert not broken, "\n".join(broken)
    assert not empty, "panels without data for the run:\n" + "\n".join(empty)
    assert not wrong, "last-step panels that disagree with the run's stats:\n" + "\n".join(wrong)


def test_dashboard_variables_find_the_run(scraped: tuple) -> None:
    """label_values(...) as Grafana asks it: the run's namespace and name are offered."""
    client, run_at, *_ = scraped
    found = client.get(
        "/api/v1/label/run/values",
        **{"match[]": "oreal_bucket_bytes_read_total", "start": run_at - 600, "end": run_at},
    )
    assert RUN in found["data"]
    namespaces = client.get(
        "/api/v1/label/namespace/values",
        **{"match[]": "oreal_runs", "start": run_at - 600, "end": time.time()},
    )
    assert OPERATOR_NAMESPACE in namespaces["data"]


def test_every_alert_expression_parses(helm: str, scraped: tuple) -> None:
    client, run_at, *_ = scraped
    rule = one(
        template(helm, "--set", "prometheusRule.enabled=true", "--api-versions", MONITORING_API),
        "PrometheusRule",
    )
    exprs = [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(exprs) == 6
    for expr in exprs:
        body = client.query(expr, run_at)
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
