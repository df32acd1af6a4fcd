"""`Bucket`: the run's log, shared by every worker (see DESIGN.md, "The bucket is the log").

Every key is made in `layout.py` and every object written through this class (or the helpers it
holds: `StepParts` for the commit protocol of rollouts and verdicts in `parts.py`, `Checkpoints`
in `checkpoints.py`, policy folders in `policy.py`): workers and the runner call typed methods,
never a key of their own. Writers write data first and a manifest (`_COMMITTED`) last; readers
trust only committed prefixes; rewriting a key is harmless, so retries are safe.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fsspec

from oreal.bucket import layout, policy
from oreal.bucket.checkpoints import Checkpoints
from oreal.bucket.errors import BucketError
from oreal.bucket.filesystems import open_filesystem
from oreal.bucket.parts import StepParts
from oreal.bucket.retry import RetryPolicy
from oreal.bucket.state import RunState
from oreal.bucket.store import ObjectStore
from oreal.spec.storage import StorageLocation
from oreal.trajectory import RolloutSample, Verdict


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
        self.rollouts = StepParts(self.store, "rollouts")
        self.verdicts = StepParts(self.store, "verdicts")
        self.checkpoints = Checkpoints(self.store)
        self._parts = {"rollouts": self.rollouts, "verdicts": self.verdicts}

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

    @classmethod
    def at(cls, location: StorageLocation) -> Bucket:
        """Open the bucket of a run's storage location (see oreal.spec.storage)."""
        return cls.open(location.uri, endpoint=location.endpoint, region=location.region)

    @property
    def uri(self) -> str:
        return self.store.uri

    def __repr__(self) -> str:
        return f"Bucket({self.uri!r})"

    # -- spec, stats, state ------------------------------------------------------------------------
    def write_spec(self, yaml_text: str) -> None:
        self.store.put_bytes(layout.SPEC, yaml_text.encode())

    @property
    def spec_url(self) -> str:
        """Where spec.yaml is, for messages."""
        return self.store.url(layout.SPEC)

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
        steps = (layout.parse_stats(n) for n in self.store.list(layout.STATS))
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

    def stats_written(self, step: int) -> bool:
        return self.store.exists(layout.stats(step))

    # -- timings and evaluation results -------------------------------------------------------------
    def write_timings(self, step: int, role: str, index: int, record: dict[str, Any]) -> None:
        """timings/step-NNNNNN/<role>-NN.json: one rollout or verifier replica's phase times."""
        self.store.put_bytes(layout.timing(step, role, index), json.dumps(record).encode())

    def read_timings(self, step: int) -> dict[tuple[str, int], dict[str, Any]]:
        """Every replica's timings of `step`, keyed by (role, index)."""
        out = {}
        for name in self.store.list(layout.timings_dir(step)):
            who = layout.parse_timing(name)
            data = self.store.get_bytes(f"{layout.timings_dir(step)}/{name}") if who else None
            if who and data is not None:
                out[who] = json.loads(data)
        return out

    def write_eval(self, step: int, dataset: str, summary: dict[str, Any]) -> None:
        """eval/step-NNNNNN/<dataset>.json: evaluation of the policy trained by `step`."""
        self.store.put_bytes(layout.eval_result(step, dataset), json.dumps(summary, indent=1).encode())

    def read_eval(self, step: int, dataset: str) -> dict[str, Any] | None:
        data = self.store.get_bytes(layout.eval_result(step, dataset))
        return None if data is None else json.loads(data)

    # -- rollouts and verdicts (the commit protocol: parts.py) -------------------------------------
    def committed_steps(self, kind: str) -> list[int]:
        """Committed steps of `kind` ("rollouts" | "verdicts"), ascending."""
        return self._parts[kind].committed_steps()

    def invalidate_part(self, kind: str, step: int, part: int) -> None:
        """Withdraw a corrupt part of `kind` ("rollouts" | "verdicts"); its owner writes it again."""
        self._parts[kind].invalidate(step, part)

    def write_rollout_part(self, step: int, part: int, samples: list[RolloutSample]) -> bool:
        """Write rollouts/step-NNNNNN/part-NN.r<rows>.s<size>.c<crc32c>.parquet; returns True."""
        return self.rollouts.write(step, part, samples)

    def rollout_parts_committed(self, step: int) -> set[int]:
        return self.rollouts.parts_committed(step)

    def commit_rollouts(self, step: int, num_parts: int) -> bool:
        """Commit the step iff parts 0..num_parts-1 have a version; True once committed."""
        return self.rollouts.commit(step, num_parts)

    def rollouts_committed(self, step: int) -> bool:
        return self.rollouts.committed(step)

    def read_rollouts(self, step: int, part: int | None = None) -> list[RolloutSample]:
        """Samples of a committed step (part=None) or of one part of a committed step.

        Raises NotCommittedError if not committed, CorruptPartError if the data does not match.
        """
        return self.rollouts.read(step, part)

    def write_verdict_part(self, step: int, part: int, verdicts: list[Verdict]) -> bool:
        """Write verdicts/step-NNNNNN/part-NN.r<rows>.s<size>.c<crc32c>.parquet; returns True."""
        return self.verdicts.write(step, part, verdicts)

    def verdict_parts_committed(self, step: int) -> set[int]:
        return self.verdicts.parts_committed(step)

    def commit_verdicts(self, step: int, num_parts: int) -> bool:
        return self.verdicts.commit(step, num_parts)

    def verdicts_committed(self, step: int) -> bool:
        return self.verdicts.committed(step)

    def read_verdicts(self, step: int, part: int | None = None) -> list[Verdict]:
        """Verdicts of a committed step or part; same errors as read_rollouts."""
        return self.verdicts.read(step, part)

    # -- policy versions -------------------------------------------------------------------------
    def publish_policy(self, version: int, local_dir: Path, link: bool = False) -> None:
        """Upload an HF-format folder to policy/vNNNNNN/, `_COMMITTED` (files, sizes, CRC32C) last.

        `link`: the folder's files are never rewritten in place, so a local bucket may hard-link them.
        """
        policy.publish(self.store, version, Path(local_dir), link=link)

    def policy_committed(self, version: int) -> bool:
        return policy.read_manifest(self.store, version) is not None

    def policy_versions(self) -> list[int]:
        """Committed policy versions, ascending."""
        found = (layout.parse_policy_dir(n) for n in self.store.list(layout.POLICY))
        return [v for v in sorted(v for v in found if v is not None) if self.policy_committed(v)]

    def latest_policy_version(self) -> int | None:
        """Highest committed policy version, or None."""
        found = (layout.parse_policy_dir(n) for n in self.store.list(layout.POLICY))
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
