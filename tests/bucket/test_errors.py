"""Permanent failures: a full disk, denied access, bad URIs. Clear BucketErrors, nothing half-committed."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

import pytest
from bucket_records import make_samples
from fsspec.implementations.local import LocalFileSystem

from oreal.bucket import Bucket, BucketError, RetryPolicy, schema


class FullDiskFS(LocalFileSystem):
    """Writes succeed until `budget` bytes have been written, then raise ENOSPC (like a full disk)."""

    def __init__(self, budget: int) -> None:
        super().__init__(auto_mkdir=True)
        self.budget = budget

    def open(self, path: str, mode: str = "rb", **kw: Any) -> Any:  # type: ignore[override]
        f = super().open(path, mode, **kw)
        if "w" not in mode:
            return f
        fs, write = self, f.write

        def limited(data: bytes) -> int:
            if len(data) > fs.budget:
                raise OSError(errno.ENOSPC, "No space left on device")
            fs.budget -= len(data)
            return write(data)

        f.write = limited
        return f

    def put_file(self, lpath: str, rpath: str, **kw: Any) -> None:  # type: ignore[override]
        size = os.path.getsize(lpath)
        if size > self.budget:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.budget -= size
        super().put_file(lpath, rpath, **kw)


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file() and ".tmp-" in p.name)


def test_full_disk_while_writing_data_commits_nothing(tmp_path: Path) -> None:
    root = tmp_path / "run"
    bucket = Bucket(FullDiskFS(budget=100), str(root), uri="file:///data/run", retry=RetryPolicy(attempts=3))
    with pytest.raises(BucketError) as info:
        bucket.write_rollout_part(0, 0, make_samples(0))
    assert "no space left" in str(info.value)
    assert re.search(
        r"file:///data/run/rollouts/step-000000/part-00\.r6\.s\d+\.c[0-9a-f]{8}\.parquet", str(info.value)
    )
    assert bucket.rollout_parts_committed(0) == set()
    assert not bucket.commit_rollouts(0, 1)
    assert leftovers(root) == []  # the temporary file was removed


def test_full_disk_on_a_plain_local_bucket_commits_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same through the bare-os path that a plain file:// bucket uses (no fsspec in between)."""
    from oreal.bucket import store as store_module

    def full_disk_open(path: str, mode: str = "rb", *args: Any, **kw: Any) -> Any:
        f = open(path, mode, *args, **kw)  # noqa: SIM115 - the caller closes it
        if "w" in mode:

            def no_space(data: bytes) -> int:
                raise OSError(errno.ENOSPC, "No space left on device")

            f.write = no_space  # type: ignore[method-assign]
        return f

    bucket = Bucket.open((tmp_path / "run").as_uri())
    monkeypatch.setattr(store_module, "open", full_disk_open, raising=False)
    with pytest.raises(BucketError, match="no space left"):
        bucket.write_rollout_part(0, 0, make_samples(0))
    monkeypatch.undo()
    assert bucket.rollout_parts_committed(0) == set()
    assert not bucket.commit_rollouts(0, 1)
    assert leftovers(tmp_path / "run") == []  # the temporary file was removed
    assert bucket.write_rollout_part(0, 0, make_samples(0)) and bucket.commit_rollouts(0, 1)  # space back


def test_full_disk_while_writing_the_step_commit_leaves_the_step_uncommitted(tmp_path: Path) -> None:
    root = tmp_path / "run"
    data_size = len(schema.encode("rollouts", make_samples(0))[0])
    fs = FullDiskFS(budget=data_size + 10)  # room for the part, not for _COMMITTED
    bucket = Bucket(fs, str(root))
    assert bucket.write_rollout_part(0, 0, make_samples(0))
    with pytest.raises(BucketError, match="no space left"):
        bucket.commit_rollouts(0, 1)
    assert not bucket.rollouts_committed(0)
    assert bucket.rollout_parts_committed(0) == {0}  # the part is kept: only the commit is retried
    fs.budget = 10**9  # space freed: the next commit succeeds
    assert bucket.commit_rollouts(0, 1)
    assert bucket.read_rollouts(0) == make_samples(0)
    assert leftovers(root) == []


def test_full_disk_during_policy_publish_leaves_no_commit(tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "model.safetensors").write_bytes(os.urandom(50_000))
    (policy / "config.json").write_text("{}")
    bucket = Bucket(FullDiskFS(budget=10_000), str(tmp_path / "run"))
    with pytest.raises(BucketError, match="no space left"):
        bucket.publish_policy(0, policy)
    assert not bucket.policy_committed(0)
    assert bucket.latest_policy_version() is None


class DeniedFS(LocalFileSystem):
    def cat_file(self, path: str, start: Any = None, end: Any = None, **kw: Any) -> bytes:
        raise PermissionError(errno.EACCES, "Access Denied")


def test_access_denied_is_a_clear_error(tmp_path: Path) -> None:
    bucket = Bucket(DeniedFS(), str(tmp_path), uri="s3://team/run")
    with pytest.raises(
        BucketError, match=r"get s3://team/run/state.json: access denied; check the credentials"
    ):
        bucket.read_state()


@pytest.mark.parametrize("uri", ["", "s3://", "nosuchscheme://x/y"])
def test_bad_uris(uri: str) -> None:
    with pytest.raises(BucketError):
        Bucket.open(uri)


def test_plain_path_and_file_uri_are_the_same_place(tmp_path: Path) -> None:
    Bucket.open(str(tmp_path / "run")).write_spec("a: 1\n")
    assert Bucket.open(f"file://{tmp_path / 'run'}").read_spec() == "a: 1\n"
    assert Bucket.open(str(tmp_path / "run")).uri == f"file://{tmp_path / 'run'}"


def test_memory_scheme_works_for_quick_experiments() -> None:
    bucket = Bucket.open("memory://oreal-tests/run-x")
    bucket.write_rollout_part(0, 0, make_samples(0))
    assert bucket.commit_rollouts(0, 1)
    assert bucket.read_rollouts(0) == make_samples(0)
    assert bucket.uri == "memory://oreal-tests/run-x"


def test_writes_recreate_a_directory_deleted_behind_the_bucket(tmp_path: Path) -> None:
    bucket = Bucket.open(str(tmp_path / "run"))
    bucket.write_stats(0, {"a": 1})
    bucket.store.delete_prefix("stats")  # e.g. a user cleaning up by hand
    bucket.write_stats(1, {"a": 2})
    assert bucket.list_stats() == [1]
