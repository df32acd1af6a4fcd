"""The one status vocabulary of a run: phases, condition types, reasons, timestamps, conditions.

Both runners write it: the operator into the OREALRun's `.status`, the local runner into the run
folder's `status.json` (DESIGN.md, "Status and conditions"). Conditions have the shape of
Kubernetes' `metav1.Condition` and form a map keyed by type (`listType=map` in the CRD).

    phase       Pending -> Running -> Succeeded | Failed, and Suspended while spec.suspend is true
    conditions  Ready, Progressing, Suspended, Complete, Failed, SpecInvalid

`Failed` is terminal and only terminal: a spec that cannot run is `SpecInvalid=True` with
`Ready=False` (reason SpecInvalid), and the run keeps its phase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from oreal.spec.status_models import Condition, OREALRunStatus

# Phases.
PENDING, RUNNING, SUSPENDED_PHASE, SUCCEEDED, FAILED_PHASE = (
    "Pending",
    "Running",
    "Suspended",
    "Succeeded",
    "Failed",
)
PHASES = (PENDING, RUNNING, SUSPENDED_PHASE, SUCCEEDED, FAILED_PHASE)
TERMINAL_PHASES = (SUCCEEDED, FAILED_PHASE)  # a run in one of these stays there (see `finished`)

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

# Reasons (CamelCase, as metav1.Condition wants).
COMPLETED = "Completed"  # every step committed
DEADLINE_EXCEEDED = "DeadlineExceeded"  # ran longer than spec.activeDeadlineSeconds
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"  # more failures than spec.maxRestarts
PERMANENT_ERROR = "PermanentError"  # a worker exited with the permanent code (3): retrying cannot help
JOBSET_FAILED = "JobSetFailed"  # the JobSet failed for another reason (its message says which)
SPEC_INVALID_REASON = "SpecInvalid"  # the spec cannot run as it is; the message names the field
NAME_TAKEN = "NameTaken"  # a child's name is held by an object the run does not control
API_MISSING = "APINotServed"  # the cluster does not serve a kind the run needs (the JobSet CRD)
SUSPENDED_REASON = "Suspended"  # spec.suspend is true
INTERRUPTED = "Interrupted"  # the local run was stopped by Ctrl-C
STARTED = "Started"
PENDING_REASON = "Pending"
RUNNING_REASON = "Running"
QUEUED = "Queued"  # created suspended, waiting for Kueue to admit it
ALL_JOBS_READY = "AllJobsReady"
JOBS_NOT_READY = "JobsNotReady"
STOPPED = "Stopped"
SPEC_VALID = "SpecValid"
NOT_SUSPENDED = "NotSuspended"
NOT_COMPLETE = "NotComplete"
NOT_FAILED = "NotFailed"

# The reason and message of each type when it is False and nothing more specific applies.
DEFAULT_FALSE: dict[str, tuple[str, str]] = {
    READY: (STOPPED, "no pods run"),
    PROGRESSING: (STOPPED, "the run is not progressing"),
    SUSPENDED: (NOT_SUSPENDED, ""),
    COMPLETE: (NOT_COMPLETE, ""),
    FAILED: (NOT_FAILED, ""),
    SPEC_INVALID: (SPEC_VALID, ""),
}
# The condition that decides each phase (its reason and message explain the phase).
DECISIVE = {SUCCEEDED: COMPLETE, FAILED_PHASE: FAILED, SUSPENDED_PHASE: SUSPENDED}


def timestamp(now: datetime) -> str:
    """RFC 3339 in UTC with a Z and whole seconds, as metav1.Time is written."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now() -> str:
    return timestamp(datetime.now(UTC))


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def condition(
    previous: Sequence[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None = None,
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


def set_condition(conditions: Sequence[Condition], new: Condition) -> list[Condition]:
    """`conditions` with `new` in place of the one of its type (added in CONDITION_TYPES order);
    build `new` with `condition(conditions, ...)` to keep its lastTransitionTime."""
    out = [c for c in conditions if c.type != new.type] + [new]
    order = {t: i for i, t in enumerate(CONDITION_TYPES)}
    return sorted(out, key=lambda c: order.get(c.type, len(order)))


def conditions(
    previous: Sequence[Condition],
    true: Mapping[str, tuple[str, str]],
    false: Mapping[str, tuple[str, str]] | None = None,
    *,
    now: datetime,
    generation: int | None = None,
) -> list[Condition]:
    """All six types: those in `true` (type -> (reason, message)) True, the others False with the
    reason and message from `false`, else DEFAULT_FALSE."""
    false = false or {}
    out = []
    for type_ in CONDITION_TYPES:
        is_true = type_ in true
        reason, message = true[type_] if is_true else false.get(type_, DEFAULT_FALSE[type_])
        out.append(condition(previous, type_, is_true, reason, message, now=now, generation=generation))
    return out


def find(status: OREALRunStatus | None, type_: str) -> Condition | None:
    if status is None:
        return None
    return next((c for c in status.conditions if c.type == type_), None)


def has_true(status: OREALRunStatus | None, type_: str) -> bool:
    """The condition `type_` of `status` is True."""
    found = find(status, type_)
    return found is not None and found.status == "True"


def finished(status: OREALRunStatus | None) -> bool:
    """Succeeded or Failed: the run stays so (as a Job does), whatever happens to its spec."""
    return status is not None and status.phase in TERMINAL_PHASES
