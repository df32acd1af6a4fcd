"""Publish and download HF-format policy folders: files first, `_COMMITTED` manifest last.

The manifest lists every file with its size and CRC32C (see `manifest.py`).
Checksumming overlaps with the transfer. A download verifies each file and leaves a marker
(`.oreal_policy.json`, a copy of the manifest) in the local folder, so a second download of the
same version is skipped when the marker and the file sizes still match.

On a local bucket (file://) both directions can hard-link instead of copy (`link=True`): the
trainer's freshly saved folder is never rewritten in place (each save replaces the folder), and a
rollout worker only reads its copy, so a step's policy costs its checksums, not two copies.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from oreal.bucket import layout
from oreal.bucket.errors import BucketError, CorruptPartError, NotCommittedError, ObjectMissingError
from oreal.bucket.manifest import FileEntry, PolicyManifest, file_crc32c
from oreal.bucket.store import ObjectStore

log = logging.getLogger(__name__)

MARKER = ".oreal_policy.json"
_THREADS = int(os.environ.get("OREAL_BUCKET_THREADS", "8"))


def _local_files(local_dir: Path) -> list[Path]:
    if not local_dir.is_dir():
        raise BucketError(f"policy folder {local_dir} does not exist or is not a directory")
    files = sorted(p for p in local_dir.rglob("*") if p.is_file() and p.name != MARKER)
    if not files:
        raise BucketError(f"policy folder {local_dir} is empty")
    return sorted(files, key=lambda p: -p.stat().st_size)  # largest first: they bound the time


def read_manifest(store: ObjectStore, version: int) -> PolicyManifest | None:
    key = layout.policy_commit(version)
    data = store.get_bytes(key)
    return None if data is None else PolicyManifest.from_bytes(data, store.url(key))


def publish(store: ObjectStore, version: int, local_dir: Path, link: bool = False) -> PolicyManifest:
    """Upload every file of `local_dir` to policy/vNNNNNN/, then write its `_COMMITTED`.

    `local_dir` must be complete and must not change while it is published. `link`: its files
    are never rewritten in place afterwards (only deleted or replaced by new files), so a local
    bucket takes them as hard links instead of copies.
    """
    local_dir = Path(local_dir)
    files = _local_files(local_dir)
    prefix = layout.policy_dir(version)
    with store.timed("publish_policy"):
        if read_manifest(store, version) is not None:
            # Versions are meant to be immutable; a re-run publisher replaces the commit it made.
            log.warning("policy v%d is already committed; replacing it", version)
            store.delete(layout.policy_commit(version))

        def upload(path: Path) -> FileEntry:
            rel = path.relative_to(local_dir).as_posix()
            crc = store.put_file(str(path), f"{prefix}/{rel}", checksum=file_crc32c, link=link)
            return FileEntry(path=rel, size=path.stat().st_size, crc32c=crc)

        with ThreadPoolExecutor(max_workers=max(1, min(_THREADS, len(files)))) as pool:
            entries = sorted(pool.map(upload, files), key=lambda f: f.path)
        manifest = PolicyManifest(version=version, files=entries)
        store.put_bytes(layout.policy_commit(version), manifest.to_bytes())
    return manifest


def _marker_matches(local_dir: Path, manifest: PolicyManifest) -> bool:
    marker = local_dir / MARKER
    try:
        if json.loads(marker.read_bytes()) != json.loads(manifest.to_bytes()):
            return False
    except (OSError, ValueError):
        return False
    for f in manifest.files:
        p = local_dir / f.path
        if not p.is_file() or p.stat().st_size != f.size:
            return False
    return True


def download(store: ObjectStore, version: int, local_dir: Path, link: bool = False) -> Path:
    """Download committed policy `version` into `local_dir`, verifying sizes and checksums.

    `link`: the caller only reads the files, so a local bucket may hand out hard links to its
    objects instead of copies (still checksummed).
    """
    local_dir = Path(local_dir)
    manifest = read_manifest(store, version)
    if manifest is None:
        raise NotCommittedError(
            f"{store.url(layout.policy_dir(version))}: policy v{version} is not committed"
        )
    if _marker_matches(local_dir, manifest):
        log.info("policy v%d already present in %s", version, local_dir)
        return local_dir
    prefix = layout.policy_dir(version)
    (local_dir / MARKER).unlink(missing_ok=True)

    def fetch(entry: FileEntry) -> None:
        target = local_dir / entry.path
        if (
            target.is_file()
            and target.stat().st_size == entry.size
            and file_crc32c(str(target)) == entry.crc32c
        ):
            return  # identical file already there
        where = store.url(f"{prefix}/{entry.path}")
        try:
            crc = store.get_file(f"{prefix}/{entry.path}", str(target), checksum=file_crc32c, link=link)
        except ObjectMissingError as exc:
            raise CorruptPartError(
                f"{where}: listed in the policy manifest but missing; re-publish policy v{version}",
                kind="policy",
                step=version,
                part=None,
            ) from exc
        size = target.stat().st_size
        if size != entry.size or crc != entry.crc32c:
            target.unlink(missing_ok=True)
            raise CorruptPartError(
                f"{where}: content does not match the policy manifest ({size} bytes, manifest says "
                f"{entry.size}, or checksum differs); re-publish policy v{version}",
                kind="policy",
                step=version,
                part=None,
            )

    with store.timed("download_policy"):
        local_dir.mkdir(parents=True, exist_ok=True)
        largest_first = sorted(manifest.files, key=lambda f: -f.size)
        with ThreadPoolExecutor(max_workers=max(1, min(_THREADS, len(largest_first)))) as pool:
            list(pool.map(fetch, largest_first))
        (local_dir / MARKER).write_bytes(manifest.to_bytes())
    return local_dir
