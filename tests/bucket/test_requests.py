"""The S3 requests each Bucket operation sends (what bounds a small step's speed, see
benchmarks/results/bucket_io.md): counted at s3fs' single entry point to botocore."""

from __future__ import annotations

from typing import Any

import pytest
from bucket_records import make_samples

from oreal.bucket import Bucket

pytestmark = pytest.mark.s3


def spy_requests(bucket: Bucket, conditional: list[str] | None = None) -> list[str]:
    """The requests `bucket` sends from now on; keys of conditional PUTs go to `conditional`."""
    fs = bucket.store.fs
    sent: list[str] = []
    real = fs._call_s3

    async def call(method: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(method)
        if conditional is not None and kwargs.get("IfNoneMatch") == "*":
            conditional.append(kwargs["Key"].rsplit("/", 1)[-1])
        return await real(method, *args, **kwargs)

    fs._call_s3 = call
    return sent


def test_step_round_trip_sends_the_protocol_requests_and_no_more(s3_bucket: Bucket) -> None:
    s3_bucket.read_spec()  # a worker's first read: the one 404 that checks that the bucket exists
    conditional: list[str] = []
    sent = spy_requests(s3_bucket, conditional)
    for part in range(2):
        assert s3_bucket.write_rollout_part(0, part, make_samples(0, seed=part))
        assert sent == ["put_object"]  # the self-describing data object, nothing else
        sent.clear()
    assert s3_bucket.commit_rollouts(0, 2)
    assert sent == ["list_objects_v2", "put_object"]  # choose the versions, write _COMMITTED
    assert conditional == ["_COMMITTED"]  # created if absent (If-None-Match: *), data PUTs are plain
    sent.clear()
    assert len(s3_bucket.read_rollouts(0)) == 2 * len(make_samples(0))
    assert sent == ["get_object"] * 3  # _COMMITTED, then both parts (concurrently)
    sent.clear()
    assert s3_bucket.commit_rollouts(0, 2)  # already committed: listing + the commit's GET
    assert sent == ["list_objects_v2", "get_object"]


def test_a_commit_that_loses_the_race_costs_one_more_get(s3_bucket: Bucket) -> None:
    s3_bucket.write_rollout_part(2, 0, make_samples(2))
    other = Bucket.open(s3_bucket.uri, endpoint=s3_bucket.store.fs.endpoint_url)
    real_create = s3_bucket.store.create_bytes

    def create_after_the_other(key: str, data: bytes) -> bytes | None:
        assert other.commit_rollouts(2, 1)  # the other committer's commit lands first
        return real_create(key, data)

    s3_bucket.store.create_bytes = create_after_the_other  # type: ignore[method-assign]
    sent = spy_requests(s3_bucket)
    assert s3_bucket.commit_rollouts(2, 1)
    assert sent == ["list_objects_v2", "put_object", "get_object"]  # LIST, PUT -> 412, GET the winner


def test_an_incomplete_step_costs_one_listing(s3_bucket: Bucket) -> None:
    s3_bucket.write_rollout_part(1, 0, make_samples(1))
    sent = spy_requests(s3_bucket)
    assert not s3_bucket.commit_rollouts(1, 2)
    assert s3_bucket.rollout_parts_committed(1) == {0}
    assert sent == ["list_objects_v2"] * 2


def test_a_successful_request_spares_the_bucket_check_on_a_later_404(s3_bucket: Bucket) -> None:
    sent = spy_requests(s3_bucket)
    s3_bucket.write_stats(0, {"loss": 1.0})
    assert s3_bucket.read_stats(1) is None
    assert sent == ["put_object", "get_object"]
