"""Storage URI -> filesystem settings (constructing clients does no I/O)."""

from __future__ import annotations

import pytest

from oreal.bucket import Bucket
from oreal.bucket.filesystems import open_filesystem


def test_s3_client_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OREAL_BUCKET_CONNECT_TIMEOUT", "2")
    fs, root, uri = open_filesystem(
        "s3://team-rl/runs/ns/run/", endpoint="http://minio:9000", region="eu-west-1"
    )
    assert (root, uri) == ("team-rl/runs/ns/run", "s3://team-rl/runs/ns/run")
    assert fs.client_kwargs["region_name"] == "eu-west-1"
    assert fs.endpoint_url == "http://minio:9000"
    assert fs.config_kwargs["connect_timeout"] == 2.0
    assert fs.config_kwargs["retries"] == {"max_attempts": 1, "mode": "standard"}  # ours is the only loop
    assert fs.retries == 1


def test_storage_options_override_and_merge() -> None:
    fs, _, _ = open_filesystem(
        "s3://b/r", storage_options={"retries": 3, "config_kwargs": {"read_timeout": 7}, "anon": True}
    )
    assert fs.retries == 3
    assert fs.config_kwargs["read_timeout"] == 7
    assert fs.config_kwargs["connect_timeout"] > 0  # the defaults we did not override stay
    assert fs.anon


def test_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://seaweedfs:8333")
    fs, _, _ = open_filesystem("s3://b/r")
    assert fs.endpoint_url == "http://seaweedfs:8333"


def test_each_open_gets_its_own_client() -> None:
    """No shared instance cache: each worker's credentials and settings are its own."""
    a, b = Bucket.open("s3://b/r"), Bucket.open("s3://b/r")
    assert a.store.fs is not b.store.fs
