"""spec.<role>.podTemplate: the merge rule of oreal.spec.podtemplate, rule by rule, on rendered pods
that stay valid Jobs (kubernetes-validate, strict)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from pydantic import ValidationError

from oreal.spec.models import OREALRun
from oreal_operator.errors import RenderError
from oreal_operator.naming import ROLES
from oreal_operator.render import RenderOptions, render_run
from tests.operator.rendered import (
    K8S_VERSIONS,
    container,
    cpu_body,
    env_of,
    has_shm,
    job_of,
    pod_meta,
    pod_spec,
)

OPTS = RenderOptions(image="registry.example/oreal:0.1.0", namespace="ml")


def with_template(role: str = "trainer", fields: dict | None = None, **template: Any) -> list[dict]:
    body = cpu_body()
    body["spec"][role] = {**body["spec"][role], **(fields or {}), "podTemplate": template}
    return render_run(OREALRun.model_validate(body), OPTS)


def plain() -> list[dict]:
    return render_run(OREALRun.model_validate(cpu_body()), OPTS)


def test_scheduling_fields_are_set_as_given_on_that_role_only() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    }
    spread = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}]
    children = with_template(
        serviceAccountName="trainer-irsa",
        priorityClassName="training-high",
        affinity=affinity,
        topologySpreadConstraints=spread,
    )
    ps = pod_spec(children, "trainer")
    assert ps["serviceAccountName"] == "trainer-irsa"
    assert ps["priorityClassName"] == "training-high"
    assert ps["affinity"] == affinity and ps["topologySpreadConstraints"] == spread
    for role in ("rollout", "verifier"):
        assert pod_spec(children, role) == pod_spec(plain(), role)


def test_env_is_added_to_both_containers_and_replaces_ours_by_name() -> None:
    env = [
        {"name": "NCCL_IB_HCA", "value": "mlx5"},
        {"name": "OMP_NUM_THREADS", "value": "4"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
    ]
    children = with_template(fields={"resources": {"requests": {"cpu": "2"}}}, env=env)
    for name in ("worker", "init-spec"):
        c = container(children, "trainer", name)
        values = env_of(c)
        assert values["NCCL_IB_HCA"] == "mlx5" and values["OMP_NUM_THREADS"] == "4"
        names = [e["name"] for e in c["env"]]
        assert len(names) == len(set(names))  # replaced in place, not repeated
        assert names.index("OMP_NUM_THREADS") < names.index("NCCL_IB_HCA")  # ours keep their place


@pytest.mark.parametrize("name", ["OREAL_INDEX", "OREAL_RUN_URI", "OREAL_REPLICAS"])
def test_env_the_workers_rely_on_is_refused(name: str) -> None:
    with pytest.raises(RenderError, match=rf"spec\.trainer\.podTemplate\.env: {name} is set by the operator"):
        with_template(env=[{"name": name, "value": "x"}])


def test_a_volume_named_like_ours_replaces_it_and_new_volumes_can_be_mounted() -> None:
    pvc = {"name": "work", "persistentVolumeClaim": {"claimName": "scratch"}}
    cache = {"name": "hf-cache", "ephemeral": {"volumeClaimTemplate": {"spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Gi"}}}}}}  # fmt: skip
    mounts = [{"name": "hf-cache", "mountPath": "/cache"}]
    children = with_template(volumes=[pvc, cache], volumeMounts=mounts)
    ps = pod_spec(children, "trainer")
    volumes = {v["name"]: v for v in ps["volumes"]}
    assert volumes["work"] == pvc and volumes["hf-cache"] == cache
    assert [v["name"] for v in ps["volumes"]] == ["spec", "tmp", "home", "work", "hf-cache"]
    worker = container(children, "trainer")
    assert {"name": "work", "mountPath": "/var/lib/oreal"} in worker["volumeMounts"]  # same mount, PVC
    assert mounts[0] in worker["volumeMounts"]
    assert mounts[0] not in container(children, "trainer", "init-spec")["volumeMounts"]


@pytest.mark.parametrize(
    ("template", "complaint"),
    [
        ({"volumes": [{"name": "spec", "emptyDir": {}}]}, r"volumes: 'spec' is the operator's"),
        ({"volumeMounts": [{"name": "nothing", "mountPath": "/x"}]}, r"no volume named 'nothing'"),
        (
            {
                "volumes": [{"name": "data", "emptyDir": {}}],
                "volumeMounts": [{"name": "data", "mountPath": "/tmp"}],
            },
            r"/tmp is the operator's mount",
        ),
        ({"labels": {"oreal.io/role": "other"}}, r"labels: oreal.io/role set by the operator"),
    ],
)
def test_what_would_break_the_pods_is_refused_naming_the_field(template: dict, complaint: str) -> None:
    with pytest.raises(RenderError, match=rf"spec\.trainer\.podTemplate\..*{complaint}"):
        with_template(**template)


def test_the_models_refuse_unnamed_or_repeated_entries() -> None:
    for template, complaint in (
        ({"env": [{"value": "x"}]}, "env\\[0\\] needs a name"),
        (
            {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]},
            "a given more than once",
        ),
        ({"volumeMounts": [{"name": "a"}]}, "needs a mountPath"),
    ):
        with pytest.raises(ValidationError, match=complaint):
            with_template(**template)


def test_shm_size_gives_any_pod_an_in_memory_dev_shm_of_that_size() -> None:
    assert not has_shm(plain(), "verifier")
    children = with_template("verifier", shmSize="8Gi")
    assert has_shm(children, "verifier")
    [dshm] = [v for v in pod_spec(children, "verifier")["volumes"] if v["name"] == "dshm"]
    assert dshm["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}


def test_security_contexts_replace_ours_whole() -> None:
    restricted = {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }  # OpenShift picks the uid
    rdma = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"], "add": ["IPC_LOCK"]},
    }
    children = with_template(podSecurityContext=restricted, securityContext=rdma)
    ps = pod_spec(children, "trainer")
    assert ps["securityContext"] == restricted  # no runAsUser, runAsGroup, fsGroup left over
    for c in ps["containers"] + ps["initContainers"]:
        assert c["securityContext"] == rdma


def test_the_accelerator_resource_names_the_gpus() -> None:
    body = cpu_body()
    body["spec"]["trainer"] = {
        "nodes": 1,
        "gpusPerNode": 2,
        "podTemplate": {"acceleratorResource": "amd.com/gpu"},
    }
    children = render_run(OREALRun.model_validate(body), OPTS)
    limits = container(children, "trainer")["resources"]["limits"]
    assert limits == {"amd.com/gpu": "2"}
    body["spec"]["trainer"]["resources"] = {"limits": {"amd.com/gpu": 4}}
    with pytest.raises(RenderError, match=r"spec\.trainer\.resources\.limits\['amd.com/gpu'\] is 4"):
        render_run(OREALRun.model_validate(body), OPTS)


def test_labels_and_annotations_are_added_to_the_pods() -> None:
    children = with_template(labels={"team": "rl"}, annotations={"sidecar.istio.io/inject": "false"})
    meta = pod_meta(children, "trainer")
    assert meta["labels"]["team"] == "rl" and meta["labels"]["oreal.io/role"] == "trainer"
    assert meta["annotations"]["sidecar.istio.io/inject"] == "false"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_override_renders_a_valid_job(version: str) -> None:
    template = {
        "serviceAccountName": "sa",
        "priorityClassName": "high",
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
        "env": [{"name": "NCCL_DEBUG", "value": "INFO"}],
        "volumes": [
            {"name": "work", "persistentVolumeClaim": {"claimName": "w"}},
            {"name": "d", "emptyDir": {}},
        ],
        "volumeMounts": [{"name": "d", "mountPath": "/data", "readOnly": True}],
        "shmSize": "1Gi",
        "securityContext": {"runAsNonRoot": True},
        "podSecurityContext": {"runAsNonRoot": True},
        "labels": {"team": "rl"},
        "annotations": {"a": "b"},
    }
    children = with_template(**template)
    for role in ROLES:
        kubernetes_validate.validate(job_of(children, role), version, strict=True)
