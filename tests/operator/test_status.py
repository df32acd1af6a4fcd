"""fold_status: phases, conditions and progress from hand-built JobSets and trainer reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from oreal.spec import status as v
from oreal.spec.models import OREALRun, OREALRunStatus, StepMetrics
from oreal_operator.progress import Report
from oreal_operator.status import Observed, fold_status, gang_restarts

T0 = datetime(2026, 11, 28, 4, 0, 0, tzinfo=UTC)


def make_run(labels: dict[str, str] | None = None, **spec: Any) -> OREALRun:
    body = {
        "apiVersion": "oreal.io/v1alpha1",
        "kind": "OREALRun",
        "metadata": {"name": "demo", "namespace": "ml", "labels": labels or {}},
        "spec": {
            "model": {"policy": "s3://models/qwen"},
            "data": {"prompts": "s3://data/prompts.jsonl"},
            "storage": {"uri": "s3://runs/demo"},
            "algorithm": {"steps": 20, "warmupSteps": 2},
            "rollout": {"replicas": 2},
            "verifier": {"replicas": 1},
            "trainer": {"nodes": 1},
            **spec,
        },
    }
    return OREALRun.model_validate(body)


def jobset(
    *,
    ready: tuple[str, ...] = (),
    suspend: bool = False,
    restarts: int = 0,
    before: int = 0,
    max_restarts: int = 3,
    condition: tuple[str, str, str] | None = None,
) -> dict[str, Any]:
    """A JobSet as its controller leaves it: which roles' Jobs are ready, restarts, a condition."""
    status: dict[str, Any] = {
        "restarts": restarts,
        "replicatedJobsStatus": [
            {"name": r, "ready": int(r in ready), "succeeded": 0, "failed": 0, "active": 1, "suspended": 0}
            for r in ("rollout", "verifier", "trainer")
        ],
    }
    if condition is not None:
        type_, reason, message = condition
        status["conditions"] = [{"type": type_, "status": "True", "reason": reason, "message": message}]
    return {
        "metadata": {"name": "demo", "annotations": {"oreal.io/restarts-before": str(before)}},
        "spec": {"suspend": suspend, "failurePolicy": {"maxRestarts": max_restarts}},
        "status": status,
    }


def report(step: int | None, *, done: bool = False, **metrics: float) -> Report:
    return Report(
        started=True,
        step=step,
        policy_version=None if step is None else step + 1,
        done=done,
        metrics=StepMetrics(**metrics) if metrics else None,
    )


def fold(
    run: OREALRun | None = None, previous: OREALRunStatus | None = None, now: datetime = T0, **seen: Any
):
    run = run or make_run()
    queued = "kueue.x-k8s.io/queue-name" in run.metadata.labels
    return fold_status(
        run, generation=1, observed=Observed(**seen), previous=previous, now=now, queued=queued
    )


def cond(status: OREALRunStatus, type_: str) -> tuple[str, str, str]:
    c = v.find(status, type_)
    assert c is not None
    return c.status, c.reason, c.message


def test_no_jobset_is_pending_with_every_condition() -> None:
    status = fold()
    assert status.phase == "Pending"
    assert [c.type for c in status.conditions] == list(v.CONDITION_TYPES)
    assert cond(status, v.READY)[:2] == ("False", "JobsNotReady")
    assert status.total_steps == 20 and status.step is None and status.restarts == 0


def test_ready_jobs_make_it_running_and_ready_only_when_all_are() -> None:
    some = fold(jobset=jobset(ready=("rollout",)))
    assert some.phase == "Running" and cond(some, v.READY)[0] == "False"
    assert "trainer not ready" in cond(some, v.READY)[2]
    every = fold(jobset=jobset(ready=("rollout", "verifier", "trainer")))
    assert every.phase == "Running" and cond(every, v.READY)[:2] == ("True", "AllJobsReady")


def test_a_reported_step_means_running_with_progress_and_metrics() -> None:
    status = fold(jobset=jobset(), report=report(4, pass_rate=0.5, loss=0.25))
    assert status.phase == "Running"
    assert (status.step, status.policy_version, status.progress_percentage) == (4, 5, 25)
    assert status.last_metrics == StepMetrics(pass_rate=0.5, loss=0.25)
    assert cond(status, v.PROGRESSING) == ("True", "Running", "step 5/20 committed")


def test_progress_never_goes_back_and_survives_a_missing_report() -> None:
    ahead = fold(jobset=jobset(), report=report(7, kl=0.1))
    assert fold(previous=ahead, jobset=jobset()).step == 7  # no report this time
    behind = fold(previous=ahead, jobset=jobset(), report=report(3))
    assert (behind.step, behind.last_metrics) == (7, StepMetrics(kl=0.1))


def test_started_without_a_step_has_policy_version_zero() -> None:
    status = fold(
        jobset=jobset(), report=Report(started=True, step=None, policy_version=0, done=False, metrics=None)
    )
    assert status.policy_version == 0 and status.step is None


def test_the_jobset_completing_succeeds_with_completion_time() -> None:
    status = fold(jobset=jobset(condition=("Completed", "AllJobsCompleted", "jobset completed")))
    assert status.phase == "Succeeded"
    assert cond(status, v.COMPLETE) == ("True", "Completed", "all 20 steps committed")
    assert status.completion_time == v.timestamp(T0)
    later = fold(previous=status, now=T0 + timedelta(hours=1))  # stays, and keeps its times
    assert later.phase == "Succeeded" and later.completion_time == status.completion_time


def test_the_last_step_reported_succeeds_before_the_jobset_completes() -> None:
    assert fold(jobset=jobset(), report=report(19, done=True)).phase == "Succeeded"


@pytest.mark.parametrize(
    ("permanent", "restarts", "reason"),
    [(True, 0, "PermanentError"), (False, 3, "BackoffLimitExceeded"), (False, 1, "JobSetFailed")],
)
def test_a_failed_jobset_fails_the_run_with_the_termination_message(
    permanent: bool, restarts: int, reason: str
) -> None:
    failed = jobset(
        restarts=restarts, condition=("Failed", "FailedJobs", "jobset failed due to a job failure")
    )
    message = "demo-trainer-0-0-x/worker exited with 3: s3://runs/demo: it already holds run 'other'"
    status = fold(jobset=failed, failure=message, permanent=permanent)
    assert status.phase == "Failed"
    assert cond(status, v.FAILED)[:2] == ("True", reason)
    assert message in cond(status, v.FAILED)[2]
    assert fold(jobset=failed).phase == "Failed" and "jobset failed" in cond(fold(jobset=failed), v.FAILED)[2]


def test_gang_restarts_count_across_jobsets_and_name_the_failure() -> None:
    assert gang_restarts(jobset(restarts=2, before=3)) == 5
    first = fold(jobset=jobset(restarts=0))
    restarted = fold(
        previous=first, jobset=jobset(restarts=1), failure="demo-trainer-0-0/worker exited with 137"
    )
    assert restarted.restarts == 1 and restarted.phase != "Failed"
    assert "gang restart 1: demo-trainer-0-0/worker exited with 137" in cond(restarted, v.PROGRESSING)[2]
    # a re-created JobSet starts at 0 but carries the run's earlier restarts
    assert fold(previous=restarted, jobset=jobset(restarts=0, before=1)).restarts == 1


def test_suspend_clears_start_time_and_resume_restarts_the_deadline() -> None:
    run = make_run(activeDeadlineSeconds=60)
    started = fold(run, jobset=jobset())
    assert started.start_time == v.timestamp(T0)
    suspended = fold(
        make_run(activeDeadlineSeconds=60, suspend=True), previous=started, jobset=jobset(suspend=True)
    )
    assert suspended.phase == "Suspended" and suspended.start_time is None
    assert cond(suspended, v.SUSPENDED)[0] == "True" and cond(suspended, v.READY)[1] == "Suspended"
    resumed = fold(run, previous=suspended, now=T0 + timedelta(hours=2), jobset=jobset())
    assert resumed.phase == "Pending" and resumed.start_time == v.timestamp(T0 + timedelta(hours=2))


def test_the_deadline_fails_the_run() -> None:
    run = make_run(activeDeadlineSeconds=60)
    started = fold(run, jobset=jobset())
    assert fold(run, previous=started, now=T0 + timedelta(seconds=59), jobset=jobset()).phase == "Pending"
    late = fold(run, previous=started, now=T0 + timedelta(seconds=61), jobset=jobset())
    assert late.phase == "Failed" and cond(late, v.FAILED)[1] == "DeadlineExceeded"


def test_a_queued_run_waits_for_kueue_without_a_start_time_or_deadline() -> None:
    run = make_run(labels={"kueue.x-k8s.io/queue-name": "team-a"}, activeDeadlineSeconds=60)
    waiting = fold(run, jobset=jobset(suspend=True))
    assert waiting.phase == "Pending" and waiting.start_time is None
    assert cond(waiting, v.READY)[:2] == ("False", "Queued") and "team-a" in cond(waiting, v.READY)[2]
    hours_later = fold(run, previous=waiting, now=T0 + timedelta(hours=5), jobset=jobset(suspend=True))
    assert hours_later.phase == "Pending"  # waiting in the queue is not running past the deadline
    admitted = fold(run, previous=hours_later, now=T0 + timedelta(hours=5), jobset=jobset(ready=("rollout",)))
    assert admitted.phase == "Running" and admitted.start_time == v.timestamp(T0 + timedelta(hours=5))


def test_spec_invalid_keeps_the_phase_and_is_never_failed() -> None:
    running = fold(jobset=jobset(ready=("rollout", "verifier", "trainer")), report=report(3))
    invalid = fold(
        previous=running, jobset=jobset(ready=("rollout", "verifier", "trainer")), invalid="spec.x: bad"
    )
    assert invalid.phase == "Running"
    assert cond(invalid, v.SPEC_INVALID) == ("True", "SpecInvalid", "spec.x: bad")
    assert cond(invalid, v.READY) == ("False", "SpecInvalid", "spec.x: bad")
    assert cond(invalid, v.FAILED)[0] == "False"
    fixed = fold(previous=invalid, jobset=jobset(ready=("rollout", "verifier", "trainer")))
    assert cond(fixed, v.SPEC_INVALID)[:2] == ("False", "SpecValid") and cond(fixed, v.READY)[0] == "True"
    fresh = fold(invalid="spec.storage.uri: a local folder")  # invalid from the start: Pending
    assert fresh.phase == "Pending" and cond(fresh, v.FAILED)[0] == "False"


def test_a_finished_run_stays_finished_and_its_conditions_keep_their_reasons() -> None:
    failed = fold(jobset=jobset(condition=("Failed", "FailedJobs", "x")), failure="exit 3", permanent=True)
    edited = fold(previous=failed, jobset=None, invalid="spec.trainer.nodes: bad")
    assert edited.phase == "Failed" and cond(edited, v.FAILED)[1] == "PermanentError"
    assert cond(edited, v.SPEC_INVALID)[0] == "True"
    fixed = fold(previous=edited)
    assert cond(fixed, v.SPEC_INVALID)[0] == "False" and cond(fixed, v.READY)[1] == "PermanentError"


def test_a_child_name_held_by_someone_else_says_so_on_ready() -> None:
    status = fold(
        blocked=("NameTaken", "ConfigMap ml/demo-spec exists and is not controlled by this OREALRun")
    )
    assert cond(status, v.READY)[:2] == ("False", "NameTaken")


def test_observed_generation_only_when_applied() -> None:
    previous = OREALRunStatus(observed_generation=1)
    run = make_run()
    not_applied = fold_status(run, generation=2, observed=Observed(), previous=previous, now=T0)
    assert not_applied.observed_generation == 1
    applied = fold_status(run, generation=2, observed=Observed(applied=True), previous=previous, now=T0)
    assert applied.observed_generation == 2


def test_last_transition_time_kept_while_status_is_unchanged() -> None:
    first = fold()
    later = fold(previous=first, now=T0 + timedelta(minutes=5))
    assert [c.last_transition_time for c in later.conditions] == [
        c.last_transition_time for c in first.conditions
    ]
    ready = fold(
        previous=later, now=T0 + timedelta(minutes=6), jobset=jobset(ready=("rollout", "verifier", "trainer"))
    )
    assert v.find(ready, v.READY).last_transition_time == v.timestamp(T0 + timedelta(minutes=6))


def test_status_serialises_as_camel_case() -> None:
    status = fold(jobset=jobset(), report=report(1, pass_rate=0.5))
    data = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert {"phase", "conditions", "totalSteps", "progressPercentage", "policyVersion", "lastMetrics"} <= set(
        data
    )
    assert data["conditions"][0]["lastTransitionTime"].endswith("Z")


def test_succeeded_counts_every_step_even_without_the_last_report() -> None:
    """The trainer exits right after the last step: its last report may never be read."""
    status = fold(jobset=jobset(condition=("Completed", "AllJobsCompleted", "")), report=report(17))
    assert (status.step, status.policy_version, status.progress_percentage) == (19, 20, 100)
