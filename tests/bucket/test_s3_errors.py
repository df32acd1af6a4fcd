"""Failures against a real S3 endpoint (SeaweedFS): unreachable, missing bucket, wrong credentials."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from support.seaweedfs import SECRET_KEY, SeaweedFS, free_ports

from oreal.bucket import Bucket, BucketError

pytestmark = pytest.mark.s3


def test_unreachable_endpoint_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    (port,) = free_ports(1)  # nothing listens there
    bucket = Bucket.open("s3://oreal-test/run", endpoint=f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(BucketError, match="cannot reach the storage endpoint") as info:
        bucket.read_state()
    assert time.monotonic() - start < 20
    assert "s3://oreal-test/run/state.json" in str(info.value)


def test_hung_endpoint_times_out_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts connections but never answers: per-attempt read timeout x attempts."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("OREAL_BUCKET_READ_TIMEOUT", "0.5")
    monkeypatch.setenv("OREAL_BUCKET_RETRIES", "2")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # the kernel completes handshakes; nobody ever reads or answers
        bucket = Bucket.open("s3://oreal-test/run", endpoint=f"http://127.0.0.1:{server.getsockname()[1]}")
        start = time.monotonic()
        with pytest.raises(BucketError, match="s3://oreal-test/run/state.json"):
            bucket.read_state()
        assert time.monotonic() - start < 10


def test_missing_bucket_is_named(s3_env: SeaweedFS) -> None:
    bucket = Bucket.open("s3://no-such-bucket-here/run", endpoint=s3_env.endpoint)
    with pytest.raises(BucketError, match="bucket 'no-such-bucket-here' does not exist"):
        bucket.write_spec("x")
    with pytest.raises(BucketError, match="does not exist"):
        bucket.read_spec()
    with pytest.raises(BucketError, match="does not exist"):
        bucket.store.put_file(str(Path(__file__)), "checkpoints/x.py")


def test_wrong_credentials_are_access_denied_and_not_echoed(
    s3_env: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-123")
    bucket = Bucket.open("s3://oreal-test/run", endpoint=s3_env.endpoint)
    with pytest.raises(BucketError, match="access denied") as info:
        bucket.write_spec("x")
    assert "wrong-secret-123" not in str(info.value) and SECRET_KEY not in str(info.value)


def test_readers_see_other_writers_without_cache(s3_env: SeaweedFS) -> None:
    """Two clients (two pods): listings are never served from a stale cache."""
    uri = "s3://oreal-test/runs/shared"
    writer, reader = (Bucket.open(uri, endpoint=s3_env.endpoint) for _ in range(2))
    assert reader.list_stats() == []
    writer.write_stats(0, {"loss": 1.0})
    assert reader.list_stats() == [0]
    writer.write_stats(1, {"loss": 0.5})
    assert reader.list_stats() == [0, 1]
