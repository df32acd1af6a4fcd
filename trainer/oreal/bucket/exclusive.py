"""Create-if-absent primitives: write an object only if its key is free, and say who won.

Used for a step's `_COMMITTED` (see bucket.py, "Where the commit is exclusive"): of several
committers of one step, exactly one creates it; the others learn that the key was taken and
adopt what is there.

- `link_exclusive`: a complete local temp file is hard-linked to its final name; POSIX link(2)
  fails with EEXIST if the name exists, atomically.
- `pipe_exclusive`: fsspec's `pipe_file(mode="create")`. s3fs sends `If-None-Match: *`, answered
  by 412 PreconditionFailed if the key exists (s3fs raises FileExistsError when the error names
  the condition, as AWS does, else an OSError caused by the ClientError, as SeaweedFS does) or
  by 409 ConditionalRequestConflict while another conditional write of the key is in flight
  (AWS). memory:// checks then sets, under one process-wide lock here.
"""

from __future__ import annotations

import errno
import os
import threading

import fsspec
from fsspec.implementations.memory import MemoryFileSystem

from oreal.bucket.retry import http_status

# os.link failing because the filesystem has no hard links (not because the name is taken).
NO_LINK_ERRNOS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}
# An object store refusing a create-if-absent PUT: the key exists (412), or another conditional
# write of it is in flight (409; that one may yet fail, leaving the key free).
LOST_CREATE_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}
# memory:// keeps one process-wide dict: one lock makes its exists-then-set exclusive.
_MEMORY_LOCK = threading.Lock()


def link_exclusive(tmp: str, path: str) -> bool | None:
    """Hard-link `tmp` to `path`: True if created, False if `path` exists, None if this
    filesystem has no hard links (some FUSE mounts). Other errors propagate."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno in NO_LINK_ERRNOS:
            return None
        raise
    return True


def lost_create(exc: BaseException) -> bool:
    """True if `exc` is an object store's refusal of a create-if-absent write."""
    return isinstance(exc, FileExistsError) or http_status(exc)[1] in LOST_CREATE_CODES


def pipe_exclusive(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> bool:
    """Write `data` at `path` if nothing is there: True if written, False if refused.

    Other errors (FileNotFoundError for a missing bucket included) propagate.
    """
    try:
        if isinstance(fs, MemoryFileSystem):
            with _MEMORY_LOCK:
                fs.pipe_file(path, data, mode="create")
        else:
            fs.pipe_file(path, data, mode="create")
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) or not lost_create(exc):
            raise
        return False
    return True
