"""Parquet schemas: exact round trips, readable by plain pyarrow, versioned."""

from __future__ import annotations

import dataclasses
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bucket_records import make_samples, make_verdicts

from oreal.bucket import BucketError, SchemaVersionError, schema
from oreal.trajectory import Prompt


def test_rollouts_round_trip_exactly() -> None:
    samples = make_samples(4, n_prompts=3, per_prompt=4)
    samples[0].logprobs = [-1e-300, -0.1 + 1e-17, float("-inf")]  # float64 precision survives
    samples[1].logprobs = []
    data, rows = schema.encode("rollouts", samples)
    assert rows == 12
    assert schema.decode("rollouts", data, "x") == samples


def test_prompts_and_verdicts_round_trip() -> None:
    prompts = [Prompt("a", "1+1?", "2", 0.5), Prompt("b", "∫x dx", "x^2/2", None)]
    assert schema.decode("prompts", schema.encode("prompts", prompts)[0], "x") == prompts
    verdicts = make_verdicts(make_samples(0))
    assert schema.decode("verdicts", schema.encode("verdicts", verdicts)[0], "x") == verdicts


def test_files_are_plain_parquet_with_versioned_metadata() -> None:
    verdicts = make_verdicts(make_samples(0))
    table = pq.read_table(io.BytesIO(schema.encode("verdicts", verdicts)[0]))
    assert table.schema.metadata[b"oreal.schema"] == b"verdicts"
    assert table.schema.metadata[b"oreal.schema_version"] == b"1.0"
    assert table.column("reward").to_pylist() == [v.reward for v in verdicts]  # for DuckDB users


def test_statistics_only_on_scalar_columns() -> None:
    data = schema.encode("rollouts", make_samples(2, n_prompts=3))[0]
    row_group = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    stats = {
        row_group.column(i).path_in_schema: row_group.column(i).statistics
        for i in range(row_group.num_columns)
    }
    assert stats["step"] is not None and (stats["step"].min, stats["step"].max) == (2, 2)
    assert stats["prompt_id"].has_min_max
    assert stats["response_token_ids.list.element"] is None
    assert stats["logprobs.list.element"] is None


def rewrite(data: bytes, version: str, extra_column: bool = False) -> bytes:
    table = pq.read_table(io.BytesIO(data))
    if extra_column:
        table = table.append_column("added_in_minor", pa.array([1] * table.num_rows))
    table = table.replace_schema_metadata({"oreal.schema": "rollouts", "oreal.schema_version": version})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def test_newer_minor_version_is_read_newer_major_is_refused() -> None:
    samples = make_samples(1)
    data = schema.encode("rollouts", samples)[0]
    assert schema.decode("rollouts", rewrite(data, "1.7", extra_column=True), "x") == samples
    with pytest.raises(SchemaVersionError, match="v2.0.*upgrade oreal"):
        schema.decode("rollouts", rewrite(data, "2.0"), "s3://b/part-00.parquet")


def test_wrong_kind_and_garbage_are_refused() -> None:
    data = schema.encode("verdicts", make_verdicts(make_samples(0)))[0]
    with pytest.raises(BucketError, match="not an oreal rollouts file"):
        schema.decode("rollouts", data, "x")
    with pytest.raises(BucketError, match="not a readable Parquet"):
        schema.decode("rollouts", b"not parquet at all", "x")
    with pytest.raises(TypeError, match="RolloutSample"):
        schema.encode("rollouts", make_verdicts(make_samples(0)))


@pytest.mark.parametrize("kind", ["prompts", "rollouts", "verdicts"])
def test_schemas_cover_exactly_the_trajectory_fields(kind: str) -> None:
    """If oreal.trajectory gains or loses a field, the Parquet schema (and its version) must follow."""
    record_fields = {f.name for f in dataclasses.fields(schema.RECORD_TYPES[kind])}
    derived = {"reward"} if kind == "verdicts" else set()
    assert set(schema.SCHEMAS[kind].names) == record_fields | derived, (
        f"update SCHEMAS[{kind!r}] and bump SCHEMA_VERSION[{kind!r}] (minor: new optional column)"
    )
