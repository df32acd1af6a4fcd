"""Publish and download HF-format policy folders: files first, `_COMMITTED` manifest last.

The manifest lists every file with its size and sha256. A download verifies each file against
it and leaves a marker (`.oreal_policy.json`, a copy of the manifest) in the local folder, so a
second download of the same version is skipped when the marker and file sizes still match.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from oreal.bucket import layout
from oreal.bucket.errors import BucketError, CorruptPartError, NotCommittedError
from oreal.bucket.manifest import PolicyFile, PolicyManifest
from oreal.bucket.store import ObjectStore

log = logging.getLogger(__name__)

MARKER = ".oreal_policy.json"
_CHUNK = 8 << 20
_THREADS = int(os.environ.get("OREAL_BUCKET_THREADS", "4"))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _local_files(local_dir: Path) -> list[Path]:
    if not local_dir.is_dir():
        raise BucketError(f"policy folder {local_dir} does not exist or is not a directory")
    files = sorted(p for p in local_dir.rglob("*") if p.is_file() and p.name != MARKER)
    if not files:
        raise BucketError(f"policy folder {local_dir} is empty")
    return files


def read_manifest(store: ObjectStore, version: int) -> PolicyManifest | None:
    key = layout.policy_commit(version)
    data = store.get_bytes(key)
    return None if data is None else PolicyManifest.from_bytes(data, store.url(key))


def publish(store: ObjectStore, version: int, local_dir: Path) -> PolicyManifest:
    """Upload every file of `local_dir` to policy/vNNNNNN/, then write its `_COMMITTED`."""
    local_dir = Path(local_dir)
    files = _local_files(local_dir)
    prefix = layout.policy_dir(version)

    def upload(path: Path) -> PolicyFile:
        rel = path.relative_to(local_dir).as_posix()
        digest = file_sha256(path)  # hashed before upload: the manifest describes what we sent
        store.put_file(str(path), f"{prefix}/{rel}")
        return PolicyFile(path=rel, size=path.stat().st_size, sha256=digest)

    with store.timed("publish_policy"):
        previous = read_manifest(store, version)
        if previous is not None:
            # Versions are meant to be immutable; a re-run publisher replaces the commit it made.
            log.warning("policy v%d is already committed; replacing it", version)
            store.delete(layout.policy_commit(version))
        with ThreadPoolExecutor(max_workers=max(1, min(_THREADS, len(files)))) as pool:
            entries = list(pool.map(upload, files))
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


def download(store: ObjectStore, version: int, local_dir: Path) -> Path:
    """Download committed policy `version` into `local_dir`, verifying sizes and checksums."""
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

    def fetch(entry: PolicyFile) -> None:
        target = local_dir / entry.path
        if target.is_file() and target.stat().st_size == entry.size and file_sha256(target) == entry.sha256:
            return  # identical file already there
        store.get_file(f"{prefix}/{entry.path}", str(target))
        size = target.stat().st_size
        if size != entry.size or file_sha256(target) != entry.sha256:
            target.unlink(missing_ok=True)
            raise CorruptPartError(
                f"{store.url(prefix + '/' + entry.path)}: content does not match the policy manifest "
                f"(size {size} vs {entry.size} or checksum); re-publish policy v{version}",
                kind="policy",
                step=version,
                part=None,
            )

    with store.timed("download_policy"):
        local_dir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=max(1, min(_THREADS, len(manifest.files)))) as pool:
            list(pool.map(fetch, manifest.files))
        (local_dir / MARKER).write_bytes(manifest.to_bytes())
    return local_dir
