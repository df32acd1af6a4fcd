"""Render what the operator creates for one OREALRun: pure, no I/O, deterministic.

`render_run(run, opts)` returns, in this order (`oreal render RUN.yaml` prints exactly this):

- ConfigMap `<run>-spec`, key `spec.yaml`: the frozen spec, byte-identical to what the local runner
  writes (`oreal.spec.frozen.frozen_spec`), mounted into every pod's init container;
- JobSet `<run>` (`oreal_operator.jobset`): replicatedJobs rollout, verifier and trainer.

Every object carries metadata.namespace, `naming.labels()` and the owner reference when given,
set in one helper (`_metadata`). The JobSet also carries the run's own labels (Kueue reads
`kueue.x-k8s.io/queue-name` and `kueue.x-k8s.io/priority-class` there), the run's
`kueue.x-k8s.io/*` annotations, and the operator's annotations: the spec hash (`spec_hash`, what
the JobSet was made from), the render version and the worker image it was rendered with, and the
gang restarts of the run's earlier JobSets. It is created suspended when spec.suspend is set or
the run has a Kueue queue name (Kueue admits it, and only Kueue resumes it).

`check_runnable` rejects specs that validate but cannot run on Kubernetes (RenderError, the message
names the field): storage.uri must be a shared bucket (s3:// or gs://), the run's name must make
valid names for the JobSet's Service, Jobs and pods, and a GPU quantity given in resources must
agree with the role's GPU count. Model and data paths are not checked: a plain path there is
legitimate when it exists inside the worker image, and only the pod can tell.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from oreal.spec.frozen import frozen_spec
from oreal.spec.models import ObjectMeta, OREALRun
from oreal_operator.errors import RenderError
from oreal_operator.jobset import build_jobset
from oreal_operator.naming import ROLES, jobset_name, labels, spec_configmap_name
from oreal_operator.pods import SPEC_KEY, accelerator, gpu_field, role_fields, role_gpus, role_replicas

# Bumped whenever the rendered JobSet changes for the same spec. A JobSet rendered by another
# version is left as it is (an operator upgrade never restarts a run); only a JobSet of this
# version is compared field by field and restored when someone edited it.
RENDER_VERSION = 1
SHARED_SCHEMES = ("s3", "s3a", "gs", "gcs")
MAX_NAME = 63  # Service names (RFC 1035 labels) and pod names
POD_SUFFIX = "-abcde"  # the 5 random characters the Job controller adds to a pod's name
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# Annotations written by Kubernetes, kubectl, Kopf or this operator change with every apply; they
# are not part of the run the user wrote and stay out of the frozen spec.
SYSTEM_ANNOTATION_DOMAINS = ("kubernetes.io", "k8s.io", "kopf.zalando.org", "oreal.io")
KUEUE_PREFIX = "kueue.x-k8s.io/"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
# The operator's annotations on the JobSet.
SPEC_HASH = "oreal.io/spec-hash"
RENDERED_BY = "oreal.io/render-version"
WORKER_IMAGE = "oreal.io/worker-image"
RESTARTS_BEFORE = "oreal.io/restarts-before"


@dataclass(frozen=True)
class RenderOptions:
    image: str  # the run's worker image (pinned at first render); spec.<role>.image overrides it
    namespace: str
    owner: dict | None = None  # naming.owner_reference(body)
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()  # Secret names in the run's namespace (pod imagePullSecrets)
    restarts_before: int = 0  # gang restarts of the run's earlier JobSets


def check_runnable(run: OREALRun) -> None:
    """Raise RenderError if `run` cannot run on Kubernetes (see the module docstring)."""
    name = run.metadata.name
    if not DNS_1035.fullmatch(name):
        raise RenderError(
            f"metadata.name {name!r} must start with a letter on Kubernetes: the JobSet's headless "
            "Service, which gives the pods their DNS names, is named after it"
        )
    for role in ROLES:
        last = role_replicas(run.spec, role) - 1
        pod = f"{jobset_name(name)}-{role}-0-{last}{POD_SUFFIX}"
        if len(pod) > MAX_NAME:
            raise RenderError(
                f"metadata.name {name!r} is too long for {role_replicas(run.spec, role)} {role} pods: their "
                f"names ({pod!r}) must stay within {MAX_NAME} characters"
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
    resource = accelerator(run.spec, role)
    resources = role_fields(run.spec, role).resources
    for kind in ("limits", "requests"):
        given = getattr(resources, kind).get(resource)
        if given is not None and str(given) != str(gpus):
            raise RenderError(
                f"spec.{role}.resources.{kind}[{resource!r}] is {given} but {gpu_field(role)} is "
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


def queue_name(run: OREALRun) -> str | None:
    """The run's Kueue LocalQueue (label kueue.x-k8s.io/queue-name), or None."""
    return run.metadata.labels.get(QUEUE_LABEL) or None


def spec_hash(run: OREALRun, image: str) -> str:
    """What the run's JobSet is made from, as 16 hex digits: the spec as written (values other
    than the defaults, so that a field a newer operator adds changes nothing), without what the
    operator applies in place (suspend, activeDeadlineSeconds), plus the worker image and the
    Kueue labels. A JobSet whose hash differs is re-created: the gang restarts once, on purpose."""
    spec = run.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for key in ("suspend", "activeDeadlineSeconds"):
        spec.pop(key, None)
    kueue = {k: run.metadata.labels[k] for k in (QUEUE_LABEL, PRIORITY_LABEL) if k in run.metadata.labels}
    text = json.dumps({"spec": spec, "image": image, "kueue": kueue}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _metadata(name: str, run_name: str, opts: RenderOptions, **extra: dict[str, str]) -> dict[str, Any]:
    """metadata of every child: name, namespace, labels (extra ones first, ours win), annotations
    when given, and the owner reference when given."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": opts.namespace,
        "labels": extra.get("labels", {}) | labels(run_name),
    }
    if extra.get("annotations"):
        meta["annotations"] = extra["annotations"]
    if opts.owner is not None:
        meta["ownerReferences"] = [dict(opts.owner)]
    return meta


def build_spec_configmap(run: OREALRun, opts: RenderOptions) -> dict[str, Any]:
    name = run.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(spec_configmap_name(name), name, opts),
        "data": {SPEC_KEY: frozen_text(run)},
    }


def render_jobset(run: OREALRun, opts: RenderOptions) -> dict[str, Any]:
    name = run.metadata.name
    annotations = {k: v for k, v in run.metadata.annotations.items() if k.startswith(KUEUE_PREFIX)}
    annotations |= {
        SPEC_HASH: spec_hash(run, opts.image),
        RENDERED_BY: str(RENDER_VERSION),
        WORKER_IMAGE: opts.image,
        RESTARTS_BEFORE: str(opts.restarts_before),
    }
    metadata = _metadata(
        jobset_name(name), name, opts, labels=dict(run.metadata.labels), annotations=annotations
    )
    return build_jobset(
        run,
        metadata=metadata,
        image=opts.image,
        namespace=opts.namespace,
        image_pull_policy=opts.image_pull_policy,
        image_pull_secrets=opts.image_pull_secrets,
        suspend=run.spec.suspend or queue_name(run) is not None,
        restarts_before=opts.restarts_before,
    )


def render_run(run: OREALRun, opts: RenderOptions) -> list[dict[str, Any]]:
    """The ConfigMap and the JobSet of `run` (see the module docstring).

    Raises RenderError when the spec cannot run on Kubernetes.
    """
    check_runnable(run)
    return [build_spec_configmap(run, opts), render_jobset(run, opts)]
