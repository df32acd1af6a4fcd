"""The operator's calls to the Kubernetes API (sync `kubernetes` client; Kopf runs sync handlers in
its thread pool). Bodies go and come back as plain dicts (`_preload_content=False`): the renderer
writes dicts, the status fold reads dicts, and no client model drops a field it does not know.

    configure()                          in-cluster config, else KUBECONFIG / ~/.kube/config
    connection_info()                    the same credentials for Kopf (its login handler)
    apply_child(obj, owner_uid) -> str   "created" | "patched" | "unchanged"
    scale_to_zero(namespace, name, owner_uid) -> str
                                         a StatefulSet of the run to 0 replicas: "scaled" |
                                         "unchanged" | "absent" | "foreign"
    list_pods(namespace, run_name)       the run's pods (label oreal.io/run=<name>)
    read_secret(namespace, name)         decoded data, or None if there is no such Secret

`apply_child` creates an absent child and otherwise replaces only the fields the operator owns
(`OWNED`) with a JSON patch, and only when they differ: StatefulSet replicas directly, the other
owned fields through a hash of their rendered form kept in the annotation `oreal.io/applied-hash`
(the API server adds defaults to pod templates, so the live template never equals the rendered
one). Fields the operator does not own (scheduling defaults, other controllers' annotations) are
never touched, nor is an object of the same name that another owner controls.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import kopf
import kubernetes
from kubernetes.client.exceptions import ApiException

from oreal_operator.naming import RUN_LABEL

HASH_ANNOTATION = "oreal.io/applied-hash"

# kind -> JSON pointers of the fields the operator owns after creation (the others are immutable
# or belong to the API server: a StatefulSet's selector, a Service's clusterIP).
OWNED: dict[str, tuple[str, ...]] = {
    "ConfigMap": ("/data",),
    "Service": ("/spec/selector", "/spec/ports", "/spec/publishNotReadyAddresses"),
    "StatefulSet": ("/spec/replicas", "/spec/template"),
}
HASHED_EXCEPT = ("/spec/replicas",)  # compared with the live value itself


class ForeignObjectError(RuntimeError):
    """A child's name is taken by an object this run does not control."""


def configure() -> None:
    """Load the client's configuration: in a pod its service account, elsewhere the kubeconfig
    ($KUBECONFIG read now, not when `kubernetes` was imported)."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))


def connection_info() -> kopf.ConnectionInfo:
    """Kopf's credentials from the client's configuration, so that both talk to the same server."""
    config = kubernetes.client.Configuration.get_default_copy()
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0] if parts else None)
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


def _core() -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api()


def _apps() -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api()


def _calls(kind: str) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """(read, create, patch) of the typed API for `kind`."""
    if kind == "ConfigMap":
        api = _core()
        return (
            api.read_namespaced_config_map,
            api.create_namespaced_config_map,
            api.patch_namespaced_config_map,
        )
    if kind == "Service":
        api = _core()
        return api.read_namespaced_service, api.create_namespaced_service, api.patch_namespaced_service
    if kind == "StatefulSet":
        api = _apps()
        return (
            api.read_namespaced_stateful_set,
            api.create_namespaced_stateful_set,
            api.patch_namespaced_stateful_set,
        )
    raise ValueError(f"the operator does not manage {kind} objects")


def _json(response: Any) -> dict[str, Any]:
    return json.loads(response.data or b"{}")


def pointer_get(obj: dict[str, Any], pointer: str) -> Any:
    """obj at a JSON pointer such as /spec/template (None where a key is missing)."""
    value: Any = obj
    for part in pointer.strip("/").split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(part.replace("~1", "/").replace("~0", "~"))
    return value


def owned_hash(obj: dict[str, Any]) -> str:
    owned = {p: pointer_get(obj, p) for p in OWNED[obj["kind"]] if p not in HASHED_EXCEPT}
    return hashlib.sha256(json.dumps(owned, sort_keys=True).encode()).hexdigest()[:16]


def with_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` (copied) with the hash annotation of its owned fields."""
    meta = dict(obj["metadata"])
    meta["annotations"] = {**meta.get("annotations", {}), HASH_ANNOTATION: owned_hash(obj)}
    return {**obj, "metadata": meta}


def patch_ops(desired: dict[str, Any], live: dict[str, Any]) -> list[dict[str, Any]]:
    """JSON patch that replaces the owned fields of `live` where they differ from `desired`."""
    ops: list[dict[str, Any]] = []
    for pointer in HASHED_EXCEPT:
        if pointer in OWNED[desired["kind"]] and pointer_get(desired, pointer) != pointer_get(live, pointer):
            ops.append({"op": "add", "path": pointer, "value": pointer_get(desired, pointer)})
    digest = owned_hash(desired)
    annotations = (live.get("metadata") or {}).get("annotations")
    if (annotations or {}).get(HASH_ANNOTATION) != digest:
        for pointer in OWNED[desired["kind"]]:
            if pointer in HASHED_EXCEPT:
                continue
            value = pointer_get(desired, pointer)
            if value is not None:
                ops.append({"op": "add", "path": pointer, "value": value})
            elif pointer_get(live, pointer) is not None:
                ops.append({"op": "remove", "path": pointer})
        if annotations is None:
            ops.append({"op": "add", "path": "/metadata/annotations", "value": {HASH_ANNOTATION: digest}})
        else:
            key = HASH_ANNOTATION.replace("~", "~0").replace("/", "~1")
            ops.append({"op": "add", "path": f"/metadata/annotations/{key}", "value": digest})
    return ops


def controlled_by(live: dict[str, Any], owner_uid: str | None) -> bool:
    refs = (live.get("metadata") or {}).get("ownerReferences") or []
    return owner_uid is None or any(r.get("uid") == owner_uid and r.get("controller") for r in refs)


def apply_child(obj: dict[str, Any], owner_uid: str | None) -> str:
    """Create `obj` if absent, else patch the owned fields that differ (see the module docstring).

    Two rounds of the operator (the apply handler and the status timer stopping a run) can meet
    here: a create that finds the name taken (409) reads the object and patches it instead.
    """
    read, create, patch = _calls(obj["kind"])
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    live = _read(read, name, namespace)
    if live is None:
        try:
            create(namespace, with_hash(obj), _preload_content=False)
            return "created"
        except ApiException as err:
            if err.status != 409:
                raise
        live = _read(read, name, namespace)
        if live is None:
            raise RuntimeError(
                f"{obj['kind']} {namespace}/{name}: create said it exists, read says it does not"
            )
    if not controlled_by(live, owner_uid):
        raise ForeignObjectError(
            f"{obj['kind']} {namespace}/{name} exists and is not controlled by this OREALRun; "
            "delete or rename it, the operator will not change it"
        )
    ops = patch_ops(obj, live)
    if not ops:
        return "unchanged"
    patch(name, namespace, ops, _preload_content=False)
    return "patched"


def scale_to_zero(namespace: str, name: str, owner_uid: str | None) -> str:
    """Set the StatefulSet `name` to 0 replicas (its pods go) if the run `owner_uid` controls it.

    Only /spec/replicas is patched: the template stays as it was, so a run whose spec is refused
    keeps the children of its last good spec. Absent or foreign objects (or no uid to tell) are
    left alone.
    """
    read, _, patch = _calls("StatefulSet")
    live = _read(read, name, namespace)
    if live is None:
        return "absent"
    if owner_uid is None or not controlled_by(live, owner_uid):
        return "foreign"
    if pointer_get(live, "/spec/replicas") == 0:
        return "unchanged"
    patch(name, namespace, [{"op": "add", "path": "/spec/replicas", "value": 0}], _preload_content=False)
    return "scaled"


def api_message(err: ApiException) -> str:
    """The API server's reason for refusing a request, as one line (its Status.message)."""
    text = ""
    try:
        body = json.loads(err.body or b"{}")
        text = str(body.get("message") or "") if isinstance(body, dict) else ""
    except (TypeError, ValueError):
        text = ""
    return " ".join((text or f"{err.status} {err.reason}").split())


def _read(read: Callable[..., Any], name: str, namespace: str) -> dict[str, Any] | None:
    try:
        return _json(read(name, namespace, _preload_content=False))
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def list_pods(namespace: str, run_name: str) -> list[dict[str, Any]]:
    """The run's pods. Filtered here as well, so that a server ignoring selectors does no harm."""
    selector = f"{RUN_LABEL}={run_name}"
    items = _json(_core().list_namespaced_pod(namespace, label_selector=selector, _preload_content=False))
    pods = items.get("items") or []
    return [p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get(RUN_LABEL) == run_name]


def read_secret(namespace: str, name: str) -> dict[str, str] | None:
    """The Secret's data, base64-decoded (values are credentials: never log them)."""
    try:
        secret = _json(_core().read_namespaced_secret(name, namespace, _preload_content=False))
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    data = secret.get("data") or {}
    return {key: base64.b64decode(value).decode("utf-8", "replace") for key, value in data.items()}
