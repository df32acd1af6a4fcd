"""The Bucket API against a local directory and (marked s3) a real SeaweedFS S3 server."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import google_crc32c
import pytest
from bucket_records import make_samples, make_verdicts

from oreal import metrics
from oreal.bucket import (
    Bucket,
    BucketError,
    CorruptPartError,
    LayoutVersionError,
    NotCommittedError,
    RunState,
    layout,
    schema,
)
from oreal.bucket import store as store_module
from oreal.bucket.layout import PartVersion
from oreal.bucket.manifest import PolicyManifest, StepManifest, crc32c


def flip_byte(bucket: Bucket, key: str, at: int = 40) -> None:
    data = bytearray(bucket.store.get_bytes(key) or b"")
    data[at] ^= 0xFF
    bucket.store.put_bytes(key, bytes(data))


def part_objects(bucket: Bucket, kind: str, step: int) -> list[str]:
    """Names of the part versions in the step directory."""
    return [n for n in bucket.store.list(layout.step_dir(kind, step)) if layout.parse_part_version(n)]


def committed_key(bucket: Bucket, kind: str, step: int, part: int) -> str:
    commit = StepManifest.from_bytes(bucket.store.get_bytes(layout.step_commit(kind, step)) or b"", "test")
    entry = commit.part(part)
    assert entry is not None
    return entry.key


def version_name(records: list) -> str:
    """The object name the protocol gives these records (layout.py: rows, size, CRC32C)."""
    data, rows = schema.encode("rollouts", records)
    return PartVersion(part=0, rows=rows, size=len(data), crc32c=f"{google_crc32c.value(data):08x}").name


def test_parts_become_visible_only_when_committed(bucket: Bucket) -> None:
    a, b = make_samples(3, seed=1), make_samples(3, seed=2)
    assert bucket.rollout_parts_committed(3) == set()
    assert bucket.write_rollout_part(3, 1, b)
    assert bucket.rollout_parts_committed(3) == {1}
    assert not bucket.commit_rollouts(3, 2)  # part 0 missing
    assert not bucket.rollouts_committed(3)
    with pytest.raises(NotCommittedError):
        bucket.read_rollouts(3)
    with pytest.raises(NotCommittedError):
        bucket.read_rollouts(3, part=1)  # a written part is read only through the step commit
    bucket.write_rollout_part(3, 0, a)
    assert bucket.commit_rollouts(3, 2)
    assert bucket.rollouts_committed(3)
    assert bucket.read_rollouts(3) == a + b  # part order
    assert bucket.read_rollouts(3, part=0) == a and bucket.read_rollouts(3, part=1) == b
    with pytest.raises(NotCommittedError, match="no part 2"):
        bucket.read_rollouts(3, part=2)


def test_commit_is_idempotent_and_checks_part_count(bucket: Bucket) -> None:
    bucket.write_rollout_part(0, 0, make_samples(0))
    assert bucket.commit_rollouts(0, 1)
    assert bucket.commit_rollouts(0, 1)
    with pytest.raises(BucketError, match="committed with 1 parts"):
        bucket.commit_rollouts(0, 2)
    with pytest.raises(ValueError):
        bucket.commit_rollouts(0, 0)


def test_objects_that_are_not_part_versions_are_ignored(bucket: Bucket) -> None:
    samples = make_samples(2)
    name = version_name(samples)
    step = layout.step_dir("rollouts", 2)
    bucket.store.put_bytes(f"{step}/.{name}.tmp-0123456789ab", b"half-written")  # a local writer's temp file
    bucket.store.put_bytes(f"{step}/part-00.r6.parquet", b"unparseable name")
    bucket.store.put_bytes(f"{step}/notes.txt", b"a user's note")
    bucket.store.put_bytes(f"{step}/{name}", b"short")  # its listed size is not the size in its name
    bucket.store.put_bytes(f"{step}/part-01.r0.s0.c00000000.parquet", b"")  # an empty object
    assert bucket.rollout_parts_committed(2) == set()
    assert not bucket.commit_rollouts(2, 1)
    with pytest.raises(NotCommittedError):
        bucket.read_rollouts(2, part=0)
    assert bucket.write_rollout_part(2, 0, samples)  # the same key: replaces the damaged object
    assert bucket.rollout_parts_committed(2) == {0}
    assert bucket.commit_rollouts(2, 1)
    assert bucket.read_rollouts(2) == samples
    assert part_objects(bucket, "rollouts", 2) == [name, "part-01.r0.s0.c00000000.parquet"]


def test_identical_rewrite_is_harmless(bucket: Bucket) -> None:
    samples = make_samples(1, seed=1)
    assert bucket.write_rollout_part(1, 0, samples)
    (name,) = part_objects(bucket, "rollouts", 1)
    data = bucket.store.get_bytes(f"{layout.step_dir('rollouts', 1)}/{name}")
    assert bucket.write_rollout_part(1, 0, samples)  # e.g. a restarted, bit-reproducible worker
    assert bucket.commit_rollouts(1, 1)
    assert bucket.write_rollout_part(1, 0, samples)  # after the commit too
    assert part_objects(bucket, "rollouts", 1) == [name]
    assert bucket.store.get_bytes(f"{layout.step_dir('rollouts', 1)}/{name}") == data
    assert bucket.read_rollouts(1) == samples


def test_commit_picks_the_lowest_named_version_whatever_the_write_order(bucket: Bucket) -> None:
    a, b = make_samples(0, seed=1), make_samples(0, seed=9)
    assert version_name(a) != version_name(b)
    expected = a if version_name(a) < version_name(b) else b
    for step, order in ((4, (a, b)), (5, (b, a))):
        samples_of_step = [[s.__class__(**{**vars(s), "step": step}) for s in r] for r in order]
        for records in samples_of_step:
            assert bucket.write_rollout_part(step, 0, records)
        assert len(part_objects(bucket, "rollouts", step)) == 2
        assert bucket.rollout_parts_committed(step) == {0}
        assert bucket.commit_rollouts(step, 1)
        chosen = min(part_objects(bucket, "rollouts", step))
        assert committed_key(bucket, "rollouts", step, 0).endswith(chosen)
        got = bucket.read_rollouts(step)
        assert [(s.prompt_id, s.response_token_ids) for s in got] == [
            (s.prompt_id, s.response_token_ids) for s in expected
        ]


def test_a_version_written_after_the_commit_is_ignored(bucket: Bucket) -> None:
    first, second = make_samples(1, seed=1), make_samples(1, seed=9)
    assert bucket.write_rollout_part(1, 0, first)
    assert bucket.commit_rollouts(1, 1)
    key = committed_key(bucket, "rollouts", 1, 0)
    assert bucket.write_rollout_part(1, 0, second)  # a zombie duplicate of the part's owner
    assert len(part_objects(bucket, "rollouts", 1)) == 2
    assert bucket.commit_rollouts(1, 1)
    assert committed_key(bucket, "rollouts", 1, 0) == key
    assert bucket.rollout_parts_committed(1) == {0}
    assert bucket.read_rollouts(1) == first


def test_records_of_another_step_are_refused(bucket: Bucket) -> None:
    with pytest.raises(ValueError, match="step 4"):
        bucket.write_rollout_part(3, 0, make_samples(4))


def truncate(bucket: Bucket, key: str) -> None:
    bucket.store.put_bytes(key, (bucket.store.get_bytes(key) or b"")[:-10])


@pytest.mark.parametrize("damage", [flip_byte, truncate])
def test_corrupt_part_is_detected_withdrawn_and_regenerated(bucket: Bucket, damage) -> None:
    a, b = make_samples(5, seed=1), make_samples(5, seed=2)
    bucket.write_rollout_part(5, 0, a)
    bucket.write_rollout_part(5, 1, b)
    assert bucket.commit_rollouts(5, 2)
    damage(bucket, committed_key(bucket, "rollouts", 5, 1))
    with pytest.raises(CorruptPartError) as info:
        bucket.read_rollouts(5)
    assert (info.value.kind, info.value.step, info.value.part) == ("rollouts", 5, 1)
    assert "/part-01.r6." in str(info.value)
    assert bucket.read_rollouts(5, part=0) == a  # the healthy part still reads
    bucket.invalidate_part("rollouts", 5, 1)
    assert not bucket.rollouts_committed(5)
    assert bucket.rollout_parts_committed(5) == {0}
    assert [n[:8] for n in part_objects(bucket, "rollouts", 5)] == ["part-00."]
    assert bucket.write_rollout_part(5, 1, b)  # the owner regenerates its part
    assert bucket.commit_rollouts(5, 2)
    assert bucket.read_rollouts(5) == a + b


def test_invalidate_part_removes_every_version_of_that_part_only(bucket: Bucket) -> None:
    bucket.write_rollout_part(6, 0, make_samples(6, seed=1))
    bucket.write_rollout_part(6, 1, make_samples(6, seed=2))
    bucket.write_rollout_part(6, 1, make_samples(6, seed=3))
    assert bucket.commit_rollouts(6, 2)
    bucket.invalidate_part("rollouts", 6, 1)
    assert [n[:8] for n in part_objects(bucket, "rollouts", 6)] == ["part-00."]
    assert not bucket.commit_rollouts(6, 2)


def test_truncated_object_is_not_committed(bucket: Bucket) -> None:
    samples = make_samples(6)
    bucket.write_rollout_part(6, 0, samples)
    (name,) = part_objects(bucket, "rollouts", 6)
    truncate(bucket, f"{layout.step_dir('rollouts', 6)}/{name}")
    assert not bucket.commit_rollouts(6, 1)
    assert bucket.rollout_parts_committed(6) == set()  # the owner sees it must rewrite
    assert bucket.write_rollout_part(6, 0, samples)
    assert bucket.commit_rollouts(6, 1)
    assert bucket.read_rollouts(6) == samples


def test_row_count_mismatch_is_corruption(bucket: Bucket) -> None:
    bucket.write_verdict_part(7, 0, make_verdicts(make_samples(7)))
    (name,) = part_objects(bucket, "verdicts", 7)
    real = layout.parse_part_version(name)
    assert real is not None
    lying = PartVersion(part=0, rows=real.rows + 1, size=real.size, crc32c=real.crc32c)
    step = layout.step_dir("verdicts", 7)
    bucket.store.put_bytes(f"{step}/{lying.name}", bucket.store.get_bytes(f"{step}/{name}") or b"")
    bucket.store.delete_prefix(f"{step}/{name}")
    assert bucket.commit_verdicts(7, 1)
    with pytest.raises(CorruptPartError, match="rows"):
        bucket.read_verdicts(7, part=0)


def test_missing_data_object_is_corruption(bucket: Bucket) -> None:
    bucket.write_rollout_part(8, 0, make_samples(8))
    assert bucket.commit_rollouts(8, 1)
    bucket.store.delete_prefix(committed_key(bucket, "rollouts", 8, 0))
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
    assert bucket.store.get_bytes("checkpoints/x.bin") is None and not bucket.store.exists(
        "checkpoints/x.bin"
    )
    bucket.store.put_bytes("checkpoints/x.bin", b"\x00\x01")
    assert bucket.store.get_bytes("checkpoints/x.bin") == b"\x00\x01" and bucket.store.exists(
        "checkpoints/x.bin"
    )


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
    assert not bucket.store.exists("policy/v000001/model.safetensors")
    with pytest.raises(NotCommittedError):
        bucket.download_policy(1, tmp_path / "dl2")


@pytest.mark.parametrize("link", [False, True])
def test_policy_round_trip_with_and_without_links(bucket: Bucket, tmp_path: Path, link: bool) -> None:
    """`link` never changes what is published or downloaded; on S3 it is simply ignored."""
    v5 = make_policy(tmp_path / "v5", 5)
    bucket.publish_policy(5, v5, link=link)
    out = bucket.download_policy(5, tmp_path / "dl", link=link)
    got = read_tree(out)
    assert got.pop(".oreal_policy.json")
    assert got == read_tree(v5)


def test_local_bucket_hard_links_policy_files_only_when_asked(local_bucket: Bucket, tmp_path: Path) -> None:
    def inode(path: Path) -> int:
        return path.stat().st_ino

    source = make_policy(tmp_path / "v0", 0) / "model.safetensors"
    local_bucket.publish_policy(0, source.parent, link=True)
    local_bucket.publish_policy(1, source.parent)
    in_bucket = Path(local_bucket.store.path("policy/v000000/model.safetensors"))
    assert inode(in_bucket) == inode(source)  # taken by link: no bytes copied
    assert inode(Path(local_bucket.store.path("policy/v000001/model.safetensors"))) != inode(source)
    linked = local_bucket.download_policy(0, tmp_path / "linked", link=True) / "model.safetensors"
    copied = local_bucket.download_policy(0, tmp_path / "copied") / "model.safetensors"
    assert inode(linked) == inode(in_bucket) and inode(copied) != inode(in_bucket)
    # A linked download is still verified against the manifest.
    flip_byte(local_bucket, "policy/v000000/model.safetensors", at=1000)
    with pytest.raises(CorruptPartError):
        local_bucket.download_policy(0, tmp_path / "again", link=True)
    assert not (tmp_path / "again" / "model.safetensors").exists()


def test_refused_hard_link_falls_back_to_a_copy(
    local_bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(store_module.os, "link", cross_device)
    v2 = make_policy(tmp_path / "v2", 2)
    local_bucket.publish_policy(2, v2, link=True)
    out = local_bucket.download_policy(2, tmp_path / "dl", link=True)
    got = read_tree(out)
    got.pop(".oreal_policy.json")
    assert got == read_tree(v2)
    assert (out / "model.safetensors").stat().st_ino != (v2 / "model.safetensors").stat().st_ino


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
    bucket.store.put_bytes("policy/v000003/model.safetensors", b"partial")
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
    manifest = PolicyManifest.from_bytes(bucket.store.get_bytes("policy/v000000/_COMMITTED") or b"", "m")
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
    crc_up = bucket.store.put_file(str(src), "checkpoints/step-000003/rank0/optimizer.pt")
    assert bucket.store.exists("checkpoints/step-000003/rank0/optimizer.pt")
    crc_down = bucket.store.get_file(
        "checkpoints/step-000003/rank0/optimizer.pt", str(tmp_path / "back" / "optimizer.pt")
    )
    assert crc_up == crc_down == crc32c(src.read_bytes())
    assert (tmp_path / "back" / "optimizer.pt").read_bytes() == src.read_bytes()
    with pytest.raises(BucketError, match="no such object"):
        bucket.store.get_file("checkpoints/missing.pt", str(tmp_path / "missing.pt"))
    assert not (tmp_path / "missing.pt").exists()


def test_empty_part_is_a_valid_part(bucket: Bucket) -> None:
    bucket.write_verdict_part(9, 0, [])
    bucket.write_verdict_part(9, 1, make_verdicts(make_samples(9)))
    assert bucket.commit_verdicts(9, 2)
    assert bucket.read_verdicts(9, part=0) == []
    assert len(bucket.read_verdicts(9)) == 6


def test_policy_file_missing_from_the_bucket_is_corruption(bucket: Bucket, tmp_path: Path) -> None:
    bucket.publish_policy(4, make_policy(tmp_path / "v4", 4))
    bucket.store.delete_prefix("policy/v000004/config.json")
    with pytest.raises(CorruptPartError, match="missing"):
        bucket.download_policy(4, tmp_path / "dl")


def test_uploading_a_missing_local_file_is_a_clear_error(bucket: Bucket, tmp_path: Path) -> None:
    with pytest.raises(BucketError, match="does not exist"):
        bucket.store.put_file(str(tmp_path / "nope.bin"), "checkpoints/nope.bin")


def test_an_unreadable_step_commit_is_rewritten(bucket: Bucket) -> None:
    samples = make_samples(11)
    bucket.write_rollout_part(11, 0, samples)
    assert bucket.commit_rollouts(11, 1)
    good = bucket.store.get_bytes(layout.step_commit("rollouts", 11)) or b""
    for bad in (b"garbage", b'{"manifest_version": 2, "ki', good.replace(b'"rows": 6', b'"rows": 7')):
        bucket.store.put_bytes(layout.step_commit("rollouts", 11), bad)  # the last: key and rows disagree
        assert not bucket.rollouts_committed(11)
        with pytest.raises(NotCommittedError):
            bucket.read_rollouts(11)
        assert bucket.commit_rollouts(11, 1)  # rebuilt from the listing
        assert bucket.store.get_bytes(layout.step_commit("rollouts", 11)) == good
        assert bucket.read_rollouts(11) == samples
    bucket.write_rollout_part(12, 0, make_samples(12))
    bucket.store.put_bytes(layout.step_commit("rollouts", 12), good)  # another step's commit
    assert not bucket.rollouts_committed(12)


def test_an_older_step_manifest_is_a_clear_error(bucket: Bucket) -> None:
    bucket.write_rollout_part(0, 0, make_samples(0))
    assert bucket.commit_rollouts(0, 1)
    key = layout.step_commit("rollouts", 0)
    older = (bucket.store.get_bytes(key) or b"").replace(b'"manifest_version": 2', b'"manifest_version": 1')
    bucket.store.put_bytes(key, older)
    for call in (lambda: bucket.read_rollouts(0), lambda: bucket.rollouts_committed(0)):
        with pytest.raises(LayoutVersionError, match="manifest v1 was written by an older oreal"):
            call()
    with pytest.raises(LayoutVersionError):
        bucket.commit_rollouts(0, 1)  # an older commit is not silently replaced


def test_a_newer_step_manifest_is_refused(bucket: Bucket) -> None:
    bucket.write_rollout_part(0, 0, make_samples(0))
    assert bucket.commit_rollouts(0, 1)
    key = layout.step_commit("rollouts", 0)
    bucket.store.put_bytes(
        key, (bucket.store.get_bytes(key) or b"").replace(b'"manifest_version": 2', b'"manifest_version": 3')
    )
    with pytest.raises(LayoutVersionError, match="newer oreal"):
        bucket.read_rollouts(0)
    with pytest.raises(LayoutVersionError, match="newer oreal"):
        bucket.commit_rollouts(0, 1)  # not overwritten by an older committer
