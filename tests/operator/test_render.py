"""render_run: the ConfigMap and the JobSet of an OREALRun, rendered without a cluster.

Two specs: examples/run.yaml (GPU: 4 rollout x 1 GPU, 1 verifier, 2 trainer nodes x 8 GPUs, S3 with a
Secret) and a small CPU spec built here (hf rollout without GPUs, one trainer process, metrics off).
Every Job template is checked as a batch/v1 Job against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict, the oldest and newest versions we support); the JobSet's own fields
against the published jobset.x-k8s.io/v1alpha2 API (`jobset_api`).
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
from oreal.spec.frozen import frozen_spec
from oreal.spec.models import OREALRun
from oreal_operator.config import ConfigError, OperatorConfig
from oreal_operator.errors import RenderError
from oreal_operator.naming import (
    ROLE_LABEL,
    ROLES,
    RUN_LABEL,
    job_name,
    labels,
    owner_reference,
    pod_address,
    spec_configmap_name,
)
from oreal_operator.render import (
    QUEUE_LABEL,
    RenderOptions,
    frozen_text,
    render_run,
    spec_hash,
)
from tests.operator.jobset_api import validate_jobset
from tests.operator.rendered import (
    IMAGE,
    K8S_VERSIONS,
    container,
    cpu_body,
    cpu_run,
    env_of,
    find,
    gpu_limit,
    has_shm,
    job_of,
    jobset,
    pod_meta,
    pod_spec,
    replicated_job,
    validate_everything,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "run.yaml"
BODY = {"metadata": {"name": "qwen7b-oreal", "namespace": "rl", "uid": "0b7c-uid"}}
LAUNCH = ["oreal", "worker", "launch", "--"]  # torchrun keeping a failed rank's exit code


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def gpu_run() -> OREALRun:
    return load_run(EXAMPLE)


@pytest.fixture(scope="module")
def opts() -> RenderOptions:
    return RenderOptions(image=IMAGE, namespace="rl", owner=owner_reference(BODY))


# ---------------------------------------------------------------- schema and shape


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("which", ["gpu", "cpu", "cpu-suspended"])
def test_every_object_validates_against_the_kubernetes_and_jobset_schemas(gpu_run, opts, which, version):
    run = gpu_run if which == "gpu" else cpu_run(suspend=which == "cpu-suspended")
    validate_everything(render_run(run, opts), version)


@pytest.mark.parametrize(
    ("path", "key", "value"),
    [
        (("spec", "template", "spec"), "tolerations", [{"key": "a", "tolerationseconds": 5}]),  # misspelt
        (("spec",), "parallelism", "2"),  # wrong type
        (("spec", "template", "spec", "containers", 0), "name", None),  # required field missing
    ],
)
def test_the_job_schema_check_rejects_what_the_api_server_would(gpu_run, opts, path, key, value):
    """The validation above has teeth: small mistakes in a rendered Job fail it."""
    bad = copy.deepcopy(job_of(render_run(gpu_run, opts), "trainer"))
    target: Any = bad
    for step in path:
        target = target[step]
    if value is None:
        del target[key]
    else:
        target[key] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.31.0", strict=True)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda js: js["spec"]["failurePolicy"]["rules"][0].update(action="Restart"), "action"),
        (lambda js: js["spec"]["successPolicy"].update(targetReplicatedJobs=["judge"]), "judge"),
        (lambda js: js["spec"].update(networking={}), "networking"),
        (lambda js: js["spec"]["failurePolicy"]["rules"][0].update(name="2fast"), "name"),
        (lambda js: js["metadata"].update(name="x" * 50), "63"),
    ],
)
def test_the_jobset_check_rejects_what_the_jobset_api_would(gpu_run, opts, change, complaint):
    bad = copy.deepcopy(jobset(render_run(gpu_run, opts)))
    change(bad)
    errors = validate_jobset(bad)
    assert errors and any(complaint in e for e in errors), errors


def test_children_names_kinds_and_order(gpu_run, opts):
    children = render_run(gpu_run, opts)
    assert [(c["kind"], c["metadata"]["name"]) for c in children] == [
        ("ConfigMap", "qwen7b-oreal-spec"),
        ("JobSet", "qwen7b-oreal"),
    ]
    assert [r["name"] for r in jobset(children)["spec"]["replicatedJobs"]] == list(ROLES)
    assert all(r["replicas"] == 1 for r in jobset(children)["spec"]["replicatedJobs"])


def test_every_object_has_namespace_labels_and_owner(gpu_run, opts):
    children = render_run(gpu_run, opts)
    for obj in children:
        meta = obj["metadata"]
        assert meta["namespace"] == "rl"
        assert labels("qwen7b-oreal").items() <= meta["labels"].items()
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
    for role in ROLES:
        assert replicated_job(children, role)["template"]["metadata"]["labels"] == labels(
            "qwen7b-oreal", role
        )
        assert pod_meta(children, role)["labels"] == labels("qwen7b-oreal", role)


def test_the_runs_labels_and_kueue_annotations_reach_the_jobset(opts):
    body = cpu_body()
    body["metadata"]["labels"] = {
        QUEUE_LABEL: "team-a",
        "kueue.x-k8s.io/priority-class": "high",
        "team": "rl",
    }
    body["metadata"]["annotations"] = {"kueue.x-k8s.io/job-min-parallelism": "1", "note": "mine"}
    js = jobset(render_run(OREALRun.model_validate(body), opts))
    meta = js["metadata"]
    assert {QUEUE_LABEL: "team-a", "kueue.x-k8s.io/priority-class": "high", "team": "rl"}.items() <= meta[
        "labels"
    ].items()
    assert meta["annotations"]["kueue.x-k8s.io/job-min-parallelism"] == "1"
    assert "note" not in meta["annotations"]
    assert js["spec"]["suspend"] is True  # Kueue admits it; the operator never resumes it
    # the run's labels cannot take ours over
    body["metadata"]["labels"] = {RUN_LABEL: "other", "app.kubernetes.io/managed-by": "me"}
    meta = jobset(render_run(OREALRun.model_validate(body), opts))["metadata"]
    assert (
        meta["labels"][RUN_LABEL] == "tiny"
        and meta["labels"]["app.kubernetes.io/managed-by"] == "oreal-operator"
    )


def test_no_owner_reference_without_an_owner(gpu_run):
    children = render_run(gpu_run, RenderOptions(image=IMAGE, namespace="other"))
    for obj in children:
        assert "ownerReferences" not in obj["metadata"]
        assert obj["metadata"]["namespace"] == "other"
    args = container(children, "trainer")["command"]
    assert "--master-addr=qwen7b-oreal-trainer-0-0.qwen7b-oreal.other.svc" in args


# ---------------------------------------------------------------- the JobSet's policies


def test_jobs_are_indexed_and_start_all_their_pods(gpu_run, opts):
    children = render_run(gpu_run, opts)
    pods = {"rollout": 4, "verifier": 1, "trainer": 2}
    for role in ROLES:
        spec = replicated_job(children, role)["template"]["spec"]
        assert (spec["parallelism"], spec["completions"]) == (pods[role], pods[role])
        assert spec["completionMode"] == "Indexed"
        assert spec["template"]["spec"]["restartPolicy"] == "Never"
    cpu = render_run(cpu_run(), opts)
    assert [replicated_job(cpu, r)["template"]["spec"]["parallelism"] for r in ROLES] == [2, 3, 1]


def test_the_trainer_completing_completes_the_jobset(gpu_run, opts):
    spec = jobset(render_run(gpu_run, opts))["spec"]
    assert spec["successPolicy"] == {"operator": "All", "targetReplicatedJobs": ["trainer"]}
    assert spec["network"] == {"enableDNSHostnames": True}


def test_a_failure_restarts_the_gang_and_a_permanent_exit_fails_at_once(gpu_run, opts):
    children = render_run(gpu_run, opts)
    policy = jobset(children)["spec"]["failurePolicy"]
    assert policy["maxRestarts"] == gpu_run.spec.max_restarts == 5
    assert policy["rules"] == [
        {"name": "PermanentError", "action": "FailJobSet", "onJobFailureReasons": ["PodFailurePolicy"]}
    ]  # any other Job failure: the JobSet's default, RestartJobSet (counted once)
    trainer = replicated_job(children, "trainer")["template"]["spec"]
    assert trainer["backoffLimit"] == 0  # one trainer pod lost breaks NCCL for all: restart the gang
    for role in ("rollout", "verifier"):  # replaced by their Job, the trainer untouched
        assert replicated_job(children, role)["template"]["spec"]["backoffLimit"] == 5
    for role in ROLES:
        rules = replicated_job(children, role)["template"]["spec"]["podFailurePolicy"]["rules"]
        assert rules[0] == {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}}
        assert rules[1] == {
            "action": "Ignore",
            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
        }


def test_the_permanent_exit_code_is_the_workers(gpu_run, opts):
    from oreal.workers.termination import EXIT_PERMANENT
    from oreal_operator.jobset import PERMANENT_EXIT_CODE

    assert PERMANENT_EXIT_CODE == EXIT_PERMANENT


def test_restarts_of_earlier_jobsets_count_against_max_restarts(gpu_run):
    js = jobset(render_run(gpu_run, RenderOptions(image=IMAGE, namespace="rl", restarts_before=2)))
    assert js["spec"]["failurePolicy"]["maxRestarts"] == 3
    assert js["metadata"]["annotations"]["oreal.io/restarts-before"] == "2"
    spent = jobset(render_run(gpu_run, RenderOptions(image=IMAGE, namespace="rl", restarts_before=9)))
    assert spent["spec"]["failurePolicy"]["maxRestarts"] == 0


def test_suspend_reaches_the_jobset_and_nothing_else_changes(gpu_run, opts):
    running = render_run(gpu_run, opts)
    suspended_run = gpu_run.model_copy(deep=True)
    suspended_run.spec.suspend = True
    suspended = render_run(suspended_run, opts)
    assert jobset(running)["spec"]["suspend"] is False and jobset(suspended)["spec"]["suspend"] is True
    without = lambda js: {k: v for k, v in js["spec"].items() if k != "suspend"}  # noqa: E731
    assert without(jobset(running)) == without(jobset(suspended))
    assert jobset(running)["metadata"]["annotations"] == jobset(suspended)["metadata"]["annotations"]


def test_the_jobset_records_how_it_was_rendered(gpu_run, opts):
    annotations = jobset(render_run(gpu_run, opts))["metadata"]["annotations"]
    assert annotations == {
        "oreal.io/spec-hash": spec_hash(gpu_run, IMAGE),
        "oreal.io/render-version": "1",
        "oreal.io/worker-image": IMAGE,
        "oreal.io/restarts-before": "0",
    }


def test_spec_hash_changes_with_what_the_jobset_is_made_of(gpu_run):
    base = spec_hash(gpu_run, IMAGE)
    assert spec_hash(copy.deepcopy(gpu_run), IMAGE) == base
    assert spec_hash(gpu_run, "registry.example/oreal:0.2.0") != base
    changed = gpu_run.model_copy(deep=True)
    changed.spec.trainer.resources.requests["memory"] = "1000Gi"
    assert spec_hash(changed, IMAGE) != base
    # applied in place: suspend and the deadline; labels other than Kueue's are not in pod templates
    in_place = gpu_run.model_copy(deep=True)
    in_place.spec.suspend = True
    in_place.spec.active_deadline_seconds = 60
    in_place.metadata.labels["team"] = "other"
    assert spec_hash(in_place, IMAGE) == base
    queued = gpu_run.model_copy(deep=True)
    queued.metadata.labels[QUEUE_LABEL] = "team-a"
    assert spec_hash(queued, IMAGE) != base


def test_spec_hash_ignores_a_field_left_at_its_default(gpu_run):
    """An operator upgrade that adds a spec field with a default must not re-create running JobSets."""
    explicit = gpu_run.model_copy(deep=True)
    explicit.spec.sampling.top_k = -1  # the default, written out
    assert spec_hash(explicit, IMAGE) == spec_hash(gpu_run, IMAGE)


# ---------------------------------------------------------------- containers: commands and env


def test_env_of_each_role(gpu_run, opts):
    children = render_run(gpu_run, opts)
    expected_replicas = {"rollout": "4", "verifier": "1", "trainer": "2"}
    # CPU requests 8, 16 and 64 (the trainer's split over its 8 torchrun processes)
    expected_threads = {"rollout": "8", "verifier": "16", "trainer": "8"}
    for role in ROLES:
        env = env_of(container(children, role))
        assert env == {
            "OREAL_RUN": "qwen7b-oreal",
            "OREAL_NAMESPACE": "metadata.namespace",
            "OREAL_RUN_URI": "s3://team-rl/runs/rl/qwen7b-oreal/",
            "OREAL_STORAGE_ENDPOINT": "https://s3.us-east-1.amazonaws.com",
            "OREAL_STORAGE_REGION": "us-east-1",
            "OREAL_INDEX": "metadata.annotations['batch.kubernetes.io/job-completion-index']",
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
    env = env_of(container(render_run(cpu_run(verifier={"resources": resources}), opts), "verifier"))
    assert env.get("OREAL_NUM_THREADS") == threads
    assert env.get("OMP_NUM_THREADS") == threads


def test_storage_endpoint_and_region_only_when_set(opts):
    env = env_of(container(render_run(cpu_run(), opts), "verifier"))
    assert "OREAL_STORAGE_ENDPOINT" not in env and "OREAL_STORAGE_REGION" not in env
    assert env["OREAL_RUN_URI"] == "gs://runs/ml/tiny"
    assert env["OREAL_REPLICAS"] == "3"


@pytest.mark.parametrize("role", ROLES)
def test_init_container_stores_the_mounted_spec_with_the_workers_env(gpu_run, opts, role):
    children = render_run(gpu_run, opts)
    ps = pod_spec(children, role)
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
    for c in (init, worker):  # the reason a worker stopped reaches the pod's status
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_rollout_and_verifier_run_their_worker(gpu_run, opts):
    children = render_run(gpu_run, opts)
    assert container(children, "rollout")["command"] == ["oreal", "worker", "rollout"]
    assert container(children, "verifier")["command"] == ["oreal", "worker", "verifier"]


def test_multi_node_trainer_meets_on_the_jobsets_dns_names(gpu_run, opts):
    children = render_run(gpu_run, opts)
    c = container(children, "trainer")
    address = pod_address("qwen7b-oreal", "trainer", 0, "rl")
    assert (
        address == "qwen7b-oreal-trainer-0-0.qwen7b-oreal.rl.svc"
    )  # <jobset>-<rjob>-<job>-<pod>.<subdomain>
    assert c["command"] == [
        *LAUNCH,
        "--nnodes=2",
        "--nproc-per-node=8",
        "--node-rank=$(OREAL_INDEX)",  # expanded by the kubelet from the env below
        f"--master-addr={address}",
        "--master-port=29500",
        "-m",
        "oreal.workers",
        "trainer",
    ]
    assert "OREAL_INDEX" in env_of(c)
    assert {"name": "torchrun", "containerPort": 29500, "protocol": "TCP"} in c["ports"]
    assert "subdomain" not in jobset(children)["spec"]["network"]  # the JobSet's name: the run's


def test_single_process_trainer_runs_the_plain_worker(opts):
    c = container(render_run(cpu_run(), opts), "trainer")
    assert c["command"] == ["oreal", "worker", "trainer"]
    assert "ports" not in c


def test_single_node_multi_gpu_trainer_uses_a_standalone_rendezvous(opts):
    run = cpu_run(trainer={"nodes": 1, "gpusPerNode": 4})
    c = container(render_run(run, opts), "trainer")
    assert c["command"] == [
        *LAUNCH,
        "--standalone",
        "--nnodes=1",
        "--nproc-per-node=4",
        "-m",
        "oreal.workers",
        "trainer",
    ]
    assert gpu_limit(c) == "4"


def test_role_image_overrides_the_run_image(opts):
    run = cpu_run(verifier={"replicas": 1, "image": "registry.example/verifier:2"})
    children = render_run(run, opts)
    assert container(children, "verifier")["image"] == "registry.example/verifier:2"
    assert container(children, "verifier", "init-spec")["image"] == "registry.example/verifier:2"
    assert container(children, "rollout")["image"] == IMAGE


def test_pull_policy_from_the_options():
    o = RenderOptions(image=IMAGE, namespace="ml", image_pull_policy="Always")
    children = render_run(cpu_run(), o)
    for role in ROLES:
        ps = pod_spec(children, role)
        assert {c["imagePullPolicy"] for c in ps["containers"] + ps["initContainers"]} == {"Always"}
        assert "serviceAccountName" not in ps


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_image_pull_secrets_reach_every_pod(gpu_run, version):
    o = RenderOptions(image=IMAGE, namespace="rl", image_pull_secrets=("regcred", "mirror.example"))
    children = render_run(gpu_run, o)
    for role in ROLES:
        assert pod_spec(children, role)["imagePullSecrets"] == [
            {"name": "regcred"},
            {"name": "mirror.example"},
        ]
    validate_everything(children, version)
    plain_children = render_run(gpu_run, RenderOptions(image=IMAGE, namespace="rl"))
    for role in ROLES:
        assert "imagePullSecrets" not in pod_spec(plain_children, role)


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
    gpu = render_run(gpu_run, opts)
    assert gpu_limit(container(gpu, "rollout")) == "1"
    assert gpu_limit(container(gpu, "trainer")) == "8"
    assert gpu_limit(container(gpu, "verifier")) is None
    cpu = render_run(cpu_run(), opts)  # hf rollout on CPU, one CPU trainer
    for role in ROLES:
        assert gpu_limit(container(cpu, role)) is None, role


def test_shared_memory_only_for_gpu_pods(gpu_run, opts):
    gpu = render_run(gpu_run, opts)
    cpu = render_run(cpu_run(), opts)
    assert [has_shm(gpu, r) for r in ROLES] == [True, False, True]
    assert [has_shm(cpu, r) for r in ROLES] == [False, False, False]


def test_resources_node_selector_and_tolerations_are_carried_over(gpu_run, opts):
    children = render_run(gpu_run, opts)
    rollout = pod_spec(children, "rollout")
    assert rollout["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert rollout["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert rollout["containers"][0]["resources"] == {
        "requests": {"cpu": "8", "memory": "64Gi"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    # the init container gets the same CPU/memory (quota-friendly) and no GPU
    assert rollout["initContainers"][0]["resources"] == {"requests": {"cpu": "8", "memory": "64Gi"}}
    verifier = pod_spec(children, "verifier")
    assert "nodeSelector" not in verifier and "tolerations" not in verifier
    assert verifier["containers"][0]["resources"] == {"requests": {"cpu": "16", "memory": "16Gi"}}


def test_toleration_keys_are_camel_case(opts):
    tol = {"key": "spot", "operator": "Equal", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 30}
    run = cpu_run(verifier={"tolerations": [tol], "nodeSelector": {"pool": "cpu"}})
    children = render_run(run, opts)
    ps = pod_spec(children, "verifier")
    assert ps["tolerations"] == [tol]
    assert ps["nodeSelector"] == {"pool": "cpu"}
    kubernetes_validate.validate(job_of(children, "verifier"), "1.31.0", strict=True)


def test_gpu_count_in_resources_must_match_the_role(opts):
    run = cpu_run(trainer={"gpusPerNode": 8, "resources": {"limits": {"nvidia.com/gpu": 4}}})
    with pytest.raises(RenderError, match=r"spec\.trainer\.resources\.limits.*spec\.trainer\.gpusPerNode"):
        render_run(run, opts)
    cpu_rollout = cpu_run(rollout={"gpusPerReplica": 0, "resources": {"limits": {"nvidia.com/gpu": 1}}})
    with pytest.raises(RenderError, match=r"spec\.rollout\.gpusPerReplica is 0"):
        render_run(cpu_rollout, opts)


# ---------------------------------------------------------------- secrets, metrics, security


def test_secret_is_env_from_for_every_container(gpu_run, opts):
    children = render_run(gpu_run, opts)
    for role in ROLES:
        ps = pod_spec(children, role)
        for c in ps["containers"] + ps["initContainers"]:
            assert c["envFrom"] == [{"secretRef": {"name": "team-rl-s3"}}]
    cpu = render_run(cpu_run(), opts)
    for role in ROLES:
        assert "envFrom" not in container(cpu, role)


def test_metrics_port_is_declared_and_annotated(gpu_run, opts):
    children = render_run(gpu_run, opts)
    for role in ROLES:
        c = container(children, role)
        assert {"name": "metrics", "containerPort": 9400, "protocol": "TCP"} in c["ports"]
        annotations = pod_meta(children, role)["annotations"]
        assert annotations["prometheus.io/port"] == "9400"
        assert annotations["prometheus.io/scrape"] == "true"


def test_metrics_port_zero_declares_no_port(opts):
    children = render_run(cpu_run(trainer={"nodes": 2, "gpusPerNode": 0}), opts)
    for role in ROLES:
        c = container(children, role)
        assert all(p["name"] != "metrics" for p in c.get("ports", [])), role
        assert env_of(c)["OREAL_METRICS_PORT"] == "0"
        assert not any(k.startswith("prometheus.io/") for k in pod_meta(children, role)["annotations"])
    # two CPU trainer nodes: one process each, still a torchrun rendezvous
    assert container(children, "trainer")["command"][:6] == [*LAUNCH, "--nnodes=2", "--nproc-per-node=1"]


@pytest.mark.parametrize("role", ROLES)
def test_pods_are_locked_down(gpu_run, opts, role):
    ps = pod_spec(render_run(gpu_run, opts), role)
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
    ps = pod_spec(render_run(gpu_run, opts), role)
    empty_dirs = {v["name"] for v in ps["volumes"] if "emptyDir" in v}
    for c in ps["containers"] + ps["initContainers"]:
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"] if m["name"] in empty_dirs}
        env = env_of(c)
        wanted = ["HOME", "TMPDIR"] + (["OREAL_WORK_DIR"] if c["name"] == "worker" else [])
        for var in wanted:
            path = env[var]
            assert any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts), (c["name"], var)


# ---------------------------------------------------------------- the frozen spec


def test_configmap_holds_the_frozen_spec_byte_for_byte(gpu_run, opts):
    text = find(render_run(gpu_run, opts), "ConfigMap", "qwen7b-oreal-spec")["data"]["spec.yaml"]
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
    first = render_run(gpu_run, opts)
    second = render_run(copy.deepcopy(gpu_run), opts)
    assert first == second
    assert json.dumps(first, sort_keys=False) == json.dumps(second, sort_keys=False)
    pod_spec(first, "trainer")["containers"][0]["env"].clear()
    first[0]["metadata"]["ownerReferences"][0]["name"] = "changed"
    assert render_run(gpu_run, opts) == second
    assert opts.owner["name"] == "qwen7b-oreal"


# ---------------------------------------------------------------- specs that cannot run on Kubernetes


@pytest.mark.parametrize(
    "uri",
    [None, "/data/runs/tiny", "runs/tiny", "file:///data/runs/tiny", "memory://runs/tiny", "http://x/runs"],
)
def test_storage_must_be_a_shared_bucket(opts, uri):
    storage = {} if uri is None else {"uri": uri}
    with pytest.raises(RenderError, match=r"spec\.storage\.uri") as err:
        render_run(cpu_run(storage=storage), opts)
    assert "s3://" in str(err.value) and "gs://" in str(err.value)


@pytest.mark.parametrize("uri", ["s3://b/runs/x", "s3a://b/runs/x", "gs://b/runs/x", "gcs://b/runs/x"])
def test_shared_buckets_are_accepted(opts, uri):
    children = render_run(cpu_run(storage={"uri": uri}), opts)
    assert env_of(container(children, "rollout"))["OREAL_RUN_URI"] == uri


def named(name: str, **spec: Any) -> OREALRun:
    return OREALRun.model_validate(cpu_body(**spec) | {"metadata": {"name": name}})


def test_run_name_must_make_valid_jobset_job_and_pod_names(opts):
    from oreal.spec.crd import MAX_RUN_NAME

    with pytest.raises(RenderError, match=r"metadata\.name '7b-run' must start with a letter"):
        render_run(named("7b-run"), opts)
    # the CRD admits names of up to 43 characters (room for 100 pods per role); the renderer checks
    # the pod names these replicas really make
    with pytest.raises(RenderError, match=r"metadata\.name .* too long for 11 verifier pods"):
        render_run(named("r" * (MAX_RUN_NAME + 1), verifier={"replicas": 11}), opts)
    render_run(named("r" * (MAX_RUN_NAME + 1), verifier={"replicas": 10}), opts)
    longest = "r" * MAX_RUN_NAME  # what the CRD admits: up to 100 pods per role fit
    children = render_run(named(longest, verifier={"replicas": 100}), opts)
    validate_everything(children, "1.31.0")
    with pytest.raises(RenderError, match=r"too long for 101 verifier pods"):
        render_run(named(longest, verifier={"replicas": 101}), opts)


# ---------------------------------------------------------------- naming


def test_naming_helpers():
    assert [job_name("r", role) for role in ROLES] == ["r-rollout-0", "r-verifier-0", "r-trainer-0"]
    assert spec_configmap_name("r") == "r-spec"
    with pytest.raises(ValueError, match="unknown role"):
        job_name("r", "judge")
    assert labels("r") == {
        "app.kubernetes.io/name": "oreal",
        "app.kubernetes.io/instance": "r",
        "app.kubernetes.io/managed-by": "oreal-operator",
        "app.kubernetes.io/part-of": "oreal",
        "oreal.io/run": "r",
    }
    assert labels("r", "trainer") == labels("r") | {
        "app.kubernetes.io/component": "trainer",
        ROLE_LABEL: "trainer",
    }


# ---------------------------------------------------------------- snapshot

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "render_run_yaml.yaml"


def test_rendered_example_matches_the_snapshot(gpu_run, opts):
    """A change to the rendered JobSet is a new render version: running runs keep their JobSet (it is
    no longer compared), new ones get the new one. Make it deliberate: review the diff, bump
    render.RENDER_VERSION, then refresh the snapshot with
    OREAL_UPDATE_SNAPSHOTS=1 pytest tests/operator/test_render.py."""
    children = render_run(gpu_run, opts)
    children[0]["data"]["spec.yaml"] = "<the frozen spec: test_configmap_holds_the_frozen_spec_byte_for_byte>"
    text = yaml.safe_dump_all(children, sort_keys=True)
    if os.environ.get("OREAL_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.exists(), f"no snapshot at {SNAPSHOT}; create it with OREAL_UPDATE_SNAPSHOTS=1"
    assert text == SNAPSHOT.read_text()


# ---------------------------------------------------------------- the pods fit the workers


def pod_environment(c: dict, index: int) -> dict[str, str]:
    """The container's env as the kubelet would resolve it in pod `index` of namespace rl."""
    fields = {
        "metadata.namespace": "rl",
        "metadata.annotations['batch.kubernetes.io/job-completion-index']": str(index),
    }
    out = {}
    for e in c["env"]:
        out[e["name"]] = e["value"] if "value" in e else fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return out


@pytest.mark.parametrize("role", ROLES)
def test_pod_commands_parse_with_the_worker_cli(opts, monkeypatch, role):
    """`oreal worker ...` in the pods is a command the CLI accepts, with the pod's env as defaults."""
    from oreal.cli import build_parser
    from oreal.workers.flags import replica_index

    children = render_run(cpu_run(), opts)  # plain `oreal worker ROLE` for every role here
    for c in pod_spec(children, role)["initContainers"] + pod_spec(children, role)["containers"]:
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

    from oreal.cli import build_parser

    c = container(render_run(gpu_run, opts), "trainer")
    env = pod_environment(c, index=1)
    argv = [a.replace("$(OREAL_INDEX)", env["OREAL_INDEX"]) for a in c["command"]]
    assert argv[:4] == LAUNCH  # torchrun, exiting with a failed rank's code (oreal.workers.launch)
    launch = build_parser().parse_args(argv[1:])
    assert launch.role == "launch" and launch.torchrun == argv[3:]
    args = get_args_parser().parse_args(argv[4:])
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "8", 1)
    assert (args.master_addr, args.master_port) == ("qwen7b-oreal-trainer-0-0.qwen7b-oreal.rl.svc", 29500)
    assert (
        args.module and args.training_script == "oreal.workers" and args.training_script_args == ["trainer"]
    )


def test_every_oreal_variable_of_the_pods_is_read_by_the_workers(gpu_run, opts):
    import oreal

    root = Path(oreal.__file__).parent
    sources = "\n".join(
        p.read_text() for p in root.rglob("*.py") if "runner" not in p.relative_to(root).parts
    )
    names = {e["name"] for e in container(render_run(gpu_run, opts), "trainer")["env"]}
    oreal_names = sorted(n for n in names if n.startswith("OREAL_"))
    assert len(oreal_names) >= 10
    assert [n for n in oreal_names if f'"{n}"' not in sources] == []
