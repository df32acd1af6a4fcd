"""The operator end to end under KopfRunner, against kmock's Kubernetes emulator (or a real cluster
with OREAL_TEST_REAL_CLUSTER=1, see kmock_helpers): Kopf's watches feed the controller, whose one
reconcile per run keeps the JobSet and the ConfigMap as rendered and writes the status.

kmock runs no JobSet controller and no Kueue: where a test needs them, it plays them (writes a
JobSet's status, or its suspend). The trainer's report comes from a stand-in for the HTTP reader.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import kubernetes
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from oreal_operator import api, handlers
from oreal_operator.config import ConfigError, OperatorConfig
from oreal_operator.progress import Report, report_url
from tests.operator.fake_api import FakeReports
from tests.operator.kmock_helpers import (
    JOBSETS,
    REAL_CLUSTER,
    Cluster,
    declare_resources,
    eventually,
    posted_events,
    run_body,
    running_operator,
    write_kubeconfig,
)

IMAGE = "example.org/oreal:test"
STATUS_SECONDS = 0.3
ROLES = ("rollout", "verifier", "trainer")
JOBSET_PATH = "/apis/{}/{}/namespaces/{{ns}}/{}".format(*JOBSETS)
emulated_only = pytest.mark.skipif(
    REAL_CLUSTER, reason="plays the JobSet controller or Kueue, as only an emulator allows"
)


@pytest_asyncio.fixture
async def cluster(kmock: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("OREAL_WORKER_IMAGE", IMAGE)
    if REAL_CLUSTER:
        namespace, kmock = os.environ.get("OREAL_TEST_NAMESPACE", "default"), None
    else:
        declare_resources(kmock)
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url))))
        namespace = "ml"
    reports = FakeReports()
    monkeypatch.setattr(handlers, "HttpReports", lambda: reports)
    saved = kubernetes.client.Configuration.get_default_copy()
    kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    cluster = Cluster(namespace, kmock)
    cluster.reports = reports  # type: ignore[attr-defined]
    try:
        yield cluster
    finally:
        if REAL_CLUSTER:
            await cluster.cleanup()
        kubernetes.client.Configuration.set_default(saved)


def condition(run: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in run.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def requests_to(kmock: Any, method: str, path: str) -> int:
    """How many `method` requests kmock got under `path`."""
    return sum(1 for r in list(kmock) if r.method == method and r.url.path.startswith(path))


async def present(cluster: Cluster, kind: str, name: str) -> dict[str, Any] | None:
    return await cluster.get(kind, name)


async def with_status(cluster: Cluster, name: str, predicate: Any) -> dict[str, Any] | None:
    run = await cluster.run(name)
    return run if run.get("status") and predicate(run) else None


def phase_is(phase: str) -> Any:
    return lambda run: run["status"].get("phase") == phase


def true(type_: str) -> Any:
    return lambda run: (condition(run, type_) or {}).get("status") == "True"


@pytest.mark.asyncio
async def test_a_run_gets_its_jobset_and_configmap_and_a_pending_status(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace, STATUS_SECONDS) as runner:
        await cluster.create_run(run_body("demo", cluster.namespace))
        jobset = await eventually(lambda: present(cluster, "JobSet", "demo"), what="the JobSet")
        configmap = await eventually(lambda: present(cluster, "ConfigMap", "demo-spec"), what="the ConfigMap")
        assert [r["name"] for r in jobset["spec"]["replicatedJobs"]] == list(ROLES)
        assert "spec.yaml" in configmap["data"]
        uid = (await cluster.run("demo"))["metadata"]["uid"]
        for child in (jobset, configmap):
            (owner,) = child["metadata"]["ownerReferences"]
            assert owner["uid"] == uid and owner["controller"] is True
        run = await eventually(lambda: with_status(cluster, "demo", phase_is("Pending")), what="Pending")
        assert run["status"]["totalSteps"] == 4 and run["status"]["workerImage"] == IMAGE
        assert condition(run, "Ready")["status"] == "False"
        assert "finalizers" not in run["metadata"]  # deleting a run never waits for the operator
    assert runner.exception is None and runner.exit_code == 0  # a clean stop
    assert REGISTRY.get_sample_value("oreal_runs", {"namespace": cluster.namespace, "phase": "Pending"}) >= 1
    if cluster.kmock is not None:
        assert ("Normal", "Pending", "phase None -> Pending: step 0/4 committed") in posted_events(
            cluster.kmock
        )


@pytest.mark.asyncio
async def test_a_deleted_jobset_comes_back_within_one_interval(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace, STATUS_SECONDS):
        await cluster.create_run(run_body("demo", cluster.namespace))
        first = await eventually(lambda: present(cluster, "JobSet", "demo"), what="the JobSet")
        await cluster.delete_jobset("demo")
        again = await eventually(
            lambda: present(cluster, "JobSet", "demo"), timeout=STATUS_SECONDS + 2, what="it back"
        )
        assert again["spec"] == first["spec"] or REAL_CLUSTER  # a real server adds defaults


@emulated_only
@pytest.mark.asyncio
async def test_a_hand_edited_template_is_restored(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace, STATUS_SECONDS):
        await cluster.create_run(run_body("demo", cluster.namespace))
        jobset = await eventually(lambda: present(cluster, "JobSet", "demo"), what="the JobSet")
        edited = [dict(r) for r in jobset["spec"]["replicatedJobs"]]
        edited[2] = {**edited[2], "replicas": 3}
        await cluster.patch_jobset("demo", {"spec": {"replicatedJobs": edited}})

        async def restored() -> bool:
            live = await cluster.get("JobSet", "demo")
            return live is not None and live["spec"]["replicatedJobs"] == jobset["spec"]["replicatedJobs"]

        await eventually(restored, what="the rendered template back")
        assert any(e[1] == "Recreating" and "edited by hand" in e[2] for e in posted_events(cluster.kmock))


@pytest.mark.asyncio
async def test_a_spec_that_cannot_run_is_spec_invalid_and_not_failed(cluster: Cluster) -> None:
    body = run_body("broken", cluster.namespace, storage={"uri": "file:///data/runs/broken"})
    async with running_operator(cluster.namespace, STATUS_SECONDS):
        await cluster.create_run(body)
        run = await eventually(
            lambda: with_status(cluster, "broken", true("SpecInvalid")), what="SpecInvalid"
        )
        assert "spec.storage.uri" in condition(run, "SpecInvalid")["message"]
        assert condition(run, "Ready")["reason"] == "SpecInvalid"
        assert condition(run, "Failed")["status"] == "False" and run["status"]["phase"] == "Pending"
        await asyncio.sleep(3 * STATUS_SECONDS)  # the ticks keep it so
        run = await cluster.run("broken")
        assert run["status"]["phase"] == "Pending" and condition(run, "Failed")["status"] == "False"
        assert (
            await cluster.get("JobSet", "broken") is None
            and await cluster.get("ConfigMap", "broken-spec") is None
        )


@pytest.mark.asyncio
async def test_observed_generation_is_written_only_after_the_jobset_is_applied(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API server answers 500 to the JobSet's create for a while (the operator's client sees
    the error; kmock would store and announce a refused create, so the failure is injected there)."""
    failing, tried = {"on": True}, []
    create = api.Api.create

    async def flaky(self: api.Api, kind: str, namespace: str, body: Any) -> dict[str, Any]:
        if kind == "JobSet" and failing["on"]:
            tried.append(body["metadata"]["name"])
            raise api.ApiError(500, "etcdserver: request timed out", "InternalError")
        return await create(self, kind, namespace, body)

    monkeypatch.setattr(api.Api, "create", flaky)
    async with running_operator(cluster.namespace, STATUS_SECONDS):
        await cluster.create_run(run_body("demo", cluster.namespace))
        await eventually(lambda: _count(lambda: len(tried) >= 3), what="retries with backoff")
        run = await cluster.run("demo")
        assert "observedGeneration" not in (run.get("status") or {})
        assert await cluster.get("JobSet", "demo") is None
        failing["on"] = False
        await eventually(
            lambda: with_status(cluster, "demo", lambda r: r["status"].get("observedGeneration") == 1),
            what="observedGeneration 1 once the JobSet exists",
        )
        assert await cluster.get("JobSet", "demo") is not None


async def _count(check: Any) -> bool:
    return bool(check())


@emulated_only
@pytest.mark.asyncio
async def test_an_operator_restart_creates_no_duplicate_and_an_upgrade_changes_nothing(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    kmock = cluster.kmock
    path = JOBSET_PATH.format(ns=cluster.namespace)
    async with running_operator(cluster.namespace, STATUS_SECONDS):
        await cluster.create_run(run_body("demo", cluster.namespace))
        before = await eventually(lambda: present(cluster, "JobSet", "demo"), what="the JobSet")
        await eventually(lambda: with_status(cluster, "demo", phase_is("Pending")), what="a status")
    writes = {m: requests_to(kmock, m, path) for m in ("POST", "PATCH", "DELETE")}
    assert writes == {"POST": 1, "PATCH": 0, "DELETE": 0}
    # the same operator again, then an upgrade with a new default worker image
    for image in (IMAGE, "example.org/oreal:next"):
        monkeypatch.setenv("OREAL_WORKER_IMAGE", image)
        async with running_operator(cluster.namespace, STATUS_SECONDS):
            await asyncio.sleep(5 * STATUS_SECONDS)  # several ticks
        assert {m: requests_to(kmock, m, path) for m in writes} == writes, image
    assert await cluster.get("JobSet", "demo") == before
    assert (await cluster.run("demo"))["status"]["workerImage"] == IMAGE


@emulated_only
@pytest.mark.asyncio
async def test_a_queued_run_stays_suspended_until_kueue_admits_it(cluster: Cluster) -> None:
    body = run_body("queued", cluster.namespace, labels={"kueue.x-k8s.io/queue-name": "team-a"})
    async with running_operator(cluster.namespace, STATUS_SECONDS):
        await cluster.create_run(body)
        jobset = await eventually(lambda: present(cluster, "JobSet", "queued"), what="the JobSet")
        assert jobset["spec"]["suspend"] is True
        assert jobset["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        run = await eventually(lambda: with_status(cluster, "queued", phase_is("Pending")), what="Pending")
        await asyncio.sleep(4 * STATUS_SECONDS)
        assert (await cluster.get("JobSet", "queued"))["spec"]["suspend"] is True  # still waiting
        assert condition(await cluster.run("queued"), "Ready")["reason"] == "Queued"
        # Kueue admits the run; the JobSet controller starts its Jobs, the trainer reports a step
        await cluster.patch_jobset("queued", {"spec": {"suspend": False}})
        ready = [
            {"name": r, "ready": 1, "succeeded": 0, "failed": 0, "active": 1, "suspended": 0} for r in ROLES
        ]
        await cluster.patch_jobset("queued", {"status": {"replicatedJobsStatus": ready}}, status=True)
        url = report_url("queued", cluster.namespace, 9400)
        cluster.reports.by_url[url] = Report(started=True, step=0, policy_version=1, done=False, metrics=None)  # type: ignore[attr-defined]
        ran = lambda r: true("Ready")(r) and r["status"].get("step") == 0  # noqa: E731
        run = await eventually(lambda: with_status(cluster, "queued", ran), what="Ready, step 0 reported")
        assert run["status"]["phase"] == "Running"
        assert (await cluster.get("JobSet", "queued"))["spec"]["suspend"] is False


@emulated_only
@pytest.mark.asyncio
async def test_the_jobset_completing_succeeds_the_run(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace, STATUS_SECONDS):
        await cluster.create_run(run_body("done", cluster.namespace))
        await eventually(lambda: present(cluster, "JobSet", "done"), what="the JobSet")
        completed = {"type": "Completed", "status": "True", "reason": "AllJobsCompleted", "message": "done"}
        await cluster.patch_jobset(
            "done", {"status": {"conditions": [completed], "terminalState": "Completed"}}, status=True
        )
        run = await eventually(lambda: with_status(cluster, "done", phase_is("Succeeded")), what="Succeeded")
        assert condition(run, "Complete")["status"] == "True" and run["status"]["completionTime"]


@pytest.mark.asyncio
async def test_a_child_name_taken_by_another_owner_is_left_alone(cluster: Cluster) -> None:
    foreign = {
        "metadata": {"name": "demo-spec", "namespace": cluster.namespace},
        "data": {"spec.yaml": "theirs"},
    }
    await cluster.create_configmap(foreign)
    async with running_operator(cluster.namespace, STATUS_SECONDS):
        await cluster.create_run(run_body("demo", cluster.namespace))
        run = await eventually(
            lambda: with_status(
                cluster, "demo", lambda r: (condition(r, "Ready") or {}).get("reason") == "NameTaken"
            ),
            what="Ready=False NameTaken",
        )
        assert "is not controlled by this OREALRun" in condition(run, "Ready")["message"]
        configmap = await cluster.get("ConfigMap", "demo-spec")
        assert configmap is not None and configmap["data"] == {"spec.yaml": "theirs"}


# ---------------------------------------------------------------- the pieces, without a server


def test_config_from_env() -> None:
    config = OperatorConfig.from_env(
        {
            "OREAL_WORKER_IMAGE": IMAGE,
            "OREAL_OPERATOR_NAMESPACES": "a, b,",
            "OREAL_OPERATOR_METRICS_PORT": "0",
        }
    )
    assert (config.image, config.namespaces, config.metrics_port, config.status_seconds) == (
        IMAGE,
        ("a", "b"),
        0,
        15.0,
    )
    assert config.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    with pytest.raises(ConfigError, match="OREAL_OPERATOR_STATUS_SECONDS"):
        OperatorConfig.from_env({"OREAL_WORKER_IMAGE": IMAGE, "OREAL_OPERATOR_STATUS_SECONDS": "soon"})


def test_main_without_worker_image_exits_2_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OREAL_WORKER_IMAGE"}
    done = subprocess.run(
        [sys.executable, "-m", "oreal_operator"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "oreal-operator: OREAL_WORKER_IMAGE is not set: the operator needs the workers' image (e.g. ghcr.io/org/oreal:1.0)"
    ]
