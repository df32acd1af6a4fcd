"""The controller's queue: one reconcile per run at a time, wake-ups coalesced and never lost,
failures retried with backoff, events of unowned objects ignored, a clean stop."""

from __future__ import annotations

import asyncio
from typing import Any

from oreal_operator.config import OperatorConfig
from oreal_operator.controller import Controller
from oreal_operator.progress import Report
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


def test_a_ticks_report_reads_hold_no_worker_and_each_read_brings_its_runs_round() -> None:
    """A report that takes long to read (pods still starting: up to the read's timeout) must not
    keep a new run from its round; when the read ends, the run's round sees the report."""
    rounds: list[tuple[str, float]] = []
    report = Report(started=True, step=3, policy_version=3, done=False, metrics=None)

    class SlowReports:
        def __init__(self) -> None:
            self.reads: list[str] = []

        async def read(self, url: str) -> Report:
            self.reads.append(url)
            await asyncio.sleep(0.6)
            return report

    async def reconcile(ctl: Controller, key: tuple[str, str]) -> None:
        rounds.append((key[1], asyncio.get_running_loop().time()))
        ctl.remember(key).report_url = f"http://{key[1]}/status"

    async def scenario() -> None:
        reports = SlowReports()
        ctl = Controller(FakeApi(), OperatorConfig(image="x"), 0.4, reports, workers=1, reconcile=reconcile)  # type: ignore[arg-type]
        await ctl.start()
        ctl.observe("OREALRun", "ADDED", run_event("a"))
        await asyncio.sleep(0.6)  # the tick at 0.4 s started a's read (until 1.0 s)
        assert reports.reads == ["http://a/status"] and [r[0] for r in rounds] == ["a"]
        asked = asyncio.get_running_loop().time()
        ctl.observe("OREALRun", "ADDED", run_event("b"))
        await asyncio.sleep(0.1)
        assert rounds[-1][0] == "b" and rounds[-1][1] - asked < 0.1  # the one worker was free
        await asyncio.sleep(0.4)  # a's read ended, the tick at 0.8 s started no second one: a's round
        assert reports.reads.count("http://a/status") == 1
        assert "a" in [r[0] for r in rounds[1:]] and ctl.remember(("ml", "a")).report == report
        await ctl.stop()

    asyncio.run(scenario())


def test_rounds_asked_for_by_changes_go_before_the_status_ticks() -> None:
    """A burst of new runs is not queued behind a tick's sweep of runs that are as they should be;
    a run queued for a tick and changed meanwhile gets one round, at once."""
    rounds: list[str] = []

    async def reconcile(ctl: Controller, key: tuple[str, str]) -> None:
        rounds.append(key[1])
        await asyncio.sleep(0.01)

    async def scenario() -> None:
        ctl = make(reconcile, workers=1)
        for name in ("a", "b", "c"):
            ctl.runs[("ml", name)] = run_event(name)
            ctl.poke(("ml", name), tick=True)
        ctl.observe("OREALRun", "ADDED", run_event("new"))
        ctl.observe("OREALRun", "MODIFIED", run_event("c", generation=2))  # c: queued for the tick too
        await ctl.start()
        await asyncio.sleep(0.2)
        await ctl.stop()

    asyncio.run(scenario())
    assert rounds == ["new", "c", "a", "b"]
