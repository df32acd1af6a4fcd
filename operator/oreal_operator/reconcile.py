"""What each handler does, apart from Kopf: parse the resource, apply its children, observe it.

    parse(body) -> OREALRun                              SpecError names the field
    stopped(run, status) -> bool                         render 0 replicas (suspended or finished)
    observe(run, body, now) -> Observation               pods + bucket folded by status.fold_status,
                                                         and a spec change the bucket refuses
    apply_run(body, config, *, now) -> dict              child -> created | patched | unchanged
    refuse(body, message, now) -> OREALRunStatus         SpecInvalid; the run's pods scaled to 0
    tick(body, config, now) -> (old, new, event)         one round of the status timer
    status_patch(status) -> dict                         camelCase, None for fields to clear
    record_phase(namespace, name, phase)                 the oreal_runs{namespace, phase} gauge

A spec that cannot run is refused (SpecInvalid), whatever says so: the models (SpecError), the
renderer (RenderError), the run's bucket (`SpecRejected`: a started run's spec may change only in
its run control, `oreal.workers.init.spec_conflict`), or the API server (`SpecRejected`: a child
answered 400/422). A refused run's StatefulSets are scaled to 0 (its pods go, the bucket and the
templates of its last good spec stay); once the spec is fixed or reverted the run is rendered
again and its pods resume from the bucket.

Every function takes the Kopf body as a plain mapping, so the tests can call them without Kopf.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from oreal.spec.loader import SpecError, run_from_dict
from oreal.spec.models import OREALRun, OREALRunStatus
from oreal.workers.init import spec_conflict
from oreal_operator import kube
from oreal_operator.bucket_view import BucketView, read_bucket
from oreal_operator.config import OperatorConfig
from oreal_operator.metrics import PHASES, RUNS
from oreal_operator.naming import ROLES, child_name, owner_reference
from oreal_operator.render import RenderError, RenderOptions, check_runnable, frozen_text, render_children
from oreal_operator.status import SPEC_INVALID, finished, fold_status, has_true, spec_invalid_status

# The API server refuses the object itself (bad field values): retrying the same spec cannot help.
# 409 (conflict), 5xx and connection errors are passing trouble, retried.
REJECTED_STATUSES = (400, 422)
MAX_MESSAGE_CHARS = 300


class SpecRejected(ValueError):
    """The spec parses and renders but cannot run as it is (the bucket or the API server says so)."""


class BucketUnavailable(RuntimeError):
    """The bucket of a started run cannot be read, so whether it takes this spec is unknown (retried)."""


# Everything that makes a spec SpecInvalid (and the apply handler's error permanent).
INVALID_SPEC = (SpecError, RenderError, SpecRejected)


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A deep, plain-dict copy of a Kopf body (or any JSON-like mapping)."""
    return json.loads(json.dumps({k: body[k] for k in body}, default=dict))


def parse(body: Mapping[str, Any]) -> OREALRun:
    """The resource as the spec models see it; status and server fields other than metadata are dropped."""
    data = plain(body)
    meta = data.get("metadata") or {}
    source = f"OREALRun {meta.get('namespace', '')}/{meta.get('name', '?')}"
    return run_from_dict(
        {k: data[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in data}, source=source
    )


def previous_status(body: Mapping[str, Any]) -> OREALRunStatus | None:
    """The status on the resource, or None if there is none the models can read."""
    status = plain(body).get("status") or {}
    known = {f.alias or name for name, f in OREALRunStatus.model_fields.items()}
    try:
        return OREALRunStatus.model_validate({k: v for k, v in status.items() if k in known})
    except ValidationError:
        return None


def stopped(run: OREALRun, status: OREALRunStatus | None) -> bool:
    """Render 0 replicas: the run is suspended, or it finished (a spec fixed after SpecInvalid runs again)."""
    return run.spec.suspend or finished(status)


def render_options(body: Mapping[str, Any], config: OperatorConfig) -> RenderOptions:
    meta = body["metadata"]
    return RenderOptions(
        image=config.image,
        namespace=meta["namespace"],
        owner=owner_reference(body),
        image_pull_secrets=config.image_pull_secrets,
    )


# ---------------------------------------------------------------- observing


@dataclass(frozen=True)
class Observation:
    status: OREALRunStatus  # folded from the pods and the bucket
    live_pods: int  # pods not being deleted
    conflict: str | None = None  # why the bucket refuses this spec (a started run's other spec)
    bucket_error: str | None = None  # the bucket could not be read (then `conflict` is unknown)


def observe(run: OREALRun, body: Mapping[str, Any], now: datetime) -> Observation:
    """The run's pods and bucket, folded into a status.

    A finished run (Succeeded/Failed for good) whose pods are all gone keeps its status without
    reading the bucket: nothing in it can change that status any more.
    """
    meta = body["metadata"]
    previous = previous_status(body)
    pods = kube.list_pods(meta["namespace"], meta["name"])
    view = BucketView() if finished(previous) and not pods else observe_bucket(run, meta["namespace"])
    live = sum(1 for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp"))
    status = fold_status(
        run,
        generation=meta.get("generation"),
        pods=pods,
        state=view.state,
        stats=view.stats,
        previous=previous,
        now=now,
        bucket_error=view.error,
    )
    return Observation(status, live, bucket_conflict(run, view), view.error)


def observe_bucket(run: OREALRun, namespace: str) -> BucketView:
    secret = None
    ref = run.spec.storage.secret_ref
    if ref is not None:
        secret = kube.read_secret(namespace, ref.name)
        if secret is None:
            return BucketView(error=f"Secret {namespace}/{ref.name} (spec.storage.secretRef) not found")
    return read_bucket(run.spec, secret)


def bucket_conflict(run: OREALRun, view: BucketView) -> str | None:
    """Why the bucket of a started run refuses this spec (`oreal worker init` would), or None."""
    if view.spec is None or not view.started:
        return None
    frozen = frozen_text(run)
    if view.spec == frozen:
        return None
    uri = run.spec.storage.uri
    try:
        conflict = spec_conflict(view.spec, frozen, source=f"{uri}/spec.yaml")
    except SpecError as err:
        conflict = f"its spec.yaml cannot be read ({err})"
    return None if conflict is None else _one_line(f"{uri}: {conflict}")


# ---------------------------------------------------------------- applying


def apply_run(body: Mapping[str, Any], config: OperatorConfig, *, now: datetime) -> dict[str, str]:
    """Create or patch the run's children. Raises one of INVALID_SPEC for a spec that cannot run.

    Whether the run is stopped (0 replicas) follows the status observed now (pods and bucket, as
    the timer sees them): the status on `body` may be older than the bucket, and a finished run
    must not be scaled up again by a handler that ran beside the timer. A spec the run's bucket
    refuses is refused here, before any child changes. The spec is checked for Kubernetes
    (check_runnable) once, by render_children: for a spec that fails it, the observation before
    it was wasted reads, never writes.
    """
    run = parse(body)
    seen = observe(run, body, now)
    if seen.conflict is not None:
        raise SpecRejected(seen.conflict)
    if seen.bucket_error is not None and started(previous_status(body)):
        # Fail closed: pods of a spec the bucket would refuse crash-loop and count as restarts.
        raise BucketUnavailable(
            f"cannot check the run's bucket before changing its pods: {seen.bucket_error}"
        )
    return apply_children(run, body, config, seen.status)


def started(status: OREALRunStatus | None) -> bool:
    """The status shows bucket progress (a policy version): the bucket holds this run's spec for good."""
    return status is not None and status.policy_version is not None


def apply_children(
    run: OREALRun, body: Mapping[str, Any], config: OperatorConfig, status: OREALRunStatus
) -> dict[str, str]:
    """Render `run` (stopped as `status` says; RenderError for a spec that cannot run) and apply
    its children. A child the API server refuses (400/422) raises SpecRejected with its message,
    remembered for the timer until an apply of the run succeeds."""
    children = render_children(run, render_options(body, config), stopped=stopped(run, status))
    meta = body["metadata"]
    actions: dict[str, str] = {}
    for child in children:
        key = f"{child['kind']}/{child['metadata']['name']}"
        try:
            actions[key] = kube.apply_child(child, meta.get("uid"))
        except ApiException as err:
            if err.status not in REJECTED_STATUSES:
                raise
            message = _one_line(f"the API server refused {key}: {kube.api_message(err)}")
            _rejections[_key(meta)] = (meta.get("generation"), message)
            raise SpecRejected(message) from None
    _rejections.pop(_key(meta), None)
    return actions


# Runs whose children the API server refused: run -> (metadata.generation, message). The timer
# keeps them SpecInvalid until the spec changes (the apply handler then tries again) instead of
# creating the refused child anew at every interval. Lost on restart: the resume handler applies.
_rejections: dict[str, tuple[int | None, str]] = {}


def _key(meta: Mapping[str, Any]) -> str:
    return str(meta.get("uid") or f"{meta['namespace']}/{meta['name']}")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_MESSAGE_CHARS]


def refuse(body: Mapping[str, Any], message: str, now: datetime) -> OREALRunStatus:
    """Scale the run's StatefulSets (those it controls) to 0 and return its SpecInvalid status.

    The templates, the ConfigMap and the bucket stay: a fixed or reverted spec resumes the run.
    """
    meta = body["metadata"]
    for role in ROLES:
        kube.scale_to_zero(meta["namespace"], child_name(meta["name"], role), meta.get("uid"))
    previous = previous_status(body)
    if finished(previous):  # as a Job: a finished run stays finished; the edit only gets an event
        return previous
    return invalid_status(body, message, now)


def invalid_status(body: Mapping[str, Any], message: str, now: datetime) -> OREALRunStatus:
    return spec_invalid_status(
        message, generation=body["metadata"].get("generation"), previous=previous_status(body), now=now
    )


# ---------------------------------------------------------------- the status timer


def tick(
    body: Mapping[str, Any], config: OperatorConfig, now: datetime
) -> tuple[OREALRunStatus | None, OREALRunStatus, tuple[str, str] | None]:
    """One status round: (old status, new status, event for a phase change or None).

    A spec that cannot run (see the module docstring) keeps SpecInvalid and its pods at 0 while
    it lasts. A run that is stopped (suspended, finished) is rendered stopped when it has just
    become so, and again whenever pods of it are still running (something scaled it up); a run
    that was SpecInvalid and is no longer is rendered again (its pods come back).
    """
    old = previous_status(body)
    try:
        new = _observe_and_apply(body, config, now, old)
    except INVALID_SPEC as err:
        new = refuse(body, str(err), now)
    meta = body["metadata"]
    record_phase(meta["namespace"], meta["name"], new.phase)
    return old, new, transition(old, new)


def _observe_and_apply(
    body: Mapping[str, Any], config: OperatorConfig, now: datetime, old: OREALRunStatus | None
) -> OREALRunStatus:
    run = parse(body)
    check_runnable(run)
    meta = body["metadata"]
    rejected = _rejections.get(_key(meta))
    if rejected is not None and rejected[0] == meta.get("generation"):
        raise SpecRejected(rejected[1])
    seen = observe(run, body, now)
    if seen.conflict is not None:
        raise SpecRejected(seen.conflict)
    refused = _condition_message(old, SPEC_INVALID)
    if seen.bucket_error is not None and refused is not None:
        raise SpecRejected(refused)  # fail closed: unknown whether the bucket would take it now
    new = seen.status
    stopping = stopped(run, new) and (transition(old, new) is not None or seen.live_pods > 0)
    if stopping or has_true(old, SPEC_INVALID):
        apply_children(run, body, config, new)
    return new


def _condition_message(status: OREALRunStatus | None, type_: str) -> str | None:
    """The message of condition `type_` when it is True, else None."""
    if not has_true(status, type_):
        return None
    return next(c.message for c in status.conditions if c.type == type_)


def status_patch(status: OREALRunStatus) -> dict[str, Any]:
    """The status as a merge patch: camelCase keys, None (delete) for fields that are unset."""
    return status.model_dump(mode="json", by_alias=True)


def transition(old: OREALRunStatus | None, new: OREALRunStatus) -> tuple[str, str] | None:
    """(reason, message) of an event when the phase changed, from the condition that decided it."""
    if old is not None and old.phase == new.phase:
        return None
    decisive = {"Succeeded": "Complete", "Failed": "Failed", "Suspended": "Suspended"}.get(
        new.phase or "", "Progressing"
    )
    cond = next((c for c in new.conditions if c.type == decisive), None)
    reason = cond.reason if cond is not None else (new.phase or "Unknown")
    message = f"phase {old.phase if old else None} -> {new.phase}"
    if cond is not None and cond.message:
        message += f": {cond.message}"
    return reason, message


def forget(meta: Mapping[str, Any]) -> None:
    """A deleted run: out of the oreal_runs gauge and of the remembered rejections."""
    record_phase(meta["namespace"], meta["name"], None)
    _rejections.pop(_key(meta), None)


_phases: dict[tuple[str, str], str] = {}
_phases_lock = threading.Lock()


def record_phase(namespace: str, name: str, phase: str | None) -> None:
    """Keep oreal_runs{namespace, phase} equal to the runs this operator last saw (None: deleted)."""
    with _phases_lock:
        if phase is None:
            _phases.pop((namespace, name), None)
        else:
            _phases[(namespace, name)] = phase
        namespaces = {ns for ns, _ in _phases} | {namespace}
        for ns in namespaces:
            for p in PHASES:
                RUNS.labels(namespace=ns, phase=p).set(
                    sum(1 for (n, _), v in _phases.items() if n == ns and v == p)
                )
