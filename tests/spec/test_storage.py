"""One storage location per run: URI, endpoint and region from flags, environment and spec."""

import pytest

from oreal.spec.models import StorageSpec
from oreal.spec.storage import ENDPOINT_ENV, REGION_ENV, StorageLocation, storage_location

SPEC = StorageSpec(uri="s3://team/runs/a", endpoint="http://spec-s3:9000", region="eu-1")


def test_the_environment_wins_over_the_spec_and_a_flag_over_spec_uri():
    env = {ENDPOINT_ENV: "http://env-s3:9000"}
    loc = storage_location("s3://team/runs/b", SPEC, env)
    assert loc == StorageLocation("s3://team/runs/b", "http://env-s3:9000", "eu-1")
    assert storage_location(None, SPEC, {}) == StorageLocation(SPEC.uri, SPEC.endpoint, SPEC.region)


def test_a_run_without_a_bucket_is_refused():
    with pytest.raises(ValueError, match="spec.storage.uri, --run or \\$OREAL_RUN_URI"):
        storage_location(None, StorageSpec(), {})


def test_a_worker_learns_the_endpoint_from_the_env_the_runner_or_operator_gives_it():
    loc = storage_location(None, SPEC, {})
    assert loc.env() == {ENDPOINT_ENV: SPEC.endpoint, REGION_ENV: "eu-1"}
    worker = storage_location("s3://team/runs/a", None, loc.env())  # before it reads the spec
    assert worker == loc
    bare = storage_location("s3://team/runs/a", None, {})
    assert bare.endpoint is None and bare.with_spec(SPEC) == loc


def test_other_files_on_the_same_store_get_its_endpoint():
    loc = storage_location(None, SPEC, {})
    assert loc.fsspec_options("s3://team/data/prompts.jsonl") == {
        "client_kwargs": {"endpoint_url": "http://spec-s3:9000", "region_name": "eu-1"}
    }
    assert loc.fsspec_options("/data/prompts.jsonl") == {} and loc.fsspec_options("gs://x/y") == {}
    assert StorageLocation("s3://a").fsspec_options("s3://a/b") == {}
