"""plan_configmap / plan_jobset and drift: what the operator writes for each live state, without a server."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from oreal.spec.models import OREALRun
from oreal_operator.drift import covers, drifted
from oreal_operator.errors import ForeignObjectError
from oreal_operator.naming import owner_reference
from oreal_operator.plan import plan_configmap, plan_jobset
from oreal_operator.render import RENDERED_BY, RenderOptions, render_run
from tests.operator.rendered import IMAGE, cpu_body

UID = "run-uid"
OPTS = RenderOptions(
    image=IMAGE, namespace="ml", owner=owner_reference({"metadata": {"name": "tiny", "uid": UID}})
)


def desired(**spec: Any) -> tuple[dict, dict]:
    configmap, jobset = render_run(OREALRun.model_validate(cpu_body(**spec)), OPTS)
    return configmap, jobset


def as_stored(obj: dict) -> dict:
    """`obj` as the API server, the JobSet webhook and Kueue leave it: defaults and admission added."""
    live = copy.deepcopy(obj)
    live["metadata"] |= {"uid": "child-uid", "resourceVersion": "7", "generation": 1}
    if live["kind"] == "JobSet":
        live["spec"]["startupPolicy"] = {"startupPolicyOrder": "AnyOrder"}
        live["spec"]["failurePolicy"]["restartStrategy"] = "Recreate"
        for rjob in live["spec"]["replicatedJobs"]:
            rjob["groupName"] = "default"
            pod = rjob["template"]["spec"]["template"]["spec"]
            pod["dnsPolicy"] = "ClusterFirst"
            pod["tolerations"] = [
                *pod.get("tolerations", []),
                {"key": "flavor", "operator": "Exists"},
            ]  # Kueue
            pod["nodeSelector"] = {**pod.get("nodeSelector", {}), "cloud.example/flavor": "spot"}  # Kueue
            for c in pod["containers"] + pod["initContainers"]:
                c["terminationMessagePath"] = "/dev/termination-log"
        live["status"] = {"restarts": 0}
    return live


def test_missing_children_are_created():
    configmap, jobset = desired()
    [cm_step] = plan_configmap(configmap, None, UID)
    [js_step] = plan_jobset(jobset, None, UID, queued=False)
    assert (cm_step.verb, cm_step.body) == ("create", configmap)
    assert (js_step.verb, js_step.body) == ("create", jobset)


def test_children_as_stored_by_the_server_need_nothing():
    configmap, jobset = desired()
    assert plan_configmap(configmap, as_stored(configmap), UID) == []
    assert plan_jobset(jobset, as_stored(jobset), UID, queued=False) == []
    assert covers(jobset["spec"], as_stored(jobset)["spec"])


def test_a_changed_frozen_spec_patches_the_configmap():
    configmap, _ = desired()
    stale = as_stored(configmap)
    stale["data"]["spec.yaml"] = "old"
    [step] = plan_configmap(configmap, stale, UID)
    assert (step.verb, step.body) == ("patch", {"data": configmap["data"]})


def test_suspend_is_patched_in_place_without_kueue():
    _, running = desired()
    _, suspended = desired(suspend=True)
    [step] = plan_jobset(suspended, as_stored(running), UID, queued=False)
    assert (step.verb, step.body) == ("patch", {"spec": {"suspend": True}})
    [step] = plan_jobset(running, as_stored(suspended), UID, queued=False)
    assert step.body == {"spec": {"suspend": False}}


def test_a_queued_jobsets_suspend_belongs_to_kueue():
    _, queued = desired()
    admitted = as_stored(queued)
    admitted["spec"]["suspend"] = False  # Kueue admitted it
    queued["spec"]["suspend"] = True  # as rendered for a queued run
    assert plan_jobset(queued, admitted, UID, queued=True) == []
    [step] = plan_jobset(None, admitted, UID, queued=True)  # the run is suspended: no JobSet
    assert step.verb == "delete"


def test_a_changed_spec_hash_recreates_the_jobset():
    _, before = desired()
    _, after = desired(trainer={"nodes": 1, "gpusPerNode": 0, "backend": "torch", "image": "other:2"})
    [step] = plan_jobset(after, as_stored(before), UID, queued=False)
    assert step.verb == "delete" and "spec changed" in step.why
    deleting = as_stored(before)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert plan_jobset(after, deleting, UID, queued=False) == []  # wait for it to go


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda pod: pod["containers"][0].update(image="evil:1"), "containers[0].image"),
        (lambda pod: pod["containers"][0]["env"].pop(3), "containers[0].env"),  # shorter: the list
        (lambda pod: pod.update(restartPolicy="OnFailure"), "restartPolicy"),
        (lambda pod: pod["volumes"].clear(), "volumes"),
    ],
)
def test_a_hand_edited_template_is_recreated_as_rendered(edit, where):
    _, jobset = desired()
    live = as_stored(jobset)
    edit(live["spec"]["replicatedJobs"][2]["template"]["spec"]["template"]["spec"])
    [step] = plan_jobset(jobset, live, UID, queued=False)
    assert step.verb == "delete" and "edited by hand" in step.why and where in step.why


def test_a_jobset_of_another_render_version_is_left_alone():
    """An operator upgrade (a new render version) never touches running JobSets' templates."""
    _, jobset = desired()
    live = as_stored(jobset)
    live["metadata"]["annotations"][RENDERED_BY] = "0"
    live["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0]["env"] = []
    [step] = plan_jobset(jobset, live, UID, queued=False)
    assert step.verb == "patch" and step.body == {"metadata": {"annotations": {RENDERED_BY: "1"}}}


def test_labels_and_annotations_are_patched_back():
    _, jobset = desired()
    live = as_stored(jobset)
    del live["metadata"]["labels"]["oreal.io/run"]
    live["metadata"]["labels"]["added-by-someone"] = "x"
    [step] = plan_jobset(jobset, live, UID, queued=False)
    assert step.body == {"metadata": {"labels": {"oreal.io/run": "tiny"}}}


def test_objects_of_another_owner_are_not_touched():
    configmap, jobset = desired()
    foreign = as_stored(jobset)
    foreign["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    with pytest.raises(ForeignObjectError, match="not controlled by this OREALRun"):
        plan_jobset(jobset, foreign, UID, queued=False)
    bare = as_stored(configmap)
    del bare["metadata"]["ownerReferences"]
    with pytest.raises(ForeignObjectError):
        plan_configmap(configmap, bare, UID)


def test_drift_rules():
    assert covers({"a": 1}, {"a": 1, "b": 2})  # extra keys are defaults, not drift
    assert covers([1, 2], [1, 2, 3])  # appended items (Kueue's tolerations)
    assert not covers([1, 2], [2, 1]) and not covers([1, 2], [1])
    assert not covers({"a": True}, {"a": 1})  # a bool is not a number
    assert not covers({"a": {"b": 1}}, {"a": "x"})
    assert drifted({"x": [{"y": 1}, {"y": 2}]}, {"x": [{"y": 1}, {"y": 3}]}) == ["x[1].y"]


def test_packed_children_plan_as_plain_ones():
    """The caches keep JobSets packed (packing.py): every plan is the same as with plain objects."""
    from oreal_operator.packing import Packed, dumps, pack, unpack

    _, jobset = desired()
    live = as_stored(jobset)
    assert isinstance(pack(live)["spec"]["replicatedJobs"], Packed) and unpack(pack(live)) == live
    assert pack(live) == pack(copy.deepcopy(live))  # equal objects pack equal: the caches compare them
    edited = copy.deepcopy(live)
    edited["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0]["image"] = (
        "x:1"
    )
    for a, b in ((jobset, live), (jobset, edited)):
        plain = plan_jobset(a, b, UID, queued=False)
        packed = plan_jobset(pack(a), pack(b), UID, queued=False)
        assert [(s.verb, s.why) for s in packed] == [(s.verb, s.why) for s in plain]
    del live["metadata"]  # a missing JobSet is created from the rendering, written from its packed text
    [create] = plan_jobset(pack(jobset), None, UID, queued=False)
    assert unpack(create.body) == jobset and json.loads(dumps(create.body)) == jobset


def test_an_answer_stored_as_sent_keeps_the_renderings_packing_and_any_other_is_packed_anew():
    from oreal_operator.packing import dumps, pack, unpack

    _, jobset = desired()
    packed = pack(jobset)
    answer = json.loads(dumps(packed)) | {"status": {"restarts": 0}}
    kept = pack(answer, same_as=(jobset, packed))
    assert kept["spec"]["replicatedJobs"] is packed["spec"]["replicatedJobs"] and unpack(kept) == answer
    answer["spec"]["replicatedJobs"][0]["groupName"] = "default"  # a default the API server added
    repacked = pack(answer, same_as=(jobset, packed))
    assert (
        repacked["spec"]["replicatedJobs"] != packed["spec"]["replicatedJobs"] and unpack(repacked) == answer
    )
    # compared as bytes, the packed field covers; the added default does not count as drift
    assert plan_jobset(packed, repacked, UID, queued=False) == []
