"""Transient vs permanent errors, backoff bounds, and retries through a flaky filesystem."""

from __future__ import annotations

import errno
import random
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from bucket_records import make_samples
from fsspec.implementations.local import LocalFileSystem
from prometheus_client import REGISTRY

from oreal.bucket import Bucket, BucketError, RetryPolicy
from oreal.bucket.retry import call_with_retry, is_transient


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (EndpointConnectionError(endpoint_url="http://x"), True),
        (client_error(503, "ServiceUnavailable"), True),
        (client_error(500, "InternalError"), True),
        (client_error(400, "SlowDown"), True),
        (OSError(errno.EBUSY, "SlowDown"), True),  # what s3fs turns 503/SlowDown into
        (client_error(403, "AccessDenied"), False),
        (client_error(404, "NoSuchBucket"), False),
        (PermissionError(errno.EACCES, "denied"), False),
        (FileNotFoundError(), False),
        (OSError(errno.ENOSPC, "No space left on device"), False),
        (ValueError("bug"), False),
    ],
)
def test_classification(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_backoff_is_capped_full_jitter() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.1, max_delay=1.0)
    rng = random.Random(0)
    for attempt in range(1, 10):
        cap = min(1.0, 0.1 * 2 ** (attempt - 1))
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > 0.7 * cap  # really spread over [0, cap]


def test_retries_transient_until_success_and_not_permanent() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset")
        return "ok"

    assert call_with_retry(flaky, RetryPolicy(attempts=5), what="t", sleep=sleeps.append) == "ok"
    assert len(calls) == 3 and len(sleeps) == 2

    def denied() -> None:
        calls.append(1)
        raise PermissionError("no")

    calls.clear()
    with pytest.raises(PermissionError):
        call_with_retry(denied, RetryPolicy(attempts=5), what="t", sleep=sleeps.append)
    assert len(calls) == 1


def test_gives_up_after_attempts_and_deadline() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise ConnectionRefusedError("refused")

    with pytest.raises(ConnectionRefusedError):
        call_with_retry(down, RetryPolicy(attempts=4), what="t", sleep=lambda s: None)
    assert len(calls) == 4
    calls.clear()
    # A deadline shorter than the first pause stops after one attempt.
    policy = RetryPolicy(attempts=100, base_delay=10.0, max_delay=10.0, deadline=0.0)
    with pytest.raises(ConnectionRefusedError):
        call_with_retry(down, policy, what="t", sleep=lambda s: None)
    assert len(calls) == 1


class FlakyFS(LocalFileSystem):
    """Local filesystem whose first `failures` reads and writes raise a transient S3-style error."""

    def __init__(self, failures: int, exc: BaseException, **kw: Any) -> None:
        super().__init__(auto_mkdir=True, **kw)
        self.failures = failures
        self.exc = exc

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise self.exc

    def open(self, path: str, mode: str = "rb", **kw: Any) -> Any:  # type: ignore[override]
        if "w" in mode:
            self._maybe_fail()
        return super().open(path, mode, **kw)

    def cat_file(self, path: str, start: Any = None, end: Any = None, **kw: Any) -> bytes:
        self._maybe_fail()
        return super().cat_file(path, start=start, end=end, **kw)


def fast_retries(attempts: int = 5) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, base_delay=0.001, max_delay=0.002)


def retries_total(operation: str) -> float:
    return REGISTRY.get_sample_value("oreal_bucket_retries_total", {"operation": operation}) or 0.0


@pytest.mark.parametrize("exc", [client_error(503, "SlowDown"), ConnectionResetError("reset by peer")])
def test_bucket_survives_transient_errors(tmp_path: Path, exc: BaseException) -> None:
    fs = FlakyFS(failures=0, exc=exc)
    bucket = Bucket(fs, str(tmp_path / "run"), retry=fast_retries())
    samples = make_samples(0)
    before_put, before_get = retries_total("put"), retries_total("get")
    fs.failures = 2
    bucket.write_rollout_part(0, 0, samples)  # fails twice inside, then succeeds
    assert retries_total("put") + retries_total("get") - before_put - before_get == 2
    assert bucket.commit_rollouts(0, 1)
    fs.failures = 2
    assert bucket.read_rollouts(0) == samples


def test_persistent_transient_error_becomes_bucket_error(tmp_path: Path) -> None:
    fs = FlakyFS(failures=10**6, exc=client_error(503, "ServiceUnavailable"))
    bucket = Bucket(fs, str(tmp_path / "run"), uri="file:///flaky/run", retry=fast_retries(3))
    with pytest.raises(BucketError, match="file:///flaky/run/spec.yaml") as info:
        bucket.write_spec("x")
    assert "Traceback" not in str(info.value)
    assert fs.failures == 10**6 - 3  # exactly `attempts` tries
