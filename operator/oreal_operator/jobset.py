"""The run's JobSet (jobset.x-k8s.io/v1alpha2): three replicatedJobs, its success and failure policy.

    replicatedJobs   rollout (rollout.replicas pods), verifier (verifier.replicas), trainer
                     (trainer.nodes): one Indexed Job each, parallelism = completions = pods, the
                     pod's completion index its replica index / node rank
    successPolicy    All of [trainer]: the trainer's Job completes -> the JobSet completes (and
                     its controller ends the other roles' pods) -> the run is Succeeded
    failurePolicy    maxRestarts = what is left of spec.maxRestarts; a failed Job restarts the
                     whole gang once (RestartJobSet, counted once however many pods crashed), a Job
                     failed by a permanent exit code fails the JobSet at once
    network          DNS hostnames `<run>-<role>-0-<index>.<run>`: torchrun's rendezvous

Per Job: the trainer's backoffLimit is 0 (one trainer pod's failure breaks NCCL for its peers, so
the gang restarts), rollout and verifier pods are replaced by their Job up to spec.maxRestarts
times without touching the trainer. podFailurePolicy: the permanent exit code (3) fails the Job
(reason PodFailurePolicy, which the JobSet's rule turns into FailJobSet); a pod disrupted by the
cluster (preemption, eviction, node drain: condition DisruptionTarget) is replaced without counting.
"""

from __future__ import annotations

from typing import Any

from oreal.spec.models import OREALRun
from oreal_operator.naming import ROLES, labels
from oreal_operator.pods import pod_template, role_fields, role_replicas

API_VERSION = "jobset.x-k8s.io/v1alpha2"
KIND = "JobSet"
# `oreal worker` exit code for failures that retrying cannot fix (oreal.workers.termination.EXIT_PERMANENT;
# the operator does not import the workers, a test keeps the two equal).
PERMANENT_EXIT_CODE = 3
PERMANENT_RULE = "PermanentError"
# The Job condition reason when a podFailurePolicy FailJob rule matched.
POD_FAILURE_POLICY_REASON = "PodFailurePolicy"
SUCCESS_ROLE = "trainer"


def pod_failure_policy() -> dict[str, Any]:
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"operator": "In", "values": [PERMANENT_EXIT_CODE]},
            },
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }


def job_spec(run: OREALRun, role: str, template: dict[str, Any]) -> dict[str, Any]:
    """The Job of one replicatedJob: Indexed, all pods at once, never restarted in place."""
    pods = role_replicas(run.spec, role)
    return {
        "parallelism": pods,
        "completions": pods,
        "completionMode": "Indexed",
        "backoffLimit": 0 if role == "trainer" else run.spec.max_restarts,
        "podFailurePolicy": pod_failure_policy(),
        "template": template,
    }


def build_jobset(
    run: OREALRun,
    *,
    metadata: dict[str, Any],
    image: str,
    namespace: str,
    image_pull_policy: str,
    image_pull_secrets: tuple[str, ...],
    suspend: bool,
    restarts_before: int,
) -> dict[str, Any]:
    """The JobSet of `run` (see the module docstring). `metadata` comes from render (names, labels,
    annotations, owner); `restarts_before` are gang restarts of earlier JobSets of this run, which
    count against spec.maxRestarts too."""
    name = run.metadata.name
    replicated = []
    for role in ROLES:
        template = pod_template(
            run.spec,
            role,
            run_name=name,
            namespace=namespace,
            image=role_fields(run.spec, role).image or image,
            image_pull_policy=image_pull_policy,
            image_pull_secrets=image_pull_secrets,
        )
        replicated.append(
            {
                "name": role,
                "replicas": 1,
                "template": {
                    "metadata": {"labels": labels(name, role)},
                    "spec": job_spec(run, role, template),
                },
            }
        )
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "suspend": suspend,
            "network": {"enableDNSHostnames": True},
            "successPolicy": {"operator": "All", "targetReplicatedJobs": [SUCCESS_ROLE]},
            "failurePolicy": {
                "maxRestarts": max(0, run.spec.max_restarts - restarts_before),
                "rules": [
                    {
                        "name": PERMANENT_RULE,
                        "action": "FailJobSet",
                        "onJobFailureReasons": [POD_FAILURE_POLICY_REASON],
                    }
                ],
            },
            "replicatedJobs": replicated,
        },
    }
