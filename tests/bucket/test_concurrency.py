"""Writers racing on the same part: each version lands whole under its own key and the commit
chooses one, never mixed data. Plus transient errors injected into a real S3 client."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError
from bucket_records import make_samples

from oreal.bucket import Bucket, RetryPolicy, layout, schema
from oreal.bucket.layout import PartVersion
from oreal.bucket.manifest import crc32c


def race(bucket: Bucket, step: int, seeds: list[int]) -> None:
    barrier = threading.Barrier(len(seeds))

    def write(seed: int) -> None:
        barrier.wait()
        bucket.write_rollout_part(step, 0, make_samples(step, seed=seed))

    threads = [threading.Thread(target=write, args=(seed,)) for seed in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_racing_writers_of_one_part_yield_one_chosen_version(bucket: Bucket) -> None:
    """Each writer's content lands under its own key; the commit picks the lowest-named one."""
    for step in range(4):
        seeds = [100 + step, 200 + step, 300 + step]
        race(bucket, step, seeds)
        names = [
            n for n in bucket.store.list(layout.step_dir("rollouts", step)) if layout.parse_part_version(n)
        ]
        assert len(names) == len(seeds)  # no writer overwrote another
        assert bucket.commit_rollouts(step, 1)
        got = bucket.read_rollouts(step, part=0)
        by_name = {}
        for seed in seeds:
            samples = make_samples(step, seed=seed)
            data, rows = schema.encode("rollouts", samples)
            by_name[PartVersion(0, rows, len(data), crc32c(data)).name] = samples
        assert sorted(by_name) == names
        assert got == by_name[min(names)]


@pytest.mark.s3
def test_real_s3_client_retries_injected_503s(s3_bucket: Bucket) -> None:
    bucket = Bucket(s3_bucket.store.fs, s3_bucket.store.root, s3_bucket.uri, RetryPolicy(base_delay=0.01))
    fs = bucket.store.fs
    failures = {"left": 0}
    real_pipe, real_cat = fs.pipe_file, fs.cat_file

    def flaky(real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if failures["left"] > 0:
                failures["left"] -= 1
                raise ClientError(
                    {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject"
                )
            return real(*args, **kwargs)

        return call

    fs.pipe_file, fs.cat_file = flaky(real_pipe), flaky(real_cat)
    samples = make_samples(0)
    failures["left"] = 3
    bucket.write_rollout_part(0, 0, samples)
    assert bucket.commit_rollouts(0, 1)
    failures["left"] = 2
    assert bucket.read_rollouts(0) == samples
    assert failures["left"] == 0
