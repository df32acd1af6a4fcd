"""Waiting on the bucket: poll until something is committed or the run is done."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from oreal.bucket import Bucket
from oreal.workers.context import WorkerContext

log = logging.getLogger("oreal.worker")


def wait_for(
    ctx: WorkerContext, what: str, ready: Callable[[], bool], done: Callable[[], bool] | None = None
) -> bool:
    """Poll `ready()` until true (returns True) or until `done()` says the run ended (False).

    Callers time it as the `wait` phase (`with timed_phase("wait", timings)`), once: this function
    records nothing itself.
    """
    start = time.perf_counter()
    announced = False
    while True:
        if ready():
            return True
        if done is not None and done():
            return False
        if not announced and time.perf_counter() - start > 5 * ctx.poll_seconds:
            log.info("waiting for %s", what)
            announced = True
        time.sleep(ctx.poll_seconds)


def run_done(bucket: Bucket) -> bool:
    state = bucket.read_state()
    return bool(state and state.done)
