"""A small JobSet and Job controller for tests: a rendered JobSet's pods as processes (kubelet.py).

What it does, as jobset.x-k8s.io/v1alpha2 and batch/v1 Indexed Jobs (restartPolicy Never) do:

- Job: one pod per completion index. A pod that exits 0 completes its index; the Job completes
  when every index has. A pod that fails is matched against the Job's podFailurePolicy (FailJob on
  an exit code: the Job fails with reason PodFailurePolicy); otherwise it counts against the
  backoffLimit (exceeded: the Job fails with reason BackoffLimitExceeded) and the index gets a new
  pod.
- JobSet: successPolicy (All of the target replicatedJobs complete -> Completed, the other pods are
  ended); a failed Job is matched against failurePolicy.rules by its reason (FailJobSet -> Failed);
  otherwise RestartJobSet: while restarts < maxRestarts every pod is ended and every Job created
  anew, restarts + 1, else Failed (ReachedMaxRestarts); suspend ends every pod, resume starts new
  ones.

`jobset()` is the JobSet with its status in the API's shape (conditions, restarts,
replicatedJobsStatus), for the operator's status fold; `failed_pods()` the failed pods in the
API's shape, with their containers' termination messages, for the operator's `find_failure`.
Call `tick()` to move things on.
"""

from __future__ import annotations

import copy
import signal
from dataclasses import dataclass, field
from typing import Any

from .kubelet import Kubelet, PodProcess, Terminated, pods_of


@dataclass
class Job:
    role: str
    completions: int
    backoff_limit: int
    fail_codes: set[int]  # podFailurePolicy: FailJob onExitCodes In
    pods: dict[int, PodProcess] = field(default_factory=dict)
    succeeded: set[int] = field(default_factory=set)
    failures: int = 0
    failed_reason: str | None = None

    @property
    def complete(self) -> bool:
        return len(self.succeeded) == self.completions


class JobSetController:
    def __init__(self, jobset: dict[str, Any], kubelet: Kubelet, env: dict[str, str]) -> None:
        self.spec = jobset
        self.kubelet = kubelet
        self.env = env
        self.restarts = 0
        self.suspended = bool(jobset["spec"].get("suspend"))
        self.condition: tuple[str, str] | None = None  # ("Completed" | "Failed", reason)
        self.terminated: list[tuple[PodProcess, Terminated]] = []  # every pod that failed
        self.jobs: dict[str, Job] = {}
        self._attempt = 0
        if not self.suspended:
            self._create_jobs()

    # ------------------------------------------------------------ pods

    def _create_jobs(self) -> None:
        self.jobs = {}
        for rjob in self.spec["spec"]["replicatedJobs"]:
            job = rjob["template"]["spec"]
            fail_codes = {
                code
                for rule in job.get("podFailurePolicy", {}).get("rules", [])
                if rule["action"] == "FailJob" and "onExitCodes" in rule
                for code in rule["onExitCodes"]["values"]
            }
            self.jobs[rjob["name"]] = Job(
                rjob["name"], job["completions"], job.get("backoffLimit", 6), fail_codes
            )
            for pod in pods_of(self.spec, rjob["name"], self._attempt):
                self.jobs[rjob["name"]].pods[pod.index] = self.kubelet.start(pod, self.env)

    def _end_all(self) -> None:
        """SIGTERM every running pod and wait for it (the pods' grace period)."""
        running = [p for job in self.jobs.values() for p in job.pods.values() if p.poll() is None]
        for pod in running:
            pod.kill(signal.SIGTERM)
        for pod in running:
            if pod.wait(60) is None:
                pod.kill(signal.SIGKILL)
                pod.wait(10)

    def pod(self, role: str, index: int = 0) -> PodProcess:
        return self.jobs[role].pods[index]

    # ------------------------------------------------------------ the control loop

    def tick(self) -> None:
        if self.suspended or self.condition is not None:
            return
        for job in self.jobs.values():
            self._tick_job(job)
        failed = [job for job in self.jobs.values() if job.failed_reason is not None]
        if failed:
            self._job_failed(failed[0])
            return
        targets = self.spec["spec"]["successPolicy"].get("targetReplicatedJobs") or list(self.jobs)
        if all(self.jobs[name].complete for name in targets):
            self.condition = ("Completed", "AllJobsCompleted")
            self._end_all()

    def _tick_job(self, job: Job) -> None:
        for index, pod in list(job.pods.items()):
            result = pod.poll()
            if result is None or index in job.succeeded or job.failed_reason is not None:
                continue
            if result.exit_code == 0:
                job.succeeded.add(index)
                continue
            self.terminated.append((pod, result))
            if result.exit_code in job.fail_codes:
                job.failed_reason = "PodFailurePolicy"
            else:
                job.failures += 1
                if job.failures > job.backoff_limit:
                    job.failed_reason = "BackoffLimitExceeded"
                else:  # the Job replaces the pod of this index
                    self._attempt += 1
                    replacement = pods_of(self.spec, job.role, self._attempt)[index]
                    job.pods[index] = self.kubelet.start(replacement, self.env)

    def _job_failed(self, job: Job) -> None:
        policy = self.spec["spec"].get("failurePolicy", {})
        for rule in policy.get("rules", []):
            reasons = rule.get("onJobFailureReasons") or []
            if (not reasons or job.failed_reason in reasons) and rule["action"] == "FailJobSet":
                self.condition = ("Failed", "FailJobSetActionTriggered")
                self._end_all()
                return
        if self.restarts >= policy.get("maxRestarts", 0):
            self.condition = ("Failed", "ReachedMaxRestarts")
            self._end_all()
            return
        self.restarts += 1  # RestartJobSet: the whole gang, once
        self._end_all()
        self._attempt += 1
        self._create_jobs()

    def set_suspend(self, suspend: bool) -> None:
        if suspend and not self.suspended:
            self.suspended = True
            self._end_all()
        elif not suspend and self.suspended:
            self.suspended = False
            self._attempt += 1
            self._create_jobs()

    def stop(self) -> None:
        for job in self.jobs.values():
            for pod in job.pods.values():
                pod.kill(signal.SIGKILL)

    # ------------------------------------------------------------ what the API would show

    def jobset(self) -> dict[str, Any]:
        out = copy.deepcopy(self.spec)
        out["spec"]["suspend"] = self.suspended
        statuses = []
        for name, job in self.jobs.items():
            running = sum(1 for i, p in job.pods.items() if p.poll() is None and i not in job.succeeded)
            statuses.append(
                {
                    "name": name,
                    "ready": int(not self.suspended and running + len(job.succeeded) >= job.completions),
                    "succeeded": int(job.complete),
                    "failed": int(job.failed_reason is not None),
                    "active": int(running > 0),
                    "suspended": int(self.suspended),
                }
            )
        status: dict[str, Any] = {"restarts": self.restarts, "replicatedJobsStatus": statuses}
        if self.condition is not None:
            status["conditions"] = [
                {"type": self.condition[0], "status": "True", "reason": self.condition[1]}
            ]
        out["status"] = status
        return out

    def failed_pods(self) -> list[dict[str, Any]]:
        out = []
        for pod, result in self.terminated:
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": pod.pod.name,
                        "namespace": pod.pod.namespace,
                        "labels": pod.pod.labels,
                    },
                    "status": {
                        "phase": "Failed",
                        "containerStatuses": [
                            {
                                "name": result.container,
                                "state": {
                                    "terminated": {"exitCode": result.exit_code, "message": result.message}
                                },
                            }
                        ],
                    },
                }
            )
        return out
