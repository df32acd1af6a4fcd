"""Apply a run's children: plan (`oreal_operator.plan`) against the caches, then write.

    apply_children(ctl, key, run, body, desired, status) -> (all in place, a JobSet was created)

A finished run's JobSet is left alone (its controller ended the pods), except that a run the
operator failed itself (DeadlineExceeded) loses it. A suspended run with a Kueue queue loses its
JobSet too: Kueue owns a queued JobSet's suspend, so the operator cannot suspend it; re-created
on resume, it queues again. A create that finds the name taken (409: the cache missed it) reads
the object and plans again; a create answered 404 (the kind is not served: the JobSet CRD is not
installed) raises ApiNotServed; 400/422 and other API errors go to the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oreal.spec import status as v
from oreal.spec.models import OREALRun, OREALRunStatus
from oreal_operator.api import ApiError
from oreal_operator.controller import Controller, Key
from oreal_operator.errors import ApiNotServed
from oreal_operator.packing import pack, unpack
from oreal_operator.plan import Step, plan_configmap, plan_jobset
from oreal_operator.render import queue_name


class StaleCache(Exception):  # noqa: N818 - a signal: plan again with what is there
    """A create found the name taken: the cache missed an object, which is now read into it."""


async def apply_steps(
    ctl: Controller, key: Key, steps: list[Step], rendered: Mapping[str, Any] | None = None
) -> None:
    """Apply `steps` in order, updating the caches from the answers. `rendered`: the JobSet as
    rendered in this round, unpacked (None: unpacked here when one is created)."""
    namespace = key[0]
    for step in steps:
        cache = ctl.children[step.kind]
        if step.verb == "create":
            try:
                body = step.body or {}
                created = await ctl.api.create(step.kind, namespace, body)
                # what the API server stored as it was sent keeps the rendering's packed fields
                plain = (rendered if step.kind == "JobSet" else None) or unpack(body)
                cache[key] = pack(created, same_as=(plain, body))
            except ApiError as err:
                if err.status == 404:  # a create's collection itself is not there
                    raise ApiNotServed(
                        f"the cluster does not serve {step.kind} ({err.message}): install its controller and "
                        "CRD (README, Running on Kubernetes); the operator tries again"
                    ) from None
                live = await ctl.api.get(step.kind, namespace, step.name) if err.status == 409 else None
                if live is None:
                    raise
                cache[key] = pack(live)
                raise StaleCache(step.name) from None
        elif step.verb == "patch":
            cache[key] = pack(await ctl.api.patch(step.kind, namespace, step.name, step.body))
        else:
            gone = await ctl.api.delete(step.kind, namespace, step.name)
            if gone is not None and (gone.get("metadata") or {}).get("deletionTimestamp"):
                cache[key] = pack(gone)  # foreground: it goes once its Jobs and pods are gone
            else:
                cache.pop(key, None)


def same_spec(checked: Mapping[str, Any] | None, live: Mapping[str, Any] | None) -> bool:
    """The live JobSet's spec is the one found covering the rendering before (a new live object
    comes with every change of its status; packed fields compare as bytes)."""
    return checked is live or (
        checked is not None and live is not None and checked.get("spec") == live.get("spec")
    )


async def apply_children(
    ctl: Controller,
    key: Key,
    run: OREALRun,
    body: Mapping[str, Any],
    desired: list[dict[str, Any]],
    status: OREALRunStatus,
    rendered: Mapping[str, Any] | None = None,
) -> tuple[bool, bool]:
    """Plan and apply (see the module docstring): (every child in place, a JobSet was created).
    `rendered`: the JobSet of `desired` unpacked, when this round rendered it."""
    configmap, jobset = desired
    uid = body["metadata"].get("uid")
    queued = queue_name(run) is not None
    if v.finished(status):
        failed = v.find(status, v.FAILED)
        if failed is not None and failed.status == "True" and failed.reason == v.DEADLINE_EXCEEDED:
            await apply_steps(
                ctl, key, plan_jobset(None, ctl.children["JobSet"].get(key), uid, queued=queued)
            )
        return False, False
    wanted = None if (run.spec.suspend and queued) else jobset
    memory = ctl.remember(key)
    for attempt in range(2):
        live = ctl.children["JobSet"].get(key)
        checked = (
            memory.checked is not None and memory.checked[1] is wanted and same_spec(memory.checked[0], live)
        )
        steps = plan_configmap(configmap, ctl.children["ConfigMap"].get(key), uid)
        steps += plan_jobset(wanted, live, uid, queued=queued, check_drift=not checked)
        try:
            await apply_steps(ctl, key, steps, rendered)
        except StaleCache:
            if attempt:
                raise
            continue
        for step in steps:
            if step.kind == "JobSet" and step.verb == "delete":
                reason = "Recreating" if wanted is not None else "Stopping"
                await ctl.api.post_event(body, "Normal", reason, f"JobSet {step.name}: {step.why}")
        created = any(step.kind == "JobSet" and step.verb == "create" for step in steps)
        recreating = wanted is not None and any(step.verb == "delete" for step in steps)
        if not any(step.kind == "JobSet" for step in steps):
            memory.checked = (live, wanted)
        return not recreating, created
    return False, False
