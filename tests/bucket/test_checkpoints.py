"""Trainer checkpoints and final/ in the bucket: upload (copied or hard-linked), commit, verified download."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from oreal.bucket import Bucket, CorruptPartError, NotCommittedError
from oreal.bucket import store as store_module
from oreal.bucket.manifest import crc32c


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
    entries = bucket.checkpoints.upload(3, tmp_path / "local", move=move)
    assert {e.path: (e.size, e.crc32c) for e in entries} == {k: (len(v), crc32c(v)) for k, v in files.items()}
    assert bucket.checkpoints.committed_steps() == []  # files alone are not a checkpoint
    bucket.checkpoints.commit(3, entries)
    assert bucket.checkpoints.committed_steps() == [3]
    stored = tmp_path / "bucket" / "checkpoints" / "step-000003" / "policy" / "model.safetensors"
    local = tmp_path / "local" / "policy" / "model.safetensors"
    # move: a local bucket takes the file as a hard link (no copy of GBs); otherwise a copy
    assert (stored.stat().st_ino == local.stat().st_ino) == move
    out = bucket.checkpoints.download(3, tmp_path / "restored")
    assert {rel: (out / rel).read_bytes() for rel in files} == files


def test_move_across_filesystems_falls_back_to_copy(tmp_path, monkeypatch):
    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(store_module.os, "link", cross_device)
    bucket = Bucket.open((tmp_path / "bucket").as_uri())
    files = _folder(tmp_path / "local")
    bucket.checkpoints.commit(0, bucket.checkpoints.upload(0, tmp_path / "local", move=True))
    out = bucket.checkpoints.download(0, tmp_path / "restored")
    assert {rel: (out / rel).read_bytes() for rel in files} == files


def test_a_damaged_checkpoint_file_is_refused_on_download(tmp_path):
    bucket = Bucket.open((tmp_path / "bucket").as_uri())
    _folder(tmp_path / "local")
    bucket.checkpoints.commit(1, bucket.checkpoints.upload(1, tmp_path / "local"))
    stored = tmp_path / "bucket" / "checkpoints" / "step-000001" / "optimizer" / "policy.pt"
    stored.write_bytes(b"y" * 100)  # same size, other content
    with pytest.raises(CorruptPartError, match="does not match the checkpoint manifest"):
        bucket.checkpoints.download(1, tmp_path / "restored")
    assert not (tmp_path / "restored" / "optimizer" / "policy.pt").exists()
    with pytest.raises(NotCommittedError):
        bucket.checkpoints.download(2, tmp_path / "restored")


def test_prune_keeps_the_newest_and_final_is_its_own_tree(tmp_path):
    bucket = Bucket.open((tmp_path / "bucket").as_uri())
    _folder(tmp_path / "local")
    for step in (1, 3, 5):
        bucket.checkpoints.commit(step, bucket.checkpoints.upload(step, tmp_path / "local"))
    bucket.checkpoints.prune(keep=2)
    assert bucket.checkpoints.committed_steps() == [3, 5]
    assert not (tmp_path / "bucket" / "checkpoints" / "step-000001").exists()

    assert bucket.checkpoints.final_step() is None
    bucket.checkpoints.commit_final(5, bucket.checkpoints.upload_final(tmp_path / "local"))
    assert bucket.checkpoints.final_step() == 5
    entries = bucket.checkpoints.upload_final(tmp_path / "local")  # saved again: withdrawn first
    assert bucket.checkpoints.final_step() is None
    bucket.checkpoints.commit_final(6, entries)
    assert bucket.checkpoints.final_step() == 6
    assert bucket.checkpoints.committed_steps() == [3, 5]  # final/ is not a checkpoint
