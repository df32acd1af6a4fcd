"""The run bucket: the log through which rollout, verifier and trainer coordinate.

```
from oreal.bucket import Bucket, BucketError, CorruptPartError, RunState
b = Bucket.open("s3://team-rl/runs/ns/run", endpoint="http://minio:9000")
b.write_rollout_part(step, part, samples); b.commit_rollouts(step, num_parts)
samples = b.read_rollouts(step)
```
Modules, from the top down:

- `bucket`       the `Bucket` API: every object of a run, through typed methods
- `policy`       publishing and downloading policy folders (files first, `_COMMITTED` last)
- `layout`       every key of the bucket (zero-padded, deterministic; self-describing part names)
- `parts`        `StepParts`: the commit protocol of rollout and verdict parts
- `checkpoints`  `Checkpoints`: trainer checkpoints and final weights (file trees, manifest last)
- `manifest`     the JSON manifests (step commit, policy, file trees) and the one checksum, CRC32C
- `schema`       versioned Parquet schemas of prompts, rollouts and verdicts
- `state`        `RunState` (state.json)
- `store`        key/value access to one fsspec location: atomic writes, retries, errors, metrics
- `retry`        transient-error classification and capped, jittered exponential backoff
- `filesystems`  storage URI -> fsspec filesystem (s3fs/gcsfs settings, timeouts)
- `errors`       `BucketError` and its subclasses
"""

from oreal.bucket.bucket import Bucket
from oreal.bucket.errors import (
    BucketError,
    CorruptPartError,
    LayoutVersionError,
    NotCommittedError,
    SchemaVersionError,
)
from oreal.bucket.retry import RetryPolicy
from oreal.bucket.state import RunState

__all__ = [
    "Bucket",
    "BucketError",
    "CorruptPartError",
    "LayoutVersionError",
    "NotCommittedError",
    "RetryPolicy",
    "RunState",
    "SchemaVersionError",
]
