"""The verifier: the binary outcome reward of OREAL (r = +1 if the final answer is right, else -1).

Per response: extract the final answer (`extract`), decide with the fast rules in the calling
process (`rules`: string match, exact arithmetic, numeric refutation), and only if they cannot
decide, run the same check with sympy in a killable worker (`pool`) under a wall-clock limit.
An optional LLM judge (`judge`) may turn a rule negative into a positive.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass

from . import metrics
from .extract import extract_answer, gold_answer
from .judge import JudgeConfig, ask_judge
from .pool import CheckFailed, CheckTimeout, WorkerPool
from .rules import check

STATUSES = ("correct", "incorrect", "no_answer", "timeout", "error")
for _status in STATUSES:
    metrics.VERDICTS.labels(result=_status)  # export every series from the start, at zero


@dataclass(frozen=True)
class Judgement:
    """The verifier's judgement of one answer. `oreal.trajectory.Verdict` (the record stored in the
    bucket) has the same fields plus the sample's key: `Verdict(step, prompt_id, index, **j.as_dict())`."""

    correct: bool
    status: str  # correct | incorrect | no_answer | timeout | error
    extracted: str | None
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Pending:
    """A check the fast rules could not decide; it goes to the worker pool."""

    gold: str
    extracted: str
    fast_seconds: float


class Verifier:
    def __init__(
        self,
        timeout_seconds: float = 5.0,
        workers: int | None = None,
        judge: JudgeConfig | None = None,
        max_checks_per_worker: int = 1_000,
        recycle_rss_bytes: int = 1 << 30,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self.timeout_seconds = timeout_seconds
        # Time the fast rules may spend in this process before a check moves to a worker. Kept
        # short: the calling process is serial, the workers run in parallel.
        self.fast_budget_seconds = min(0.25, timeout_seconds / 4)
        self.workers = workers or default_workers()
        self.judge = judge
        self._pool = WorkerPool(
            self.workers, max_checks_per_worker=max_checks_per_worker, recycle_rss_bytes=recycle_rss_bytes
        )
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Start the worker processes now instead of at the first check that needs sympy."""
        self._pool.warm_up()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._pool.close()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- checks --------------------------------------------------------------------------------
    def verify(self, gold: str, response: str, truncated: bool = False) -> Judgement:
        verdict = self._finish(self._fast(gold, response, truncated), gold)
        _record(verdict)
        return verdict

    def verify_batch(self, items: Sequence[tuple[str, str, bool]]) -> list[Judgement]:
        """Verify many responses; undecided checks and judge calls run in parallel."""
        results: list[Judgement | None] = [None] * len(items)
        futures: dict[int, Future[Judgement]] = {}
        for index, item in enumerate(items):
            gold, response = item[0], item[1]
            truncated = bool(item[2]) if len(item) > 2 else False
            first = self._fast(gold, response, truncated)
            if isinstance(first, Judgement) and not self._wants_judge(first):
                results[index] = first
            else:
                futures[index] = self._threads().submit(self._finish, first, gold)
        for index, future in futures.items():
            results[index] = future.result()
        verdicts = [v for v in results if v is not None]
        for verdict in verdicts:
            _record(verdict)
        return verdicts

    def _threads(self) -> ThreadPoolExecutor:
        if self._executor is None:
            extra = 16 if self.judge else 0
            self._executor = ThreadPoolExecutor(self.workers + extra, thread_name_prefix="oreal-verifier")
        return self._executor

    def _fast(self, gold: str, response: str, truncated: bool) -> Judgement | _Pending:
        start = time.perf_counter()
        if truncated:  # cut at the length limit: never a final answer
            return Judgement(False, "no_answer", None, time.perf_counter() - start)
        extracted = extract_answer(response)
        if extracted is None:
            return Judgement(False, "no_answer", None, time.perf_counter() - start)
        reference = gold_answer(gold)
        try:
            result = check(reference, extracted, budget=self.fast_budget_seconds)
        except Exception:  # noqa: BLE001 - hostile input must never crash the caller
            result = None  # let the worker try; there a failure becomes an 'error' verdict
        elapsed = time.perf_counter() - start
        if result is None:
            return _Pending(reference, extracted, elapsed)
        return Judgement(result, "correct" if result else "incorrect", extracted, elapsed)

    def _finish(self, first: Judgement | _Pending, gold: str) -> Judgement:
        verdict = first if isinstance(first, Judgement) else self._slow(first)
        if self._wants_judge(verdict):
            verdict = self._ask_judge(verdict, gold_answer(gold))
        return verdict

    def _slow(self, pending: _Pending) -> Judgement:
        remaining = self.timeout_seconds - pending.fast_seconds
        metrics.POOL_CHECKS.inc()
        try:
            correct, seconds = self._pool.run(pending.gold, pending.extracted, remaining)
        except CheckTimeout:
            return Judgement(False, "timeout", pending.extracted, pending.fast_seconds + remaining)
        except CheckFailed:
            return Judgement(False, "error", pending.extracted, pending.fast_seconds)
        status = "correct" if correct else "incorrect"
        return Judgement(correct, status, pending.extracted, pending.fast_seconds + seconds)

    def _wants_judge(self, verdict: Judgement) -> bool:
        return self.judge is not None and verdict.status == "incorrect" and verdict.extracted is not None

    def _ask_judge(self, verdict: Judgement, gold: str) -> Judgement:
        assert self.judge is not None and verdict.extracted is not None
        start = time.perf_counter()
        agrees = ask_judge(self.judge, gold, verdict.extracted)
        seconds = verdict.seconds + time.perf_counter() - start
        if agrees:
            return Judgement(True, "correct", verdict.extracted, seconds)
        return Judgement(False, "incorrect", verdict.extracted, seconds)


def default_workers() -> int:
    """CPUs this process may use (not the host's count, which containers often report), at most 16.

    $OREAL_NUM_THREADS caps it: the operator sets it from the pod's CPU limit (a CPU quota, which
    neither the affinity mask nor cpu_count() shows) and the local runner from its share of cores.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    budget = os.environ.get("OREAL_NUM_THREADS", "")
    if budget.isdigit() and int(budget) > 0:
        usable = min(usable, int(budget))
    return max(1, min(usable, MAX_DEFAULT_WORKERS))


MAX_DEFAULT_WORKERS = 16


def _record(verdict: Judgement) -> None:
    metrics.VERDICTS.labels(result=verdict.status).inc()
    metrics.CHECK_DURATION.observe(verdict.seconds)
    if verdict.status == "timeout":
        metrics.TIMEOUTS.inc()
