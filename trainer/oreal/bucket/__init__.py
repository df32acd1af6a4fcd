"""The run bucket: the log through which rollout, verifier and trainer coordinate.

```
from oreal.bucket import Bucket, BucketError, CorruptPartError, RunState
b = Bucket.open("s3://team-rl/runs/ns/run", endpoint="http://minio:9000")
b.write_rollout_part(step, part, samples); b.commit_rollouts(step, num_parts)
samples = b.read_rollouts(step)
```
See `oreal.bucket.bucket` for the commit protocol and `oreal.bucket.layout` for the keys.
"""

from oreal.bucket.bucket import Bucket
from oreal.bucket.errors import BucketError, CorruptPartError, NotCommittedError, SchemaVersionError
from oreal.bucket.retry import RetryPolicy
from oreal.bucket.state import RunState

__all__ = [
    "Bucket",
    "BucketError",
    "CorruptPartError",
    "NotCommittedError",
    "RetryPolicy",
    "RunState",
    "SchemaVersionError",
]
