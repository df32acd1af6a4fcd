"""The commit protocol of rollout and verdict parts (`StepParts`; DESIGN.md, "The bucket is the log").

For rollouts and verdicts (bucket layout v2; one Parquet part per worker replica
per step; keys in `layout.py`, manifests in `manifest.py`):

1. Write. `write(step, part, records)` encodes the part, computes its CRC32C and writes ONE
   object whose name is the part's manifest, `part-NN.r<rows>.s<size>.c<crc32c>.parquet`
   (temp file + rename locally, one PUT on object stores). No probe, no separate manifest: a part
   has a *version* as soon as a complete object with such a name exists.
2. Commit. `commit(step, num_parts)` lists the step directory once. If `_COMMITTED` is there,
   it is read and kept as it is. Otherwise, once every part 0..num_parts-1 has a version, it
   chooses for each part the version with the lowest object name and CREATES `_COMMITTED` (part,
   rows, size, CRC32C and key of each chosen object) if it is still absent: temp file +
   `os.link` locally, a PUT with `If-None-Match: *` on S3. A committer that loses (another
   commit landed after its listing) reads the winner's commit and adopts it: BucketError if its
   part count is not `num_parts`, else `commit` returns True. Names that do not parse and
   objects whose listed size is not the size in their name (0 included) are ignored, with a
   warning.
3. Read. `read(step[, part])` GETs `_COMMITTED`, then the chosen objects (concurrently on an
   object store, one at a time from a local disk so each part's buffer is freed first), and
   checks size, CRC32C and row count (`CorruptPartError` on a mismatch). Nothing of a step is
   read before it is committed (`NotCommittedError`). `invalidate` deletes `_COMMITTED`, then
   every version of the part; its owner, which polls `parts_committed(step)`, writes it again
   and the step is committed again.

Per step of R parts that is R PUTs, one LIST + one (conditional) PUT, and one GET + R concurrent
GETs; a committer that loses the commit race sends one more GET (benchmarks/results/bucket_io.md).

Why it is safe:
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
  and repaired by `invalidate` + regeneration; an object whose listed size
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
- `invalidate` deletes `_COMMITTED` on purpose: the next commit may choose other versions,
  which is the point (the chosen one was corrupt).
"""

from __future__ import annotations

import logging
from typing import Any

from oreal.bucket import layout, schema
from oreal.bucket.errors import BucketError, CorruptPartError, LayoutVersionError, NotCommittedError
from oreal.bucket.layout import PartVersion
from oreal.bucket.manifest import PartEntry, StepManifest, crc32c
from oreal.bucket.store import ObjectStore

log = logging.getLogger(__name__)


class StepParts:
    """The parts of one kind ("rollouts" or "verdicts"), step by step, under the commit protocol."""

    def __init__(self, store: ObjectStore, kind: str) -> None:
        if kind not in layout.PART_KINDS:
            raise ValueError(f"unknown part kind {kind!r}; expected one of {layout.PART_KINDS}")
        self.store = store
        self.kind = kind

    def _step_manifest(self, step: int) -> StepManifest | None:
        """The step's commit, or None. An unreadable commit counts as absent (`commit` rewrites it);
        one of another manifest version raises LayoutVersionError."""
        data = self.store.get_bytes(layout.step_commit(self.kind, step))
        return None if data is None else self._parse_commit(step, data)

    def _parse_commit(self, step: int, data: bytes) -> StepManifest | None:
        """The commit in `data`, or None (with a warning) if it is unreadable or commits another step."""
        key = layout.step_commit(self.kind, step)
        try:
            manifest = StepManifest.from_bytes(data, self.store.url(key))
        except LayoutVersionError:
            raise
        except BucketError as exc:
            log.warning("ignoring an unreadable step commit: %s", exc)
            return None
        if (manifest.kind, manifest.step) != (self.kind, step):
            log.warning(
                "ignoring %s: it commits %s step %d", self.store.url(key), manifest.kind, manifest.step
            )
            return None
        return manifest

    def _versions(self, step: int, sizes: dict[str, int]) -> dict[int, list[PartVersion]]:
        """Complete versions of each part in one listing ({name: size}), lowest name first.

        Ignored, with a warning: names that are not part versions, empty objects, and objects
        whose listed size is not the size their name records. Hidden names (a local writer's temporary
        file, `.part-...tmp-...`) are skipped silently.
        """
        found: dict[int, list[PartVersion]] = {}
        for name, size in sorted(sizes.items()):
            if name == layout.COMMITTED or name.startswith("."):
                continue
            version = layout.parse_part_version(name)
            if version is None:
                log.warning(
                    "ignoring %s: not a part object",
                    self.store.url(f"{layout.step_dir(self.kind, step)}/{name}"),
                )
            elif size == 0 or size != version.size:
                log.warning(
                    "ignoring %s: %d bytes, its name says %d (incomplete or damaged)",
                    self.store.url(layout.part_key(self.kind, step, version)), size, version.size,
                )  # fmt: skip
            else:
                found.setdefault(version.part, []).append(version)
        return found

    def write(self, step: int, part: int, records: list[Any]) -> bool:
        """Write one part: encode, CRC32C, one atomic write of the self-describing object.

        Always writes and returns True. Rewriting is harmless: identical content lands on the same key with the same
        bytes, different content on another key, and a committed step reads only the versions
        its `_COMMITTED` names. Callers skip the write when `parts_committed(step)` has the part.
        """
        wrong = next((r for r in records if r.step != step), None)
        if wrong is not None:
            raise ValueError(f"{self.kind} part for step {step} contains a record of step {wrong.step}")
        with self.store.timed(f"write_{self.kind}_part"):
            data, rows = schema.encode(self.kind, records)
            version = PartVersion(part=part, rows=rows, size=len(data), crc32c=crc32c(data))
            self.store.put_bytes(layout.part_key(self.kind, step, version), data)
        return True

    def parts_committed(self, step: int) -> set[int]:
        """Parts of `step` that have a complete version (those of the commit once committed)."""
        sizes = self.store.sizes(layout.step_dir(self.kind, step))
        if layout.COMMITTED in sizes:
            committed = self._step_manifest(step)
            if committed is not None:
                return {p.part for p in committed.parts}
        return set(self._versions(step, sizes))

    def commit(self, step: int, num_parts: int) -> bool:
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
        key = layout.step_commit(self.kind, step)
        with self.store.timed(f"commit_{self.kind}"):
            sizes = self.store.sizes(layout.step_dir(self.kind, step))
            there = self.store.get_bytes(key) if layout.COMMITTED in sizes else None
            if there is not None:
                existing = self._parse_commit(step, there)
                if existing is not None:
                    self._check_num_parts(existing, num_parts)
                    return True
            # A commit that is there but unreadable is trusted by no consumer (they read it as
            # absent): it is replaced. One deleted since the listing (invalidate_part) is absent.
            unreadable = there is not None
            versions = self._versions(step, sizes)
            if any(part not in versions for part in range(num_parts)):
                return False
            chosen = [PartEntry.of(self.kind, step, versions[part][0]) for part in range(num_parts)]
            data = StepManifest(kind=self.kind, step=step, parts=chosen).to_bytes()
            if unreadable:
                self.store.put_bytes(key, data)
                return True
            winner = self.store.create_bytes(key, data)
            if winner is None or winner == data:
                return True
            adopted = self._parse_commit(step, winner)
            if adopted is None:
                self.store.put_bytes(key, data)
                return True
            log.info("%s: another committer's commit landed first; adopting it", self.store.url(key))
            self._check_num_parts(adopted, num_parts)
        return True

    def _check_num_parts(self, commit: StepManifest, num_parts: int) -> None:
        if len(commit.parts) != num_parts:
            raise BucketError(
                f"{self.store.url(layout.step_commit(self.kind, commit.step))}: committed with "
                f"{len(commit.parts)} parts, asked to commit {num_parts}"
            )

    def committed(self, step: int) -> bool:
        return self._step_manifest(step) is not None  # one GET of a small object

    def committed_steps(self) -> list[int]:
        """Committed steps of this kind, ascending (one listing plus one probe per step)."""
        steps = sorted(
            s for s in (layout.parse_step_dir(n) for n in self.store.list(self.kind)) if s is not None
        )
        commits = self.store.get_many([layout.step_commit(self.kind, s) for s in steps])
        return [s for s, blob in zip(steps, commits, strict=True) if blob is not None]

    def read(self, step: int, part: int | None = None) -> list[Any]:
        """Records of one part, or of all parts (in part order), of a committed step.

        Reads only through `_COMMITTED`: NotCommittedError before the step is committed, even if
        the part has been written (which version a commit will choose is not known before).
        """
        with self.store.timed(f"read_{self.kind}"):
            committed = self._step_manifest(step)
            if committed is None:
                raise NotCommittedError(
                    f"{self.store.url(layout.step_dir(self.kind, step))}: step is not committed"
                )
            if part is None:
                entries = committed.parts
            else:
                found = committed.part(part)
                if found is None:
                    raise NotCommittedError(
                        f"{self.store.url(layout.step_commit(self.kind, step))}: has no part {part} "
                        f"(committed with {len(committed.parts)} parts)"
                    )
                entries = [found]
            records: list[Any] = []
            if self.store.concurrent_gets and len(entries) > 1:
                blobs = self.store.get_many([e.key for e in entries])
                for entry, blob in zip(entries, blobs, strict=True):
                    records.extend(self._verified_records(step, entry, blob))
            else:  # one part at a time: each part's bytes are freed before the next is read
                for entry in entries:
                    records.extend(self._verified_records(step, entry, self.store.get_bytes(entry.key)))
        return records

    def _corrupt(self, step: int, entry: PartEntry, why: str) -> CorruptPartError:
        return CorruptPartError(
            f"{self.store.url(entry.key)}: {why}", kind=self.kind, step=step, part=entry.part
        )

    def _verified_records(self, step: int, entry: PartEntry, data: bytes | None) -> list[Any]:
        if data is None:
            raise self._corrupt(step, entry, "data object is missing although the step commit lists it")
        if len(data) != entry.size:
            raise self._corrupt(step, entry, f"{len(data)} bytes, the step commit says {entry.size}")
        if crc32c(data) != entry.crc32c:
            raise self._corrupt(step, entry, f"CRC32C is {crc32c(data)}, the step commit says {entry.crc32c}")
        records = schema.decode(self.kind, data, self.store.url(entry.key))
        if len(records) != entry.rows:
            raise self._corrupt(step, entry, f"{len(records)} rows, the step commit says {entry.rows}")
        return records

    def invalidate(self, step: int, part: int) -> None:
        """Withdraw a corrupt part: delete the step's `_COMMITTED`, then every version of the part.

        The part's owner then sees it missing from `parts_committed(step)` and writes it again;
        the step is committed again once all its parts are back.
        """
        log.warning("withdrawing %s step %d part %d", self.kind, step, part)
        self.store.delete(layout.step_commit(self.kind, step))
        for name in self.store.list(layout.step_dir(self.kind, step)):
            version = layout.parse_part_version(name)
            if version is not None and version.part == part:
                self.store.delete(layout.part_key(self.kind, step, version))
