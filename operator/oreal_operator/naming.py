"""Names, labels and owner references of the objects the operator creates for one OREALRun.

One place decides what every child is called and how it is labelled, so that the renderer, the
handlers (which look children up) and the status fold (which lists a run's pods) agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oreal.spec.models import API_GROUP, API_VERSION, KIND

ROLES = ("rollout", "verifier", "trainer")
RUN_LABEL = "oreal.io/run"
ROLE_LABEL = "oreal.io/role"

APP_NAME = "oreal"
MANAGED_BY = "oreal-operator"


def child_name(run_name: str, role: str) -> str:
    """The StatefulSet of `role` (and, for the trainer, its headless Service): `<run>-<role>`."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return f"{run_name}-{role}"


def spec_configmap_name(run_name: str) -> str:
    """The ConfigMap holding the frozen spec: `<run>-spec`."""
    return f"{run_name}-spec"


def labels(run_name: str, role: str | None = None) -> dict[str, str]:
    """Recommended app.kubernetes.io labels plus oreal.io/run (and oreal.io/role for a role's objects)."""
    out = {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": run_name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": APP_NAME,
        RUN_LABEL: run_name,
    }
    if role is not None:
        out |= {"app.kubernetes.io/component": role, ROLE_LABEL: role}
    return out


def selector(run_name: str, role: str) -> dict[str, str]:
    """The labels that select one role's pods of one run (a StatefulSet's matchLabels)."""
    return {RUN_LABEL: run_name, ROLE_LABEL: role}


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """The controller owner reference to an OREALRun (a Kopf body or a plain dict with metadata).

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
