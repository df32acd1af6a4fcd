"""A pool of killable worker processes with a wall-clock limit per check.

Each worker owns one pipe; a check is sent down the pipe and the caller waits with
`Connection.poll(timeout)`. A worker that does not answer in time is SIGKILLed and replaced in the
background; so is one that crashed, finished `max_checks_per_worker` checks, or grew past
`recycle_rss_bytes`. No signals or alarms are used, so checks may be run from any thread.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import queue
import threading
import time
from multiprocessing.context import BaseContext

from . import metrics

log = logging.getLogger(__name__)

PRELOAD = ["oreal.verifier.worker"]


class CheckTimeout(Exception):
    """The check ran past its time limit; its worker was killed."""


class CheckFailed(Exception):
    """The worker crashed or reported an error."""


def _context() -> BaseContext:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)  # sympy is imported once, in the fork server
        return ctx
    return mp.get_context("spawn")


class _Worker:
    def __init__(self, ctx: BaseContext, address_space_bytes: int | None, start_timeout: float) -> None:
        from .worker import serve

        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=serve, args=(child, address_space_bytes), daemon=True, name="oreal-verifier-worker"
        )
        self.process.start()
        child.close()
        self.checks = 0
        try:
            if not self.conn.poll(start_timeout):
                raise CheckFailed("verifier worker did not start in time")
            self.conn.recv()
        except (EOFError, OSError) as err:
            # Typically the parent's __main__ cannot be re-imported (multiprocessing needs an
            # `if __name__ == "__main__":` guard); the check becomes an 'error' verdict.
            self.kill()
            raise CheckFailed(f"verifier worker failed to start: {err!r}") from err
        except CheckFailed:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def retire(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout=1)
        self.kill()


class WorkerPool:
    def __init__(
        self,
        size: int,
        max_checks_per_worker: int = 1_000,
        recycle_rss_bytes: int = 1 << 30,
        address_space_bytes: int | None = 4 << 30,
        start_timeout: float = 120.0,
    ) -> None:
        if size < 1:
            raise ValueError("the pool needs at least one worker")
        self.size = size
        self.max_checks_per_worker = max_checks_per_worker
        self.recycle_rss_bytes = recycle_rss_bytes
        self.address_space_bytes = address_space_bytes
        self.start_timeout = start_timeout
        self._ctx = _context()
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        self._lock = threading.Lock()
        self._live = 0
        self._workers: set[_Worker] = set()
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Start every worker now (blocking) rather than on first use."""
        started = []
        while True:
            with self._lock:
                if self._live >= self.size:
                    break
                self._live += 1
            try:
                started.append(self._spawn())
            except Exception:
                with self._lock:
                    self._live -= 1
                raise
        for worker in started:
            self._idle.put(worker)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._workers)
            self._workers.clear()
        for worker in workers:
            worker.kill()

    def _spawn(self) -> _Worker:
        worker = _Worker(self._ctx, self.address_space_bytes, self.start_timeout)
        with self._lock:
            if self._closed:
                worker.kill()
                raise CheckFailed("pool is closed")
            self._workers.add(worker)
        return worker

    def _replace(self, worker: _Worker, retire: bool = False) -> None:
        """Kill (now) or retire (in the background) a worker, and start its replacement."""
        metrics.POOL_RESTARTS.inc()
        with self._lock:
            self._workers.discard(worker)
        if not retire:
            worker.kill()  # synchronously, so a hung check never outlives its caller

        def run() -> None:
            if retire:
                worker.retire()
            try:
                self._idle.put(self._spawn())
            except Exception as err:  # noqa: BLE001 - wake a waiter; it will try to spawn itself
                log.warning("could not replace a verifier worker: %s", err)
                with self._lock:
                    self._live -= 1
                self._idle.put(None)

        threading.Thread(target=run, daemon=True, name="oreal-verifier-respawn").start()

    def _acquire(self) -> _Worker:
        while True:
            if self._closed:
                raise CheckFailed("pool is closed")
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                with self._lock:
                    can_spawn = self._live < self.size
                    if can_spawn:
                        self._live += 1
                if can_spawn:
                    try:
                        return self._spawn()
                    except Exception:
                        with self._lock:
                            self._live -= 1
                        raise
                worker = self._idle.get()
            if worker is not None:
                return worker

    # -- checks --------------------------------------------------------------------------------
    def run(self, gold: str, answer: str, timeout: float) -> tuple[bool, float]:
        """Run one check; returns (correct, seconds spent in the worker). Raises CheckTimeout/CheckFailed."""
        worker = self._acquire()
        start = time.perf_counter()
        try:
            worker.conn.send((gold, answer))
            if not worker.conn.poll(max(timeout, 0.0)):
                self._replace(worker)
                raise CheckTimeout(f"check exceeded {timeout:.2f} s")
            (status, value), rss = worker.conn.recv()
        except (EOFError, OSError, BrokenPipeError) as err:
            self._replace(worker)
            raise CheckFailed(f"verifier worker died: {err}") from err
        elapsed = time.perf_counter() - start
        worker.checks += 1
        if worker.checks >= self.max_checks_per_worker or rss > self.recycle_rss_bytes:
            self._replace(worker, retire=True)
        else:
            self._idle.put(worker)
        if status != "ok":
            raise CheckFailed(value)
        return bool(value), elapsed
