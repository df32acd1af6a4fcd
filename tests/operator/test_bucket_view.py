"""bucket_view: RunState and newest stats from a run's bucket; credentials from the Secret's keys."""

from __future__ import annotations

import uuid
from pathlib import Path

from oreal.bucket import Bucket, RunState
from oreal.spec.models import OREALRunSpec
from oreal_operator.bucket_view import location, read_bucket


def spec(uri: str | None, **storage: str) -> OREALRunSpec:
    return OREALRunSpec.model_validate(
        {"model": {"policy": "p"}, "data": {"prompts": "d"}, "storage": {"uri": uri, **storage}}
    )


def test_reads_state_and_newest_stats() -> None:
    uri = f"memory://runs/{uuid.uuid4().hex}"
    bucket = Bucket.open(uri)
    bucket.write_state(RunState(step=7, policy_version=8))
    bucket.write_stats(6, {"pass_rate": 0.1})
    bucket.write_stats(7, {"pass_rate": 0.3})
    view = read_bucket(spec(uri), None)
    assert view.error is None
    assert view.state is not None and (view.state.step, view.state.policy_version) == (7, 8)
    assert view.stats == {"pass_rate": 0.3}
    assert (view.spec, view.started) == (None, False)


def test_reads_the_stored_spec_and_whether_policy_v0_is_committed(tmp_path: Path) -> None:
    uri = f"memory://runs/{uuid.uuid4().hex}"
    bucket = Bucket.open(uri)
    bucket.write_spec("kind: OREALRun\n")
    assert (read_bucket(spec(uri), None).spec, read_bucket(spec(uri), None).started) == (
        "kind: OREALRun\n",
        False,
    )
    (tmp_path / "config.json").write_text("{}")
    bucket.publish_policy(0, tmp_path)
    view = read_bucket(spec(uri), None)
    assert (view.spec, view.started, view.error) == ("kind: OREALRun\n", True, None)


def test_an_empty_bucket_has_no_state_and_no_error() -> None:
    view = read_bucket(spec(f"memory://runs/{uuid.uuid4().hex}"), None)
    assert (view.state, view.stats, view.error) == (None, None, None)


def test_no_uri_is_a_reason_not_an_exception() -> None:
    assert read_bucket(spec(None), None).error == "spec.storage.uri is not set"


def test_secret_keys_become_s3fs_options_and_fill_endpoint_and_region() -> None:
    secret = {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t-value",
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "AWS_REGION": "eu-west-1",
        "OTHER": "x",
    }
    where = location(spec("s3://runs/demo"), secret)
    assert where.options == {"key": "AKIDEXAMPLE", "secret": "s3cr3t-value"}
    assert (where.endpoint, where.region) == ("http://minio:9000", "eu-west-1")
    assert "s3cr3t" not in repr(where)
    own = location(spec("s3://runs/demo", endpoint="http://seaweed:8333", region="us-east-1"), secret)
    assert (own.endpoint, own.region) == ("http://seaweed:8333", "us-east-1")
    assert location(spec("gs://runs/demo"), secret).options == {}


def test_unreachable_endpoint_gives_a_one_line_reason_without_the_secret() -> None:
    secret = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}
    view = read_bucket(spec("s3://runs/demo", endpoint="http://127.0.0.1:9"), secret)
    assert view.state is None and view.error is not None
    assert "s3://runs/demo" in view.error and "\n" not in view.error
    assert "s3cr3t-value" not in view.error
