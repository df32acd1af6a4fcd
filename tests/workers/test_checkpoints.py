"""Trainer checkpoints in the bucket: upload (copy or, locally, move), commit, download."""

import errno
import os
from pathlib import Path

import pytest

from oreal.bucket import Bucket
from oreal.workers import checkpoints


def _folder(root: Path) -> dict[str, bytes]:
    files = {
        "policy/model.safetensors": os.urandom(3000),
        "optimizer/policy.pt": b"x" * 100,
        "state.json": b"{}",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


@pytest.mark.parametrize("move", [False, True])
def test_upload_commit_download_round_trip(tmp_path, move):
    bucket = Bucket.open((tmp_path / "bucket").as_uri())
    files = _folder(tmp_path / "local")
    entries = checkpoints.upload(bucket, 3, tmp_path / "local", move=move)
    assert sorted(e["path"] for e in entries) == sorted(files)
    assert {e["path"]: e["size"] for e in entries} == {k: len(v) for k, v in files.items()}
    assert checkpoints.committed_steps(bucket) == []  # files alone are not a checkpoint
    checkpoints.commit(bucket, 3, entries)
    assert checkpoints.committed_steps(bucket) == [3]
    # moved: the local files are gone (renamed into the bucket); copied: they stay
    assert all((tmp_path / "local" / rel).exists() != move for rel in files)
    out = checkpoints.download(bucket, 3, tmp_path / "restored")
    assert {rel: (out / rel).read_bytes() for rel in files} == files


def test_move_across_filesystems_falls_back_to_copy(tmp_path, monkeypatch):
    real_replace = os.replace

    def cross_device(src, dst):  # only the local checkpoint files are "on another filesystem"
        if str(src).startswith(str(tmp_path / "local")):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoints.os, "replace", cross_device)
    bucket = Bucket.open((tmp_path / "bucket").as_uri())
    files = _folder(tmp_path / "local")
    checkpoints.commit(bucket, 0, checkpoints.upload(bucket, 0, tmp_path / "local", move=True))
    out = checkpoints.download(bucket, 0, tmp_path / "restored")
    assert {rel: (out / rel).read_bytes() for rel in files} == files
