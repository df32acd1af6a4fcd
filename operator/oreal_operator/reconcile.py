"""One round of a run's reconcile: observe, render, apply what differs, write the status.

    reconcile_run(controller, key)

1. the run from the cache; a finalizer left by the StatefulSet-era operator is removed (such runs
   could not be deleted without that operator running);
2. parse and render (`render.render_run`) with the run's pinned worker image (status.workerImage,
   else the one its JobSet was rendered with, else the operator's current one). A spec that cannot
   run (the models or the renderer refuse it, or the API server refused its children for this
   generation) is SpecInvalid: nothing is applied, the run keeps its phase and its JobSet;
3. observe (`observe`): the JobSet from the cache, the trainer's report as the last status tick
   read it (and where the next tick reads it), after a gang restart or a failure the failed pods'
   termination message;
4. apply the children (`apply.apply_children`); a 400/422 answer makes the spec SpecInvalid
   (remembered for this generation and spec, so that the next tick does not ask again);
5. fold the status (`status.fold_status`) and write it when it changed: a merge patch of the
   status subresource carrying the resourceVersion it was computed from, so that a round computed
   from a stale run gets 409 and runs again. `observedGeneration` moves only when every child of
   that generation is in place. Events: a phase change, a spec that became invalid, a child name
   held by someone else, a JobSet re-created.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from oreal.spec import status as v
from oreal.spec.loader import SpecError, run_from_dict
from oreal.spec.models import OREALRun, OREALRunStatus
from oreal_operator.api import JSON_PATCH, ApiError
from oreal_operator.apply import apply_children
from oreal_operator.controller import Controller, Key, Memory
from oreal_operator.errors import ApiNotServed, ForeignObjectError, RenderError
from oreal_operator.metrics import RECONCILE_DURATION, RECONCILE_ERRORS
from oreal_operator.naming import owner_reference
from oreal_operator.observe import observe_failures, one_line, report_source
from oreal_operator.packing import pack
from oreal_operator.render import (
    RENDER_VERSION,
    RESTARTS_BEFORE,
    SPEC_HASH,
    WORKER_IMAGE,
    RenderOptions,
    queue_name,
    render_run,
)
from oreal_operator.status import Observed, fold_status

LOG = logging.getLogger("oreal_operator")
OLD_FINALIZER = "oreal.io/finalizer"
REJECTED_STATUSES = (400, 422)  # the API server refuses the object itself: retrying cannot help


def parse(body: Mapping[str, Any]) -> OREALRun:
    """The resource as the spec models see it (status and server fields other than metadata dropped)."""
    meta = body.get("metadata") or {}
    source = f"OREALRun {meta.get('namespace', '')}/{meta.get('name', '?')}"
    data = {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body}
    return run_from_dict(json.loads(json.dumps(data)), source=source)


def previous_status(body: Mapping[str, Any]) -> OREALRunStatus | None:
    """The status on the resource, or None if there is none the models can read."""
    status = body.get("status") or {}
    known = {f.alias or name for name, f in OREALRunStatus.model_fields.items()}
    try:
        return OREALRunStatus.model_validate({k: v for k, v in status.items() if k in known})
    except ValidationError:
        return None


def _annotation(obj: Mapping[str, Any] | None, key: str) -> str | None:
    return (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(key)


def pinned_image(previous: OREALRunStatus | None, jobset: Mapping[str, Any] | None, default: str) -> str:
    """The run's worker image: fixed when the run was first rendered, whatever the operator's is now."""
    return (previous.worker_image if previous else None) or _annotation(jobset, WORKER_IMAGE) or default


def restarts_before(previous: OREALRunStatus | None, jobset: Mapping[str, Any] | None) -> int:
    """Gang restarts before the JobSet to render: the live one's, or all of the run's so far."""
    if jobset is not None:
        value = _annotation(jobset, RESTARTS_BEFORE) or "0"
        return int(value) if value.isdigit() else 0
    return (previous.restarts or 0) if previous else 0


def transition(old: OREALRunStatus | None, new: OREALRunStatus) -> tuple[str, str] | None:
    """(reason, message) of an event when the phase changed, from the condition that decided it."""
    if old is not None and old.phase == new.phase:
        return None
    cond = v.find(new, v.DECISIVE.get(new.phase or "", v.PROGRESSING))
    decided = cond is not None and cond.status == "True"
    reason = cond.reason if decided else (new.phase or "Unknown")  # type: ignore[union-attr]
    message = f"phase {old.phase if old else None} -> {new.phase}"
    if decided and cond.message:  # type: ignore[union-attr]
        message += f": {cond.message}"  # type: ignore[union-attr]
    return reason, message


def invalid_only(
    previous: OREALRunStatus | None, invalid: str, generation: int | None, now: datetime
) -> OREALRunStatus:
    """The status of a run whose spec cannot even be parsed: what it was, with SpecInvalid."""
    prev = previous or OREALRunStatus()
    conditions = prev.conditions
    for type_, status in ((v.SPEC_INVALID, True), (v.READY, False)):
        new = v.condition(
            conditions, type_, status, v.SPEC_INVALID_REASON, invalid, now=now, generation=generation
        )
        conditions = v.set_condition(conditions, new)
    return prev.model_copy(update={"phase": prev.phase or v.PENDING, "conditions": conditions})


async def reconcile_run(ctl: Controller, key: Key) -> None:
    body = ctl.runs.get(key)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return
    if OLD_FINALIZER in (body["metadata"].get("finalizers") or []):
        body = await _drop_old_finalizer(ctl, key, body)
    started, now = time.perf_counter(), datetime.now(UTC)
    mem = ctl.remember(key)
    previous = previous_status(body)
    generation = body["metadata"].get("generation")
    jobset = ctl.children["JobSet"].get(key)
    image = pinned_image(previous, jobset, ctl.config.image)
    run, desired, invalid, fresh = _render(ctl, key, body, image, previous, jobset)
    if run is None:
        status = invalid_only(previous, invalid or "", generation, now)
        await _write(ctl, key, body, previous, status, invalid=invalid)
        return
    identity = (generation, _annotation(desired[1], SPEC_HASH) if desired else None)
    if invalid is None and mem.refused is not None and mem.refused[0] == identity:
        invalid = mem.refused[1]

    await observe_failures(ctl, key, jobset, mem)
    mem.report_url = report_source(key, run, jobset)
    blocked: tuple[str, str] | None = None
    applied = created = False
    if invalid is None:
        status = _fold(ctl, key, run, body, previous, now, Observed())
        try:
            applied, created = await apply_children(ctl, key, run, body, desired, status, fresh)
        except ForeignObjectError as err:
            blocked = (v.NAME_TAKEN, one_line(str(err)))
        except ApiNotServed as err:
            blocked = (v.API_MISSING, one_line(str(err)))  # the status tick tries again
        except ApiError as err:
            if err.status not in REJECTED_STATUSES:
                raise
            invalid = one_line(f"the API server refused the run's children: {err.message}")
            mem.refused = (identity, invalid)
        finally:
            RECONCILE_DURATION.labels(handler="apply").observe(time.perf_counter() - started)
    new = _fold(
        ctl, key, run, body, previous, now, Observed(invalid=invalid, blocked=blocked, applied=applied)
    )
    if created or (applied and new.worker_image is None and ctl.children["JobSet"].get(key) is not None):
        new = new.model_copy(update={"worker_image": image, "render_version": RENDER_VERSION})
    await _write(ctl, key, body, previous, new, invalid=invalid, blocked=blocked)


def _render(
    ctl: Controller,
    key: Key,
    body: Mapping[str, Any],
    image: str,
    previous: OREALRunStatus | None,
    jobset: Mapping[str, Any] | None,
) -> tuple[OREALRun | None, list[dict[str, Any]], str | None, dict[str, Any] | None]:
    """(the parsed run or None, its children or [] (the JobSet packed), why it cannot run or None,
    the JobSet unpacked when it was rendered in this round), from the run's memory when nothing
    the rendering reads has changed since the last round."""
    opts = RenderOptions(
        image=image,
        namespace=key[0],
        owner=owner_reference(body),
        image_pull_secrets=ctl.config.image_pull_secrets,
        restarts_before=restarts_before(previous, jobset),
    )
    meta = body["metadata"]
    inputs = (body.get("spec"), meta.get("labels"), meta.get("annotations"), meta.get("uid"), opts)
    mem = ctl.remember(key)
    if mem.rendered is not None and mem.rendered[0] == inputs:
        mem.rendered = (inputs, mem.rendered[1])  # the run's current objects, the older ones freed
        return (*mem.rendered[1], None)
    fresh = None
    try:
        run: OREALRun | None = parse(body)
    except SpecError as err:
        result: tuple[OREALRun | None, list[dict[str, Any]], str | None] = (None, [], one_line(str(err)))
    else:
        try:
            configmap, fresh = render_run(run, opts)  # type: ignore[arg-type]
            result = (run, [configmap, pack(fresh)], None)
        except RenderError as err:
            result = (run, [], one_line(str(err)))
    mem.rendered = (inputs, result)
    return (*result, fresh)


def _fold(
    ctl: Controller,
    key: Key,
    run: OREALRun,
    body: Mapping[str, Any],
    previous: OREALRunStatus | None,
    now: datetime,
    found: Observed,
) -> OREALRunStatus:
    """The status from the caches and the run's memory, with what this round `found`."""
    mem: Memory = ctl.remember(key)
    observed = Observed(
        jobset=ctl.children["JobSet"].get(key),
        report=mem.report,
        failure=mem.failure,
        permanent=mem.permanent,
        invalid=found.invalid,
        blocked=found.blocked,
        applied=found.applied,
    )
    return fold_status(
        run,
        generation=body["metadata"].get("generation"),
        observed=observed,
        previous=previous,
        now=now,
        queued=queue_name(run) is not None,
    )


async def _write(
    ctl: Controller,
    key: Key,
    body: Mapping[str, Any],
    previous: OREALRunStatus | None,
    new: OREALRunStatus,
    *,
    invalid: str | None = None,
    blocked: tuple[str, str] | None = None,
) -> None:
    """Write the status when it changed, and post the events of this round."""
    started = time.perf_counter()
    mem = ctl.remember(key)
    ctl.phases.record(key[0], key[1], new.phase)
    if new != previous:
        patch = {
            "metadata": {"resourceVersion": body["metadata"].get("resourceVersion")},
            "status": new.model_dump(mode="json", by_alias=True),
        }
        try:
            updated = await ctl.api.patch("OREALRun", key[0], key[1], patch, subresource="status")
        except ApiError as err:
            if err.status != 409:
                raise
            ctl.poke(key)  # the run changed since this round read it: the next round sees the change
            return
        if isinstance(updated, dict):
            ctl.runs[key] = updated
        event = transition(previous, new)
        if event is not None:
            kind = "Warning" if new.phase == v.FAILED_PHASE else "Normal"
            await ctl.api.post_event(body, kind, *event)
    if invalid is not None and invalid != mem.invalid_posted:
        RECONCILE_ERRORS.labels(handler="apply", kind="permanent").inc()  # once per refusal
    blocked_reason, blocked_message = blocked if blocked is not None else ("", None)
    for message, reason, posted in (
        (invalid, v.SPEC_INVALID_REASON, "invalid_posted"),
        (blocked_message, blocked_reason, "blocked_posted"),
    ):
        if message is not None and message != getattr(mem, posted):
            await ctl.api.post_event(body, "Warning", reason, message)
            LOG.warning("run %s/%s: %s", key[0], key[1], message)
        setattr(mem, posted, message)
    RECONCILE_DURATION.labels(handler="status").observe(time.perf_counter() - started)


async def _drop_old_finalizer(ctl: Controller, key: Key, body: dict[str, Any]) -> dict[str, Any]:
    finalizers = body["metadata"].get("finalizers") or []
    index = finalizers.index(OLD_FINALIZER)
    ops = [
        {"op": "test", "path": f"/metadata/finalizers/{index}", "value": OLD_FINALIZER},
        {"op": "remove", "path": f"/metadata/finalizers/{index}"},
    ]
    updated = await ctl.api.patch("OREALRun", key[0], key[1], ops, content_type=JSON_PATCH)
    ctl.runs[key] = updated
    return updated
