"""`Bucket`: the run's log, shared by every worker (see DESIGN.md, "The bucket is the log").

Commit protocol for rollouts and verdicts (one Parquet part per worker replica per step):

1. `write_*_part(step, part, records)` writes `part-NN.parquet`, then `part-NN.manifest.json`
   (rows, size, sha256). A part with a manifest is *committed*. Re-running it is harmless: a
   committed part (or any part of a committed step) is left as it is, so a restarted worker never
   changes data that a consumer may already have read.
2. `commit_*(step, num_parts)` writes `step-NNNNNN/_COMMITTED` (all part manifests) once parts
   0..num_parts-1 are committed and their objects have the recorded sizes. Idempotent.
3. `read_*(step)` reads only committed data, verifies size, sha256 and row count, and raises
   `CorruptPartError` on any mismatch; `invalidate_part` then withdraws the untrusted manifests so
   that the owning worker regenerates the part.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fsspec

from oreal.bucket import layout, policy, schema
from oreal.bucket.errors import BucketError, CorruptPartError, NotCommittedError
from oreal.bucket.filesystems import open_filesystem
from oreal.bucket.manifest import PartManifest, StepManifest, file_crc32, sha256
from oreal.bucket.retry import RetryPolicy
from oreal.bucket.state import RunState
from oreal.bucket.store import ObjectStore
from oreal.trajectory import RolloutSample, Verdict

log = logging.getLogger(__name__)


class Bucket:
    """One run's storage location. Build with `Bucket.open(uri, ...)`; thread-safe for reads."""

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        root: str,
        uri: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.store = ObjectStore(fs, root, uri or root, retry)

    @classmethod
    def open(
        cls,
        uri: str,
        endpoint: str | None = None,
        storage_options: dict[str, Any] | None = None,
        region: str | None = None,
    ) -> Bucket:
        """Open `uri` (plain path, file://, s3://, gs://, memory://). Opening does no I/O.

        For s3:// the endpoint is `endpoint` (spec.storage.endpoint) or AWS_ENDPOINT_URL, and the
        credentials are AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment.
        """
        fs, root, canonical = open_filesystem(uri, endpoint, storage_options, region)
        return cls(fs, root, canonical)

    @property
    def uri(self) -> str:
        return self.store.uri

    def __repr__(self) -> str:
        return f"Bucket({self.uri!r})"

    # -- generic objects ---------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write one object atomically (for checkpoints/, reports, ...)."""
        self.store.put_bytes(key, data)

    def get_bytes(self, key: str) -> bytes | None:
        """The object's bytes, or None if it does not exist."""
        return self.store.get_bytes(key)

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def list(self, prefix: str) -> list[str]:
        """Names directly under `prefix` (files and 'directories'), sorted; [] if none."""
        return self.store.list(prefix)

    def delete(self, key: str) -> None:
        """Delete one object or, if `key` is a prefix, everything under it."""
        self.store.delete_prefix(key)

    def put_file(self, local_path: Path, key: str) -> str:
        """Upload a (large) local file to `key`, atomically; returns its CRC-32 (8 hex digits)."""
        return self.store.put_file(str(local_path), key, checksum=file_crc32)

    def get_file(self, key: str, local_path: Path) -> str:
        """Download `key` to `local_path` (temp file, then rename); returns its CRC-32.

        Raises BucketError if there is no such object.
        """
        return self.store.get_file(key, str(local_path), checksum=file_crc32)

    # -- spec, stats, state ------------------------------------------------------------------------
    def write_spec(self, yaml_text: str) -> None:
        self.store.put_bytes(layout.SPEC, yaml_text.encode())

    def read_spec(self) -> str | None:
        data = self.store.get_bytes(layout.SPEC)
        return None if data is None else data.decode()

    def write_stats(self, step: int, stats: dict[str, Any]) -> None:
        """Write stats/step-NNNNNN.json (JSON-serialisable values)."""
        self.store.put_bytes(layout.stats(step), json.dumps(stats, indent=1, sort_keys=True).encode())

    def read_stats(self, step: int) -> dict[str, Any] | None:
        data = self.store.get_bytes(layout.stats(step))
        return None if data is None else json.loads(data)

    def list_stats(self) -> list[int]:
        """Steps that have stats, ascending."""
        steps = (layout.parse_stats(n) for n in self.store.list("stats"))
        return sorted(s for s in steps if s is not None)

    def write_state(self, state: RunState) -> None:
        """Write state.json (stamps `updated_at`)."""
        self.store.put_bytes(layout.STATE, state.stamped().to_json())

    def read_state(self) -> RunState | None:
        data = self.store.get_bytes(layout.STATE)
        if data is None:
            return None
        try:
            return RunState.from_json(data)
        except (ValueError, TypeError) as exc:
            raise BucketError(f"{self.store.url(layout.STATE)}: unreadable run state: {exc}") from exc

    # -- parts (generic over kind = "rollouts" | "verdicts") ---------------------------------------
    def _step_manifest(self, kind: str, step: int) -> StepManifest | None:
        """The step's commit, or None. An unreadable commit counts as absent: `commit` rebuilds it
        from the part manifests."""
        key = layout.step_commit(kind, step)
        data = self.store.get_bytes(key)
        if data is None:
            return None
        try:
            return StepManifest.from_bytes(data, self.store.url(key))
        except BucketError as exc:
            log.warning("ignoring an unreadable step commit: %s", exc)
            return None

    def _part_manifest(self, kind: str, step: int, part: int) -> PartManifest | None:
        """The part's manifest, or None; CorruptPartError if it is unreadable."""
        key = layout.part_manifest(kind, step, part)
        data = self.store.get_bytes(key)
        if data is None:
            return None
        try:
            return PartManifest.from_bytes(data, self.store.url(key))
        except BucketError as exc:
            raise CorruptPartError(str(exc), kind=kind, step=step, part=part) from exc

    def _part_manifest_or_none(self, kind: str, step: int, part: int) -> PartManifest | None:
        """For the part's writer: an unreadable manifest is not trusted, so the part is rewritten."""
        try:
            return self._part_manifest(kind, step, part)
        except CorruptPartError as exc:
            log.warning("rewriting %s step %d part %d: %s", kind, step, part, exc)
            return None

    def write_part(self, kind: str, step: int, part: int, records: list[Any]) -> bool:
        """Write one part (data, then its manifest). False if it was already committed (kept as is).

        A committed step's parts all have manifests (a commit copies them and `invalidate_part`
        removes the step commit first), so checking the part's own manifest is enough.
        """
        wrong = next((r for r in records if r.step != step), None)
        if wrong is not None:
            raise ValueError(f"{kind} part for step {step} contains a record of step {wrong.step}")
        with self.store.timed(f"write_{kind}_part"):
            if self.store.local:
                existing = self._part_manifest_or_none(kind, step, part)
                data, rows = schema.encode(kind, records)
                digest = sha256(data)
            else:  # the "already committed?" round trip overlaps the encoding and the checksum
                with ThreadPoolExecutor(max_workers=1) as pool:
                    probe = pool.submit(self._part_manifest_or_none, kind, step, part)
                    data, rows = schema.encode(kind, records)
                    digest = sha256(data)
                    existing = probe.result()
            if existing is not None and self.store.size(layout.part_data(kind, step, part)) == existing.size:
                log.info("%s step %d part %d is already committed; kept as is", kind, step, part)
                return False
            self.store.put_bytes(layout.part_data(kind, step, part), data)
            manifest = PartManifest(part=part, rows=rows, size=len(data), sha256=digest)
            self.store.put_bytes(layout.part_manifest(kind, step, part), manifest.to_bytes())
        return True

    def parts_committed(self, kind: str, step: int) -> set[int]:
        """Parts of `step` whose manifest exists (all parts of the commit once the step is committed)."""
        names = self.store.list(layout.step_dir(kind, step))
        if layout.COMMITTED in names:
            committed = self._step_manifest(kind, step)
            if committed is not None:
                return {p.part for p in committed.parts}
        return {p for p in (layout.parse_part_manifest(n) for n in names) if p is not None}

    def commit(self, kind: str, step: int, num_parts: int) -> bool:
        """Write the step's `_COMMITTED` iff parts 0..num_parts-1 are committed. Idempotent.

        One listing of the step answers "already committed?", "which parts?" and "what sizes?";
        then the part manifests are fetched together and the commit is written. A part whose data
        object does not have the size its manifest records is withdrawn (its manifest deleted) so
        that its owner rewrites it; the step then stays uncommitted.
        """
        if num_parts < 1:
            raise ValueError(f"num_parts must be >= 1, got {num_parts}")
        with self.store.timed(f"commit_{kind}"):
            sizes = self.store.sizes(layout.step_dir(kind, step))
            if layout.COMMITTED in sizes:
                existing = self._step_manifest(kind, step)
                if existing is not None:
                    if len(existing.parts) != num_parts:
                        raise BucketError(
                            f"{self.store.url(layout.step_commit(kind, step))}: committed with "
                            f"{len(existing.parts)} parts, asked to commit {num_parts}"
                        )
                    return True
            keys = [layout.part_manifest(kind, step, part) for part in range(num_parts)]
            if any(key.rsplit("/", 1)[-1] not in sizes for key in keys):
                return False
            blobs = self.store.get_many(keys)
            if any(blob is None for blob in blobs):
                return False  # withdrawn meanwhile
            manifests: list[PartManifest] = []
            for part, (key, blob) in enumerate(zip(keys, blobs, strict=True)):
                try:
                    manifests.append(PartManifest.from_bytes(blob or b"", self.store.url(key)))
                except BucketError as exc:
                    log.warning("%s step %d part %d: %s; withdrawing the part", kind, step, part, exc)
                    self.store.delete(key)
                    return False
            for part, manifest in enumerate(manifests):
                size = sizes.get(layout.part_data(kind, step, part).rsplit("/", 1)[-1])
                if size != manifest.size:
                    log.warning(
                        "%s step %d part %d: object is %s bytes, manifest says %d; withdrawing the part",
                        kind, step, part, size, manifest.size,
                    )  # fmt: skip
                    self.store.delete(layout.part_manifest(kind, step, part))
                    return False
            commit = StepManifest(kind=kind, step=step, parts=manifests)
            self.store.put_bytes(layout.step_commit(kind, step), commit.to_bytes())
        return True

    def committed(self, kind: str, step: int) -> bool:
        return self._step_manifest(kind, step) is not None  # one GET of a small object

    def committed_steps(self, kind: str) -> list[int]:
        """Committed steps of `kind`, ascending (one listing plus one probe per step)."""
        steps = sorted(s for s in (layout.parse_step_dir(n) for n in self.store.list(kind)) if s is not None)
        commits = self.store.get_many([layout.step_commit(kind, s) for s in steps])
        return [s for s, blob in zip(steps, commits, strict=True) if blob is not None]

    def read_part_records(self, kind: str, step: int, part: int | None = None) -> list[Any]:
        """Committed records of one part, or of all parts of a committed step (in part order)."""
        with self.store.timed(f"read_{kind}"):
            committed = self._step_manifest(kind, step)
            if part is None:
                if committed is None:
                    raise NotCommittedError(
                        f"{self.store.url(layout.step_dir(kind, step))}: step is not committed"
                    )
                manifests = committed.parts
            else:
                found = committed.part(part) if committed else self._part_manifest(kind, step, part)
                if found is None:
                    raise NotCommittedError(
                        f"{self.store.url(layout.part_data(kind, step, part))}: part is not committed"
                    )
                manifests = [found]
            blobs = self.store.get_many([layout.part_data(kind, step, m.part) for m in manifests])
            records: list[Any] = []
            for manifest, blob in zip(manifests, blobs, strict=True):
                data = self._verify(kind, step, manifest, blob)
                records.extend(self._decode_verified(kind, step, manifest, data))
        return records

    def _corrupt(self, kind: str, step: int, part: int, why: str) -> CorruptPartError:
        where = self.store.url(layout.part_data(kind, step, part))
        return CorruptPartError(f"{where}: {why}", kind=kind, step=step, part=part)

    def _verify(self, kind: str, step: int, manifest: PartManifest, data: bytes | None) -> bytes:
        if data is None:
            raise self._corrupt(
                kind, step, manifest.part, "data object is missing although its manifest exists"
            )
        if len(data) != manifest.size or sha256(data) != manifest.sha256:
            raise self._corrupt(
                kind,
                step,
                manifest.part,
                f"checksum mismatch ({len(data)} bytes, manifest says {manifest.size})",
            )
        return data

    def _decode_verified(self, kind: str, step: int, manifest: PartManifest, data: bytes) -> list[Any]:
        records = schema.decode(kind, data, self.store.url(layout.part_data(kind, step, manifest.part)))
        if len(records) != manifest.rows:
            raise self._corrupt(
                kind, step, manifest.part, f"{len(records)} rows, manifest says {manifest.rows}"
            )
        return records

    def invalidate_part(self, kind: str, step: int, part: int) -> None:
        """Withdraw a corrupt part: delete the step's `_COMMITTED`, then the part's manifest.

        The part's owner then sees it missing from `*_parts_committed(step)` and rewrites it.
        """
        log.warning("withdrawing %s step %d part %d", kind, step, part)
        self.store.delete(layout.step_commit(kind, step))
        self.store.delete(layout.part_manifest(kind, step, part))

    # -- rollouts --------------------------------------------------------------------------------
    def write_rollout_part(self, step: int, part: int, samples: list[RolloutSample]) -> bool:
        """Write rollouts/step-NNNNNN/part-NN.parquet then its manifest; False if already committed."""
        return self.write_part("rollouts", step, part, samples)

    def rollout_parts_committed(self, step: int) -> set[int]:
        return self.parts_committed("rollouts", step)

    def commit_rollouts(self, step: int, num_parts: int) -> bool:
        """Commit the step iff parts 0..num_parts-1 are committed; True once committed."""
        return self.commit("rollouts", step, num_parts)

    def rollouts_committed(self, step: int) -> bool:
        return self.committed("rollouts", step)

    def read_rollouts(self, step: int, part: int | None = None) -> list[RolloutSample]:
        """Samples of a committed step (part=None) or of one committed part.

        Raises NotCommittedError if not committed, CorruptPartError if the data does not match.
        """
        return self.read_part_records("rollouts", step, part)

    # -- verdicts --------------------------------------------------------------------------------
    def write_verdict_part(self, step: int, part: int, verdicts: list[Verdict]) -> bool:
        """Write verdicts/step-NNNNNN/part-NN.parquet then its manifest; False if already committed."""
        return self.write_part("verdicts", step, part, verdicts)

    def verdict_parts_committed(self, step: int) -> set[int]:
        return self.parts_committed("verdicts", step)

    def commit_verdicts(self, step: int, num_parts: int) -> bool:
        return self.commit("verdicts", step, num_parts)

    def verdicts_committed(self, step: int) -> bool:
        return self.committed("verdicts", step)

    def read_verdicts(self, step: int, part: int | None = None) -> list[Verdict]:
        """Verdicts of a committed step or part; same errors as read_rollouts."""
        return self.read_part_records("verdicts", step, part)

    # -- policy versions -------------------------------------------------------------------------
    def publish_policy(self, version: int, local_dir: Path) -> None:
        """Upload an HF-format folder to policy/vNNNNNN/, `_COMMITTED` (files, sizes, sha256) last."""
        policy.publish(self.store, version, Path(local_dir))

    def policy_committed(self, version: int) -> bool:
        return policy.read_manifest(self.store, version) is not None

    def policy_versions(self) -> list[int]:
        """Committed policy versions, ascending."""
        found = (layout.parse_policy_dir(n) for n in self.store.list("policy"))
        return [v for v in sorted(v for v in found if v is not None) if self.policy_committed(v)]

    def latest_policy_version(self) -> int | None:
        """Highest committed policy version, or None."""
        found = (layout.parse_policy_dir(n) for n in self.store.list("policy"))
        for version in sorted((v for v in found if v is not None), reverse=True):
            if self.policy_committed(version):
                return version
        return None

    def download_policy(self, version: int, local_dir: Path) -> Path:
        """Download a committed version into local_dir (verified); skipped if already identical."""
        return policy.download(self.store, version, Path(local_dir))

    def delete_policy(self, version: int) -> None:
        """Withdraw `_COMMITTED` first (readers stop trusting it), then delete the files."""
        self.store.delete(layout.policy_commit(version))
        self.store.delete_prefix(layout.policy_dir(version))
