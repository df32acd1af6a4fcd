"""Errors raised by the bucket layer.

Every failure a user can see is a `BucketError` whose message names the bucket URI and says
what to do; the underlying exception is kept as `__cause__` for debugging, never printed as
the primary message.
"""

from __future__ import annotations


class BucketError(Exception):
    """A storage operation failed permanently (after retries, or for a non-retryable reason)."""


class NotCommittedError(BucketError):
    """The data asked for is not committed (yet): a reader must wait or look elsewhere."""


class ObjectMissingError(BucketError):
    """An object that should be there (e.g. listed in a manifest) does not exist."""


class CorruptPartError(BucketError):
    """A stored object does not match its manifest (checksum, size or row count).

    `kind` is "rollouts" or "verdicts" (or "policy", "checkpoint"), `step` the step (or policy
    version) and `part` the part number (None for a file of a folder). The owning worker
    regenerates a part after `Bucket.invalidate_part(kind, step, part)` withdrew the step commit
    and the part's objects.
    """

    def __init__(self, message: str, *, kind: str, step: int, part: int | None) -> None:
        super().__init__(message)
        self.kind = kind
        self.step = step
        self.part = part


class SchemaVersionError(BucketError):
    """A Parquet file was written with a newer, incompatible major schema version."""


class LayoutVersionError(BucketError):
    """The bucket holds data in a layout this oreal does not read (older or newer oreal)."""
