"""Leader election between operator replicas: exactly one reconciles, through a coordination.k8s.io/v1
Lease (the protocol of client-go's leaderelection, kept small).

    with leadership(config) as lost:          # returns once this replica holds the Lease
        kopf.run(...)                         # stopped by SIGTERM when the Lease is lost
    exit(1 if lost.is_set() else 0)

- acquire: read the Lease, create it when absent, take it over when its holder let it go (no
  holderIdentity) or stopped renewing it: its record (holder, renewTime) has not changed for
  leaseDurationSeconds by this replica's own clock, as client-go judges it (immune to clock skew
  between nodes; a replica that starts meanwhile waits one whole duration). The replace
  carries the resourceVersion that was read, so of two replicas taking over at once one gets 409.
- renew: every `retry` seconds. When renewing has failed for `renew_deadline` seconds, or another
  holder is seen, leadership is lost: `lost` is set and the process sends itself SIGTERM, on which
  Kopf stops as on any shutdown, and `python -m oreal_operator` exits 1 (its pod restarts as a
  standby). Not Kopf's stop_flag: Kopf waits for a thread-based flag in an executor thread, which
  would hold every other shutdown until the flag is set.
- release: on a clean exit (SIGTERM, a rolling update) the holder clears holderIdentity, so a standby
  takes over within one retry period instead of a whole lease duration.
- a standby answers the liveness probe itself (`/healthz` on the health port), so that Kubernetes
  does not restart replicas for waiting.

Without a Lease name (one replica, the chart's default) `leadership` leads at once.
Why a Lease and not Kopf's peering: charts/README.md ("High availability").
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Gauge

from oreal_operator.api import Api, ApiError

LOG = logging.getLogger("oreal_operator.leader")
LEADER = Gauge("oreal_operator_leader", "1 while this operator replica holds the leader Lease and reconciles")
_MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"
REQUEST_TIMEOUT = 5.0  # one Lease request; a hung one must not outlast the renew deadline


@dataclass(frozen=True)
class Timing:
    """client-go's defaults scaled by `lease_seconds`: renew for 2/3 of it, retry every 2/15."""

    lease_seconds: float = 15.0

    @property
    def renew_deadline(self) -> float:
        return self.lease_seconds * 2 / 3

    @property
    def retry(self) -> float:
        return self.lease_seconds * 2 / 15


class LeaseClient:
    """The Lease's get/create/replace as plain dicts (`None` for 404), through `api.Api` (RBAC:
    create, get, patch). Blocking calls: the election runs before Kopf's event loop starts and in a
    thread of its own beside it, so the client drives its own loop (one call at a time, from any
    thread without a running loop)."""

    def __init__(self, namespace: str, name: str, api: Api | None = None) -> None:
        from oreal_operator import kube

        self.namespace, self.name = namespace, name
        self.api = api or Api.from_connection(
            kube.connection_info(), login=kube.connection_info, timeout=REQUEST_TIMEOUT
        )
        self._loop = asyncio.new_event_loop()

    def _call(self, request: Coroutine[Any, Any, Any]) -> Any:
        return self._loop.run_until_complete(request)

    def read(self) -> dict[str, Any] | None:
        return self._call(self.api.get("Lease", self.namespace, self.name))

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(self.api.create("Lease", self.namespace, body))

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        """Write `body`'s spec as a merge patch that carries the resourceVersion it was read at: the
        API server refuses it (409) when the Lease changed since, as it would refuse a PUT."""
        patch: dict[str, Any] = {"spec": body["spec"]}
        version = body.get("metadata", {}).get("resourceVersion")
        if version:
            patch["metadata"] = {"resourceVersion": version}
        return self._call(self.api.patch("Lease", self.namespace, self.name, patch))

    def close(self) -> None:
        if not self._loop.is_closed():
            self._call(self.api.close())
            self._loop.close()


def _now() -> datetime:
    return datetime.now(UTC)


def held_by_other(lease: dict[str, Any], me: str, observed_for: timedelta) -> str | None:
    """The identity of another replica that holds `lease`, or None when it is free, ours, or expired.

    `observed_for`: how long this replica has seen the Lease's record unchanged, on its own clock.
    As client-go does, expiry is judged by that and not by the holder's renewTime, so clocks that
    differ between nodes cannot make a live holder look expired (or a dead one alive).
    """
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    if not holder or holder == me:
        return None
    duration = timedelta(seconds=float(spec.get("leaseDurationSeconds") or 0))
    if observed_for > duration:
        return None  # expired: its holder stopped renewing
    return holder


def _record(lease: dict[str, Any]) -> tuple[Any, ...]:
    """What changes whenever a holder writes the Lease (its renewals included)."""
    spec = lease.get("spec") or {}
    return (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))


class Elector:
    """One replica's side of the election. `acquire` blocks; `renew_until_lost` runs in a thread."""

    def __init__(
        self, client: LeaseClient, identity: str, timing: Timing, now: Callable[[], datetime] = _now
    ):
        self.client, self.identity, self.timing, self.now = client, identity, timing, now
        self.lease: dict[str, Any] | None = None  # as last written by us
        self._observed: tuple[Any, ...] | None = None  # the Lease's record as last read
        self._observed_at: datetime | None = None  # when it was first read so, on our clock

    def _observed_for(self, lease: dict[str, Any]) -> timedelta:
        """How long the Lease's record has stayed as it is now, by this replica's clock."""
        now, record = self.now(), _record(lease)
        if record != self._observed or self._observed_at is None:
            self._observed, self._observed_at = record, now
        return now - self._observed_at

    def _spec(self, lease: dict[str, Any] | None, acquired: bool) -> dict[str, Any]:
        now = self.now().strftime(_MICROTIME)
        old = (lease or {}).get("spec") or {}
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.timing.lease_seconds)),
            "acquireTime": now if acquired else old.get("acquireTime", now),
            "renewTime": now,
            "leaseTransitions": int(old.get("leaseTransitions") or 0) + (1 if acquired and old else 0),
        }
        return spec

    def try_acquire(self) -> bool:
        """One attempt: True when this replica holds the Lease afterwards."""
        lease = self.client.read()
        try:
            if lease is None:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.client.name, "namespace": self.client.namespace},
                    "spec": self._spec(None, acquired=True),
                }
                self.lease = self.client.create(body)
                return True
            holder = held_by_other(lease, self.identity, self._observed_for(lease))
            if holder is not None:
                return False
            ours = (lease.get("spec") or {}).get("holderIdentity") == self.identity
            body = {**lease, "spec": self._spec(lease, acquired=not ours)}
            self.lease = self.client.replace(body)
            return True
        except ApiError as err:
            if err.status == 409:  # another replica created or took it first
                return False
            raise

    def acquire(self, stop: threading.Event) -> bool:
        """Wait until this replica holds the Lease (True) or `stop` is set (False)."""
        waiting_on: str | None = None
        while not stop.is_set():
            try:
                if self.try_acquire():
                    LOG.info(
                        "leader: %s holds Lease %s/%s", self.identity, self.client.namespace, self.client.name
                    )
                    return True
                holder = ((self.client.read() or {}).get("spec") or {}).get("holderIdentity")
                if holder != waiting_on:
                    LOG.info("leader: standing by; Lease held by %s", holder)
                    waiting_on = holder
            except Exception as err:  # API server unreachable: keep waiting
                LOG.warning("leader: cannot read the Lease: %s", err)
            stop.wait(self.timing.retry)
        return False

    def renew(self) -> bool:
        """Renew once (read, check, replace, as client-go does); False when the Lease is someone
        else's now (lost for sure). A replace that meets 409 reads again."""
        for _ in range(3):
            lease = self.client.read()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return False
            try:
                self.lease = self.client.replace({**lease, "spec": self._spec(lease, acquired=False)})
                return True
            except ApiError as err:
                if err.status != 409:
                    raise
        raise RuntimeError("the Lease kept changing while it was renewed")

    def renew_until_lost(
        self, lost: threading.Event, done: threading.Event, on_lost: Callable[[], None] = lambda: None
    ) -> None:
        """Renew every retry period until `done`; set `lost` and call `on_lost` when leadership cannot be kept."""
        last = time.monotonic()
        while not done.wait(self.timing.retry):
            try:
                if not self.renew():
                    LOG.error("leader: another replica holds the Lease now; stopping")
                    break
                last = time.monotonic()
            except Exception as err:
                if time.monotonic() - last > self.timing.renew_deadline:
                    LOG.error(
                        "leader: could not renew the Lease for %.0f s (%s); stopping",
                        time.monotonic() - last,
                        err,
                    )
                    break
                LOG.warning("leader: renewing the Lease failed: %s", err)
        else:
            return
        LEADER.set(0)
        lost.set()
        on_lost()

    def release(self) -> None:
        """Give the Lease up (a standby takes over at its next retry)."""
        lease = self.lease
        if lease is None:
            return
        spec = {**(lease.get("spec") or {}), "holderIdentity": None, "leaseDurationSeconds": 1}
        with contextlib.suppress(Exception):
            current = self.client.read()
            if current is not None and (current.get("spec") or {}).get("holderIdentity") == self.identity:
                self.client.replace({**current, "spec": spec})
                LOG.info("leader: %s released the Lease", self.identity)


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path.startswith("/healthz") else 404)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"standby\n")

    def log_message(self, *_: Any) -> None:
        pass


@contextlib.contextmanager
def standby_health(port: int) -> Iterator[None]:
    """Answer `/healthz` on `port` (0: not at all) while a replica waits for the Lease."""
    if not port:
        yield
        return
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), _Health)
    thread = threading.Thread(target=server.serve_forever, name="standby-health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def identity() -> str:
    """This replica's name in the Lease: its pod name (downward API), else the host name, made unique."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


def _terminate() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def leadership(
    lease: str,
    *,
    health_port: int = 0,
    timing: Timing = Timing(),
    stop: threading.Event | None = None,
    on_lost: Callable[[], None] = _terminate,
) -> Iterator[threading.Event]:
    """Hold the Lease "namespace/name" for the body's duration; yields the flag set when it is lost
    (and then calls `on_lost`: SIGTERM to this process, which stops Kopf).

    An empty `lease` leads at once (no election). `stop` (set by a test) ends the wait for the
    Lease; the context then yields a flag that is already set.
    """
    lost = threading.Event()
    if not lease:
        LEADER.set(1)
        yield lost
        LEADER.set(0)
        return
    namespace, _, name = lease.partition("/")
    client = LeaseClient(namespace, name)  # the credentials Kopf's login uses later (kube.py)
    elector = Elector(client, identity(), timing)
    with standby_health(health_port):
        acquired = elector.acquire(stop or threading.Event())
    if not acquired:
        client.close()
        lost.set()
        yield lost
        return
    LEADER.set(1)
    done = threading.Event()
    renewer = threading.Thread(
        target=elector.renew_until_lost, args=(lost, done, on_lost), name="lease-renewer", daemon=True
    )
    renewer.start()
    try:
        yield lost
    finally:
        done.set()
        renewer.join(timeout=timing.retry + 5)
        LEADER.set(0)
        if not lost.is_set():
            elector.release()
        if not renewer.is_alive():  # (its loop is the client's)
            client.close()
