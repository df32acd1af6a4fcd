"""Trainer checkpoints in the bucket: checkpoints/step-NNNNNN/<files>, `_COMMITTED` last.

The manifest lists every file with its size; a checkpoint without it is ignored (a trainer that
died mid-upload leaves nothing a successor would trust). Multi-rank: every rank uploads its own
local files, then rank 0 writes the manifest of all of them.

The last step's weights go to final/ instead (same files-then-manifest commit): the policy and
the token reward model in HF format, without optimiser states, since a finished run is not
resumed (an interrupted one resumes from the newest checkpoints/ entry and replays the rest).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from oreal.bucket import Bucket

PREFIX = "checkpoints"
FINAL = "final"
MARKER = "_COMMITTED"


def step_key(step: int) -> str:
    return f"{PREFIX}/step-{step:06d}"


def local_files(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).rglob("*") if p.is_file())


def _put(bucket: Bucket, local: Path, key: str, move: bool = False) -> None:
    """Stream one file into the bucket (files need no atomicity: the manifest is written last).

    With `move` and a local bucket on the same filesystem the file is renamed into place instead
    of copied (a checkpoint is GBs: policy, reward model and both AdamW states); across
    filesystems it is copied as usual.
    """
    fs, target = bucket.store.fs, bucket.store.path(key)
    fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
    if move and bucket.store.local:
        try:
            os.replace(local, target)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
    fs.put_file(str(local), target)


def _get(bucket: Bucket, key: str, local: Path) -> None:
    local.parent.mkdir(parents=True, exist_ok=True)
    bucket.store.fs.get_file(bucket.store.path(key), str(local))


def upload(bucket: Bucket, step: int, directory: Path, move: bool = False) -> list[dict]:
    """Upload every file under `directory` as checkpoint `step`; returns the manifest entries."""
    return upload_tree(bucket, step_key(step), directory, move=move)


def upload_tree(bucket: Bucket, key: str, directory: Path, move: bool = False) -> list[dict]:
    """Upload every file under `directory` to `key`/; returns their entries for the manifest.

    `move`: the caller discards `directory` afterwards, so a local bucket may take the files by
    rename (see `_put`); the directory is then left without them.
    """
    entries = []
    for path in local_files(directory):
        rel = path.relative_to(directory).as_posix()
        size = path.stat().st_size
        _put(bucket, path, f"{key}/{rel}", move=move)
        entries.append({"path": rel, "size": size})
    return entries


def commit(bucket: Bucket, step: int, entries: list[dict]) -> None:
    commit_tree(bucket, step_key(step), step, entries)


def commit_tree(bucket: Bucket, key: str, step: int, entries: list[dict]) -> None:
    manifest = {"step": step, "files": sorted(entries, key=lambda e: e["path"])}
    bucket.put_bytes(f"{key}/{MARKER}", json.dumps(manifest, indent=1).encode())


def withdraw_final(bucket: Bucket) -> None:
    """Delete final/'s manifest before its files are replaced, so nobody trusts a half-new final/."""
    bucket.delete(f"{FINAL}/{MARKER}")


def final_step(bucket: Bucket) -> int | None:
    """The step whose weights final/ holds, or None while final/ is not committed."""
    data = bucket.get_bytes(f"{FINAL}/{MARKER}")
    return None if data is None else int(json.loads(data)["step"])


def committed_steps(bucket: Bucket) -> list[int]:
    steps = []
    for name in bucket.list(PREFIX):
        if name.startswith("step-") and name[5:].isdigit():
            step = int(name[5:])
            if bucket.exists(f"{step_key(step)}/{MARKER}"):
                steps.append(step)
    return sorted(steps)


def download(bucket: Bucket, step: int, directory: Path) -> Path:
    data = bucket.get_bytes(f"{step_key(step)}/{MARKER}")
    if data is None:
        raise FileNotFoundError(f"checkpoint of step {step} is not committed")
    directory = Path(directory)
    for entry in json.loads(data)["files"]:
        target = directory / entry["path"]
        if target.is_file() and target.stat().st_size == entry["size"]:
            continue
        _get(bucket, f"{step_key(step)}/{entry['path']}", target)
    return directory


def prune(bucket: Bucket, keep: int) -> None:
    """Keep the newest `keep` committed checkpoints; withdraw the marker before deleting files."""
    for step in committed_steps(bucket)[:-keep]:
        bucket.delete(f"{step_key(step)}/{MARKER}")
        bucket.delete(step_key(step))
