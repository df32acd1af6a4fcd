"""The run bucket on gs:// for real: gcsfs against a GCS JSON-API emulator (opt-in, gcs venv).

What the emulator (gcp-storage-emulator 2026.7.19) cannot show: it ignores GCS preconditions, so
a create-if-absent PUT (`ifGenerationMatch=0`) over an existing object is accepted and overwrites.
`test_commit_race_on_the_emulator_overwrites` asserts exactly that, and
`test_the_commit_put_is_conditional_and_412_means_taken` checks the client half that real GCS
relies on: gcsfs sends `ifGenerationMatch=0`, and maps a 412 to a lost create.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from oreal.bucket import Bucket, CorruptPartError, RunState, layout, schema
from oreal.bucket.exclusive import lost_create
from oreal.bucket.layout import PartVersion
from oreal.bucket.manifest import StepManifest, crc32c
from oreal.trajectory import RolloutSample, Verdict

pytestmark = pytest.mark.gcs
OPTIONS = {"token": "anon"}  # the emulator takes no credentials; gcsfs would otherwise probe for them


def samples(step: int, seed: int = 0, n: int = 4) -> list[RolloutSample]:
    return [
        RolloutSample(
            step=step, prompt_id=f"p{seed}-{i // 2}", sample_index=i % 2, prompt_text=f"x+{i}=∑{seed}",
            prompt_token_ids=[1, 2, 3 + i], response_token_ids=[(seed * 13 + i * 7 + t) % 997 for t in range(3 + i)],
            response_text=f"\\boxed{{{i + seed}}}", gold=str(i), policy_version=step, truncated=i == n - 1,
            logprobs=[-(t + 1) / 8.0 for t in range(3 + i)],
        )
        for i in range(n)
    ]  # fmt: skip


def verdicts(records: list[RolloutSample]) -> list[Verdict]:
    return [
        Verdict(step=s.step, prompt_id=s.prompt_id, sample_index=s.sample_index, correct=s.sample_index == 0,
                status="correct" if s.sample_index == 0 else "incorrect", extracted=s.gold, seconds=0.5)
        for s in records
    ]  # fmt: skip


def open_bucket(uri: str) -> Bucket:
    return Bucket.open(uri, storage_options=dict(OPTIONS))


def committed_key(bucket: Bucket, step: int, part: int) -> str:
    commit = StepManifest.from_bytes(bucket.store.get_bytes(layout.step_commit("rollouts", step)) or b"", "t")
    entry = commit.part(part)
    assert entry is not None
    return entry.key


def test_open_uses_gcsfs_plain_json_api_filesystem(gcs_uri: str) -> None:
    import gcsfs.core

    bucket = open_bucket(gcs_uri)
    assert type(bucket.store.fs) is gcsfs.core.GCSFileSystem  # not the gRPC-probing extended class
    assert bucket.uri == gcs_uri and bucket.store.root == gcs_uri.removeprefix("gs://")


def test_write_commit_read_rollouts_and_verdicts(gcs_uri: str) -> None:
    bucket = open_bucket(gcs_uri)
    a, b = samples(1, seed=1), samples(1, seed=2, n=3)
    start = time.perf_counter()
    assert not bucket.commit_rollouts(1, 2)  # no part yet
    bucket.write_rollout_part(1, 0, a)
    assert not bucket.commit_rollouts(1, 2)  # part 1 missing
    assert bucket.rollout_parts_committed(1) == {0}
    bucket.write_rollout_part(1, 1, b)
    assert bucket.commit_rollouts(1, 2)
    assert bucket.rollouts_committed(1)
    reader = open_bucket(gcs_uri)  # another replica's view
    assert reader.read_rollouts(1) == a + b
    assert reader.read_rollouts(1, part=1) == b
    bucket.write_verdict_part(1, 0, verdicts(a + b))
    assert bucket.commit_verdicts(1, 1)
    assert reader.read_verdicts(1) == verdicts(a + b)
    print(f"write 2 parts + commit + read + verdicts: {time.perf_counter() - start:.3f} s")


def test_corrupt_part_is_detected_withdrawn_rewritten_and_recommitted(gcs_uri: str) -> None:
    bucket = open_bucket(gcs_uri)
    a, b = samples(5, seed=1), samples(5, seed=2)
    bucket.write_rollout_part(5, 0, a)
    bucket.write_rollout_part(5, 1, b)
    assert bucket.commit_rollouts(5, 2)
    key = committed_key(bucket, 5, 1)
    data = bytearray(bucket.store.get_bytes(key) or b"")
    data[len(data) // 2] ^= 0xFF  # one bit-flipped byte, same size
    bucket.store.put_bytes(key, bytes(data))
    with pytest.raises(CorruptPartError, match="CRC32C") as info:
        bucket.read_rollouts(5)
    assert (info.value.kind, info.value.step, info.value.part) == ("rollouts", 5, 1)
    assert bucket.read_rollouts(5, part=0) == a
    bucket.invalidate_part("rollouts", 5, 1)
    assert not bucket.rollouts_committed(5)
    assert bucket.rollout_parts_committed(5) == {0}
    assert not bucket.store.exists(key)
    bucket.write_rollout_part(5, 1, b)
    assert bucket.commit_rollouts(5, 2)
    assert bucket.read_rollouts(5) == a + b


def version_name(step: int, seed: int) -> str:
    data, rows = schema.encode("rollouts", samples(step, seed=seed))
    return PartVersion(0, rows, len(data), crc32c(data)).name


def test_a_later_commit_keeps_the_first(gcs_uri: str) -> None:
    """No race: once `_COMMITTED` is there, a commit that lists a new (lower-named) version
    returns the existing commit unchanged (the LIST sees `_COMMITTED`; no PUT is sent)."""
    step = 3
    first, zombie = (1, 2) if version_name(step, 2) < version_name(step, 1) else (2, 1)
    c1, c2 = open_bucket(gcs_uri), open_bucket(gcs_uri)
    c1.write_rollout_part(step, 0, samples(step, seed=first))
    assert c1.commit_rollouts(step, 1)
    commit = c1.store.get_bytes(layout.step_commit("rollouts", step))
    c2.write_rollout_part(step, 0, samples(step, seed=zombie))  # a zombie's version, lower name
    assert c2.commit_rollouts(step, 1)
    assert c2.store.get_bytes(layout.step_commit("rollouts", step)) == commit
    assert c2.read_rollouts(step) == samples(step, seed=first)


def record_calls(bucket: Bucket) -> list[tuple[str, str, dict[str, Any]]]:
    """Every gcsfs HTTP call of `bucket` as (method, path, query/keyword arguments)."""
    fs = bucket.store.fs
    real = fs._call
    calls: list[tuple[str, str, dict[str, Any]]] = []

    async def call(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        calls.append((method, path, dict(kwargs)))
        return await real(method, path, *args, **kwargs)

    fs._call = call
    return calls


def test_the_commit_put_is_conditional_and_412_means_taken(gcs_uri: str) -> None:
    """The client half of create-if-absent on real GCS: the `_COMMITTED` upload carries
    `ifGenerationMatch=0` (GCS answers 412 if the object exists), gcsfs raises FileExistsError
    for a 412, and exclusive.py counts that as a lost create."""
    from gcsfs.retry import validate_response

    bucket = open_bucket(gcs_uri)
    bucket.write_rollout_part(2, 0, samples(2))
    calls = record_calls(bucket)
    assert bucket.commit_rollouts(2, 1)
    uploads = [c for c in calls if c[0] == "POST" and "/upload/" in c[1]]
    assert len(uploads) == 1
    assert uploads[0][2].get("ifGenerationMatch") == "0"
    with pytest.raises(FileExistsError) as info:
        validate_response(412, b'{"error": {"code": 412, "message": "conditionNotMet"}}', "b/o")
    assert lost_create(info.value)


def test_commit_race_on_the_emulator_overwrites(gcs_uri: str) -> None:
    """C1 lists {A}; a zombie writes B (lower name); C2 lists {A, B}; C1 creates `_COMMITTED` (A);
    C2's create (ifGenerationMatch=0) should lose with 412 and adopt A, as on SeaweedFS. The
    emulator ignores the precondition: C2's PUT succeeds and its commit (B) replaces C1's. This
    asserts the emulator's behaviour, so that a future emulator that honours it shows up here."""
    step = 4
    first, zombie = (1, 2) if version_name(step, 2) < version_name(step, 1) else (2, 1)
    c1, c2 = open_bucket(gcs_uri), open_bucket(gcs_uri)
    c1.write_rollout_part(step, 0, samples(step, seed=first))
    c1_listed, c2_listed = threading.Event(), threading.Event()
    real_sizes, real_create = c1.store.sizes, c1.store.create_bytes

    def c1_sizes(prefix: str) -> dict[str, int]:
        out = real_sizes(prefix)
        c1_listed.set()
        return out

    def c1_create(key: str, data: bytes) -> bytes | None:
        assert c2_listed.wait(30)
        return real_create(key, data)

    c1.store.sizes, c1.store.create_bytes = c1_sizes, c1_create  # type: ignore[method-assign]
    results: dict[str, Any] = {}
    t1 = threading.Thread(target=lambda: results.setdefault("c1", c1.commit_rollouts(step, 1)))
    t1.start()
    assert c1_listed.wait(30)
    c2.write_rollout_part(step, 0, samples(step, seed=zombie))
    c2_real_create = c2.store.create_bytes

    def c2_create(key: str, data: bytes) -> bytes | None:
        c2_listed.set()
        t1.join(30)
        results["after_c1"] = c2.store.get_bytes(key)
        return c2_real_create(key, data)

    c2.store.create_bytes = c2_create  # type: ignore[method-assign]
    assert c2.commit_rollouts(step, 1)
    assert results["c1"] is True and not t1.is_alive()
    step_dir = layout.step_dir("rollouts", step)
    c1_commit = results["after_c1"]
    assert c1_commit is not None
    assert json.loads(c1_commit)["parts"][0]["key"] == f"{step_dir}/{version_name(step, first)}"
    # Observed on the emulator: the second conditional create was accepted and overwrote.
    assert committed_key(c2, step, 0) == f"{step_dir}/{version_name(step, zombie)}"
    assert c1.read_rollouts(step) == samples(step, seed=zombie)


def test_policy_publish_and_download_round_trip(gcs_uri: str, tmp_path: Path) -> None:
    bucket = open_bucket(gcs_uri)
    src = tmp_path / "hf"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    (src / "model.safetensors").write_bytes(os.urandom(300_000))
    (src / "sub" / "tokenizer.json").write_text('{"version": "1.0"}')
    assert bucket.policy_versions() == [] and bucket.latest_policy_version() is None
    start = time.perf_counter()
    bucket.publish_policy(1, src)
    bucket.publish_policy(2, src)
    assert bucket.policy_versions() == [1, 2] and bucket.latest_policy_version() == 2
    out = open_bucket(gcs_uri).download_policy(2, tmp_path / "dl")
    print(f"publish 2 x 300 kB policy + download: {time.perf_counter() - start:.3f} s")
    for rel in ("config.json", "model.safetensors", "sub/tokenizer.json"):
        assert (out / rel).read_bytes() == (src / rel).read_bytes()
    bucket.delete_policy(2)
    assert bucket.policy_versions() == [1]


def test_state_and_stats_round_trip(gcs_uri: str) -> None:
    bucket = open_bucket(gcs_uri)
    assert bucket.read_state() is None
    bucket.write_state(RunState(step=7, policy_version=3, message="ok"))
    state = open_bucket(gcs_uri).read_state()
    assert state is not None and (state.step, state.policy_version, state.message) == (7, 3, "ok")
    assert state.updated_at
    bucket.write_stats(7, {"reward": 0.5})
    assert bucket.read_stats(7) == {"reward": 0.5} and bucket.list_stats() == [7]


def test_committed_steps_lists_only_committed_ones(gcs_uri: str) -> None:
    bucket = open_bucket(gcs_uri)
    assert bucket.committed_steps("rollouts") == []
    for step in (0, 1, 2, 10):
        bucket.write_rollout_part(step, 0, samples(step, seed=step))
    for step in (0, 2, 10):
        assert bucket.commit_rollouts(step, 1)
    assert bucket.committed_steps("rollouts") == [0, 2, 10]
    assert bucket.store.list("rollouts") == [
        layout.step_dir("rollouts", s).rsplit("/", 1)[-1] for s in (0, 1, 2, 10)
    ]


def test_missing_bucket_is_a_clear_error(gcs_endpoint: str) -> None:
    from oreal.bucket import BucketError

    bucket = open_bucket("gs://no-such-bucket/run")
    with pytest.raises(BucketError, match="does not exist"):
        bucket.store.get_bytes("state.json")


def test_endpoint_argument_without_the_environment(
    gcs_endpoint: str, gcs_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spec.storage.endpoint reaches gcsfs as endpoint_url; STORAGE_EMULATOR_HOST is not needed."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    bucket = Bucket.open(gcs_uri, endpoint=gcs_endpoint, storage_options=dict(OPTIONS))
    bucket.write_rollout_part(0, 0, samples(0))
    assert bucket.commit_rollouts(0, 1)
    assert bucket.read_rollouts(0) == samples(0)
