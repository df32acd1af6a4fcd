"""fold_status: phases, conditions and progress from hand-built pods, RunState and stats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from oreal.bucket import RunState
from oreal.spec.models import OREALRun, OREALRunStatus
from oreal_operator.pods import role_replicas
from oreal_operator.status import (
    CONDITION_TYPES,
    desired_pods,
    finished,
    fold_status,
    has_true,
    pod_restarts,
    readiness,
    spec_invalid_status,
    step_metrics,
    timestamp,
)

T0 = datetime(2026, 11, 28, 4, 0, 0, tzinfo=UTC)


def make_run(**spec: Any) -> OREALRun:
    body = {
        "apiVersion": "oreal.io/v1alpha1",
        "kind": "OREALRun",
        "metadata": {"name": "demo", "namespace": "ml", "generation": 1},
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


def pod(
    role: str,
    index: int = 0,
    *,
    phase: str = "Running",
    ready: bool = True,
    restarts: int = 0,
    waiting: str | None = None,
) -> dict[str, Any]:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "metadata": {
            "name": f"demo-{role}-{index}",
            "labels": {"oreal.io/run": "demo", "oreal.io/role": role},
        },
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "worker", "restartCount": restarts, "state": state}],
        },
    }


def all_pods(**overrides: Any) -> list[dict[str, Any]]:
    return [pod("rollout", 0, **overrides), pod("rollout", 1), pod("verifier"), pod("trainer")]


def fold(run: OREALRun | None = None, **kwargs: Any) -> OREALRunStatus:
    args: dict[str, Any] = dict(generation=1, pods=[], state=None, stats=None, previous=None, now=T0)
    args.update(kwargs)
    return fold_status(run or make_run(), **args)


def cond(status: OREALRunStatus, type_: str) -> tuple[str, str]:
    (c,) = [c for c in status.conditions if c.type == type_]
    return c.status, c.reason


def test_no_pods_and_no_state_is_pending_with_every_condition() -> None:
    status = fold()
    assert status.phase == "Pending"
    assert [c.type for c in status.conditions] == list(CONDITION_TYPES)
    assert cond(status, "Ready") == ("False", "PodsNotReady")
    assert cond(status, "Progressing") == ("True", "Pending")
    assert status.step is None and status.progress_percentage == 0 and status.total_steps == 20
    assert all(c.reason for c in status.conditions)  # metav1.Condition needs a reason


def test_running_pods_make_it_running_but_not_ready_until_every_role_is() -> None:
    pods = [pod("rollout", 0), pod("rollout", 1), pod("verifier"), pod("trainer", ready=False)]
    status = fold(pods=pods)
    assert status.phase == "Running"
    assert cond(status, "Ready") == ("False", "PodsNotReady")
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert "3/4 pods ready" in ready.message and "trainer 0/1" in ready.message


def test_ready_only_when_each_role_has_its_replicas() -> None:
    assert cond(fold(pods=all_pods()), "Ready") == ("True", "AllPodsReady")
    one_rollout_missing = [pod("rollout", 0), pod("verifier"), pod("trainer"), pod("trainer", 1)]
    assert cond(fold(pods=one_rollout_missing), "Ready")[0] == "False"


def test_pods_of_unknown_roles_or_being_deleted_do_not_count() -> None:
    run = make_run()
    deleting = pod("rollout", 1)
    deleting["metadata"]["deletionTimestamp"] = timestamp(T0)
    stranger = pod("rollout", 2)
    stranger["metadata"]["labels"]["oreal.io/role"] = "other"
    ok, message = readiness(run, [pod("rollout", 0), deleting, stranger, pod("verifier"), pod("trainer")])
    assert not ok and "rollout 1/2" in message


def test_pending_pods_are_pending() -> None:
    status = fold(pods=[pod("rollout", phase="Pending", ready=False)])
    assert status.phase == "Pending"


def test_a_committed_step_means_running_with_progress() -> None:
    status = fold(state=RunState(step=4, policy_version=5))
    assert status.phase == "Running"
    assert (status.step, status.policy_version, status.progress_percentage) == (4, 5, 25)
    assert "step 5/20" in next(c.message for c in status.conditions if c.type == "Progressing")


def test_restarts_sum_containers_and_init_containers() -> None:
    p = pod("trainer", restarts=2)
    p["status"]["initContainerStatuses"] = [{"name": "init", "restartCount": 1}]
    assert pod_restarts(p) == 3
    assert fold(pods=[p, pod("rollout", restarts=1)]).restarts == 4


def test_restarts_never_decrease_when_pods_are_replaced() -> None:
    previous = fold(pods=all_pods(restarts=2))
    assert fold(pods=all_pods(), previous=previous).restarts == 2


def test_too_many_restarts_fail_with_backoff_limit_exceeded() -> None:
    run = make_run(maxRestarts=2)
    assert fold(run, pods=all_pods(restarts=2)).phase == "Running"  # == maxRestarts is tolerated
    status = fold(run, pods=all_pods(restarts=3))
    assert status.phase == "Failed"
    assert cond(status, "Failed") == ("True", "BackoffLimitExceeded")
    assert cond(status, "Ready")[0] == "False" and cond(status, "Progressing")[0] == "False"
    assert status.completion_time == timestamp(T0)


def test_failure_is_sticky_when_the_pods_are_gone() -> None:
    run = make_run(maxRestarts=0)
    failed = fold(run, pods=all_pods(restarts=1))
    later = fold(run, pods=[], previous=failed, now=T0 + timedelta(minutes=5), generation=2)
    assert later.phase == "Failed" and cond(later, "Failed") == ("True", "BackoffLimitExceeded")
    assert later.completion_time == failed.completion_time
    assert later.observed_generation == 2


def test_deadline_counts_from_start_time() -> None:
    run = make_run(activeDeadlineSeconds=60)
    started = fold(run, pods=all_pods())
    assert started.start_time == timestamp(T0)
    still = fold(run, pods=all_pods(), previous=started, now=T0 + timedelta(seconds=60))
    assert still.phase == "Running"
    late = fold(run, pods=all_pods(), previous=still, now=T0 + timedelta(seconds=61))
    assert late.phase == "Failed" and cond(late, "Failed") == ("True", "DeadlineExceeded")
    assert late.start_time == timestamp(T0)


def test_done_state_succeeds_with_completion_time_and_keeps_it() -> None:
    stats = {"step": 19, "pass_rate": 0.5}
    done = fold(state=RunState(step=19, policy_version=20, done=True), stats=stats)
    assert done.phase == "Succeeded"
    assert cond(done, "Complete") == ("True", "Completed")
    assert cond(done, "Ready") == ("False", "Completed")
    assert done.progress_percentage == 100 and done.completion_time == timestamp(T0)
    later = fold(state=RunState(step=19, done=True), previous=done, now=T0 + timedelta(hours=1))
    assert later.completion_time == timestamp(T0) and later.phase == "Succeeded"


def test_succeeded_stays_succeeded_when_the_bucket_cannot_be_read() -> None:
    done = fold(state=RunState(step=19, policy_version=20, done=True))
    later = fold(previous=done, bucket_error="connection refused", now=T0 + timedelta(minutes=1))
    assert later.phase == "Succeeded" and later.step == 19


def test_suspend_clears_start_time_and_resume_restarts_the_deadline() -> None:
    run = make_run(activeDeadlineSeconds=100)
    running = fold(run, pods=all_pods())
    suspended = fold(
        make_run(activeDeadlineSeconds=100, suspend=True), previous=running, now=T0 + timedelta(seconds=90)
    )
    assert suspended.phase == "Suspended" and suspended.start_time is None
    assert cond(suspended, "Suspended") == ("True", "Suspended")
    assert cond(suspended, "Ready") == ("False", "Suspended")
    resumed = fold(run, previous=suspended, now=T0 + timedelta(seconds=500))
    assert resumed.phase == "Pending" and resumed.start_time == timestamp(T0 + timedelta(seconds=500))
    assert cond(resumed, "Suspended") == ("False", "NotSuspended")


def test_last_transition_time_kept_while_status_is_unchanged() -> None:
    first = fold(pods=all_pods(ready=False))
    later = T0 + timedelta(minutes=1)
    second = fold(pods=all_pods(ready=False), previous=first, now=later)
    assert [c.last_transition_time for c in second.conditions] == [timestamp(T0)] * len(CONDITION_TYPES)
    third = fold(pods=all_pods(), previous=second, now=later + timedelta(minutes=1))
    times = {c.type: c.last_transition_time for c in third.conditions}
    assert times["Ready"] == timestamp(later + timedelta(minutes=1))
    assert times["Progressing"] == timestamp(T0)


def test_observed_generation_on_status_and_conditions() -> None:
    status = fold(generation=7)
    assert status.observed_generation == 7
    assert {c.observed_generation for c in status.conditions} == {7}


@pytest.mark.parametrize(("step", "percent"), [(-1, 0), (0, 5), (9, 50), (19, 100)])
def test_progress_percentage(step: int, percent: int) -> None:
    assert fold(state=RunState(step=step)).progress_percentage == percent


def test_last_metrics_from_trainer_stats_keys() -> None:
    stats = {
        "pass_rate": 0.25,
        "reward": -0.5,
        "loss/policy": 1.5,
        "kl": 0.01,
        "wall_seconds": 12.0,
        "step": 3,
    }
    metrics = step_metrics(stats)
    assert metrics is not None
    assert (metrics.pass_rate, metrics.reward, metrics.loss, metrics.kl, metrics.step_seconds) == (
        0.25,
        -0.5,
        1.5,
        0.01,
        12.0,
    )
    assert fold(stats=stats, state=RunState(step=3)).last_metrics == metrics


def test_last_metrics_drop_non_finite_values_and_missing_keys() -> None:
    metrics = step_metrics({"pass_rate": float("nan"), "loss": float("inf"), "kl": "x"})
    assert metrics is not None
    assert (metrics.pass_rate, metrics.loss, metrics.kl, metrics.reward) == (None, None, None, None)
    assert step_metrics(None) is None and step_metrics({}) is None


def test_unreadable_bucket_keeps_progress_and_says_so() -> None:
    before = fold(state=RunState(step=4, policy_version=5), stats={"pass_rate": 0.4})
    after = fold(
        previous=before, bucket_error="s3://runs/demo: 403 Forbidden", now=T0 + timedelta(seconds=15)
    )
    assert (after.step, after.policy_version, after.progress_percentage) == (4, 5, 25)
    assert after.last_metrics == before.last_metrics
    message = next(c.message for c in after.conditions if c.type == "Progressing")
    assert "bucket unreadable: s3://runs/demo: 403 Forbidden" in message


def test_trouble_reasons_named_in_ready_message() -> None:
    status = fold(pods=[pod("trainer", ready=False, waiting="ImagePullBackOff")])
    message = next(c.message for c in status.conditions if c.type == "Ready")
    assert "demo-trainer-0: ImagePullBackOff" in message


def test_spec_invalid_fails_and_recovers_when_fixed() -> None:
    running = fold(state=RunState(step=2))
    invalid = spec_invalid_status("spec.storage.uri: missing", generation=2, previous=running, now=T0)
    assert invalid.phase == "Failed" and invalid.observed_generation == 2
    assert cond(invalid, "SpecInvalid") == ("True", "SpecInvalid")
    assert cond(invalid, "Failed") == ("True", "SpecInvalid")
    assert invalid.step == 2  # progress kept
    fixed = fold(previous=invalid, generation=3, state=RunState(step=2))
    assert fixed.phase == "Running"
    assert cond(fixed, "SpecInvalid") == ("False", "SpecValid") and cond(fixed, "Failed")[0] == "False"


def test_status_serialises_as_camel_case_without_nones() -> None:
    status = fold(pods=all_pods(), state=RunState(step=1), stats={"pass_rate": 0.5})
    body = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert body["progressPercentage"] == 10 and body["lastMetrics"] == {"passRate": 0.5}
    assert set(body["conditions"][0]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


def test_desired_pods_follow_the_statefulsets_replicas_and_suspend() -> None:
    run = make_run(rollout={"replicas": 3}, trainer={"nodes": 2})
    assert desired_pods(run) == {
        role: role_replicas(run.spec, role) for role in ("rollout", "verifier", "trainer")
    }
    assert desired_pods(run) == {"rollout": 3, "verifier": 1, "trainer": 2}
    assert set(desired_pods(make_run(suspend=True)).values()) == {0}


def test_finished_means_succeeded_or_failed_but_not_spec_invalid() -> None:
    done = fold(state=RunState(step=19, done=True))
    failed = fold(run=make_run(maxRestarts=0), pods=[pod("trainer", restarts=1)])
    invalid = spec_invalid_status("bad", generation=1, previous=None, now=T0)
    assert finished(done) and finished(failed)
    assert not finished(invalid) and has_true(invalid, "SpecInvalid") and has_true(invalid, "Failed")
    assert not finished(fold()) and not finished(None) and not has_true(None, "Failed")
