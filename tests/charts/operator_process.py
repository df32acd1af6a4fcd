"""`python -m oreal_operator` as a real process (from the venv, or from the operator image) against
kmock's Kubernetes emulator, as the chart's Deployment runs it: settings from the environment, Kopf
with its scanning on, the leader Lease when asked for.

kmock serves what `tests/operator/kmock_helpers.declare_resources` declares (the operator's children,
kept in step with the operator by its own tests), plus Leases and the OREALRun CRD itself (Kopf's
scanner watches CRDs). Each process gets its own token, so the requests of two replicas can be told
apart in kmock's request log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from oreal.spec.crd import crd_yaml
from tests.operator.kmock_helpers import declare_resources, run_body

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "ml"
LEASES = "coordination.k8s.io/v1/leases"
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def prepare(kmock: Any) -> None:
    """Declare the resources the operator (and its election) use and store the OREALRun CRD."""
    declare_resources(kmock)
    verbs = {"get", "list", "watch", "create", "patch", "update", "delete"}
    for key, kind, namespaced in ((LEASES, "Lease", True), (CRDS, "CustomResourceDefinition", False)):
        info = kmock.resources[key]
        info.kind, info.namespaced, info.verbs, info.singular = kind, namespaced, verbs, kind.lower()
    crd = yaml.safe_load(crd_yaml())
    crd["status"] = {"conditions": [{"type": "Established", "status": "True"}]}
    kmock.objects[CRDS, None, crd["metadata"]["name"]] = crd


def kubeconfig(path: Path, server: str, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "kmock", "user": {"token": token}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def operator_env(
    kubeconfig: Path, *, lease: str = "", name: str = "operator-0", **extra: str
) -> dict[str, str]:
    """The chart's settings (templates/deployment.yaml), with short intervals for a test."""
    return {
        "KUBECONFIG": str(kubeconfig),
        "OREAL_WORKER_IMAGE": "example.org/oreal-worker:test",
        "OREAL_OPERATOR_NAMESPACES": NAMESPACE,
        "OREAL_OPERATOR_METRICS_PORT": "0",
        "OREAL_OPERATOR_HEALTH_PORT": "0",
        "OREAL_OPERATOR_STATUS_SECONDS": "1",
        "OREAL_OPERATOR_LEADER_ELECTION": lease,
        "OREAL_OPERATOR_LEASE_SECONDS": "3",
        "POD_NAME": name,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@contextlib.asynccontextmanager
async def process(
    argv: Sequence[str], env: dict[str, str], log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A process in its own session, output to `log`; SIGTERM at the end (SIGKILL if it lingers)."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            await stop(proc)


async def stop(proc: asyncio.subprocess.Process, timeout: float = 20.0) -> int:
    """SIGTERM the process group (Kopf exits cleanly on it); SIGKILL after `timeout` seconds."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    return proc.returncode or 0


# `python -m oreal_operator`, with two Kopf settings changed for kmock, as tests/operator's
# KopfRunner has them: scanning off (kmock cannot serve a list of namespaces: its path parser fails on
# /api/v1/namespaces, and Kopf's scanner starts by listing them), and event posts not retried (kmock
# ignores generateName, so every event after the first collides, and the retries would hold up the
# exit on SIGTERM, and with it the release of the Lease).
KMOCK_ENTRY = """
import runpy, sys, kopf
_run = kopf.run
def run(*args, settings=None, **kwargs):
    settings = settings or kopf.OperatorSettings()
    settings.scanning.disabled = True
    settings.posting.default_backoffs = ()
    settings.queueing.exit_timeout = 0.5
    return _run(*args, settings=settings, **kwargs)
kopf.run = run
sys.argv = ["oreal_operator", *sys.argv[1:]]
runpy.run_module("oreal_operator", run_name="__main__", alter_sys=True)
"""


def venv_operator(env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """`python -m oreal_operator` from this checkout (with KMOCK_ENTRY's settings)."""
    return [sys.executable, "-c", KMOCK_ENTRY], {**os.environ, **env}


async def create_run(kmock: Any, name: str, token: str = "test") -> dict[str, Any]:
    """POST an OREALRun as kubectl would; returns it as stored."""
    body = run_body(name, NAMESPACE)
    url = f"{kmock.url}/apis/oreal.io/v1alpha1/namespaces/{NAMESPACE}/orealruns"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        assert response.status in (200, 201), await response.text()
        return await response.json()


def children(kmock: Any, owner_uid: str) -> list[tuple[str, str]]:
    """(kind, name) of every object kmock holds whose ownerReferences name `owner_uid`."""
    out = []
    for obj in list(kmock.objects.values()):  # (the store is only read here)
        raw = obj.raw if hasattr(obj, "raw") else obj
        if not raw:
            continue
        owners = raw.get("metadata", {}).get("ownerReferences", [])
        if any(o.get("uid") == owner_uid for o in owners):
            out.append((raw.get("kind", "?"), raw["metadata"]["name"]))
    return sorted(out)


def writes_by(kmock: Any, token: str) -> list[str]:
    """'METHOD path' of every write request sent with `token`."""
    return [
        f"{r.method} {r.url.path}"
        for r in list(kmock)
        if any(r.method == method for method in WRITES)
        and r.headers.get("Authorization") == f"Bearer {token}"
    ]


def lease_holder(kmock: Any, lease: str) -> str | None:
    """holderIdentity of the Lease "namespace/name" as kmock holds it (None: absent or released)."""
    namespace, _, name = lease.partition("/")
    for obj in list(kmock.objects.values()):
        raw = obj.raw if hasattr(obj, "raw") else obj
        meta = (raw or {}).get("metadata", {})
        if (
            raw
            and raw.get("kind") == "Lease"
            and (meta.get("namespace"), meta.get("name")) == (namespace, name)
        ):
            return (raw.get("spec") or {}).get("holderIdentity")
    return None


async def eventually(check: Callable[[], Any], timeout: float, what: str, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        await asyncio.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}\n{tail}")
