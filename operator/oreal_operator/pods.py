"""The pod template of one role of an OREALRun (one replicatedJob of its JobSet): pure builders.

Every pod runs two containers from the worker image:

- `init-spec`: `oreal worker init --spec /etc/oreal/spec.yaml` writes the frozen spec (mounted from
  the `<run>-spec` ConfigMap) into the bucket, or exits 3 (permanent) if the bucket holds a started
  run with another spec;
- `worker`: `oreal worker <role>`, the same entrypoint the local runner starts as a process. A
  trainer with more than one process runs it under torchrun (`-m oreal.workers trainer`).

Both get the same environment (see `worker_env`): the bucket URI and its endpoint/region, the
pod's index (its Job completion index), the role's replica count, and writable emptyDir folders for
HOME, TMPDIR and the work dir, since the root filesystem is read-only. Pods never restart in place
(restartPolicy Never): a failed pod is replaced by its Job, or the JobSet restarts the gang.
Failure reasons reach the pod's status through the termination log (`oreal.workers.termination`;
an unexpected crash falls back to the log's tail). `spec.<role>.podTemplate` is applied last
(`oreal_operator.overrides`). Callers check that the spec can run (`render.check_runnable`).
"""

from __future__ import annotations

import math
from typing import Any

from oreal.spec.models import OREALRunSpec, PodFields
from oreal.spec.podtemplate import DEFAULT_ACCELERATOR
from oreal.spec.storage import StorageLocation
from oreal_operator.naming import labels, pod_address, spec_configmap_name
from oreal_operator.overrides import apply_overrides

WORKER_CONTAINER = "worker"
INIT_CONTAINER = "init-spec"
SPEC_DIR = "/etc/oreal"
SPEC_KEY = "spec.yaml"
SPEC_FILE = f"{SPEC_DIR}/{SPEC_KEY}"
WORK_DIR = "/var/lib/oreal"
HOME_DIR = "/home/oreal"
TMP_DIR = "/tmp"
SHM_DIR = "/dev/shm"
TORCHRUN_PORT = 29500
TORCHRUN_PORT_NAME = "torchrun"
METRICS_PORT_NAME = "metrics"
# Set by the Job controller on every pod of an Indexed Job (also as $JOB_COMPLETION_INDEX).
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
# runAsNonRoot can only be enforced on a numeric user; the worker image should own nothing it needs
# to write (every writable path is an emptyDir), so any non-root uid works.
RUN_AS_USER = 1000


def role_fields(spec: OREALRunSpec, role: str) -> PodFields:
    """The spec section of `role` (image, resources, nodeSelector, tolerations, podTemplate)."""
    return {"rollout": spec.rollout, "verifier": spec.verifier, "trainer": spec.trainer}[role]


def role_replicas(spec: OREALRunSpec, role: str) -> int:
    """Pods of `role`: rollout.replicas, verifier.replicas, trainer.nodes."""
    return {
        "rollout": spec.rollout.replicas,
        "verifier": spec.verifier.replicas,
        "trainer": spec.trainer.nodes,
    }[role]


def role_gpus(spec: OREALRunSpec, role: str) -> int:
    """GPUs per pod of `role`: rollout.gpusPerReplica, none for the verifier, trainer.gpusPerNode."""
    return {
        "rollout": spec.rollout.gpus_per_replica,
        "verifier": 0,
        "trainer": spec.trainer.gpus_per_node,
    }[role]


def accelerator(spec: OREALRunSpec, role: str) -> str:
    """The extended resource carrying `role`'s GPUs (podTemplate.acceleratorResource)."""
    template = role_fields(spec, role).pod_template
    return template.accelerator if template is not None else DEFAULT_ACCELERATOR


def gpu_field(role: str) -> str:
    """The spec field that sets a role's GPUs per pod (for error messages)."""
    return {"rollout": "spec.rollout.gpusPerReplica", "trainer": "spec.trainer.gpusPerNode"}.get(
        role, f"spec.{role} (no GPUs)"
    )


def trainer_processes(spec: OREALRunSpec) -> int:
    """Trainer processes per pod: one per GPU, one on a CPU-only node."""
    return max(1, spec.trainer.gpus_per_node)


def worker_command(spec: OREALRunSpec, role: str, run_name: str, namespace: str) -> list[str]:
    """`oreal worker ROLE`; a trainer with nodes x processes > 1 runs under torchrun
    (`oreal worker launch`, which exits with a failed rank's code, not torchrun's 1).

    torchrun starts max(1, gpusPerNode) processes per pod. One pod: `--standalone` (a local
    rendezvous). Several: a static rendezvous at trainer pod 0's DNS name, the node rank taken
    from the pod's completion index ($(OREAL_INDEX), expanded by the kubelet). The bucket URI
    comes from $OREAL_RUN_URI, not --run, which torchrun's parser would take.
    """
    if role != "trainer":
        return ["oreal", "worker", role]
    nodes = spec.trainer.nodes
    nproc = trainer_processes(spec)
    if nodes * nproc == 1:
        return ["oreal", "worker", "trainer"]
    if nodes == 1:
        launch = ["--standalone", "--nnodes=1", f"--nproc-per-node={nproc}"]
    else:
        launch = [
            f"--nnodes={nodes}",
            f"--nproc-per-node={nproc}",
            "--node-rank=$(OREAL_INDEX)",
            f"--master-addr={pod_address(run_name, 'trainer', 0, namespace)}",
            f"--master-port={TORCHRUN_PORT}",
        ]
    # `oreal worker launch` is torchrun that keeps a failed rank's exit code (3 fails the run at once)
    return ["oreal", "worker", "launch", "--", *launch, "-m", "oreal.workers", "trainer"]


def init_command() -> list[str]:
    return ["oreal", "worker", "init", "--spec", SPEC_FILE]


def cpu_threads(spec: OREALRunSpec, role: str) -> int | None:
    """Threads per worker process: the role's CPUs (limits.cpu, else requests.cpu) split over the
    trainer's torchrun processes, at least 1; None when no CPU quantity is given or it is not a
    plain number or millicores. Inside a container torch would otherwise start one thread per core
    of the node, far more than the pod may use."""
    resources = role_fields(spec, role).resources
    given = resources.limits.get("cpu", resources.requests.get("cpu"))
    cpus = _cpu_quantity(given)
    if cpus is None:
        return None
    procs = trainer_processes(spec) if role == "trainer" else 1
    return max(1, int(cpus // procs))


def _cpu_quantity(value: int | str | None) -> float | None:
    text = str(value) if value is not None else ""
    try:
        cpus = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return None
    return cpus if math.isfinite(cpus) and cpus > 0 else None


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def worker_env(spec: OREALRunSpec, role: str, run_name: str) -> list[dict[str, Any]]:
    """The workers' environment (the variables `oreal worker` reads), in a fixed order."""
    storage = spec.storage
    n = cpu_threads(spec, role)
    threads = (
        [] if n is None else [{"name": k, "value": str(n)} for k in ("OREAL_NUM_THREADS", "OMP_NUM_THREADS")]
    )
    # The spec's own storage location (never the operator's environment): oreal.spec.storage.
    location = StorageLocation(storage.uri or "", storage.endpoint, storage.region)
    env: list[dict[str, Any]] = [
        {"name": "OREAL_RUN", "value": run_name},
        _field_env("OREAL_NAMESPACE", "metadata.namespace"),
        {"name": "OREAL_RUN_URI", "value": location.uri},
        *({"name": name, "value": value} for name, value in location.env().items()),
    ]
    env += [
        _field_env("OREAL_INDEX", f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"),
        {"name": "OREAL_REPLICAS", "value": str(role_replicas(spec, role))},
        {"name": "OREAL_METRICS_PORT", "value": str(spec.metrics.port)},
        {"name": "OREAL_WORK_DIR", "value": WORK_DIR},
        {"name": "HOME", "value": HOME_DIR},
        {"name": "TMPDIR", "value": TMP_DIR},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        *threads,
        {"name": "TOKENIZERS_PARALLELISM", "value": "false"},
    ]
    return env


def container_resources(fields: PodFields, gpus: int, gpu_resource: str, *, with_gpus: bool = True) -> dict:
    """The role's requests/limits as strings, plus `<gpu_resource>: <gpus>` limits when gpus > 0.

    with_gpus=False drops GPUs (the init container needs none). A user-given GPU quantity that
    differs from `gpus` is rejected earlier by render.check_runnable.
    """
    out: dict[str, Any] = {}
    for kind in ("requests", "limits"):
        given = getattr(fields.resources, kind)
        values = {key: str(value) for key, value in sorted(given.items()) if key != gpu_resource}
        if with_gpus and gpus > 0 and (kind == "limits" or gpu_resource in given):
            values[gpu_resource] = str(gpus)
        if values:
            out[kind] = dict(sorted(values.items()))
    return out


def container_security_context() -> dict[str, Any]:
    """DESIGN "Safety": non-root, read-only root filesystem, no escalation, no capabilities."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "fsGroup": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def volumes(run_name: str, shm: bool, shm_size: str | None) -> list[dict[str, Any]]:
    """The spec ConfigMap and emptyDirs for /tmp, HOME and the work dir; /dev/shm in memory when asked."""
    out: list[dict[str, Any]] = [
        {
            "name": "spec",
            "configMap": {
                "name": spec_configmap_name(run_name),
                "items": [{"key": SPEC_KEY, "path": SPEC_KEY}],
            },
        },
        {"name": "tmp", "emptyDir": {}},
        {"name": "home", "emptyDir": {}},
        {"name": "work", "emptyDir": {}},
    ]
    if shm:  # NCCL and torch data loaders need more than the runtime's 64 MiB /dev/shm
        empty_dir: dict[str, Any] = {"medium": "Memory"}
        if shm_size is not None:
            empty_dir["sizeLimit"] = shm_size
        out.append({"name": "dshm", "emptyDir": empty_dir})
    return out


def _mounts(names: list[str]) -> list[dict[str, Any]]:
    paths = {"spec": SPEC_DIR, "tmp": TMP_DIR, "home": HOME_DIR, "work": WORK_DIR, "dshm": SHM_DIR}
    out = []
    for name in names:
        mount: dict[str, Any] = {"name": name, "mountPath": paths[name]}
        if name == "spec":
            mount["readOnly"] = True
        out.append(mount)
    return out


def _ports(spec: OREALRunSpec, role: str) -> list[dict[str, Any]]:
    ports = []
    if spec.metrics.port > 0:
        ports.append({"name": METRICS_PORT_NAME, "containerPort": spec.metrics.port, "protocol": "TCP"})
    if role == "trainer" and spec.trainer.nodes > 1:
        ports.append({"name": TORCHRUN_PORT_NAME, "containerPort": TORCHRUN_PORT, "protocol": "TCP"})
    return ports


def _env_from(spec: OREALRunSpec) -> list[dict[str, Any]]:
    secret = spec.storage.secret_ref
    return [{"secretRef": {"name": secret.name}}] if secret is not None else []


def pod_template(
    spec: OREALRunSpec,
    role: str,
    *,
    run_name: str,
    namespace: str,
    image: str,
    image_pull_policy: str,
    image_pull_secrets: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The PodTemplateSpec of one role's Job. `image` is spec.<role>.image or the run's pinned
    worker image; `image_pull_secrets` name Secrets in the pod's namespace to pull it with."""
    fields = role_fields(spec, role)
    gpus = role_gpus(spec, role)
    gpu_resource = accelerator(spec, role)
    shm_size = fields.pod_template.shm_size if fields.pod_template is not None else None
    shm = gpus > 0 or shm_size is not None

    def common() -> dict[str, Any]:  # fresh objects per container: no aliasing between the two
        out: dict[str, Any] = {
            "image": image,
            "imagePullPolicy": image_pull_policy,
            "env": worker_env(spec, role, run_name),
            "securityContext": container_security_context(),
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
        env_from = _env_from(spec)
        if env_from:
            out["envFrom"] = env_from
        return out

    init = {
        "name": INIT_CONTAINER,
        "command": init_command(),
        **common(),
        "resources": container_resources(fields, gpus, gpu_resource, with_gpus=False),
        "volumeMounts": _mounts(["spec", "tmp", "home"]),
    }
    worker: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "command": worker_command(spec, role, run_name, namespace),
        **common(),
        "resources": container_resources(fields, gpus, gpu_resource),
        "volumeMounts": _mounts(["tmp", "home", "work"] + (["dshm"] if shm else [])),
    }
    ports = _ports(spec, role)
    if ports:
        worker["ports"] = ports
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",  # the Job replaces a failed pod; podFailurePolicy needs Never
        "automountServiceAccountToken": False,  # workers never call the Kubernetes API
        "enableServiceLinks": False,  # no *_SERVICE_HOST variables next to OREAL_*
        "securityContext": pod_security_context(),
        "initContainers": [init],
        "containers": [worker],
        "volumes": volumes(run_name, shm, None if shm_size is None else str(shm_size)),
    }
    if image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in image_pull_secrets]
    if fields.node_selector:
        pod_spec["nodeSelector"] = dict(sorted(fields.node_selector.items()))
    if fields.tolerations:
        pod_spec["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in fields.tolerations
        ]
    annotations = {"kubectl.kubernetes.io/default-container": WORKER_CONTAINER}
    if spec.metrics.port > 0:
        annotations |= {
            "prometheus.io/path": "/metrics",
            "prometheus.io/port": str(spec.metrics.port),
            "prometheus.io/scrape": "true",
        }
    template = {
        "metadata": {"labels": labels(run_name, role), "annotations": annotations},
        "spec": pod_spec,
    }
    return apply_overrides(template, fields.pod_template, role)
