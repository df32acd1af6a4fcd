"""The JobSet the operator renders runs a whole run: its pods as local processes on SeaweedFS.

No API server: `kubelet.py` starts each rendered pod's containers as local processes (init
container first), `jobset_controller.py` plays the JobSet and Job controllers (success policy,
podFailurePolicy, gang restart, suspend), and the run's status is what the operator's own fold
(`oreal_operator.status.fold_status`) makes of the JobSet's status, the trainer's /status report
(read over HTTP, as the operator does) and the failed pods' termination messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import s3fs
from support.seaweedfs import SeaweedFS, find_weed
from workers.conftest import tiny_spec, write_prompts

from oreal.bucket import Bucket
from oreal.spec import OREALRun
from oreal.spec.models import OREALRunStatus
from oreal_operator.observe import find_failure
from oreal_operator.progress import Report, parse_report
from oreal_operator.render import RenderOptions, render_run
from oreal_operator.status import Observed, fold_status
from tests.operator.fake_api import FakeApi

from .jobset_controller import JobSetController
from .kubelet import Kubelet

pytestmark = [
    pytest.mark.slow,
    pytest.mark.s3,
    pytest.mark.skipif(find_weed() is None, reason="SeaweedFS `weed` binary not installed"),
]
BUCKET = "oreal-k8s"


class Cluster:
    """One run's JobSet under the test controller, and the operator's view of it."""

    def __init__(self, run: OREALRun, root: Path, s3: SeaweedFS) -> None:
        self.run = run
        configmap, self.rendered = render_run(run, RenderOptions(image="oreal:test", namespace="ml"))
        self.frozen = configmap["data"]["spec.yaml"]
        self.kubelet = Kubelet(root, {configmap["metadata"]["name"]: configmap["data"]}, {"creds": s3.env()})
        # Only what a container image would provide: no credentials from this test's environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env |= {"OMP_NUM_THREADS": "1", "OREAL_POLL_SECONDS": "0.2"}
        self.jobsets = JobSetController(self.rendered, self.kubelet, env)
        self.status: OREALRunStatus | None = None
        self.report: Report | None = None

    def trainer_report(self) -> Report | None:
        """GET /status of trainer pod 0, as the operator reads it (here on the pod's own port)."""
        pod = self.jobsets.pod("trainer").pod.name
        port = self.kubelet.ports.get(pod)
        if port is None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as response:
                return parse_report(json.loads(response.read()))
        except (OSError, ValueError):
            return None

    def observe(self) -> OREALRunStatus:
        """One round: the controller moves on, the operator folds what it sees into the status."""
        self.jobsets.tick()
        self.report = self.trainer_report() or self.report
        api = FakeApi()
        for pod in self.jobsets.failed_pods():
            api.put(pod)
        failure, permanent = asyncio.run(find_failure(api, "ml", self.run.metadata.name))  # type: ignore[arg-type]
        observed = Observed(
            jobset=self.jobsets.jobset(),
            report=self.report,
            failure=failure,
            permanent=permanent,
            applied=True,
        )
        self.status = fold_status(
            self.run, generation=1, observed=observed, previous=self.status, now=datetime.now(UTC)
        )
        return self.status

    def until(
        self, what: str, done: Callable[[OREALRunStatus], bool], timeout: float = 400
    ) -> OREALRunStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.observe()
            if done(status):
                return status
            assert status.phase != "Failed", (status.conditions, self.logs())
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; status {self.status}\n{self.logs()}")

    def set_suspend(self, suspend: bool) -> None:
        """spec.suspend changes; the operator sets the JobSet's suspend."""
        self.run = self.run.model_copy(update={"spec": self.run.spec.model_copy(update={"suspend": suspend})})
        self.jobsets.set_suspend(suspend)

    def logs(self) -> str:
        names = sorted(p.name for p in self.kubelet.root.iterdir() if p.is_dir())
        return "\n".join(f"--- {n}\n{self.kubelet.logs(n)}" for n in names)


@contextmanager
def cluster(tmp_path: Path, tiny_model: Path, name: str, steps: int) -> Iterator[tuple[Cluster, Bucket]]:
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    with SeaweedFS(tmp_path / "seaweedfs", buckets=[BUCKET]) as s3:
        # As on a cluster (examples/cluster-cpu.yaml), the model and the prompts are in the bucket too.
        creds = {"key": s3.env()["AWS_ACCESS_KEY_ID"], "secret": s3.env()["AWS_SECRET_ACCESS_KEY"]}
        inputs = s3fs.S3FileSystem(**creds, client_kwargs={"endpoint_url": s3.endpoint})
        for path in sorted(tiny_model.iterdir()):
            inputs.pipe(f"{BUCKET}/inputs/model/{path.name}", path.read_bytes())
        inputs.pipe(f"{BUCKET}/inputs/prompts.jsonl", prompts.read_bytes())
        uri = f"s3://{BUCKET}/runs/ml/{name}"
        spec = tiny_spec(tiny_model, prompts, name=name, **{"algorithm.steps": steps})
        spec["metadata"]["namespace"] = "ml"
        spec["spec"]["model"]["policy"] = f"s3://{BUCKET}/inputs/model/"
        spec["spec"]["data"]["prompts"] = f"s3://{BUCKET}/inputs/prompts.jsonl"
        spec["spec"]["storage"] = {"uri": uri, "endpoint": s3.endpoint, "secretRef": {"name": "creds"}}
        spec["spec"]["metrics"] = {"port": 9400}  # each pod gets its own port from the kubelet
        c = Cluster(OREALRun.model_validate(spec), tmp_path / "node", s3)
        try:
            yield c, Bucket.open(uri, endpoint=s3.endpoint, storage_options=creds)
        finally:
            c.jobsets.stop()


def condition(status: OREALRunStatus, type_: str) -> Any:
    return next(c for c in status.conditions if c.type == type_)


def test_a_rendered_jobset_runs_a_two_step_run_to_succeeded(tmp_path: Path, tiny_model: Path) -> None:
    with cluster(tmp_path, tiny_model, "two-steps", steps=2) as (c, bucket):
        assert [r["name"] for r in c.rendered["spec"]["replicatedJobs"]] == ["rollout", "verifier", "trainer"]
        status = c.until("Succeeded", lambda s: s.phase == "Succeeded" and c.jobsets.condition is not None)
        assert c.jobsets.condition == ("Completed", "AllJobsCompleted")  # the trainer's Job completed
        assert condition(status, "Complete").status == "True" and status.restarts == 0
        assert (status.step, status.policy_version, status.progress_percentage) == (1, 2, 100)
        assert status.last_metrics is not None and status.last_metrics.pass_rate is not None
        state = bucket.read_state()
        assert state.done and state.policy_version == 2
        assert bucket.committed_steps("verdicts") == [0, 1]
        assert bucket.read_spec() == c.frozen  # what the init containers stored: the ConfigMap's
        assert c.jobsets.pod("trainer").poll().exit_code == 0
        for role in ("rollout", "verifier"):  # ended, by themselves or by the success policy
            assert all(p.poll() is not None for p in c.jobsets.jobs[role].pods.values())


def test_a_killed_trainer_restarts_the_gang_once_and_suspend_resume_continues(
    tmp_path: Path, tiny_model: Path
) -> None:
    with cluster(tmp_path, tiny_model, "restarted", steps=3) as (c, bucket):
        c.until("step 0 reported", lambda s: s.step is not None)
        c.jobsets.pod("trainer").kill(signal.SIGKILL)
        status = c.until("a gang restart", lambda s: s.restarts == 1)
        message = condition(status, "Progressing").message
        assert "gang restart 1: restarted-trainer-0-0-" in message and "exited with 137" in message
        assert status.phase == "Running"  # one incident: one restart, not one per crashed pod
        before = c.until("step 1 after the restart", lambda s: s.step is not None and s.step >= 1).step

        c.set_suspend(True)
        status = c.until("Suspended", lambda s: s.phase == "Suspended")
        assert all(p.poll() is not None for job in c.jobsets.jobs.values() for p in job.pods.values())
        assert condition(status, "Suspended").status == "True" and status.start_time is None
        c.set_suspend(False)
        status = c.until("Succeeded", lambda s: s.phase == "Succeeded")
        assert status.restarts == 1 and c.jobsets.restarts == 1  # the suspend was no incident
        assert status.step == 2 >= before
        assert bucket.committed_steps("verdicts") == [0, 1, 2]  # contiguous, each step once
        assert bucket.list_stats() == [0, 1, 2]
        assert bucket.read_state().done
