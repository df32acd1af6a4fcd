"""`Bucket`: the run's log, shared by every worker (see DESIGN.md, "The bucket is the log").

Commit protocol for rollouts and verdicts (bucket layout v2; one Parquet part per worker replica
per step; keys in `layout.py`, manifests in `manifest.py`):

1. Write. `write_*_part(step, part, records)` encodes the part, computes its CRC32C and writes ONE
   object whose name is the part's manifest, `part-NN.r<rows>.s<size>.c<crc32c>.parquet`
   (temp file + rename locally, one PUT on object stores). No probe, no separate manifest: a part
   has a *version* as soon as a complete object with such a name exists.
2. Commit. `commit_*(step, num_parts)` lists the step directory once. If `_COMMITTED` is there,
   it is read and kept as it is. Otherwise, once every part 0..num_parts-1 has a version, it
   chooses for each part the version with the lowest object name and CREATES `_COMMITTED` (part,
   rows, size, CRC32C and key of each chosen object) if it is still absent: temp file +
   `os.link` locally, a PUT with `If-None-Match: *` on S3. A committer that loses (another
   commit landed after its listing) reads the winner's commit and adopts it: BucketError if its
   part count is not `num_parts`, else `commit` returns True. Names that do not parse and
   objects whose listed size is not the size in their name (0 included) are ignored, with a
   warning.
3. Read. `read_*(step[, part])` GETs `_COMMITTED`, then the chosen objects (concurrently on an
   object store, one at a time from a local disk so each part's buffer is freed first), and
   checks size, CRC32C and row count (`CorruptPartError` on a mismatch). Nothing of a step is
   read before it is committed (`NotCommittedError`). `invalidate_part` deletes `_COMMITTED`, then
   every version of the part; its owner, which polls `*_parts_committed(step)`, writes it again
   and the step is committed again.

Per step of R parts that is R PUTs, one LIST + one (conditional) PUT, and one GET + R concurrent
GETs; a committer that loses the commit race sends one more GET. The v1 protocol (probe GET +
data PUT + part-manifest PUT per part, LIST + manifest GETs + PUT to commit, sha256) sent 2R
more sequential small requests (benchmarks/results/bucket_io.md).

Why this is as safe as v1:
- Atomic visibility. A version appears whole or not at all (rename; a single PUT); temporary
  names never parse as a part; `_COMMITTED` is one atomic object as well.
- Data a consumer may have read never changes. Consumers (verifier, trainer) read only through
  `_COMMITTED`, which names content-addressed objects: a rewrite of identical content writes the
  same bytes to the same key, different content (a restarted worker whose sampling is not
  bit-reproducible, a zombie duplicate) goes to another key. Once `_COMMITTED` exists a commit
  returns it unchanged, so versions written later are ignored (and deleted with the step).
- The choice is made once, at commit time, by a deterministic rule, and the first commit to
  land is the only one: two committers (two verifier replicas) that list the step while a
  *second* version of a part is landing (a zombie duplicate writer) may choose differently, but
  the second one's create fails and it adopts the first's. So every consumer of a step reads
  the same versions: verdicts scored on one version are never joined with samples of another.
- Corruption (a truncated or bit-flipped object) is detected on read by size, CRC32C and rows,
  and repaired by `invalidate_part` + regeneration, as in v1; an object whose listed size
  disagrees with its name is not even committed.

Where the commit is exclusive (create-if-absent; `ObjectStore.create_bytes`):
- file:// on a POSIX filesystem: `os.link(temp, _COMMITTED)` fails with EEXIST if the name is
  taken, atomically (on NFS too, at the server; a retransmitted LINK that answers EEXIST reads
  back this committer's own commit, which is fine). A filesystem without hard links (EPERM/ENOTSUP/EXDEV/..., e.g.
  some FUSE mounts of object stores) falls back, with one warning, to exists-then-rename: NOT
  exclusive; there two committers can still race as described below.
- s3:// : `If-None-Match: *`; 412 PreconditionFailed means taken, 409 ConditionalRequestConflict
  (AWS: another conditional write of the key in flight) means taken or, if nothing is there
  afterwards, try again. Tested against SeaweedFS 4.48 (`weed mini`, the test server): it
  refuses the second create with 412, and 4 concurrent creators of one key had exactly one
  winner in 100 of 100 trials (tests/bucket/test_commit_race.py runs 6 at once, 5 times). AWS S3 (since 2024-08) and MinIO document the
  same semantics (not tested here). An S3-compatible store that ignores the header accepts
  the second PUT and overwrites: there the old window remains (two committers that listed
  while a second version landed can write different commits, the later one wins, and a
  consumer that read the first sees the part change); nothing detects it.
- memory:// (tests, one process): exclusive through one process-wide lock.
- gs:// (gcsfs): `pipe_file(mode="create")` uploads with `ifGenerationMatch=0`, which GCS
  answers with 412 if the object exists; gcsfs raises FileExistsError for a 412, a lost create.
  tests/integration/gcs (opt-in, gcsfs 2026.10.1) checks that the commit's upload carries the
  precondition and that 412 maps to a lost create, but its emulator (gcp-storage-emulator
  2026.7.19) ignores preconditions: there the second create is accepted and overwrites (the
  test asserts that). Refusal by real GCS is documented by Google, not tested here.
- Other fsspec filesystems: `pipe_file(mode="create")`, as exclusive as their implementation
  (fsspec's default is exists-then-write, not exclusive).
- On every store, a `_COMMITTED` that exists but cannot be read (garbage, another step's, see
  `_parse_commit`) counts as absent and is REPLACED by a plain PUT, since no consumer trusts it.
  Two committers replacing it at once can write different commits; that needs a damaged commit
  object as well as the duplicate writer.
- `invalidate_part` deletes `_COMMITTED` on purpose: the next commit may choose other versions,
  which is the point (the chosen one was corrupt).

A bucket written in the v1 layout (part-NN.parquet + part-NN.manifest.json) raises
`LayoutVersionError` when a step of it is listed or read.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import fsspec

from oreal.bucket import layout, policy, schema
from oreal.bucket.errors import BucketError, CorruptPartError, LayoutVersionError, NotCommittedError
from oreal.bucket.filesystems import open_filesystem
from oreal.bucket.layout import PartVersion
from oreal.bucket.manifest import PartEntry, StepManifest, crc32c, file_crc32
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
        """The step's commit, or None. An unreadable commit counts as absent (`commit` rewrites it);
        one written in another layout version raises LayoutVersionError."""
        data = self.store.get_bytes(layout.step_commit(kind, step))
        return None if data is None else self._parse_commit(kind, step, data)

    def _parse_commit(self, kind: str, step: int, data: bytes) -> StepManifest | None:
        """The commit in `data`, or None (with a warning) if it is unreadable or commits another step."""
        key = layout.step_commit(kind, step)
        try:
            manifest = StepManifest.from_bytes(data, self.store.url(key))
        except LayoutVersionError:
            raise
        except BucketError as exc:
            log.warning("ignoring an unreadable step commit: %s", exc)
            return None
        if (manifest.kind, manifest.step) != (kind, step):
            log.warning(
                "ignoring %s: it commits %s step %d", self.store.url(key), manifest.kind, manifest.step
            )
            return None
        return manifest

    def _versions(self, kind: str, step: int, sizes: dict[str, int]) -> dict[int, list[PartVersion]]:
        """Complete versions of each part in one listing ({name: size}), lowest name first.

        Ignored, with a warning: names that are not part versions, empty objects, and objects
        whose listed size is not the size their name records. Hidden names (a local writer's temporary
        file, `.part-...tmp-...`) are skipped silently. A v1 part name raises LayoutVersionError.
        """
        found: dict[int, list[PartVersion]] = {}
        for name, size in sorted(sizes.items()):
            if name == layout.COMMITTED or name.startswith("."):
                continue
            if layout.is_v1_part_name(name):
                raise LayoutVersionError(
                    f"{self.store.url(layout.step_dir(kind, step))}: holds {name}, an object of the v1 "
                    "layout (part-NN.parquet + part-NN.manifest.json) written by an older oreal; "
                    "this oreal writes layout v2. Finish the run with that oreal, or start it "
                    "again under a new storage URI"
                )
            version = layout.parse_part_version(name)
            if version is None:
                log.warning(
                    "ignoring %s: not a part object", self.store.url(f"{layout.step_dir(kind, step)}/{name}")
                )
            elif size == 0 or size != version.size:
                log.warning(
                    "ignoring %s: %d bytes, its name says %d (incomplete or damaged)",
                    self.store.url(layout.part_key(kind, step, version)), size, version.size,
                )  # fmt: skip
            else:
                found.setdefault(version.part, []).append(version)
        return found

    def write_part(self, kind: str, step: int, part: int, records: list[Any]) -> bool:
        """Write one part: encode, CRC32C, one atomic write of the self-describing object.

        Always writes and returns True (a bool for callers of the v1 API, where False meant
        "kept"). Rewriting is harmless: identical content lands on the same key with the same
        bytes, different content on another key, and a committed step reads only the versions
        its `_COMMITTED` names. Callers skip the write when `*_parts_committed(step)` has the part.
        """
        wrong = next((r for r in records if r.step != step), None)
        if wrong is not None:
            raise ValueError(f"{kind} part for step {step} contains a record of step {wrong.step}")
        with self.store.timed(f"write_{kind}_part"):
            data, rows = schema.encode(kind, records)
            version = PartVersion(part=part, rows=rows, size=len(data), crc32c=crc32c(data))
            self.store.put_bytes(layout.part_key(kind, step, version), data)
        return True

    def parts_committed(self, kind: str, step: int) -> set[int]:
        """Parts of `step` that have a complete version (those of the commit once committed)."""
        sizes = self.store.sizes(layout.step_dir(kind, step))
        if layout.COMMITTED in sizes:
            committed = self._step_manifest(kind, step)
            if committed is not None:
                return {p.part for p in committed.parts}
        return set(self._versions(kind, step, sizes))

    def commit(self, kind: str, step: int, num_parts: int) -> bool:
        """Write the step's `_COMMITTED` iff parts 0..num_parts-1 have a version. Idempotent.

        One listing of the step answers "already committed?" (then `_COMMITTED` is read and
        returned as it is), "which parts?" and "which versions, of what size?". Each part's
        version is the one with the lowest object name; then `_COMMITTED` is created if absent.
        A committer that loses that race (another commit landed since the listing, possibly
        choosing other versions) adopts the winner: all committers end with the same commit.
        Raises BucketError if the commit there has another number of parts than `num_parts`.
        """
        if num_parts < 1:
            raise ValueError(f"num_parts must be >= 1, got {num_parts}")
        key = layout.step_commit(kind, step)
        with self.store.timed(f"commit_{kind}"):
            sizes = self.store.sizes(layout.step_dir(kind, step))
            there = self.store.get_bytes(key) if layout.COMMITTED in sizes else None
            if there is not None:
                existing = self._parse_commit(kind, step, there)
                if existing is not None:
                    self._check_num_parts(kind, existing, num_parts)
                    return True
            # A commit that is there but unreadable is trusted by no consumer (they read it as
            # absent): it is replaced. One deleted since the listing (invalidate_part) is absent.
            unreadable = there is not None
            versions = self._versions(kind, step, sizes)
            if any(part not in versions for part in range(num_parts)):
                return False
            chosen = [PartEntry.of(kind, step, versions[part][0]) for part in range(num_parts)]
            data = StepManifest(kind=kind, step=step, parts=chosen).to_bytes()
            if unreadable:
                self.store.put_bytes(key, data)
                return True
            winner = self.store.create_bytes(key, data)
            if winner is None or winner == data:
                return True
            adopted = self._parse_commit(kind, step, winner)
            if adopted is None:
                self.store.put_bytes(key, data)
                return True
            log.info("%s: another committer's commit landed first; adopting it", self.store.url(key))
            self._check_num_parts(kind, adopted, num_parts)
        return True

    def _check_num_parts(self, kind: str, commit: StepManifest, num_parts: int) -> None:
        if len(commit.parts) != num_parts:
            raise BucketError(
                f"{self.store.url(layout.step_commit(kind, commit.step))}: committed with "
                f"{len(commit.parts)} parts, asked to commit {num_parts}"
            )

    def committed(self, kind: str, step: int) -> bool:
        return self._step_manifest(kind, step) is not None  # one GET of a small object

    def committed_steps(self, kind: str) -> list[int]:
        """Committed steps of `kind`, ascending (one listing plus one probe per step)."""
        steps = sorted(s for s in (layout.parse_step_dir(n) for n in self.store.list(kind)) if s is not None)
        commits = self.store.get_many([layout.step_commit(kind, s) for s in steps])
        return [s for s, blob in zip(steps, commits, strict=True) if blob is not None]

    def read_part_records(self, kind: str, step: int, part: int | None = None) -> list[Any]:
        """Records of one part, or of all parts (in part order), of a committed step.

        Reads only through `_COMMITTED`: NotCommittedError before the step is committed, even if
        the part has been written (which version a commit will choose is not known before).
        """
        with self.store.timed(f"read_{kind}"):
            committed = self._step_manifest(kind, step)
            if committed is None:
                raise NotCommittedError(
                    f"{self.store.url(layout.step_dir(kind, step))}: step is not committed"
                )
            if part is None:
                entries = committed.parts
            else:
                found = committed.part(part)
                if found is None:
                    raise NotCommittedError(
                        f"{self.store.url(layout.step_commit(kind, step))}: has no part {part} "
                        f"(committed with {len(committed.parts)} parts)"
                    )
                entries = [found]
            records: list[Any] = []
            if self.store.concurrent_gets and len(entries) > 1:
                blobs = self.store.get_many([e.key for e in entries])
                for entry, blob in zip(entries, blobs, strict=True):
                    records.extend(self._verified_records(kind, step, entry, blob))
            else:  # one part at a time: each part's bytes are freed before the next is read
                for entry in entries:
                    records.extend(self._verified_records(kind, step, entry, self.store.get_bytes(entry.key)))
        return records

    def _corrupt(self, kind: str, step: int, entry: PartEntry, why: str) -> CorruptPartError:
        return CorruptPartError(f"{self.store.url(entry.key)}: {why}", kind=kind, step=step, part=entry.part)

    def _verified_records(self, kind: str, step: int, entry: PartEntry, data: bytes | None) -> list[Any]:
        if data is None:
            raise self._corrupt(kind, step, entry, "data object is missing although the step commit lists it")
        if len(data) != entry.size:
            raise self._corrupt(kind, step, entry, f"{len(data)} bytes, the step commit says {entry.size}")
        if crc32c(data) != entry.crc32c:
            raise self._corrupt(
                kind, step, entry, f"CRC32C is {crc32c(data)}, the step commit says {entry.crc32c}"
            )
        records = schema.decode(kind, data, self.store.url(entry.key))
        if len(records) != entry.rows:
            raise self._corrupt(kind, step, entry, f"{len(records)} rows, the step commit says {entry.rows}")
        return records

    def invalidate_part(self, kind: str, step: int, part: int) -> None:
        """Withdraw a corrupt part: delete the step's `_COMMITTED`, then every version of the part.

        The part's owner then sees it missing from `*_parts_committed(step)` and writes it again;
        the step is committed again once all its parts are back.
        """
        log.warning("withdrawing %s step %d part %d", kind, step, part)
        self.store.delete(layout.step_commit(kind, step))
        for name in self.store.list(layout.step_dir(kind, step)):
            version = layout.parse_part_version(name)
            if version is not None and version.part == part:
                self.store.delete(layout.part_key(kind, step, version))

    # -- rollouts --------------------------------------------------------------------------------
    def write_rollout_part(self, step: int, part: int, samples: list[RolloutSample]) -> bool:
        """Write rollouts/step-NNNNNN/part-NN.r<rows>.s<size>.c<crc32c>.parquet; returns True."""
        return self.write_part("rollouts", step, part, samples)

    def rollout_parts_committed(self, step: int) -> set[int]:
        return self.parts_committed("rollouts", step)

    def commit_rollouts(self, step: int, num_parts: int) -> bool:
        """Commit the step iff parts 0..num_parts-1 have a version; True once committed."""
        return self.commit("rollouts", step, num_parts)

    def rollouts_committed(self, step: int) -> bool:
        return self.committed("rollouts", step)

    def read_rollouts(self, step: int, part: int | None = None) -> list[RolloutSample]:
        """Samples of a committed step (part=None) or of one part of a committed step.

        Raises NotCommittedError if not committed, CorruptPartError if the data does not match.
        """
        return self.read_part_records("rollouts", step, part)

    # -- verdicts --------------------------------------------------------------------------------
    def write_verdict_part(self, step: int, part: int, verdicts: list[Verdict]) -> bool:
        """Write verdicts/step-NNNNNN/part-NN.r<rows>.s<size>.c<crc32c>.parquet; returns True."""
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
    def publish_policy(self, version: int, local_dir: Path, link: bool = False) -> None:
        """Upload an HF-format folder to policy/vNNNNNN/, `_COMMITTED` (files, sizes, CRC-32) last.

        `link`: the folder's files are never rewritten in place, so a local bucket may hard-link them.
        """
        policy.publish(self.store, version, Path(local_dir), link=link)

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

    def download_policy(self, version: int, local_dir: Path, link: bool = False) -> Path:
        """Download a committed version into local_dir (verified); skipped if already identical.

        `link`: the caller only reads the files, so a local bucket may hard-link them.
        """
        return policy.download(self.store, version, Path(local_dir), link=link)

    def delete_policy(self, version: int) -> None:
        """Withdraw `_COMMITTED` first (readers stop trusting it), then delete the files."""
        self.store.delete(layout.policy_commit(version))
        self.store.delete_prefix(layout.policy_dir(version))
