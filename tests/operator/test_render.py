"""render_children: the operator's children of an OREALRun, rendered without a cluster.

Two specs: examples/run.yaml (GPU: 4 rollout x 1 GPU, 1 verifier, 2 trainer nodes x 8 GPUs, S3 with a
Secret) and a small CPU spec built here (hf rollout without GPUs, one trainer process, metrics off).
Every object is checked against the Kubernetes OpenAPI schemas (kubernetes-validate, strict).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from oreal.spec import load_run, parse_run
from oreal.spec.models import OREALRun
from oreal.workers.init import frozen_spec
from oreal_operator.config import ConfigError, OperatorConfig
from oreal_operator.naming import (
    ROLE_LABEL,
    ROLES,
    RUN_LABEL,
    child_name,
    labels,
    owner_reference,
    selector,
    spec_configmap_name,
)
from oreal_operator.render import (
    MAX_RUN_NAME,
    RenderError,
    RenderOptions,
    frozen_text,
    render_children,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "run.yaml"
K8S_VERSIONS = ("1.31.0", "1.37.0")  # oldest and newest schemas we support
IMAGE = "registry.example/oreal:0.1.0"
BODY = {"metadata": {"name": "qwen7b-oreal", "namespace": "rl", "uid": "0b7c-uid"}}


# ---------------------------------------------------------------- fixtures and helpers


def cpu_body(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "oreal.io/v1alpha1",
        "kind": "OREALRun",
        "metadata": {"name": "tiny", "namespace": "ml"},
        "spec": {
            "model": {"policy": "/models/tiny"},  # baked into the image: allowed
            "data": {"prompts": "gs://data/prompts.jsonl"},
            "storage": {"uri": "gs://runs/ml/tiny"},
            "algorithm": {"steps": 3, "warmupSteps": 1, "promptsPerStep": 4, "samplesPerPrompt": 2},
            "rollout": {"replicas": 2, "gpusPerReplica": 0, "engine": "hf"},
            "verifier": {"replicas": 3},
            "trainer": {"nodes": 1, "gpusPerNode": 0, "backend": "torch"},
            "metrics": {"port": 0},
        },
    }
    for key, value in spec.items():
        body["spec"][key] = value
    return body


def cpu_run(**spec: Any) -> OREALRun:
    return OREALRun.model_validate(cpu_body(**spec))


@pytest.fixture(scope="module")
def gpu_run() -> OREALRun:
    return load_run(EXAMPLE)


@pytest.fixture(scope="module")
def opts() -> RenderOptions:
    return RenderOptions(image=IMAGE, namespace="rl", owner=owner_reference(BODY))


def find(children: list[dict], kind: str, name: str) -> dict:
    [found] = [c for c in children if c["kind"] == kind and c["metadata"]["name"] == name]
    return found


def statefulset(children: list[dict], run_name: str, role: str) -> dict:
    return find(children, "StatefulSet", child_name(run_name, role))


def pod_spec(children: list[dict], run_name: str, role: str) -> dict:
    return statefulset(children, run_name, role)["spec"]["template"]["spec"]


def container(children: list[dict], run_name: str, role: str, name: str = "worker") -> dict:
    ps = pod_spec(children, run_name, role)
    found = [c for c in ps["containers"] + ps["initContainers"] if c["name"] == name]
    assert len(found) == 1
    return found[0]


def env_of(c: dict) -> dict[str, Any]:
    """name -> value, or the fieldRef path for downward-API variables."""
    out = {}
    for e in c["env"]:
        out[e["name"]] = e["value"] if "value" in e else e["valueFrom"]["fieldRef"]["fieldPath"]
    return out


def gpu_limit(c: dict) -> str | None:
    return c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")


# ---------------------------------------------------------------- schema and shape


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("stopped", [False, True])
@pytest.mark.parametrize("which", ["gpu", "cpu"])
def test_every_object_validates_against_the_kubernetes_schema(gpu_run, opts, which, stopped, version):
    run = gpu_run if which == "gpu" else cpu_run()
    children = render_children(run, opts, stopped=stopped)
    for obj in children:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize(
    ("path", "key", "value"),
    [
        (("spec", "template", "spec"), "tolerations", [{"key": "a", "tolerationseconds": 5}]),  # misspelt
        (("spec",), "replicas", "2"),  # wrong type
        (("spec", "template", "spec", "containers", 0), "name", None),  # required field missing
    ],
)
def test_the_schema_check_rejects_what_the_api_server_would(gpu_run, opts, path, key, value):
    """The validation above has teeth: small mistakes in a rendered StatefulSet fail it."""
    bad = copy.deepcopy(statefulset(render_children(gpu_run, opts), "qwen7b-oreal", "trainer"))
    target: Any = bad
    for step in path:
        target = target[step]
    if value is None:
        del target[key]
    else:
        target[key] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.31.0", strict=True)


def test_children_names_kinds_and_order(gpu_run, opts):
    children = render_children(gpu_run, opts)
    assert [(c["kind"], c["metadata"]["name"]) for c in children] == [
        ("ConfigMap", "qwen7b-oreal-spec"),
        ("Service", "qwen7b-oreal-trainer"),
        ("StatefulSet", "qwen7b-oreal-rollout"),
        ("StatefulSet", "qwen7b-oreal-verifier"),
        ("StatefulSet", "qwen7b-oreal-trainer"),
    ]


def test_every_object_has_namespace_labels_and_owner(gpu_run, opts):
    children = render_children(gpu_run, opts)
    for obj in children:
        meta = obj["metadata"]
        assert meta["namespace"] == "rl"
        role = meta["labels"].get(ROLE_LABEL)
        assert meta["labels"] == labels("qwen7b-oreal", role)
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "oreal.io/v1alpha1",
                "kind": "OREALRun",
                "name": "qwen7b-oreal",
                "uid": "0b7c-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    roles = [c["metadata"]["labels"].get(ROLE_LABEL) for c in children]
    assert roles == [None, "trainer", "rollout", "verifier", "trainer"]


def test_no_owner_reference_without_an_owner(gpu_run):
    children = render_children(gpu_run, RenderOptions(image=IMAGE, namespace="other"))
    for obj in children:
        assert "ownerReferences" not in obj["metadata"]
        assert obj["metadata"]["namespace"] == "other"
    args = container(children, "qwen7b-oreal", "trainer")["command"]
    assert "--master-addr=qwen7b-oreal-trainer-0.qwen7b-oreal-trainer.other.svc" in args


def test_statefulset_selectors_match_their_pod_labels(gpu_run, opts):
    children = render_children(gpu_run, opts)
    for role in ROLES:
        sts = statefulset(children, "qwen7b-oreal", role)
        match = sts["spec"]["selector"]["matchLabels"]
        assert match == selector("qwen7b-oreal", role)
        pod_labels = sts["spec"]["template"]["metadata"]["labels"]
        assert pod_labels == labels("qwen7b-oreal", role)
        assert match.items() <= pod_labels.items()
        assert sts["spec"]["podManagementPolicy"] == "Parallel"
        assert sts["spec"]["serviceName"] == child_name("qwen7b-oreal", role)


def test_trainer_service_is_headless_and_selects_trainer_pods(gpu_run, opts):
    children = render_children(gpu_run, opts)
    svc = find(children, "Service", "qwen7b-oreal-trainer")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {RUN_LABEL: "qwen7b-oreal", ROLE_LABEL: "trainer"}
    assert [p["port"] for p in svc["spec"]["ports"]] == [29500]


# ---------------------------------------------------------------- replicas


def test_replicas_follow_the_spec(gpu_run, opts):
    gpu = render_children(gpu_run, opts)
    cpu = render_children(cpu_run(), opts)
    replicas = lambda children: [c["spec"]["replicas"] for c in children if c["kind"] == "StatefulSet"]  # noqa: E731
    assert replicas(gpu) == [4, 1, 2]
    assert replicas(cpu) == [2, 3, 1]


@pytest.mark.parametrize("how", ["stopped", "spec.suspend"])
def test_a_stopped_run_has_no_pods_and_the_same_templates(gpu_run, opts, how):
    running = render_children(gpu_run, opts)
    if how == "stopped":
        stopped = render_children(gpu_run, opts, stopped=True)
    else:
        suspended = gpu_run.model_copy(deep=True)
        suspended.spec.suspend = True
        stopped = render_children(suspended, opts)
    sts = lambda children: [c for c in children if c["kind"] == "StatefulSet"]  # noqa: E731
    assert [s["spec"]["replicas"] for s in sts(stopped)] == [0, 0, 0]
    # the pods' templates do not change, so resuming restarts the same pods
    assert [s["spec"]["template"] for s in sts(stopped)] == [s["spec"]["template"] for s in sts(running)]


# ---------------------------------------------------------------- containers: commands and env


def test_env_of_each_role(gpu_run, opts):
    children = render_children(gpu_run, opts)
    expected_replicas = {"rollout": "4", "verifier": "1", "trainer": "2"}
    # CPU requests 8, 16 and 64 (the trainer's split over its 8 torchrun processes)
    expected_threads = {"rollout": "8", "verifier": "16", "trainer": "8"}
    for role in ROLES:
        env = env_of(container(children, "qwen7b-oreal", role))
        assert env == {
            "OREAL_RUN": "qwen7b-oreal",
            "OREAL_NAMESPACE": "metadata.namespace",
            "OREAL_RUN_URI": "s3://team-rl/runs/rl/qwen7b-oreal/",
            "OREAL_STORAGE_ENDPOINT": "https://s3.us-east-1.amazonaws.com",
            "OREAL_STORAGE_REGION": "us-east-1",
            "OREAL_INDEX": "metadata.labels['apps.kubernetes.io/pod-index']",
            "OREAL_REPLICAS": expected_replicas[role],
            "OREAL_METRICS_PORT": "9400",
            "OREAL_WORK_DIR": "/var/lib/oreal",
            "HOME": "/home/oreal",
            "TMPDIR": "/tmp",
            "PYTHONUNBUFFERED": "1",
            "OREAL_NUM_THREADS": expected_threads[role],
            "OMP_NUM_THREADS": expected_threads[role],
            "TOKENIZERS_PARALLELISM": "false",
        }, role


@pytest.mark.parametrize(
    ("resources", "threads"),
    [
        ({}, None),  # no CPU given: torch decides
        ({"requests": {"cpu": "500m"}}, "1"),
        ({"requests": {"cpu": "2500m"}}, "2"),
        ({"requests": {"cpu": 3}}, "3"),
        ({"requests": {"cpu": "2"}, "limits": {"cpu": "6"}}, "6"),  # the limit is what the pod may use
        ({"requests": {"cpu": "2k"}}, None),  # not a plain number: left alone
        ({"requests": {"cpu": "0"}}, None),
        ({"requests": {"cpu": "inf"}}, None),
    ],
)
def test_cpu_threads_follow_the_role_cpus(opts, resources, threads):
    env = env_of(
        container(render_children(cpu_run(verifier={"resources": resources}), opts), "tiny", "verifier")
    )
    assert env.get("OREAL_NUM_THREADS") == threads
    assert env.get("OMP_NUM_THREADS") == threads


def test_storage_endpoint_and_region_only_when_set(opts):
    env = env_of(container(render_children(cpu_run(), opts), "tiny", "verifier"))
    assert "OREAL_STORAGE_ENDPOINT" not in env and "OREAL_STORAGE_REGION" not in env
    assert env["OREAL_RUN_URI"] == "gs://runs/ml/tiny"
    assert env["OREAL_REPLICAS"] == "3"


@pytest.mark.parametrize("role", ROLES)
def test_init_container_stores_the_mounted_spec_with_the_workers_env(gpu_run, opts, role):
    children = render_children(gpu_run, opts)
    ps = pod_spec(children, "qwen7b-oreal", role)
    [init] = ps["initContainers"]
    [worker] = ps["containers"]
    assert init["name"] == "init-spec"
    assert init["command"] == ["oreal", "worker", "init", "--spec", "/etc/oreal/spec.yaml"]
    assert init["env"] == worker["env"] and init["envFrom"] == worker["envFrom"]
    assert init["env"] is not worker["env"]  # no aliasing between containers
    assert init["image"] == worker["image"] == IMAGE
    spec_mount = [m for m in init["volumeMounts"] if m["name"] == "spec"]
    assert spec_mount == [{"name": "spec", "mountPath": "/etc/oreal", "readOnly": True}]
    [volume] = [v for v in ps["volumes"] if v["name"] == "spec"]
    assert volume["configMap"]["name"] == spec_configmap_name("qwen7b-oreal")
    assert volume["configMap"]["items"] == [{"key": "spec.yaml", "path": "spec.yaml"}]
    assert gpu_limit(init) is None  # the init container needs no GPU


def test_rollout_and_verifier_run_their_worker(gpu_run, opts):
    children = render_children(gpu_run, opts)
    assert container(children, "qwen7b-oreal", "rollout")["command"] == ["oreal", "worker", "rollout"]
    assert container(children, "qwen7b-oreal", "verifier")["command"] == ["oreal", "worker", "verifier"]


def test_multi_node_trainer_runs_under_torchrun(gpu_run, opts):
    children = render_children(gpu_run, opts)
    c = container(children, "qwen7b-oreal", "trainer")
    assert c["command"] == [
        "torchrun",
        "--nnodes=2",
        "--nproc-per-node=8",
        "--node-rank=$(OREAL_INDEX)",  # expanded by the kubelet from the env below
        "--master-addr=qwen7b-oreal-trainer-0.qwen7b-oreal-trainer.rl.svc",
        "--master-port=29500",
        "-m",
        "oreal.workers",
        "trainer",
    ]
    assert "OREAL_INDEX" in env_of(c)
    assert {"name": "torchrun", "containerPort": 29500, "protocol": "TCP"} in c["ports"]
    # the master address names pod 0 of the trainer StatefulSet under its headless Service
    service = find(children, "Service", "qwen7b-oreal-trainer")
    assert (
        statefulset(children, "qwen7b-oreal", "trainer")["spec"]["serviceName"] == service["metadata"]["name"]
    )
    assert service["spec"]["ports"][0]["port"] == 29500


def test_single_process_trainer_runs_the_plain_worker(opts):
    c = container(render_children(cpu_run(), opts), "tiny", "trainer")
    assert c["command"] == ["oreal", "worker", "trainer"]
    assert "ports" not in c


def test_single_node_multi_gpu_trainer_uses_a_standalone_rendezvous(opts):
    run = cpu_run(trainer={"nodes": 1, "gpusPerNode": 4})
    c = container(render_children(run, opts), "tiny", "trainer")
    assert c["command"] == [
        "torchrun",
        "--standalone",
        "--nnodes=1",
        "--nproc-per-node=4",
        "-m",
        "oreal.workers",
        "trainer",
    ]
    assert gpu_limit(c) == "4"


def test_role_image_overrides_the_operator_image(opts):
    run = cpu_run(verifier={"replicas": 1, "image": "registry.example/verifier:2"})
    children = render_children(run, opts)
    assert container(children, "tiny", "verifier")["image"] == "registry.example/verifier:2"
    assert container(children, "tiny", "verifier", "init-spec")["image"] == "registry.example/verifier:2"
    assert container(children, "tiny", "rollout")["image"] == IMAGE


def test_pull_policy_and_service_account_from_the_options():
    o = RenderOptions(image=IMAGE, namespace="ml", image_pull_policy="Always", service_account="runner")
    children = render_children(cpu_run(), o)
    for role in ROLES:
        ps = pod_spec(children, "tiny", role)
        assert ps["serviceAccountName"] == "runner"
        assert {c["imagePullPolicy"] for c in ps["containers"] + ps["initContainers"]} == {"Always"}
    assert "serviceAccountName" not in pod_spec(
        render_children(cpu_run(), RenderOptions(IMAGE, "ml")), "tiny", "rollout"
    )


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_image_pull_secrets_reach_every_pod(gpu_run, version):
    o = RenderOptions(image=IMAGE, namespace="rl", image_pull_secrets=("regcred", "mirror.example"))
    children = render_children(gpu_run, o)
    for role in ROLES:
        ps = pod_spec(children, gpu_run.metadata.name, role)
        assert ps["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror.example"}]
    for obj in children:
        kubernetes_validate.validate(obj, version, strict=True)
    # none given: no field at all (an empty list would still change the templates of running runs)
    plain_children = render_children(gpu_run, RenderOptions(image=IMAGE, namespace="rl"))
    for role in ROLES:
        assert "imagePullSecrets" not in pod_spec(plain_children, gpu_run.metadata.name, role)


def test_operator_config_reads_the_workers_pull_secrets():
    base = {"OREAL_WORKER_IMAGE": IMAGE}
    assert OperatorConfig.from_env(base).image_pull_secrets == ()
    config = OperatorConfig.from_env(
        base | {"OREAL_WORKER_IMAGE_PULL_SECRETS": " regcred,, mirror.example ,regcred,"}
    )
    assert config.image_pull_secrets == ("regcred", "mirror.example")
    assert OperatorConfig.from_env(base | {"OREAL_WORKER_IMAGE_PULL_SECRETS": " , "}).image_pull_secrets == ()


@pytest.mark.parametrize("bad", ["RegCred", "reg_cred", "-regcred", "regcred.", "a..b", "x" * 254])
def test_operator_config_rejects_invalid_pull_secret_names(bad):
    env = {"OREAL_WORKER_IMAGE": IMAGE, "OREAL_WORKER_IMAGE_PULL_SECRETS": f"regcred,{bad}"}
    with pytest.raises(ConfigError, match=r"OREAL_WORKER_IMAGE_PULL_SECRETS: .* is not a Secret name"):
        OperatorConfig.from_env(env)


# ---------------------------------------------------------------- resources and scheduling


def test_gpu_limits_per_role(gpu_run, opts):
    gpu = render_children(gpu_run, opts)
    assert gpu_limit(container(gpu, "qwen7b-oreal", "rollout")) == "1"
    assert gpu_limit(container(gpu, "qwen7b-oreal", "trainer")) == "8"
    assert gpu_limit(container(gpu, "qwen7b-oreal", "verifier")) is None
    cpu = render_children(cpu_run(), opts)  # hf rollout on CPU, one CPU trainer
    for role in ROLES:
        assert gpu_limit(container(cpu, "tiny", role)) is None, role


def test_shared_memory_only_for_gpu_pods(gpu_run, opts):
    gpu = render_children(gpu_run, opts)
    cpu = render_children(cpu_run(), opts)

    def has_shm(children: list[dict], run_name: str, role: str) -> bool:
        ps = pod_spec(children, run_name, role)
        memory = [v for v in ps["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
        mounted = [m["name"] for m in ps["containers"][0]["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        assert mounted == [v["name"] for v in memory], role  # no memory volume without its mount
        return bool(mounted)

    assert [has_shm(gpu, "qwen7b-oreal", r) for r in ROLES] == [True, False, True]
    assert [has_shm(cpu, "tiny", r) for r in ROLES] == [False, False, False]


def test_resources_node_selector_and_tolerations_are_carried_over(gpu_run, opts):
    children = render_children(gpu_run, opts)
    rollout = pod_spec(children, "qwen7b-oreal", "rollout")
    assert rollout["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert rollout["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert rollout["containers"][0]["resources"] == {
        "requests": {"cpu": "8", "memory": "64Gi"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    # the init container gets the same CPU/memory (quota-friendly) and no GPU
    assert rollout["initContainers"][0]["resources"] == {"requests": {"cpu": "8", "memory": "64Gi"}}
    verifier = pod_spec(children, "qwen7b-oreal", "verifier")
    assert "nodeSelector" not in verifier and "tolerations" not in verifier
    assert verifier["containers"][0]["resources"] == {"requests": {"cpu": "16", "memory": "16Gi"}}


def test_toleration_keys_are_camel_case(opts):
    tol = {"key": "spot", "operator": "Equal", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 30}
    run = cpu_run(verifier={"tolerations": [tol], "nodeSelector": {"pool": "cpu"}})
    ps = pod_spec(render_children(run, opts), "tiny", "verifier")
    assert ps["tolerations"] == [tol]
    assert ps["nodeSelector"] == {"pool": "cpu"}
    kubernetes_validate.validate(
        statefulset(render_children(run, opts), "tiny", "verifier"), "1.31.0", strict=True
    )


def test_gpu_count_in_resources_must_match_the_role(opts):
    run = cpu_run(trainer={"gpusPerNode": 8, "resources": {"limits": {"nvidia.com/gpu": 4}}})
    with pytest.raises(RenderError, match=r"spec\.trainer\.resources\.limits.*spec\.trainer\.gpusPerNode"):
        render_children(run, opts)
    cpu_rollout = cpu_run(rollout={"gpusPerReplica": 0, "resources": {"limits": {"nvidia.com/gpu": 1}}})
    with pytest.raises(RenderError, match=r"spec\.rollout\.gpusPerReplica is 0"):
        render_children(cpu_rollout, opts)


# ---------------------------------------------------------------- secrets, metrics, security


def test_secret_is_env_from_for_every_container(gpu_run, opts):
    children = render_children(gpu_run, opts)
    for role in ROLES:
        ps = pod_spec(children, "qwen7b-oreal", role)
        for c in ps["containers"] + ps["initContainers"]:
            assert c["envFrom"] == [{"secretRef": {"name": "team-rl-s3"}}]
    cpu = render_children(cpu_run(), opts)
    for role in ROLES:
        assert "envFrom" not in container(cpu, "tiny", role)


def test_metrics_port_is_declared_and_annotated(gpu_run, opts):
    children = render_children(gpu_run, opts)
    for role in ROLES:
        c = container(children, "qwen7b-oreal", role)
        assert {"name": "metrics", "containerPort": 9400, "protocol": "TCP"} in c["ports"]
        annotations = statefulset(children, "qwen7b-oreal", role)["spec"]["template"]["metadata"][
            "annotations"
        ]
        assert annotations["prometheus.io/port"] == "9400"
        assert annotations["prometheus.io/scrape"] == "true"


def test_metrics_port_zero_declares_no_port(opts):
    children = render_children(cpu_run(trainer={"nodes": 2, "gpusPerNode": 0}), opts)
    for role in ROLES:
        c = container(children, "tiny", role)
        assert all(p["name"] != "metrics" for p in c.get("ports", [])), role
        assert env_of(c)["OREAL_METRICS_PORT"] == "0"
        meta = statefulset(children, "tiny", role)["spec"]["template"]["metadata"]
        assert not any(k.startswith("prometheus.io/") for k in meta["annotations"])
    # two CPU trainer nodes: one process each, still a torchrun rendezvous
    assert container(children, "tiny", "trainer")["command"][:3] == [
        "torchrun",
        "--nnodes=2",
        "--nproc-per-node=1",
    ]


@pytest.mark.parametrize("role", ROLES)
def test_pods_are_locked_down(gpu_run, opts, role):
    ps = pod_spec(render_children(gpu_run, opts), "qwen7b-oreal", role)
    assert ps["securityContext"]["runAsNonRoot"] is True
    assert ps["securityContext"]["runAsUser"] != 0
    assert ps["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ps["automountServiceAccountToken"] is False
    for c in ps["containers"] + ps["initContainers"]:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("role", ROLES)
def test_every_written_path_is_a_mounted_empty_dir(gpu_run, opts, role):
    """The root filesystem is read-only: HOME, TMPDIR and the work dir must be emptyDir mounts."""
    ps = pod_spec(render_children(gpu_run, opts), "qwen7b-oreal", role)
    empty_dirs = {v["name"] for v in ps["volumes"] if "emptyDir" in v}
    for c in ps["containers"] + ps["initContainers"]:
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"] if m["name"] in empty_dirs}
        env = env_of(c)
        wanted = ["HOME", "TMPDIR"] + (["OREAL_WORK_DIR"] if c["name"] == "worker" else [])
        for var in wanted:
            path = env[var]
            assert any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts), (
                c["name"],
                var,
                path,
            )


# ---------------------------------------------------------------- the frozen spec


def test_configmap_holds_the_frozen_spec_byte_for_byte(gpu_run, opts):
    text = find(render_children(gpu_run, opts), "ConfigMap", "qwen7b-oreal-spec")["data"]["spec.yaml"]
    assert text == frozen_spec(gpu_run, gpu_run.spec.storage.uri)
    back = parse_run(text)
    assert back.spec == gpu_run.spec
    assert back.metadata.name == "qwen7b-oreal"
    # the init container freezes what it reads again: the bytes must not change
    assert frozen_spec(back, back.spec.storage.uri) == text


def test_frozen_spec_ignores_server_and_controller_metadata(gpu_run):
    body = gpu_run.model_dump(by_alias=True, mode="json", exclude_none=True)
    body["metadata"] |= {
        "uid": "0b7c-uid",
        "resourceVersion": "4711",
        "generation": 3,
        "creationTimestamp": "2026-11-28T04:00:00Z",
        "managedFields": [{"manager": "kubectl", "operation": "Update"}],
        "finalizers": ["oreal.io/finalizer"],
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": json.dumps(body),
            "kopf.zalando.org/last-handled-configuration": "{}",
            "operator.oreal.io/last-handled-configuration": "{}",
        },
    }
    body["status"] = {"phase": "Running", "step": 7}
    from_cluster = OREALRun.model_validate(body)
    assert frozen_text(from_cluster) == frozen_spec(gpu_run, gpu_run.spec.storage.uri)
    # an annotation the user wrote is part of the run
    body["metadata"]["annotations"]["team.example/owner"] = "alice"
    kept = parse_run(frozen_text(OREALRun.model_validate(body)))
    assert kept.metadata.annotations == {"team.example/owner": "alice"}


def test_rendering_is_deterministic_and_returns_fresh_objects(gpu_run, opts):
    first = render_children(gpu_run, opts)
    second = render_children(copy.deepcopy(gpu_run), opts)
    assert first == second
    assert json.dumps(first, sort_keys=False) == json.dumps(second, sort_keys=False)
    first[2]["spec"]["template"]["spec"]["containers"][0]["env"].clear()
    first[0]["metadata"]["ownerReferences"][0]["name"] = "changed"
    assert render_children(gpu_run, opts) == second
    assert opts.owner["name"] == "qwen7b-oreal"


# ---------------------------------------------------------------- specs that cannot run on Kubernetes


@pytest.mark.parametrize(
    "uri",
    [None, "/data/runs/tiny", "runs/tiny", "file:///data/runs/tiny", "memory://runs/tiny", "http://x/runs"],
)
def test_storage_must_be_a_shared_bucket(opts, uri):
    storage = {} if uri is None else {"uri": uri}
    with pytest.raises(RenderError, match=r"spec\.storage\.uri") as err:
        render_children(cpu_run(storage=storage), opts)
    assert "s3://" in str(err.value) and "gs://" in str(err.value)


@pytest.mark.parametrize("uri", ["s3://b/runs/x", "s3a://b/runs/x", "gs://b/runs/x", "gcs://b/runs/x"])
def test_shared_buckets_are_accepted(opts, uri):
    children = render_children(cpu_run(storage={"uri": uri}), opts)
    assert env_of(container(children, "tiny", "rollout"))["OREAL_RUN_URI"] == uri


def test_run_name_must_make_valid_child_names(opts):
    with pytest.raises(RenderError, match=r"metadata\.name '7b-run' must start with a letter"):
        render_children(OREALRun.model_validate(cpu_body() | {"metadata": {"name": "7b-run"}}), opts)
    too_long = "r" * (MAX_RUN_NAME + 1)
    with pytest.raises(RenderError, match=r"metadata\.name .* at most 43"):
        render_children(OREALRun.model_validate(cpu_body() | {"metadata": {"name": too_long}}), opts)
    longest = "r" * MAX_RUN_NAME
    children = render_children(OREALRun.model_validate(cpu_body() | {"metadata": {"name": longest}}), opts)
    for obj in children:
        assert len(obj["metadata"]["name"]) <= 52
        kubernetes_validate.validate(obj, "1.31.0", strict=True)


# ---------------------------------------------------------------- naming


def test_naming_helpers():
    assert [child_name("r", role) for role in ROLES] == ["r-rollout", "r-verifier", "r-trainer"]
    assert spec_configmap_name("r") == "r-spec"
    with pytest.raises(ValueError, match="unknown role"):
        child_name("r", "judge")
    assert labels("r") == {
        "app.kubernetes.io/name": "oreal",
        "app.kubernetes.io/instance": "r",
        "app.kubernetes.io/managed-by": "oreal-operator",
        "app.kubernetes.io/part-of": "oreal",
        "oreal.io/run": "r",
    }
    assert labels("r", "trainer") == labels("r") | {
        "app.kubernetes.io/component": "trainer",
        "oreal.io/role": "trainer",
    }
    assert selector("r", "verifier") == {"oreal.io/run": "r", "oreal.io/role": "verifier"}


# ---------------------------------------------------------------- snapshot

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "render_run_yaml.yaml"


def test_rendered_example_matches_the_snapshot(gpu_run, opts):
    """Any change to a rendered pod template restarts the pods of every running run when the operator
    is upgraded: such a change must be deliberate. Review the diff, then refresh the snapshot with
    OREAL_UPDATE_SNAPSHOTS=1 pytest tests/operator/test_render.py."""
    text = yaml.safe_dump_all(render_children(gpu_run, opts), sort_keys=True)
    if os.environ.get("OREAL_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.exists(), f"no snapshot at {SNAPSHOT}; create it with OREAL_UPDATE_SNAPSHOTS=1"
    assert text == SNAPSHOT.read_text()


# ---------------------------------------------------------------- the pods fit the workers


def pod_environment(c: dict, index: int) -> dict[str, str]:
    """The container's env as the kubelet would resolve it in pod `index` of namespace rl."""
    fields = {"metadata.namespace": "rl", "metadata.labels['apps.kubernetes.io/pod-index']": str(index)}
    out = {}
    for e in c["env"]:
        out[e["name"]] = e["value"] if "value" in e else fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return out


@pytest.mark.parametrize("role", ROLES)
def test_pod_commands_parse_with_the_worker_cli(opts, monkeypatch, role):
    """`oreal worker ...` in the pods is a command the CLI accepts, with the pod's env as defaults."""
    from oreal.cli import build_parser
    from oreal.workers.common import replica_index

    children = render_children(cpu_run(), opts)  # plain `oreal worker ROLE` for every role here
    for c in (
        pod_spec(children, "tiny", role)["initContainers"] + pod_spec(children, "tiny", role)["containers"]
    ):
        monkeypatch.setattr(os, "environ", pod_environment(c, index=1))
        assert c["command"][0] == "oreal"
        args = build_parser().parse_args(c["command"][1:])
        assert args.command == "worker" and callable(args.func)
        assert args.run == "gs://runs/ml/tiny"  # from $OREAL_RUN_URI
        if c["name"] == "init-spec":
            assert args.role == "init" and str(args.spec) == "/etc/oreal/spec.yaml"
        else:
            assert args.role == role
            if role != "trainer":
                # the worker resolves its index from the env when it opens the run (open_run)
                index = replica_index(os.environ) if args.index is None else args.index
                assert (index, args.replicas) == (1, {"rollout": 2, "verifier": 3}[role])


def test_trainer_torchrun_command_parses_with_torchrun(gpu_run, opts):
    from torch.distributed.run import get_args_parser

    c = container(render_children(gpu_run, opts), "qwen7b-oreal", "trainer")
    env = pod_environment(c, index=1)
    argv = [a.replace("$(OREAL_INDEX)", env["OREAL_INDEX"]) for a in c["command"]]
    assert argv[0] == "torchrun"
    args = get_args_parser().parse_args(argv[1:])
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "8", 1)
    assert (args.master_addr, args.master_port) == (
        "qwen7b-oreal-trainer-0.qwen7b-oreal-trainer.rl.svc",
        29500,
    )
    assert (
        args.module and args.training_script == "oreal.workers" and args.training_script_args == ["trainer"]
    )


def test_every_oreal_variable_of_the_pods_is_read_by_the_workers(gpu_run, opts):
    import oreal

    root = Path(oreal.__file__).parent
    sources = "\n".join(
        p.read_text() for p in root.rglob("*.py") if "runner" not in p.relative_to(root).parts
    )
    names = {e["name"] for e in container(render_children(gpu_run, opts), "qwen7b-oreal", "trainer")["env"]}
    oreal_names = sorted(n for n in names if n.startswith("OREAL_"))
    assert len(oreal_names) >= 10
    assert [n for n in oreal_names if f'"{n}"' not in sources] == []
