"""The trainer resumes from the newest checkpoint that reads back intact."""

from __future__ import annotations

from types import SimpleNamespace

from oreal.bucket import Bucket
from oreal.workers.trainer import resume


class Loader:
    """A trainer stand-in: load_checkpoint returns the step the checkpoint folder names."""

    def __init__(self) -> None:
        self.loaded: list[str] = []

    def load_checkpoint(self, directory) -> int:
        self.loaded.append((directory / "state.json").read_text())
        return int(self.loaded[-1]) + 1


def _checkpoint(bucket: Bucket, step: int, folder, committed: bool = True) -> None:
    """A checkpoint of `step`; `committed`: the step's stats were written after it (train_one)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.json").write_text(str(step))
    bucket.checkpoints.commit(step, bucket.checkpoints.upload(step, folder))
    if committed:
        bucket.write_stats(step, {"step": float(step)})


def test_a_damaged_newest_checkpoint_falls_back_to_an_older_one(tmp_path):
    bucket = Bucket.open((tmp_path / "bucket").as_uri())
    ctx = SimpleNamespace(bucket=bucket, work_dir=tmp_path / "work")
    assert resume(ctx, Loader()) == 0  # no checkpoint: from the start
    _checkpoint(bucket, 3, tmp_path / "c3")
    _checkpoint(bucket, 7, tmp_path / "c7")
    loader = Loader()
    assert resume(ctx, loader) == 8 and loader.loaded == ["7"]
    (tmp_path / "bucket" / "checkpoints" / "step-000007" / "state.json").write_text("9")  # same size
    loader = Loader()
    assert resume(ctx, loader) == 4 and loader.loaded == ["3"]
    (tmp_path / "bucket" / "checkpoints" / "step-000003" / "state.json").write_text("0")
    assert resume(ctx, Loader()) == 0  # none intact: replay from step 0


def test_a_checkpoint_of_a_step_stopped_before_its_commit_is_not_resumed_from(tmp_path):
    """Stopped between the checkpoint of step 5 and its stats: resuming from it would skip step 5's
    commit for good (seen in CI: stats [0, 2] after a suspend); step 5 is trained again instead."""
    bucket = Bucket.open((tmp_path / "bucket").as_uri())
    ctx = SimpleNamespace(bucket=bucket, work_dir=tmp_path / "work")
    _checkpoint(bucket, 3, tmp_path / "c3")
    _checkpoint(bucket, 5, tmp_path / "c5", committed=False)
    loader = Loader()
    assert resume(ctx, loader) == 4 and loader.loaded == ["3"]
    bucket.write_stats(5, {"step": 5.0})  # committed after all: the newest checkpoint counts
    loader = Loader()
    assert resume(ctx, loader) == 6 and loader.loaded == ["5"]


def test_a_checkpoint_saved_again_is_withdrawn_until_committed_again(tmp_path):
    bucket = Bucket.open((tmp_path / "bucket").as_uri())
    _checkpoint(bucket, 5, tmp_path / "c5")
    folder = tmp_path / "again"
    folder.mkdir()
    (folder / "state.json").write_text("5")
    entries = bucket.checkpoints.upload(5, folder)
    assert bucket.checkpoints.committed_steps() == []  # half-replaced: nobody resumes from it
    bucket.checkpoints.commit(5, entries)
    assert bucket.checkpoints.committed_steps() == [5]
