"""reconcile and kube without a server: refusals (bucket conflict, API 400/422), scaling a refused
run to 0, the timer's rules, and the bucket left unread for a finished run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from oreal.spec.models import OREALRunStatus
from oreal_operator import kube, reconcile
from oreal_operator.bucket_view import BucketView
from oreal_operator.config import OperatorConfig
from oreal_operator.render import frozen_text
from oreal_operator.status import fold_status, spec_invalid_status
from tests.operator.kmock_helpers import run_body

NOW = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)
CONFIG = OperatorConfig(image="example.org/oreal:test")
URI = "s3://runs/ml/demo"
# run_body's algorithm with more steps: a change a started run cannot take
MORE_STEPS = {"steps": 8, "warmupSteps": 1, "promptsPerStep": 8, "samplesPerPrompt": 2}


def body(status: OREALRunStatus | None = None, generation: int = 1, **spec: Any) -> dict[str, Any]:
    out = run_body("demo", "ml", **spec)
    out["metadata"].update(uid="run-uid", generation=generation)
    if status is not None:
        out["status"] = reconcile.status_patch(status)
    return out


def started_view(spec_text: str) -> BucketView:
    return BucketView(spec=spec_text, started=True)


class FakeKube:
    """kube's calls the reconcile functions make, recorded; StatefulSets by name -> replicas."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pods: list[dict[str, Any]] | None = None) -> None:
        self.pods = pods or []
        self.applied: list[str] = []
        self.scaled: list[tuple[str, str, str | None]] = []
        self.bucket_reads = 0
        self.view = BucketView()
        self.fail: ApiException | None = None
        monkeypatch.setattr(kube, "list_pods", lambda namespace, name: self.pods)
        monkeypatch.setattr(kube, "apply_child", self.apply_child)
        monkeypatch.setattr(kube, "scale_to_zero", lambda ns, name, uid: self.scaled.append((ns, name, uid)))
        monkeypatch.setattr(reconcile, "observe_bucket", self.observe_bucket)
        reconcile._rejections.clear()

    def apply_child(self, obj: dict[str, Any], owner_uid: str | None) -> str:
        if self.fail is not None and obj["kind"] == "StatefulSet":
            raise self.fail
        self.applied.append(f"{obj['kind']}/{obj['metadata']['name']}")
        return "created"

    def observe_bucket(self, run: Any, namespace: str) -> BucketView:
        self.bucket_reads += 1
        return self.view


def api_error(status: int, message: str) -> ApiException:
    err = ApiException(status=status, reason="Unprocessable Entity")
    err.body = json.dumps({"kind": "Status", "code": status, "message": message}).encode()
    return err


def cond(status: OREALRunStatus, type_: str) -> tuple[str, str]:
    (c,) = [c for c in status.conditions if c.type == type_]
    return c.status, c.message


# ---------------------------------------------------------------- the bucket's stored spec


def test_a_started_run_refuses_a_spec_changed_beyond_run_control() -> None:
    run = reconcile.parse(body())
    stored = frozen_text(run)
    assert reconcile.bucket_conflict(run, started_view(stored)) is None
    for control in ({"suspend": True}, {"maxRestarts": 9}, {"activeDeadlineSeconds": 60}):
        assert reconcile.bucket_conflict(reconcile.parse(body(**control)), started_view(stored)) is None
    more = reconcile.parse(body(algorithm=MORE_STEPS))
    message = reconcile.bucket_conflict(more, started_view(stored))
    assert message is not None and message.startswith(f"{URI}: ") and "algorithm.steps changed" in message
    # Before policy v0 the pods' init container may still replace the stored spec.
    assert reconcile.bucket_conflict(more, BucketView(spec=stored, started=False)) is None
    assert reconcile.bucket_conflict(more, BucketView()) is None


def test_an_unreadable_stored_spec_is_a_conflict_that_says_so() -> None:
    run = reconcile.parse(body())
    message = reconcile.bucket_conflict(run, started_view("spec: [unclosed"))
    assert message is not None and "spec.yaml cannot be read" in message and "\n" not in message


def test_apply_refuses_a_conflicting_spec_before_any_child_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeKube(monkeypatch)
    fake.view = started_view(frozen_text(reconcile.parse(body())))
    with pytest.raises(reconcile.SpecRejected, match="algorithm.steps changed"):
        reconcile.apply_run(body(algorithm=MORE_STEPS), CONFIG, now=NOW)
    assert fake.applied == []
    assert len(reconcile.apply_run(body(), CONFIG, now=NOW)) == 5


# ---------------------------------------------------------------- the API server's refusals


def test_a_422_or_400_is_a_spec_rejection_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeKube(monkeypatch)
    for status in (400, 422):
        fake.fail = api_error(
            status, 'StatefulSet.apps "demo-rollout" is invalid:\n cpu: Invalid value: "two"'
        )
        with pytest.raises(reconcile.SpecRejected) as err:
            reconcile.apply_run(body(), CONFIG, now=NOW)
        assert str(err.value) == (
            'the API server refused StatefulSet/demo-rollout: StatefulSet.apps "demo-rollout" is invalid: '
            'cpu: Invalid value: "two"'
        )
    fake.fail = api_error(422, "x" * 1000)
    with pytest.raises(reconcile.SpecRejected) as err:
        reconcile.apply_run(body(), CONFIG, now=NOW)
    assert len(str(err.value)) == reconcile.MAX_MESSAGE_CHARS


@pytest.mark.parametrize("status", [409, 500, 503])
def test_conflicts_and_server_errors_stay_temporary(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    fake = FakeKube(monkeypatch)
    fake.fail = api_error(status, "try again")
    with pytest.raises(ApiException):
        reconcile.apply_run(body(), CONFIG, now=NOW)
    assert reconcile._rejections == {}


def test_api_message_without_a_status_body() -> None:
    err = ApiException(status=400, reason="Bad Request")
    err.body = b"not json"
    assert kube.api_message(err) == "400 Bad Request"


def test_the_timer_keeps_an_api_refusal_until_the_spec_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeKube(monkeypatch)
    fake.fail = api_error(422, "bad cpu")
    with pytest.raises(reconcile.SpecRejected):
        reconcile.apply_run(body(), CONFIG, now=NOW)
    refused = reconcile.refuse(body(), "the API server refused StatefulSet/demo-rollout: bad cpu", NOW)
    applied = len(fake.applied)
    _, new, _ = reconcile.tick(body(refused), CONFIG, NOW)
    assert new.phase == "Failed" and cond(new, "SpecInvalid") == ("True", cond(refused, "SpecInvalid")[1])
    assert len(fake.applied) == applied and fake.bucket_reads == 1  # the apply's observation only
    # A new generation (the spec was edited): tried again, and a success clears the refusal.
    fake.fail = None
    _, new, _ = reconcile.tick(body(refused, generation=2), CONFIG, NOW)
    assert new.phase == "Pending" and cond(new, "SpecInvalid")[0] == "False"
    assert len(fake.applied) == applied + 5 and reconcile._rejections == {}


# ---------------------------------------------------------------- refused runs go to 0 pods


def test_refuse_scales_the_runs_statefulsets_and_marks_it_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeKube(monkeypatch)
    status = reconcile.refuse(body(), "spec.storage.uri: nope", NOW)
    assert fake.scaled == [("ml", f"demo-{role}", "run-uid") for role in ("rollout", "verifier", "trainer")]
    assert status.phase == "Failed" and cond(status, "SpecInvalid") == ("True", "spec.storage.uri: nope")


def test_the_timer_scales_down_an_invalid_spec_and_scales_up_once_fixed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeKube(monkeypatch)
    bad = body(storage={"uri": "file:///data/demo"})
    old, new, event = reconcile.tick(bad, CONFIG, NOW)
    assert new.phase == "Failed" and cond(new, "SpecInvalid")[0] == "True"
    assert len(fake.scaled) == 3 and fake.applied == [] and event is not None
    # Fixed: no longer SpecInvalid, rendered again with its replicas.
    _, fixed, _ = reconcile.tick(body(new), CONFIG, NOW)
    assert fixed.phase == "Pending" and len(fake.applied) == 5 and len(fake.scaled) == 3
    # And once the status says so, nothing more is applied.
    reconcile.tick(body(fixed), CONFIG, NOW)
    assert len(fake.applied) == 5


def test_a_conflict_seen_by_the_timer_keeps_spec_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeKube(monkeypatch)
    fake.view = started_view(frozen_text(reconcile.parse(body())))
    _, new, _ = reconcile.tick(body(algorithm=MORE_STEPS), CONFIG, NOW)
    assert cond(new, "SpecInvalid")[0] == "True" and "algorithm.steps changed" in cond(new, "SpecInvalid")[1]
    assert len(fake.scaled) == 3
    _, again, event = reconcile.tick(body(new, algorithm=MORE_STEPS), CONFIG, NOW)
    assert again.phase == "Failed" and cond(again, "SpecInvalid") == cond(new, "SpecInvalid")
    assert event is None and fake.applied == []
    assert len(fake.scaled) == 6  # kept at 0 while it lasts


# ---------------------------------------------------------------- finished runs


def _finished(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeKube, OREALRunStatus]:
    fake = FakeKube(monkeypatch)
    from oreal.bucket import RunState

    run = reconcile.parse(body())
    done = fold_status(
        run, generation=1, pods=[], state=RunState(step=3, done=True), stats=None, previous=None, now=NOW
    )
    return fake, done


def test_a_finished_run_without_pods_is_not_read_from_the_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    fake, done = _finished(monkeypatch)
    _, new, event = reconcile.tick(body(done), CONFIG, NOW)
    assert fake.bucket_reads == 0 and new == done and event is None and fake.applied == []


def test_a_finished_run_with_pods_left_is_read_and_stopped_again(monkeypatch: pytest.MonkeyPatch) -> None:
    fake, done = _finished(monkeypatch)
    fake.pods = [{"metadata": {"name": "demo-rollout-0", "labels": {"oreal.io/run": "demo"}}, "status": {}}]
    _, new, _ = reconcile.tick(body(done), CONFIG, NOW)
    assert fake.bucket_reads == 1 and new.phase == "Succeeded" and len(fake.applied) == 5


def test_a_spec_invalid_failure_is_not_finished(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeKube(monkeypatch)
    invalid = spec_invalid_status("bad", generation=1, previous=None, now=NOW)
    run = reconcile.parse(body())
    assert not reconcile.stopped(run, invalid)
    _, new, _ = reconcile.tick(body(invalid), CONFIG, NOW)
    assert fake.bucket_reads == 1 and new.phase == "Pending"


# ---------------------------------------------------------------- kube.scale_to_zero


class FakeStatefulSets:
    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects
        self.patches: list[tuple[str, list[dict[str, Any]]]] = []

    def read(self, name: str, namespace: str, **_: Any) -> Any:
        if name not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return type("Response", (), {"data": json.dumps(self.objects[name]).encode()})()

    def patch(self, name: str, namespace: str, ops: list[dict[str, Any]], **_: Any) -> None:
        self.patches.append((name, ops))


def test_scale_to_zero_patches_only_replicas_of_owned_statefulsets(monkeypatch: pytest.MonkeyPatch) -> None:
    def sts(replicas: int, uid: str) -> dict[str, Any]:
        owner = {"uid": uid, "controller": True}
        return {"metadata": {"ownerReferences": [owner]}, "spec": {"replicas": replicas, "template": {}}}

    api = FakeStatefulSets({"mine": sts(2, "run-uid"), "idle": sts(0, "run-uid"), "theirs": sts(3, "other")})
    monkeypatch.setattr(kube, "_calls", lambda kind: (api.read, None, api.patch))
    results = {name: kube.scale_to_zero("ml", name, "run-uid") for name in ("mine", "idle", "theirs", "gone")}
    assert results == {"mine": "scaled", "idle": "unchanged", "theirs": "foreign", "gone": "absent"}
    assert kube.scale_to_zero("ml", "mine", None) == "foreign"
    assert api.patches == [("mine", [{"op": "add", "path": "/spec/replicas", "value": 0}])]


# ---------------------------------------------------------------- an unreadable bucket fails closed


def started_status() -> OREALRunStatus:
    return OREALRunStatus(phase="Running", step=0, policy_version=1, total_steps=4)


def test_apply_on_a_started_run_waits_for_a_readable_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the bucket the operator cannot tell whether a started run takes the spec: retry, do not apply."""
    fake = FakeKube(monkeypatch)
    fake.view = BucketView(error="S3 unreachable")
    with pytest.raises(reconcile.BucketUnavailable, match="S3 unreachable"):
        reconcile.apply_run(body(started_status(), algorithm=MORE_STEPS), CONFIG, now=NOW)
    assert fake.applied == []
    # A run that has not started yet has nothing in its bucket to contradict: it is applied.
    assert len(reconcile.apply_run(body(), CONFIG, now=NOW)) == 5


def test_a_refused_run_stays_refused_while_its_bucket_cannot_be_read(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeKube(monkeypatch)
    refused = spec_invalid_status(f"{URI}: algorithm.steps changed", generation=1, previous=None, now=NOW)
    fake.view = BucketView(error="S3 unreachable")
    _, new, _ = reconcile.tick(body(refused, algorithm=MORE_STEPS), CONFIG, NOW)
    assert cond(new, "SpecInvalid") == ("True", f"{URI}: algorithm.steps changed")
    assert fake.applied == [] and len(fake.scaled) == 3
    # Readable again and no longer in conflict (the spec was reverted): rendered again.
    fake.view = started_view(frozen_text(reconcile.parse(body())))
    _, new, _ = reconcile.tick(body(refused), CONFIG, NOW)
    assert cond(new, "SpecInvalid")[0] == "False" and len(fake.applied) == 5


def test_a_finished_run_stays_finished_when_its_spec_is_edited(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a Job: an edit (valid or not) never brings a Succeeded/Failed run back."""
    fake = FakeKube(monkeypatch)
    done = OREALRunStatus(phase="Failed", step=1, policy_version=2, total_steps=4)
    bad = body(done, storage={"uri": "file:///tmp/x"})
    status = reconcile.refuse(bad, "spec.storage.uri must be a shared bucket", NOW)
    assert status.phase == "Failed" and not any(c.type == "SpecInvalid" for c in status.conditions)
    assert len(fake.scaled) == 3
