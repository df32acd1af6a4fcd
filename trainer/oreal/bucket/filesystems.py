"""Turn a storage URI into an fsspec filesystem and a root path.

Supported: a plain path or file:// (local, atomic renames), s3:// (s3fs; endpoint and
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment, i.e. the spec's secretRef),
gs:// (if gcsfs is installed; see `_gcs`) and memory:// (tests). The S3 client gets short connect
timeouts and no retries of its own: `oreal.bucket.retry` is the single, bounded retry loop, so
an unreachable endpoint fails within a predictable time (gcsfs has no such settings).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem

from oreal.bucket.errors import BucketError

# Per-attempt limits (seconds); with RetryPolicy's attempts and deadline they bound how long an
# unreachable or hung endpoint can hold a worker. Read when a bucket is opened.
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_READ_TIMEOUT_S = 60.0


def _timeouts() -> tuple[float, float]:
    return (
        float(os.environ.get("OREAL_BUCKET_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT_S)),
        float(os.environ.get("OREAL_BUCKET_READ_TIMEOUT", DEFAULT_READ_TIMEOUT_S)),
    )


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _s3(endpoint: str | None, region: str | None, options: dict[str, Any]) -> fsspec.AbstractFileSystem:
    try:
        import s3fs
    except ImportError as exc:  # pragma: no cover - s3fs is a hard dependency
        raise BucketError("s3:// storage needs the s3fs package (pip install s3fs)") from exc
    connect_timeout, read_timeout = _timeouts()
    base: dict[str, Any] = {
        "skip_instance_cache": True,
        "use_listings_cache": False,  # other pods write concurrently: never trust a cached listing
        "config_kwargs": {
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "retries": {"max_attempts": 1, "mode": "standard"},
        },
        "client_kwargs": {},
    }
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        base["endpoint_url"] = endpoint
    if region:
        base["client_kwargs"]["region_name"] = region
    retries = int(options.pop("retries", 1))
    fs = s3fs.S3FileSystem(**_merge(base, options))
    fs.retries = retries  # s3fs' own retry loop: off by default, ours is in retry.py
    return fs


def _gcs(uri: str, endpoint: str | None, options: dict[str, Any]) -> fsspec.AbstractFileSystem:
    """gcsfs' plain JSON-API filesystem. Not `gcsfs.GCSFileSystem`, which since gcsfs 2026 is the
    "extended" class: it asks the gRPC storage-control API for the bucket's layout before object
    calls, and an answer of "unknown" (no permission for that API, an emulator, a firewall) is not
    cached, so every call can wait out a 30 s gRPC timeout. The bucket uses no zonal/HNS feature.
    Endpoint: `endpoint` (spec.storage.endpoint), else STORAGE_EMULATOR_HOST, else Google's;
    credentials: gcsfs' `token` option (default: the environment's Google credentials, else
    anonymous). No request timeout is set: gcsfs' only one is a total per request, which would
    cut a large policy download short; gcsfs keeps its own retries of transient HTTP errors.
    """
    try:
        from gcsfs.core import GCSFileSystem
    except ImportError as exc:
        raise BucketError(
            f"{uri}: gs:// storage needs the gcsfs package, which is not installed (pip install 'oreal[gcs]')"
        ) from exc
    base: dict[str, Any] = {"skip_instance_cache": True, "use_listings_cache": False}
    if endpoint:
        base["endpoint_url"] = endpoint
    return GCSFileSystem(**_merge(base, options))


def open_filesystem(
    uri: str,
    endpoint: str | None = None,
    storage_options: dict[str, Any] | None = None,
    region: str | None = None,
) -> tuple[fsspec.AbstractFileSystem, str, str]:
    """(filesystem, root path on it, canonical URI for messages) for a storage URI."""
    options = dict(storage_options or {})
    if not uri:
        raise BucketError("empty storage URI (spec.storage.uri)")
    scheme = urlsplit(uri).scheme if "://" in uri else ""
    if scheme in ("", "file", "local"):
        path = uri.split("://", 1)[1] if scheme else uri
        root = os.path.abspath(os.path.expanduser(path))
        return LocalFileSystem(auto_mkdir=True), root, f"file://{root}"
    rest = uri.split("://", 1)[1].strip("/")
    if not rest:
        raise BucketError(f"{uri}: the URI names no bucket")
    if scheme in ("s3", "s3a"):
        return _s3(endpoint, region, options), rest, f"s3://{rest}"
    if scheme in ("gs", "gcs"):
        return _gcs(uri, endpoint, options), rest, f"gs://{rest}"
    if scheme == "memory":
        return fsspec.filesystem("memory"), f"/{rest}", f"memory://{rest}"
    try:
        fs = fsspec.filesystem(scheme, **options)
    except (ImportError, ValueError) as exc:
        raise BucketError(f"{uri}: unsupported storage scheme {scheme!r}: {exc}") from exc
    return fs, rest, f"{scheme}://{rest}"
