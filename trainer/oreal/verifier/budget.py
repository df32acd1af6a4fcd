"""A per-thread time budget for the fast rules that run in the calling process.

The fast paths are bounded by size limits, but a deadline is the safety net: when it passes, the
rules raise `OutOfTime` and the check moves to a killable worker with the time that is left.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


class OutOfTime(Exception):  # noqa: N818 - deliberately not a ValueError: nothing may swallow it
    """The fast rules ran past their budget."""


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    previous = getattr(_local, "deadline", math.inf)
    _local.deadline = math.inf if seconds is None else time.perf_counter() + seconds
    try:
        yield
    finally:
        _local.deadline = previous


def check() -> None:
    if time.perf_counter() > getattr(_local, "deadline", math.inf):
        raise OutOfTime
