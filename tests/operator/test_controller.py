"""The controller's queue: one reconcile per run at a time, wake-ups coalesced and never lost,
failures retried with backoff, events of unowned objects ignored, a clean stop."""

from __future__ import annotations

import asyncio
from typing import Any

from oreal_operator.config import OperatorConfig
from oreal_operator.controller import Controller
from tests.operator.fake_api import FakeApi, FakeReports


def make(reconcile: Any, workers: int = 4) -> Controller:
    return Controller(
        FakeApi(), OperatorConfig(image="x"), 60.0, FakeReports(), workers=workers, reconcile=reconcile
    )  # type: ignore[arg-type]


def run_event(name: str, generation: int = 1) -> dict[str, Any]:
    return {"kind": "OREALRun", "metadata": {"name": name, "namespace": "ml", "generation": generation}}


def test_one_round_per_run_at_a_time_and_a_wake_up_during_a_round_runs_one_more() -> None:
    active: dict[tuple[str, str], int] = {}
    rounds: list[tuple[str, str]] = []
    overlap: list[tuple[str, str]] = []

    async def reconcile(ctl: Controller, key: tuple[str, str]) -> None:
        active[key] = active.get(key, 0) + 1
        if active[key] > 1:
            overlap.append(key)
        rounds.append(key)
        await asyncio.sleep(0.05)
        active[key] -= 1

    async def scenario() -> None:
        ctl = make(reconcile)
        await ctl.start()
        ctl.observe("OREALRun", "ADDED", run_event("a"))
        ctl.observe("OREALRun", "ADDED", run_event("b"))
        await asyncio.sleep(0.01)  # a's round is running
        for generation in range(2, 7):  # five changes while it runs: one more round, not five
            ctl.observe("OREALRun", "MODIFIED", run_event("a", generation))
        await asyncio.sleep(0.3)
        await ctl.stop()

    asyncio.run(scenario())
    assert overlap == []
    assert rounds.count(("ml", "a")) == 2 and rounds.count(("ml", "b")) == 1


def test_the_same_object_seen_again_wakes_nothing_and_children_wake_their_run() -> None:
    rounds: list[tuple[str, str]] = []

    async def reconcile(ctl: Controller, key: tuple[str, str]) -> None:
        rounds.append(key)

    async def scenario() -> None:
        ctl = make(reconcile)
        await ctl.start()
        ctl.observe("OREALRun", "ADDED", run_event("a"))
        await asyncio.sleep(0.05)
        ctl.observe("OREALRun", "MODIFIED", run_event("a"))  # what the operator wrote itself
        owned = {
            "metadata": {
                "name": "a",
                "namespace": "ml",
                "labels": {"app.kubernetes.io/managed-by": "oreal-operator"},
                "ownerReferences": [
                    {"apiVersion": "oreal.io/v1alpha1", "kind": "OREALRun", "name": "a", "controller": True}
                ],
            }
        }
        foreign = {"metadata": {"name": "x", "namespace": "ml", "labels": {}}}
        ctl.observe("JobSet", "ADDED", foreign)
        await asyncio.sleep(0.05)
        assert rounds == [("ml", "a")]
        ctl.observe("JobSet", "ADDED", owned)
        await asyncio.sleep(0.05)
        ctl.observe("JobSet", "DELETED", owned)
        await asyncio.sleep(0.05)
        assert rounds == [("ml", "a")] * 3 and ("ml", "a") not in ctl.children["JobSet"]
        ctl.observe("OREALRun", "DELETED", run_event("a"))
        assert ("ml", "a") not in ctl.runs and ("ml", "a") not in ctl.memory
        await ctl.stop()

    asyncio.run(scenario())


def test_a_failing_round_is_retried_with_backoff_then_succeeds() -> None:
    attempts: list[float] = []

    async def reconcile(ctl: Controller, key: tuple[str, str]) -> None:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 3:
            raise RuntimeError("API server unreachable")

    async def scenario() -> None:
        ctl = make(reconcile)
        await ctl.start()
        ctl.observe("OREALRun", "ADDED", run_event("a"))
        await asyncio.sleep(1.5)
        assert ctl.remember(("ml", "a")).backoff == 0.0  # reset by the success
        await ctl.stop()

    asyncio.run(scenario())
    assert len(attempts) == 3
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert 0.15 <= gaps[0] < gaps[1]  # 0.2 s, then 0.4 s (+-10%)


def test_stop_cancels_rounds_in_flight() -> None:
    async def reconcile(ctl: Controller, key: tuple[str, str]) -> None:
        await asyncio.sleep(3600)

    async def scenario() -> float:
        ctl = make(reconcile)
        await ctl.start()
        for i in range(50):
            ctl.observe("OREALRun", "ADDED", run_event(f"r{i}"))
        await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        await ctl.stop()
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(scenario()) < 1.0
