"""Fold what the operator observes into an OREALRun's `.status` (pure: no I/O, no clock).

    fold_status(run, *, generation, pods, state, stats, previous, now, bucket_error=None)
        -> OREALRunStatus
    spec_invalid_status(message, *, generation, previous, now) -> OREALRunStatus

`run` is the parsed resource, `generation` its metadata.generation, `pods` the run's pods as API
dicts (label oreal.io/run=<name>), `state` the bucket's RunState (None: no state.json yet, or the
bucket could not be read, then `bucket_error` says why), `stats` the newest stats/step-N.json,
`previous` the status now on the resource and `now` an aware datetime.

Phases and conditions follow DESIGN.md ("Status and conditions") and Jobs, with the reasons of the
local runner (oreal.runner.status): Complete/Completed, Failed/DeadlineExceeded,
Failed/BackoffLimitExceeded, Failed/SpecInvalid. First match wins:

1. Succeeded or Failed before, and not SpecInvalid (`finished`): kept (a finished run stays
   finished, as a Job does; its pods are gone, so their restart counts cannot be observed again).
2. state.done                                  -> Succeeded (Complete, completionTime).
3. spec.suspend                                -> Suspended (startTime cleared, as for Jobs: the
   deadline counts again from the resume).
4. now - startTime > activeDeadlineSeconds     -> Failed (DeadlineExceeded).
5. restarts > spec.maxRestarts                 -> Failed (BackoffLimitExceeded).
6. a pod running or a step committed           -> Running, else Pending.

Every status carries all six condition types (True or False, each with a reason) so that
`kubectl wait --for=condition=Complete` works; a condition's lastTransitionTime changes only when its
status does.

`restarts` is max(previous status.restarts, sum of the live pods' container restart counts): it
never decreases, but it is not a running total. A replaced pod (suspend/resume, a node drained, a
pod deleted) takes its count with it, and its restarts survive only inside that max: a run whose
pods restarted 3 times, were replaced, and then restarted twice more shows 3, not 5. So
spec.maxRestarts bounds the restarts of the pods alive at one time, not of the run's whole life.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from oreal.bucket import RunState
from oreal.spec.models import Condition, OREALRun, OREALRunStatus, StepMetrics
from oreal_operator.naming import ROLE_LABEL, ROLES
from oreal_operator.pods import role_replicas

# Condition types, in the order they are written.
READY, PROGRESSING, SUSPENDED, COMPLETE, FAILED, SPEC_INVALID = (
    "Ready",
    "Progressing",
    "Suspended",
    "Complete",
    "Failed",
    "SpecInvalid",
)
CONDITION_TYPES = (READY, PROGRESSING, SUSPENDED, COMPLETE, FAILED, SPEC_INVALID)

# Reasons (CamelCase, as metav1.Condition wants). The terminal ones are oreal.runner.status's.
COMPLETED = "Completed"
DEADLINE_EXCEEDED = "DeadlineExceeded"
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
SPEC_INVALID_REASON = "SpecInvalid"
SUSPENDED_REASON = "Suspended"
PENDING_REASON = "Pending"
RUNNING_REASON = "Running"
ALL_PODS_READY = "AllPodsReady"
PODS_NOT_READY = "PodsNotReady"
STOPPED = "Stopped"
SPEC_VALID = "SpecValid"
NOT_SUSPENDED = "NotSuspended"
NOT_COMPLETE = "NotComplete"
NOT_FAILED = "NotFailed"

# A run in one of these phases stays there (see `finished`), unless it is SpecInvalid.
TERMINAL_PHASES = ("Succeeded", "Failed")

# Pod waiting reasons worth naming in the Ready message.
TROUBLE = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "OOMKilled")


def timestamp(now: datetime) -> str:
    """RFC 3339 in UTC with a Z, as metav1.Time is written."""
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------- pods


def desired_pods(run: OREALRun) -> dict[str, int]:
    """Pods per role the StatefulSets ask for (0 everywhere when suspended)."""
    return {role: 0 if run.spec.suspend else role_replicas(run.spec, role) for role in ROLES}


def pod_ready(pod: Mapping[str, Any]) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


def pod_restarts(pod: Mapping[str, Any]) -> int:
    status = pod.get("status") or {}
    containers = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    return sum(int(c.get("restartCount") or 0) for c in containers)


def pod_trouble(pod: Mapping[str, Any]) -> str | None:
    """`name: CrashLoopBackOff` when a container of the pod waits for a reason worth telling."""
    status = pod.get("status") or {}
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = container.get("state") or {}
        last = (container.get("lastState") or {}).get("terminated") or {}
        reason = (state.get("waiting") or {}).get("reason") or last.get("reason")
        if reason in TROUBLE:
            return f"{pod.get('metadata', {}).get('name', '?')}: {reason}"
    return None


def readiness(run: OREALRun, pods: Sequence[Mapping[str, Any]]) -> tuple[bool, str]:
    """(every role has its pods ready, message such as `2/3 pods ready (rollout 1/1, ...)`)."""
    desired = desired_pods(run)
    ready = {role: 0 for role in desired}
    for pod in pods:
        role = pod.get("metadata", {}).get("labels", {}).get(ROLE_LABEL)
        if role in ready and pod_ready(pod):
            ready[role] += 1
    all_ready = all(ready[role] >= n for role, n in desired.items())
    detail = ", ".join(f"{role} {ready[role]}/{n}" for role, n in desired.items())
    message = f"{sum(ready.values())}/{sum(desired.values())} pods ready ({detail})"
    trouble = [t for t in map(pod_trouble, pods) if t]
    if trouble:
        message += "; " + ", ".join(trouble)
    return all_ready, message


# ---------------------------------------------------------------- bucket


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def step_metrics(stats: Mapping[str, Any] | None) -> StepMetrics | None:
    """lastMetrics from a stats/step-N.json dict (keys as the trainer writes them)."""
    if not stats:
        return None
    loss = stats.get("loss/policy", stats.get("loss"))
    step_seconds = stats.get("wall_seconds", stats.get("step_seconds"))
    return StepMetrics(
        pass_rate=_finite(stats.get("pass_rate")),
        reward=_finite(stats.get("reward")),
        loss=_finite(loss),
        kl=_finite(stats.get("kl")),
        step_seconds=_finite(step_seconds),
    )


# ---------------------------------------------------------------- conditions


def condition(
    previous: Sequence[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None,
) -> Condition:
    """A condition whose lastTransitionTime is kept from `previous` while its status is unchanged."""
    value = "True" if status else "False"
    old = next((c for c in previous if c.type == type_), None)
    kept = old is not None and old.status == value and old.last_transition_time
    return Condition(
        type=type_,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=old.last_transition_time if kept else timestamp(now),
        observed_generation=generation,
    )


def conditions(
    previous: Sequence[Condition],
    true: Mapping[str, tuple[str, str]],
    false: Mapping[str, tuple[str, str]],
    *,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """All six types: those in `true` (type -> (reason, message)) True, the rest False."""
    out = []
    for type_ in CONDITION_TYPES:
        is_true = type_ in true
        reason, message = true[type_] if is_true else false.get(type_, _default_false(type_))
        out.append(condition(previous, type_, is_true, reason, message, now=now, generation=generation))
    return out


def _default_false(type_: str) -> tuple[str, str]:
    return {
        READY: (STOPPED, "no pods run"),
        PROGRESSING: (STOPPED, "the run is not progressing"),
        SUSPENDED: (NOT_SUSPENDED, ""),
        COMPLETE: (NOT_COMPLETE, ""),
        FAILED: (NOT_FAILED, ""),
        SPEC_INVALID: (SPEC_VALID, ""),
    }[type_]


# ---------------------------------------------------------------- the fold


def fold_status(
    run: OREALRun,
    *,
    generation: int | None,
    pods: Sequence[Mapping[str, Any]],
    state: RunState | None,
    stats: Mapping[str, Any] | None,
    previous: OREALRunStatus | None,
    now: datetime,
    bucket_error: str | None = None,
) -> OREALRunStatus:
    """The run's status from what was observed (see the module docstring for the rules)."""
    prev = previous or OREALRunStatus()
    spec = run.spec
    total = spec.algorithm.steps
    restarts = max(prev.restarts or 0, sum(pod_restarts(p) for p in pods))

    # Progress: from the bucket; kept from the previous status when the bucket could not be read.
    if state is not None:
        step = state.step if state.step >= 0 else None
        policy_version = state.policy_version
    elif bucket_error is not None:
        step, policy_version = prev.step, prev.policy_version
    else:
        step, policy_version = None, None
    metrics = step_metrics(stats) if stats else (prev.last_metrics if bucket_error else None)
    done_steps = 0 if step is None else step + 1
    progress = f"step {done_steps}/{total} committed"
    if bucket_error:
        progress += f"; bucket unreadable: {bucket_error}"

    base = dict(
        step=step,
        total_steps=total,
        progress_percentage=min(100, 100 * done_steps // total),
        policy_version=policy_version,
        last_metrics=metrics,
        restarts=restarts,
        observed_generation=generation,
    )
    start_time = prev.start_time or timestamp(now)

    if finished(prev):
        kept = prev.model_copy(update={"observed_generation": generation, "restarts": restarts})
        if state is not None and state.done:  # the bucket may have caught up (last step)
            kept = kept.model_copy(
                update={k: base[k] for k in ("step", "progress_percentage", "policy_version")}
            )
        return kept

    if state is not None and state.done:
        message = f"all {total} steps committed"
        return OREALRunStatus(
            phase="Succeeded",
            conditions=conditions(
                prev.conditions,
                {COMPLETE: (COMPLETED, message)},
                {READY: (COMPLETED, message), PROGRESSING: (COMPLETED, message)},
                now=now,
                generation=generation,
            ),
            start_time=start_time,
            completion_time=prev.completion_time or timestamp(now),
            **base,
        )

    if spec.suspend:
        message = "spec.suspend is true: the pods are deleted, the bucket is kept"
        return OREALRunStatus(
            phase="Suspended",
            conditions=conditions(
                prev.conditions,
                {SUSPENDED: (SUSPENDED_REASON, message)},
                {READY: (SUSPENDED_REASON, message), PROGRESSING: (SUSPENDED_REASON, progress)},
                now=now,
                generation=generation,
            ),
            start_time=None,
            **base,
        )

    failure = _failure(spec.active_deadline_seconds, spec.max_restarts, start_time, restarts, now)
    if failure is not None:
        reason, message = failure
        return OREALRunStatus(
            phase="Failed",
            conditions=conditions(
                prev.conditions,
                {FAILED: (reason, message)},
                {READY: (reason, message), PROGRESSING: (reason, message)},
                now=now,
                generation=generation,
            ),
            start_time=start_time,
            completion_time=prev.completion_time or timestamp(now),
            **base,
        )

    all_ready, ready_message = readiness(run, pods)
    running = step is not None or any((p.get("status") or {}).get("phase") == "Running" for p in pods)
    phase, reason = ("Running", RUNNING_REASON) if running else ("Pending", PENDING_REASON)
    true = {PROGRESSING: (reason, progress)}
    if all_ready:
        true[READY] = (ALL_PODS_READY, ready_message)
    return OREALRunStatus(
        phase=phase,
        conditions=conditions(
            prev.conditions, true, {READY: (PODS_NOT_READY, ready_message)}, now=now, generation=generation
        ),
        start_time=start_time,
        **base,
    )


def _failure(
    deadline: int | None, max_restarts: int, start_time: str, restarts: int, now: datetime
) -> tuple[str, str] | None:
    if deadline is not None:
        elapsed = (now - parse_timestamp(start_time)).total_seconds()
        if elapsed > deadline:
            return (
                DEADLINE_EXCEEDED,
                f"the run was active {elapsed:.0f} s, longer than activeDeadlineSeconds ({deadline} s)",
            )
    if restarts > max_restarts:
        return (
            BACKOFF_LIMIT_EXCEEDED,
            f"pods restarted {restarts} times, more than spec.maxRestarts ({max_restarts})",
        )
    return None


def has_true(status: OREALRunStatus | None, type_: str) -> bool:
    """The condition `type_` of `status` is True."""
    return status is not None and any(c.type == type_ and c.status == "True" for c in status.conditions)


def finished(status: OREALRunStatus | None) -> bool:
    """Succeeded or Failed for good (rule 1): a terminal phase that is not SpecInvalid (a spec fixed
    after SpecInvalid runs again)."""
    return status is not None and status.phase in TERMINAL_PHASES and not has_true(status, SPEC_INVALID)


def spec_invalid_status(
    message: str, *, generation: int | None, previous: OREALRunStatus | None, now: datetime
) -> OREALRunStatus:
    """Failed with SpecInvalid (the models or the renderer rejected the spec; `message` names the field).

    Progress fields of the previous status are kept: the bucket may hold committed steps.
    """
    prev = previous or OREALRunStatus()
    return prev.model_copy(
        update={
            "phase": "Failed",
            "conditions": conditions(
                prev.conditions,
                {SPEC_INVALID: (SPEC_INVALID_REASON, message), FAILED: (SPEC_INVALID_REASON, message)},
                {READY: (SPEC_INVALID_REASON, message), PROGRESSING: (SPEC_INVALID_REASON, message)},
                now=now,
                generation=generation,
            ),
            "observed_generation": generation,
        }
    )
