"""How long each phase of a worker's step takes (not to be confused with a run's phase)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from oreal import metrics


@contextlib.contextmanager
def timed_phase(name: str, into: dict[str, float] | None = None) -> Iterator[None]:
    """Time one phase of a step (generate|verify|train|sync|wait) into the Prometheus histogram
    `oreal_step_phase_duration_seconds` and into `into` (the step's timings record)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - start
        metrics.STEP_PHASE_DURATION.labels(name).observe(seconds)
        if into is not None:
            into[name] = into.get(name, 0.0) + seconds
