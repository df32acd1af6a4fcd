"""reconcile_run against an in-memory API (fake_api): what one round writes, request by request.

The controller's caches are filled the way the watches would fill them (`sync`), so each test
reads as: the cluster is in this state -> one round -> these requests, this status.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from oreal.spec import status as v
from oreal_operator.api import ApiError
from oreal_operator.config import OperatorConfig
from oreal_operator.controller import Controller
from oreal_operator.progress import Report, report_url
from oreal_operator.reconcile import OLD_FINALIZER, reconcile_run
from tests.operator.fake_api import FakeApi, FakeReports

IMAGE = "registry.example/oreal:1.0"
KEY = ("ml", "demo")


def run_body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "oreal.io/v1alpha1",
        "kind": "OREALRun",
        "metadata": {"name": "demo", "namespace": "ml", "labels": spec.pop("labels", {})},
        "spec": {
            "model": {"policy": "s3://models/tiny"},
            "data": {"prompts": "s3://data/prompts.jsonl"},
            "storage": {"uri": "s3://runs/ml/demo"},
            "algorithm": {"steps": 4, "warmupSteps": 1, "promptsPerStep": 8, "samplesPerPrompt": 2},
            "rollout": {"replicas": 2, "gpusPerReplica": 0},
            "verifier": {"replicas": 1},
            "trainer": {"nodes": 1, "gpusPerNode": 0},
            **spec,
        },
    }


class World:
    """A fake API server, the controller on it, and helpers to act as kubectl and the watches."""

    def __init__(self, image: str = IMAGE, api: FakeApi | None = None) -> None:
        self.api = api or FakeApi()
        self.reports = FakeReports()
        self.ctl = Controller(self.api, OperatorConfig(image=image), 5.0, self.reports)  # type: ignore[arg-type]

    def sync(self) -> None:
        """The watches deliver the API's objects to the caches."""
        self.ctl.runs = {k[1:]: copy.deepcopy(o) for k, o in self.api.objects.items() if k[0] == "OREALRun"}
        for kind in ("JobSet", "ConfigMap"):
            self.ctl.children[kind] = {
                (ns, o["metadata"]["ownerReferences"][0]["name"]): copy.deepcopy(o)
                for (k, ns, _), o in self.api.objects.items()
                if k == kind
            }

    def round(self, *, tick: bool = False) -> list[tuple[str, str, str]]:
        """One reconcile of the run (after the trainer's report was read, as on a status tick); the
        requests it made."""
        self.sync()
        before = len(self.api.requests)
        asyncio.run(self._round(tick))
        return self.api.requests[before:]

    async def _round(self, tick: bool) -> None:
        if tick:
            await self.ctl.read_report(KEY)
        await reconcile_run(self.ctl, KEY)

    def run(self) -> dict[str, Any]:
        return self.api.get_object("OREALRun", "ml", "demo")  # type: ignore[return-value]

    def jobset(self) -> dict[str, Any] | None:
        return self.api.get_object("JobSet", "ml", "demo")

    def edit_run(self, spec: dict[str, Any] | None = None, labels: dict[str, str] | None = None) -> None:
        """kubectl edit: the spec changes and the generation moves."""
        obj = self.api.objects[("OREALRun", "ml", "demo")]
        if spec is not None:
            obj["spec"] = {**obj["spec"], **spec}
            obj["metadata"]["generation"] += 1
        if labels is not None:
            obj["metadata"]["labels"] = labels
        obj["metadata"]["resourceVersion"] = self.api._bump()

    def jobset_status(self, **status: Any) -> None:
        """The JobSet controller writes the JobSet's status."""
        self.api.objects[("JobSet", "ml", "demo")]["status"] = status

    def status(self) -> dict[str, Any]:
        return self.run().get("status") or {}

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status()["conditions"] if c["type"] == type_)


def created(body: dict[str, Any] | None = None, **kwargs: Any) -> World:
    world = World(**kwargs)
    world.api.put(body or run_body())
    return world


def test_a_new_run_gets_its_children_and_a_status_in_four_requests() -> None:
    world = created()
    requests = world.round()
    assert requests == [
        ("create", "ConfigMap", "demo-spec"),
        ("create", "JobSet", "demo"),
        ("patch", "OREALRun", "demo"),
        ("create", "Event", "Pending"),
    ]
    status = world.status()
    assert status["phase"] == "Pending" and status["observedGeneration"] == 1
    assert (status["workerImage"], status["renderVersion"]) == (IMAGE, 1)
    assert world.jobset()["metadata"]["ownerReferences"][0]["uid"] == world.run()["metadata"]["uid"]
    # the watches bring it all back: nothing more to do, not even on a status tick
    assert world.round() == []
    assert world.round(tick=True) == []


def test_a_deleted_jobset_comes_back_at_the_next_round() -> None:
    world = created()
    world.round()
    del world.api.objects[("JobSet", "ml", "demo")]
    assert world.round() == [("create", "JobSet", "demo")]
    assert world.jobset() is not None


def test_a_hand_edited_template_is_restored() -> None:
    world = created()
    world.round()
    pod = world.api.objects[("JobSet", "ml", "demo")]["spec"]["replicatedJobs"][2]["template"]["spec"][
        "template"
    ]
    pod["spec"]["containers"][0]["image"] = "someone/else:1"
    assert world.round()[:2] == [("delete", "JobSet", "demo"), ("create", "Event", "Recreating")]
    assert "edited by hand" in world.api.events[-1][2]
    assert world.round()[0] == ("create", "JobSet", "demo")
    rendered = world.jobset()["spec"]["replicatedJobs"][2]["template"]["spec"]["template"]
    assert rendered["spec"]["containers"][0]["image"] == IMAGE


def test_a_spec_that_cannot_run_is_spec_invalid_not_failed() -> None:
    world = created(run_body(storage={"uri": "file:///data/runs/demo"}))
    requests = world.round()
    assert ("create", "JobSet", "demo") not in requests and (
        "create",
        "ConfigMap",
        "demo-spec",
    ) not in requests
    assert world.status()["phase"] == "Pending"
    assert world.condition("SpecInvalid")["status"] == "True"
    assert "spec.storage.uri" in world.condition("SpecInvalid")["message"]
    assert world.condition("Ready")["reason"] == "SpecInvalid"
    assert world.condition("Failed")["status"] == "False"
    assert "observedGeneration" not in world.status()
    assert [e[:2] for e in world.api.events] == [("Normal", "Pending"), ("Warning", "SpecInvalid")]
    assert world.round() == []  # said once


def test_an_invalid_edit_of_a_running_run_keeps_its_jobset_and_phase() -> None:
    world = created()
    world.round()
    world.jobset_status(
        replicatedJobsStatus=[{"name": r, "ready": 1} for r in ("rollout", "verifier", "trainer")]
    )
    world.round()
    assert world.status()["phase"] == "Running"
    before = world.jobset()
    world.edit_run(
        spec={"trainer": {"nodes": 1, "gpusPerNode": 2, "resources": {"limits": {"nvidia.com/gpu": 4}}}}
    )
    requests = world.round()
    assert not any(r[1] in ("JobSet", "ConfigMap") for r in requests)
    assert world.jobset() == before
    status = world.status()
    assert status["phase"] == "Running" and status["observedGeneration"] == 1  # generation 2 was not applied
    assert world.condition("SpecInvalid")["status"] == "True"
    world.edit_run(spec={"trainer": {"nodes": 1, "gpusPerNode": 0}})  # fixed
    world.round()
    assert world.status()["observedGeneration"] == 3
    assert world.condition("SpecInvalid")["status"] == "False"


def test_observed_generation_is_written_only_after_the_apply_succeeded() -> None:
    world = created()
    world.api.fail("create", "JobSet", ApiError(500, "etcd timeout", "InternalError"))
    with pytest.raises(ApiError):
        world.round()
    assert "observedGeneration" not in world.status()  # nothing written at all
    world.round()
    assert world.status()["observedGeneration"] == 1


def test_a_child_the_api_server_refuses_is_spec_invalid_until_the_spec_changes() -> None:
    world = created()
    world.api.fail(
        "create", "JobSet", ApiError(422, 'JobSet.jobset.x-k8s.io "demo" is invalid: x', "Invalid")
    )
    world.round()
    assert world.condition("SpecInvalid")["status"] == "True"
    assert world.condition("SpecInvalid")["message"].startswith("the API server refused the run's children: ")
    assert world.round(tick=True) == []  # not asked again at every tick
    world.edit_run(spec={"maxRestarts": 4})
    assert ("create", "JobSet", "demo") in world.round()
    assert world.condition("SpecInvalid")["status"] == "False"


def test_an_operator_upgrade_leaves_running_runs_alone() -> None:
    world = created()
    world.round()
    before = world.jobset()
    upgraded = World(image="registry.example/oreal:2.0", api=world.api)  # a new default worker image
    assert upgraded.round(tick=True) == []
    assert world.jobset() == before and upgraded.status()["workerImage"] == IMAGE
    # a run created after the upgrade gets the new image
    fresh = created(image="registry.example/oreal:2.0")
    fresh.round()
    assert fresh.status()["workerImage"] == "registry.example/oreal:2.0"


def test_a_new_image_or_resources_restart_the_gang_once_on_purpose() -> None:
    world = created()
    world.round()
    world.jobset_status(restarts=1)
    world.round()
    world.edit_run(
        spec={"trainer": {"nodes": 1, "gpusPerNode": 0, "resources": {"limits": {"memory": "64Gi"}}}}
    )
    assert world.round()[:3] == [
        ("patch", "ConfigMap", "demo-spec"),  # the frozen spec: the new pods' init containers store it
        ("delete", "JobSet", "demo"),
        ("create", "Event", "Recreating"),
    ]
    assert world.status()["observedGeneration"] == 1  # not in place yet
    world.round()
    jobset = world.jobset()
    limits = jobset["spec"]["replicatedJobs"][2]["template"]["spec"]["template"]["spec"]["containers"][0]
    assert limits["resources"]["limits"]["memory"] == "64Gi"
    # the restart before counts against maxRestarts (3), and stays in the run's count
    assert jobset["metadata"]["annotations"]["oreal.io/restarts-before"] == "1"
    assert jobset["spec"]["failurePolicy"]["maxRestarts"] == 2
    assert world.status()["restarts"] == 1 and world.status()["observedGeneration"] == 2


def test_suspend_and_resume_without_a_queue() -> None:
    world = created()
    world.round()
    world.edit_run(spec={"suspend": True})
    assert ("patch", "JobSet", "demo") in world.round()
    assert world.jobset()["spec"]["suspend"] is True and world.status()["phase"] == "Suspended"
    world.edit_run(spec={"suspend": False})
    world.round()
    assert world.jobset()["spec"]["suspend"] is False


def test_a_queued_run_is_created_suspended_and_never_resumed_by_the_operator() -> None:
    world = created(run_body(labels={"kueue.x-k8s.io/queue-name": "team-a"}))
    world.round()
    assert world.jobset()["spec"]["suspend"] is True
    assert world.jobset()["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert world.condition("Ready")["reason"] == "Queued"
    assert world.round(tick=True) == []
    world.api.objects[("JobSet", "ml", "demo")]["spec"]["suspend"] = False  # Kueue admits it
    world.round()
    assert world.jobset()["spec"]["suspend"] is False and world.status()["phase"] == "Pending"
    world.edit_run(spec={"suspend": True})  # Kueue owns suspend: the operator deletes the JobSet
    assert ("delete", "JobSet", "demo") in world.round()
    assert world.jobset() is None and world.status()["phase"] == "Suspended"
    world.edit_run(spec={"suspend": False})
    world.round()
    assert world.jobset()["spec"]["suspend"] is True  # queued again


def test_the_deadline_fails_the_run_and_stops_its_pods() -> None:
    world = created(run_body(activeDeadlineSeconds=1))
    world.round()
    status = world.api.objects[("OREALRun", "ml", "demo")]["status"]
    status["startTime"] = "2020-01-01T00:00:00Z"
    requests = world.round()
    assert ("delete", "JobSet", "demo") in requests
    assert world.status()["phase"] == "Failed" and world.condition("Failed")["reason"] == "DeadlineExceeded"
    assert world.round() == []  # finished: nothing comes back


def failed_pod(exit_code: int, message: str, name: str = "demo-trainer-0-0-abcde") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": {"oreal.io/run": "demo", "oreal.io/role": "trainer"},
        },
        "status": {
            "phase": "Failed",
            "initContainerStatuses": [{"name": "init-spec", "state": {"terminated": {"exitCode": 0}}}],
            "containerStatuses": [
                {
                    "name": "worker",
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "message": message,
                            "finishedAt": "2026-01-01T00:00:00Z",
                        }
                    },
                }
            ],
        },
    }


def test_a_permanent_failure_fails_the_run_with_the_containers_message() -> None:
    world = created()
    world.round()
    world.api.put(failed_pod(3, "s3://runs/ml/demo: it already holds run 'other' with a different spec"))
    world.jobset_status(
        restarts=0, conditions=[{"type": "Failed", "status": "True", "reason": "FailJobSetActionTriggered"}]
    )
    requests = world.round()
    assert ("list", "Pod", "") in requests
    assert world.status()["phase"] == "Failed"
    failed = world.condition("Failed")
    assert failed["reason"] == "PermanentError"
    assert "exited with 3: s3://runs/ml/demo: it already holds run 'other'" in failed["message"]
    assert ("Warning", "PermanentError") in [e[:2] for e in world.api.events]
    assert world.round() == []  # looked at once


def test_a_gang_restart_is_counted_once_and_named() -> None:
    world = created()
    world.round()
    world.round()  # the operator has seen the JobSet with 0 restarts
    world.api.put(failed_pod(137, "", name="demo-trainer-0-0-zzzzz"))
    world.jobset_status(restarts=1)
    assert ("list", "Pod", "") in world.round()
    assert world.status()["restarts"] == 1
    assert (
        "gang restart 1: demo-trainer-0-0-zzzzz/worker exited with 137"
        in world.condition("Progressing")["message"]
    )
    assert ("list", "Pod", "") not in world.round()


def test_the_trainers_report_is_read_on_ticks_only() -> None:
    world = created(run_body(metrics={"port": 9400}))
    world.round()
    url = report_url("demo", "ml", 9400)
    world.reports.by_url[url] = Report(started=True, step=1, policy_version=2, done=False, metrics=None)
    world.round()
    assert world.reports.reads == [] and "step" not in world.status()
    world.round(tick=True)
    assert world.reports.reads == [url]
    assert (world.status()["step"], world.status()["policyVersion"], world.status()["phase"]) == (
        1,
        2,
        "Running",
    )


def test_the_status_write_carries_the_resource_version_it_was_computed_from() -> None:
    world = created()
    world.sync()
    world.edit_run(labels={"x": "y"})  # the run changes after the watch delivered it
    asyncio.run(_round_with_stale_cache(world))
    assert "status" not in world.run()  # 409: nothing written from the stale copy
    world.round()
    assert world.status()["phase"] == "Pending"


async def _round_with_stale_cache(world: World) -> None:
    await reconcile_run(world.ctl, KEY)


def test_the_old_operators_finalizer_is_removed() -> None:
    body = run_body()
    body["metadata"]["finalizers"] = [OLD_FINALIZER, "other.example/keep"]
    world = created(body)
    requests = world.round()
    assert requests[0] == ("patch", "OREALRun", "demo")
    assert world.run()["metadata"]["finalizers"] == ["other.example/keep"]


def test_a_child_name_held_by_another_owner_is_left_alone() -> None:
    world = created()
    world.api.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "demo-spec", "namespace": "ml",
        "ownerReferences": [{"uid": "another", "controller": True, "kind": "OREALRun", "name": "demo"}]},
        "data": {"spec.yaml": "theirs"}})  # fmt: skip
    world.round()
    assert world.api.get_object("ConfigMap", "ml", "demo-spec")["data"] == {"spec.yaml": "theirs"}
    assert world.condition("Ready")["reason"] == v.NAME_TAKEN and world.jobset() is None


def test_a_cluster_without_the_jobset_api_says_so_on_ready_and_tries_again() -> None:
    world = created()
    world.api.fail(
        "create", "JobSet", ApiError(404, "the server could not find the requested resource", "NotFound")
    )
    asyncio.run(_round_and_stop(world))
    ready = world.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "APINotServed")
    assert "does not serve JobSet" in ready["message"] and "observedGeneration" not in world.status()
    assert ("Warning", "APINotServed") in [e[:2] for e in world.api.events]
    world.round()  # installed since: the next round creates it
    assert world.jobset() is not None and world.condition("Ready")["reason"] == "JobsNotReady"


async def _round_and_stop(world: World) -> None:
    world.sync()
    await reconcile_run(world.ctl, KEY)
    for timer in world.ctl._timers.values():  # the retry it scheduled: this test runs the next round
        timer.cancel()
