"""The operator end to end against kmock's Kubernetes emulator (or a real cluster, see kmock_helpers):
children created and patched, suspend, a bad spec, and status folded from pods and the bucket.

The bucket is an in-memory one standing in for the run's s3:// URI (the operator runs in this
process, under KopfRunner), so no test touches the network.
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

from oreal.bucket import Bucket, RunState
from oreal_operator import bucket_view, kube
from oreal_operator.config import ConfigError, OperatorConfig
from oreal_operator.render import render_children
from tests.operator.kmock_helpers import (
    REAL_CLUSTER,
    Cluster,
    declare_resources,
    eventually,
    pod_body,
    posted_events,
    run_body,
    running_operator,
    write_kubeconfig,
)

IMAGE = "example.org/oreal:test"
STATUS_SECONDS = 0.3
ROLE_REPLICAS = {"rollout": 2, "verifier": 1, "trainer": 1}


@pytest_asyncio.fixture
async def cluster(kmock: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("OREAL_WORKER_IMAGE", IMAGE)
    if REAL_CLUSTER:
        namespace, kmock = os.environ.get("OREAL_TEST_NAMESPACE", "default"), None
    else:
        declare_resources(kmock)
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url))))
        namespace = "ml"
    # s3://runs/... is served from memory: the operator's bucket reads stay in this process.
    monkeypatch.setattr(
        bucket_view, "open_bucket", lambda where: Bucket.open(where.uri.replace("s3://", "memory://"))
    )
    saved = kubernetes.client.Configuration.get_default_copy()
    kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    cluster = Cluster(namespace, kmock)
    try:
        yield cluster
    finally:
        if REAL_CLUSTER:
            await cluster.cleanup()
        kubernetes.client.Configuration.set_default(saved)


def replicas(sts: dict[str, Any] | None) -> int | None:
    return None if sts is None else sts["spec"]["replicas"]


async def statefulsets(cluster: Cluster, name: str) -> dict[str, dict[str, Any] | None]:
    return {role: await cluster.get("StatefulSet", f"{name}-{role}") for role in ROLE_REPLICAS}


def condition(run: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in run.get("status", {}).get("conditions", []) if c["type"] == type_), None)


@pytest.mark.asyncio
async def test_create_renders_owned_children_and_a_pending_status(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace, STATUS_SECONDS):
        await cluster.create_run(run_body("demo", cluster.namespace))
        sets = await eventually(lambda: _all_present(cluster, "demo"), what="the three StatefulSets")
        assert {role: replicas(s) for role, s in sets.items()} == ROLE_REPLICAS
        configmap = await cluster.get("ConfigMap", "demo-spec")
        service = await cluster.get("Service", "demo-trainer")
        assert configmap is not None and "spec.yaml" in configmap["data"]
        assert service is not None and service["spec"]["clusterIP"] == "None"
        uid = (await cluster.run("demo"))["metadata"]["uid"]
        for child in [configmap, service, *sets.values()]:
            (owner,) = child["metadata"]["ownerReferences"]
            assert owner["uid"] == uid and owner["controller"] is True
        run = await eventually(lambda: _with_phase(cluster, "demo"), what="a status")
        assert run["status"]["phase"] == "Pending"
        assert run["status"]["totalSteps"] == 4
        assert condition(run, "Ready")["status"] == "False"
    assert REGISTRY.get_sample_value("oreal_runs", {"namespace": cluster.namespace, "phase": "Pending"}) >= 1
    assert (
        REGISTRY.get_sample_value("oreal_operator_reconcile_duration_seconds_count", {"handler": "apply"})
        >= 1
    )
    if cluster.kmock is not None:
        assert ("Normal", "Pending", "phase None -> Pending: step 0/4 committed") in posted_events(
            cluster.kmock
        )


@pytest.mark.asyncio
async def test_spec_update_patches_the_statefulset_and_suspend_scales_to_zero(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace, STATUS_SECONDS):
        await cluster.create_run(run_body("demo", cluster.namespace))
        await eventually(lambda: _all_present(cluster, "demo"), what="the StatefulSets")
        # Fields the operator does not own, set by someone else, must survive its patches.
        theirs = {"metadata": {"annotations": {"team": "rl"}}, "spec": {"revisionHistoryLimit": 3}}
        await cluster.patch_child("StatefulSet", "demo-rollout", theirs)
        await cluster.patch_run("demo", {"spec": {"rollout": {"replicas": 3}}})

        async def rollout_scaled() -> bool:
            return replicas(await cluster.get("StatefulSet", "demo-rollout")) == 3

        await eventually(rollout_scaled, what="rollout replicas 3")
        rollout = await cluster.get("StatefulSet", "demo-rollout")
        assert rollout is not None and rollout["metadata"]["annotations"]["team"] == "rl"
        assert rollout["spec"]["revisionHistoryLimit"] == 3
        await cluster.patch_run("demo", {"spec": {"suspend": True}})

        async def all_zero() -> bool:
            return all(replicas(s) == 0 for s in (await statefulsets(cluster, "demo")).values())

        await eventually(all_zero, what="every StatefulSet at 0 replicas")
        run = await eventually(lambda: _with_phase(cluster, "demo", "Suspended"), what="phase Suspended")
        assert condition(run, "Suspended")["status"] == "True"
        await cluster.patch_run("demo", {"spec": {"suspend": False}})
        await eventually(rollout_scaled, what="rollout back to 3 replicas after resume")


@pytest.mark.asyncio
async def test_invalid_spec_gets_spec_invalid_and_no_children(cluster: Cluster) -> None:
    body = run_body("broken", cluster.namespace, storage={"uri": "file:///data/runs/broken"})
    async with running_operator(cluster.namespace, STATUS_SECONDS) as runner:
        await cluster.create_run(body)
        run = await eventually(lambda: _with_phase(cluster, "broken", "Failed"), what="phase Failed")
        invalid = condition(run, "SpecInvalid")
        assert invalid is not None and invalid["status"] == "True"
        assert "spec.storage.uri" in invalid["message"]
        assert await cluster.get("ConfigMap", "broken-spec") is None
        assert all(s is None for s in (await statefulsets(cluster, "broken")).values())
    assert "spec.storage.uri" in runner.output


@pytest.mark.asyncio
async def test_a_child_name_taken_by_another_owner_is_left_alone(cluster: Cluster) -> None:
    foreign = {
        "metadata": {"name": "demo-spec", "namespace": cluster.namespace},
        "data": {"spec.yaml": "theirs"},
    }
    await cluster.create_configmap(foreign)
    async with running_operator(cluster.namespace, STATUS_SECONDS) as runner:
        await cluster.create_run(run_body("demo", cluster.namespace))

        async def refused() -> bool:
            return "is not controlled by this OREALRun" in _output_so_far(runner, cluster)

        await eventually(refused, what="the apply handler refusing ConfigMap demo-spec")
        configmap = await cluster.get("ConfigMap", "demo-spec")
        assert configmap is not None and configmap["data"] == {"spec.yaml": "theirs"}


def _output_so_far(runner: Any, cluster: Cluster) -> str:
    """The events posted so far (the runner's output is only readable after it exits): from kmock's
    request log, or on a real cluster from the namespace's Events."""
    if cluster.kmock is None:
        events = kubernetes.client.CoreV1Api().list_namespaced_event(cluster.namespace)
        return "\n".join(event.message or "" for event in events.items)
    return "\n".join(message for _, _, message in posted_events(cluster.kmock))


@pytest.mark.skipif(REAL_CLUSTER, reason="creates pods by hand, as only an emulated cluster allows")
@pytest.mark.asyncio
async def test_status_follows_pods_and_bucket_then_fails_on_restarts(cluster: Cluster) -> None:
    body = run_body("demo", cluster.namespace, maxRestarts=1)
    bucket = Bucket.open("memory://runs/ml/demo")
    async with running_operator(cluster.namespace, STATUS_SECONDS):
        await cluster.create_run(body)
        await eventually(lambda: _all_present(cluster, "demo"), what="the StatefulSets")
        for role, count in ROLE_REPLICAS.items():
            for index in range(count):
                await cluster.create_pod(pod_body("demo", cluster.namespace, role, index, ready=True))
        run = await eventually(lambda: _condition_true(cluster, "demo", "Ready"), what="Ready")
        assert run["status"]["phase"] == "Running"

        bucket.write_state(RunState(step=1, policy_version=2))
        bucket.write_stats(1, {"pass_rate": 0.75, "loss/policy": 0.5, "kl": 0.01, "wall_seconds": 3.0})

        async def progressed() -> dict[str, Any] | None:
            run = await cluster.run("demo")
            return run if run.get("status", {}).get("step") == 1 else None

        run = await eventually(progressed, what="step 1 from the bucket")
        assert run["status"]["progressPercentage"] == 50 and run["status"]["policyVersion"] == 2
        assert run["status"]["lastMetrics"] == {"passRate": 0.75, "loss": 0.5, "kl": 0.01, "stepSeconds": 3.0}

        await cluster.create_pod(pod_body("demo", cluster.namespace, "trainer", 1, ready=False, restarts=2))
        run = await eventually(lambda: _with_phase(cluster, "demo", "Failed"), what="phase Failed")
        assert condition(run, "Failed")["reason"] == "BackoffLimitExceeded"
        assert any(e[:2] == ("Warning", "BackoffLimitExceeded") for e in posted_events(cluster.kmock))

        async def all_zero() -> bool:
            return all(replicas(s) == 0 for s in (await statefulsets(cluster, "demo")).values())

        await eventually(all_zero, what="a failed run's StatefulSets at 0 replicas")


@pytest.mark.asyncio
async def test_a_done_bucket_succeeds_and_stops_the_pods(cluster: Cluster) -> None:
    Bucket.open(f"memory://runs/{cluster.namespace}/done").write_state(
        RunState(step=3, policy_version=4, done=True)
    )
    async with running_operator(cluster.namespace, STATUS_SECONDS):
        await cluster.create_run(run_body("done", cluster.namespace))
        run = await eventually(lambda: _with_phase(cluster, "done", "Succeeded"), what="phase Succeeded")
        assert condition(run, "Complete")["status"] == "True" and run["status"]["completionTime"]
        assert run["status"]["progressPercentage"] == 100

        async def all_zero() -> bool:
            sets = await statefulsets(cluster, "done")
            return all(s is not None and replicas(s) == 0 for s in sets.values())

        await eventually(all_zero, what="a finished run's StatefulSets at 0 replicas")


@pytest.mark.asyncio
async def test_a_change_a_started_run_cannot_take_is_refused_until_reverted(
    cluster: Cluster, tmp_path: Any
) -> None:
    bucket = Bucket.open(f"memory://runs/{cluster.namespace}/started")
    async with running_operator(cluster.namespace, STATUS_SECONDS):
        await cluster.create_run(run_body("started", cluster.namespace))
        await eventually(lambda: _all_present(cluster, "started"), what="the StatefulSets")
        # What the pods' init container and the trainer do: store the frozen spec, commit policy v0.
        configmap = await cluster.get("ConfigMap", "started-spec")
        assert configmap is not None
        bucket.write_spec(configmap["data"]["spec.yaml"])
        (tmp_path / "v0").mkdir()
        (tmp_path / "v0" / "config.json").write_text("{}")
        bucket.publish_policy(0, tmp_path / "v0")

        await cluster.patch_run("started", {"spec": {"algorithm": {"steps": 8}}})
        run = await eventually(lambda: _condition_true(cluster, "started", "SpecInvalid"), what="SpecInvalid")
        message = condition(run, "SpecInvalid")["message"]
        assert "algorithm.steps changed" in message and "s3://runs/ml/started" in message
        assert run["status"]["phase"] == "Failed"

        async def all_zero() -> bool:
            return all(replicas(s) == 0 for s in (await statefulsets(cluster, "started")).values())

        await eventually(all_zero, what="a refused run's StatefulSets at 0 replicas")
        # The refused spec reached no child, and the timer keeps the refusal while it lasts.
        assert (await cluster.get("ConfigMap", "started-spec"))["data"] == configmap["data"]
        await asyncio.sleep(4 * STATUS_SECONDS)
        assert condition(await cluster.run("started"), "SpecInvalid")["status"] == "True"

        await cluster.patch_run("started", {"spec": {"algorithm": {"steps": 4}}})

        async def resumed() -> bool:
            sets = await statefulsets(cluster, "started")
            return {role: replicas(s) for role, s in sets.items()} == ROLE_REPLICAS

        await eventually(resumed, what="the reverted run's StatefulSets scaled up again")
        run = await eventually(lambda: _with_phase(cluster, "started", "Pending"), what="phase Pending")
        assert condition(run, "SpecInvalid")["status"] == "False"


@pytest.mark.skipif(REAL_CLUSTER, reason="kmock answers the error; a real server would need a bad spec")
@pytest.mark.asyncio
async def test_a_child_the_api_server_refuses_makes_the_spec_invalid(cluster: Cluster) -> None:
    kmock = cluster.kmock

    def refuse(request: Any) -> dict[str, Any]:
        """A 422 as an API server answers a bad field; kmock stores every create: unstore it."""
        name = request.data["metadata"]["name"]
        del kmock.objects["apps/v1/statefulsets", cluster.namespace, name]
        return {
            "kind": "Status",
            "status": "Failure",
            "reason": "Invalid",
            "code": 422,
            "message": f'StatefulSet.apps "{name}" is invalid:\n spec.template.spec.containers[0]'
            '.resources.limits[cpu]: Invalid value: "two"',
        }

    creates = kmock[f"post /apis/apps/v1/namespaces/{cluster.namespace}/statefulsets"] << 422 << refuse
    async with running_operator(cluster.namespace, STATUS_SECONDS) as runner:
        await cluster.create_run(run_body("refused", cluster.namespace))
        run = await eventually(lambda: _condition_true(cluster, "refused", "SpecInvalid"), what="SpecInvalid")
        message = condition(run, "SpecInvalid")["message"]
        assert message.startswith("the API server refused StatefulSet/refused-rollout: ")
        assert 'Invalid value: "two"' in message and "\n" not in message
        # The timer keeps the refusal without creating the refused child at every interval. (Kopf
        # may run the create handler a few times: kmock's unchanging resourceVersion makes it
        # see its own earlier patches as new events; a real server does not.)
        await asyncio.sleep(2 * STATUS_SECONDS)
        tried = len(creates)
        await asyncio.sleep(5 * STATUS_SECONDS)
        assert len(creates) == tried
        assert condition(await cluster.run("refused"), "SpecInvalid")["status"] == "True"
    assert 'Invalid value: \\"two\\"' in runner.output or 'Invalid value: "two"' in runner.output


async def _all_present(cluster: Cluster, name: str) -> dict[str, dict[str, Any]] | None:
    sets = await statefulsets(cluster, name)
    return sets if all(s is not None for s in sets.values()) else None  # type: ignore[return-value]


async def _with_phase(cluster: Cluster, name: str, phase: str | None = None) -> dict[str, Any] | None:
    run = await cluster.run(name)
    current = run.get("status", {}).get("phase")
    return run if current is not None and (phase is None or current == phase) else None


async def _condition_true(cluster: Cluster, name: str, type_: str) -> dict[str, Any] | None:
    run = await cluster.run(name)
    found = condition(run, type_)
    return run if found is not None and found["status"] == "True" else None


# ---------------------------------------------------------------- the pieces, without a server


def live(desired: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`desired` as the API server would return it after our create (defaults added)."""
    obj = kube.with_hash(desired)
    obj = {**obj, "metadata": {**obj["metadata"], "uid": "child-uid", "resourceVersion": "7"}}
    if obj["kind"] == "StatefulSet":
        template = {
            **obj["spec"]["template"],
            "spec": {**obj["spec"]["template"]["spec"], "dnsPolicy": "ClusterFirst"},
        }
        obj = {**obj, "spec": {**obj["spec"], "template": template, "revisionHistoryLimit": 10}}
    for pointer, value in changes.items():
        head, key = pointer.rsplit("/", 1)
        kube.pointer_get(obj, head)[key] = value
    return obj


def rendered() -> list[dict[str, Any]]:
    from oreal_operator.config import OperatorConfig
    from oreal_operator.reconcile import parse, render_options

    body = run_body("demo", "ml")
    body["metadata"]["uid"] = "run-uid"
    return render_children(parse(body), render_options(body, OperatorConfig(image=IMAGE)))


def test_patch_ops_leave_a_defaulted_child_alone_and_replace_what_we_own() -> None:
    for child in rendered():
        assert kube.patch_ops(child, live(child)) == []
    sts = rendered()[2]
    scaled = live(sts)
    scaled["spec"]["replicas"] = 5
    assert kube.patch_ops(sts, scaled) == [{"op": "add", "path": "/spec/replicas", "value": 2}]
    stale = live(sts)
    stale["metadata"]["annotations"][kube.HASH_ANNOTATION] = "old"
    ops = kube.patch_ops(sts, stale)
    assert [op["path"] for op in ops] == ["/spec/template", "/metadata/annotations/oreal.io~1applied-hash"]
    assert ops[0]["value"] == sts["spec"]["template"]


def test_patch_ops_for_a_child_without_annotations() -> None:
    configmap = rendered()[0]
    bare = live(configmap)
    del bare["metadata"]["annotations"]
    ops = kube.patch_ops(configmap, bare)
    assert ops[-1] == {
        "op": "add",
        "path": "/metadata/annotations",
        "value": {kube.HASH_ANNOTATION: kube.owned_hash(configmap)},
    }


def test_children_of_another_owner_are_not_ours() -> None:
    sts = rendered()[2]
    assert kube.controlled_by(live(sts), "run-uid")
    assert not kube.controlled_by(live(sts), "someone-else")


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
    assert (
        OperatorConfig.from_env(
            {"OREAL_WORKER_IMAGE": IMAGE, "OREAL_OPERATOR_HEALTH_PORT": "0"}
        ).liveness_endpoint
        is None
    )
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


def test_transition_events_name_the_deciding_condition() -> None:
    from datetime import UTC, datetime

    from oreal_operator.reconcile import parse, transition
    from oreal_operator.status import fold_status

    run = parse(run_body("demo", "ml"))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    pending = fold_status(run, generation=1, pods=[], state=None, stats=None, previous=None, now=now)
    assert transition(None, pending) == ("Pending", "phase None -> Pending: step 0/4 committed")
    assert transition(pending, pending) is None


def test_bucket_credentials_come_from_the_secret_named_by_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    from oreal_operator import reconcile

    secrets = {("ml", "creds"): {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}}
    monkeypatch.setattr(kube, "read_secret", lambda namespace, name: secrets.get((namespace, name)))
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(
        reconcile, "read_bucket", lambda spec, secret: seen.append(secret) or bucket_view.BucketView()
    )
    with_secret = reconcile.parse(
        run_body("demo", "ml", storage={"uri": "s3://runs/demo", "secretRef": {"name": "creds"}})
    )
    assert reconcile.observe_bucket(with_secret, "ml").error is None
    assert seen == [secrets[("ml", "creds")]]
    missing = reconcile.parse(
        run_body("demo", "ml", storage={"uri": "s3://runs/demo", "secretRef": {"name": "gone"}})
    )
    view = reconcile.observe_bucket(missing, "ml")
    assert view.error == "Secret ml/gone (spec.storage.secretRef) not found" and len(seen) == 1
