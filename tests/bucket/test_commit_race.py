"""Two committers of one step never leave different `_COMMITTED`s: the step commit is created
if absent, and a committer that loses the race adopts the winner's commit (local directory and a
real S3 server; SeaweedFS honours `If-None-Match: *`)."""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from bucket_records import make_samples
from fsspec.implementations.memory import MemoryFileSystem

from oreal.bucket import Bucket, BucketError, layout, schema
from oreal.bucket.layout import PartVersion
from oreal.bucket.manifest import PartEntry, StepManifest, crc32c
from oreal.bucket.store import ObjectStore

WAIT_S = 30.0


def twin(bucket: Bucket) -> Bucket:
    """A second, independent Bucket on the same location (another replica's view)."""
    endpoint = getattr(bucket.store.fs, "endpoint_url", None)
    return Bucket.open(bucket.uri, endpoint=endpoint)


def version_name(step: int, seed: int) -> str:
    data, rows = schema.encode("rollouts", make_samples(step, seed=seed))
    return PartVersion(0, rows, len(data), crc32c(data)).name


def seeds_low_name_second(step: int) -> tuple[int, int]:
    """(first, zombie): two seeds whose versions differ, the zombie's with the lower name, so a
    committer that lists both chooses the zombie's."""
    a, b = 1, 2
    return (a, b) if version_name(step, b) < version_name(step, a) else (b, a)


def committed_key(bucket: Bucket, step: int) -> str:
    commit = StepManifest.from_bytes(bucket.store.get_bytes(layout.step_commit("rollouts", step)) or b"", "t")
    return commit.parts[0].key


def hook(
    obj: Any, name: str, before: Callable[[], None] | None = None, after: Callable[[], None] | None = None
) -> None:
    real = getattr(obj, name)

    def call(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            before()
        out = real(*args, **kwargs)
        if after is not None:
            after()
        return out

    setattr(obj, name, call)


def test_a_committer_that_listed_a_zombie_version_adopts_the_first_commit(bucket: Bucket) -> None:
    """C1 lists {A}; a zombie writes B (lower name); C2 lists {A, B} and chooses B; C1 creates
    `_COMMITTED` (A); C2's create loses and adopts it. Both then read A."""
    step = 3
    first, zombie = seeds_low_name_second(step)
    c1, c2 = bucket, twin(bucket)
    c1.write_rollout_part(step, 0, make_samples(step, seed=first))
    c1_listed, c2_listed = threading.Event(), threading.Event()
    hook(c1.store, "sizes", after=c1_listed.set)
    hook(c1.store, "create_bytes", before=lambda: c2_listed.wait(WAIT_S))
    results: dict[str, Any] = {}

    def commit_c1() -> None:
        try:
            results["c1"] = c1.commit_rollouts(step, 1)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results["c1"] = exc

    t1 = threading.Thread(target=commit_c1)
    t1.start()
    assert c1_listed.wait(WAIT_S)
    c2.write_rollout_part(step, 0, make_samples(step, seed=zombie))  # the zombie's version lands

    def c1_commits_first() -> None:
        c2_listed.set()
        t1.join(WAIT_S)
        results["after_c1"] = c2.store.get_bytes(layout.step_commit("rollouts", step))

    hook(c2.store, "create_bytes", before=c1_commits_first)
    assert c2.commit_rollouts(step, 1)
    assert results["c1"] is True
    assert not t1.is_alive()
    assert results["after_c1"] is not None
    assert c2.store.get_bytes(layout.step_commit("rollouts", step)) == results["after_c1"]  # unchanged
    step_dir = layout.step_dir("rollouts", step)
    assert committed_key(c2, step) == f"{step_dir}/{version_name(step, first)}"
    names = sorted(n for n in c2.store.list(step_dir) if layout.parse_part_version(n))
    assert names[0] == version_name(step, zombie)  # C2's listing would have chosen the zombie
    assert c1.read_rollouts(step) == c2.read_rollouts(step) == make_samples(step, seed=first)
    assert c2.commit_rollouts(step, 1)  # later commits keep it as well
    assert c2.store.get_bytes(layout.step_commit("rollouts", step)) == results["after_c1"]


def test_a_commit_deleted_after_the_listing_is_recreated_exclusively(bucket: Bucket) -> None:
    """C2 lists `_COMMITTED`, it is then withdrawn (invalidate_part) and C1 commits again before
    C2 writes: C2 must not overwrite C1's commit as if the one it listed had been unreadable."""
    step = 6
    first, zombie = seeds_low_name_second(step)
    c1, c2 = bucket, twin(bucket)
    for seed in (first, zombie):
        c1.write_rollout_part(step, 0, make_samples(step, seed=seed))
    assert c1.commit_rollouts(step, 1)  # the lowest name: the zombie's version
    key = layout.step_commit("rollouts", step)
    entry = PartEntry.of("rollouts", step, layout.parse_part_version(version_name(step, first)))
    c1_commit = StepManifest(kind="rollouts", step=step, parts=[entry]).to_bytes()
    hook(c2.store, "sizes", after=lambda: c1.store.delete(key))
    hook(c2.store, "create_bytes", before=lambda: c1.store.create_bytes(key, c1_commit))
    hook(c2.store, "put_bytes", before=lambda: c1.store.create_bytes(key, c1_commit))
    assert c2.commit_rollouts(step, 1)
    assert c2.store.get_bytes(key) == c1_commit
    assert c2.read_rollouts(step) == make_samples(step, seed=first)


def test_losing_to_a_commit_with_another_part_count_is_a_clear_error(bucket: Bucket) -> None:
    step = 4
    c1, c2 = bucket, twin(bucket)
    for part in range(2):
        c1.write_rollout_part(step, part, make_samples(step, seed=part))
    # C2 has listed (no _COMMITTED yet) when C1 commits the step with 2 parts.
    hook(c2.store, "create_bytes", before=lambda: c1.commit_rollouts(step, 2))
    with pytest.raises(BucketError, match="committed with 2 parts, asked to commit 1"):
        c2.commit_rollouts(step, 1)
    assert len(c1.read_rollouts(step)) == 2 * len(make_samples(step))


def test_an_unreadable_commit_that_won_the_race_is_replaced(bucket: Bucket) -> None:
    """A commit no consumer can read counts as absent, as when it is seen in the listing."""
    step = 5
    bucket.write_rollout_part(step, 0, make_samples(step))
    key = layout.step_commit("rollouts", step)
    hook(bucket.store, "create_bytes", before=lambda: bucket.store.put_bytes(key, b"garbage"))
    assert bucket.commit_rollouts(step, 1)
    assert bucket.read_rollouts(step) == make_samples(step)


# -- the store primitive ---------------------------------------------------------------------------
@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3), "memory"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    if request.param == "memory":
        return Bucket.open(f"memory://oreal-race/{request.node.name}").store
    bucket: Bucket = request.getfixturevalue("local_bucket" if request.param == "file" else "s3_bucket")
    return bucket.store


def test_create_bytes_never_replaces_an_object(store: ObjectStore) -> None:
    assert store.create_bytes("k/_COMMITTED", b"first") is None
    assert store.create_bytes("k/_COMMITTED", b"second") == b"first"
    assert store.get_bytes("k/_COMMITTED") == b"first"
    assert store.list("k") == ["_COMMITTED"]  # no temporary file left behind


def race_create(store: ObjectStore, key: str, n: int) -> dict[int, bytes | None]:
    """n threads create `key` at once, writer i with its own bytes; {i: what create_bytes returned}."""
    barrier = threading.Barrier(n)
    got: dict[int, bytes | None] = {}

    def create(i: int) -> None:
        barrier.wait()
        got[i] = store.create_bytes(key, f"writer-{i}".encode() * 50)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def test_concurrent_creators_have_exactly_one_winner(store: ObjectStore) -> None:
    for r in range(5):
        key = f"race-{r}/_COMMITTED"
        got = race_create(store, key, 6)
        winners = [i for i, seen in got.items() if seen is None]
        assert len(winners) == 1, got
        final = store.get_bytes(key)
        assert final == f"writer-{winners[0]}".encode() * 50
        assert all(seen == final for i, seen in got.items() if i not in winners)


def test_without_hard_links_a_local_create_still_keeps_the_first_object(
    local_bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr("oreal.bucket.exclusive.os.link", no_link)
    store = local_bucket.store
    assert store.create_bytes("k/_COMMITTED", b"first") is None
    assert store.create_bytes("k/_COMMITTED", b"second") == b"first"
    assert store.list("k") == ["_COMMITTED"]


class ConflictOnceFS(MemoryFileSystem):
    """A store that answers the first conditional PUT with AWS' 409 (another conditional write of
    the key in flight) and writes nothing, as when that other write then fails."""

    conflicts = 1

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kw: Any) -> None:
        if mode == "create" and self.conflicts > 0:
            self.conflicts -= 1
            err = ClientError(
                {
                    "Error": {"Code": "ConditionalRequestConflict"},
                    "ResponseMetadata": {"HTTPStatusCode": 409},
                },
                "PutObject",
            )
            raise OSError(errno.EIO, "conflict") from err
        super().pipe_file(path, value, mode=mode, **kw)


def test_a_conflict_with_nothing_written_is_tried_again() -> None:
    store = ObjectStore(ConflictOnceFS(), "/oreal-conflict", "memory://oreal-conflict")
    assert store.create_bytes("k/_COMMITTED", b"mine") is None
    assert store.get_bytes("k/_COMMITTED") == b"mine"
