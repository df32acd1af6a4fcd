"""Render the Kubernetes children of one OREALRun: pure, no I/O, deterministic.

`render_children(run, opts)` returns, in this order:

- ConfigMap `<run>-spec`, key `spec.yaml`: the frozen spec, byte-identical to what the local runner
  writes (`oreal.workers.init.frozen_spec`), mounted into every pod's init container;
- headless Service `<run>-trainer` (port 29500, not-ready addresses published) for torchrun's
  rendezvous at trainer pod 0;
- StatefulSets `<run>-rollout` (rollout.replicas pods), `<run>-verifier` (verifier.replicas) and
  `<run>-trainer` (trainer.nodes), podManagementPolicy Parallel; see `oreal_operator.pods`.

Every object carries metadata.namespace, `naming.labels()` and the owner reference when given, set in
one helper (`_metadata`). A stopped run (suspended, finished, failed, past its deadline) renders the
same objects with 0 replicas: the pods go, the bucket and the pod templates stay.

`check_runnable` rejects specs that validate but cannot run on Kubernetes (RenderError, the message
names the field). It checks only what the operator itself can know: storage.uri must be a shared
bucket (s3:// or gs://), the run's name must make valid child names, and a GPU quantity given in
resources must agree with the role's GPU count. Model and data paths are not checked: a plain path
there is legitimate when it exists inside the worker image (models baked into images), and only the
pod can tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from oreal.spec.models import ObjectMeta, OREALRun
from oreal.workers.init import frozen_spec
from oreal_operator.naming import ROLES, child_name, labels, selector, spec_configmap_name
from oreal_operator.pods import (
    GPU_RESOURCE,
    SPEC_KEY,
    TORCHRUN_PORT,
    TORCHRUN_PORT_NAME,
    gpu_field,
    pod_template,
    role_fields,
    role_gpus,
    role_replicas,
)

SHARED_SCHEMES = ("s3", "s3a", "gs", "gcs")
# A StatefulSet's pods carry the label controller-revision-hash=<statefulset>-<hash of up to 10
# characters>, and label values stop at 63 characters: the longest child name must fit in 52.
MAX_CHILD_NAME = 52
MAX_RUN_NAME = MAX_CHILD_NAME - max(len(f"-{role}") for role in ROLES)
# Annotations written by Kubernetes, kubectl, Kopf or this operator change with every apply or
# handler run; they are not part of the run the user wrote and stay out of the frozen spec.
SYSTEM_ANNOTATION_DOMAINS = ("kubernetes.io", "k8s.io", "kopf.zalando.org", "oreal.io")


class RenderError(ValueError):
    """The spec is valid but cannot run on Kubernetes; the message names the field."""


@dataclass(frozen=True)
class RenderOptions:
    image: str  # the workers' image; spec.<role>.image overrides it
    namespace: str
    owner: dict | None = None  # naming.owner_reference(body)
    image_pull_policy: str = "IfNotPresent"
    service_account: str | None = None
    image_pull_secrets: tuple[str, ...] = ()  # Secret names in the run's namespace (pod imagePullSecrets)


def check_runnable(run: OREALRun) -> None:
    """Raise RenderError if `run` cannot run on Kubernetes (see the module docstring)."""
    name = run.metadata.name
    if not name[0].isalpha():
        raise RenderError(
            f"metadata.name {name!r} must start with a letter on Kubernetes: the trainer's headless "
            f"Service {child_name(name, 'trainer')!r} is named after it"
        )
    if len(name) > MAX_RUN_NAME:
        raise RenderError(
            f"metadata.name {name!r} has {len(name)} characters; at most {MAX_RUN_NAME} fit on Kubernetes "
            f"(StatefulSet {child_name(name, 'verifier')!r} must stay within {MAX_CHILD_NAME})"
        )
    _check_storage(run.spec.storage.uri)
    for role in ROLES:
        _check_gpus(run, role)


def _check_storage(uri: str | None) -> None:
    hint = "use a bucket all pods can reach, e.g. s3://BUCKET/runs/NAME or gs://BUCKET/runs/NAME"
    if not uri:
        raise RenderError(f"spec.storage.uri is required on Kubernetes (the pods share no folder): {hint}")
    scheme = urlsplit(uri).scheme if "://" in uri else ""
    if scheme in ("", "file", "local"):
        raise RenderError(
            f"spec.storage.uri {uri!r} is a local folder, but pods on different nodes share no folder: {hint}"
        )
    if scheme not in SHARED_SCHEMES:
        raise RenderError(f"spec.storage.uri {uri!r}: scheme {scheme}:// is not a shared bucket; {hint}")


def _check_gpus(run: OREALRun, role: str) -> None:
    gpus = role_gpus(run.spec, role)
    resources = role_fields(run.spec, role).resources
    for kind in ("limits", "requests"):
        given = getattr(resources, kind).get(GPU_RESOURCE)
        if given is not None and str(given) != str(gpus):
            raise RenderError(
                f"spec.{role}.resources.{kind}[{GPU_RESOURCE!r}] is {given} but {gpu_field(role)} is "
                f"{gpus}: set the GPU count there (the operator adds the limit) and drop it from resources"
            )


def frozen_text(run: OREALRun) -> str:
    """The frozen spec: `frozen_spec(run, storage.uri)` of the run as the user wrote it.

    Server-side metadata (uid, resourceVersion, managedFields, ...) and system annotations
    (kubectl's last-applied-configuration, Kopf's state) are dropped, so the text changes only
    when the user's resource does, and a run applied from a file freezes to the same bytes as
    `oreal run` on that file.
    """
    meta = run.metadata
    written = ObjectMeta(
        name=meta.name,
        namespace=meta.namespace,
        labels=dict(meta.labels),
        annotations={k: v for k, v in meta.annotations.items() if not _system_key(k)},
    )
    clean = run.model_copy(update={"metadata": written, "status": None})
    return frozen_spec(clean, run.spec.storage.uri)


def _system_key(key: str) -> bool:
    if "/" not in key:
        return False
    domain = key.split("/", 1)[0]
    return any(domain == d or domain.endswith(f".{d}") for d in SYSTEM_ANNOTATION_DOMAINS)


def _metadata(name: str, run_name: str, role: str | None, opts: RenderOptions) -> dict[str, Any]:
    """metadata of every child: name, namespace, labels, and the owner reference when given."""
    meta: dict[str, Any] = {"name": name, "namespace": opts.namespace, "labels": labels(run_name, role)}
    if opts.owner is not None:
        meta["ownerReferences"] = [dict(opts.owner)]
    return meta


def build_spec_configmap(run: OREALRun, opts: RenderOptions) -> dict[str, Any]:
    name = run.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(spec_configmap_name(name), name, None, opts),
        "data": {SPEC_KEY: frozen_text(run)},
    }


def build_trainer_service(run: OREALRun, opts: RenderOptions) -> dict[str, Any]:
    """Headless Service giving trainer pods stable DNS names (`<run>-trainer-0.<run>-trainer`)."""
    name = run.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(child_name(name, "trainer"), name, "trainer", opts),
        "spec": {
            "clusterIP": "None",
            # torchrun on every node dials pod 0 while it starts, before any pod is Ready
            "publishNotReadyAddresses": True,
            "selector": selector(name, "trainer"),
            "ports": [
                {
                    "name": TORCHRUN_PORT_NAME,
                    "port": TORCHRUN_PORT,
                    "targetPort": TORCHRUN_PORT,
                    "protocol": "TCP",
                }
            ],
        },
    }


def build_statefulset(run: OREALRun, role: str, opts: RenderOptions, *, stopped: bool) -> dict[str, Any]:
    """One role's StatefulSet. serviceName is `<run>-<role>`; only the trainer's Service exists
    (rollout and verifier pods need no stable DNS names)."""
    name = run.metadata.name
    spec = run.spec
    image = role_fields(spec, role).image or opts.image
    template = pod_template(
        spec,
        role,
        run_name=name,
        namespace=opts.namespace,
        image=image,
        image_pull_policy=opts.image_pull_policy,
        service_account=opts.service_account,
        image_pull_secrets=opts.image_pull_secrets,
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(child_name(name, role), name, role, opts),
        "spec": {
            "replicas": 0 if stopped else role_replicas(spec, role),
            "serviceName": child_name(name, role),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector(name, role)},
            "template": template,
        },
    }


def render_children(run: OREALRun, opts: RenderOptions, *, stopped: bool = False) -> list[dict[str, Any]]:
    """ConfigMap, trainer Service and the three StatefulSets of `run` (see the module docstring).

    `stopped` (or spec.suspend) renders 0 replicas everywhere; the pod templates do not change.
    Raises RenderError when the spec cannot run on Kubernetes.
    """
    check_runnable(run)
    stopped = stopped or run.spec.suspend
    return [
        build_spec_configmap(run, opts),
        build_trainer_service(run, opts),
        *(build_statefulset(run, role, opts, stopped=stopped) for role in ROLES),
    ]
