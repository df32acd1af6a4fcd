"""What the operator's tests read out of rendered children: the JobSet, each role's Job, pod and
containers, and the strict schema checks (Kubernetes' for Jobs, the JobSet API's for the JobSet)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

from oreal.spec.models import OREALRun
from oreal_operator.naming import ROLES, job_name
from tests.operator.jobset_api import validate_jobset

K8S_VERSIONS = ("1.31.0", kubernetes_validate.utils.latest_version())  # oldest and newest we support
IMAGE = "registry.example/oreal:0.1.0"


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


def find(children: list[dict], kind: str, name: str) -> dict:
    [found] = [c for c in children if c["kind"] == kind and c["metadata"]["name"] == name]
    return found


def jobset(children: list[dict]) -> dict:
    [found] = [c for c in children if c["kind"] == "JobSet"]
    return found


def replicated_job(children: list[dict], role: str) -> dict:
    [found] = [r for r in jobset(children)["spec"]["replicatedJobs"] if r["name"] == role]
    return found


def job_of(children: list[dict], role: str) -> dict:
    """The replicatedJob's template as the batch/v1 Job the JobSet controller makes of it."""
    template = replicated_job(children, role)["template"]
    name = job_name(jobset(children)["metadata"]["name"], role)
    meta = {
        "name": name,
        "namespace": jobset(children)["metadata"]["namespace"],
        **template.get("metadata", {}),
    }
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": template["spec"]}


def pod_spec(children: list[dict], role: str) -> dict:
    return replicated_job(children, role)["template"]["spec"]["template"]["spec"]


def pod_meta(children: list[dict], role: str) -> dict:
    return replicated_job(children, role)["template"]["spec"]["template"]["metadata"]


def container(children: list[dict], role: str, name: str = "worker") -> dict:
    ps = pod_spec(children, role)
    found = [c for c in ps["containers"] + ps["initContainers"] if c["name"] == name]
    assert len(found) == 1
    return found[0]


def env_of(c: dict) -> dict[str, Any]:
    """name -> value, the fieldRef path for downward-API variables, else the valueFrom."""
    out = {}
    for e in c["env"]:
        source = e.get("valueFrom", {})
        out[e["name"]] = e["value"] if "value" in e else source.get("fieldRef", {}).get("fieldPath", source)
    return out


def gpu_limit(c: dict, resource: str = "nvidia.com/gpu") -> str | None:
    return c.get("resources", {}).get("limits", {}).get(resource)


def validate_everything(children: list[dict], version: str) -> None:
    """The ConfigMap and each Job strictly by Kubernetes' schema, the JobSet by its own API."""
    for obj in children:
        if obj["kind"] == "JobSet":
            assert validate_jobset(obj) == []
            for role in ROLES:
                kubernetes_validate.validate(job_of(children, role), version, strict=True)
        else:
            kubernetes_validate.validate(obj, version, strict=True)


def has_shm(children: list[dict], role: str) -> bool:
    ps = pod_spec(children, role)
    memory = [v for v in ps["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
    mounted = [m["name"] for m in ps["containers"][0]["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    assert mounted == [v["name"] for v in memory], role  # no memory volume without its mount
    return bool(mounted)
