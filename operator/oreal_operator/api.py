"""The operator's writes and reads of the Kubernetes API: one aiohttp session for the process.

Kopf watches the runs and their children (and keeps the controller's caches fresh); everything
the reconcile writes goes through `Api`: bodies are plain dicts (the renderer writes dicts, the
status fold reads dicts), connections are pooled, and every request is counted by verb and kind
(`oreal_operator_api_requests_total`), so that the cost of a run in requests is measurable.

    Api.from_connection(info, login=None)   Kopf's credentials (kopf.ConnectionInfo) for the same
                                    server; with `login` (a function returning new ones, e.g.
                                    kube.connection_info) credentials that expire are renewed
    get(kind, ns, name)             the object, or None (404)
    list(kind, ns, labels=, fields=)
    create(kind, ns, body)          ApiError(409) when the name is taken
    patch(kind, ns, name, patch, subresource=None)   a JSON merge patch
    delete(kind, ns, name)          foreground propagation; None when it is already gone
    post_event(body, type, reason, message)

A service account token read from a file is re-read when the file changes (bound tokens rotate);
credentials with an expiry (an exec credential plugin's) are renewed through `login` shortly before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp

from oreal_operator import packing
from oreal_operator.metrics import API_REQUESTS

# kind -> (API path prefix, plural)
KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("api/v1", "configmaps"),
    "Pod": ("api/v1", "pods"),
    "Event": ("api/v1", "events"),
    "JobSet": ("apis/jobset.x-k8s.io/v1alpha2", "jobsets"),
    "OREALRun": ("apis/oreal.io/v1alpha1", "orealruns"),
    "Lease": ("apis/coordination.k8s.io/v1", "leases"),
}
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
COMPONENT = "oreal-operator"
TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
RENEW_BEFORE = timedelta(seconds=30)  # credentials that expire are renewed this long before


class ApiError(Exception):
    """The API server refused a request: its HTTP status and its Status.message."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}".strip())
        self.status, self.message, self.reason = status, message, reason


def path(kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
    prefix, plural = KINDS[kind]
    out = f"/{prefix}/namespaces/{namespace}/{plural}" if namespace else f"/{prefix}/{plural}"
    if name:
        out += f"/{name}"
    if subresource:
        out += f"/{subresource}"
    return out


class Api:
    def __init__(
        self,
        server: str,
        *,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | bool | None = None,
        token_file: str | None = None,
        timeout: float = 30.0,
        expires: datetime | None = None,
        login: Callable[[], Any] | None = None,
        proxy: str | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.headers = dict(headers or {})
        self.ssl = ssl_context
        self.token_file = token_file
        self._token_mtime: float | None = None
        self.timeout = timeout
        self.expires, self.login = expires, login
        self.proxy = proxy
        self.requests: Counter[tuple[str, str]] = Counter()  # (verb, kind) -> count
        self._session: Any = None
        self._renewing = asyncio.Lock()

    @classmethod
    def from_connection(cls, info: Any, login: Callable[[], Any] | None = None, timeout: float = 30.0) -> Api:
        """An Api for the server and credentials of a kopf.ConnectionInfo."""
        return cls(info.server, login=login, timeout=timeout, **_settings(info))

    def _expiring(self) -> bool:
        if self.expires is None or self.login is None:
            return False
        expires = self.expires if self.expires.tzinfo else self.expires.replace(tzinfo=UTC)
        return datetime.now(UTC) >= expires - RENEW_BEFORE

    async def _renew(self) -> None:
        """New credentials from `login` when these expire soon. One request renews them while the
        others wait; `login` (an exec plugin, up to a minute) runs off the event loop. Requests in
        flight keep the session: each request passes the TLS context it was sent with."""
        if not self._expiring():
            return
        async with self._renewing:
            if not self._expiring():  # renewed while this request waited
                return
            settings = _settings(await asyncio.to_thread(self.login))
            self.headers, self.ssl = settings["headers"], settings["ssl_context"]
            self.token_file, self.expires, self.proxy = (
                settings["token_file"],
                settings["expires"],
                settings["proxy"],
            )

    async def _request(
        self, verb: str, kind: str, url: str, *, body: Any = None, content_type: str | None = None
    ) -> Any:
        await self._renew()
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=64),
            )
        self._refresh_token()
        headers = dict(self.headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
            data = packing.dumps(body)  # a child from the caches may have packed fields
        self.requests[(verb, kind)] += 1
        API_REQUESTS.labels(verb=verb, kind=kind).inc()
        method = {"get": "GET", "list": "GET", "create": "POST", "patch": "PATCH", "delete": "DELETE"}[verb]
        async with self._session.request(
            method,
            self.server + url,
            data=data,
            headers=headers,
            proxy=self.proxy,
            ssl=True if self.ssl is None else self.ssl,
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise _error(response.status, text)
            return json.loads(text) if text else None

    def _refresh_token(self) -> None:
        if self.token_file is None:
            return
        try:
            mtime = os.stat(self.token_file).st_mtime
            if mtime != self._token_mtime:
                with open(self.token_file) as f:
                    self.headers["Authorization"] = f"Bearer {f.read().strip()}"
                self._token_mtime = mtime
        except OSError:
            pass  # keep the token we have

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._request("get", kind, path(kind, namespace, name))
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def list(
        self, kind: str, namespace: str, *, labels: str | None = None, fields: str | None = None
    ) -> list[dict[str, Any]]:
        query = {k: v for k, v in (("labelSelector", labels), ("fieldSelector", fields)) if v}
        url = path(kind, namespace) + (f"?{urlencode(query)}" if query else "")
        return (await self._request("list", kind, url) or {}).get("items") or []

    async def create(self, kind: str, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._request("create", kind, path(kind, namespace), body=body)

    async def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: Any,
        *,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
    ) -> dict[str, Any]:
        url = path(kind, namespace, name, subresource)
        return await self._request("patch", kind, url, body=patch, content_type=content_type)

    async def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}
        try:
            return await self._request("delete", kind, path(kind, namespace, name), body=options)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """An Event about `obj` (as `kubectl describe` shows it); a failure to post is only logged."""
        meta = obj.get("metadata") or {}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}",
                "namespace": meta.get("namespace"),
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        # An event is a courtesy (the status says the same): failing to post one is no error.
        with contextlib.suppress(TimeoutError, ApiError, OSError, aiohttp.ClientError):
            await self.create("Event", meta.get("namespace") or "default", event)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _settings(info: Any) -> dict[str, Any]:
    """Api's connection settings from a kopf.ConnectionInfo (Kopf's own helpers make its TLS
    context and Authorization header, so that both clients connect alike)."""
    context: ssl.SSLContext | bool | None = None
    if info.insecure:
        context = False
    elif info.server.startswith("https:"):
        context = info.as_ssl_context()
    token_file = TOKEN_FILE if info.token and os.path.exists(TOKEN_FILE) else None
    return {
        "headers": info.as_http_headers(),
        "ssl_context": context,
        "token_file": token_file,
        "expires": info.expiration,
        "proxy": info.proxy_url,
    }


def _error(status: int, text: str) -> ApiError:
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        return ApiError(
            status, " ".join(str(body.get("message") or "").split()), str(body.get("reason") or "")
        )
    return ApiError(status, " ".join(text.split())[:300])
