"""The published JobSet API, jobset.x-k8s.io/v1alpha2, as the tests check rendered JobSets against it.

Written from kubernetes-sigs/jobset `api/jobset/v1alpha2/jobset_types.go` (the JobSetSpec,
ReplicatedJob, Network, SuccessPolicy, FailurePolicy, FailurePolicyRule, StartupPolicy and
Coordinator types: every field, its JSON name, type, enum and required-ness) and the create
checks of `jobset_webhook.go` (Job and pod names are RFC 1035 labels of at most 63 characters;
success policy targets name replicatedJobs). A replicatedJob's `template` is a batch/v1
JobTemplateSpec: the tests validate it with kubernetes-validate, so it is an opaque object here.
Unknown fields are errors (`additionalProperties: false`), as the API server's strict field
validation makes them.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema

NAME = {"type": "string", "minLength": 1}
STRINGS = {"type": "array", "items": {"type": "string"}}
INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}

REPLICATED_JOB = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "template"],
    "properties": {
        "name": NAME,
        "groupName": {"type": "string"},
        "template": {"type": "object"},  # batch/v1 JobTemplateSpec: kubernetes-validate checks it
        "replicas": INT32,
        "dependsOn": {
            "type": "array",
            "maxItems": 5,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "status"],
                "properties": {"name": NAME, "status": {"enum": ["Ready", "Complete"]}},
            },
        },
    },
}
FAILURE_POLICY_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "action"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"},
        "action": {
            "enum": [
                "FailJobSet",
                "RestartJobSet",
                "RestartJobSetAndIgnoreMaxRestarts",
                "RestartJob",
                "RestartJobAndIgnoreMaxRestarts",
            ]
        },
        "onJobFailureReasons": {**STRINGS, "uniqueItems": True},
        "onJobFailureMessagePatterns": {**STRINGS, "uniqueItems": True},
        "targetReplicatedJobs": STRINGS,
    },
}
JOBSET_SPEC = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "replicatedJobs": {"type": "array", "items": REPLICATED_JOB},
        "network": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enableDNSHostnames": {"type": "boolean"},
                "subdomain": {"type": "string"},
                "publishNotReadyAddresses": {"type": "boolean"},
            },
        },
        "successPolicy": {
            "type": "object",
            "additionalProperties": False,
            "required": ["operator"],
            "properties": {"operator": {"enum": ["All", "Any"]}, "targetReplicatedJobs": STRINGS},
        },
        "failurePolicy": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "maxRestarts": INT32,
                "restartStrategy": {"enum": ["Recreate", "BlockingRecreate", "InPlaceRestart"]},
                "rules": {"type": "array", "items": FAILURE_POLICY_RULE},
            },
        },
        "startupPolicy": {
            "type": "object",
            "additionalProperties": False,
            "required": ["startupPolicyOrder"],
            "properties": {"startupPolicyOrder": {"enum": ["AnyOrder", "InOrder"]}},
        },
        "suspend": {"type": "boolean"},
        "coordinator": {
            "type": "object",
            "additionalProperties": False,
            "required": ["replicatedJob"],
            "properties": {
                "replicatedJob": NAME,
                "jobIndex": {"type": "integer"},
                "podIndex": {"type": "integer"},
            },
        },
        "managedBy": {"type": "string", "maxLength": 63},
        "ttlSecondsAfterFinished": {**INT32, "minimum": 0},
        "volumeClaimPolicies": {"type": "array", "maxItems": 50, "items": {"type": "object"}},
    },
}
JOBSET = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "jobset.x-k8s.io/v1alpha2"},
        "kind": {"const": "JobSet"},
        "metadata": {"type": "object"},
        "spec": JOBSET_SPEC,
    },
}
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def validate_jobset(jobset: dict[str, Any]) -> list[str]:
    """What the JobSet CRD's schema and its webhook's create checks would refuse; [] when nothing."""
    validator = jsonschema.Draft7Validator(JOBSET)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(jobset)]
    if errors:
        return errors
    name, spec = jobset["metadata"]["name"], jobset["spec"]
    names = [r["name"] for r in spec.get("replicatedJobs", [])]
    if len(set(names)) != len(names):
        errors.append(f"replicatedJobs: names repeat: {names}")
    for target in (spec.get("successPolicy") or {}).get("targetReplicatedJobs", []):
        if target not in names:
            errors.append(f"successPolicy: {target!r} does not appear in .spec.replicatedJobs")
    for rjob in spec.get("replicatedJobs", []):
        job = f"{name}-{rjob['name']}-{rjob.get('replicas', 1) - 1}"
        if not DNS_1035.fullmatch(job) or len(job) > 63:
            errors.append(f"job name {job!r} is not an RFC 1035 label of at most 63 characters")
        job_spec = rjob["template"].get("spec", {})
        if job_spec.get("completionMode") == "Indexed" and "completions" in job_spec:
            pod = f"{job}-{job_spec['completions'] - 1}-abcde"
            if len(pod) > 63:
                errors.append(f"pod names such as {pod!r} exceed 63 characters")
    return errors
