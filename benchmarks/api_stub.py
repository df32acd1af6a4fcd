"""A minimal Kubernetes API server for timing the operator: constant cost per request.

kmock keeps every request and scans that history to match each new one, so at a few hundred
runs the emulator, not the operator, is what a benchmark measures. This stub keeps objects in a
dict, fans watch events out to the open watches of their resource, answers discovery for the
resources the operator and Kopf use, and forgets every request after counting it.

What it serves: discovery (/api, /apis, /api/v1, /apis/<group>/<version>, /version); list
(`labelSelector` equality terms), watch (events from the moment the watch opens), get, create
(409 when the name is taken), merge / JSON / strategic-merge patch (a resourceVersion in a merge
patch must match: 409), the status subresource, delete; uid, resourceVersion, generation and
creationTimestamp as an API server sets them. No admission, no defaulting, no controllers.

`Stub.insert(obj)` stores an object as a client's create would, without an HTTP round trip (the
benchmark's own writes are not the operator's). Hooks: `on_create(plural, obj)` and
`on_status(plural, obj)` let a benchmark time when the operator wrote what.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jsonpatch
from aiohttp import web

# (group, version, plural) -> (kind, namespaced)
RESOURCES: dict[tuple[str, str, str], tuple[str, bool]] = {
    ("", "v1", "configmaps"): ("ConfigMap", True),
    ("", "v1", "pods"): ("Pod", True),
    ("", "v1", "events"): ("Event", True),
    ("", "v1", "namespaces"): ("Namespace", False),
    ("oreal.io", "v1alpha1", "orealruns"): ("OREALRun", True),
    ("jobset.x-k8s.io", "v1alpha2", "jobsets"): ("JobSet", True),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"): ("CustomResourceDefinition", False),
    ("coordination.k8s.io", "v1", "leases"): ("Lease", True),
}
VERBS = ["get", "list", "watch", "create", "patch", "update", "delete"]


def merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }
    return web.json_response(body, status=code)


class Stub:
    def __init__(self) -> None:
        self.objects: dict[str, dict[tuple[str | None, str], dict[str, Any]]] = defaultdict(dict)
        self.watches: dict[str, list[tuple[str | None, asyncio.Queue[bytes]]]] = defaultdict(list)
        self.requests: Counter[tuple[str, str]] = Counter()  # (verb, plural) -> count
        self._version = itertools.count(1)
        self.on_create: Callable[[str, dict[str, Any]], None] | None = None
        self.on_status: Callable[[str, dict[str, Any]], None] | None = None
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    # ------------------------------------------------------------ storage

    def _stamp(self, obj: dict[str, Any], *, new: bool) -> None:
        meta = obj.setdefault("metadata", {})
        if new:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("generation", 1)
            meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta["resourceVersion"] = str(next(self._version))

    def _emit(self, plural: str, kind: str, obj: dict[str, Any]) -> None:
        namespace = obj["metadata"].get("namespace")
        line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        for wanted, queue in self.watches[plural]:
            if wanted is None or wanted == namespace:
                queue.put_nowait(line)

    def insert(self, plural: str, obj: dict[str, Any], *, owned: bool = False) -> dict[str, Any]:
        """Store `obj` as a create would (no request counted); `owned`: the stub may keep `obj`
        itself (a request's body, parsed for this create), else it stores a copy."""
        obj = obj if owned else copy.deepcopy(obj)
        self._stamp(obj, new=True)
        self.objects[plural][(obj["metadata"].get("namespace"), obj["metadata"]["name"])] = obj
        self._emit(plural, "ADDED", obj)
        return obj

    # ------------------------------------------------------------ HTTP

    def _route(self, path: str) -> tuple[tuple[str, str, str] | None, str | None, str | None, str | None]:
        """(resource, namespace, name, subresource) of a path, resource None for discovery."""
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"]:
            group, rest = "", parts[1:]
        elif parts[:1] == ["apis"]:
            group, rest = (parts[1], parts[2:]) if len(parts) > 1 else ("", [])
        else:
            return None, None, None, None
        if len(rest) < 2:
            return None, None, None, None
        version, rest = rest[0], rest[1:]
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        resource = (group, version, rest[0])
        if resource not in RESOURCES:
            return None, None, None, None
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        return resource, namespace, name, sub

    async def handle(self, request: web.Request) -> web.StreamResponse:
        resource, namespace, name, sub = self._route(request.path)
        if resource is None:
            return self._discovery(request.path)
        plural = resource[2]
        method = request.method
        if method == "GET" and name is None:
            watch = request.query.get("watch") in ("true", "1")
            self.requests[("watch" if watch else "list", plural)] += 1
            if watch:
                return await self._watch(request, plural, namespace)
            return web.json_response(self._list(plural, namespace, request.query.get("labelSelector")))
        verb = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
        self.requests[(verb, plural)] += 1
        if method == "POST":
            body = await request.json()
            body.setdefault("metadata", {}).setdefault("namespace", namespace)
            key = (namespace, body["metadata"]["name"])
            if key in self.objects[plural]:
                return _status(409, "AlreadyExists", f'{plural} "{key[1]}" already exists')
            obj = self.insert(plural, body, owned=True)
            if self.on_create:
                self.on_create(plural, obj)
            return web.json_response(obj, status=201)
        key = (namespace, name)
        obj = self.objects[plural].get(key)
        if obj is None:
            return _status(404, "NotFound", f'{plural} "{name}" not found')
        if method == "GET":
            return web.json_response(obj)
        if method == "DELETE":
            del self.objects[plural][key]
            self._stamp(obj, new=False)
            self._emit(plural, "DELETED", obj)
            return web.json_response(obj)
        patch = await request.json()
        if method == "PATCH" and "json-patch" in request.content_type:
            new = jsonpatch.apply_patch(obj, patch)
        else:
            wanted = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
                return _status(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version",
                )
            (patch.get("metadata") or {}).pop("resourceVersion", None)
            if sub == "status":
                patch = {"status": patch.get("status")}
            new = merge(obj, patch) if method == "PATCH" else {**patch, "metadata": obj["metadata"]}
        if sub != "status" and new.get("spec") != obj.get("spec"):
            new["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
        self._stamp(new, new=False)
        self.objects[plural][key] = new
        self._emit(plural, "MODIFIED", new)
        if sub == "status" and self.on_status:
            self.on_status(plural, new)
        return web.json_response(new)

    def _list(self, plural: str, namespace: str | None, selector: str | None) -> dict[str, Any]:
        terms = [t.split("=", 1) for t in selector.split(",")] if selector else []
        items = [
            o
            for (ns, _), o in self.objects[plural].items()
            if (namespace is None or ns == namespace)
            and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in terms)
        ]
        version = str(next(self._version))
        return {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": version}, "items": items}

    async def _watch(self, request: web.Request, plural: str, namespace: str | None) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        entry = (namespace, queue)
        self.watches[plural].append(entry)
        timeout = float(request.query.get("timeoutSeconds", "300"))
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    line = await asyncio.wait_for(queue.get(), timeout=left)
                except TimeoutError:
                    break
                await response.write(line)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.watches[plural].remove(entry)
        return response

    def _discovery(self, path: str) -> web.Response:
        groups: dict[str, set[str]] = defaultdict(set)
        for group, version, _ in RESOURCES:
            groups[group].add(version)
        if path in ("/api", "/api/"):
            return web.json_response({"kind": "APIVersions", "versions": ["v1"]})
        if path in ("/apis", "/apis/"):
            return web.json_response(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [
                        {
                            "name": g,
                            "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in sorted(vs)],
                            "preferredVersion": {"groupVersion": f"{g}/{min(vs)}", "version": min(vs)},
                        }
                        for g, vs in groups.items()
                        if g
                    ],
                }
            )
        if path == "/version":
            return web.json_response({"major": "1", "minor": "31", "gitVersion": "v1.31.0-stub"})
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[:1] == ["apis"] and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            return _status(404, "NotFound", f"{path}: not served by the stub")
        listed = [
            {"name": n, "kind": kind, "namespaced": namespaced, "singularName": kind.lower(), "verbs": VERBS}
            for (g, v, n), (kind, namespaced) in RESOURCES.items()
            if (g, v) == (group, version)
        ]
        listed += [{**r, "name": f"{r['name']}/status", "verbs": ["get", "patch", "update"]} for r in listed]
        if not listed:
            return _status(404, "NotFound", f"{path}: not served by the stub")
        gv = f"{group}/{version}" if group else version
        return web.json_response({"kind": "APIResourceList", "groupVersion": gv, "resources": listed})
