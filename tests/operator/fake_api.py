"""An in-memory stand-in for `oreal_operator.api.Api`: objects in a dict, every request recorded.

Enough of the API server's behaviour for the reconcile's tests: create refuses a taken name
(409), merge patches merge (None deletes a key), a status patch touches only `.status`, a JSON
patch applies its ops, a resourceVersion given in a patch must match (409), every write bumps
the resourceVersion and the generation on spec changes, delete returns the object. Label and
field selectors of a list are applied. `fail(verb, kind, error)` makes the next such request
fail; `requests` lists (verb, kind, name) in order; `events` the posted events.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonpatch

from oreal_operator import packing
from oreal_operator.api import JSON_PATCH, ApiError


def merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.events: list[tuple[str, str, str]] = []
        self._failures: dict[tuple[str, str], ApiError] = {}
        self._version = 100

    # -- test controls

    def fail(self, verb: str, kind: str, error: ApiError) -> None:
        self._failures[(verb, kind)] = error

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store `obj` as if someone else created it (no request recorded)."""
        meta = obj["metadata"]
        stored = copy.deepcopy(obj)
        stored["metadata"].setdefault("uid", f"uid-{meta['name']}")
        stored["metadata"].setdefault("generation", 1)
        stored["metadata"]["resourceVersion"] = self._bump()
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = stored
        return copy.deepcopy(stored)

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def writes(self) -> list[tuple[str, str, str]]:
        return [r for r in self.requests if r[0] not in ("get", "list")]

    # -- the Api surface

    def _bump(self) -> str:
        self._version += 1
        return str(self._version)

    def _record(self, verb: str, kind: str, name: str) -> None:
        self.requests.append((verb, kind, name))
        error = self._failures.pop((verb, kind), None)
        if error is not None:
            raise error

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._record("get", kind, name)
        return self.get_object(kind, namespace, name)

    async def list(
        self, kind: str, namespace: str | None, *, labels: str | None = None, fields: str | None = None
    ) -> list[dict[str, Any]]:
        self._record("list", kind, "")
        wanted = dict(part.split("=", 1) for part in labels.split(",")) if labels else {}
        out = []
        for (k, ns, _), obj in self.objects.items():
            if k != kind or (namespace is not None and ns != namespace):
                continue
            if any((obj["metadata"].get("labels") or {}).get(key) != value for key, value in wanted.items()):
                continue
            if fields == "status.phase=Failed" and (obj.get("status") or {}).get("phase") != "Failed":
                continue
            out.append(copy.deepcopy(obj))
        return out

    async def create(self, kind: str, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self._record("create", kind, name)
        if (kind, namespace, name) in self.objects:
            raise ApiError(409, f'{kind} "{name}" already exists', "AlreadyExists")
        body = json.loads(packing.dumps(body))  # as the API server reads the request (packed fields too)
        return self.put({**body, "kind": kind})

    async def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: Any,
        *,
        subresource: str | None = None,
        content_type: str = "",
    ) -> dict[str, Any]:
        self._record("patch", kind, name)
        key = (kind, namespace, name)
        if key not in self.objects:
            raise ApiError(404, f'{kind} "{name}" not found', "NotFound")
        obj = self.objects[key]
        if content_type == JSON_PATCH:
            new = jsonpatch.apply_patch(obj, patch)
        else:
            wanted = (
                ((patch.get("metadata") or {}).get("resourceVersion")) if isinstance(patch, dict) else None
            )
            if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
                raise ApiError(409, "the object has been modified", "Conflict")
            patch = copy.deepcopy(patch)
            (patch.get("metadata") or {}).pop("resourceVersion", None)
            if subresource == "status":
                patch = {"status": patch.get("status")}
            new = merge(obj, patch)
            if subresource != "status" and new.get("spec") != obj.get("spec"):
                new["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = self._bump()
        self.objects[key] = new
        return copy.deepcopy(new)

    async def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._record("delete", kind, name)
        return self.objects.pop((kind, namespace, name), None)

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.requests.append(("create", "Event", reason))
        self.events.append((type_, reason, message))

    async def close(self) -> None:
        pass


class FakeReports:
    """The trainer's reports by URL; a URL not set has no report (unreachable)."""

    def __init__(self) -> None:
        self.by_url: dict[str, Any] = {}
        self.reads: list[str] = []

    async def read(self, url: str) -> Any:
        self.reads.append(url)
        return self.by_url.get(url)
