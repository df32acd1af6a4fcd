"""The pods the operator renders run a whole run: their commands, env and volumes fit the workers.

No API server: `kubelet.py` starts each rendered pod's containers as local processes (init
container first), with the bucket on a throw-away SeaweedFS and its credentials from a Secret.
"""

from __future__ import annotations

import os
import time

import pytest
from workers.conftest import tiny_spec, write_prompts

from oreal.bucket import Bucket
from oreal.bucket.seaweedfs import SeaweedFS, find_weed
from oreal.spec import OREALRun
from oreal_operator.render import RenderOptions, render_children

from .kubelet import Kubelet, pods_of

pytestmark = [pytest.mark.slow, pytest.mark.s3]


@pytest.mark.skipif(find_weed() is None, reason="SeaweedFS `weed` binary not installed")
def test_rendered_pods_run_a_whole_run(tmp_path, tiny_model):
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    with SeaweedFS(tmp_path / "seaweedfs", buckets=["oreal-k8s"]) as s3:
        uri = "s3://oreal-k8s/runs/ml/on-k8s"
        # As on a cluster (examples/cluster-cpu.yaml), the model and the prompts are in the bucket too.
        creds = {"key": s3.env()["AWS_ACCESS_KEY_ID"], "secret": s3.env()["AWS_SECRET_ACCESS_KEY"]}
        store = Bucket.open("s3://oreal-k8s/inputs", endpoint=s3.endpoint, storage_options=creds)
        for path in sorted(tiny_model.iterdir()):
            store.put_bytes(f"model/{path.name}", path.read_bytes())
        store.put_bytes("prompts.jsonl", prompts.read_bytes())
        spec = tiny_spec(tiny_model, prompts, name="on-k8s", **{"algorithm.steps": 2})
        spec["spec"]["model"]["policy"] = "s3://oreal-k8s/inputs/model/"
        spec["spec"]["data"]["prompts"] = "s3://oreal-k8s/inputs/prompts.jsonl"
        spec["spec"]["storage"] = {"uri": uri, "endpoint": s3.endpoint, "secretRef": {"name": "creds"}}
        spec["spec"]["metrics"] = {"port": 0}
        run = OREALRun.model_validate(spec)
        children = render_children(run, RenderOptions(image="oreal:test", namespace="ml"))
        configmaps = {c["metadata"]["name"]: c["data"] for c in children if c["kind"] == "ConfigMap"}
        statefulsets = [c for c in children if c["kind"] == "StatefulSet"]
        assert sorted(s["metadata"]["name"] for s in statefulsets) == [
            "on-k8s-rollout",
            "on-k8s-trainer",
            "on-k8s-verifier",
        ]
        kubelet = Kubelet(tmp_path / "node", configmaps, {"creds": s3.env()})
        # Only what a container image would provide: no credentials from this test's environment.
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        base |= {"OMP_NUM_THREADS": "1", "OREAL_POLL_SECONDS": "0.2"}
        pods = [pod for s in statefulsets for pod in pods_of(s)]
        assert len(pods) == 2 + 1 + 1  # rollout x2, verifier x1, trainer x1 (tiny_spec)
        procs = {pod.name: kubelet.start(pod, base) for pod in pods}
        deadline = time.monotonic() + 400
        try:
            while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
        logs = {name: (tmp_path / "node" / name).glob("*.log") for name in procs}
        codes = {name: p.returncode for name, p in procs.items()}
        assert all(c == 0 for c in codes.values()), (
            codes,
            {n: [f.read_text()[-1500:] for f in fs] for n, fs in logs.items()},
        )
        bucket = Bucket.open(uri, endpoint=s3.endpoint, storage_options=creds)
        state = bucket.read_state()
        assert state.done and state.policy_version == 2
        assert bucket.committed_steps("verdicts") == [0, 1]
        assert bucket.read_spec() == configmaps["on-k8s-spec"]["spec.yaml"]
