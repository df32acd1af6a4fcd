"""`replicas: 2`: exactly one operator replica reconciles. The election itself (operator/oreal_operator/
leader.py) against kmock's emulator with a hand-driven clock, then two real `python -m oreal_operator`
processes with the chart's settings: the second stays idle until the first goes away."""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from oreal_operator.leader import Elector, LeaseClient, Timing, held_by_other
from tests.charts.operator_process import (
    NAMESPACE,
    children,
    create_run,
    eventually,
    kubeconfig,
    lease_holder,
    operator_env,
    prepare,
    process,
    stop,
    venv_operator,
    writes_by,
)

LEASE = f"{NAMESPACE}/oreal-operator-leader"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


CLIENTS: list[LeaseClient] = []


@pytest.fixture
def api(kmock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """kmock with the Lease resource; the operator's credentials (oreal_operator.kube) point at it."""
    prepare(kmock)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", str(kmock.url), "t")))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield kmock
    while CLIENTS:
        CLIENTS.pop().close()


def elector(name: str, clock: Clock) -> Elector:
    client = LeaseClient(NAMESPACE, "oreal-operator-leader")
    CLIENTS.append(client)
    return Elector(client, name, Timing(15), now=clock)


@pytest.mark.asyncio
async def test_one_holder_until_it_releases_or_stops_renewing(api: Any) -> None:
    clock = Clock()
    a, b = elector("a", clock), elector("b", clock)

    def step(fn: Any) -> Any:
        return asyncio.to_thread(fn)

    assert await step(a.try_acquire)
    assert not await step(b.try_acquire)  # held by a, renewed just now
    clock.advance(10)
    assert await step(a.renew)
    clock.advance(10)  # 20 s after a took it, 10 after its renewal: still a's
    assert not await step(b.try_acquire)
    assert lease_holder(api, LEASE) == "a"
    await step(a.release)  # a clean exit: b takes over at once
    assert await step(b.try_acquire)
    assert lease_holder(api, LEASE) == "b"
    # b dies without releasing: a, watching, waits the lease duration out on its own clock
    assert not await step(a.try_acquire)
    clock.advance(14)
    assert not await step(a.try_acquire)
    clock.advance(2)
    assert await step(a.try_acquire)
    assert not await step(b.renew)  # b, back, sees a's name on the Lease: leadership lost
    lease = (await step(a.client.read))["spec"]
    assert lease["leaseTransitions"] == 2 and lease["leaseDurationSeconds"] == 15


def test_a_lease_expires_by_its_own_duration_on_the_observers_clock() -> None:
    lease = {
        "spec": {"holderIdentity": "x", "leaseDurationSeconds": 5, "renewTime": "2026-01-01T00:00:00.000000Z"}
    }
    assert held_by_other(lease, "me", timedelta(seconds=4)) == "x"
    assert held_by_other(lease, "me", timedelta(seconds=6)) is None
    assert held_by_other(lease, "x", timedelta(0)) is None  # ours
    assert held_by_other({"spec": {"holderIdentity": None}}, "me", timedelta(0)) is None  # released


def test_expiry_ignores_the_holders_clock_and_restarts_with_each_renewal() -> None:
    """A holder whose clock runs an hour behind still holds the Lease while it renews; one that
    stops renewing loses it a lease duration after the observer last saw it change."""
    clock = Clock()

    class Reader:
        namespace, name = NAMESPACE, "l"

        def __init__(self) -> None:
            self.lease = {
                "spec": {
                    "holderIdentity": "x",
                    "leaseDurationSeconds": 5,
                    "renewTime": "2025-12-31T23:00:00Z",
                }
            }

        def read(self) -> dict[str, Any]:
            return self.lease

    reader = Reader()
    watcher = Elector(reader, "me", Timing(5), now=clock)  # type: ignore[arg-type]
    assert watcher._observed_for(reader.lease) == timedelta(0)
    clock.advance(4)
    assert held_by_other(reader.lease, "me", watcher._observed_for(reader.lease)) == "x"
    reader.lease = {"spec": {**reader.lease["spec"], "renewTime": "2025-12-31T23:00:04Z"}}  # a renewal
    clock.advance(4)
    assert held_by_other(reader.lease, "me", watcher._observed_for(reader.lease)) == "x"  # counted anew
    clock.advance(6)
    assert held_by_other(reader.lease, "me", watcher._observed_for(reader.lease)) is None


@pytest.mark.asyncio
async def test_lost_lease_sets_the_stop_flag(api: Any) -> None:
    clock = Clock()
    a = elector("a", clock)
    assert await asyncio.to_thread(a.try_acquire)
    b = elector("b", clock)
    assert not await asyncio.to_thread(b.try_acquire)  # b sees a's Lease
    clock.advance(16)  # a stalled past its lease: b takes it
    assert await asyncio.to_thread(b.try_acquire)
    lost, done = threading.Event(), threading.Event()
    a.timing = Timing(1.5)  # renew every 0.2 s
    thread = threading.Thread(target=a.renew_until_lost, args=(lost, done))
    thread.start()
    try:
        assert await asyncio.to_thread(lost.wait, 5)
    finally:
        done.set()
        thread.join()


@pytest.mark.slow
@pytest.mark.asyncio
async def test_second_replica_stays_idle_until_the_first_goes_away(kmock: Any, tmp_path: Path) -> None:
    """Two operator processes with leader election, as `replicas: 2` runs them."""
    prepare(kmock)
    replicas = {}
    for name in ("a", "b"):
        config = kubeconfig(tmp_path / f"kubeconfig-{name}", str(kmock.url), f"token-{name}")
        replicas[name] = venv_operator(operator_env(config, lease=LEASE, name=f"operator-{name}"))
    logs = {name: tmp_path / f"operator-{name}.log" for name in replicas}

    async with process(*replicas["a"], logs["a"]) as first:
        await eventually(
            lambda: (lease_holder(kmock, LEASE) or "").startswith("operator-a_"), 60, "a to lead", logs["a"]
        )
        async with process(*replicas["b"], logs["b"]) as second:
            run = await create_run(kmock, "first")
            await eventually(lambda: children(kmock, run["metadata"]["uid"]), 60, "a's children", logs["a"])
            await asyncio.sleep(5)  # more than a lease duration (3 s) of b standing by
            assert second.returncode is None
            assert writes_by(kmock, "token-b") == [], "the standby wrote to the API"
            assert any("/orealruns/" in w for w in writes_by(kmock, "token-a")), "a did not reconcile"
            assert (lease_holder(kmock, LEASE) or "").startswith("operator-a_")

            assert await stop(first) == 0  # SIGTERM: Kopf stops, a releases the Lease
            await eventually(
                lambda: (lease_holder(kmock, LEASE) or "").startswith("operator-b_"),
                20,
                "b to lead",
                logs["b"],
            )
            run = await create_run(kmock, "second")
            await eventually(lambda: children(kmock, run["metadata"]["uid"]), 60, "b's children", logs["b"])
            assert any("/leases" not in w for w in writes_by(kmock, "token-b")), writes_by(kmock, "token-b")
    assert os.path.exists(logs["b"])


def test_a_standby_answers_the_liveness_probe() -> None:
    """While it waits for the Lease a replica serves /healthz on the probe's port, and frees the port
    for Kopf's own endpoint once it leads."""
    import socket
    import urllib.error
    import urllib.request

    from oreal_operator.leader import standby_health

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with standby_health(port):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp (Kopf's /healthz) binds
        s.bind(("0.0.0.0", port))  # free again
