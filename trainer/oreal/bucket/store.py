"""A small key/value view of one fsspec location, with retries, clear errors and metrics.

Keys are '/'-separated paths relative to the run root. Single-object writes are atomic:
on a local filesystem the bytes go to a temporary sibling that is renamed over the key; on
object stores a single PUT is atomic per object. `create_bytes` writes only if the key is free
(temp + hard link locally, a conditional PUT on object stores; see `exclusive.py`). All failures
leave as `BucketError`s that name the URI; transient ones are retried first (see `retry.py`).
"""

from __future__ import annotations

import errno
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from oreal import metrics
from oreal.bucket.errors import BucketError, ObjectMissingError
from oreal.bucket.exclusive import link_exclusive, pipe_exclusive
from oreal.bucket.manifest import file_crc32c
from oreal.bucket.retry import RetryPolicy, call_with_retry

log = logging.getLogger(__name__)
T = TypeVar("T")

_CREATE_ATTEMPTS = 3
_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


class ObjectStore:
    """Keys under `root` on `fs`; `uri` is only used in messages."""

    def __init__(
        self, fs: fsspec.AbstractFileSystem, root: str, uri: str, retry: RetryPolicy | None = None
    ) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.uri = uri.rstrip("/")
        self.retry = retry or RetryPolicy.from_env()
        self.local = isinstance(fs, LocalFileSystem)
        # fsspec's own local filesystem is driven with bare os calls (its Python layer costs more
        # than the I/O of a small step); a subclass keeps its overridden methods.
        self._bare_os = type(fs) is LocalFileSystem
        self._bucket_seen = False  # the bucket existed once: a 404 since then is just a missing key
        self._dirs: set[str] = set()  # local directories known to exist (saves a mkdir per write)
        self._warned_no_link = False
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        # s3fs issues a HEAD before every GET to decide on ranged parallel reads (and a LIST after
        # a 404); our objects are read whole, so one GET is enough.
        self._cat_kwargs: dict[str, int] = {"max_concurrency": 1} if protocols & {"s3", "s3a"} else {}

    # -- paths -------------------------------------------------------------------------------------
    def path(self, key: str) -> str:
        return f"{self.root}/{key.lstrip('/')}" if key else self.root

    def url(self, key: str) -> str:
        return f"{self.uri}/{key.lstrip('/')}"

    # -- the one place that runs an operation ---------------------------------------------------------
    def run(self, operation: str, key: str, fn: Callable[[], T]) -> T:
        """Run fn with retries, a duration observation, and error translation.

        Every failure leaves as a BucketError. An fn for which "absent" is a normal answer
        catches FileNotFoundError itself (see get_bytes); one that escapes means a missing bucket
        or a missing source, and is reported as such.
        """
        start = time.perf_counter()
        try:
            return call_with_retry(
                fn,
                self.retry,
                what=f"{operation} {self.url(key)}",
                on_retry=lambda _exc: metrics.BUCKET_RETRIES.labels(operation).inc(),
            )
        except BucketError:
            raise
        except FileNotFoundError as exc:
            gone = self.missing(key, exc)
            raise (gone or BucketError(f"{operation} {self.url(key)}: not found ({exc})")) from exc
        except Exception as exc:
            raise self.translate(exc, operation, key) from exc
        finally:
            metrics.BUCKET_OPERATION_DURATION.labels(operation).observe(time.perf_counter() - start)

    def translate(self, exc: BaseException, operation: str, key: str) -> BucketError:
        """A BucketError with a message a user can act on; credentials never appear in it."""
        where = self.url(key)
        if isinstance(exc, OSError) and exc.errno in _SPACE_ERRNOS:
            return BucketError(f"{operation} {where}: no space left on the storage device (disk full)")
        if isinstance(exc, OSError) and exc.errno == errno.EROFS:
            return BucketError(f"{operation} {where}: the storage location is read-only")
        if isinstance(exc, PermissionError):
            return BucketError(
                f"{operation} {where}: access denied; check the credentials "
                "(spec.storage.secretRef) and the bucket policy"
            )
        names = {cls.__name__ for cls in type(exc).__mro__}
        if names & {"NoCredentialsError", "PartialCredentialsError"}:
            return BucketError(
                f"{operation} {where}: no storage credentials found; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (spec.storage.secretRef)"
            )
        if names & {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionError", "TimeoutError"}:
            return BucketError(
                f"{operation} {where}: cannot reach the storage endpoint after retries ({exc}); "
                "check spec.storage.endpoint and the network"
            )
        return BucketError(f"{operation} {where} failed: {type(exc).__name__}: {exc}")

    def missing(self, key: str, exc: FileNotFoundError) -> BucketError | None:
        """If a FileNotFoundError means that the bucket/root itself is gone, the error to raise."""
        if self.local or self._bucket_seen:
            return None
        bucket = self.root.split("/", 1)[0]
        try:
            if self.fs.exists(bucket):
                self._bucket_seen = True
                return None
        except Exception:  # noqa: BLE001 - a failing probe must not hide the original error
            return None
        return BucketError(f"{self.url(key)}: bucket {bucket!r} does not exist (check spec.storage.uri)")

    # -- small objects ------------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write `data` at `key` atomically (temp + rename locally, one PUT on object stores)."""
        path = self.path(key)
        if self.local:
            self.run("put", key, lambda: self._local_atomic_write(path, data))
        else:

            def put() -> None:
                try:
                    self.fs.pipe_file(path, data)
                except FileNotFoundError as exc:
                    raise self.missing(key, exc) or BucketError(f"put {self.url(key)}: {exc}") from exc

            self.run("put", key, put)
            self._bucket_seen = True  # so a later 404 needs no probe of the bucket itself
        metrics.BUCKET_BYTES_WRITTEN.inc(len(data))

    def create_bytes(self, key: str, data: bytes) -> bytes | None:
        """Write `data` at `key` only if no object is there (create-if-absent).

        Returns None if this call wrote the object, else the bytes of the object that was
        already there (this call then wrote nothing). Exclusive locally (temp + `os.link`), on S3
        (`If-None-Match: *`) and on memory:// (one process); other fsspec filesystems get
        `mode="create"`, as exclusive as their implementation (see exclusive.py).
        """
        path = self.path(key)
        for _ in range(_CREATE_ATTEMPTS):
            if self.local:
                created = self.run("put", key, lambda: self._local_create(path, data))
            else:
                created = self.run("put", key, lambda: self._remote_create(key, path, data))
                self._bucket_seen = True
            if created:
                metrics.BUCKET_BYTES_WRITTEN.inc(len(data))
                return None
            existing = self.get_bytes(key)
            if existing is not None:
                return existing
            # Refused, yet nothing is there: the write in flight failed (409) or the object was
            # deleted since (invalidate_part). Try again.
        raise BucketError(f"create {self.url(key)}: refused {_CREATE_ATTEMPTS} times, yet no object is there")

    def _remote_create(self, key: str, path: str, data: bytes) -> bool:
        try:
            return pipe_exclusive(self.fs, path, data)
        except FileNotFoundError as exc:
            raise self.missing(key, exc) or BucketError(f"put {self.url(key)}: {exc}") from exc

    def _local_atomic_write(self, path: str, data: bytes) -> None:
        tmp = self._local_temp(path, data)
        try:
            if self._bare_os:
                os.replace(tmp, path)
            else:
                self.fs.mv(tmp, path)
        except BaseException:
            self._discard(tmp)
            raise

    def _local_temp(self, path: str, data: bytes) -> str:
        """Write `data` to a new hidden sibling of `path` (never a part name); returns its path."""
        directory = os.path.dirname(path)
        makedirs = os.makedirs if self._bare_os else self.fs.makedirs
        opener = open if self._bare_os else self.fs.open
        if directory not in self._dirs:
            makedirs(directory, exist_ok=True)
            self._dirs.add(directory)
        tmp = f"{directory}/.{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:12]}"
        try:
            try:
                f = opener(tmp, "wb")
            except FileNotFoundError:  # the directory was deleted since we made it
                makedirs(directory, exist_ok=True)
                f = opener(tmp, "wb")
            with f:
                f.write(data)
        except BaseException:
            self._discard(tmp)
            raise
        return tmp

    def _local_create(self, path: str, data: bytes) -> bool:
        """Temp file, then hard link to `path` (exclusive). Without hard links: exists-then-rename,
        which is not exclusive (logged once)."""
        tmp = self._local_temp(path, data)
        try:
            created = link_exclusive(tmp, path)
            if created is not None:
                return created
            if not self._warned_no_link:
                self._warned_no_link = True
                log.warning("%s: the filesystem has no hard links; commits are not exclusive", self.uri)
            if os.path.exists(path):
                return False
            self.fs.mv(tmp, path)
            return True
        finally:
            self._discard(tmp)

    def _discard(self, path: str) -> None:
        try:
            if self._bare_os:
                with suppress(FileNotFoundError):
                    os.unlink(path)
            elif self.fs.exists(path):
                self.fs.rm_file(path)
        except Exception:  # noqa: BLE001 - best-effort cleanup; the original error matters
            log.debug("could not remove temporary %s", path)

    def get_bytes(self, key: str) -> bytes | None:
        """The bytes at `key`, or None if there is no such object."""
        path = self.path(key)

        def get() -> bytes | None:
            try:
                if self._bare_os:
                    with open(path, "rb") as f:
                        return f.read()
                return self.fs.cat_file(path, **self._cat_kwargs)
            except FileNotFoundError as exc:
                bucket_gone = self.missing(key, exc)
                if bucket_gone:
                    raise bucket_gone from exc
                return None
            except IsADirectoryError:
                return None

        data = self.run("get", key, get)
        if data is not None:
            self._bucket_seen = True
            metrics.BUCKET_BYTES_READ.inc(len(data))
        return data

    def exists(self, key: str) -> bool:
        path = self.path(key)
        return self.run("exists", key, lambda: bool(self.fs.exists(path)))

    def size(self, key: str) -> int | None:
        path = self.path(key)

        def info() -> int | None:
            try:
                return int(self.fs.info(path)["size"])
            except FileNotFoundError:
                return None

        return self.run("info", key, info)

    def list(self, prefix: str) -> list[str]:
        """Names (last path component) directly under `prefix`; [] if it does not exist."""
        path = self.path(prefix).rstrip("/")

        def ls() -> list[str]:
            if self._bare_os:
                try:
                    return sorted(os.listdir(path))
                except (FileNotFoundError, NotADirectoryError):
                    return []
            try:
                entries = self.fs.ls(path, detail=False)
            except FileNotFoundError as exc:
                bucket_gone = self.missing(prefix, exc)
                if bucket_gone:
                    raise bucket_gone from exc
                return []
            return sorted({str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries})

        if hasattr(self.fs, "invalidate_cache"):
            self.fs.invalidate_cache(path)
        return self.run("list", prefix, ls)

    def delete(self, key: str) -> None:
        """Delete one object; absent is fine."""
        path = self.path(key)

        def rm() -> None:
            with suppress(FileNotFoundError):
                self.fs.rm_file(path)

        self.run("delete", key, rm)

    def delete_prefix(self, prefix: str) -> None:
        """Delete everything under `prefix`; absent is fine."""
        path = self.path(prefix).rstrip("/")

        def rm() -> None:
            with suppress(FileNotFoundError):
                self.fs.rm(path, recursive=True)

        self.run("delete", prefix, rm)

    # -- large files (policy weights) ----------------------------------------------------------------
    def put_file(
        self, local_path: str, key: str, checksum: Callable[[str], str] = file_crc32c, link: bool = False
    ) -> str:
        """Upload a local file to `key`; returns checksum(local_path), computed during the upload.

        Atomic: temp + rename locally, one (multipart) PUT on object stores. `link`: the caller
        never changes `local_path` in place again (it may delete it), so a local bucket may take
        the file as a hard link instead of a copy (a copy where the filesystem refuses links).
        """
        path = self.path(key)
        if not os.path.isfile(local_path):
            raise BucketError(f"upload to {self.url(key)}: local file {local_path} does not exist")
        size = os.path.getsize(local_path)
        if self.local:

            def put() -> None:
                directory = os.path.dirname(path)
                self.fs.makedirs(directory, exist_ok=True)
                tmp = f"{directory}/.{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:12]}"
                try:
                    if not (link and self._hard_link(local_path, tmp)):
                        self.fs.put_file(local_path, tmp)
                    self.fs.mv(tmp, path)
                except BaseException:
                    self._discard(tmp)
                    raise

        else:

            def put() -> None:
                self.fs.put_file(local_path, path)

        with ThreadPoolExecutor(max_workers=1) as pool:
            digest = pool.submit(checksum, local_path)
            self.run("put_file", key, put)
            result = digest.result()
        metrics.BUCKET_BYTES_WRITTEN.inc(size)
        return result

    def get_file(
        self, key: str, local_path: str, checksum: Callable[[str], str] = file_crc32c, link: bool = False
    ) -> str:
        """Download `key` to `local_path` (temp sibling, then rename); returns the content's checksum.

        On a local filesystem the kernel copies the file while the bucket object is checksummed
        in parallel; from an object store the downloaded file is checksummed after the transfer.
        `link`: the caller only reads `local_path` (never writes it in place), so a local bucket
        may hand out a hard link to the object instead of a copy; the object is still checksummed.
        """
        path = self.path(key)
        os.makedirs(os.path.dirname(local_path) or ".", exist_ok=True)
        tmp = f"{local_path}.tmp-{uuid.uuid4().hex[:12]}"

        def get() -> None:
            try:
                if not (link and self.local and self._hard_link(path, tmp)):
                    self.fs.get_file(path, tmp)
            except FileNotFoundError as exc:
                raise self.missing(key, exc) or ObjectMissingError(
                    f"get {self.url(key)}: no such object"
                ) from exc

        try:
            if self.local:
                with ThreadPoolExecutor(max_workers=1) as pool:
                    digest = pool.submit(checksum, path)
                    self.run("get_file", key, get)
                    result = digest.result()
            else:
                self.run("get_file", key, get)
                result = checksum(tmp)
            os.replace(tmp, local_path)
        except OSError as exc:  # the local side: disk full, permissions
            raise BucketError(f"download {self.url(key)} to {local_path}: {exc.strerror or exc}") from exc
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        metrics.BUCKET_BYTES_READ.inc(os.path.getsize(local_path))
        return result

    @staticmethod
    def _hard_link(source: str, target: str) -> bool:
        """os.link(source, target); False where links are impossible (other filesystem, no support)."""
        try:
            os.link(source, target)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
                return False
            raise
        return True

    @property
    def concurrent_gets(self) -> bool:
        """True where get_many sends its GETs concurrently (async object stores)."""
        return not self.local and bool(getattr(self.fs, "async_impl", False))

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        """get_bytes over many keys. On an async object store all GETs go out concurrently in one
        call to its event loop; a key that failed there is retried through get_bytes.
        """
        if len(keys) <= 1 or not self.concurrent_gets:
            return [self.get_bytes(k) for k in keys]
        paths = [self.path(k) for k in keys]
        start = time.perf_counter()
        try:
            got = self.fs.cat(paths, on_error="return", **self._cat_kwargs)
        except Exception:  # noqa: BLE001 - fall back to the one-by-one path, which classifies errors
            got = {}
        metrics.BUCKET_OPERATION_DURATION.labels("get").observe(time.perf_counter() - start)
        out: list[bytes | None] = []
        for key, path in zip(keys, paths, strict=True):
            value = got.get(path)
            if isinstance(value, bytes | bytearray):
                metrics.BUCKET_BYTES_READ.inc(len(value))
                out.append(bytes(value))
            elif isinstance(value, FileNotFoundError) and self._bucket_seen:
                out.append(None)
            else:
                out.append(self.get_bytes(key))
        return out

    def sizes(self, prefix: str) -> dict[str, int]:
        """{name: size} of the objects directly under `prefix`, from one listing."""
        path = self.path(prefix).rstrip("/")

        def ls() -> dict[str, int]:
            if self._bare_os:
                try:
                    with os.scandir(path) as it:
                        return {e.name: e.stat().st_size for e in it if e.is_file()}
                except (FileNotFoundError, NotADirectoryError):
                    return {}
            try:
                entries = self.fs.ls(path, detail=True)
            except FileNotFoundError:
                return {}
            return {
                str(e["name"]).rstrip("/").rsplit("/", 1)[-1]: int(e.get("size") or 0)
                for e in entries
                if e.get("type") == "file"
            }

        if hasattr(self.fs, "invalidate_cache"):
            self.fs.invalidate_cache(path)
        return self.run("list", prefix, ls)

    @contextmanager
    def timed(self, operation: str) -> Iterator[None]:
        """Observe a composite operation (e.g. a whole commit) under `operation`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            metrics.BUCKET_OPERATION_DURATION.labels(operation).observe(time.perf_counter() - start)
