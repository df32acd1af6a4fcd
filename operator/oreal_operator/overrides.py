"""Apply `spec.<role>.podTemplate` to the pod template the operator renders (pure).

The merge rule is documented once, in `oreal.spec.podtemplate`; this module implements it and
names the field of anything it refuses (RenderError).
"""

from __future__ import annotations

import copy
from typing import Any

from oreal.spec.podtemplate import PodTemplateOverrides
from oreal_operator.errors import RenderError

# Variables the workers rely on: set by the operator only.
RESERVED_ENV = frozenset(
    {
        "OREAL_RUN",
        "OREAL_NAMESPACE",
        "OREAL_RUN_URI",
        "OREAL_INDEX",
        "OREAL_REPLICAS",
        "OREAL_METRICS_PORT",
        "OREAL_WORK_DIR",
    }
)
REPLACEABLE_VOLUMES = frozenset({"work", "tmp", "home", "dshm"})


def apply_overrides(template: dict[str, Any], o: PodTemplateOverrides | None, role: str) -> dict[str, Any]:
    """`template` (a PodTemplateSpec, not changed) with the overrides of `role` applied."""
    if o is None:
        return template
    out = copy.deepcopy(template)
    field = f"spec.{role}.podTemplate"
    pod = out["spec"]
    for key, value in (
        ("serviceAccountName", o.service_account_name),
        ("priorityClassName", o.priority_class_name),
        ("affinity", o.affinity),
    ):
        if value is not None:
            pod[key] = copy.deepcopy(value)
    if o.topology_spread_constraints:
        pod["topologySpreadConstraints"] = copy.deepcopy(o.topology_spread_constraints)
    if o.pod_security_context is not None:
        pod["securityContext"] = copy.deepcopy(o.pod_security_context)
    containers = pod.get("initContainers", []) + pod["containers"]
    for container in containers:
        if o.security_context is not None:
            container["securityContext"] = copy.deepcopy(o.security_context)
        container["env"] = _merge_env(container.get("env", []), o.env, field)
    _merge_volumes(pod, o.volumes, field)
    worker = pod["containers"][0]
    _add_mounts(pod, worker, o.volume_mounts, field)
    _add_metadata(out["metadata"], "labels", o.labels, field)
    _add_metadata(out["metadata"], "annotations", o.annotations, field)
    return out


def _merge_env(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    out = list(ours)
    index = {entry["name"]: i for i, entry in enumerate(out)}
    for entry in theirs:
        name = entry["name"]
        if name in RESERVED_ENV:
            raise RenderError(f"{field}.env: {name} is set by the operator (the workers rely on it)")
        if name in index:
            out[index[name]] = copy.deepcopy(entry)
        else:
            out.append(copy.deepcopy(entry))
    return out


def _merge_volumes(pod: dict[str, Any], theirs: list[dict[str, Any]], field: str) -> None:
    volumes = pod.setdefault("volumes", [])
    index = {v["name"]: i for i, v in enumerate(volumes)}
    for volume in theirs:
        name = volume["name"]
        if name in index and name not in REPLACEABLE_VOLUMES:
            raise RenderError(
                f"{field}.volumes: {name!r} is the operator's; only {', '.join(sorted(REPLACEABLE_VOLUMES))} "
                "may be replaced"
            )
        if name in index:
            volumes[index[name]] = copy.deepcopy(volume)
        else:
            volumes.append(copy.deepcopy(volume))


def _add_mounts(
    pod: dict[str, Any], worker: dict[str, Any], theirs: list[dict[str, Any]], field: str
) -> None:
    volumes = {v["name"] for v in pod.get("volumes", [])}
    ours = {
        m["mountPath"].rstrip("/")
        for c in [worker, *pod.get("initContainers", [])]
        for m in c.get("volumeMounts", [])
    }
    mounts = worker.setdefault("volumeMounts", [])
    for i, mount in enumerate(theirs):
        if mount["name"] not in volumes:
            raise RenderError(f"{field}.volumeMounts[{i}]: no volume named {mount['name']!r}")
        if mount["mountPath"].rstrip("/") in ours:
            raise RenderError(
                f"{field}.volumeMounts[{i}]: {mount['mountPath']} is the operator's mount; replace its volume "
                "(work, tmp, home or dshm) instead"
            )
        mounts.append(copy.deepcopy(mount))


def _add_metadata(meta: dict[str, Any], key: str, theirs: dict[str, str], field: str) -> None:
    ours = meta.setdefault(key, {})
    taken = sorted(k for k in theirs if k in ours)
    if taken:
        raise RenderError(f"{field}.{key}: {', '.join(taken)} set by the operator")
    ours.update(theirs)
