"""What the operator reads from a run's bucket: its RunState (state.json), newest stats, and the
frozen spec the pods stored (spec.yaml) with whether the run has started (policy v0 committed).

    read_bucket(spec, secret) -> BucketView(state, stats, error, spec, started)

`spec` and `started` are what `oreal worker init` looks at before it stores a spec: once a run
has started, its bucket refuses a spec that differs beyond run control, and the operator refuses
that spec first (SpecInvalid) instead of letting every new pod fail in its init container.

`secret` is the decoded data of the Secret named by spec.storage.secretRef (the same keys the
pods get as environment through envFrom): AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
AWS_SESSION_TOKEN become s3fs' key/secret/token; AWS_ENDPOINT_URL(_S3) and AWS_REGION /
AWS_DEFAULT_REGION fill spec.storage.endpoint / region when those are unset. gs:// buckets use the
operator's own Google credentials (e.g. workload identity): a Secret holds no gcsfs token.

A bucket that cannot be read is not an error of the operator: the view carries a one-line reason
(never a credential) and the status keeps the last progress it saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oreal.bucket import Bucket, RunState
from oreal.bucket.filesystems import open_filesystem
from oreal.bucket.retry import RetryPolicy
from oreal.spec.models import OREALRunSpec

# A status tick must not hang on a dead endpoint: few attempts, short total (the timer runs again).
RETRY = RetryPolicy(attempts=2, base_delay=0.2, max_delay=1.0, deadline=10.0)
MAX_ERROR_CHARS = 300
MIN_BLANKED_CHARS = 6  # shorter values are not real credentials; blanking them mangles the text

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token"}


@dataclass(frozen=True)
class BucketView:
    state: RunState | None = None
    stats: dict[str, Any] | None = None
    error: str | None = None
    spec: str | None = None  # the bucket's spec.yaml, None if there is none
    started: bool = False  # policy v0 is committed: the stored spec is the run's for good


@dataclass(frozen=True)
class Location:
    """How to open the bucket: URI, endpoint, region and fsspec options (may hold credentials)."""

    uri: str
    endpoint: str | None
    region: str | None
    options: dict[str, Any]

    def __repr__(self) -> str:  # the options hold credentials: never print them
        return f"Location({self.uri!r}, endpoint={self.endpoint!r}, region={self.region!r})"


def location(spec: OREALRunSpec, secret: Mapping[str, str] | None) -> Location:
    """The bucket of `spec` with the Secret's credentials mapped to fsspec options."""
    storage, secret = spec.storage, secret or {}
    uri = storage.uri or ""
    options: dict[str, Any] = {}
    if uri.startswith(("s3://", "s3a://")):
        options = {option: secret[key] for key, option in S3_CREDENTIALS.items() if secret.get(key)}
    endpoint = storage.endpoint or secret.get("AWS_ENDPOINT_URL_S3") or secret.get("AWS_ENDPOINT_URL") or None
    region = storage.region or secret.get("AWS_REGION") or secret.get("AWS_DEFAULT_REGION") or None
    return Location(uri, endpoint, region, options)


def open_bucket(where: Location) -> Bucket:
    fs, root, canonical = open_filesystem(where.uri, where.endpoint, dict(where.options), where.region)
    return Bucket(fs, root, canonical, retry=RETRY)


def read_bucket(spec: OREALRunSpec, secret: Mapping[str, str] | None) -> BucketView:
    """RunState and the newest stats of the run, or the reason they could not be read."""
    where = location(spec, secret)
    if not where.uri:
        return BucketView(error="spec.storage.uri is not set")
    try:
        bucket = open_bucket(where)
        state = bucket.read_state()
        steps = bucket.list_stats()
        stats = bucket.read_stats(steps[-1]) if steps else None
        stored = bucket.read_spec()
        started = stored is not None and bucket.policy_committed(0)
    except Exception as err:  # noqa: BLE001 - any storage failure only degrades the status
        return BucketView(error=describe(err, where))
    return BucketView(state=state, stats=stats, spec=stored, started=started)


def describe(err: BaseException, where: Location) -> str:
    """One line, credentials blanked out (some clients echo their arguments)."""
    text = " ".join(f"{type(err).__name__}: {err}".split())
    for value in where.options.values():
        if isinstance(value, str) and len(value) >= MIN_BLANKED_CHARS:
            text = text.replace(value, "***")
    if where.uri not in text:
        text = f"{where.uri}: {text}"
    return text[:MAX_ERROR_CHARS]
