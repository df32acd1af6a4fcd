"""Helpers for the operator's handler tests: a Kubernetes API (kmock's emulator, or a real cluster
with OREAL_TEST_REAL_CLUSTER=1 and $KUBECONFIG), the operator under kopf.testing.KopfRunner, and
the test's view of the cluster through the `kubernetes` client library (a test dependency only: the
operator has its own client, `oreal_operator.api`, and finds the server through `oreal_operator.kube`).

kmock's emulator merges patches into stored JSON and nothing more: it assigns no uid or
resourceVersion (bodies created here carry a uid), ignores label selectors, runs no controllers
(no JobSet controller, no Kueue: the tests play them by writing a JobSet's status or its suspend)
and learns resources only when told (`declare_resources`). On a real cluster the JobSet CRD (and
its controller) must be installed; see README, "Testing against a real cluster".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kopf
import kubernetes
import yaml
from kopf.testing import KopfRunner
from kubernetes.client.exceptions import ApiException

from oreal_operator.handlers import build_registry

REAL_CLUSTER = os.environ.get("OREAL_TEST_REAL_CLUSTER") == "1"
GROUP, VERSION, PLURAL = "oreal.io", "v1alpha1", "orealruns"

JOBSETS = ("jobset.x-k8s.io", "v1alpha2", "jobsets")
# (group/version/plural, kind, namespaced, subresources)
RESOURCES = [
    (f"{GROUP}/{VERSION}/{PLURAL}", "OREALRun", True, ["status"]),
    ("/".join(JOBSETS), "JobSet", True, ["status"]),
    ("v1/configmaps", "ConfigMap", True, []),
    ("v1/pods", "Pod", True, ["status"]),
    ("v1/events", "Event", True, []),
    ("v1/namespaces", "Namespace", False, []),
]


def declare_resources(kmock: Any) -> None:
    """Make kmock's discovery serve the resources the operator touches (the CRD's included)."""
    verbs = {"get", "list", "watch", "create", "patch", "update", "delete"}
    for key, kind, namespaced, subresources in RESOURCES:
        info = kmock.resources[key]
        info.kind, info.namespaced, info.verbs, info.subresources = kind, namespaced, verbs, set(subresources)
        info.singular = kind.lower()


def write_kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "kmock", "user": {"token": "test-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def server_fields() -> dict[str, Any]:
    """What an API server adds to a created object and kmock does not (Kopf's patches test
    resourceVersion); a real server sets them itself and refuses a given resourceVersion."""
    return {} if REAL_CLUSTER else {"uid": str(uuid.uuid4()), "resourceVersion": "1", "generation": 1}


def run_body(name: str, namespace: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """An OREALRun as `kubectl apply` would send it."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OREALRun",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}, **server_fields()},
        "spec": {
            "model": {"policy": "s3://models/tiny"},
            "data": {"prompts": "s3://data/prompts.jsonl"},
            "storage": {"uri": f"s3://runs/{namespace}/{name}"},
            "algorithm": {"steps": 4, "warmupSteps": 1, "promptsPerStep": 8, "samplesPerPrompt": 2},
            "rollout": {"replicas": 2, "gpusPerReplica": 0},
            "verifier": {"replicas": 1},
            "trainer": {"nodes": 1, "gpusPerNode": 0},
            **spec,
        },
    }


class Cluster:
    """The test's side of the API: blocking client calls, run in a thread so kmock keeps serving."""

    def __init__(self, namespace: str, kmock: Any = None) -> None:
        self.namespace = namespace
        self.kmock = kmock  # None against a real cluster
        self.created: list[tuple[str, str]] = []  # (kind, name), deleted by cleanup()

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def create_run(self, body: dict[str, Any]) -> None:
        api = kubernetes.client.CustomObjectsApi()
        await self.call(api.create_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, body)
        self.created.append(("OREALRun", body["metadata"]["name"]))

    async def patch_run(self, name: str, patch: dict[str, Any]) -> None:
        api = kubernetes.client.CustomObjectsApi()
        await self.call(
            api.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            patch,
            _content_type="application/merge-patch+json",
        )

    async def run(self, name: str) -> dict[str, Any]:
        api = kubernetes.client.CustomObjectsApi()
        return await self.call(api.get_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, name)

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """A JobSet or ConfigMap of the test's namespace, None when there is none."""
        if kind == "JobSet":
            api = kubernetes.client.CustomObjectsApi()
            call, args = api.get_namespaced_custom_object, (*JOBSETS[:2], self.namespace, JOBSETS[2], name)
        else:
            call, args = kubernetes.client.CoreV1Api().read_namespaced_config_map, (name, self.namespace)
        try:
            response = await self.call(call, *args, _preload_content=False)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return yaml.safe_load(response.data)

    async def patch_jobset(self, name: str, patch: dict[str, Any], *, status: bool = False) -> None:
        """A merge patch of a JobSet by someone else: kubectl, the JobSet controller (status), Kueue."""
        api = kubernetes.client.CustomObjectsApi()
        call = api.patch_namespaced_custom_object_status if status else api.patch_namespaced_custom_object
        args = (*JOBSETS[:2], self.namespace, JOBSETS[2], name, patch)
        await self.call(call, *args, _content_type="application/merge-patch+json")

    async def delete_jobset(self, name: str) -> None:
        api = kubernetes.client.CustomObjectsApi()
        await self.call(api.delete_namespaced_custom_object, *JOBSETS[:2], self.namespace, JOBSETS[2], name)

    async def create_configmap(self, body: dict[str, Any]) -> None:
        api = kubernetes.client.CoreV1Api()
        await self.call(api.create_namespaced_config_map, self.namespace, body, _preload_content=False)
        self.created.append(("ConfigMap", body["metadata"]["name"]))

    async def cleanup(self) -> None:
        """Delete what the tests created (the children go with their OREALRun's owner reference)."""
        custom, core = kubernetes.client.CustomObjectsApi(), kubernetes.client.CoreV1Api()
        for kind, name in reversed(self.created):
            with contextlib.suppress(ApiException):
                if kind == "OREALRun":
                    await self.call(
                        custom.delete_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, name
                    )
                else:
                    await self.call(core.delete_namespaced_config_map, name, self.namespace)


def posted_events(kmock: Any) -> list[tuple[str, str, str]]:
    """(type, reason, message) of every event the operator sent to kmock, in order."""
    return [
        (r.data.get("type", ""), r.data.get("reason", ""), r.data.get("message", ""))
        for r in kmock
        if r.method == "POST" and r.url.path.endswith("/events") and isinstance(r.data, dict)
    ]


async def eventually(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Await `check()` (an async callable) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")


@contextlib.asynccontextmanager
async def running_operator(namespace: str, status_seconds: float) -> AsyncIterator[KopfRunner]:
    """The operator (oreal_operator.handlers) under KopfRunner, watching `namespace` only, its status
    timer every `status_seconds`.

    Cluster scanning is off: kmock serves no CRD or namespace watches, and one namespace needs none.
    The tests read the posted events from kmock's request log. Entered and exited in a thread, so
    that the event loop serving kmock is never blocked. The runner's timeout is also the bound on a
    clean stop: a stop that takes longer fails the test.
    """
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    settings.queueing.idle_timeout = 0.5
    runner = KopfRunner(
        ["run", "--standalone", "--namespace", namespace],
        registry=build_registry(status_seconds),
        settings=settings,
        timeout=30,
    )
    await asyncio.to_thread(runner.__enter__)
    try:
        yield runner
    finally:
        await asyncio.to_thread(runner.__exit__, None, None, None)
