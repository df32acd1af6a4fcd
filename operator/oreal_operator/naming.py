"""Names, labels and owner references of the objects the operator creates for one OREALRun.

One place decides what every child is called and how it is labelled, so that the renderer, the
controller (which maps a child's events back to its run) and the status fold agree.

A run `NAME` gets a ConfigMap `NAME-spec` (the frozen spec) and a JobSet `NAME` with the
replicatedJobs rollout, verifier and trainer, one Job each (`NAME-<role>-0`). The JobSet
controller names pods `NAME-<role>-0-<index>-<random>` and gives them the DNS hostname
`NAME-<role>-0-<index>.NAME` (the JobSet's headless Service), which torchrun meets on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oreal.spec.models import API_GROUP, API_VERSION, KIND

ROLES = ("rollout", "verifier", "trainer")
RUN_LABEL = "oreal.io/run"
ROLE_LABEL = "oreal.io/role"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"

APP_NAME = "oreal"
MANAGED_BY = "oreal-operator"


def jobset_name(run_name: str) -> str:
    """The run's JobSet (and its headless Service, the pods' DNS subdomain) is named after the run."""
    return run_name


def spec_configmap_name(run_name: str) -> str:
    """The ConfigMap holding the frozen spec: `<run>-spec`."""
    return f"{run_name}-spec"


def job_name(run_name: str, role: str) -> str:
    """The one Job of `role`'s replicatedJob, as the JobSet controller names it."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return f"{jobset_name(run_name)}-{role}-0"


def pod_hostname(run_name: str, role: str, index: int) -> str:
    """The DNS hostname of pod `index` (its completion index) of `role`."""
    return f"{job_name(run_name, role)}-{index}"


def pod_address(run_name: str, role: str, index: int, namespace: str) -> str:
    """The pod's DNS name under the JobSet's headless Service (enableDNSHostnames)."""
    return f"{pod_hostname(run_name, role, index)}.{jobset_name(run_name)}.{namespace}.svc"


def labels(run_name: str, role: str | None = None) -> dict[str, str]:
    """Recommended app.kubernetes.io labels plus oreal.io/run (and oreal.io/role for a role's objects)."""
    out = {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": run_name,
        MANAGED_BY_LABEL: MANAGED_BY,
        "app.kubernetes.io/part-of": APP_NAME,
        RUN_LABEL: run_name,
    }
    if role is not None:
        out |= {"app.kubernetes.io/component": role, ROLE_LABEL: role}
    return out


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """The controller owner reference to an OREALRun (a resource body with metadata).

    blockOwnerDeletion makes a foreground deletion of the run wait for its children. Clusters with the
    OwnerReferencesPermissionEnforcement admission plugin (e.g. OpenShift) let only a client that may
    `update` orealruns/finalizers set it; the chart's RBAC grants that.
    """
    metadata = body["metadata"]
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owner_run(obj: Mapping[str, Any]) -> str | None:
    """The name of the OREALRun that controls `obj` (a child), or None."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if (
            ref.get("controller")
            and ref.get("kind") == KIND
            and ref.get("apiVersion", "").startswith(API_GROUP)
        ):
            return ref.get("name")
    return None


def controlled_by(obj: Mapping[str, Any], owner_uid: str | None) -> bool:
    """`obj` is controlled by the run with uid `owner_uid` (any owner when the uid is unknown)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return owner_uid is None or any(r.get("uid") == owner_uid and r.get("controller") for r in refs)
