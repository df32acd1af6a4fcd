"""Where a run's storage is and how to reach it: one `StorageLocation` for every role.

Built in one place (`storage_location`) from what the process knows, in this order:

- the bucket URI: the `--run` flag or $OREAL_RUN_URI of a worker, else spec.storage.uri;
- the S3 endpoint and region: $OREAL_STORAGE_ENDPOINT / $OREAL_STORAGE_REGION, else the spec's
  storage.endpoint / storage.region. A worker must reach the bucket before it can read the spec
  stored there, so the operator (pods' env) and `oreal run` pass them in the environment
  (`env()` of the spec's own location), and a worker's --endpoint flag comes before both.

Credentials are not part of it and never pass through oreal: s3fs and gcsfs read them from the
process environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the Secret that
spec.storage.secretRef names, GOOGLE_APPLICATION_CREDENTIALS, or the pod's workload identity).

The same location opens the bucket (`oreal.bucket.Bucket.at`) and every other file of the run on
the same store: prompts, models, evaluation data (`fsspec_options`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oreal.spec.models import StorageSpec

ENDPOINT_ENV = "OREAL_STORAGE_ENDPOINT"
REGION_ENV = "OREAL_STORAGE_REGION"


@dataclass(frozen=True)
class StorageLocation:
    uri: str
    endpoint: str | None = None
    region: str | None = None

    def env(self) -> dict[str, str]:
        """The variables that give a worker process this endpoint and region."""
        out = {}
        if self.endpoint:
            out[ENDPOINT_ENV] = self.endpoint
        if self.region:
            out[REGION_ENV] = self.region
        return out

    def with_spec(self, storage: StorageSpec) -> StorageLocation:
        """This location completed by the spec read from the bucket (the environment still wins)."""
        return StorageLocation(self.uri, self.endpoint or storage.endpoint, self.region or storage.region)

    def fsspec_options(self, uri: str) -> dict[str, Any]:
        """fsspec options for another file on this run's store (prompts, a model, evaluation data)."""
        if not uri.startswith("s3://"):
            return {}
        client: dict[str, Any] = {}
        if self.endpoint:
            client["endpoint_url"] = self.endpoint
        if self.region:
            client["region_name"] = self.region
        return {"client_kwargs": client} if client else {}


def storage_location(
    uri: str | None,
    storage: StorageSpec | None = None,
    env: Mapping[str, str] | None = None,
    endpoint: str | None = None,
) -> StorageLocation:
    """The run's storage location from a URI (flag or $OREAL_RUN_URI), the spec and the environment.

    `endpoint`: an explicit choice (a worker's --endpoint flag), before the environment. Pass
    `env={}` for the spec's own location (what the operator and `oreal run` hand to workers).
    Raises ValueError if neither `uri` nor spec.storage.uri names the bucket.
    """
    env = os.environ if env is None else env
    spec = storage or StorageSpec()
    chosen = uri or spec.uri
    if not chosen:
        raise ValueError("the run's bucket is not named: set spec.storage.uri, --run or $OREAL_RUN_URI")
    return StorageLocation(
        uri=chosen,
        endpoint=endpoint or env.get(ENDPOINT_ENV) or spec.endpoint or None,
        region=env.get(REGION_ENV) or spec.region or None,
    )
