"""What each handler does, apart from Kopf: parse the resource, apply its children, observe it.

    parse(body) -> OREALRun                              SpecError names the field
    stopped(run, status) -> bool                         render 0 replicas (suspended or finished)
    apply_run(body, config, *, now, status=None) -> dict child -> created | patched | unchanged
    observe_run(body, config, now) -> (status, pods)     pods + bucket folded by status.fold_status
    invalid_status(body, message, now) -> OREALRunStatus
    tick(body, config, now) -> (old, new, event)         one round of the status timer
    status_patch(status) -> dict                         camelCase, None for fields to clear
    record_phase(namespace, name, phase)                 the oreal_runs{namespace, phase} gauge

Every function takes the Kopf body as a plain mapping, so the tests can call them without Kopf.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from oreal.spec.loader import SpecError, run_from_dict
from oreal.spec.models import OREALRun, OREALRunStatus
from oreal_operator import kube
from oreal_operator.bucket_view import BucketView, read_bucket
from oreal_operator.config import OperatorConfig
from oreal_operator.metrics import PHASES, RUNS
from oreal_operator.naming import owner_reference
from oreal_operator.render import RenderError, RenderOptions, check_runnable, render_children
from oreal_operator.status import SPEC_INVALID, TERMINAL_PHASES, fold_status, spec_invalid_status

STOPPING = ("Suspended", "Succeeded", "Failed")


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
    if run.spec.suspend:
        return True
    if status is None or status.phase not in TERMINAL_PHASES:
        return False
    return not _spec_invalid(status)


def _spec_invalid(status: OREALRunStatus) -> bool:
    return any(c.type == SPEC_INVALID and c.status == "True" for c in status.conditions)


def render_options(body: Mapping[str, Any], config: OperatorConfig) -> RenderOptions:
    meta = body["metadata"]
    return RenderOptions(image=config.image, namespace=meta["namespace"], owner=owner_reference(body))


def apply_run(
    body: Mapping[str, Any], config: OperatorConfig, *, now: datetime, status: OREALRunStatus | None = None
) -> dict[str, str]:
    """Create or patch the run's children. Raises SpecError / RenderError for a spec that cannot run.

    Whether the run is stopped (0 replicas) follows `status`, by default the status observed now
    (pods and bucket, as the timer sees them): the status on `body` may be older than the bucket,
    and a finished run must not be scaled up again by a handler that ran beside the timer.
    """
    run = parse(body)
    if status is None:
        status, _ = observe_run(body, config, now)
    children = render_children(run, render_options(body, config), stopped=stopped(run, status))
    uid = body["metadata"].get("uid")
    return {f"{c['kind']}/{c['metadata']['name']}": kube.apply_child(c, uid) for c in children}


def observe_bucket(run: OREALRun, namespace: str) -> BucketView:
    secret = None
    ref = run.spec.storage.secret_ref
    if ref is not None:
        secret = kube.read_secret(namespace, ref.name)
        if secret is None:
            return BucketView(error=f"Secret {namespace}/{ref.name} (spec.storage.secretRef) not found")
    return read_bucket(run.spec, secret)


def observe_run(body: Mapping[str, Any], config: OperatorConfig, now: datetime) -> tuple[OREALRunStatus, int]:
    """(status from the run's pods and bucket, pods not being deleted); SpecError / RenderError for
    a spec that cannot run."""
    run = parse(body)
    check_runnable(run)
    meta = body["metadata"]
    pods = kube.list_pods(meta["namespace"], meta["name"])
    view = observe_bucket(run, meta["namespace"])
    live = sum(1 for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp"))
    status = fold_status(
        run,
        generation=meta.get("generation"),
        pods=pods,
        state=view.state,
        stats=view.stats,
        previous=previous_status(body),
        now=now,
        bucket_error=view.error,
    )
    return status, live


def tick(
    body: Mapping[str, Any], config: OperatorConfig, now: datetime
) -> tuple[OREALRunStatus | None, OREALRunStatus, tuple[str, str] | None]:
    """One status round: (old status, new status, event for a phase change or None).

    A run that is Suspended, Succeeded or Failed is rendered stopped when it has just become so,
    and again whenever pods of it are still running (something scaled it up): its pods go; the
    bucket, the templates and the status stay. A spec that cannot run rendered nothing, so there
    is nothing to stop.
    """
    old = previous_status(body)
    try:
        new, live_pods = observe_run(body, config, now)
    except (SpecError, RenderError) as err:
        new, live_pods = invalid_status(body, str(err), now), 0
    meta = body["metadata"]
    record_phase(meta["namespace"], meta["name"], new.phase)
    event = transition(old, new)
    if new.phase in STOPPING and not _spec_invalid(new) and (event is not None or live_pods):
        apply_run(body, config, now=now, status=new)
    return old, new, event


def invalid_status(body: Mapping[str, Any], message: str, now: datetime) -> OREALRunStatus:
    return spec_invalid_status(
        message, generation=body["metadata"].get("generation"), previous=previous_status(body), now=now
    )


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
