"""Fold what the operator observes into an OREALRun's `.status` (pure: no I/O, no clock).

    fold_status(run, *, generation, observed, previous, now, queued) -> OREALRunStatus

`observed` holds the run's JobSet as the API server returns it, the trainer's report
(`progress.Report`), the termination message of a failed pod, and what the reconcile found: a
spec that cannot run (SpecInvalid), a child name held by someone else, whether this generation
was applied. Vocabulary: `oreal.spec.status`. First match wins:

1. Succeeded or Failed before: kept (a finished run stays finished, as a Job does).
2. the JobSet completed, or the trainer reports the last step  -> Succeeded (Complete/Completed),
   every step counted as committed (the trainer exits 0 only then, maybe before a last report).
3. the JobSet failed -> Failed: PermanentError (a pod exited with the permanent code),
   BackoffLimitExceeded (its gang restarts are used up) or JobSetFailed; the message is the failed
   container's termination message when there is one.
4. spec.suspend -> Suspended (startTime cleared, as for Jobs: the deadline counts from the resume).
5. now - startTime > activeDeadlineSeconds -> Failed (DeadlineExceeded).
6. a step reported or a Job ready -> Running, else Pending (reason Queued while Kueue has not
   admitted a queued run: its startTime waits for the admission).

Overlays, whatever the phase: a spec that cannot run sets SpecInvalid=True and Ready=False with
reason SpecInvalid and keeps the phase (never Failed); a child name held by someone else, or a kind
the cluster does not serve, sets Ready=False with reason NameTaken or APINotServed. `restarts` counts gang restarts, one per incident, across the
run's JobSets (those of earlier JobSets are on the JobSet as `oreal.io/restarts-before`).
`observedGeneration` moves only when the generation was applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from oreal.spec import status as v
from oreal.spec.models import OREALRun, OREALRunStatus
from oreal_operator.naming import ROLES
from oreal_operator.progress import Report
from oreal_operator.render import RESTARTS_BEFORE


@dataclass(frozen=True)
class Observed:
    jobset: Mapping[str, Any] | None = None
    report: Report | None = None
    failure: str | None = None  # the failed container's termination message
    permanent: bool = False  # it exited with the permanent code
    invalid: str | None = None  # why the spec cannot run
    # (reason, message) when the children cannot be made: a name held by an object the run does not
    # control (NameTaken), or a kind the cluster does not serve (APINotServed)
    blocked: tuple[str, str] | None = None
    applied: bool = False  # this generation's children are in place


# ---------------------------------------------------------------- reading a JobSet


def jobset_condition(jobset: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    """The JobSet's condition `type_` when it is True."""
    for c in ((jobset or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return c
    return None


def gang_restarts(jobset: Mapping[str, Any] | None) -> int:
    """Gang restarts of the run: those of earlier JobSets plus this one's."""
    if jobset is None:
        return 0
    before = ((jobset.get("metadata") or {}).get("annotations") or {}).get(RESTARTS_BEFORE, "0")
    own = (jobset.get("status") or {}).get("restarts") or 0
    return (int(before) if str(before).isdigit() else 0) + int(own)


def restarts_used_up(jobset: Mapping[str, Any]) -> bool:
    limit = ((jobset.get("spec") or {}).get("failurePolicy") or {}).get("maxRestarts", 0)
    return int((jobset.get("status") or {}).get("restarts") or 0) >= int(limit or 0)


def jobs_ready(jobset: Mapping[str, Any] | None) -> dict[str, bool]:
    """role -> its Job has all its pods ready (or succeeded)."""
    statuses = {
        s.get("name"): s for s in ((jobset or {}).get("status") or {}).get("replicatedJobsStatus") or []
    }
    out = {}
    for role in ROLES:
        s = statuses.get(role) or {}
        out[role] = int(s.get("ready") or 0) + int(s.get("succeeded") or 0) >= 1
    return out


# ---------------------------------------------------------------- the fold


def fold_status(
    run: OREALRun,
    *,
    generation: int | None,
    observed: Observed,
    previous: OREALRunStatus | None,
    now: datetime,
    queued: bool = False,
) -> OREALRunStatus:
    """The run's status from what was observed (see the module docstring for the rules)."""
    prev = previous or OREALRunStatus()
    js = observed.jobset
    step, policy_version, metrics = _progress(prev, observed.report)
    total = run.spec.algorithm.steps
    done_steps = 0 if step is None else step + 1
    restarts = max(prev.restarts or 0, gang_restarts(js))
    base = {
        "step": step,
        "total_steps": total,
        "progress_percentage": min(100, 100 * done_steps // total),
        "policy_version": policy_version,
        "last_metrics": metrics,
        "restarts": restarts,
        "observed_generation": generation if observed.applied else prev.observed_generation,
        "worker_image": prev.worker_image,
        "render_version": prev.render_version,
    }
    progress = f"step {done_steps}/{total} committed"
    if restarts > (prev.restarts or 0) and observed.failure:
        progress += f"; gang restart {restarts}: {observed.failure}"

    if v.finished(prev):
        phase, true, false = prev.phase, _finished_conditions(prev), {}
        false = {v.READY: true[v.DECISIVE[phase]], v.PROGRESSING: true[v.DECISIVE[phase]]}
        start, completion = prev.start_time, prev.completion_time
    else:
        phase, true, false, start, completion = _decide(run, prev, observed, now, queued, step, progress)
    if phase == v.SUCCEEDED:  # the trainer's Job completes only once every step is committed
        base |= {"step": total - 1, "policy_version": total, "progress_percentage": 100}
    if observed.invalid is not None:
        true = {k: c for k, c in true.items() if k != v.READY} | {
            v.SPEC_INVALID: (v.SPEC_INVALID_REASON, observed.invalid)
        }
        false = {**false, v.READY: (v.SPEC_INVALID_REASON, observed.invalid)}
    elif observed.blocked is not None:
        true = {k: c for k, c in true.items() if k != v.READY}
        false = {**false, v.READY: observed.blocked}
    return OREALRunStatus(
        phase=phase,
        conditions=v.conditions(prev.conditions, true, false, now=now, generation=generation),
        start_time=start,
        completion_time=completion,
        **base,
    )


def _progress(prev: OREALRunStatus, report: Report | None) -> tuple[int | None, int | None, Any]:
    """(step, policyVersion, lastMetrics): the report's when it is at least as far as the status."""
    step, version, metrics = prev.step, prev.policy_version, prev.last_metrics
    if report is None:
        return step, version, metrics
    if report.step is not None and (step is None or report.step >= step):
        return report.step, report.policy_version, report.metrics or metrics
    if report.started and version is None:
        version = report.policy_version if report.policy_version is not None else 0
    return step, version, metrics


def _finished_conditions(status: OREALRunStatus) -> dict[str, tuple[str, str]]:
    """The True conditions of a finished run that stay: its Complete or Failed (SpecInvalid and
    Ready follow what is observed now)."""
    decisive = v.DECISIVE[status.phase]  # type: ignore[index]
    kept = {
        c.type: (c.reason, c.message) for c in status.conditions if c.status == "True" and c.type == decisive
    }
    return kept or {decisive: (status.phase or "", "")}


def _decide(
    run: OREALRun,
    prev: OREALRunStatus,
    observed: Observed,
    now: datetime,
    queued: bool,
    step: int | None,
    progress: str,
) -> tuple[str, dict, dict, str | None, str | None]:
    """(phase, true conditions, false ones that are not the default, startTime, completionTime)."""
    js, spec = observed.jobset, run.spec
    start = prev.start_time or v.timestamp(now)
    ended = prev.completion_time or v.timestamp(now)
    report = observed.report
    if jobset_condition(js, "Completed") is not None or (report is not None and report.done):
        message = f"all {spec.algorithm.steps} steps committed"
        stopped = {v.READY: (v.COMPLETED, message), v.PROGRESSING: (v.COMPLETED, message)}
        return v.SUCCEEDED, {v.COMPLETE: (v.COMPLETED, message)}, stopped, start, ended
    failed = jobset_condition(js, "Failed")
    if failed is not None:
        reason = (
            v.PERMANENT_ERROR
            if observed.permanent
            else v.BACKOFF_LIMIT_EXCEEDED
            if restarts_used_up(js)  # type: ignore[arg-type]
            else v.JOBSET_FAILED
        )
        message = observed.failure or failed.get("message") or "the JobSet failed"
        if reason == v.BACKOFF_LIMIT_EXCEEDED:
            message = f"gang restarts used up (spec.maxRestarts {spec.max_restarts}): {message}"
        stopped = {v.READY: (reason, message), v.PROGRESSING: (reason, message)}
        return v.FAILED_PHASE, {v.FAILED: (reason, message)}, stopped, start, ended
    if spec.suspend:
        message = "spec.suspend is true: the pods are stopped, the bucket is kept"
        stopped = {v.READY: (v.SUSPENDED_REASON, message), v.PROGRESSING: (v.SUSPENDED_REASON, progress)}
        return v.SUSPENDED_PHASE, {v.SUSPENDED: (v.SUSPENDED_REASON, message)}, stopped, None, None
    waiting = queued and js is not None and bool((js.get("spec") or {}).get("suspend"))
    deadline = spec.active_deadline_seconds
    if deadline is not None and not waiting:
        elapsed = (now - v.parse_timestamp(start)).total_seconds()
        if elapsed > deadline:
            message = f"the run was active {elapsed:.0f} s, longer than activeDeadlineSeconds ({deadline} s)"
            stopped = {v.READY: (v.DEADLINE_EXCEEDED, message), v.PROGRESSING: (v.DEADLINE_EXCEEDED, message)}
            return v.FAILED_PHASE, {v.FAILED: (v.DEADLINE_EXCEEDED, message)}, stopped, start, ended
    if waiting:
        message = f"waiting for Kueue to admit the run (LocalQueue {run.metadata.labels.get('kueue.x-k8s.io/queue-name')})"
        return v.PENDING, {v.PROGRESSING: (v.QUEUED, progress)}, {v.READY: (v.QUEUED, message)}, None, None
    ready = jobs_ready(js)
    detail = ", ".join(f"{role} {'ready' if ok else 'not ready'}" for role, ok in ready.items())
    running = step is not None or any(ready.values())
    phase, reason = (v.RUNNING, v.RUNNING_REASON) if running else (v.PENDING, v.PENDING_REASON)
    true = {v.PROGRESSING: (reason, progress)}
    if js is not None and all(ready.values()):
        true[v.READY] = (v.ALL_JOBS_READY, f"every Job's pods are ready ({detail})")
    not_ready = "the JobSet is not created yet" if js is None else f"Jobs: {detail}"
    return phase, true, {v.READY: (v.JOBS_NOT_READY, not_ready)}, start, None
