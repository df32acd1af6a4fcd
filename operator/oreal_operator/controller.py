"""The operator's control loop: caches fed by Kopf's watches, a work queue, one reconcile per run
at a time.

    Controller(api, config, status_seconds, reports)
        observe(kind, event_type, obj)   a watch event of an OREALRun, or of a JobSet or ConfigMap the
                                         operator manages: the cache takes it, its run is queued
        start() / stop()                 prime the children's caches, start the workers and the
                                         status tick / cancel them (a clean stop at any scale)

Level-triggered: whatever woke a run up (its own change, a child created, edited or deleted, the
status tick), the reconcile (`oreal_operator.reconcile`) computes the desired children from the
run as it is now and restores what differs. A run is never reconciled by two workers at once: a
run woken up while it is being reconciled is queued once more for when that round ends (so no two
writers race, and no wake-up is lost). A round that fails is retried with a per-run exponential
backoff (capped at the status interval). Rounds asked for by a change (an event, a retry) are taken
before those of the status tick, so that a burst of new runs is not queued behind a sweep of runs
that are as they should be.

The status tick queues every run each `status_seconds`; only a tick reads the trainer's report
(HTTP, not the API server), so an idle run costs no API request between watch events. The read is
not part of a round: a tick starts it (at most `REPORT_READS` at once) and queues the run's round
when it ends, so a report that is slow or cannot be reached (pods still starting: up to the read's
timeout) never holds a reconcile worker, and new runs are not queued behind a tick's reads.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from oreal_operator.api import Api, ApiError
from oreal_operator.config import OperatorConfig
from oreal_operator.metrics import RECONCILE_ERRORS, PhaseCounts
from oreal_operator.naming import MANAGED_BY, MANAGED_BY_LABEL, owner_run
from oreal_operator.packing import pack
from oreal_operator.progress import Report

LOG = logging.getLogger("oreal_operator")
Key = tuple[str, str]  # (namespace, run name)
CHILD_KINDS = ("JobSet", "ConfigMap")
DEFAULT_WORKERS = 16
REPORT_READS = 64  # reports read at once on a tick
MIN_BACKOFF = 0.2
EVENT, TICK = 0, 1  # a round's priority (the lower first): asked for by a change, or by the status tick


@dataclass
class Memory:
    """What the operator remembers of a run between rounds; all of it can be observed again."""

    report: Report | None = None  # the trainer's last report
    report_url: str | None = None  # where a tick reads it; set by each round (None: nothing to read)
    restarts_seen: int = -1  # gang restarts when failed pods were last looked at
    failed_seen: bool = False  # the JobSet's failure was looked at
    failure: str | None = None  # the failed container's termination message
    permanent: bool = False
    refused: tuple[Any, str] | None = None  # ((generation, spec hash), message): the API server said no
    invalid_posted: str | None = None  # the SpecInvalid message an event was posted for
    blocked_posted: str | None = None
    backoff: float = 0.0
    # Caches that spare an idle round the CPU of parsing, rendering and comparing: the rendering
    # of the run as it was last seen (key: what the rendering reads, compared by value), and the
    # live JobSet last found to cover that rendering (a live one of the same spec is not compared
    # again).
    rendered: tuple[tuple[Any, ...], Any] | None = None
    checked: tuple[Any, Any] | None = None


@dataclass
class Controller:
    api: Api
    config: OperatorConfig
    status_seconds: float
    reports: Any  # .read(url) -> Report | None (progress.HttpReports)
    workers: int = DEFAULT_WORKERS
    reconcile: Callable[[Controller, Key], Awaitable[None]] | None = None
    runs: dict[Key, dict[str, Any]] = field(default_factory=dict)
    children: dict[str, dict[Key, dict[str, Any]]] = field(
        default_factory=lambda: {k: {} for k in CHILD_KINDS}
    )
    memory: dict[Key, Memory] = field(default_factory=dict)
    phases: PhaseCounts = field(default_factory=PhaseCounts)

    def __post_init__(self) -> None:
        if self.reconcile is None:
            from oreal_operator.reconcile import reconcile_run

            self.reconcile = reconcile_run
        self._queue: asyncio.PriorityQueue[tuple[int, int, Key]] = asyncio.PriorityQueue()
        self._order = itertools.count()  # first in, first out within a priority
        self._queued: dict[Key, int] = {}  # run -> the most urgent priority it is queued with
        self._active: set[Key] = set()
        self._again: dict[Key, int] = {}  # runs woken up during their round -> priority
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._reads: dict[Key, asyncio.Task[None]] = {}
        self._read_slots = asyncio.Semaphore(REPORT_READS)

    # ------------------------------------------------------------ events

    def observe(self, kind: str, event_type: str | None, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace")
        if kind == "OREALRun":
            key = (namespace, meta.get("name"))
            if event_type == "DELETED":
                self.forget(key)
                return
            if self.runs.get(key) == obj:
                return  # what this operator wrote itself, seen again through the watch
            self.runs[key] = dict(obj)
            self.poke(key)
            return
        run = owner_run(obj)
        if run is None or (meta.get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY:
            return
        key, cache = (namespace, run), self.children[kind]
        if event_type == "DELETED":
            if cache.pop(key, None) is not None or key in self.runs:
                self.poke(key)
            return
        if same_version(cache.get(key), meta):
            return  # what the operator wrote itself (its answer is cached), seen again
        packed = pack(obj)
        if cache.get(key) == packed:
            return
        cache[key] = packed
        self.poke(key)

    def forget(self, key: Key) -> None:
        self.runs.pop(key, None)
        self.memory.pop(key, None)
        for cache in self.children.values():
            cache.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        read = self._reads.pop(key, None)
        if read is not None:
            read.cancel()
        self.phases.record(key[0], key[1], None)

    def remember(self, key: Key) -> Memory:
        return self.memory.setdefault(key, Memory())

    # ------------------------------------------------------------ the queue

    def poke(self, key: Key, delay: float = 0.0, *, tick: bool = False) -> None:
        """Queue `key` for a round (after `delay` seconds; `tick`: for the status tick, after the
        rounds asked for by changes)."""
        if delay > 0:
            if key not in self._timers:
                loop = asyncio.get_running_loop()
                self._timers[key] = loop.call_later(delay, self._fire, key)
            return
        priority = TICK if tick else EVENT
        if key in self._active:
            self._again[key] = min(priority, self._again.get(key, priority))
            return
        queued = self._queued.get(key)
        if queued is None or priority < queued:  # (queued more urgently: its older entry is skipped)
            self._queued[key] = priority
            self._queue.put_nowait((priority, next(self._order), key))

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.poke(key)

    async def _work(self) -> None:
        while True:
            priority, _, key = await self._queue.get()
            if self._queued.get(key) != priority:
                continue  # an entry left behind when the run was queued again, more urgently
            del self._queued[key]
            self._active.add(key)
            try:
                await self._round(key)
            finally:
                self._active.discard(key)
                again = self._again.pop(key, None)
                if again is not None:
                    self.poke(key, tick=again == TICK)

    async def _round(self, key: Key) -> None:
        if key not in self.runs:
            return
        memory = self.remember(key)
        try:
            await self.reconcile(self, key)  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure: log, back off, try again
            RECONCILE_ERRORS.labels(handler="apply", kind="temporary").inc()
            memory.backoff = min(self.status_seconds, max(MIN_BACKOFF, memory.backoff * 2))
            message = err.message if isinstance(err, ApiError) else f"{type(err).__name__}: {err}"
            LOG.warning("run %s/%s: %s; trying again in %.1f s", *key, message, memory.backoff)
            self.poke(key, jitter(memory.backoff))
        else:
            memory.backoff = 0.0

    async def read_report(self, key: Key) -> None:
        """Read the run's trainer report, if its last round found one to read, into its memory (the
        last one stays when none comes)."""
        memory = self.memory.get(key)
        url = memory.report_url if memory is not None else None
        if url is None:
            return
        async with self._read_slots:
            report = await self.reports.read(url)
        if report is not None and key in self.memory:
            self.memory[key].report = report

    async def _read_then_poke(self, key: Key) -> None:
        try:
            await self.read_report(key)
        finally:
            self._reads.pop(key, None)
            self.poke(key, tick=True)

    async def _tick(self) -> None:
        """Every status_seconds, queue every run for a round, after reading its trainer's report
        (the reads run beside the rounds, not in a worker)."""
        while True:
            await asyncio.sleep(self.status_seconds)
            for key in list(self.runs):
                memory = self.memory.get(key)
                if memory is None or memory.report_url is None:
                    self.poke(key, tick=True)
                elif key not in self._reads:  # a read still running from the last tick: let it end
                    self._reads[key] = asyncio.create_task(self._read_then_poke(key), name=f"report-{key[1]}")

    # ------------------------------------------------------------ life cycle

    async def prime(self) -> None:
        """Fill the children's caches with one list per kind and namespace, before any round: a
        restarted operator then finds the children it made instead of asking to create them."""
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
        for namespace in self.config.namespaces or (None,):
            for kind in CHILD_KINDS:
                try:
                    items = await self.api.list(kind, namespace, labels=selector)  # type: ignore[arg-type]
                except (TimeoutError, ApiError, OSError) as err:
                    LOG.warning("cannot list %ss (%s); the watches will bring them", kind, err)
                    continue
                for obj in items:
                    obj = {"kind": kind, **obj}
                    run = owner_run(obj)
                    if run is not None:
                        key = ((obj.get("metadata") or {}).get("namespace"), run)
                        self.children[kind].setdefault(key, pack(obj))

    async def start(self) -> None:
        await self.prime()
        self._tasks = [asyncio.create_task(self._work(), name=f"reconcile-{i}") for i in range(self.workers)]
        self._tasks.append(asyncio.create_task(self._tick(), name="status-tick"))

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = self._tasks + list(self._reads.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks, self._reads = [], {}
        await self.api.close()
        close = getattr(self.reports, "close", None)
        if close is not None:
            await close()


def same_version(cached: Mapping[str, Any] | None, meta: Mapping[str, Any]) -> bool:
    """`cached` is the object of `meta` at the same resourceVersion (the API server gives every
    change a new one), so that nothing changed."""
    version = meta.get("resourceVersion")
    if cached is None or not version:
        return False
    old = cached.get("metadata") or {}
    return old.get("resourceVersion") == version and old.get("uid") == meta.get("uid")


def jitter(seconds: float) -> float:
    """`seconds` +- 10%, so that retries of many runs spread out."""
    return seconds * random.uniform(0.9, 1.1)
