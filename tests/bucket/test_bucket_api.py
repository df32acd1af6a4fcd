"""The Bucket API against a local directory and (marked s3) a real SeaweedFS S3 server."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
from bucket_records import make_samples, make_verdicts

from oreal import metrics
from oreal.bucket import Bucket, BucketError, CorruptPartError, NotCommittedError, RunState, layout
from oreal.bucket.manifest import PartManifest, PolicyManifest


def flip_byte(bucket: Bucket, key: str, at: int = 40) -> None:
    data = bytearray(bucket.get_bytes(key) or b"")
    data[at] ^= 0xFF
    bucket.put_bytes(key, bytes(data))


def test_parts_become_visible_only_when_committed(bucket: Bucket) -> None:
    a, b = make_samples(3, seed=1), make_samples(3, seed=2)
    assert bucket.rollout_parts_committed(3) == set()
    bucket.write_rollout_part(3, 1, b)
    assert bucket.rollout_parts_committed(3) == {1}
    assert not bucket.commit_rollouts(3, 2)  # part 0 missing
    assert not bucket.rollouts_committed(3)
    with pytest.raises(NotCommittedError):
        bucket.read_rollouts(3)
    assert bucket.read_rollouts(3, part=1) == b  # a committed part is readable on its own
    bucket.write_rollout_part(3, 0, a)
    assert bucket.commit_rollouts(3, 2)
    assert bucket.rollouts_committed(3)
    assert bucket.read_rollouts(3) == a + b  # part order
    assert bucket.read_rollouts(3, part=0) == a


def test_commit_is_idempotent_and_checks_part_count(bucket: Bucket) -> None:
    bucket.write_rollout_part(0, 0, make_samples(0))
    assert bucket.commit_rollouts(0, 1)
    assert bucket.commit_rollouts(0, 1)
    with pytest.raises(BucketError, match="committed with 1 parts"):
        bucket.commit_rollouts(0, 2)
    with pytest.raises(ValueError):
        bucket.commit_rollouts(0, 0)


def test_data_without_manifest_is_invisible(bucket: Bucket) -> None:
    # A writer that died between data and manifest leaves an orphan data object.
    bucket.put_bytes(layout.part_data("rollouts", 2, 0), b"half-written")
    assert bucket.rollout_parts_committed(2) == set()
    assert not bucket.commit_rollouts(2, 1)
    with pytest.raises(NotCommittedError):
        bucket.read_rollouts(2, part=0)
    samples = make_samples(2)
    assert bucket.write_rollout_part(2, 0, samples)  # the re-run writer overwrites the orphan
    assert bucket.commit_rollouts(2, 1)
    assert bucket.read_rollouts(2) == samples


def test_rewriting_a_committed_part_keeps_the_first_data(bucket: Bucket) -> None:
    first, second = make_samples(1, seed=1), make_samples(1, seed=9)
    assert bucket.write_rollout_part(1, 0, first)
    assert not bucket.write_rollout_part(1, 0, second)  # part committed: kept
    assert bucket.commit_rollouts(1, 1)
    assert not bucket.write_rollout_part(1, 0, second)  # step committed: kept
    assert bucket.read_rollouts(1) == first


def test_records_of_another_step_are_refused(bucket: Bucket) -> None:
    with pytest.raises(ValueError, match="step 4"):
        bucket.write_rollout_part(3, 0, make_samples(4))


def test_corrupt_part_is_detected_withdrawn_and_regenerated(bucket: Bucket) -> None:
    a, b = make_samples(5, seed=1), make_samples(5, seed=2)
    bucket.write_rollout_part(5, 0, a)
    bucket.write_rollout_part(5, 1, b)
    assert bucket.commit_rollouts(5, 2)
    flip_byte(bucket, layout.part_data("rollouts", 5, 1))
    with pytest.raises(CorruptPartError) as info:
        bucket.read_rollouts(5)
    assert (info.value.kind, info.value.step, info.value.part) == ("rollouts", 5, 1)
    assert "part-01.parquet" in str(info.value)
    assert bucket.read_rollouts(5, part=0) == a  # the healthy part still reads
    bucket.invalidate_part("rollouts", 5, 1)
    assert not bucket.rollouts_committed(5)
    assert bucket.rollout_parts_committed(5) == {0}
    assert bucket.write_rollout_part(5, 1, b)  # the owner regenerates its part
    assert bucket.commit_rollouts(5, 2)
    assert bucket.read_rollouts(5) == a + b


def test_truncated_part_is_withdrawn_at_commit(bucket: Bucket) -> None:
    bucket.write_rollout_part(6, 0, make_samples(6))
    key = layout.part_data("rollouts", 6, 0)
    bucket.put_bytes(key, (bucket.get_bytes(key) or b"")[:-10])
    assert not bucket.commit_rollouts(6, 1)
    assert bucket.rollout_parts_committed(6) == set()  # the owner sees it must rewrite


def test_row_count_mismatch_is_corruption(bucket: Bucket) -> None:
    bucket.write_verdict_part(7, 0, make_verdicts(make_samples(7)))
    key = layout.part_manifest("verdicts", 7, 0)
    m = PartManifest.from_bytes(bucket.get_bytes(key) or b"", key)
    bucket.put_bytes(key, PartManifest(m.part, m.rows + 1, m.size, m.sha256).to_bytes())
    with pytest.raises(CorruptPartError, match="rows"):
        bucket.read_verdicts(7, part=0)


def test_missing_data_object_is_corruption(bucket: Bucket) -> None:
    bucket.write_rollout_part(8, 0, make_samples(8))
    assert bucket.commit_rollouts(8, 1)
    bucket.delete(layout.part_data("rollouts", 8, 0))
    with pytest.raises(CorruptPartError, match="missing"):
        bucket.read_rollouts(8)


def test_verdicts_round_trip(bucket: Bucket) -> None:
    verdicts = make_verdicts(make_samples(0, n_prompts=3))
    bucket.write_verdict_part(0, 0, verdicts[:4])
    bucket.write_verdict_part(0, 1, verdicts[4:])
    assert bucket.verdict_parts_committed(0) == {0, 1}
    assert bucket.commit_verdicts(0, 2)
    assert bucket.verdicts_committed(0)
    assert not bucket.rollouts_committed(0)  # the kinds are separate
    assert bucket.read_verdicts(0) == verdicts
    assert bucket.committed_steps("verdicts") == [0]


def test_spec_state_stats_and_generic_objects(bucket: Bucket) -> None:
    assert bucket.read_spec() is None and bucket.read_state() is None and bucket.list_stats() == []
    bucket.write_spec("apiVersion: oreal.io/v1alpha1\nkind: OREALRun\n")
    assert bucket.read_spec() == "apiVersion: oreal.io/v1alpha1\nkind: OREALRun\n"
    bucket.write_state(RunState(step=4, policy_version=5, done=True, message="finished"))
    state = bucket.read_state()
    assert state is not None and (state.step, state.policy_version, state.done) == (4, 5, True)
    assert state.updated_at  # stamped by write_state
    for step in (10, 2, 0):
        bucket.write_stats(step, {"loss": step / 3, "pass_rate": 0.5})
    assert bucket.list_stats() == [0, 2, 10]
    assert bucket.read_stats(10) == {"loss": 10 / 3, "pass_rate": 0.5}
    assert bucket.read_stats(11) is None
    assert bucket.get_bytes("checkpoints/x.bin") is None and not bucket.exists("checkpoints/x.bin")
    bucket.put_bytes("checkpoints/x.bin", b"\x00\x01")
    assert bucket.get_bytes("checkpoints/x.bin") == b"\x00\x01" and bucket.exists("checkpoints/x.bin")


def make_policy(root: Path, seed: int) -> Path:
    root.mkdir(parents=True)
    (root / "model.safetensors").write_bytes(os.urandom(300_000 + seed))
    (root / "config.json").write_text(f'{{"seed": {seed}}}')
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "tokenizer.json").write_text("{}")
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_policy_publish_download_delete(bucket: Bucket, tmp_path: Path) -> None:
    v0, v1 = make_policy(tmp_path / "v0", 0), make_policy(tmp_path / "v1", 1)
    assert bucket.latest_policy_version() is None
    bucket.publish_policy(0, v0)
    bucket.publish_policy(1, v1)
    assert bucket.policy_committed(1) and bucket.latest_policy_version() == 1
    assert bucket.policy_versions() == [0, 1]
    out = bucket.download_policy(1, tmp_path / "dl")
    got = read_tree(out)
    assert got.pop(".oreal_policy.json")  # the local marker
    assert got == read_tree(v1)
    bucket.delete_policy(1)
    assert not bucket.policy_committed(1) and bucket.latest_policy_version() == 0
    assert bucket.policy_versions() == [0]
    assert not bucket.exists("policy/v000001/model.safetensors")
    with pytest.raises(NotCommittedError):
        bucket.download_policy(1, tmp_path / "dl2")


def test_download_is_skipped_when_identical(bucket: Bucket, tmp_path: Path) -> None:
    bucket.publish_policy(2, make_policy(tmp_path / "v2", 2))
    out = bucket.download_policy(2, tmp_path / "dl")
    before = metrics.BUCKET_BYTES_READ._value.get()
    assert bucket.download_policy(2, out) == out
    read = metrics.BUCKET_BYTES_READ._value.get() - before
    assert read < 1000  # only the manifest was fetched
    (out / "model.safetensors").write_bytes(b"tampered")
    bucket.download_policy(2, out)  # size changed: fetched again
    assert len((out / "model.safetensors").read_bytes()) == 300_002


def test_uncommitted_policy_is_ignored_and_corrupt_file_detected(bucket: Bucket, tmp_path: Path) -> None:
    bucket.publish_policy(0, make_policy(tmp_path / "v0", 0))
    # A publisher that died before _COMMITTED: files but no manifest.
    bucket.put_bytes("policy/v000003/model.safetensors", b"partial")
    assert bucket.latest_policy_version() == 0
    flip_byte(bucket, "policy/v000000/model.safetensors", at=1000)
    with pytest.raises(CorruptPartError) as info:
        bucket.download_policy(0, tmp_path / "dl")
    assert (info.value.kind, info.value.step) == ("policy", 0)
    assert not (tmp_path / "dl" / "model.safetensors").exists()  # a bad file is not left behind
    assert not (tmp_path / "dl" / ".oreal_policy.json").exists()


def test_republishing_replaces_the_version(bucket: Bucket, tmp_path: Path) -> None:
    bucket.publish_policy(0, make_policy(tmp_path / "a", 0))
    bucket.publish_policy(0, make_policy(tmp_path / "b", 7))
    manifest = PolicyManifest.from_bytes(bucket.get_bytes("policy/v000000/_COMMITTED") or b"", "m")
    sizes = {f.path: f.size for f in manifest.files}
    assert sizes["model.safetensors"] == 300_007
    assert read_tree(bucket.download_policy(0, tmp_path / "dl"))["config.json"] == b'{"seed": 7}'


def test_empty_policy_folder_is_refused(bucket: Bucket, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BucketError, match="empty"):
        bucket.publish_policy(0, tmp_path / "empty")
    assert not bucket.policy_committed(0)


def test_large_files_round_trip_with_checksum(bucket: Bucket, tmp_path: Path) -> None:
    src = tmp_path / "optimizer.pt"
    src.write_bytes(os.urandom(200_000))
    crc_up = bucket.put_file(src, "checkpoints/step-000003/rank0/optimizer.pt")
    assert bucket.exists("checkpoints/step-000003/rank0/optimizer.pt")
    crc_down = bucket.get_file(
        "checkpoints/step-000003/rank0/optimizer.pt", tmp_path / "back" / "optimizer.pt"
    )
    assert crc_up == crc_down == f"{zlib.crc32(src.read_bytes()):08x}"
    assert (tmp_path / "back" / "optimizer.pt").read_bytes() == src.read_bytes()
    with pytest.raises(BucketError, match="no such object"):
        bucket.get_file("checkpoints/missing.pt", tmp_path / "missing.pt")
    assert not (tmp_path / "missing.pt").exists()


def test_empty_part_is_a_valid_part(bucket: Bucket) -> None:
    bucket.write_verdict_part(9, 0, [])
    bucket.write_verdict_part(9, 1, make_verdicts(make_samples(9)))
    assert bucket.commit_verdicts(9, 2)
    assert bucket.read_verdicts(9, part=0) == []
    assert len(bucket.read_verdicts(9)) == 6


def test_policy_file_missing_from_the_bucket_is_corruption(bucket: Bucket, tmp_path: Path) -> None:
    bucket.publish_policy(4, make_policy(tmp_path / "v4", 4))
    bucket.delete("policy/v000004/config.json")
    with pytest.raises(CorruptPartError, match="missing"):
        bucket.download_policy(4, tmp_path / "dl")


def test_uploading_a_missing_local_file_is_a_clear_error(bucket: Bucket, tmp_path: Path) -> None:
    with pytest.raises(BucketError, match="does not exist"):
        bucket.put_file(tmp_path / "nope.bin", "checkpoints/nope.bin")


def test_unreadable_manifests_heal(bucket: Bucket) -> None:
    samples = make_samples(11)
    bucket.write_rollout_part(11, 0, samples)
    bucket.put_bytes(layout.part_manifest("rollouts", 11, 0), b'{"part": 0, "ro')  # truncated JSON
    with pytest.raises(CorruptPartError):
        bucket.read_rollouts(11, part=0)  # a reader does not trust it
    assert not bucket.commit_rollouts(11, 1)  # the committer withdraws it
    assert bucket.rollout_parts_committed(11) == set()
    assert bucket.write_rollout_part(11, 0, samples)  # and the owner rewrites the part
    assert bucket.commit_rollouts(11, 1)
    bucket.put_bytes(layout.step_commit("rollouts", 11), b"garbage")
    assert not bucket.rollouts_committed(11)
    assert bucket.commit_rollouts(11, 1)  # the step commit is rebuilt from the part manifests
    assert bucket.read_rollouts(11) == samples


def test_writer_rewrites_a_part_whose_manifest_is_unreadable(bucket: Bucket) -> None:
    bucket.write_verdict_part(12, 0, make_verdicts(make_samples(12)))
    bucket.put_bytes(layout.part_manifest("verdicts", 12, 0), b"\x00not json")
    assert bucket.write_verdict_part(12, 0, make_verdicts(make_samples(12)))
    assert bucket.commit_verdicts(12, 1)
