"""Retry transient storage errors with capped exponential backoff and full jitter.

Transient: connection failures, timeouts, HTTP 5xx and throttling ("SlowDown"). Permanent:
everything else (no such bucket, access denied, disk full, ...). The retry loop is bounded both
in attempts and in total elapsed time, so an unreachable endpoint fails in bounded time.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# errno values that mean "try again": EBUSY/EREMOTEIO are what s3fs maps 503/SlowDown and 500 to.
_TRANSIENT_ERRNOS = {
    errno.EAGAIN,
    errno.EBUSY,
    errno.ECONNABORTED,
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EPIPE,
    errno.ETIMEDOUT,
    getattr(errno, "EREMOTEIO", 121),
}
_THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestLimitExceeded"}
# Errors that are never worth retrying, whatever their class hierarchy says.
_PERMANENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT}


def http_status(exc: BaseException) -> tuple[int | None, str | None]:
    """(HTTP status, error code) of a botocore ClientError, found on the exception or its cause."""
    for e in (exc, exc.__cause__):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = response.get("Error", {}).get("Code")
            return status, code
    return None, None


def is_transient(exc: BaseException) -> bool:
    """True if retrying the same operation may succeed."""
    if isinstance(exc, OSError) and exc.errno in _PERMANENT_ERRNOS:
        return False
    if isinstance(exc, PermissionError | FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return False
    status, code = http_status(exc)
    if status is not None or code is not None:
        return (status is not None and status >= 500) or code in _THROTTLE_CODES
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    # botocore / aiohttp / fsspec transport errors, matched by name to avoid hard imports.
    names = {cls.__name__ for cls in type(exc).__mro__}
    transport = {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "HTTPClientError",
        "ClientConnectionError",
        "ClientPayloadError",
        "ServerDisconnectedError",
        "FSTimeoutError",
        "IncompleteRead",
        "ResponseParserError",
    }
    return bool(names & transport)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. Defaults: 5 attempts, 0.2 s doubling to 5 s, 60 s total.

    Override with OREAL_BUCKET_RETRIES (attempts) and OREAL_BUCKET_RETRY_DEADLINE (seconds).
    """

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0
    deadline: float = 60.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        return cls(
            attempts=int(os.environ.get("OREAL_BUCKET_RETRIES", cls.attempts)),
            deadline=float(os.environ.get("OREAL_BUCKET_RETRY_DEADLINE", cls.deadline)),
        )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter backoff before retry number `attempt` (1-based): U(0, min(max, base*2^(a-1)))."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return (rng or random).uniform(0.0, cap)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    what: str,
    on_retry: Callable[[BaseException], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run fn(); on a transient error sleep and retry, up to policy.attempts or policy.deadline.

    Re-raises the last exception (transient or not) unchanged; the caller translates it.
    """
    start = time.monotonic()
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc) or attempt >= policy.attempts:
                raise
            pause = policy.delay(attempt)
            if time.monotonic() - start + pause > policy.deadline:
                raise
            log.warning("transient error on %s (attempt %d/%d): %s", what, attempt, policy.attempts, exc)
            if on_retry is not None:
                on_retry(exc)
            sleep(pause)
            attempt += 1
